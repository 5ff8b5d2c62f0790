"""Evaluation protocols: leave-one-subject-out (LOSO) and cross-domain transfer.

A run lives in ``<out_dir>/<name>/``. Each finished fold writes its per-clip predictions
atomically to ``folds/seed<S>/<fold>.csv`` (with a ``.json`` of thresholds and losses), so a killed
run resumes where it stopped, ``--folds``/``--shard`` runs of the same config merge into one run
directory, and :func:`build_report` rebuilds every output from whatever folds are finished.

The steps, in order: :func:`prepare_data` (manifests -> aligned-clip cache, failed clips excluded)
-> :func:`loso_folds` / :func:`cross_folds` -> :func:`select_folds` -> :func:`run_fold` per fold
-> :func:`build_report`.
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

from au_llm.config import (
    DATASET_AUS,
    ExperimentConfig,
    load_config,
    save_config,
)
from au_llm.data.manifest import read_manifest
from au_llm.fold_lock import Owner, try_claim, write_plan
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.metrics import apply_thresholds, au_column, best_thresholds, threshold_grid
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.preprocess.run import exclude_failed, preprocess_manifest, write_report
from au_llm.reports import (
    OPTIMISTIC_NOTE,
    RunTables,
    compute_tables,
    headline_table,
    mark_optimistic,
    write_metric_files,
    write_plots,
)
from au_llm.reports import (
    write_report as write_markdown_report,
)
from au_llm.training import (
    TrainResult,
    predict_probs,
    resolve_device,
    seed_everything,
    train_model,
)

log = logging.getLogger(__name__)


class LeakageError(RuntimeError):
    """A subject or clip appears on both the training and the test side of a split."""


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


@dataclass
class PreparedData:
    """Clips ready for a protocol.

    Attributes:
        source: Clips of ``data.manifests`` whose preprocessing succeeded.
        target: Clips of ``data.target_manifests`` (cross-domain), else None.
        aus: AU numbers the run detects.
        cache: The aligned-clip cache holding every clip above.
        excluded: Clips left out (dataset, subject, clip, reason).
    """

    source: pd.DataFrame
    target: pd.DataFrame | None
    aus: list[int]
    cache: ClipCache
    excluded: pd.DataFrame


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


def loso_folds(manifest: pd.DataFrame) -> list[Fold]:
    """One fold per subject: that subject's clips are the test side, all others train.

    Fold names are the subject ids; with several datasets they are ``<dataset>-<subject>``.
    """
    several = manifest["dataset"].nunique() > 1
    folds = []
    for (dataset, subject), test in manifest.groupby(["dataset", "subject"], sort=True):
        train = manifest[(manifest["dataset"] != dataset) | (manifest["subject"] != subject)]
        name = f"{dataset}-{subject}" if several else str(subject)
        fold = Fold(name, train.reset_index(drop=True), test.reset_index(drop=True))
        check_no_subject_leak(fold)
        folds.append(fold)
    return folds


def cross_folds(source: pd.DataFrame, target: pd.DataFrame) -> list[Fold]:
    """The single cross-domain fold: train on every source clip, test on every target clip."""
    name = "+".join(sorted(source["dataset"].unique())) + "_to_"
    name += "+".join(sorted(target["dataset"].unique()))
    fold = Fold(name, source.reset_index(drop=True), target.reset_index(drop=True))
    check_no_clip_leak(fold)
    check_no_subject_leak(fold)
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


def resolve_aus(cfg: ExperimentConfig, datasets: list[str]) -> list[int]:
    """The AUs to detect: ``data.aus`` if set, else the AUs shared by the datasets' published sets.

    Raises:
        ValueError: If no AU is left, or a dataset has no published set and ``data.aus`` is empty.
    """
    if cfg.data.aus:
        return sorted(set(cfg.data.aus))
    unknown = sorted(set(datasets) - set(DATASET_AUS))
    if unknown:
        raise ValueError(
            f"datasets {unknown} have no default AU set; set data.aus in the config "
            f"(known defaults: {sorted(DATASET_AUS)})"
        )
    shared = set.intersection(*(set(DATASET_AUS[d]) for d in datasets))
    if not shared:
        raise ValueError(f"datasets {datasets} share no AU; set data.aus")
    return sorted(shared)


def _read_manifests(paths: list[str]) -> pd.DataFrame:
    return pd.concat([read_manifest(Path(p)) for p in paths], ignore_index=True)


def prepare_data(cfg: ExperimentConfig, run_dir: Path, progress: bool = True) -> PreparedData:
    """Read manifests, align and cache every clip, and exclude the clips that failed.

    The per-clip preprocessing report is written to ``run_dir/preprocess_report.csv``.
    """
    if not cfg.data.manifests:
        raise ValueError("data.manifests is empty: give at least one manifest CSV")
    source = _read_manifests(cfg.data.manifests)
    target = _read_manifests(cfg.data.target_manifests) if cfg.data.target_manifests else None
    everything = pd.concat([source, target], ignore_index=True) if target is not None else source
    everything = everything.drop_duplicates(subset=["dataset", "subject", "clip"])
    cache = ClipCache(Path(cfg.data.cache_dir), cfg.preprocess)
    report = preprocess_manifest(
        everything, cfg.preprocess, Path(cfg.data.cache_dir), strict=cfg.strict, progress=progress
    )
    write_report(report, run_dir / "preprocess_report.csv")
    failed = report[report["status"] == "failed"]
    excluded = failed[["dataset", "subject", "clip", "error"]].rename(columns={"error": "reason"})
    usable = exclude_failed(source, report)
    if usable.empty:
        raise ValueError(
            f"no usable clip: all {len(source)} clips of data.manifests failed preprocessing "
            f"(see {run_dir / 'preprocess_report.csv'})"
        )
    return PreparedData(
        usable,
        exclude_failed(target, report) if target is not None else None,
        resolve_aus(cfg, sorted(everything["dataset"].unique())),
        cache,
        excluded.reset_index(drop=True),
    )


class ModelHolder:
    """Builds the model once per process and re-initialises only its trainable parts per fold."""

    def __init__(self, cfg: ExperimentConfig, n_aus: int) -> None:
        self.cfg = cfg
        self.n_aus = n_aus
        self.device = resolve_device(cfg.train.device)
        self._model: AULLM | None = None

    def fresh(self, seed: int) -> AULLM:
        """The model with trainable weights initialised from ``seed`` (the base LLM is reused)."""
        if self._model is None:
            self._model = build_au_llm(
                self.cfg.model,
                self.n_aus,
                self.cfg.preprocess.channels,
                self.cfg.sampling.n_frames,
                self.cfg.preprocess.size,
                seed,
            ).to(self.device)
        else:
            self._model.reset_trainable(seed)
            self._model.to(self.device)
        return self._model


def inner_split(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a fraction of the training subjects (at least one, never all) for validation.

    Raises:
        ValueError: If fewer than two training subjects are available.
    """
    subjects = sorted(_subject_ids(train))
    if len(subjects) < 2:
        raise ValueError(
            f"train.val_fraction = {fraction} needs at least 2 training subjects, "
            f"got {len(subjects)}"
        )
    rng = np.random.default_rng(seed)
    n_val = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    chosen = {subjects[i] for i in rng.choice(len(subjects), size=n_val, replace=False)}
    is_val = np.array(
        [key in chosen for key in zip(train["dataset"], train["subject"], strict=True)]
    )
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


