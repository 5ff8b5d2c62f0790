"""Evaluation protocols: leave-one-subject-out (LOSO), leave-one-dataset-out and cross-domain.

A run lives in ``<out_dir>/<name>/`` (``name`` must be a single folder name), read and written
through :class:`~au_llm.runs.run.Run`. Each finished fold writes its per-clip predictions
atomically, so a killed run resumes where it stopped, ``--folds``/``--shard`` runs of the same
config merge into one run directory, and :func:`build_report` rebuilds every output from whatever
folds are finished.

The steps, in order, assembled once by :func:`open_run` for a plain run and for every launched
task: :func:`~au_llm.prepare.read_inputs` (manifests and AUs validated; nothing is written before)
-> :meth:`Run.start <au_llm.runs.run.Run.start>` -> :func:`~au_llm.prepare.prepare_data`
(manifests -> aligned-clip cache, failed clips excluded) -> :func:`protocol_folds` -> the run's
record and plan (finished folds that do not read back whole set aside); then
:func:`select_folds` -> :func:`run_work`, which claims each fold and runs :func:`run_fold`
(:func:`~au_llm.fitting.fit`, then test predictions) -> the report.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from au_llm.config import ExperimentConfig
from au_llm.fitting import fit
from au_llm.fold_lock import Owner
from au_llm.inference import predict_clips
from au_llm.model.groups import trainable_parameter_count
from au_llm.model.precision import resolve_precision
from au_llm.model.spec import ModelSpec
from au_llm.prediction_rows import output_columns
from au_llm.prepare import PreparedData, prepare_data, read_inputs
from au_llm.preprocess.dataset import ClipDataset
from au_llm.preprocess.readers import fingerprint_hashes
from au_llm.reliance import dataset_reliance
from au_llm.reports.rebuild import build_report
from au_llm.reports.tables import RunTables
from au_llm.runs.run import Item, Run
from au_llm.training import (
    ModelHolder,
    resolve_device,
    seed_everything,
    select_device,
    set_num_threads,
)

log = logging.getLogger(__name__)


class LeakageError(RuntimeError):
    """A subject, a clip or a clip's pixels appear on both the training and the test side."""


@dataclass(frozen=True)
class Fold:
    """One train/test split.

    Attributes:
        name: Held-out subject id (LOSO) or ``<sources>_to_<target>`` (cross-domain).
        train: Manifest rows to train on.
        test: Manifest rows to test on.
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame


_ID_KEYS = ("dataset", "subject", "clip")


def _subject_ids(frame: pd.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["dataset"], frame["subject"], strict=True))


def _clip_ids(frame: pd.DataFrame) -> set[tuple[str, str, str]]:
    """Clip identities: CASME II reuses clip names across subjects, so the subject is part of it."""
    return set(zip(frame["dataset"], frame["subject"], frame["clip"], strict=True))


def check_no_subject_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a subject is on both sides of ``fold``."""
    shared = _subject_ids(fold.train) & _subject_ids(fold.test)
    if shared:
        names = ", ".join(f"{d}/{s}" for d, s in sorted(shared))
        raise LeakageError(f"fold {fold.name}: subjects in both train and test: {names}")


