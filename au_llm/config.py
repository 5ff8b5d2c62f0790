"""Typed experiment configuration, loaded from YAML with ``key=value`` overrides.

Every section is a dataclass with docstrings and ``__post_init__`` validation. Files are read with
OmegaConf structured configs, so an unknown key or a value of the wrong type is an error that names
the key and the file. ``load_config("configs/x.yaml", ["train.lr=1e-4"])`` returns a validated
:class:`ExperimentConfig`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from au_llm.config_checks import (
    DATASET_AUS,
    DEFAULT_PROMPT,
    SAMPLING_STRATEGIES,
    AlignMode,
    ClipInput,
    Color,
    ConfigError,
    LaunchMode,
    ThresholdPolicy,
    check_choice,
    check_positive,
    check_values,
)
from au_llm.config_generation import GenerationConfig
from au_llm.config_keys import check_retired, upgrade_saved
from au_llm.config_model import (
    BackboneConfig,
    LLMConfig,
    LoraConfig,
    ModelConfig,
    ProjectorConfig,
    TextConfig,
    TinyLLMConfig,
)
from au_llm.config_train import TrainConfig
from au_llm.config_yaml import blame_errors, merge_overrides, read_yaml
from au_llm.data.au_sets import UNCODED_RULES
from au_llm.protocols import PROTOCOLS
from au_llm.spot.config import SpotConfig

T = TypeVar("T")

__all__ = [
    "DATASET_AUS",
    "DEFAULT_PROMPT",
    "SAMPLING_STRATEGIES",
    "BackboneConfig",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "GenerationConfig",
    "LLMConfig",
    "LaunchConfig",
    "LoraConfig",
    "ModelConfig",
    "PreprocessConfig",
    "ProjectorConfig",
    "SamplingConfig",
    "TextConfig",
    "TinyLLMConfig",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "save_config",
]


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
        uncoded_aus: ``negative`` (an AU not named in a clip's cell is absent) or ``unknown``
            (an AU outside the clip's dataset set, ``au_llm.data.au_sets``, is unknown: left out
            of the loss and the metrics for that clip).
    """

    manifests: list[str] = field(default_factory=list)
    target_manifests: list[str] = field(default_factory=list)
    aus: list[int] = field(default_factory=list)
    cache_dir: str = ".cache/clips"
    uncoded_aus: str = "negative"

    def __post_init__(self) -> None:
        from au_llm.data.au_codes import FACS_RANGES, is_facs_code

        check_choice("data", "uncoded_aus", self.uncoded_aus, UNCODED_RULES)
        for au in self.aus:
            if not is_facs_code(au):
                raise ConfigError(f"data.aus: AU {au} is not a FACS AU code ({FACS_RANGES})")


@dataclass
class PreprocessConfig:
    """Face alignment and the aligned-clip cache.

    Attributes:
        size: Side of the square aligned crop in pixels (64, 112, 128, ...).
        color: ``gray`` (one channel) or ``rgb`` (three channels).
        margin: Extra border around the landmark template, as a fraction of the crop side.
        align: ``clip`` estimates one similarity transform per clip from its first frames and
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
        input: What the model reads per sampled frame: ``frames`` (the aligned pixels), ``flow``
            (TV-L1 optical flow from the onset: u, v and optical strain, see
            :mod:`au_llm.preprocess.flow`) or ``both`` (pixels, then the 3 flow channels).
    """

    size: int = 64
    color: str = "gray"
    margin: float = 0.15
    align: str = "clip"
    ref_frames: int = 3
    smooth: int = 5
    landmarker_model: str = ""
    num_faces: int = 1
    max_face_search: int = 5
    workers: int = 2
    input: str = "frames"

    def __post_init__(self) -> None:
        check_choice("preprocess", "input", self.input, ClipInput)
        if not 16 <= self.size <= 512:
            raise ConfigError(f"preprocess.size = {self.size}: expected 16..512 pixels")
        check_choice("preprocess", "color", self.color, Color)
        check_choice("preprocess", "align", self.align, AlignMode)
        check_positive("preprocess", "num_faces", self.num_faces)
        if not 0 <= self.margin < 1:
            raise ConfigError(f"preprocess.margin = {self.margin}: expected 0 <= margin < 1")
        check_positive("preprocess", "ref_frames", self.ref_frames)
        check_positive("preprocess", "smooth", self.smooth)
        check_positive("preprocess", "workers", self.workers, allow_zero=True)

    @property
    def channels(self) -> int:
        """Number of image channels of an aligned clip."""
        return 1 if self.color == "gray" else 3

    @property
    def input_channels(self) -> int:
        """Channels of the model input: the frames', 3 flow channels (u, v, strain), or both."""
        return {"frames": self.channels, "flow": 3, "both": self.channels + 3}[self.input]


