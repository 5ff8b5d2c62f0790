"""Training and inference of one AU-LLM model on one split (one fold).

:class:`ModelHolder` keeps one model per process and gives it fresh trainable weights per fold;
:func:`fit` trains it on manifest rows (inner validation split, thresholds never from test
labels) through :func:`train_model`; :func:`predict_clips` returns per-clip AU probabilities
(and on request text answers and explanations), computing the prompt cache once per call. All
are deterministic for a given seed on CPU.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from au_llm.config import ExperimentConfig, TrainConfig
from au_llm.explain import describe_clip, printable
from au_llm.metrics import best_thresholds, threshold_grid
from au_llm.model.engine import AnswerTrie, PromptCache, answer_trie, generate_answers
from au_llm.model.groups import batch_formats, parameter_groups
from au_llm.model.losses import build_loss
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.precision import autocast, bf16_native, resolve_precision
from au_llm.model.spec import ModelSpec
from au_llm.prepare import PreparedData
from au_llm.preprocess.dataset import ClipDataset, collate

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What happened while training one model.

    Attributes:
        train_loss: Mean training loss per epoch.
        val_loss: Mean inner-validation loss per epoch (empty without a validation split).
        best_epoch: Epoch whose weights were kept (the last one without early stopping).
        seconds: Wall-clock training time.
        first_step_seconds: Wall-clock time of the first step (with ``train.compile`` it includes
            the compilation).
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    first_step_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (CPU and CUDA) random generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resolve_device(name: str) -> torch.device:
    """Map ``auto``/``cpu``/``cuda`` to a torch device (``auto`` picks CUDA when available).

    The choice of ``auto`` is logged (with the GPU's name), so a run that falls back to the CPU
    says so.
    """
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        where = torch.cuda.get_device_name(0) if device.type == "cuda" else "no CUDA device seen"
        log.info("train.device = auto: using %s (%s)", device, where)
        return device
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device = 'cuda' but no CUDA device is available")
    return torch.device(name)


# cuBLAS needs a fixed workspace for deterministic results (set before its first use).
CUBLAS_WORKSPACE = ":4096:8"


def set_determinism(device: torch.device, deterministic: bool) -> None:
    """Deterministic CUDA kernels when ``deterministic`` (``train.deterministic``).

    On CUDA: ``torch.use_deterministic_algorithms`` (a warning, not an error, for an operation
    without a deterministic kernel), cuDNN deterministic without benchmarking, and
    ``CUBLAS_WORKSPACE_CONFIG`` unless already set. CPU kernels are deterministic for a fixed
    thread count either way, so nothing changes there.
    """
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = not deterministic


def select_device(cfg: TrainConfig) -> tuple[torch.device, str]:
    """The device of ``train.device`` with ``train.deterministic`` applied, and its precision.

    Returns:
        ``(device, precision)`` with ``train.precision`` resolved there (``fp32`` or ``bf16``);
        both are logged.
    """
    device = resolve_device(cfg.device)
    set_determinism(device, cfg.deterministic)
    precision = resolve_precision(cfg.precision, device)
    log.info(
        "precision: %s (train.precision = %s; bfloat16 native on %s: %s)",
        precision,
        cfg.precision,
        device,
        bf16_native(device),
    )
    return device, precision


def set_num_threads(cfg: TrainConfig) -> int:
    """Apply ``train.num_threads`` to torch (0 keeps torch's default); returns the count in use."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    return torch.get_num_threads()


def _autocast(model: nn.Module) -> torch.autocast:
    """Autocast for ``model``'s precision (set by ``AULLM.place``) on its device."""
    return autocast(next(model.parameters()).device, model.precision)


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def make_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], cfg: TrainConfig
) -> torch.optim.Optimizer:
    """Adam (the paper's preset) or AdamW over the trainable parameters (or parameter groups).

    The fused implementation (one kernel over all parameters; about 10x faster than the default
    for-loop on the paper-size projector on CPU) is used when every parameter is a floating-point
    tensor on a CPU or CUDA device; it computes the same update up to float rounding.
    """
    flat = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(flat) and all(
        p.is_floating_point() and p.device.type in FUSED_OPTIMIZER_DEVICES for p in flat
    )
    optimizer_cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return optimizer_cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, fused=fused or None)


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate schedule: linear warm-up, then constant, cosine or linear decay."""
    total = max(1, cfg.epochs * steps_per_epoch)
    warmup = cfg.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.scheduler == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if cfg.scheduler == "linear":
            return max(0.0, 1.0 - progress)
        return 1.0

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def compile_visual_path(model: AULLM) -> None:
    """Compile the model's backbone + projector call (``get_visual_tokens``) in place.

    ``torch.compile`` wraps the bound method on this model object (weights, state dict and
    checkpoints are unchanged); compiling twice is a no-op. Compilation happens on the first call.
    """
    if "get_visual_tokens" not in vars(model):
        model.get_visual_tokens = torch.compile(model.get_visual_tokens)


def _loader(dataset: ClipDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=0,
        generator=generator,
    )


def _lm_loss(lm_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of next-token logits ``[B, L, V]`` on targets ``[B, L]`` (-100 skipped)."""
    return nn.functional.cross_entropy(
        lm_logits.float().flatten(0, 1), targets.flatten(), ignore_index=-100
    )


