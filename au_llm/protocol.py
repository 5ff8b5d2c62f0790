"""Evaluation protocols: leave-one-subject-out (LOSO) and cross-domain transfer.

A run lives in ``<out_dir>/<name>/`` (``name`` must be a single folder name). Each finished fold
writes its per-clip predictions atomically to ``folds/seed<S>/<fold>.csv`` (with a ``.json`` of
thresholds and losses; ``<fold>`` is the fold name as a safe file name, see
:func:`~au_llm.io_utils.safe_component`), so a killed
run resumes where it stopped, ``--folds``/``--shard`` runs of the same config merge into one run
directory, and :func:`build_report` rebuilds every output from whatever folds are finished.

The steps, in order: :func:`~au_llm.prepare.prepare_data` (manifests -> aligned-clip cache, failed
clips excluded) -> :func:`loso_folds` / :func:`cross_folds` -> :func:`select_folds` ->
:func:`run_fold` per fold (:func:`~au_llm.training.fit`, then test predictions) -> the report.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from au_llm.answers import decision_matrix
from au_llm.config import ExperimentConfig, load_config, save_config
from au_llm.data.manifest import id_problem
from au_llm.fold_lock import Owner, try_claim, write_plan
from au_llm.io_utils import (
    atomic_write_csv,
    atomic_write_text,
    probe_writable,
    remove_stale_temporaries,
    safe_component,
)
from au_llm.metrics import (
    au_prediction_columns,
)
from au_llm.model.spec import ModelSpec
from au_llm.prepare import PreparedData, prepare_data
from au_llm.preprocess.dataset import ClipDataset
from au_llm.reliance import dataset_reliance
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.reports.explanations import EXPLANATION_COLUMN
from au_llm.reports.rebuild import build_report
from au_llm.reports.tables import RunTables
from au_llm.training import (
    ModelHolder,
    fit,
    predict_clips,
    resolve_device,
    seed_everything,
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

    Compares the ``fingerprint`` columns (content fingerprints from preprocessing; sides
    without one are not compared), so a clip copied under another dataset, subject or clip name
    is found; the message names both clips.
    """
    if "fingerprint" not in fold.train.columns or "fingerprint" not in fold.test.columns:
        return
    train = {}
    for row in fold.train.to_dict("records"):
        if isinstance(row["fingerprint"], str) and row["fingerprint"]:
            train.setdefault(row["fingerprint"], "/".join(str(row[k]) for k in _ID_KEYS))
    pairs = [
        f"{train[row['fingerprint']]} (train) = {'/'.join(str(row[k]) for k in _ID_KEYS)} (test)"
        for row in fold.test.to_dict("records")
        if row["fingerprint"] in train
    ]
    if pairs:
        raise LeakageError(
            f"fold {fold.name}: clips with the same source pixels (onset and apex frames) on "
            f"both sides: {'; '.join(pairs)}; remove the copies from the manifests"
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


def prediction_frame(
    metas: list[dict],
    probs: np.ndarray,
    labels: np.ndarray,
    thresholds: np.ndarray,
    aus: list[int],
    fold: str,
    seed: int,
) -> pd.DataFrame:
    """The per-clip AU table: key columns, then ``AUxx_prob, AUxx_pred, AUxx_true`` per AU."""
    keys = pd.DataFrame(
        {
            "dataset": [m["dataset"] for m in metas],
            "subject": [str(m["subject"]) for m in metas],
            "clip": [m["clip"] for m in metas],
            "fold": fold,
            "seed": seed,
        }
    )
    return keys.assign(**au_prediction_columns(aus, probs, thresholds, labels))


def fold_paths(run_dir: Path, seed: int, fold: str) -> tuple[Path, Path]:
    """Paths of a fold's predictions CSV (its completion marker) and its JSON record.

    The file name encodes the fold name injectively (:func:`~au_llm.io_utils.safe_component`),
    so it stays in the folder and two folds never share a file.
    """
    folder = run_dir / "folds" / f"seed{seed}"
    name = safe_component(fold)
    return folder / f"{name}.csv", folder / f"{name}.json"


def run_fold(
    fold: Fold,
    seed: int,
    cfg: ExperimentConfig,
    data: PreparedData,
    holder: ModelHolder,
    run_dir: Path,
    progress: bool = True,
) -> Path:
    """Train a fresh model on ``fold.train``, predict ``fold.test`` and write both files atomically.

    Returns:
        The fold's predictions CSV.
    """
    check_no_subject_leak(fold) if cfg.protocol == "loso" else check_no_clip_leak(fold)
    check_no_content_leak(fold)
    fseed = fold_seed(seed, fold.name)
    model = holder.fresh(fseed)
    seed_everything(fseed)
    fitted = fit(model, fold.train, cfg, data, fseed, f"fold {fold.name}", progress)
    thresholds, result = fitted.thresholds, fitted.result
    frames, strategy = cfg.sampling.frames_per_clip, cfg.sampling.test
    explain = cfg.model.explain.weight > 0
    test_set = ClipDataset(fold.test, data.cache, data.aus, frames, strategy, fseed, explain)
    text = cfg.model.head != "linear"
    outputs, metas = predict_clips(
        model, test_set, cfg.train.batch_size, cfg.train.bf16, answers=text, explain=explain
    )
    probs, answers = outputs.probs, outputs.answers
    if cfg.model.head == "text":
        first = cfg.model.text.formats[0]
        probs = decision_matrix(first, data.aus, answers[first])
    explained: dict[str, list[str]] = {}
    if explain:
        explained = {key: [m[key] for m in metas] for key in ("au_raw", "aus")}
        explained[EXPLANATION_COLUMN] = outputs.explanations
    frame = prediction_frame(
        metas, probs, test_set.labels.numpy(), thresholds, data.aus, fold.name, seed
    ).assign(**{f"{ANSWER_PREFIX}{fmt}": texts for fmt, texts in answers.items()}, **explained)
    csv_path, json_path = fold_paths(run_dir, seed, fold.name)
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
        "num_threads": torch.get_num_threads(),
        "first_step_seconds": result.first_step_seconds,
        "train_thresholds": dict(
            zip(map(str, data.aus), map(float, fitted.train_thresholds), strict=True)
        ),
        "reliance": dataset_reliance(model, test_set, cfg.train.batch_size),
    }
    atomic_write_text(json_path, json.dumps(record, indent=2))
    atomic_write_csv(csv_path, frame)
    return csv_path