@dataclass
class SamplingConfig:
    """Temporal sampling of cached clips, done when clips are loaded.

    Attributes:
        frames_per_clip: Frames per sampled clip (the model's input length ``T``).
        train_strategy: Strategy for training clips: ``uniform`` (over onset..offset),
            ``onset_apex``, or ``random_end`` (onset to a random end frame, AU-LLM's augmentation).
        test_strategy: Strategy for evaluation clips (``uniform`` in AU-LLM).
    """

    frames_per_clip: int = 6
    train_strategy: str = "random_end"
    test_strategy: str = "uniform"

    def __post_init__(self) -> None:
        check_choice("sampling", "train_strategy", self.train_strategy, SAMPLING_STRATEGIES)
        check_choice("sampling", "test_strategy", self.test_strategy, SAMPLING_STRATEGIES)
        if self.frames_per_clip < 2:
            raise ConfigError(
                f"sampling.frames_per_clip = {self.frames_per_clip}: expected at least 2"
            )


@dataclass
class EvalConfig:
    """How scores become decisions.

    Attributes:
        threshold_policy: ``fixed`` (``fixed_threshold`` for every AU), ``train`` (per AU,
            chosen on the training clips' own predictions), ``val`` (per AU, chosen on the
            predictions of the inner validation subjects, ``train.val_fraction``, which are
            never trained on; ``fixed_threshold`` for an AU without a positive there), or
            ``test-oracle`` (per AU, chosen on the pooled test predictions over
            ``threshold_grid``: AU-LLM's reference code; optimistic).
        fixed_threshold: Threshold of the ``fixed`` policy.
        threshold_grid: Start, stop (inclusive) and step of the threshold grid of ``train`` and
            ``test-oracle``.
    """

    threshold_policy: str = "fixed"
    fixed_threshold: float = 0.5
    threshold_grid: list[float] = field(default_factory=lambda: [0.10, 0.85, 0.05])

    def __post_init__(self) -> None:
        check_choice("eval", "threshold_policy", self.threshold_policy, ThresholdPolicy)
        if not 0 < self.fixed_threshold < 1:
            raise ConfigError(f"eval.fixed_threshold = {self.fixed_threshold}: expected (0, 1)")
        if len(self.threshold_grid) != 3:
            raise ConfigError(
                f"eval.threshold_grid = {self.threshold_grid}: expected [start, stop, step]"
            )


def slurm_minutes(text: str) -> int:
    """Minutes (rounded up) of a SLURM time limit ``HH:MM:SS`` or ``D-HH:MM:SS``.

    A bare number is refused: YAML reads an unquoted ``12:00:00`` as the number 43200.
    """
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    if len(parts) != 3 or not all(p.isdigit() for p in [*parts, *([days] if days else [])]):
        raise ConfigError(
            f"launch.time = {text!r}: expected HH:MM:SS or D-HH:MM:SS, quoted in YAML "
            "(time: '12:00:00'; unquoted, YAML reads 12:00:00 as the number 43200)"
        )
    hours, minutes, seconds = (int(p) for p in parts)
    total = (int(days or 0) * 24 + hours) * 60 + minutes + (seconds + 59) // 60
    if total <= 0:
        raise ConfigError(f"launch.time = {text!r}: expected a positive time limit")
    return total


def parse_devices(text: str) -> list[int | None]:
    """Local workers of ``launch.devices``: ``0,1,3`` -> GPU indices, ``cpu:2`` -> [None, None]."""
    text = text.strip()
    if text.startswith("cpu:") and text[4:].isdigit() and int(text[4:]) > 0:
        return [None] * int(text[4:])
    parts = [p.strip() for p in text.split(",")]
    if not text or not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise ConfigError(
            f"launch.devices = {text!r}: expected distinct GPU indices (0,1,2,3) or cpu:N"
        )
    return [int(p) for p in parts]


