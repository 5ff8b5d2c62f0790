"""``au-llm loso``, ``lodo`` and ``cross``: one experiment run, from the config to the report.

A run lives in ``<out_dir>/<name>/`` (``name`` must be a single folder name), read and written
through :class:`~au_llm.runs.run.Run`. Each finished fold writes its per-clip predictions
atomically, so a killed run resumes where it stopped, ``--folds``/``--shard`` runs of the same
config merge into one run directory, and :func:`~au_llm.recipes.report.build_report` rebuilds
every output from whatever folds are finished.

The steps, in order, assembled once by :func:`open_run` for a plain run and for every launched
task: :func:`~au_llm.prepare.read_inputs` (manifests and AUs validated) and the LLM's tokenizer and
chat template (:class:`~au_llm.model.processing_au_llm.AULLMProcessor`), with nothing written
before -> :func:`~au_llm.recipes.run_config.start_run` -> :func:`~au_llm.prepare.prepare_data`
(manifests -> aligned-clip cache, failed clips excluded) -> the protocol's folds
(:data:`~au_llm.protocols.PROTOCOLS`) -> the run's record and plan (finished folds that do not
read back whole set aside); then :func:`~au_llm.protocols.select_folds` -> :func:`run_work`,
which claims each fold and runs :func:`run_fold` (:func:`~au_llm.fitting.fit`, then test
predictions) -> the report.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from au_llm.config import ExperimentConfig
from au_llm.device import resolve_device, seed_everything, select_device, set_num_threads
from au_llm.fitting import FitResult, fit
from au_llm.inference import predict_clips
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.precision import resolve_precision
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec
from au_llm.param_groups import trainable_parameter_count
from au_llm.prediction_rows import output_columns
from au_llm.prepare import PreparedData, prepare_data, read_inputs
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.protocols import PROTOCOLS, Fold, check_fold, fold_keys, fold_seed, select_folds
from au_llm.recipes.report import report_if_finished
from au_llm.recipes.run_config import start_run
from au_llm.reliance import dataset_reliance
from au_llm.reports.tables import RunTables
from au_llm.runs.fold_lock import Owner
from au_llm.runs.run import Item, Run
from au_llm.spot.protocol import FoldModel, RecordingMotions, spot_fold
from au_llm.training import ModelHolder

log = logging.getLogger(__name__)


def experiment_device(cfg: ExperimentConfig) -> tuple[torch.device, str]:
    """The device of the ``train`` section, its determinism applied, and its precision there."""
    train = cfg.train
    return select_device(
        device=train.device, deterministic=train.deterministic, precision=train.precision
    )


def fit_experiment(
    cfg: ExperimentConfig,
    model: AULLM,
    processor: AULLMProcessor,
    *,
    rows: pd.DataFrame,
    cache: ClipCache,
    seed: int,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """:func:`~au_llm.fitting.fit` with the experiment's ``train``, ``sampling`` and ``eval``."""
    return fit(
        model,
        processor,
        rows=rows,
        cache=cache,
        train_cfg=cfg.train,
        sampling=cfg.sampling,
        eval_cfg=cfg.eval,
        seed=seed,
        desc=desc,
        progress=progress,
    )


