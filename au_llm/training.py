"""Training of one AU-LLM model on one split (one fold).

:class:`ModelHolder` keeps one model (and its text processor) per process and gives it fresh
trainable weights per fold; :func:`train_model` fits its trainable parameters (its
:func:`batch_loss` gets its text batches from the processor; :func:`~au_llm.fitting.fit` adds
the inner validation split and the thresholds). Predictions come from :mod:`au_llm.inference`.
All are deterministic for a given seed on CPU.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from au_llm.config import TrainConfig
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.precision import model_autocast
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec
from au_llm.param_groups import batch_formats, parameter_groups, stage_plan
from au_llm.preprocess.dataset import ClipDataset, clip_loader, meta_rows

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


FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")


def make_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]],
    *,
    name: str,
    lr: float,
    weight_decay: float,
) -> torch.optim.Optimizer:
    """Adam (the paper's preset) or AdamW over the trainable parameters (or parameter groups).

    ``name`` is ``train.optimizer``: ``adam`` is torch's Adam, whose ``weight_decay`` is L2
    coupled into the gradient (normalised by Adam with it); ``adamw`` decays the weights apart
    from the gradient.

    The fused implementation (one kernel over all parameters; about 10x faster than the default
    for-loop on the paper-size projector on CPU) is used when every parameter is a floating-point
    tensor on a CPU or CUDA device; it computes the same update up to float rounding.

    Args:
        params: The parameters, or parameter groups (each may set its own ``lr``).
        name: ``adamw`` or ``adam``.
        lr: Learning rate (of every group without its own).
        weight_decay: Weight decay (see above).
    """
    flat = [p for item in params for p in (item["params"] if isinstance(item, dict) else [item])]
    fused = bool(flat) and all(
        p.is_floating_point() and p.device.type in FUSED_OPTIMIZER_DEVICES for p in flat
    )
    optimizer_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return optimizer_cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)


def make_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    kind: str,
    warmup_epochs: int,
    epochs: int,
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step learning-rate schedule: linear warm-up, then constant, cosine or linear decay.

    Args:
        optimizer: The optimizer whose rates it scales.
        kind: ``constant``, ``cosine`` or ``linear`` (``train.scheduler``).
        warmup_epochs: Linear warm-up length (``train.warmup_epochs``).
        epochs: Epochs the schedule spans (``train.epochs``, or a stage's).
        steps_per_epoch: Optimiser steps per epoch.
    """
    total = max(1, epochs * steps_per_epoch)
    warmup = warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        if kind == "linear":
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


def _text_pass(
    model: AULLM, tokens: torch.Tensor, ids: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A teacher-forced text pass: the AU logits and the cross-entropy on the targets.

    Args:
        model: The model.
        tokens: ``[B, n, H]`` visual tokens.
        ids: ``[B, L]`` teacher-forcing ids (instruction + target).
        targets: ``[B, L]`` next-token targets, -100 where no loss is taken.

    Returns:
        ``(au_logits [B, n_aus], loss)``: the loss is the mean over the target tokens, with
        logits computed at those positions only.
    """
    targets = targets.to(tokens.device)
    keep = targets != -100
    au_logits, lm_logits = model.forward_text_tokens(tokens, ids.to(tokens.device), keep)
    return au_logits, nn.functional.cross_entropy(lm_logits.float(), targets[keep])


@dataclass(frozen=True)
class LossWeights:
    """The weights of the training loss's parts (``train.*_weight``).

    Attributes:
        text: Of the text answers' cross-entropy (``train.text_weight``).
        linear: Of the linear head's AU loss under ``model.head: both``
            (``train.linear_weight``).
        explain: Of the explanations' cross-entropy, with ``model.explain``
            (``train.explain_weight``).
        vision: Of the vision head's AU loss (``train.vision_weight``).
    """

    text: float = 1.0
    linear: float = 1.0
    explain: float = 1.0
    vision: float = 0.0

    @classmethod
    def of(cls, train: TrainConfig) -> LossWeights:
        """The weights of the ``train`` section."""
        return cls(
            train.text_weight, train.linear_weight, train.explain_weight, train.vision_weight
        )


def batch_loss(
    model: AULLM,
    processor: AULLMProcessor,
    clips: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    step: int,
    *,
    meta: dict[str, list[str]] | None = None,
    weights: LossWeights = LossWeights(),
    format_weights: Sequence[float] = (),
    first_format_only: bool = False,
    stage: str = "all",
) -> torch.Tensor:
    """The training loss of one batch for the model's head(s) and explanations.

    ``linear``: the AU loss on the linear head. ``text``/``both``: teacher-forced cross-entropy on
    the answer string (weight ``weights.text``; formats as
    :func:`~au_llm.param_groups.batch_formats` gives them), plus for ``both`` the AU loss
    (``weights.linear``); one decoder pass serves both heads. With explanations
    (``model.explain``) the teacher-forced cross-entropy on each clip's description target
    (phrasing drawn from the clip and ``step``) is added with weight ``weights.explain``; the
    same visual tokens feed every pass. The processor builds the teacher-forcing ids and targets.
    With a vision head, ``weights.vision`` times the AU loss of
    :meth:`~au_llm.model.modeling_au_llm.AULLM.vision_logits` is added.

    Stages (:mod:`au_llm.param_groups`): ``vision`` is the vision head's loss alone (the reader
    does not run); ``heads`` runs the backbone without gradients (it is frozen); ``all`` is the
    whole loss.

    Args:
        model: The model.
        processor: Its text processor.
        clips: ``[B, C, T, H, W]`` clips on the model's device.
        labels: ``[B, n_aus]`` 0/1 labels on the model's device.
        loss_fn: The AU loss (see :func:`~au_llm.losses.build_loss`).
        step: Step counter (chooses the formats and the explanations' phrasings).
        meta: The batch's meta (see :class:`~au_llm.preprocess.dataset.ClipDataset`); with
            the annotation, needed for explanations.
        weights: The weights of the loss's parts.
        format_weights: How the answer formats are drawn (``train.format_weights``).
        first_format_only: Every clip answers in the first format (the first phase of
            ``train.first_format_epochs``).
        stage: The training stage (``vision``, ``heads`` or ``all``).

    Returns:
        The scalar loss.

    Raises:
        ValueError: Explanations are on and ``meta`` is missing.
    """
    if stage == "heads":
        with torch.no_grad():
            features = model.get_clip_features(clips)
        tokens = model.projector(features["mid"], features["high"])
    else:
        tokens = model.get_visual_tokens(clips)
    if stage == "vision":
        return loss_fn(model.vision_logits(tokens).float(), labels)
    formats = []
    if model.cfg.has_text_head:
        formats = batch_formats(
            model.cfg.text.formats,
            format_weights,
            step,
            len(labels),
            first_only=first_format_only,
        )
    loss = _reader_loss(model, processor, tokens, labels, loss_fn, step, meta, formats, weights)
    if weights.vision > 0:
        loss = loss + weights.vision * loss_fn(model.vision_logits(tokens).float(), labels)
    return loss


def _reader_loss(
    model: AULLM,
    processor: AULLMProcessor,
    tokens: torch.Tensor,
    labels: torch.Tensor,
    loss_fn: nn.Module,
    step: int,
    meta: dict[str, list[str]] | None,
    formats: list[str],
    weights: LossWeights,
) -> torch.Tensor:
    """The loss of the heads after the reader, from the visual tokens (see :func:`batch_loss`)."""
    cfg = model.cfg
    if not cfg.has_text_head and not cfg.explain:
        return loss_fn(model.score_tokens(tokens).float(), labels)
    loss = torch.zeros((), device=tokens.device)
    au_logits = None
    if cfg.has_text_head:
        ids, targets = processor.answer_batch(labels.cpu(), formats)
        au_logits, text_loss = _text_pass(model, tokens, ids, targets)
        loss = loss + weights.text * text_loss
    if cfg.explain:
        if meta is None:
            raise ValueError("model.explain: batch_loss needs the batch's meta")
        ids, targets = processor.explanation_batch(meta_rows(meta), step)
        explain_logits, explain_loss = _text_pass(model, tokens, ids, targets)
        au_logits = explain_logits if au_logits is None else au_logits
        loss = loss + weights.explain * explain_loss
    if cfg.head != "text":
        assert au_logits is not None
        weight = weights.linear if cfg.head == "both" else 1.0
        loss = loss + weight * loss_fn(au_logits.float(), labels)
    return loss


def _objective(
    model: AULLM,
    processor: AULLMProcessor,
    batch: tuple[torch.Tensor, torch.Tensor, dict[str, list[str]]],
    loss_fn: nn.Module,
    step: int,
    train: TrainConfig,
    *,
    first_format_only: bool = False,
    stage: str = "all",
) -> torch.Tensor:
    """:func:`batch_loss` of a loader's batch on the model's device, as ``train`` weighs it."""
    device = next(model.parameters()).device
    clips, labels, meta = batch
    with model_autocast(model):
        return batch_loss(
            model,
            processor,
            clips.to(device),
            labels.to(device),
            loss_fn,
            step,
            meta=meta,
            weights=LossWeights.of(train),
            format_weights=train.format_weights,
            first_format_only=first_format_only,
            stage=stage,
        )


def _epoch_loss(
    model: AULLM,
    processor: AULLMProcessor,
    loader: DataLoader,
    loss_fn: nn.Module,
    train: TrainConfig,
) -> float:
    """Mean loss (the whole objective) over a loader without gradients (model left in eval mode)."""
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for step, batch in enumerate(loader):
            loss = _objective(model, processor, batch, loss_fn, step, train)
            total += float(loss) * len(batch[1])
            count += len(batch[1])
    return total / max(1, count)


class DivergedError(RuntimeError):
    """Training gave a NaN or infinite loss; the message names the fold, epoch and step."""


def check_finite_loss(value: float, where: str) -> None:
    """Stop a training whose loss is NaN or infinite, before anything of it is written.

    Raises:
        DivergedError: Naming ``where`` (the fold, epoch and step).
    """
    if not math.isfinite(value):
        raise DivergedError(
            f"{where} is {value}: the training diverged and nothing of it is written; lower "
            "train.lr, set train.grad_clip, or check the clips"
        )


def train_model(
    model: AULLM,
    processor: AULLMProcessor,
    train_set: ClipDataset,
    cfg: TrainConfig,
    *,
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
        processor: Its text processor (teacher-forcing batches of text heads and explanations).
        train_set: Training clips; its random temporal sampling is re-seeded every epoch.
        cfg: Optimiser, schedule, losses and their weights, epochs.
        seed: Seed of shuffling and sampling (the fold's seed).
        val_set: Optional inner validation split (training subjects only) used for early
            stopping when ``cfg.patience > 0``; the best epoch's weights are restored.
        desc: Label of the epoch progress bar.
        progress: Show the epoch progress bar.
        on_epoch: Called with the epoch index after each epoch's optimiser steps (before the
            validation loss); it may evaluate the model (the next epoch sets train mode again).

    Returns:
        Loss curves and timing.

    Raises:
        DivergedError: A training or validation loss is NaN or infinite.
    """
    device = next(model.parameters()).device
    start = time.perf_counter()
    if cfg.compile:
        compile_visual_path(model)
    params = list(model.trainable_parameters())
    loss_fn = build_loss(
        train_set.labels,
        kind=cfg.loss,
        reduction=cfg.loss_reduction,
        asl_gamma_neg=cfg.asl_gamma_neg,
        asl_gamma_pos=cfg.asl_gamma_pos,
        asl_clip=cfg.asl_clip,
        focal_gamma=cfg.focal_gamma,
    ).to(device)
    loader = clip_loader(train_set, cfg.batch_size, shuffle=True, seed=seed)
    plan = stage_plan(epochs=cfg.epochs, stage_epochs=cfg.stage_epochs)
    stages = [(name, n) for name, n in plan for _ in range(n)]
    val_loader = (
        clip_loader(val_set, cfg.batch_size, shuffle=False, seed=seed)
        if val_set is not None
        else None
    )
    result = TrainResult()
    best_loss, best_state, since_best = math.inf, None, 0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False, unit="epoch", disable=not progress)
    for epoch in bar:
        stage, stage_epochs = stages[epoch]
        if epoch == 0 or stages[epoch - 1][0] != stage:
            # each stage: a fresh optimizer over what it trains, and its own schedule
            groups = parameter_groups(
                model,
                lr=cfg.lr,
                lr_projector=cfg.lr_projector,
                lr_head=cfg.lr_head,
                lr_lora=cfg.lr_lora,
                stage=stage,
            )
            optimizer = make_optimizer(
                groups, name=cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay
            )
            scheduler = make_scheduler(
                optimizer,
                kind=cfg.scheduler,
                warmup_epochs=cfg.warmup_epochs,
                epochs=stage_epochs,
                steps_per_epoch=len(loader),
            )
            if cfg.stage_epochs:
                log.info("%s: stage %s from epoch %d (%d epochs)", desc, stage, epoch, stage_epochs)
        train_set.set_epoch(epoch)
        model.train()
        if stage == "heads":
            model.backbone.eval()  # frozen: its BatchNorm statistics stay as they are
        total, count = 0.0, 0
        first_only = epoch < cfg.first_format_epochs
        for step, batch in enumerate(loader, start=epoch * len(loader)):
            optimizer.zero_grad(set_to_none=True)
            loss = _objective(
                model,
                processor,
                batch,
                loss_fn,
                step,
                cfg,
                first_format_only=first_only,
                stage=stage,
            )
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            if not result.first_step_seconds:
                result.first_step_seconds = time.perf_counter() - start
                log.info("%s: first step %.1f s", desc, result.first_step_seconds)
            value = float(loss.detach())
            check_finite_loss(value, f"{desc}: training loss at epoch {epoch + 1}, step {step + 1}")
            total += value * len(batch[1])
            count += len(batch[1])
        result.train_loss.append(total / max(1, count))
        if on_epoch is not None:
            on_epoch(epoch)
        postfix = {"loss": f"{result.train_loss[-1]:.4f}"}
        if val_loader is not None:
            val_loss = _epoch_loss(model, processor, val_loader, loss_fn, cfg)
            check_finite_loss(val_loss, f"{desc}: validation loss at epoch {epoch + 1}")
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


class ModelHolder:
    """Holds one model and its text processor per process; only trainable parts change per fold.

    Building a model loads its base LLM; every later fold calls ``reset_trainable`` instead,
    which gives the same weights as a fresh build (see ``bench/model_speed.py`` for the gain).
    """

    def __init__(self, spec: ModelSpec, device: torch.device, precision: str = "fp32") -> None:
        self.spec = spec
        self.device = device
        self.precision = precision
        self._model: AULLM | None = None
        self._processor: AULLMProcessor | None = None

    def fresh(self, seed: int) -> tuple[AULLM, AULLMProcessor]:
        """The model with trainable weights from ``seed`` (base LLM reused), and its processor."""
        if self._model is None or self._processor is None:
            built = build_model(self.spec, seed, self.device, self.precision)
            self._model, self._processor = built
        else:
            self._model.reset_trainable(seed)
        return self._model, self._processor