def meta_rows(meta: dict[str, list[str]]) -> list[dict[str, str]]:
    """A collated batch's meta (key -> list) as one dict per clip."""
    n = len(next(iter(meta.values()))) if meta else 0
    return [{key: values[i] for key, values in meta.items()} for i in range(n)]


def batch_loss(
    model: AULLM,
    clips: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    step: int,
    meta: dict[str, list[str]] | None = None,
) -> torch.Tensor:
    """The training loss of one batch for the model's head(s) and explanations.

    ``linear``: the AU loss on the linear head. ``text``/``both``: teacher-forced cross-entropy on
    the answer string (``model.text.weight``; formats as :func:`~au_llm.model.groups.batch_formats`
    gives them), plus for ``both`` the AU loss (``model.text.linear_weight``); one decoder pass
    serves both heads. With ``model.explain.weight > 0`` the teacher-forced cross-entropy on
    each clip's description target (:func:`au_llm.explain.describe_clip`, phrasing drawn from the
    clip and ``step``) is added with that weight; the same visual tokens feed every pass.

    Args:
        model: The model.
        clips: ``[B, C, T, H, W]`` clips on the model's device.
        labels: ``[B, n_aus]`` 0/1 labels on the model's device.
        loss_fn: The AU loss (see :func:`~au_llm.model.losses.build_loss`).
        step: Step counter (chooses the formats and the explanations' phrasings).
        meta: The batch's meta (see :class:`~au_llm.preprocess.dataset.ClipDataset`); with
            the annotation, needed for explanations.

    Returns:
        The scalar loss.

    Raises:
        ValueError: Explanations are on and ``meta`` is missing.
    """
    head, text, explain = model.cfg.head, model.cfg.text, model.cfg.explain
    if head == "linear" and explain.weight == 0:
        return loss_fn(model(clips).float(), labels)
    tokens = model.get_visual_tokens(clips)
    loss = torch.zeros((), device=clips.device)
    au_logits = None
    if head != "linear":
        n = len(labels)
        formats = batch_formats(text.formats, text.format_weights, step, n)
        ids, targets = model.text_targets(labels, formats)
        au_logits, lm_logits = model.forward_text_tokens(tokens, ids)
        loss = loss + text.weight * _lm_loss(lm_logits, targets)
    if explain.weight > 0:
        if meta is None:
            raise ValueError("model.explain.weight > 0: batch_loss needs the batch's meta")
        descriptions = [describe_clip(row, step) for row in meta_rows(meta)]
        ids, targets = model.teacher_forcing(["explain"] * len(descriptions), descriptions)
        explain_logits, lm_logits = model.forward_text_tokens(tokens, ids)
        au_logits = explain_logits if au_logits is None else au_logits
        loss = loss + explain.weight * _lm_loss(lm_logits, targets)
    if head != "text":
        assert au_logits is not None
        weight = text.linear_weight if head == "both" else 1.0
        loss = loss + weight * loss_fn(au_logits.float(), labels)
    return loss


