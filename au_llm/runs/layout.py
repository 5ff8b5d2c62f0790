"""The run folder's layout: every file name a protocol run writes is defined here and only here.

A run lives in ``<out_dir>/<name>/``::

    config.yaml                   the experiment
    env.json                      versions, git commit, device of the process that opened it
    run.json                      AUs, excluded clips, data fingerprint, the plan (seeds, folds)
    preprocess_report.csv         per-clip alignment outcome
    folds/seed<S>/<fold>.csv      a finished fold's predictions: the completion marker
    folds/seed<S>/<fold>.json     its thresholds, losses, seeds, device and thread count
    folds/seed<S>/<fold>.lock     a live claim (au_llm.runs.fold_lock)
    folds/seed<S>/<fold>.failed   the error of a fold whose training raised
    folds/seed<S>/<file>.<time>.damaged
                                  a fold file that did not read back whole, set aside
    launch/submissions/<id>.json  one record per ``--launch`` submission
    launch/logs/                  submitit's job scripts and logs
    predictions.csv, metrics_per_au.csv, metrics_per_au_seed_mean.csv, metrics_per_fold.csv,
    metrics_per_dataset.csv, summary.json, f1_per_au.png, f1_fold_heatmap.png, report.md,
    oracle_thresholds.json, spotting.csv, spotting.json:
                                  the outputs, rebuilt from the finished folds (au_llm.reports)

``<fold>`` is the fold name as a safe file name (:func:`~au_llm.io_utils.safe_component`), so it
stays in its folder and two folds never share a file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from au_llm.io_utils import safe_component

CONFIG = "config.yaml"
ENV = "env.json"
RECORD = "run.json"
PREPROCESS_REPORT = "preprocess_report.csv"
FOLDS = "folds"
LAUNCH = "launch"
SUBMISSIONS = "submissions"
LOGS = "logs"

FOLD_PREDICTIONS = ".csv"
FOLD_RECORD = ".json"
LOCK = ".lock"
FAILED = ".failed"
DAMAGED = ".damaged"

PREDICTIONS = "predictions.csv"
METRICS_PER_AU = "metrics_per_au.csv"
METRICS_PER_AU_SEED_MEAN = "metrics_per_au_seed_mean.csv"
METRICS_PER_FOLD = "metrics_per_fold.csv"
METRICS_PER_DATASET = "metrics_per_dataset.csv"
SUMMARY = "summary.json"
F1_PER_AU = "f1_per_au.png"
F1_FOLD_HEATMAP = "f1_fold_heatmap.png"
REPORT = "report.md"
ORACLE_THRESHOLDS = "oracle_thresholds.json"
SPOTTING_TABLE = "spotting.csv"
SPOTTING_SUMMARY = "spotting.json"

OUTPUTS = (
    PREDICTIONS,
    METRICS_PER_AU,
    METRICS_PER_AU_SEED_MEAN,
    METRICS_PER_FOLD,
    SUMMARY,
    F1_PER_AU,
    F1_FOLD_HEATMAP,
    REPORT,
)
"""The outputs every report writes (``oracle_thresholds.json`` only under ``test-oracle``,
``metrics_per_dataset.csv`` only when the clips come from several datasets, ``spotting.csv`` and
``spotting.json`` only under a spotting protocol)."""


def preprocess_report(folder: Path) -> Path:
    """The per-clip alignment report written into ``folder``.

    The folder is a run's, a model folder (``au-llm train``) or an aligned-clip cache
    (``au-llm preprocess``).
    """
    return Path(folder) / PREPROCESS_REPORT


def lock_file(marker: Path) -> Path:
    """The claim file of the fold whose completion marker (predictions CSV) is ``marker``."""
    return marker.with_suffix(LOCK)


def failure_file(marker: Path) -> Path:
    """The failure record of the fold whose completion marker is ``marker``."""
    return marker.with_suffix(FAILED)


def set_aside_name(path: Path, stamp: str) -> Path:
    """Where a fold file that did not read back whole is moved: ``<name>.<stamp>.damaged``."""
    return path.with_name(f"{path.name}.{stamp}{DAMAGED}")


def set_aside_files(marker: Path) -> list[Path]:
    """The predictions CSVs of the fold whose marker is ``marker`` that were set aside, sorted."""
    return sorted(marker.parent.glob(f"{marker.name}.*{DAMAGED}"))


def is_run_config(path: Path) -> bool:
    """Whether ``path`` is a started run folder's ``config.yaml``, which au-llm wrote.

    It lies beside the folder's ``run.json``; the rerun command of ``au-llm status`` names it.
    """
    return path.name == CONFIG and (path.parent / RECORD).is_file()


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder.

    Attributes:
        root: The run folder, ``<out_dir>/<name>``.
    """

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def config(self) -> Path:
        """The saved experiment config."""
        return self.root / CONFIG

    @property
    def env(self) -> Path:
        """Versions, git commit and device of the process that opened the run."""
        return self.root / ENV

    @property
    def record(self) -> Path:
        """``run.json``: AUs, excluded clips, data fingerprint, seeds and folds (the plan)."""
        return self.root / RECORD

    @property
    def preprocess_report(self) -> Path:
        """The per-clip alignment report."""
        return preprocess_report(self.root)

    @property
    def folds(self) -> Path:
        """The folder of the finished folds."""
        return self.root / FOLDS

    def fold_predictions(self, seed: int, fold: str) -> Path:
        """A fold's predictions CSV: written atomically, its existence marks the fold finished."""
        return self.folds / f"seed{seed}" / f"{safe_component(fold)}{FOLD_PREDICTIONS}"

    def fold_record(self, seed: int, fold: str) -> Path:
        """A fold's JSON record (thresholds, losses, fold seed, thread count)."""
        return self.fold_predictions(seed, fold).with_suffix(FOLD_RECORD)

    def finished_predictions(self) -> list[Path]:
        """Every finished fold's predictions CSV, sorted."""
        return sorted(self.folds.glob(f"seed*/*{FOLD_PREDICTIONS}"))

    @property
    def submissions(self) -> Path:
        """The folder of the launch submission records."""
        return self.root / LAUNCH / SUBMISSIONS

    def submission(self, submission_id: str) -> Path:
        """The record of one launch submission."""
        return self.submissions / f"{submission_id}.json"

    @property
    def logs(self) -> Path:
        """The folder of submitit's job scripts, pickles and logs."""
        return self.root / LAUNCH / LOGS

    def job_log(self, job_id: str, stream: str = "err") -> Path:
        """The ``out`` or ``err`` log of a submitit job's first task (tracebacks go to ``err``)."""
        return self.logs / f"{job_id}_0_log.{stream}"

    def output(self, name: str) -> Path:
        """One of the report's outputs (a name of this module, e.g. :data:`SUMMARY`)."""
        return self.root / name
