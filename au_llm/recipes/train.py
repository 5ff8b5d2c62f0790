"""``au-llm train``: one model trained on every labelled clip of an experiment, saved to a folder.

The recipe unpacks the experiment: the data and preprocessing sections prepare the clips, the
model section and the AUs give the :class:`~au_llm.model.spec.ModelSpec`, the train, sampling and
eval sections the training, and the sections prediction needs (``generation`` among them) become
the model folder's :class:`~au_llm.deployed.InferenceConfig`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from au_llm.config import ExperimentConfig
from au_llm.deployed import DeployedModel, InferenceConfig, save_deployed
from au_llm.device import seed_everything, set_num_threads
from au_llm.io_utils import check_output_folder
from au_llm.model.checkpoint import MODEL_FILE, build_model
from au_llm.model.spec import ModelSpec
from au_llm.param_groups import trainable_parameter_count
from au_llm.prepare import prepare_data
from au_llm.recipes.experiment import experiment_device, fit_experiment
from au_llm.runs.layout import preprocess_report

log = logging.getLogger(__name__)


def train_deployable(cfg: ExperimentConfig, out: Path, *, overwrite: bool = False) -> DeployedModel:
    """Train one model on every clip of ``data.manifests`` and save it to ``out``.

    Training is the protocols' (same sampling, loss, schedule; an inner validation split of the
    subjects when ``train.val_fraction > 0``). The threshold policy ``train`` picks per-AU
    thresholds on the training clips' own predictions, ``val`` on the validation subjects';
    ``fixed`` uses ``eval.fixed_threshold``; ``test-oracle`` has no test set here and falls back
    to ``fixed`` with a warning.

    Raises:
        ValueError: ``out`` already holds a model and ``overwrite`` is false, is a file, or is
            (or lies inside) a manifest or the base LLM's folder (checked before any work).
        OutputError: ``out`` cannot be written.
    """
    llm = cfg.model.llm
    inputs = [*cfg.data.manifests, *cfg.data.target_manifests]
    inputs += [llm.path] if llm.source == "path" and llm.path else []
    out = check_output_folder(out, overwrite=overwrite, inputs=inputs, result=MODEL_FILE)
    set_num_threads(cfg.train.num_threads)
    report = preprocess_report(out)
    data = prepare_data(cfg.data, cfg.preprocess, report, cfg.protocol, strict=cfg.strict)
    seed = cfg.seeds[0]
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    device, precision = experiment_device(cfg)
    model, processor = build_model(spec, seed, device, precision)
    seed_everything(seed)
    fitted = fit_experiment(cfg, model, processor, rows=data.source, cache=data.cache, seed=seed)
    if cfg.eval.threshold_policy == "test-oracle":
        log.warning("eval.threshold_policy = test-oracle has no test set in `train`: using fixed")
    seconds = (data.source["offset"] - data.source["onset"] + 1) / data.source["fps"]
    inference = InferenceConfig.from_sections(
        cfg.preprocess,
        cfg.sampling,
        cfg.train,
        cfg.eval,
        cfg.generation,
        thresholds=fitted.thresholds,
        clip_seconds=np.median(seconds),
    )
    record = {
        "train_thresholds": [float(t) for t in fitted.train_thresholds],
        "train_clips": len(fitted.train),
        "trainable_parameters": trainable_parameter_count(model),
        "train_loss": fitted.result.train_loss,
        "excluded": data.excluded.to_dict("records"),
    }
    deployed = DeployedModel(model.eval(), processor, inference, record)
    save_deployed(deployed, out, cfg.to_dict(), record)
    return deployed
