"""The state of each fold of a run, read from the run folder (``au-llm status``).

A fold is ``done`` (its predictions CSV exists and reads back whole), ``running`` (a live claim:
which job, host, pid), ``failed`` (its training raised, the process holding its claim died: the
last lines of that job's log are shown, or its files do not read back whole: named, to be set
aside and computed again by the next run) or ``pending`` (with the files of it set aside
earlier, if any). The states are read from the run directory only (nothing is renamed), so
``au-llm status`` (:mod:`au_llm.recipes.status`) works while tasks run on other nodes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from au_llm.runs.fold_lock import read_failure, read_lock, stale_reason
from au_llm.runs.folds import fold_problem
from au_llm.runs.layout import lock_file, set_aside_files
from au_llm.runs.run import Run

STATES = ("done", "running", "failed", "pending")
LOG_LINES = 8


@dataclass(frozen=True)
class FoldStatus:
    """The state of one work item.

    Attributes:
        seed: The seed.
        fold: The fold name.
        state: ``done``, ``running``, ``failed`` or ``pending``.
        detail: Who trains or trained it, since when, or what went wrong.
        log_tail: Last lines of the log of a failed fold's job (or of its traceback).
    """

    seed: int
    fold: str
    state: str
    detail: str = ""
    log_tail: tuple[str, ...] = ()


def tail(path: str | Path, n: int = LOG_LINES) -> tuple[str, ...]:
    """The last ``n`` non-empty lines of a text file (empty when it cannot be read)."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return ()
    return tuple(line for line in lines if line.strip())[-n:]


def clock(seconds: float) -> str:
    """``seconds`` since the epoch as local ``YYYY-MM-DD HH:MM``."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def fold_status(run: Run, seed: int, fold: str, *, lock_timeout: float) -> FoldStatus:
    """The state of work item ``(seed, fold)`` of a run.

    A claim not refreshed for ``lock_timeout`` seconds (the run's ``launch.lock_timeout``) is
    dead.
    """
    marker = run.layout.fold_predictions(seed, fold)
    if marker.exists():
        problem = fold_problem(run.layout, seed, fold)
        if problem is not None:
            detail = f"{problem}; the next run sets it aside and computes the fold again"
            return FoldStatus(seed, fold, "failed", detail)
        try:
            seconds = run.read_fold_record(seed, fold)["seconds"]
        except (ValueError, KeyError, TypeError):
            return FoldStatus(seed, fold, "done")
        return FoldStatus(seed, fold, "done", f"trained in {seconds:.0f} s")
    claim = read_lock(lock_file(marker))
    if claim is not None:
        who = claim.owner.describe()
        reason = stale_reason(claim, lock_timeout)
        if reason is None:
            ago = time.time() - claim.heartbeat
            detail = f"{who}, since {clock(claim.claimed)} (refreshed {ago:.0f} s ago)"
            return FoldStatus(seed, fold, "running", detail)
        return FoldStatus(seed, fold, "failed", f"{who} died ({reason})", tail(claim.owner.log))
    failure = read_failure(marker)
    if failure is not None:
        owner = failure.get("owner", {})
        job = f"job {owner['job']} on " if owner.get("job") else ""
        who = f"{job}{owner.get('host', '?')}, pid {owner.get('pid', '?')}"
        lines = (
            tail(owner.get("log", ""))
            or tuple(line for chunk in failure.get("traceback", []) for line in chunk.splitlines())[
                -LOG_LINES:
            ]
        )
        return FoldStatus(seed, fold, "failed", f"{who}: {failure.get('error', '?')}", lines)
    aside = [path.name for path in set_aside_files(marker)]
    detail = f"set aside earlier, not read back whole: {', '.join(aside)}" if aside else ""
    return FoldStatus(seed, fold, "pending", detail)


def fold_states(run: Run, *, lock_timeout: float) -> list[FoldStatus]:
    """The state of every work item of a run, in the order of its plan (see :func:`fold_status`)."""
    return [fold_status(run, seed, fold, lock_timeout=lock_timeout) for seed, fold in run.plan()]