def environment() -> dict[str, Any]:
    """Versions, git commit and device, for ``env.json``."""
    import peft
    import transformers

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "git_commit": commit,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "cpu_threads": torch.get_num_threads(),
    }


# Settings that change how a run executes, not what it computes: shards and resumed runs may differ.
RUNTIME_KEYS = (
    ("strict",),
    ("out_dir",),
    ("preprocess", "workers"),
    ("train", "num_threads"),
    ("launch",),
)


def _comparable(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as a dict without :data:`RUNTIME_KEYS`."""
    data = cfg.to_dict()
    for path in RUNTIME_KEYS:
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1])
    return data


def start_run(cfg: ExperimentConfig) -> Path:
    """Create (or reopen) the run directory, refusing to mix two configs in one run.

    Configs that differ only in :data:`RUNTIME_KEYS` (e.g. ``preprocess.workers`` on another
    machine of a job array) may share a run.

    Temporaries left by a killed write (older than a few minutes) are removed, and the folder
    must be writable before any work starts.

    Returns:
        ``<out_dir>/<name>``, holding ``config.yaml`` and ``env.json``.

    Raises:
        ValueError: ``name`` is not a single folder name, or the folder holds another config.
        OutputError: The run folder cannot be written.
    """
    problem = id_problem("name", cfg.name)
    if problem is not None:
        raise ValueError(f"run {problem}: the run folder must lie directly in out_dir")
    run_dir = Path(cfg.out_dir) / cfg.name
    saved = run_dir / "config.yaml"
    if saved.exists() and _comparable(load_config(saved)) != _comparable(cfg):
        raise ValueError(
            f"{run_dir} holds a run with a different config ({saved}); "
            "use another name= or remove the folder"
        )
    probe_writable(run_dir)
    remove_stale_temporaries(run_dir)
    save_config(cfg, saved)
    atomic_write_text(run_dir / "env.json", json.dumps(environment(), indent=2))
    return run_dir


def data_fingerprint(data: PreparedData) -> str:
    """SHA-256 of the AU list and every clip's identity, frame range and labels."""
    columns = ["dataset", "subject", "clip", "onset", "offset", "aus"]
    frames = [data.source] + ([data.target] if data.target is not None else [])
    text = json.dumps(data.aus) + "".join(f[columns].to_csv(index=False) for f in frames)
    return hashlib.sha256(text.encode()).hexdigest()


def _fold_threads(run_dir: Path) -> dict[str, int]:
    """``num_threads`` of each finished fold's record (``seed<S>/<fold file>`` -> threads)."""
    threads = {}
    for path in sorted((run_dir / "folds").glob("seed*/*.json")):
        value = json.loads(path.read_text()).get("num_threads")
        if value is not None:
            threads[f"{path.parent.name}/{path.stem}"] = int(value)
    return threads


def record_data(
    run_dir: Path, data: PreparedData, folds: list[str], seeds: list[int], num_threads: int
) -> None:
    """Write ``run.json`` (AUs, excluded clips, data fingerprint, folds, threads).

    Args:
        run_dir: The run folder.
        data: The prepared clips.
        folds: Every fold name of the protocol (before ``--folds``/``--shard``), so the report
            can say when a run is partial.
        seeds: The run's seeds.
        num_threads: The CPU threads torch uses here; results depend on it, so a run's folds
            must all use the same number.

    Raises:
        ValueError: If finished folds exist that were computed on different clips or labels
            (a manifest rebuilt at the same path), or with another number of threads, since
            merging them would mix two experiments.
    """
    path = run_dir / "run.json"
    fingerprint = data_fingerprint(data)
    if path.exists() and any((run_dir / "folds").glob("seed*/*.csv")):
        previous = json.loads(path.read_text()).get("data_fingerprint")
        if previous != fingerprint:
            raise ValueError(
                f"{run_dir}: the manifests' clips, frame ranges or labels changed since its "
                "finished folds were computed; use another name= or remove the folder"
            )
    other = {fold: n for fold, n in _fold_threads(run_dir).items() if n != num_threads}
    if other:
        fold, n = next(iter(other.items()))
        raise ValueError(
            f"{run_dir}: fold {fold} was computed with {n} CPU threads, this process uses "
            f"{num_threads}; results depend on the thread count, so set train.num_threads: {n} "
            "(or use another name=)"
        )
    info = {
        "aus": data.aus,
        "excluded": data.excluded.to_dict("records"),
        "data_fingerprint": fingerprint,
        "folds": folds,
        "seeds": seeds,
        "num_threads": num_threads,
    }
    atomic_write_text(path, json.dumps(info, indent=2))


def run_protocol(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
) -> tuple[Path, RunTables]:
    """Run (or resume) every selected fold of every seed, then rebuild the outputs.

    Args:
        cfg: The experiment.
        fold_names: Only these folds (``--folds``).
        shard: Only shard K of N of the folds (``--shard K/N``).
        progress: Show progress bars.

    Returns:
        The run directory and its metric tables.
    """
    set_num_threads(cfg.train)
    run_dir = start_run(cfg)
    data = prepare_data(cfg, run_dir, progress)
    folds = protocol_folds(cfg, data)
    record_data(run_dir, data, [f.name for f in folds], cfg.seeds, torch.get_num_threads())
    write_plan(run_dir, cfg.seeds, [fold.name for fold in folds])
    folds = select_folds(folds, fold_names, shard)
    todo = [(seed, fold.name) for seed in cfg.seeds for fold in folds]
    elsewhere = run_work(cfg, run_dir, data, folds, todo, progress)
    if elsewhere:
        log.warning(
            "%d fold(s) are being trained by another process (au-llm status %s); "
            "the report holds the finished folds",
            len(elsewhere),
            run_dir,
        )
    return run_dir, build_report(run_dir)


def protocol_folds(cfg: ExperimentConfig, data: PreparedData) -> list[Fold]:
    """Every fold of ``cfg.protocol`` on the prepared clips (before ``--folds``/``--shard``)."""
    if cfg.protocol == "loso":
        return loso_folds(data.source)
    assert data.target is not None
    return cross_folds(data.source, data.target)


def run_work(
    cfg: ExperimentConfig,
    run_dir: Path,
    data: PreparedData,
    folds: list[Fold],
    items: Iterable[tuple[int, str]],
    progress: bool = True,
    owner: Owner | None = None,
) -> list[tuple[int, str]]:
    """Train the work items ``(seed, fold name)`` that are neither finished nor claimed.

    Each fold is claimed (:mod:`au_llm.fold_lock`) while it trains, so processes sharing the run
    directory never train the same fold at once. The model is built once for all the items.

    Args:
        cfg: The experiment.
        run_dir: The run directory.
        data: The prepared clips.
        folds: The folds the items name.
        items: Work items, in order (may be a generator that decides as it goes).
        progress: Show progress bars.
        owner: This process as recorded in its claims (default: host, pid and job id).

    Returns:
        The items left unfinished because another process holds them.
    """
    by_name = {fold.name: fold for fold in folds}
    holder = ModelHolder(ModelSpec.from_experiment(cfg, data.aus), resolve_device(cfg.train.device))
    owner = owner or Owner.current()
    elsewhere = []
    for seed, name in tqdm(items, desc=f"{cfg.name} folds", unit="fold", disable=not progress):
        marker = fold_paths(run_dir, seed, name)[0]
        claim = try_claim(marker, cfg.launch.lock_timeout, owner)
        if claim is None:
            if not marker.exists():
                elsewhere.append((seed, name))
            log.info("seed %d fold %s: finished or claimed elsewhere, skipped", seed, name)
            continue
        with claim:
            run_fold(by_name[name], seed, cfg, data, holder, run_dir, progress)
    return elsewhere