@dataclass
class LaunchConfig:
    """How the seeds x folds of a protocol are spread over processes (``--launch``).

    Every process claims a fold with a lock file before training it: no fold is trained twice at
    once, and finished folds are skipped.

    Attributes:
        mode: ``none`` (this process runs every fold), ``local`` (one worker per entry of
            ``devices``, then the report here) or ``slurm`` (a SLURM job array through
            submitit, then the report in a job that depends on it).
        jobs: ``slurm``: array tasks the work items are dealt to round-robin (0: one per item).
            A task that finished its items goes on with items nobody claimed.
        devices: ``local``: GPU indices ``0,1,2,3`` (a worker pinned to each with
            ``CUDA_VISIBLE_DEVICES``; indices count the GPUs this process sees, so under an
            inherited ``CUDA_VISIBLE_DEVICES=5,7`` index 1 is GPU 7; an index that does not
            exist is an error) or ``cpu:N`` (N CPU workers).
        gpus_per_job: ``slurm``: GPUs per task (``--gres=gpu:N``); 0 for CPU-only tasks.
        cpus_per_job: ``slurm``: CPUs per task (0: the cluster's default).
        mem_gb: ``slurm``: memory per task in GB (0: the cluster's default).
        partition: ``slurm``: partition (empty: the cluster's default).
        time: ``slurm``: time limit per task, ``HH:MM:SS`` or ``D-HH:MM:SS`` (quoted in YAML).
        array_parallelism: ``slurm``: most tasks running at once (0: no limit).
        slurm_extra: ``slurm``: more ``#SBATCH`` options, e.g. ``{account: lab, qos: normal}``.
        setup: ``slurm``: shell lines run before Python, e.g. ``["module load cuda/12.4"]``.
        lock_timeout: Seconds without a refresh (done every ``lock_timeout / 10``) after which
            a fold's claim is stale and taken over; a dead process's claim on the same host is
            taken over at once.
    """

    mode: str = "none"
    jobs: int = 0
    devices: str = ""
    gpus_per_job: int = 1
    cpus_per_job: int = 0
    mem_gb: float = 0.0
    partition: str = ""
    time: str = "12:00:00"
    array_parallelism: int = 0
    slurm_extra: dict[str, str] = field(default_factory=dict)
    setup: list[str] = field(default_factory=list)
    lock_timeout: float = 600.0

    def __post_init__(self) -> None:
        check_choice("launch", "mode", self.mode, LaunchMode)
        for key in ("jobs", "gpus_per_job", "cpus_per_job", "mem_gb", "array_parallelism"):
            check_positive("launch", key, getattr(self, key), allow_zero=True)
        check_positive("launch", "lock_timeout", self.lock_timeout)
        slurm_minutes(self.time)
        if self.devices or self.mode == "local":
            parse_devices(self.devices)


@dataclass
class ExperimentConfig:
    """One experiment: data, preprocessing, model, training, evaluation and protocol.

    Attributes:
        name: Run name; outputs go to ``<out_dir>/<name>/``.
        protocol: A name of :data:`~au_llm.protocols.PROTOCOLS`: ``loso`` (leave one subject
            out; with several datasets, subjects are told apart by dataset), ``lodo`` (leave one
            dataset out, over the datasets of ``data.manifests``), ``cross`` (train on
            ``data.manifests``, test on ``data.target_manifests``) or ``megc`` (leave one
            subject out over long-video manifests: the held-out subject's recordings are
            spotted, then the spotted intervals' AUs named; see ``docs/spotting.md``).
        out_dir: Parent folder of run directories.
        seeds: The whole protocol is repeated once per seed; metrics report mean and std.
        strict: Treat any bad row or failed clip as an error instead of skipping it.
        generation: How the text answers and explanations are decoded.
        launch: How the folds are spread over processes, GPUs and cluster nodes (settings that
            change how a run executes, not what it computes).
        spot: The spotter's settings under ``protocol: megc`` (fixed for every fold: nothing
            is tuned on a held-out subject).
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
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    spot: SpotConfig = field(default_factory=SpotConfig)

    def __post_init__(self) -> None:
        check_choice("", "protocol", self.protocol, PROTOCOLS)
        if not self.seeds:
            raise ConfigError("seeds: expected at least one seed")
        if PROTOCOLS[self.protocol].target and not self.data.target_manifests:
            raise ConfigError(f"protocol {self.protocol!r} needs data.target_manifests")
        check_vision_head(self.model, self.train)
        check_format_weights(self.model, self.train)
        if self.eval.threshold_policy == "val" and self.train.val_fraction == 0:
            raise ConfigError(
                "eval.threshold_policy = val chooses thresholds on the inner validation "
                "subjects: set train.val_fraction > 0"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the configuration as plain nested dicts and lists."""
        return asdict(self)


