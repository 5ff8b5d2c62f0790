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

from au_llm.config import ExperimentConfig, config_from_dict
from au_llm.model.checkpoint import load_checkpoint, save_checkpoint
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.spec import ModelSpec
from au_llm.prepare import prepare_data
from au_llm.training import fit, resolve_device, seed_everything, set_num_threads

log = logging.getLogger(__name__)


@dataclass
class DeployedModel:
    """A trained model with what is needed to apply it.

    Attributes:
        model: The model (eval mode).
        cfg: The resolved configuration it was trained with.
        aus: AU numbers, in output order.
        thresholds: Per-AU decision thresholds.
        clip_seconds: Median duration of the training clips (onset..offset) in seconds: the
            default sliding window of a recording, converted to frames at its own frame rate.
    """

    model: AULLM
    cfg: ExperimentConfig
    aus: list[int]
    thresholds: np.ndarray
    clip_seconds: float


def train_deployable(cfg: ExperimentConfig, out: Path) -> DeployedModel:
    """Train one model on every clip of ``data.manifests`` and save it to ``out``.

    Training is the protocols' (same sampling, loss, schedule; an inner validation split of the
    subjects when ``train.val_fraction > 0``). The threshold policy ``train`` picks per-AU
    thresholds on the training clips' own predictions; ``fixed`` uses ``eval.fixed_threshold``;
    ``test-oracle`` has no test set here and falls back to ``fixed`` with a warning.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_num_threads(cfg.train)
    data = prepare_data(cfg, out)
    seed = cfg.seeds[0]
    spec = ModelSpec.from_experiment(cfg, data.aus)
    model = build_au_llm(spec, seed, resolve_device(cfg.train.device))
    seed_everything(seed)
    fitted = fit(model, data.source, cfg, data, seed)
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
    save_checkpoint(model, cfg.to_dict(), out, extra=extra)
    return DeployedModel(model.eval(), cfg, data.aus, fitted.thresholds, clip_seconds)


def load_deployed(model_dir: Path) -> DeployedModel:
    """Load a model directory written by :func:`train_deployable` (the base LLM must match)."""
    model, info = load_checkpoint(Path(model_dir))
    cfg = config_from_dict(info["config"])
    extra = info["extra"]
    return DeployedModel(
        model.place(resolve_device(cfg.train.device)),
        cfg,
        list(model.spec.aus),
        np.asarray(extra["thresholds"], dtype=np.float64),
        float(extra["clip_seconds"]),
    )