def run_fold(
    fold: Fold,
    seed: int,
    cfg: ExperimentConfig,
    data: PreparedData,
    holder: ModelHolder,
    run: Run,
    *,
    progress: bool = True,
    motions: RecordingMotions | None = None,
) -> Path:
    """Train a fresh model on ``fold.train``, predict ``fold.test`` and write both files atomically.

    Under a spotting protocol (``megc``) the fold record also holds the held-out recordings'
    spotted intervals with their AUs, the baselines' and the held-out annotations
    (:func:`~au_llm.spot.protocol.spot_fold`; ``motions`` measures each recording once).

    Returns:
        The fold's predictions CSV.
    """
    check_fold(fold, PROTOCOLS[cfg.protocol].guards)
    fseed = fold_seed(seed, fold.name)
    model, processor = holder.fresh(fseed)
    seed_everything(fseed)
    fitted = fit_experiment(
        cfg,
        model,
        processor,
        rows=fold.train,
        cache=data.cache,
        seed=fseed,
        desc=f"fold {fold.name}",
        progress=progress,
    )
    thresholds, result = fitted.thresholds, fitted.result
    frames, strategy = cfg.sampling.frames_per_clip, cfg.sampling.test_strategy
    explain = cfg.model.explain
    test_set = ClipDataset(
        fold.test, data.cache, data.aus, frames, strategy, fseed, annotation=explain
    )
    outputs, metas = predict_clips(
        model,
        processor,
        test_set,
        batch_size=cfg.train.batch_size,
        answers=cfg.model.has_text_head,
        explain=explain,
        generation=cfg.generation,
    )
    explained = {key: [m[key] for m in metas] for key in ("au_raw", "aus")} if explain else None
    labels, model_cfg, keys = test_set.labels.numpy(), cfg.model, fold_keys(metas, fold.name, seed)
    columns = output_columns(
        outputs,
        data.aus,
        thresholds,
        model_cfg.head,
        model_cfg.text.formats,
        labels,
        explained,
        keys=keys,
        vision_thresholds=fitted.vision_thresholds,
    )
    frame = keys.assign(**columns)
    record = {
        "fold": fold.name,
        "seed": seed,
        "fold_seed": fseed,
        "n_train": len(fitted.train),
        "n_val": fitted.n_val,
        "n_test": len(fold.test),
        "thresholds": dict(zip(map(str, data.aus), map(float, thresholds), strict=True)),
        "train_loss": result.train_loss,
        "val_loss": result.val_loss,
        "best_epoch": result.best_epoch,
        "seconds": result.seconds,
        "first_step_seconds": result.first_step_seconds,
        "precision": model.precision,
        "trainable_parameters": trainable_parameter_count(model),
        "train_thresholds": dict(
            zip(map(str, data.aus), map(float, fitted.train_thresholds), strict=True)
        ),
        "train_labels": fitted.label_counts,
        "reliance": dataset_reliance(model, processor, test_set, batch_size=cfg.train.batch_size),
    }
    if PROTOCOLS[cfg.protocol].spotting:
        fold_model = FoldModel(
            model=model,
            processor=processor,
            thresholds=thresholds,
            cache=data.cache,
            aus=data.aus,
            frames_per_clip=frames,
            strategy=strategy,
            batch_size=cfg.train.batch_size,
            head=model_cfg.head,
            formats=list(model_cfg.text.formats),
            generation=cfg.generation,
        )
        motions = motions or RecordingMotions(cfg.spot, cfg.preprocess.landmarker_model)
        record["spotting"] = spot_fold(
            fold.test, motions=motions, fold_model=fold_model, seed=fseed, strict=cfg.strict
        )
    return run.write_fold(seed, fold.name, frame, record)


@dataclass(frozen=True)
class OpenedRun:
    """A run ready to train folds.

    Attributes:
        cfg: The experiment.
        run: The run folder.
        data: The prepared clips.
        folds: Every fold of the protocol (before ``--folds``/``--shard``).
    """

    cfg: ExperimentConfig
    run: Run
    data: PreparedData
    folds: list[Fold]


