"""Deployable models: ``au-llm train`` trains one model on every labelled clip and saves it.

A model directory holds the trainable weights, the resolved config and the AU list with the
decision thresholds; :func:`load_deployed` reads it back for ``au-llm predict``
(:mod:`au_llm.deploy`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from omegaconf.errors import OmegaConfBaseException

from au_llm.config import ExperimentConfig, config_from_dict
from au_llm.io_utils import check_output_folder
from au_llm.model.checkpoint import MODEL_FILE, build_model, load_checkpoint, save_checkpoint
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec
from au_llm.prepare import prepare_data
from au_llm.training import (
    fit,
    resolve_device,
    seed_everything,
    select_device,
    set_determinism,
    set_num_threads,
)

log = logging.getLogger(__name__)


@dataclass
class DeployedModel:
    """A trained model with what is needed to apply it.

    Attributes:
        model: The model (eval mode).
        processor: Its text processor (tokenizer, prompts, decoding).
        cfg: The resolved configuration it was trained with.
        aus: AU numbers, in output order.
        thresholds: Per-AU decision thresholds.
        clip_seconds: Median duration of the training clips (onset..offset) in seconds: the
            default sliding window of a recording, converted to frames at its own frame rate.
    """

    model: AULLM
    processor: AULLMProcessor
    cfg: ExperimentConfig
    aus: list[int]
    thresholds: np.ndarray
    clip_seconds: float


def train_deployable(cfg: ExperimentConfig, out: Path, overwrite: bool = False) -> DeployedModel:
    """Train one model on every clip of ``data.manifests`` and save it to ``out``.

    Training is the protocols' (same sampling, loss, schedule; an inner validation split of the
    subjects when ``train.val_fraction > 0``). The threshold policy ``train`` picks per-AU
    thresholds on the training clips' own predictions; ``fixed`` uses ``eval.fixed_threshold``;
    ``test-oracle`` has no test set here and falls back to ``fixed`` with a warning.

    Raises:
        ValueError: ``out`` already holds a model and ``overwrite`` is false, is a file, or is
            (or lies inside) a manifest or the base LLM's folder (checked before any work).
        OutputError: ``out`` cannot be written.
    """
    llm = cfg.model.llm
    inputs = [*cfg.data.manifests, *cfg.data.target_manifests]
    inputs += [llm.path] if llm.source == "path" and llm.path else []
    out = check_output_folder(out, overwrite, inputs, result=MODEL_FILE)
    set_num_threads(cfg.train)
    data = prepare_data(cfg, out)
    seed = cfg.seeds[0]
    spec = ModelSpec.from_experiment(cfg, data.aus)
    device, precision = select_device(cfg.train)
    model, processor = build_model(spec, seed, device, precision)
    seed_everything(seed)
    fitted = fit(model, processor, data.source, cfg, data, seed)
    if cfg.eval.threshold == "test-oracle":
        log.warning("eval.threshold = test-oracle has no test set in `train`: using fixed")
    seconds = (data.source["offset"] - data.source["onset"] + 1) / data.source["fps"]
    clip_seconds = float(np.median(seconds))
    extra = {
        "thresholds": [float(t) for t in fitted.thresholds],
        "train_thresholds": [float(t) for t in fitted.train_thresholds],
        "clip_seconds": clip_seconds,
        "train_clips": len(fitted.train),
        "train_loss": fitted.result.train_loss,
        "excluded": data.excluded.to_dict("records"),
    }
    save_checkpoint(model, processor, cfg.to_dict(), out, extra=extra)
    return DeployedModel(model.eval(), processor, cfg, data.aus, fitted.thresholds, clip_seconds)


def load_deployed(model_dir: Path, precision: str | None = None) -> DeployedModel:
    """Load a model directory written by :func:`train_deployable` (the base LLM must match).

    Args:
        model_dir: The model directory.
        precision: ``auto``, ``fp32`` or ``bf16``; None runs the model in the precision it was
            trained in (recorded in the directory). The one used is logged and is
            ``model.precision``.
    """
    model, processor, info = load_checkpoint(Path(model_dir))
    try:
        cfg = config_from_dict(info["config"])
        extra = info["extra"]
        thresholds = np.asarray(extra["thresholds"], dtype=np.float64)
        clip_seconds = float(extra["clip_seconds"])
    except (KeyError, TypeError, ValueError, OmegaConfBaseException) as exc:
        raise ValueError(
            f"{model_dir}: its config.json or model.json is not a trained model's "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    if len(thresholds) != len(model.spec.aus) or not np.isfinite(clip_seconds) or clip_seconds <= 0:
        raise ValueError(
            f"{model_dir}/model.json: expected {len(model.spec.aus)} thresholds and a positive "
            f"clip_seconds, got {len(thresholds)} and {clip_seconds}"
        )
    device = resolve_device(cfg.train.device)
    set_determinism(device, cfg.train.deterministic)
    model.place(device, precision or info["precision"])
    log.info(
        "precision: %s (%s; trained in %s)",
        model.precision,
        "as trained" if precision is None else f"asked for {precision}",
        info["precision"],
    )
    return DeployedModel(
        model,
        processor,
        cfg,
        list(model.spec.aus),
        thresholds,
        clip_seconds,
    )
