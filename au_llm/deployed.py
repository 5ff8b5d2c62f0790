"""Deployable models: a trained model with the settings that apply it, saved in a folder.

A model folder (written by ``au-llm train``, see :mod:`au_llm.recipes.train`) holds the trainable
weights, the :class:`~au_llm.model.spec.ModelSpec` (AUs, clip shape, model configuration) and an
:class:`InferenceConfig` (alignment, sampling, batch size, thresholds, decoding) in
``model.json``, and the experiment it was trained with in ``config.json`` for the record;
:func:`load_deployed` reads it back for ``au-llm predict`` (:mod:`au_llm.predict`). Folders of the
previous format (version 3, whose settings are only in the saved experiment) still load, and so
do folders whose model section held the decoding settings.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

import numpy as np
from omegaconf.errors import OmegaConfBaseException

from au_llm.config import (
    EvalConfig,
    GenerationConfig,
    PreprocessConfig,
    SamplingConfig,
    TrainConfig,
    config_from_dict,
)
from au_llm.config_checks import (
    SAMPLING_STRATEGIES,
    ConfigError,
    DeployedThresholdPolicy,
    check_choice,
)
from au_llm.config_keys import saved_generation, upgrade_saved
from au_llm.device import resolve_device, set_determinism
from au_llm.model.checkpoint import CONFIG_FILE, MODEL_FILE, load_checkpoint, save_checkpoint
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec

log = logging.getLogger(__name__)

INFERENCE_KEY = "inference"
"""The key of :class:`InferenceConfig` in ``model.json``'s ``extra``."""