def open_run(
    cfg: ExperimentConfig,
    num_threads: int | None,
    *,
    progress: bool = True,
    joining: Path | None = None,
    precision: str | None = None,
) -> OpenedRun:
    """The run lifecycle up to training: open the folder, prepare the clips, record the plan.

    Args:
        cfg: The experiment.
        num_threads: The CPU threads the folds will be computed with (None: not known here,
            e.g. SLURM tasks that decide their own); finished folds with another count are
            refused.
        progress: Show progress bars.
        joining: The folder of a run another process opened (a launched task): its config is
            not rewritten, and the clips must be those it recorded.
        precision: The precision the folds compute in here (``fp32`` or ``bf16``), recorded in
            ``run.json``; None when they run elsewhere (each fold's record holds its own).

    Raises:
        ValueError: A manifest is invalid, no AU set is given, or the LLM's tokenizer or chat
            template cannot be used (all before anything is written, so the corrected rerun of
            the same name starts); the folder holds another config, other clips, or folds
            computed with another thread count.
        RuntimeError: A joining task prepared other clips than those recorded.
    """
    inputs = read_inputs(cfg.data, cfg.protocol)
    if joining is None:
        # The LLM's tokenizer, vocabulary and chat template checked before anything is written.
        AULLMProcessor.from_spec(
            ModelSpec.from_sections(cfg.model, inputs.aus, cfg.preprocess, cfg.sampling)
        )
    run = Run.join(joining) if joining is not None else start_run(cfg)
    data = prepare_data(
        cfg.data,
        cfg.preprocess,
        run.layout.preprocess_report,
        cfg.protocol,
        strict=cfg.strict,
        progress=progress,
        inputs=inputs,
    )
    folds = PROTOCOLS[cfg.protocol].folds(data.source, data.target)
    if joining is not None:
        run.check_data(data)
        run.check_threads(num_threads)
    else:
        names = [fold.name for fold in folds]
        run.record_data(data, names, seeds=cfg.seeds, num_threads=num_threads, precision=precision)
    return OpenedRun(cfg, run, data, folds)


def run_protocol(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    *,
    progress: bool = True,
) -> tuple[Path, RunTables | None]:
    """Run (or resume) every selected fold of every seed, then rebuild the outputs.

    Args:
        cfg: The experiment.
        fold_names: Only these folds (``--folds``).
        shard: Only shard K of N of the folds (``--shard K/N``).
        progress: Show progress bars.

    Returns:
        The run directory and its metric tables (None when no fold of the run is finished: a
        shard without folds, or folds all trained elsewhere).
    """
    precision = resolve_precision(cfg.train.precision, resolve_device(cfg.train.device))
    threads = set_num_threads(cfg.train.num_threads)
    opened = open_run(cfg, threads, progress=progress, precision=precision)
    folds = select_folds(opened.folds, fold_names, shard)
    todo = [(seed, fold.name) for seed in cfg.seeds for fold in folds]
    elsewhere = run_work(opened, todo, progress=progress)
    if elsewhere:
        log.warning(
            "%d fold(s) are being trained by another process (au-llm status %s); "
            "the report holds the finished folds",
            len(elsewhere),
            opened.run.root,
        )
    return opened.run.root, report_if_finished(opened.run)


def run_work(
    opened: OpenedRun,
    items: Iterable[Item],
    *,
    progress: bool = True,
    owner: Owner | None = None,
) -> list[Item]:
    """Train the work items ``(seed, fold name)`` that are neither finished nor claimed.

    Each fold is claimed (:mod:`au_llm.runs.fold_lock`) while it trains, so processes sharing the
    run directory never train the same fold at once. The model is built once for all the items.

    Args:
        opened: The run, its clips and folds.
        items: Work items, in order (may be a generator that decides as it goes).
        progress: Show progress bars.
        owner: This process as recorded in its claims (default: host, pid and job id).

    Returns:
        The items left unfinished because another process holds them.
    """
    run, data, cfg = opened.run, opened.data, opened.cfg
    by_name = {fold.name: fold for fold in opened.folds}
    device, precision = experiment_device(cfg)
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    holder = ModelHolder(spec, device, precision)
    owner = owner or Owner.current()
    elsewhere = []
    motions = RecordingMotions(cfg.spot, cfg.preprocess.landmarker_model)
    try:
        for seed, name in tqdm(items, desc=f"{cfg.name} folds", unit="fold", disable=not progress):
            claim = run.claim(seed, name, owner, timeout=cfg.launch.lock_timeout)
            if claim is None:
                if not run.is_finished(seed, name):
                    elsewhere.append((seed, name))
                log.info("seed %d fold %s: finished or claimed elsewhere, skipped", seed, name)
                continue
            with claim:
                fold = by_name[name]
                run_fold(fold, seed, cfg, data, holder, run, progress=progress, motions=motions)
    finally:
        motions.close()
    return elsewhere