def check_no_clip_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a clip is on both sides of ``fold``."""
    shared = _clip_ids(fold.train) & _clip_ids(fold.test)
    if shared:
        names = ", ".join("/".join(key) for key in sorted(shared))
        raise LeakageError(f"fold {fold.name}: clips in both train and test: {names}")


def check_no_content_leak(fold: Fold) -> None:
    """Raise :class:`LeakageError` if a train clip and a test clip have the same pixels.

    Compares the ``fingerprint`` columns (content fingerprints from preprocessing: hashes of
    frames, see :meth:`~au_llm.preprocess.readers.HashingSource.fingerprint`; sides without one
    are not compared). Two clips sharing a frame hash hold a frame with identical pixels, so a
    clip copied under another dataset, subject or clip name is found, also when the copy starts
    or ends a few frames later or holds a single frame of the clip; the message names both clips.
    A copy with other pixels (re-encoded as JPEG) is not found (``data_manifests/README.md``).
    """
    if "fingerprint" not in fold.train.columns or "fingerprint" not in fold.test.columns:
        return
    train: dict[str, str] = {}
    for row in fold.train.to_dict("records"):
        for frame in fingerprint_hashes(row["fingerprint"]):
            train.setdefault(frame, "/".join(str(row[k]) for k in _ID_KEYS))
    pairs = []
    for row in fold.test.to_dict("records"):
        shared = sorted(train[f] for f in fingerprint_hashes(row["fingerprint"]) if f in train)
        if shared:
            pairs.append(f"{shared[0]} (train) = {'/'.join(str(row[k]) for k in _ID_KEYS)} (test)")
    if pairs:
        raise LeakageError(
            f"fold {fold.name}: clips with identical source frames on both sides: "
            f"{'; '.join(pairs)}; remove the copies from the manifests"
        )


def loso_folds(manifest: pd.DataFrame) -> list[Fold]:
    """One fold per subject: that subject's clips are the test side, all others train.

    Fold names are the subject ids; with several datasets they are ``<dataset>/<subject>``
    (ids hold no ``/``, so two folds never share a name).
    """
    several = manifest["dataset"].nunique() > 1
    folds = []
    for (dataset, subject), test in manifest.groupby(["dataset", "subject"], sort=True):
        train = manifest[(manifest["dataset"] != dataset) | (manifest["subject"] != subject)]
        name = f"{dataset}/{subject}" if several else str(subject)
        fold = Fold(name, train.reset_index(drop=True), test.reset_index(drop=True))
        check_no_subject_leak(fold)
        check_no_content_leak(fold)
        folds.append(fold)
    return folds


def lodo_folds(manifest: pd.DataFrame) -> list[Fold]:
    """Leave one dataset out: one fold per dataset, tested on its clips, trained on all others.

    Fold names are the dataset names. Subjects are told apart by dataset (``casme2/sub01`` and
    ``casme/sub01`` are two people); a clip copied into another dataset's manifest is refused by
    the content fingerprint guard (:func:`check_no_content_leak`).

    Raises:
        ValueError: Fewer than two datasets.
        LeakageError: A clip or a clip's pixels on both sides of a fold.
    """
    datasets = sorted(manifest["dataset"].unique())
    if len(datasets) < 2:
        raise ValueError(
            f"protocol lodo needs clips of at least two datasets, got {datasets}; "
            "give one manifest per dataset in data.manifests"
        )
    folds = []
    for dataset in datasets:
        held = manifest["dataset"] == dataset
        fold = Fold(
            dataset,
            manifest[~held].reset_index(drop=True),
            manifest[held].reset_index(drop=True),
        )
        check_no_clip_leak(fold)
        check_no_subject_leak(fold)
        check_no_content_leak(fold)
        folds.append(fold)
    return folds


def cross_folds(source: pd.DataFrame, target: pd.DataFrame) -> list[Fold]:
    """The single cross-domain fold: train on every source clip, test on every target clip."""
    name = "+".join(sorted(source["dataset"].unique())) + "_to_"
    name += "+".join(sorted(target["dataset"].unique()))
    fold = Fold(name, source.reset_index(drop=True), target.reset_index(drop=True))
    check_no_clip_leak(fold)
    check_no_subject_leak(fold)
    check_no_content_leak(fold)
    return [fold]


def parse_shard(text: str) -> tuple[int, int]:
    """Parse ``K/N`` (1 <= K <= N) into ``(K, N)``."""
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N, e.g. 2/4") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard {text!r}: expected 1 <= K <= N")
    return k, n


def select_folds(
    folds: list[Fold], names: list[str] | None = None, shard: tuple[int, int] | None = None
) -> list[Fold]:
    """Restrict folds to the named ones and/or to shard K of N (folds K, K+N, ... by name)."""
    if names:
        known = {fold.name for fold in folds}
        unknown = sorted(set(names) - known)
        if unknown:
            raise ValueError(f"--folds: unknown fold(s) {unknown}; known: {sorted(known)}")
        folds = [fold for fold in folds if fold.name in names]
    if shard:
        k, n = shard
        folds = [fold for i, fold in enumerate(folds) if i % n == k - 1]
    return folds


def fold_seed(seed: int, fold_name: str) -> int:
    """A seed that depends only on the run seed and the fold's name (stable across processes)."""
    return (seed * 1_000_003 + zlib.crc32(fold_name.encode())) % 2**31


def fold_keys(metas: list[dict], fold: str, seed: int) -> pd.DataFrame:
    """The key columns of a fold's rows: ``dataset, subject, clip, fold, seed``."""
    return pd.DataFrame(
        {
            "dataset": [m["dataset"] for m in metas],
            "subject": [str(m["subject"]) for m in metas],
            "clip": [m["clip"] for m in metas],
            "fold": fold,
            "seed": seed,
        }
    )