@dataclass
class FitResult:
    """One trained model's record.

    Attributes:
        train: The rows trained on (the inner validation split removed).
        n_val: Clips in the inner validation split (0 without one).
        thresholds: Per-AU decision thresholds ``[n_aus]``.
        result: Loss curves and timing.
    """

    train: pd.DataFrame
    n_val: int
    thresholds: np.ndarray
    result: TrainResult


def fit(
    model: AULLM,
    rows: pd.DataFrame,
    cfg: ExperimentConfig,
    data: PreparedData,
    seed: int,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``rows`` and choose its thresholds, never from test labels.

    An inner validation split of the subjects is held out when ``train.val_fraction > 0``. The
    ``train`` policy picks per-AU thresholds on the training clips' own predictions; the others
    use ``eval.fixed_threshold`` (``test-oracle`` thresholds are chosen later, on pooled test
    predictions, by :func:`build_report`).
    """
    train, val = rows, None
    if cfg.train.val_fraction > 0:
        train, val = inner_split(rows, cfg.train.val_fraction, seed)
    n, sampling = cfg.sampling.n_frames, cfg.sampling
    train_set = ClipDataset(train, data.cache, data.aus, n, sampling.train, seed=seed)
    val_set = (
        ClipDataset(val, data.cache, data.aus, n, sampling.test, seed=seed)
        if val is not None
        else None
    )
    result = train_model(model, train_set, cfg.train, seed, val_set, desc, progress)
    thresholds = np.full(len(data.aus), cfg.eval.fixed_threshold)
    if cfg.eval.threshold == "train":
        eval_set = ClipDataset(train, data.cache, data.aus, n, sampling.test, seed=seed)
        probs, _ = predict_probs(model, eval_set, cfg.train.batch_size, cfg.train.bf16)
        grid = threshold_grid(*cfg.eval.oracle_grid)
        thresholds = best_thresholds(eval_set.labels.numpy(), probs, grid)
    return FitResult(train, 0 if val is None else len(val), thresholds, result)


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
    frame = pd.DataFrame(
        {
            "dataset": [m["dataset"] for m in metas],
            "subject": [str(m["subject"]) for m in metas],
            "clip": [m["clip"] for m in metas],
            "fold": fold,
            "seed": seed,
        }
    )
    preds = apply_thresholds(probs, thresholds)
    for j, au in enumerate(aus):
        frame[au_column(au, "prob")] = probs[:, j]
        frame[au_column(au, "pred")] = preds[:, j]
        frame[au_column(au, "true")] = labels[:, j].astype(int)
    return frame


def fold_paths(run_dir: Path, seed: int, fold: str) -> tuple[Path, Path]:
    """Paths of a fold's predictions CSV (its completion marker) and its JSON record."""
    folder = run_dir / "folds" / f"seed{seed}"
    return folder / f"{fold}.csv", folder / f"{fold}.json"


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
    fseed = fold_seed(seed, fold.name)
    model = holder.fresh(fseed)
    seed_everything(fseed)
    fitted = fit(model, fold.train, cfg, data, fseed, f"fold {fold.name}", progress)
    thresholds, result = fitted.thresholds, fitted.result
    n, strategy = cfg.sampling.n_frames, cfg.sampling.test
    test_set = ClipDataset(fold.test, data.cache, data.aus, n, strategy, seed=fseed)
    probs, metas = predict_probs(model, test_set, cfg.train.batch_size, cfg.train.bf16)
    frame = prediction_frame(
        metas, probs, test_set.labels.numpy(), thresholds, data.aus, fold.name, seed
    )
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

    Returns:
        ``<out_dir>/<name>``, holding ``config.yaml`` and ``env.json``.
    """
    run_dir = Path(cfg.out_dir) / cfg.name
    saved = run_dir / "config.yaml"
    if saved.exists() and _comparable(load_config(saved)) != _comparable(cfg):
        raise ValueError(
            f"{run_dir} holds a run with a different config ({saved}); "
            "use another name= or remove the folder"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, saved)
    atomic_write_text(run_dir / "env.json", json.dumps(environment(), indent=2))
    return run_dir


def data_fingerprint(data: PreparedData) -> str:
    """SHA-256 of the AU list and every clip's identity, frame range and labels."""
    columns = ["dataset", "subject", "clip", "onset", "offset", "aus"]
    frames = [data.source] + ([data.target] if data.target is not None else [])
    text = json.dumps(data.aus) + "".join(f[columns].to_csv(index=False) for f in frames)
    return hashlib.sha256(text.encode()).hexdigest()


def record_data(run_dir: Path, data: PreparedData) -> None:
    """Write ``run.json`` (AUs, excluded clips, data fingerprint), refusing changed data.

    Raises:
        ValueError: If finished folds exist that were computed on different clips or labels
            (a manifest rebuilt at the same path), since merging them would mix two datasets.
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
    info = {
        "aus": data.aus,
        "excluded": data.excluded.to_dict("records"),
        "data_fingerprint": fingerprint,
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
    if cfg.train.num_threads:
        torch.set_num_threads(cfg.train.num_threads)
    run_dir = start_run(cfg)
    data = prepare_data(cfg, run_dir, progress)
    record_data(run_dir, data)
    folds = protocol_folds(cfg, data)
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
    holder = ModelHolder(cfg, len(data.aus))
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


def collect_predictions(run_dir: Path) -> pd.DataFrame:
    """Concatenate every finished fold's predictions in a canonical order (seed, fold, clip)."""
    files = sorted((run_dir / "folds").glob("seed*/*.csv"))
    if not files:
        raise FileNotFoundError(f"{run_dir}: no finished fold (folds/seed*/*.csv)")
    frames = [pd.read_csv(f, dtype={"subject": str, "clip": str, "fold": str}) for f in files]
    frame = pd.concat(frames, ignore_index=True)
    return frame.sort_values(["seed", "fold", "dataset", "subject", "clip"]).reset_index(drop=True)


def apply_oracle_thresholds(
    frame: pd.DataFrame, aus: list[int], grid: np.ndarray
) -> tuple[pd.DataFrame, dict[str, list[float]]]:
    """Re-threshold each seed's pooled test predictions per AU on the test labels (optimistic).

    Returns:
        The re-thresholded predictions and the thresholds per seed (in ``aus`` order).
    """
    frame = frame.copy()
    probs = [au_column(au, "prob") for au in aus]
    trues = [au_column(au, "true") for au in aus]
    preds = [au_column(au, "pred") for au in aus]
    chosen = {}
    for seed, rows in frame.groupby("seed"):
        scores = rows[probs].to_numpy()
        thresholds = best_thresholds(rows[trues].to_numpy(), scores, grid)
        frame.loc[rows.index, preds] = apply_thresholds(scores, thresholds)
        chosen[str(seed)] = [float(t) for t in thresholds]
    return frame, chosen


def build_report(run_dir: Path) -> RunTables:
    """Rebuild predictions.csv, metric tables, plots and report.md from the finished folds.

    Under ``eval.threshold: test-oracle`` the decisions are re-made with thresholds tuned on the
    pooled test labels; every file then says so (a ``note`` column in each CSV, ``optimistic`` in
    summary.json, plot titles, report.md) and ``oracle_thresholds.json`` records the thresholds.
    """
    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    run_info = json.loads((run_dir / "run.json").read_text())
    aus = [int(a) for a in run_info["aus"]]
    frame = collect_predictions(run_dir)
    optimistic = cfg.eval.threshold == "test-oracle"
    if optimistic:
        frame, chosen = apply_oracle_thresholds(frame, aus, threshold_grid(*cfg.eval.oracle_grid))
        oracle = {"note": OPTIMISTIC_NOTE, "aus": aus, "thresholds_per_seed": chosen}
        atomic_write_text(run_dir / "oracle_thresholds.json", json.dumps(oracle, indent=2))
    tables = compute_tables(frame, aus)
    atomic_write_csv(run_dir / "predictions.csv", mark_optimistic(frame) if optimistic else frame)
    write_metric_files(tables, run_dir, optimistic)
    datasets = sorted(frame["dataset"].unique())
    plots = write_plots(tables, run_dir, datasets[0] if len(datasets) == 1 else None, optimistic)
    write_markdown_report(
        tables,
        run_dir,
        title=f"au-llm run: {cfg.name}",
        protocol=cfg.protocol,
        config_summary=config_summary(cfg, aus),
        excluded_clips=run_info["excluded"],
        plots=plots,
        optimistic=optimistic,
    )
    return tables


def config_summary(cfg: ExperimentConfig, aus: list[int]) -> dict[str, Any]:
    """The settings a reader of a report needs first."""
    return {
        "protocol": cfg.protocol,
        "manifests": ", ".join(cfg.data.manifests),
        "target": ", ".join(cfg.data.target_manifests) or "-",
        "AUs": ", ".join(f"AU{a}" for a in aus),
        "frames": f"{cfg.sampling.n_frames} x {cfg.preprocess.size}px {cfg.preprocess.color}",
        "backbone": cfg.model.backbone.name,
        "LLM": cfg.model.llm.source if cfg.model.llm.source != "path" else cfg.model.llm.path,
        "LoRA": f"r={cfg.model.llm.lora.r}, alpha={cfg.model.llm.lora.alpha}",
        "loss": cfg.train.loss,
        "optimizer": f"{cfg.train.optimizer}, lr={cfg.train.lr}, wd={cfg.train.weight_decay}",
        "epochs x batch": f"{cfg.train.epochs} x {cfg.train.batch_size}",
        "threshold": cfg.eval.threshold,
        "seeds": ", ".join(map(str, cfg.seeds)),
    }


def print_headline(run_dir: Path, tables: RunTables) -> str:
    """The text printed at the end of a run: where outputs are and the headline table."""
    optimistic = json.loads((Path(run_dir) / "summary.json").read_text())["optimistic"]
    return f"Run directory: {run_dir}\n{headline_table(tables, optimistic)}"
