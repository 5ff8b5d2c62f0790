"""A deployed model applied to batches of aligned clips: probabilities, answers, CSV columns."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import torch

from au_llm.config import PreprocessConfig
from au_llm.deployed import DeployedModel
from au_llm.inference import ClipOutputs, answer_tries, clip_outputs, inference_prompt_cache
from au_llm.model.engine import PromptCache
from au_llm.predict.config import PredictConfig
from au_llm.prediction_rows import output_columns

log = logging.getLogger(__name__)


class ClipScorer:
    """The model of a deployed model with the options it is applied with.

    The prompt cache (and, for text heads, the answer tries) are computed once.

    Attributes:
        deployed: The model and its inference settings.
        preprocess: The alignment inputs get: the model's, or its ``--align`` replacement.
        batch_size: Clips per forward pass.
        explain: Whether explanations are generated.
        generation: How answers and explanations are decoded: the model's, with ``--constrained``
            applied.
    """

    def __init__(self, deployed: DeployedModel, options: PredictConfig) -> None:
        """Check the options against the model and prepare its prompt.

        Raises:
            ValueError: ``explain`` for a model trained without explanations.
        """
        if options.explain and not deployed.spec.model.explain:
            raise ValueError(
                "--explain: this model was not trained with explanations "
                "(train it with model.explain: true)"
            )
        self.deployed = deployed
        inference = deployed.inference
        self.preprocess: PreprocessConfig = inference.preprocess
        if options.align is not None:
            log.info(
                "alignment: %s (--align; the model was trained with %s)",
                options.align,
                inference.preprocess.align,
            )
            self.preprocess = replace(inference.preprocess, align=options.align)
        self.batch_size = options.batch_size or inference.batch_size
        self.explain = options.explain
        model = deployed.model.eval()
        self._prompt_cache: PromptCache | None = inference_prompt_cache(model)
        self._text = model.cfg.has_text_head
        processor = deployed.processor
        self.generation = inference.generation
        if options.constrained is not None:
            self.generation = replace(self.generation, constrained=options.constrained)
        constrained = self.generation.constrained
        self._tries = answer_tries(model, processor, constrained=constrained) if self._text else {}

    @property
    def aus(self) -> list[int]:
        """AU numbers, in output order."""
        return self.deployed.aus

    @property
    def frames_per_clip(self) -> int:
        """Frames of each clip fed to the model."""
        return self.deployed.spec.frames_per_clip

    @property
    def frame_sampling(self) -> str:
        """How a clip's frames are picked (the model's test sampling strategy)."""
        return self.deployed.inference.frame_sampling

    def outputs(self, clips: torch.Tensor) -> ClipOutputs:
        """Probabilities, answers and (``explain``) explanations of clips ``[B, C, T, H, W]``.

        The clips go through the model ``batch_size`` at a time.
        """
        model, processor = self.deployed.model.eval(), self.deployed.processor
        cache, tries = self._prompt_cache, self._tries
        parts = [
            clip_outputs(
                model,
                processor,
                batch,
                prompt_cache=cache,
                tries=tries,
                answers=self._text,
                explain=self.explain,
                generation=self.generation,
            )
            for batch in torch.split(clips, self.batch_size)
        ]
        return ClipOutputs.concat(parts, len(self.aus))

    def columns(
        self,
        keys: pd.DataFrame,
        outputs: ClipOutputs,
        labels: np.ndarray | None = None,
        explained: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The columns after the rows' ``keys`` (:func:`~au_llm.prediction_rows.output_columns`).

        Raises:
            NonFiniteScoreError: A score is NaN or infinite (the message names its row's keys).
        """
        spec = self.deployed.spec.model
        return output_columns(
            outputs,
            self.aus,
            self.deployed.thresholds,
            spec.head,
            spec.text.formats,
            labels,
            explained,
            keys=keys,
        )