def run_fold(
    fold: Fold,
    seed: int,
    cfg: ExperimentConfig,
    data: PreparedData,
    holder: ModelHolder,
    run: Run,
    progress: bool = True,
) -> Path:
    """Train a fresh model on ``fold.train``, predict ``fold.test`` and write both files atomically.

    Returns:
        The fold's predictions CSV.
    """
    check_no_subject_leak(fold) if cfg.protocol == "loso" else check_no_clip_leak(fold)
    check_no_content_leak(fold)
    fseed = fold_seed(seed, fold.name)
    model, processor = holder.fresh(fseed)
    seed_everything(fseed)
    fitted = fit(
        model,
        processor,
        fold.train,
        data.cache,
        cfg.train,
        cfg.sampling,
        cfg.eval,
        fseed,
        f"fold {fold.name}",
        progress,
    )
    thresholds, result = fitted.thresholds, fitted.result
    frames, strategy = cfg.sampling.frames_per_clip, cfg.sampling.test_strategy
    explain = cfg.model.explains
    test_set = ClipDataset(fold.test, data.cache, data.aus, frames, strategy, fseed, explain)
    outputs, metas = predict_clips(
        model, processor, test_set, cfg.train.batch_size, cfg.model.has_text_head, explain
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
        "reliance": dataset_reliance(model, processor, test_set, cfg.train.batch_size),
    }
    return run.write_fold(seed, fold.name, frame, record)


@dataclass(frozen=True)
class OpenedRun:
    """A run ready to train folds.

    Attributes:
        run: The run folder.
        data: The prepared clips.
        folds: Every fold of the protocol (before ``--folds``/``--shard``).
    """

    run: Run
    data: PreparedData
    folds: list[Fold]


def open_run(
    cfg: ExperimentConfig,
    num_threads: int | None,
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
        ValueError: A manifest is invalid or no AU set is given (before anything is written),
            the folder holds another config, other clips, or folds computed with another
            thread count.
        RuntimeError: A joining task prepared other clips than those recorded.
    """
    inputs = read_inputs(cfg.data, cfg.protocol)
    run = Run.join(cfg, joining) if joining is not None else Run.start(cfg)
    data = prepare_data(
        cfg.data, cfg.preprocess, run.root, cfg.protocol, cfg.strict, progress, inputs
    )
    folds = protocol_folds(cfg, data)
    if joining is not None:
        run.check_data(data)
        run.check_threads(num_threads)
    else:
        run.record_data(data, [fold.name for fold in folds], num_threads, precision)
    return OpenedRun(run, data, folds)


def report_if_finished(run: Run) -> RunTables | None:
    """Rebuild the run's outputs; None (with a log line) when no fold of it is finished yet."""
    if not run.has_finished_folds():
        log.warning("%s: no fold of this run is finished yet; no report", run.root)
        return None
    return build_report(run.root)


def run_protocol(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
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
    opened = open_run(cfg, set_num_threads(cfg.train), progress, precision=precision)
    folds = select_folds(opened.folds, fold_names, shard)
    todo = [(seed, fold.name) for seed in cfg.seeds for fold in folds]
    elsewhere = run_work(opened, todo, progress)
    if elsewhere:
        log.warning(
            "%d fold(s) are being trained by another process (au-llm status %s); "
            "the report holds the finished folds",
            len(elsewhere),
            opened.run.root,
        )
    return opened.run.root, report_if_finished(opened.run)


def protocol_folds(cfg: ExperimentConfig, data: PreparedData) -> list[Fold]:
    """Every fold of ``cfg.protocol`` on the prepared clips (before ``--folds``/``--shard``)."""
    if cfg.protocol == "loso":
        return loso_folds(data.source)
    if cfg.protocol == "lodo":
        return lodo_folds(data.source)
    assert data.target is not None
    return cross_folds(data.source, data.target)


def run_work(
    opened: OpenedRun,
    items: Iterable[Item],
    progress: bool = True,
    owner: Owner | None = None,
) -> list[Item]:
    """Train the work items ``(seed, fold name)`` that are neither finished nor claimed.

    Each fold is claimed (:mod:`au_llm.fold_lock`) while it trains, so processes sharing the run
    directory never train the same fold at once. The model is built once for all the items.

    Args:
        opened: The run, its clips and folds.
        items: Work items, in order (may be a generator that decides as it goes).
        progress: Show progress bars.
        owner: This process as recorded in its claims (default: host, pid and job id).

    Returns:
        The items left unfinished because another process holds them.
    """
    run, data, cfg = opened.run, opened.data, opened.run.cfg
    by_name = {fold.name: fold for fold in opened.folds}
    device, precision = select_device(cfg.train)
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    holder = ModelHolder(spec, device, precision)
    owner = owner or Owner.current()
    elsewhere = []
    for seed, name in tqdm(items, desc=f"{cfg.name} folds", unit="fold", disable=not progress):
        claim = run.claim(seed, name, owner)
        if claim is None:
            if not run.is_finished(seed, name):
                elsewhere.append((seed, name))
            log.info("seed %d fold %s: finished or claimed elsewhere, skipped", seed, name)
            continue
        with claim:
            run_fold(by_name[name], seed, cfg, data, holder, run, progress)
    return elsewhere
