"""The typed training configuration: optimiser, schedule, losses and their weights, stages.

Part of the experiment configuration (:mod:`au_llm.config`), which re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from au_llm.config_checks import (
    PRECISIONS,
    ConfigError,
    Device,
    Loss,
    LossReduction,
    Optimizer,
    Scheduler,
    check_choice,
    check_positive,
)


@dataclass
class TrainConfig:
    """Optimisation of one model (one fold).

    Attributes:
        optimizer: ``adamw`` (decoupled weight decay: each step shrinks the weights by
            ``lr * weight_decay`` beside Adam's update) or ``adam`` (the paper's preset: Adam
            with L2 coupled into the gradient, ``g + weight_decay * w``, which then goes through
            Adam's per-weight normalisation, so for a weight with small gradients the decay
            term can dominate its update).
        lr: Learning rate (of the backbone, and of every group whose own rate is 0).
        lr_projector: Learning rate of the fusion projector (0: ``lr``).
        lr_head: Learning rate of the AU head(s), with the vision head and the readout mix
            (0: ``lr``).
        lr_lora: Learning rate of the reader's trainable weights (0: ``lr``): the LLM's LoRA
            adapters, or its norm weights under ``model.llm.tuning: norms``, or a control
            reader's layers (``model.reader``).
        weight_decay: Weight decay (see ``optimizer``).
        epochs: Training epochs.
        batch_size: Clips per step.
        scheduler: ``constant``, ``cosine`` or ``linear`` (decay to zero after warm-up).
        warmup_epochs: Linear warm-up length.
        grad_clip: Maximum gradient norm (0 disables clipping).
        loss: ``asl`` (asymmetric loss, the paper's), ``bce`` (with per-AU pos_weight from the
            training labels), or ``focal``.
        asl_gamma_neg: ASL focusing parameter of negatives.
        asl_gamma_pos: ASL focusing parameter of positives.
        asl_clip: ASL probability margin of negatives.
        focal_gamma: Focal loss gamma.
        loss_reduction: ``mean`` (over clips and AUs) or ``sum`` (the AU-LLM reference code sums,
            which scales the gradient with the batch size).
        val_fraction: Fraction of training subjects held out as an inner validation split (never
            the test subject); 0 disables it.
        patience: Early-stopping patience in epochs on the inner validation loss (0 disables).
        precision: ``auto`` (bfloat16 where the device computes it natively: GPUs from
            compute capability 8.0, CPUs with AVX512_BF16/AMX or Arm BF16; float32 elsewhere),
            ``fp32`` (exact and reproducible everywhere) or ``bf16`` (forced; emulated, slowly,
            where not native). Under bfloat16 the frozen LLM base is stored in bfloat16 and the
            forward runs under autocast; trainable weights, the LED filter, logits and losses
            stay float32 (see ``docs/precision.md``). Logged at start and recorded in
            ``run.json`` and in saved models.
        deterministic: On CUDA, deterministic algorithms (``torch.use_deterministic_algorithms``,
            no cuDNN benchmarking, ``CUBLAS_WORKSPACE_CONFIG``) so a seed gives the same run;
            false allows faster nondeterministic kernels. CPU runs are deterministic either way.
        device: ``auto`` (CUDA when available; the choice is logged), ``cpu`` or ``cuda``.
        compile: Compile the backbone and projector with ``torch.compile`` (opt-in; the first
            training step then includes the compilation, logged and recorded as
            ``first_step_seconds``).
        vision_weight: Weight ``lambda`` of the vision head's AU loss (``model.vision_head``):
            the loss is ``L(head(reader)) + lambda * L(vision_head(visual tokens))``; 0 without
            a vision head.
        text_weight: Weight of the text answers' loss (teacher-forced cross-entropy on the
            answer; ``model.head: text`` or ``both``).
        linear_weight: Weight of the linear head's AU loss when ``model.head: both``.
        format_weights: Empty (the answer formats of ``model.text.formats`` in turn, clip by
            clip), or one weight per format: each training step then draws one format for the
            whole batch with these weights (see :func:`au_llm.param_groups.batch_formats`).
        first_format_epochs: A format curriculum: the first format of ``model.text.formats``
            alone for this many epochs, then every format as ``format_weights`` says (0: every
            format from the first step). Validation losses use every format.
        explain_weight: Weight of the explanations' loss (teacher-forced cross-entropy on each
            clip's description target, :mod:`au_llm.explain`) with ``model.explain``; > 0.
        stage_epochs: Empty: every part trains together for ``epochs`` (AU-LLM's). Three
            numbers ``[a, b, c]`` summing to ``epochs``: a staged schedule, each stage with a
            fresh optimizer and its own warm-up and schedule: ``a`` epochs of the vision side
            alone (backbone, projector and vision head on the vision head's loss; the reader is
            not run), then ``b`` epochs of the projector and the heads with the backbone and the
            reader frozen (the backbone in eval mode), then ``c`` epochs of everything. Needs
            ``model.vision_head`` when ``a > 0``; not with early stopping.
        num_threads: CPU threads for torch. The default 1 is fast and reproducible on small
            shared machines (on a busy 2-core machine a second thread made a training step
            10-20x slower, and results change slightly with the thread count); 0 leaves torch's
            default (all cores), worth trying on a dedicated many-core CPU.
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
    lr_projector: float = 0.0
    lr_head: float = 0.0
    lr_lora: float = 0.0
    weight_decay: float = 0.01
    epochs: int = 30
    batch_size: int = 32
    scheduler: str = "cosine"
    warmup_epochs: int = 0
    grad_clip: float = 1.0
    loss: str = "asl"
    asl_gamma_neg: float = 4.0
    asl_gamma_pos: float = 0.0
    asl_clip: float = 0.05
    focal_gamma: float = 2.0
    loss_reduction: str = "mean"
    val_fraction: float = 0.0
    patience: int = 0
    precision: str = "auto"
    deterministic: bool = True
    device: str = "auto"
    compile: bool = False
    vision_weight: float = 0.0
    text_weight: float = 1.0
    linear_weight: float = 1.0
    format_weights: list[float] = field(default_factory=list)
    first_format_epochs: int = 0
    explain_weight: float = 1.0
    stage_epochs: list[int] = field(default_factory=list)
    num_threads: int = 1

    def __post_init__(self) -> None:
        check_choice("train", "optimizer", self.optimizer, Optimizer)
        check_choice("train", "scheduler", self.scheduler, Scheduler)
        check_choice("train", "loss", self.loss, Loss)
        check_choice("train", "loss_reduction", self.loss_reduction, LossReduction)
        if not 0 <= self.asl_clip < 1:
            raise ConfigError(f"train.asl_clip = {self.asl_clip}: expected 0 <= clip < 1")
        check_choice("train", "precision", self.precision, PRECISIONS)
        check_choice("train", "device", self.device, Device)
        check_positive("train", "lr", self.lr)
        for name in ("lr_projector", "lr_head", "lr_lora"):
            check_positive("train", name, getattr(self, name), allow_zero=True)
        check_positive("train", "epochs", self.epochs)
        check_positive("train", "batch_size", self.batch_size)
        check_positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        check_positive("train", "grad_clip", self.grad_clip, allow_zero=True)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction = {self.val_fraction}: expected 0 <= f < 1")
        if self.patience > 0 and self.val_fraction == 0:
            raise ConfigError(
                f"train.patience = {self.patience} needs an inner validation split: "
                "set train.val_fraction > 0"
            )
        for name in ("vision_weight", "text_weight", "linear_weight", "first_format_epochs"):
            check_positive("train", name, getattr(self, name), allow_zero=True)
        check_positive("train", "explain_weight", self.explain_weight)
        if self.format_weights and (min(self.format_weights) < 0 or sum(self.format_weights) <= 0):
            raise ConfigError(
                f"train.format_weights = {self.format_weights}: expected weights >= 0, not all 0 "
                "(or [] for the formats in turn)"
            )
        if self.stage_epochs and (
            len(self.stage_epochs) != 3
            or min(self.stage_epochs) < 0
            or sum(self.stage_epochs) != self.epochs
        ):
            raise ConfigError(
                f"train.stage_epochs = {self.stage_epochs}: expected [] or three epoch counts "
                f">= 0 (vision, projector and heads, everything) summing to train.epochs = "
                f"{self.epochs}"
            )
        if self.stage_epochs and self.patience > 0:
            raise ConfigError("train.stage_epochs: not with early stopping (train.patience = 0)")