def _epoch_loss(
    model: nn.Module, loader: DataLoader, loss_fn: nn.Module, device: torch.device
) -> float:
    """Mean loss over a loader without gradients (model left in eval mode)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for step, (clips, labels, meta) in enumerate(loader):
            with _autocast(model):
                loss = batch_loss(model, clips.to(device), labels.to(device), loss_fn, step, meta)
            total += float(loss) * len(labels)
            count += len(labels)
    return total / max(1, count)


def train_model(
    model: nn.Module,
    train_set: ClipDataset,
    cfg: TrainConfig,
    seed: int,
    val_set: ClipDataset | None = None,
    desc: str = "train",
    progress: bool = True,
    on_epoch: Callable[[int], None] | None = None,
) -> TrainResult:
    """Fit the model's trainable parameters on ``train_set``.

    Args:
        model: An AU-LLM model (``forward(clips [B,C,T,H,W]) -> logits [B, n_aus]``) already on
            the target device, with ``trainable_parameters()``.
        train_set: Training clips; its random temporal sampling is re-seeded every epoch.
        cfg: Optimiser, schedule, loss and epoch settings.
        seed: Seed of shuffling and sampling (the fold's seed).
        val_set: Optional inner validation split (training subjects only) used for early
            stopping when ``cfg.patience > 0``; the best epoch's weights are restored.
        desc: Label of the epoch progress bar.
        progress: Show the epoch progress bar.
        on_epoch: Called with the epoch index after each epoch's optimiser steps (before the
            validation loss); it may evaluate the model (the next epoch sets train mode again).

    Returns:
        Loss curves and timing.
    """
    device = next(model.parameters()).device
    start = time.perf_counter()
    if cfg.compile:
        compile_visual_path(model)
    params = list(model.trainable_parameters())
    loss_fn = build_loss(cfg, train_set.labels).to(device)
    loader = _loader(train_set, cfg.batch_size, shuffle=True, seed=seed)
    optimizer = make_optimizer(parameter_groups(model, cfg), cfg)
    scheduler = make_scheduler(optimizer, cfg, len(loader))
    val_loader = _loader(val_set, cfg.batch_size, False, seed) if val_set is not None else None
    result = TrainResult()
    best_loss, best_state, since_best = math.inf, None, 0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False, unit="epoch", disable=not progress)
    for epoch in bar:
        train_set.set_epoch(epoch)
        model.train()
        total, count = 0.0, 0
        for step, (clips, labels, meta) in enumerate(loader, start=epoch * len(loader)):
            optimizer.zero_grad(set_to_none=True)
            with _autocast(model):
                x, y = clips.to(device), labels.to(device)
                loss = batch_loss(model, x, y, loss_fn, step, meta)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            if not result.first_step_seconds:
                result.first_step_seconds = time.perf_counter() - start
                log.info("%s: first step %.1f s", desc, result.first_step_seconds)
            total += float(loss.detach()) * len(labels)
            count += len(labels)
        result.train_loss.append(total / max(1, count))
        if on_epoch is not None:
            on_epoch(epoch)
        postfix = {"loss": f"{result.train_loss[-1]:.4f}"}
        if val_loader is not None:
            val_loss = _epoch_loss(model, val_loader, loss_fn, device)
            result.val_loss.append(val_loss)
            postfix["val"] = f"{val_loss:.4f}"
            if cfg.patience > 0:
                if val_loss < best_loss:
                    best_loss, since_best, result.best_epoch = val_loss, 0, epoch
                    best_state = {
                        k: v.detach().clone() for k, v in model.trainable_state_dict().items()
                    }
                else:
                    since_best += 1
                    if since_best >= cfg.patience:
                        log.info("%s: early stop at epoch %d", desc, epoch)
                        break
        bar.set_postfix(postfix)
    if best_state is not None:
        model.load_trainable_state_dict(best_state)
    else:
        result.best_epoch = len(result.train_loss) - 1
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def inference_prompt_cache(model: AULLM) -> PromptCache | None:
    """The model's prompt cache for inference, under the same autocast as :func:`clip_outputs`.

    Call it after training or loading (the cache belongs to the current weights), in eval mode.
    """
    with torch.inference_mode(), _autocast(model):
        return model.prompt_cache()


@dataclass
class ClipOutputs:
    """What a model gives for clips, in clip order.

    Attributes:
        probs: ``[N, n_aus]`` float64 AU probabilities of the linear head.
        answers: Format -> one generated answer per clip (empty unless asked for).
        explanations: One generated explanation per clip (empty unless asked for).
    """

    probs: np.ndarray
    answers: dict[str, list[str]] = field(default_factory=dict)
    explanations: list[str] = field(default_factory=list)

    @classmethod
    def concat(cls, parts: list[ClipOutputs], n_aus: int) -> ClipOutputs:
        """The outputs of consecutive batches as one (``n_aus`` shapes an empty result)."""
        if not parts:
            return cls(np.zeros((0, n_aus)))
        answers = {
            fmt: [text for part in parts for text in part.answers[fmt]] for fmt in parts[0].answers
        }
        explanations = [text for part in parts for text in part.explanations]
        return cls(np.concatenate([part.probs for part in parts]), answers, explanations)


def answer_tries(model: AULLM, constrained: bool | None = None) -> dict[str, AnswerTrie]:
    """Constraint tries per format when constrained (default ``model.text.constrained``)."""
    text = model.cfg.text
    wanted = text.constrained if constrained is None else constrained
    return {fmt: answer_trie(model, fmt) for fmt in text.formats} if wanted else {}


def clip_outputs(
    model: AULLM,
    clips: torch.Tensor,
    prompt_cache: PromptCache | None = None,
    tries: dict[str, AnswerTrie] | None = None,
    answers: bool = False,
    explain: bool = False,
) -> ClipOutputs:
    """Probabilities, and on request answers and explanations, of clips ``[B, C, T, H, W]``.

    The backbone and projector run once; their visual tokens feed the linear head, the greedy
    answers in every format the model was trained on (``answers``; constrained by ``tries`` from
    :func:`answer_tries`) and the greedy explanations (``explain``). The model is used as it is
    (call ``model.eval()`` first), under the model's precision (``model.precision``), exactly as
    during training; probabilities and greedy choices come from float32 logits.
    ``prompt_cache`` comes from :func:`inference_prompt_cache` on the same weights. Generated
    text has its control characters replaced (:func:`~au_llm.explain.printable`), so every
    answer fits one CSV cell.

    Raises:
        ValueError: ``explain`` for a model not trained with explanations.
    """
    if explain and model.cfg.explain.weight <= 0:
        raise ValueError("the model was not trained with explanations (model.explain.weight 0)")
    device = next(model.parameters()).device
    text, tries = model.cfg.text, tries or {}
    outputs = ClipOutputs(np.zeros(0))
    with torch.inference_mode(), _autocast(model):
        tokens = model.get_visual_tokens(clips.to(device))
        logits = model.score_tokens(tokens, prompt_cache)
        for fmt in text.formats if answers else []:
            ids = generate_answers(
                model, tokens, fmt, prompt_cache, text.max_new_tokens, tries.get(fmt)
            )
            outputs.answers[fmt] = [printable(model.tokenizer.decode(seq)) for seq in ids]
        if explain:
            limit = model.cfg.explain.max_new_tokens
            stop = model.cfg.explain.stop_repeat
            ids = generate_answers(model, tokens, "explain", prompt_cache, limit, stop_repeat=stop)
            outputs.explanations = [printable(model.tokenizer.decode(seq)) for seq in ids]
    outputs.probs = torch.sigmoid(logits.float()).cpu().numpy().astype(np.float64)
    return outputs


def predict_clips(
    model: AULLM,
    dataset: ClipDataset,
    batch_size: int,
    answers: bool = False,
    explain: bool = False,
) -> tuple[ClipOutputs, list[dict]]:
    """:func:`clip_outputs` of every clip of ``dataset`` in eval mode, in dataset order.

    The prompt cache (and, with ``model.text.constrained``, the tries that allow only well-formed
    answers) are computed once; answers and explanations are greedy and deterministic.

    Args:
        model: A trained model.
        dataset: Clips to score (deterministic sampling).
        batch_size: Clips per forward pass.
        answers: Also generate the text answers in every format.
        explain: Also generate explanations.

    Returns:
        ``(outputs, metas)`` with one meta dict per clip (see
        :class:`~au_llm.preprocess.dataset.ClipDataset`).
    """
    model.eval()
    cache = inference_prompt_cache(model)
    tries = answer_tries(model) if answers else {}
    parts, metas = [], []
    for clips, _, meta in _loader(dataset, batch_size, shuffle=False, seed=0):
        parts.append(clip_outputs(model, clips, cache, tries, answers, explain))
        metas.extend(meta_rows(meta))
    return ClipOutputs.concat(parts, len(dataset.aus)), metas


class ModelHolder:
    """Holds one model per process and re-initialises only its trainable parts per fold.

    Building a model loads its base LLM; every later fold calls ``reset_trainable`` instead,
    which gives the same weights as a fresh build (see ``bench/model_speed.py`` for the gain).
    """

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "fp32") -> None:
        self.spec = spec
        self.device = device
        self.precision = precision
        self._model: AULLM | None = None

    def fresh(self, seed: int) -> AULLM:
        """The model with trainable weights initialised from ``seed`` (the base LLM is reused)."""
        if self._model is None:
            self._model = build_au_llm(self.spec, seed, self.device, self.precision)
        else:
            self._model.reset_trainable(seed)
        return self._model


def inner_split(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a fraction of the training subjects (at least one, never all) for validation.

    Raises:
        ValueError: If fewer than two training subjects are available.
    """
    keys = list(zip(train["dataset"], train["subject"], strict=True))
    subjects = sorted(set(keys))
    if len(subjects) < 2:
        raise ValueError(
            f"train.val_fraction = {fraction} needs at least 2 training subjects, "
            f"got {len(subjects)}"
        )
    rng = np.random.default_rng(seed)
    n_val = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    chosen = {subjects[i] for i in rng.choice(len(subjects), size=n_val, replace=False)}
    is_val = np.array([key in chosen for key in keys])
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