def check_vision_head(model: ModelConfig, train: TrainConfig) -> None:
    """Raise unless the vision head exists exactly when something trains it.

    ``train.vision_weight > 0`` and a first stage of ``train.stage_epochs`` need
    ``model.vision_head``; a vision head needs one of them (it would be reported untrained).
    """
    trained = train.vision_weight > 0 or bool(train.stage_epochs and train.stage_epochs[0] > 0)
    if model.vision_head and not trained:
        raise ConfigError(
            "model.vision_head is trained only with train.vision_weight > 0 or a first stage "
            "of train.stage_epochs; set one, or model.vision_head: false"
        )
    if trained and not model.vision_head:
        raise ConfigError(
            f"train.vision_weight = {train.vision_weight} / train.stage_epochs = "
            f"{train.stage_epochs}: the vision loss needs model.vision_head: true"
        )


def check_format_weights(model: ModelConfig, train: TrainConfig) -> None:
    """Raise unless ``train.format_weights`` is empty or has one weight per answer format."""
    formats, weights = model.text.formats, train.format_weights
    if weights and len(weights) != len(formats):
        raise ConfigError(
            f"train.format_weights = {weights}: expected one weight per format of "
            f"model.text.formats = {formats} (or [] for the formats in turn)"
        )


def _validated(merged: Any, source: str) -> ExperimentConfig:
    with blame_errors(source):
        cfg = OmegaConf.to_object(merged)
        assert isinstance(cfg, ExperimentConfig)
        check_values(cfg)
    return cfg


def load_config(
    path: str | Path | None, overrides: list[str] | None = None, *, saved: bool = False
) -> ExperimentConfig:
    """Load an experiment config from YAML and apply ``key=value`` overrides.

    The file is validated on its own first, so an error in it is reported against the file even
    when overrides are given; the overrides are then applied and validated.

    Args:
        path: YAML file, or None to start from the defaults.
        overrides: Dotted overrides such as ``["train.lr=1e-4", "seeds=[1,2]"]``.
        saved: ``path`` is a config au-llm wrote (a run folder's ``config.yaml``): keys of
            earlier versions are read as their replacements instead of being refused
            (:func:`~au_llm.config_keys.upgrade_saved`).

    Returns:
        The validated configuration.

    Raises:
        ConfigError: For an unreadable file, a malformed override, an unknown key, a wrong type,
            an invalid value or a number that is not finite; the message names the file (or
            "command line") and the key.
    """
    merged = OmegaConf.structured(ExperimentConfig)
    source = "defaults"
    if path is not None:
        source = str(path)
        with blame_errors(source):
            loaded = OmegaConf.to_container(read_yaml(Path(path)))
            if saved:
                loaded = upgrade_saved(loaded)
        check_retired(loaded, source)
        with blame_errors(source):
            merged = OmegaConf.merge(merged, OmegaConf.create(loaded))
        cfg = _validated(merged, source)
    if overrides:
        source = "command line"
        merged = merge_overrides(merged, overrides)
    if path is None or overrides:
        cfg = _validated(merged, source)
    return cfg


def config_text(cfg: ExperimentConfig) -> str:
    """The resolved configuration as YAML (what :func:`save_config` writes)."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def save_config(cfg: ExperimentConfig, path: str | Path) -> None:
    """Write the resolved configuration as YAML (atomically)."""
    from au_llm.io_utils import atomic_write_text

    atomic_write_text(Path(path), config_text(cfg))


def config_from_dict(cls: type[T], data: Any) -> T:
    """A config dataclass (the experiment or one of its sections) from plain data, validated.

    Missing keys take their defaults; an unknown key, a wrong type, an invalid value or a number
    that is not finite raises (OmegaConf's errors, or :class:`ConfigError`).

    Args:
        cls: The dataclass, e.g. :class:`ExperimentConfig` or :class:`PreprocessConfig`.
        data: Nested dicts and lists (e.g. read from JSON).
    """
    merged = OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create(data))
    cfg = OmegaConf.to_object(merged)
    assert isinstance(cfg, cls)
    check_values(cfg)
    return cfg
