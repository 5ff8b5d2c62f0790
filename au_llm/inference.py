"""Inference of a trained AU-LLM model: visual tokens once per batch -> probabilities, text.

:func:`clip_outputs` runs the backbone and projector once per batch of clips; the visual tokens
feed the linear head (AU probabilities), the greedy answers in every format the model was
trained on, and the greedy explanations. :func:`predict_clips` does it for a whole dataset. The
prompt cache (:func:`inference_prompt_cache`) and the constraint tries (:func:`answer_tries`) are
computed once per model state by the caller and passed to every batch. The protocols
(:mod:`au_llm.recipes.experiment`), ``au-llm predict`` (:mod:`au_llm.predict`), the reliance
measure and the demo all predict through this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from au_llm.config_generation import GenerationConfig
from au_llm.model.engine import AnswerTrie, PromptCache, generate_answers
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.precision import model_autocast
from au_llm.model.processing_au_llm import EXPLAIN, AULLMProcessor
from au_llm.preprocess.dataset import ClipDataset, clip_loader, meta_rows


def inference_prompt_cache(model: AULLM) -> PromptCache | None:
    """The model's prompt cache for inference, under the same autocast as :func:`clip_outputs`.

    Call it after training or loading (the cache belongs to the current weights), in eval mode.
    """
    with torch.inference_mode(), model_autocast(model):
        return model.prompt_cache()


@dataclass
class ClipOutputs:
    """What a model gives for clips, in clip order.

    Attributes:
        probs: ``[N, n_aus]`` float64 AU probabilities of the linear head.
        answers: Format -> one generated answer per clip (empty unless asked for).
        explanations: One generated explanation per clip (empty unless asked for).
        vision_probs: ``[N, n_aus]`` float64 AU probabilities of the vision head
            (``model.vision_head``); None without one.
    """

    probs: np.ndarray
    answers: dict[str, list[str]] = field(default_factory=dict)
    explanations: list[str] = field(default_factory=list)
    vision_probs: np.ndarray | None = None

    @classmethod
    def concat(cls, parts: list[ClipOutputs], n_aus: int) -> ClipOutputs:
        """The outputs of consecutive batches as one (``n_aus`` shapes an empty result)."""
        if not parts:
            return cls(np.zeros((0, n_aus)))
        answers = {
            fmt: [text for part in parts for text in part.answers[fmt]] for fmt in parts[0].answers
        }
        explanations = [text for part in parts for text in part.explanations]
        vision = [part.vision_probs for part in parts if part.vision_probs is not None]
        return cls(
            np.concatenate([part.probs for part in parts]),
            answers,
            explanations,
            np.concatenate(vision) if vision else None,
        )


def answer_tries(
    model: AULLM, processor: AULLMProcessor, *, constrained: bool
) -> dict[str, AnswerTrie]:
    """Constraint tries per answer format of the model when ``constrained``, else none."""
    return (
        {fmt: processor.answer_trie(fmt) for fmt in model.cfg.text.formats} if constrained else {}
    )


def clip_outputs(
    model: AULLM,
    processor: AULLMProcessor,
    clips: torch.Tensor,
    *,
    prompt_cache: PromptCache | None = None,
    tries: dict[str, AnswerTrie] | None = None,
    answers: bool = False,
    explain: bool = False,
    generation: GenerationConfig | None = None,
) -> ClipOutputs:
    """Probabilities, and on request answers and explanations, of clips ``[B, C, T, H, W]``.

    The backbone and projector run once; their visual tokens ``[B, n, H]`` feed the linear head
    (and the vision head, when the model has one), the greedy answers in every format the model
    was trained on (``answers``; constrained by ``tries`` from :func:`answer_tries`) and the
    greedy explanations (``explain``), decoded as ``generation`` says (None: its defaults). The
    model is used as it is (call ``model.eval()`` first), under the model's precision
    (``model.precision``), exactly as during training; probabilities and greedy choices come from
    float32 logits. ``prompt_cache`` comes from :func:`inference_prompt_cache` on the same
    weights. The processor decodes the text into one printable line per clip, so every answer
    fits one CSV cell.

    Raises:
        ValueError: ``explain`` for a model not trained with explanations.
    """
    if explain and not model.cfg.explain:
        raise ValueError("the model was not trained with explanations (model.explain: false)")
    device = next(model.parameters()).device
    decoding, tries = generation or GenerationConfig(), tries or {}
    outputs = ClipOutputs(np.zeros(0))
    with torch.inference_mode(), model_autocast(model):
        tokens = model.get_visual_tokens(clips.to(device))
        logits = model.score_tokens(tokens, prompt_cache)
        if model.vision_head is not None:
            vision = torch.sigmoid(model.vision_logits(tokens))
            outputs.vision_probs = vision.cpu().numpy().astype(np.float64)

        def generate(
            name: str, limit: int, *, trie: AnswerTrie | None = None, stop_repeat: int = 0
        ) -> list[str]:
            ids = generate_answers(
                model,
                tokens,
                processor.instruction_ids(name),
                eos_id=processor.eos_id,
                prompt_cache=prompt_cache,
                max_new_tokens=limit,
                trie=trie,
                stop_repeat=stop_repeat,
            )
            return processor.decode(ids)

        for fmt in model.cfg.text.formats if answers else []:
            outputs.answers[fmt] = generate(fmt, decoding.max_answer_tokens, trie=tries.get(fmt))
        if explain:
            outputs.explanations = generate(
                EXPLAIN, decoding.max_explanation_tokens, stop_repeat=decoding.stop_repeat
            )
    outputs.probs = torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)
    return outputs


def predict_clips(
    model: AULLM,
    processor: AULLMProcessor,
    dataset: ClipDataset,
    *,
    batch_size: int,
    answers: bool = False,
    explain: bool = False,
    generation: GenerationConfig | None = None,
) -> tuple[ClipOutputs, list[dict]]:
    """:func:`clip_outputs` of every clip of ``dataset`` in eval mode, in dataset order.

    The prompt cache (and, with ``generation.constrained``, the tries that allow only
    well-formed answers) are computed once; answers and explanations are greedy and
    deterministic.

    Args:
        model: A trained model.
        processor: Its text processor.
        dataset: Clips to score (deterministic sampling).
        batch_size: Clips per forward pass.
        answers: Also generate the text answers in every format.
        explain: Also generate explanations.
        generation: How answers and explanations are decoded (None: the defaults).

    Returns:
        ``(outputs, metas)`` with one meta dict per clip (see
        :class:`~au_llm.preprocess.dataset.ClipDataset`).
    """
    model.eval()
    decoding = generation or GenerationConfig()
    cache = inference_prompt_cache(model)
    tries = answer_tries(model, processor, constrained=decoding.constrained) if answers else {}
    parts, metas = [], []
    for clips, _, meta in clip_loader(dataset, batch_size, shuffle=False, seed=0):
        outputs = clip_outputs(
            model,
            processor,
            clips,
            prompt_cache=cache,
            tries=tries,
            answers=answers,
            explain=explain,
            generation=decoding,
        )
        parts.append(outputs)
        metas.extend(meta_rows(meta))
    return ClipOutputs.concat(parts, len(dataset.aus)), metas


def visual_tokens(model: AULLM, dataset: ClipDataset, batch_size: int) -> torch.Tensor:
    """``[N, n, H]`` visual tokens of every clip of ``dataset``, in order, under inference mode.

    Batches of ``batch_size`` clips go through the backbone and projector in eval mode, under the
    model's precision.
    """
    model.eval()
    device = next(model.parameters()).device
    with torch.inference_mode(), model_autocast(model):
        return torch.cat(
            [
                model.get_visual_tokens(clips.to(device))
                for clips, _, _ in clip_loader(dataset, batch_size, shuffle=False, seed=0)
            ]
        )
