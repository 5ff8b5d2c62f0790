"""One run folder: its records, its plan, fold claims and fold results.

:class:`Run` is the only reader and writer of a run folder's records (``config.yaml``,
``env.json``, ``run.json``, the fold files and the launch submissions); protocols, launchers,
``au-llm status``, ``au-llm report`` and ``au-llm ablate`` ask it instead of building paths. The
file names are in :mod:`au_llm.runs.layout`. A run holds its experiment's config as a file it
writes and compares, not as the typed config: the recipes read that file back and hand each
method the settings it needs (the seeds, the claim timeout).

``run.json`` holds the plan (every seed x every fold of the protocol, before ``--folds`` or
``--shard``), so the report can say when a run is partial and ``au-llm status`` lists every
work item. Starting a run is atomic: the first process creates ``config.yaml`` (a hard link of a
complete file, :func:`~au_llm.io_utils.link_exclusive`) and every later one compares its config
with it, so two configs never share a run folder, whatever the timing. Finished folds are read
back through :mod:`au_llm.runs.folds` (whole, set aside, or outside the plan).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from au_llm.data.manifest import id_problem
from au_llm.io_utils import (
    TEMP_SUFFIX,
    atomic_write_text,
    csv_text,
    link_exclusive,
    output_errors,
    probe_writable,
    read_json,
    remove_stale_temporaries,
    unescape_frame,
)
from au_llm.prepare import PreparedData
from au_llm.runs.fold_lock import Claim, Owner, try_claim
from au_llm.runs.folds import CSV_SHA256, FoldScan, Item, scan_folds, text_sha256
from au_llm.runs.layout import RunLayout


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
        "device": device_name(),
        "cpu_threads": torch.get_num_threads(),
    }


def device_name() -> str:
    """The GPU's name, or ``cpu``."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


# What run.json must hold, and the type of each entry.
_RECORD_SHAPE = {"aus": int, "folds": str, "seeds": int, "excluded": dict}


def read_run_record(path: Path) -> dict[str, Any]:
    """``run.json``, checked to be a run record (AUs, folds, seeds, excluded clips, fingerprint).

    Raises:
        ValueError: The file is unreadable, truncated, not JSON, or of another shape; the
            message names it.
    """
    info = read_json(path)
    problem = None
    if not isinstance(info, dict):
        problem = f"a JSON {type(info).__name__}, not an object"
    else:
        for key, kind in _RECORD_SHAPE.items():
            values = info.get(key)
            if not isinstance(values, list) or not all(isinstance(v, kind) for v in values):
                problem = f"{key!r} is not a list of {kind.__name__} values"
                break
        if problem is None and not isinstance(info.get("data_fingerprint"), str):
            problem = "no 'data_fingerprint'"
    if problem is not None:
        raise ValueError(
            f"{path}: not a run record ({problem}); restore it, or remove the run folder and "
            "run again"
        )
    return info


def data_fingerprint(data: PreparedData) -> str:
    """SHA-256 of the AU list and every clip's identity, frame range and labels."""
    columns = ["dataset", "subject", "clip", "onset", "offset", "aus"]
    frames = [data.source] + ([data.target] if data.target is not None else [])
    text = json.dumps(data.aus) + "".join(
        f[columns + [c for c in ("aus_unknown",) if c in f.columns]].to_csv(index=False)
        for f in frames
    )
    return hashlib.sha256(text.encode()).hexdigest()


def run_folder(out_dir: str | Path, name: str) -> Path:
    """``<out_dir>/<name>``, the folder of the run called ``name``.

    Raises:
        ValueError: ``name`` is not a single folder name.
    """
    problem = id_problem("name", name)
    if problem is not None:
        raise ValueError(f"run {problem}: the run folder must lie directly in out_dir")
    return Path(out_dir) / name