@dataclass
class InferenceConfig:
    """What applying a trained model needs besides its :class:`ModelSpec`.

    The spec gives the AUs (output order), frames per clip and the clip shape; the precision the
    model was trained in is recorded beside it in ``model.json``.

    Attributes:
        preprocess: The face alignment of the training clips; inputs are aligned the same way.
        frame_sampling: How a clip's frames are picked (the training run's
            ``sampling.test_strategy``).
        batch_size: Clips per forward pass (the training run's ``train.batch_size``).
        device: ``auto``, ``cpu`` or ``cuda`` (``train.device``).
        deterministic: Deterministic kernels (``train.deterministic``).
        threshold_policy: How ``thresholds`` were chosen: ``train`` (on the training clips'
            predictions) or ``fixed`` (``eval.fixed_threshold``).
        thresholds: Per-AU decision thresholds, in the spec's AU order.
        clip_seconds: Median duration of the training clips (onset..offset) in seconds: the
            default sliding window of a recording, converted to frames at its own frame rate.
        generation: How text answers and explanations are decoded (the training run's
            ``generation`` section).
    """

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    frame_sampling: str = "uniform"
    batch_size: int = 32
    device: str = "auto"
    deterministic: bool = True
    threshold_policy: str = "fixed"
    thresholds: list[float] = field(default_factory=list)
    clip_seconds: float = 1.0
    generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __post_init__(self) -> None:
        check_choice("inference", "frame_sampling", self.frame_sampling, SAMPLING_STRATEGIES)
        check_choice(
            "inference", "threshold_policy", self.threshold_policy, DeployedThresholdPolicy
        )
        if self.batch_size < 1:
            raise ConfigError(f"inference.batch_size = {self.batch_size}: expected >= 1")
        if not (np.isfinite(self.clip_seconds) and self.clip_seconds > 0):
            raise ConfigError(f"inference.clip_seconds = {self.clip_seconds}: expected > 0")

    @classmethod
    def from_sections(
        cls,
        preprocess: PreprocessConfig,
        sampling: SamplingConfig,
        train: TrainConfig,
        eval_cfg: EvalConfig,
        generation: GenerationConfig,
        *,
        thresholds: list[float] | np.ndarray,
        clip_seconds: float,
    ) -> InferenceConfig:
        """The settings of a model trained with these sections.

        The policy that chose the thresholds is recorded (``fixed``, ``train``, ``val``), but
        ``test-oracle`` has no test set outside a protocol and is recorded as ``fixed``.

        Args:
            preprocess: The ``preprocess`` section.
            sampling: The ``sampling`` section.
            train: The ``train`` section.
            eval_cfg: The ``eval`` section.
            generation: The ``generation`` section.
            thresholds: The per-AU thresholds chosen.
            clip_seconds: The median training clip duration in seconds.
        """
        policy = eval_cfg.threshold_policy
        return cls(
            preprocess,
            sampling.test_strategy,
            train.batch_size,
            train.device,
            train.deterministic,
            policy if policy in get_args(DeployedThresholdPolicy) else "fixed",
            [float(t) for t in thresholds],
            float(clip_seconds),
            generation,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data (:func:`structured` of this class inverts it)."""
        return asdict(self)


def inference_from_experiment(
    experiment: dict[str, Any], thresholds: list[float], clip_seconds: float
) -> InferenceConfig:
    """The inference config of a version-3 model folder, from the experiment it saved.

    Args:
        experiment: The saved experiment configuration (``config.json``).
        thresholds: The per-AU thresholds it recorded.
        clip_seconds: The median training clip duration it recorded.
    """
    experiment = upgrade_saved(experiment)
    return InferenceConfig.from_sections(
        config_from_dict(PreprocessConfig, experiment.get("preprocess", {})),
        config_from_dict(SamplingConfig, experiment.get("sampling", {})),
        config_from_dict(TrainConfig, experiment.get("train", {})),
        config_from_dict(EvalConfig, experiment.get("eval", {})),
        config_from_dict(GenerationConfig, experiment.get("generation", {})),
        thresholds=thresholds,
        clip_seconds=clip_seconds,
    )


@dataclass
class DeployedModel:
    """A trained model with what is needed to apply it.

    Attributes:
        model: The model (eval mode); ``model.spec`` is its :class:`ModelSpec`.
        processor: Its text processor (tokenizer, prompts, decoding).
        inference: The settings that apply it.
        record: How training went (``model.json``'s ``extra`` without the inference settings,
            e.g. ``train_thresholds``); empty when not recorded.
    """

    model: AULLM
    processor: AULLMProcessor
    inference: InferenceConfig
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        """What defines the model (AUs, clip shape, model configuration)."""
        return self.model.spec

    @property
    def aus(self) -> list[int]:
        """AU numbers, in output order."""
        return list(self.model.spec.aus)

    @property
    def thresholds(self) -> np.ndarray:
        """Per-AU decision thresholds ``[n_aus]``."""
        return np.asarray(self.inference.thresholds, dtype=np.float64)


def save_deployed(
    deployed: DeployedModel, out: Path, experiment: dict[str, Any], record: dict[str, Any]
) -> None:
    """Write a model folder that :func:`load_deployed` reads back identically.

    Args:
        deployed: The trained model and its inference settings.
        out: The model folder.
        experiment: The experiment it was trained with (plain data, kept for the record).
        record: How training went (JSON-ready), kept in ``model.json``'s ``extra``.
    """
    extra = {**record, INFERENCE_KEY: deployed.inference.to_dict()}
    save_checkpoint(deployed.model, deployed.processor, experiment, out, extra=extra)


def load_deployed(model_dir: Path, precision: str | None = None) -> DeployedModel:
    """Load a model folder written by ``au-llm train`` (the base LLM must match).

    Args:
        model_dir: The model folder.
        precision: ``auto``, ``fp32`` or ``bf16``; None runs the model in the precision it was
            trained in (recorded in the folder). The one used is logged and is
            ``model.precision``.

    Raises:
        ValueError: The folder's settings are missing or invalid, or its thresholds do not
            match its AUs.
    """
    model, processor, info = load_checkpoint(Path(model_dir))
    extra = info["extra"]
    try:
        if info["version"] == 3:
            inference = inference_from_experiment(
                info["config"], extra["thresholds"], extra["clip_seconds"]
            )
        else:
            settings = extra[INFERENCE_KEY]
            if isinstance(settings, dict) and "generation" not in settings:
                # saved before the decoding settings left the model section
                settings = {**settings, "generation": saved_generation(info["saved_model"])}
            inference = config_from_dict(InferenceConfig, settings)
    except (KeyError, TypeError, ValueError, OmegaConfBaseException) as exc:
        where = CONFIG_FILE if info["version"] == 3 else MODEL_FILE
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise ValueError(
            f"{model_dir}/{where}: not a trained model's settings ({type(exc).__name__}: {first})"
        ) from exc
    if len(inference.thresholds) != model.spec.n_aus:
        raise ValueError(
            f"{model_dir}/{MODEL_FILE}: expected {model.spec.n_aus} thresholds, "
            f"got {len(inference.thresholds)}"
        )
    device = resolve_device(inference.device)
    set_determinism(device, deterministic=inference.deterministic)
    model.place(device, precision or info["precision"])
    log.info(
        "precision: %s (%s; trained in %s)",
        model.precision,
        "as trained" if precision is None else f"asked for {precision}",
        info["precision"],
    )
    record = {key: value for key, value in extra.items() if key != INFERENCE_KEY}
    return DeployedModel(model, processor, inference, record)
