"""Typed experiment configuration, loaded from YAML with ``key=value`` overrides.

Every section is a dataclass with docstrings and ``__post_init__`` validation. Files are read with
OmegaConf structured configs, so an unknown key or a value of the wrong type is an error that names
the key and the file. ``load_config("configs/x.yaml", ["train.lr=1e-4"])`` returns a validated
:class:`ExperimentConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

DEFAULT_PROMPT = "Analyse the following fused facial video features for action unit classification."

# AU sets of the MEB benchmark (``dataset_aus``), used by AU-LLM.
DATASET_AUS: dict[str, list[int]] = {
    "casme2": [1, 2, 4, 7, 12, 14, 15, 17],
    "samm": [2, 4, 7, 12],
}


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def _check_choice(section: str, key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{section}.{key} = {value!r}: expected one of {', '.join(choices)}")


def _check_positive(section: str, key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{section}.{key} = {value!r}: expected a value {bound}")


@dataclass
class DataConfig:
    """Which clips an experiment uses.

    Attributes:
        manifests: Manifest CSVs whose clips are trained on (LOSO folds are drawn from their
            union; for ``cross`` they are the source domain).
        target_manifests: Manifest CSVs of the target domain (``cross`` only).
        aus: AU numbers to detect. Empty means the dataset's published set (``DATASET_AUS``), or
            for ``cross`` the AUs shared by source and target sets.
        cache_dir: Folder of the aligned-clip cache.
    """

    manifests: list[str] = field(default_factory=list)
    target_manifests: list[str] = field(default_factory=list)
    aus: list[int] = field(default_factory=list)
    cache_dir: str = ".cache/clips"

    def __post_init__(self) -> None:
        for au in self.aus:
            if not 1 <= au <= 99:
                raise ConfigError(f"data.aus: AU {au} is not an AU number (1-99)")


@dataclass
class PreprocessConfig:
    """Face alignment and the aligned-clip cache.

    Attributes:
        size: Side of the square aligned crop in pixels (64, 112, 128, ...).
        color: ``gray`` (one channel) or ``rgb`` (three channels).
        margin: Extra border around the landmark template, as a fraction of the crop side.
        mode: ``clip`` estimates one similarity transform per clip from its first frames and
            applies it to every frame (the face is still, the micro-movement is kept); ``frame``
            estimates one per frame and smooths them over time (recordings with head motion);
            ``none`` only centre-crops and resizes.
        ref_frames: Number of early frames whose landmarks are combined (median) for ``clip``.
        smooth: Temporal smoothing window, in frames, of per-frame transforms for ``frame``.
        landmarker_model: A user's own mediapipe ``face_landmarker.task`` bundle; empty uses the
            installed, sha256-verified copy (``python -m au_llm.assets``).
        num_faces: Most faces the landmarker looks for in a frame; the largest one is aligned.
        max_face_search: Frames tried after the onset when no face is found, before falling back
            to a centre crop.
        workers: Parallel worker processes (0 runs in the calling process).
    """

    size: int = 64
    color: str = "gray"
    margin: float = 0.15
    mode: str = "clip"
    ref_frames: int = 3
    smooth: int = 5
    landmarker_model: str = ""
    num_faces: int = 1
    max_face_search: int = 5
    workers: int = 2

    def __post_init__(self) -> None:
        if not 16 <= self.size <= 512:
            raise ConfigError(f"preprocess.size = {self.size}: expected 16..512 pixels")
        _check_choice("preprocess", "color", self.color, ("gray", "rgb"))
        _check_choice("preprocess", "mode", self.mode, ("clip", "frame", "none"))
        _check_positive("preprocess", "num_faces", self.num_faces)
        if not 0 <= self.margin < 1:
            raise ConfigError(f"preprocess.margin = {self.margin}: expected 0 <= margin < 1")
        _check_positive("preprocess", "ref_frames", self.ref_frames)
        _check_positive("preprocess", "smooth", self.smooth)
        _check_positive("preprocess", "workers", self.workers, allow_zero=True)

    @property
    def channels(self) -> int:
        """Number of image channels of an aligned clip."""
        return 1 if self.color == "gray" else 3


@dataclass
class SamplingConfig:
    """Temporal sampling of cached clips, done when clips are loaded.

    Attributes:
        n_frames: Frames per sampled clip.
        train: Strategy for training clips: ``uniform`` (over onset..offset), ``onset_apex``, or
            ``random_end`` (onset to a random end frame, AU-LLM's augmentation).
        test: Strategy for evaluation clips (``uniform`` in AU-LLM).
    """

    n_frames: int = 6
    train: str = "random_end"
    test: str = "uniform"

    def __post_init__(self) -> None:
        strategies = ("uniform", "onset_apex", "random_end")
        _check_choice("sampling", "train", self.train, strategies)
        _check_choice("sampling", "test", self.test, strategies)
        if self.n_frames < 2:
            raise ConfigError(f"sampling.n_frames = {self.n_frames}: expected at least 2")


@dataclass
class BackboneConfig:
    """The 3D-CNN that turns a clip into mid- and high-level features.

    Attributes:
        name: ``led3dcnn`` (AU-LLM's backbone), or a pytorchvideo model built without pretrained
            weights: ``x3d``, ``r2plus1d``, ``slow``, ``csn``.
        dropout: Dropout rate inside the backbone.
        high_dim: Width of the high-level feature of ``led3dcnn``.
        pretrained_path: Optional local state-dict file loaded into the backbone.
        mid_pool: Output size (T, H, W) of adaptive average pooling applied to the mid map before
            it is flattened; empty keeps the full map (the paper's form for ``led3dcnn``).
        depth: Depth of the pytorchvideo ResNet-family models (``slow``, ``r2plus1d``, ``csn``).
        led_add_input: ``led3dcnn`` only: add the input to the filtered signal (EVM form,
            ``x + alpha * (lowpass_r1 - lowpass_r2)``); false keeps the reference's motion-only
            form ``alpha * (lowpass_r1 - lowpass_r2)``.
        builder_kwargs: Extra keyword arguments for the pytorchvideo builder (e.g.
            ``width_factor``/``depth_factor`` for ``x3d``, ``stem_dim_out`` for the ResNet family).
    """

    name: str = "led3dcnn"
    dropout: float = 0.3
    high_dim: int = 256
    pretrained_path: str | None = None
    mid_pool: list[int] = field(default_factory=list)
    depth: int = 50
    led_add_input: bool = False
    builder_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_choice(
            "model.backbone", "name", self.name, ("led3dcnn", "x3d", "r2plus1d", "slow", "csn")
        )
        if self.name in ("slow", "r2plus1d", "csn") and self.depth not in (50, 101, 152):
            raise ConfigError(f"model.backbone.depth = {self.depth}: expected 50, 101 or 152")
        _check_positive("model.backbone", "high_dim", self.high_dim)
        if self.mid_pool and len(self.mid_pool) != 3:
            raise ConfigError(f"model.backbone.mid_pool = {self.mid_pool}: expected [T, H, W]")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"model.backbone.dropout = {self.dropout}: expected 0 <= p < 1")


@dataclass
class ProjectorConfig:
    """The Enhanced Fusion Projector: concat(mid, high) -> MLP -> one LLM token.

    Attributes:
        hidden: Hidden width; 0 means the paper's (in + out) / 2.
        activation: ``gelu`` or ``relu``.
        dropout: Dropout between the two linear layers.
        layer_norm: Apply LayerNorm to the output token.
    """

    hidden: int = 0
    activation: str = "gelu"
    dropout: float = 0.1
    layer_norm: bool = False

    def __post_init__(self) -> None:
        _check_choice("model.projector", "activation", self.activation, ("gelu", "relu"))
        _check_positive("model.projector", "hidden", self.hidden, allow_zero=True)


@dataclass
class LoraConfig:
    """LoRA adapters on the frozen LLM (peft).

    Attributes:
        r: Rank.
        alpha: Scaling numerator (the update is scaled by alpha / r).
        dropout: Dropout on the LoRA input.
        target_modules: Names of the linear layers that get adapters.
    """

    r: int = 16
    alpha: int = 32
    dropout: float = 0.1
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])

    def __post_init__(self) -> None:
        _check_positive("model.llm.lora", "r", self.r)
        if not self.target_modules:
            raise ConfigError("model.llm.lora.target_modules: expected at least one module name")


@dataclass
class TinyLLMConfig:
    """A random-initialised causal LM for tests and the demo (no download).

    Attributes:
        arch: ``qwen2`` or ``llama``.
        hidden_size: Model width.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention).
        intermediate_size: MLP width.
        vocab_size: Vocabulary of the built-in word tokenizer.
        seed: Seed of the random base weights (the frozen base is the same in every fold).
    """

    arch: str = "qwen2"
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 256
    vocab_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        _check_choice("model.llm.tiny", "arch", self.arch, ("qwen2", "llama"))
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ConfigError(
                "model.llm.tiny: hidden_size must be divisible by num_heads and num_heads by "
                f"num_kv_heads (got {self.hidden_size}, {self.num_heads}, {self.num_kv_heads})"
            )


@dataclass
class LLMConfig:
    """The causal LLM that reads the prompt and the visual token.

    Attributes:
        source: ``tiny`` (random init from ``tiny``), ``path`` (a local Hugging Face causal LM
            directory at ``path``), or ``none`` (the ablation: no LLM, a linear head reads the
            fused features).
        path: Local model directory for ``source: path``.
        tiny: Shape of the random model for ``source: tiny``.
        prompt: Prompt text. If it contains ``placeholder``, the visual tokens go there;
            otherwise the visual token is appended after the prompt (the paper's layout).
        placeholder: Marker of a visual token inside ``prompt``.
        n_visual_tokens: Visual tokens per clip (the paper uses one).
        lora: LoRA settings.
        bf16: On GPU, run the frozen base in bfloat16 (trainable weights stay float32).
        fast_path: Use the prompt-cache fast path (set false only to compare with the
            straightforward path).
    """

    source: str = "tiny"
    path: str | None = None
    tiny: TinyLLMConfig = field(default_factory=TinyLLMConfig)
    prompt: str = DEFAULT_PROMPT
    placeholder: str = "<video>"
    n_visual_tokens: int = 1
    lora: LoraConfig = field(default_factory=LoraConfig)
    bf16: bool = True
    fast_path: bool = True

    def __post_init__(self) -> None:
        _check_choice("model.llm", "source", self.source, ("tiny", "path", "none"))
        if self.source == "path" and not self.path:
            raise ConfigError("model.llm.source = 'path' needs model.llm.path (a local directory)")
        _check_positive("model.llm", "n_visual_tokens", self.n_visual_tokens)


@dataclass
class ModelConfig:
    """The whole AU-LLM model: backbone -> projector -> LLM -> linear AU head."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    projector: ProjectorConfig = field(default_factory=ProjectorConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)


@dataclass
class TrainConfig:
    """Optimisation of one model (one fold).

    Attributes:
        optimizer: ``adamw`` or ``adam`` (the paper's preset).
        lr: Learning rate.
        weight_decay: Weight decay.
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
        bf16: bfloat16 autocast on GPU.
        device: ``auto``, ``cpu`` or ``cuda``.
        num_threads: CPU threads for torch (0 leaves torch's default).
    """

    optimizer: str = "adamw"
    lr: float = 1e-4
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
    bf16: bool = True
    device: str = "auto"
    num_threads: int = 0

    def __post_init__(self) -> None:
        _check_choice("train", "optimizer", self.optimizer, ("adamw", "adam"))
        _check_choice("train", "scheduler", self.scheduler, ("constant", "cosine", "linear"))
        _check_choice("train", "loss", self.loss, ("asl", "bce", "focal"))
        _check_choice("train", "loss_reduction", self.loss_reduction, ("mean", "sum"))
        if not 0 <= self.asl_clip < 1:
            raise ConfigError(f"train.asl_clip = {self.asl_clip}: expected 0 <= clip < 1")
        _check_choice("train", "device", self.device, ("auto", "cpu", "cuda"))
        _check_positive("train", "lr", self.lr)
        _check_positive("train", "epochs", self.epochs)
        _check_positive("train", "batch_size", self.batch_size)
        _check_positive("train", "weight_decay", self.weight_decay, allow_zero=True)
        _check_positive("train", "grad_clip", self.grad_clip, allow_zero=True)
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"train.val_fraction = {self.val_fraction}: expected 0 <= f < 1")
        if self.patience > 0 and self.val_fraction == 0:
            raise ConfigError(
                f"train.patience = {self.patience} needs an inner validation split: "
                "set train.val_fraction > 0"
            )


@dataclass
class EvalConfig:
    """How scores become decisions.

    Attributes:
        threshold: ``fixed`` (``fixed_threshold`` for every AU), ``train`` (per AU, chosen on the
            training clips' own predictions), or ``test-oracle`` (per AU, chosen on the pooled test
            predictions over ``oracle_grid``: AU-LLM's reference code; optimistic).
        fixed_threshold: Threshold of the ``fixed`` policy.
        oracle_grid: Start, stop (inclusive) and step of the threshold grid of ``train`` and
            ``test-oracle``.
    """

    threshold: str = "fixed"
    fixed_threshold: float = 0.5
    oracle_grid: list[float] = field(default_factory=lambda: [0.10, 0.85, 0.05])

    def __post_init__(self) -> None:
        _check_choice("eval", "threshold", self.threshold, ("fixed", "train", "test-oracle"))
        if not 0 < self.fixed_threshold < 1:
            raise ConfigError(f"eval.fixed_threshold = {self.fixed_threshold}: expected (0, 1)")
        if len(self.oracle_grid) != 3:
            raise ConfigError(
                f"eval.oracle_grid = {self.oracle_grid}: expected [start, stop, step]"
            )


@dataclass
class ExperimentConfig:
    """One experiment: data, preprocessing, model, training, evaluation and protocol.

    Attributes:
        name: Run name; outputs go to ``<out_dir>/<name>/``.
        protocol: ``loso`` (leave one subject out) or ``cross`` (train on ``data.manifests``, test
            on ``data.target_manifests``).
        out_dir: Parent folder of run directories.
        seeds: The whole protocol is repeated once per seed; metrics report mean and std.
        strict: Treat any bad row or failed clip as an error instead of skipping it.
    """

    name: str = "experiment"
    protocol: str = "loso"
    out_dir: str = "runs"
    seeds: list[int] = field(default_factory=lambda: [1])
    strict: bool = False
    data: DataConfig = field(default_factory=DataConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        _check_choice("", "protocol", self.protocol, ("loso", "cross"))
        if not self.seeds:
            raise ConfigError("seeds: expected at least one seed")
        if self.protocol == "cross" and not self.data.target_manifests:
            raise ConfigError("protocol 'cross' needs data.target_manifests")

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain nested dicts and lists."""
        return asdict(self)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment config from YAML and apply ``key=value`` overrides.

    Args:
        path: YAML file, or None to start from the defaults.
        overrides: Dotted overrides such as ``["train.lr=1e-4", "seeds=[1,2]"]``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: For an unreadable file, an unknown key, a wrong type or an invalid value; the
            message names the file (or "command line") and the key.
    """
    schema = OmegaConf.structured(ExperimentConfig)
    source = "defaults"
    try:
        merged = schema
        if path is not None:
            source = str(path)
            loaded = OmegaConf.load(path)
            merged = OmegaConf.merge(merged, loaded)
        if overrides:
            source = "command line"
            bad = [o for o in overrides if "=" not in o]
            if bad:
                raise ConfigError(f"override {bad[0]!r}: expected key=value")
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides)))
        cfg = OmegaConf.to_object(merged)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None) or "?"
        msg = str(exc).splitlines()[0]
        raise ConfigError(f"{source}: key {key!r}: {msg}") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read config file: {exc}") from None
    assert isinstance(cfg, ExperimentConfig)
    return cfg


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    from au_llm.io_utils import atomic_write_text

    atomic_write_text(Path(path), OmegaConf.to_yaml(OmegaConf.structured(cfg)))


def config_from_dict(data: dict[str, Any]) -> ExperimentConfig:
    """Build a validated configuration from nested dicts (e.g. a checkpoint's saved config)."""
    merged = OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.create(data))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, ExperimentConfig)
    return cfg