@dataclass
class FitResult:
    """One trained model's record.

    Attributes:
        train: The rows trained on (the inner validation split removed).
        n_val: Clips in the inner validation split (0 without one).
        thresholds: Per-AU decision thresholds ``[n_aus]``.
        result: Loss curves and timing.
        train_thresholds: Per-AU thresholds chosen on the training clips' predictions, whatever
            the policy (reported beside fixed-threshold F1; equal to ``thresholds`` under
            ``train``).
    """

    train: pd.DataFrame
    n_val: int
    thresholds: np.ndarray
    result: TrainResult
    train_thresholds: np.ndarray


def fit(
    model: AULLM,
    rows: pd.DataFrame,
    cfg: ExperimentConfig,
    data: PreparedData,
    seed: int,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``rows`` and choose its thresholds, never from test labels.

    An inner validation split of the subjects is held out when ``train.val_fraction > 0``. The
    training clips' own predictions always give per-AU thresholds (``train_thresholds``); the
    ``train`` policy decides with them, the others with ``eval.fixed_threshold``
    (``test-oracle`` thresholds are chosen later, on pooled test predictions, when the report is
    built).
    """
    train, val = rows, None
    if cfg.train.val_fraction > 0:
        train, val = inner_split(rows, cfg.train.val_fraction, seed)
    frames, sampling = cfg.sampling.frames_per_clip, cfg.sampling
    explain = cfg.model.explain.weight > 0
    train_set = ClipDataset(train, data.cache, data.aus, frames, sampling.train, seed, explain)
    val_set = (
        ClipDataset(val, data.cache, data.aus, frames, sampling.test, seed, explain)
        if val is not None
        else None
    )
    result = train_model(model, train_set, cfg.train, seed, val_set, desc, progress)
    thresholds = np.full(len(data.aus), cfg.eval.fixed_threshold)
    eval_set = ClipDataset(train, data.cache, data.aus, frames, sampling.test, seed=seed)
    outputs, _ = predict_clips(model, eval_set, cfg.train.batch_size)
    grid = threshold_grid(*cfg.eval.threshold_grid)
    train_thresholds = best_thresholds(eval_set.labels.numpy(), outputs.probs, grid)
    if cfg.eval.threshold == "train":
        thresholds = train_thresholds
    n_val = 0 if val is None else len(val)
    return FitResult(train, n_val, thresholds, result, train_thresholds)