@dataclass(frozen=True)
class Run:
    """A run folder.

    Attributes:
        layout: The folder's paths.
    """

    layout: RunLayout

    @property
    def root(self) -> Path:
        """The run folder."""
        return self.layout.root

    @classmethod
    def start(
        cls, root: Path, *, config_text: str, differences: Callable[[Path], list[str]]
    ) -> Run:
        """Create (or reopen) the run folder, refusing to mix two configs in one run.

        Configs that differ only in settings of how a run executes (e.g. ``preprocess.workers``
        on another machine of a job array; ``differences`` leaves them out) may share a run.
        Temporaries left by a killed write (older than a few minutes) are removed and the folder
        must be writable before any work starts. The first process creates ``config.yaml``
        atomically; a later one compares its config with it (and writes its runtime settings
        into it when they are the only difference), so of two processes starting one folder
        with different configs, one is always refused. ``env.json`` is written.

        Args:
            root: The run folder (:func:`run_folder`).
            config_text: The experiment's config as YAML, written as ``config.yaml``.
            differences: Reads the ``config.yaml`` a folder already holds and names each setting
                in which it differs from ``config_text`` (empty: the same run).

        Raises:
            ValueError: The folder holds another config (the differing keys are named).
            OutputError: The run folder cannot be written.
        """
        layout = RunLayout(Path(root).resolve())
        probe_writable(layout.root)
        remove_stale_temporaries(layout.root)
        staging = layout.root / f".{layout.config.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            atomic_write_text(staging, config_text)
            if not link_exclusive(staging, layout.config):
                changed = differences(layout.config)
                if changed:
                    raise ValueError(
                        f"{layout.root} holds a run with a different config ({layout.config}): "
                        f"{'; '.join(changed)}; use another name= or remove the folder"
                    )
                with output_errors(layout.config):
                    os.replace(staging, layout.config)
        finally:
            with contextlib.suppress(FileNotFoundError):
                staging.unlink()
        atomic_write_text(layout.env, json.dumps(environment(), indent=2))
        return cls(layout)

    @classmethod
    def join(cls, root: Path) -> Run:
        """The run at ``root`` that another process started, for a task that trains its folds."""
        return cls(RunLayout(Path(root)))

    @classmethod
    def read(cls, root: str | Path) -> Run:
        """An existing run folder, opened to read.

        Raises:
            FileNotFoundError: If the folder holds no started run (no ``run.json``).
        """
        layout = RunLayout(Path(root))
        if not layout.record.is_file():
            raise FileNotFoundError(
                f"{layout.root}: no {layout.record.name}; not a run directory, or its run has "
                "not started"
            )
        return cls(layout)

    # -- run.json: the data and the plan -------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """``run.json``: AUs, excluded clips, data fingerprint, folds, seeds, threads.

        Raises:
            ValueError: The file is damaged or of another shape (:func:`read_run_record`).
        """
        return read_run_record(self.layout.record)

    def record_data(
        self,
        data: PreparedData,
        folds: list[str],
        *,
        seeds: list[int],
        num_threads: int | None,
        precision: str | None = None,
    ) -> None:
        """Write ``run.json``: the AUs, excluded clips, data fingerprint and the plan.

        Finished folds of the plan that do not read back whole are set aside first, to be
        computed again (:mod:`au_llm.runs.folds`).

        Args:
            data: The prepared clips.
            folds: Every fold name of the protocol (before ``--folds``/``--shard``).
            seeds: The run's seeds (the protocol is repeated once per seed).
            num_threads: The CPU threads the folds are computed with (None: decided by each
                task); checked against the finished folds (:meth:`check_threads`).
            precision: The precision the folds compute in here (``fp32`` or ``bf16``); None
                when they run elsewhere (each fold's record holds its own).

        Raises:
            ValueError: If finished folds were computed on different clips or labels (a
                manifest rebuilt at the same path) or with another number of threads.
        """
        fingerprint = data_fingerprint(data)
        finished = self.layout.record.exists() and self.has_finished_folds()
        if finished and self.info()["data_fingerprint"] != fingerprint:
            raise ValueError(
                f"{self.root}: the manifests' clips, frame ranges or labels changed since "
                "its finished folds were computed; use another name= or remove the folder"
            )
        plan = [(seed, fold) for seed in seeds for fold in folds]
        self.check_threads(num_threads, self.scan_folds(plan).whole)
        info = {
            "aus": data.aus,
            "excluded": data.excluded.to_dict("records"),
            "lost_datasets": data.lost_datasets,
            "data_fingerprint": fingerprint,
            "folds": folds,
            "seeds": seeds,
            "num_threads": num_threads,
            "precision": precision,
        }
        atomic_write_text(self.layout.record, json.dumps(info, indent=2))

    def check_data(self, data: PreparedData) -> None:
        """Raise RuntimeError unless ``data`` is the data recorded when the run was opened."""
        if data_fingerprint(data) != self.info()["data_fingerprint"]:
            raise RuntimeError(
                f"{self.root}: the clips this task prepared differ from those recorded at "
                "submit time (manifests, cache or frames changed, or differ on this node)"
            )

    def plan(self) -> list[Item]:
        """Every work item ``(seed, fold)`` of the run, in order (seeds, then folds)."""
        info = self.info()
        return [(int(seed), str(fold)) for seed in info["seeds"] for fold in info["folds"]]

    def aus(self) -> list[int]:
        """The AUs the run detects."""
        return [int(au) for au in self.info()["aus"]]

    # -- folds ---------------------------------------------------------------------------------

    def is_finished(self, seed: int, fold: str) -> bool:
        """Whether the fold's predictions are written (the fold counts as done)."""
        return self.layout.fold_predictions(seed, fold).exists()

    def has_finished_folds(self) -> bool:
        """Whether any fold of the run is finished."""
        return bool(self.layout.finished_predictions())

    def scan_folds(self, plan: list[Item] | None = None) -> FoldScan:
        """The finished folds of the plan (default: ``run.json``'s), damaged ones set aside."""
        return scan_folds(self.layout, self.plan() if plan is None else plan)

    def _finished(self, items: list[Item] | None) -> list[Item]:
        """``items``, or by default the plan's finished folds."""
        return [item for item in self.plan() if self.is_finished(*item)] if items is None else items

    def claim(self, seed: int, fold: str, owner: Owner, *, timeout: float) -> Claim | None:
        """Claim a fold to train it (None: finished, or a live process holds it).

        Args:
            seed: The seed of the work item.
            fold: Its fold.
            owner: This process, as the claim records it.
            timeout: Seconds without a refresh after which another process's claim is dead
                (``launch.lock_timeout``).
        """
        marker = self.layout.fold_predictions(seed, fold)
        return try_claim(marker, timeout, owner)

    def write_fold(self, seed: int, fold: str, frame: pd.DataFrame, record: dict) -> Path:
        """Write a fold's record, then its predictions (the completion marker), atomically.

        The record gets the device and CPU thread count of this process, and the sha256 of the
        predictions CSV (so a fold that does not read back whole is found).

        Returns:
            The fold's predictions CSV.
        """
        text = csv_text(frame)
        record = {
            **record,
            "num_threads": torch.get_num_threads(),
            "device": device_name(),
            CSV_SHA256: text_sha256(text),
        }
        atomic_write_text(self.layout.fold_record(seed, fold), json.dumps(record, indent=2))
        marker = self.layout.fold_predictions(seed, fold)
        atomic_write_text(marker, text)
        return marker

    def fold_records(self, items: list[Item] | None = None) -> list[dict[str, Any]]:
        """The JSON records of ``items`` (default: the plan's finished folds), in order."""
        return [self.read_fold_record(seed, fold) for seed, fold in self._finished(items)]

    def read_fold_record(self, seed: int, fold: str) -> dict[str, Any]:
        """One fold's record.

        Raises:
            ValueError: The record is unreadable or truncated; the message names it.
        """
        return read_json(self.layout.fold_record(seed, fold))

    def finished_predictions(self, items: list[Item]) -> pd.DataFrame:
        """The predictions of the finished folds ``items``, in a canonical order (seed, fold, clip).

        Raises:
            FileNotFoundError: If ``items`` is empty.
        """
        files = [self.layout.fold_predictions(seed, fold) for seed, fold in items]
        if not files:
            raise FileNotFoundError(f"{self.root}: no finished fold")
        text = {"dataset": str, "subject": str, "clip": str, "fold": str}
        frames = [unescape_frame(pd.read_csv(f, dtype=text)) for f in files]
        frame = pd.concat(frames, ignore_index=True)
        keys = ["seed", "fold", "dataset", "subject", "clip"]
        return frame.sort_values(keys).reset_index(drop=True)

    def check_threads(
        self, num_threads: int | None = None, items: list[Item] | None = None
    ) -> None:
        """Refuse folds computed with different CPU thread counts (their results differ slightly).

        Args:
            num_threads: The thread count of the folds still to compute; None compares the
                finished folds with each other only.
            items: The finished folds to compare (default: the plan's finished folds).

        Raises:
            ValueError: Naming a fold computed with another thread count.
        """
        seen: dict[int, str] = {}
        for record in self.fold_records(items):
            if record.get("num_threads") is not None:
                name = f"seed{record['seed']}/{record['fold']}"
                seen.setdefault(int(record["num_threads"]), name)
        if num_threads is not None:
            other = {n: fold for n, fold in seen.items() if n != num_threads}
            if other:
                n, fold = next(iter(other.items()))
                raise ValueError(
                    f"{self.root}: fold {fold} was computed with {n} CPU threads, this process "
                    f"uses {num_threads}; results depend on the thread count, so set "
                    f"train.num_threads: {n} (or use another name=)"
                )
        elif len(seen) > 1:
            listed = ", ".join(f"{fold} with {n}" for n, fold in sorted(seen.items()))
            raise ValueError(
                f"{self.root}: folds were computed with different CPU thread counts ({listed}); "
                "results depend on it, so rerun the odd folds with the same train.num_threads"
            )

    # -- launch submissions --------------------------------------------------------------------

    def record_submission(self, mode: str, host: str, items: list[Item]) -> Path:
        """Write the record of a new launch submission; returns its path."""
        submission = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        path = self.layout.submission(submission)
        info = {"id": submission, "mode": mode, "host": host, "time": time.time(), "items": items}
        atomic_write_text(path, json.dumps(info, indent=2))
        return path

    def update_submission(self, path: Path, **fields: Any) -> None:
        """Add ``fields`` (the jobs, once submitted) to a submission record."""
        info = read_json(path)
        atomic_write_text(path, json.dumps({**info, **fields}, indent=2))

    def latest_submission(self) -> dict[str, Any] | None:
        """The record of the last launch submission, or None.

        Raises:
            ValueError: The record is unreadable or not a JSON object; the message names it.
        """
        records = sorted(self.layout.submissions.glob("*.json"))
        if not records:
            return None
        info = read_json(records[-1])
        if not isinstance(info, dict):
            raise ValueError(f"{records[-1]}: not a launch submission record")
        return info
