"""``au-llm status RUN_DIR``: the state of each fold of a run, and how to finish it.

A fold is ``done`` (its predictions CSV exists), ``running`` (a live claim: which job, host,
pid), ``failed`` (its training raised, or the process holding its claim died: the last lines of
that job's log are shown) or ``pending``. The states are read from the run directory only, so
the command works while tasks run on other nodes.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from au_llm.config import load_config
from au_llm.fold_lock import (
    lock_path,
    plan_path,
    read_failure,
    read_lock,
    read_plan,
    stale_reason,
)
from au_llm.protocol import fold_paths

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


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def fold_status(run_dir: Path, seed: int, fold: str, timeout: float) -> FoldStatus:
    """The state of work item ``(seed, fold)`` of a run (claims older than ``timeout`` are dead)."""
    marker, record = fold_paths(run_dir, seed, fold)
    if marker.exists():
        try:
            seconds = json.loads(record.read_text())["seconds"]
        except (OSError, ValueError, KeyError):
            return FoldStatus(seed, fold, "done")
        return FoldStatus(seed, fold, "done", f"trained in {seconds:.0f} s")
    claim = read_lock(lock_path(marker))
    if claim is not None:
        who = claim.owner.describe()
        reason = stale_reason(claim, timeout)
        if reason is None:
            ago = time.time() - claim.heartbeat
            detail = f"{who}, since {_clock(claim.claimed)} (refreshed {ago:.0f} s ago)"
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
    return FoldStatus(seed, fold, "pending")


def run_status(run_dir: Path) -> list[FoldStatus]:
    """The state of every work item of a run, in the order of its plan.

    Raises:
        FileNotFoundError: If the folder holds no run (no ``plan.json``).
    """
    run_dir = Path(run_dir)
    if not plan_path(run_dir).is_file():
        raise FileNotFoundError(
            f"{run_dir}: no plan.json; not a run directory, or its run has not started"
        )
    timeout = load_config(run_dir / "config.yaml").launch.lock_timeout
    return [fold_status(run_dir, seed, fold, timeout) for seed, fold in read_plan(run_dir)]


def resubmit_command(run_dir: Path) -> str:
    """The command that runs only the missing folds of a run (finished and running are skipped).

    It reuses the run's saved config, whose ``launch`` section holds the last launch settings.
    """
    run_dir = Path(run_dir).resolve()
    cfg = load_config(run_dir / "config.yaml")
    command = f"au-llm {cfg.protocol} --config {run_dir / 'config.yaml'} out_dir={run_dir.parent}"
    if run_dir.name != cfg.name:
        command += f" name={run_dir.name}"
    if cfg.launch.mode != "none":
        command += f" --launch {cfg.launch.mode}"
    return command


def log_folder(run_dir: Path) -> Path:
    """The folder of submitit's job scripts, pickles and logs inside a run directory."""
    return Path(run_dir) / "launch" / "logs"


def job_log(run_dir: Path, job_id: str, stream: str = "err") -> Path:
    """The ``out`` or ``err`` log of a submitit job's first task (tracebacks go to ``err``)."""
    return log_folder(run_dir) / f"{job_id}_0_log.{stream}"


def _latest_submission(run_dir: Path) -> list[str]:
    """Lines about the last launch: its jobs, and those that have written no log yet."""
    records = sorted((run_dir / "launch" / "submissions").glob("*.json"))
    if not records:
        return []
    info = json.loads(records[-1].read_text())
    jobs = list(info.get("jobs", {}))
    report = f"; report job {info['report_job']}" if info.get("report_job") else ""
    when = _clock(info["time"])
    listed = ", ".join(jobs) or "none"
    lines = [f"Last launch: {info['mode']} from {info['host']} at {when}, jobs {listed}{report}"]
    silent = [job for job in jobs if not job_log(run_dir, job, "out").exists()]
    if silent:
        lines.append(
            f"{len(silent)} job(s) have written no log yet: still queued, or their node does not "
            f"see {run_dir} (it must be on a filesystem that every node mounts)"
        )
    return lines


def describe_states(run_dir: Path, states: list[FoldStatus]) -> str:
    """The text of ``au-llm status``: counts, one line per fold, and what to run next."""
    run_dir = Path(run_dir)
    counts = Counter(s.state for s in states)
    summary = ", ".join(f"{counts[state]} {state}" for state in STATES)
    shape = f"{len({s.fold for s in states})} fold(s) x {len({s.seed for s in states})} seed(s)"
    lines = [f"Run {run_dir}: {shape}: {summary}"]
    lines += _latest_submission(run_dir)
    width = max(len(s.fold) for s in states) if states else 4
    lines.append(f"{'seed':>4}  {'fold':<{width}}  {'state':<7}  detail")
    for s in states:
        lines.append(f"{s.seed:>4}  {s.fold:<{width}}  {s.state:<7}  {s.detail}".rstrip())
        lines.extend(f"{'':>4}  | {line}" for line in s.log_tail)
    if counts["failed"] or counts["pending"]:
        lines.append(f"To run what is missing: {resubmit_command(run_dir)}")
    elif counts["running"]:
        lines.append(
            "Folds are still running; a launched run rebuilds its report after the last one "
            f"(otherwise: au-llm report {run_dir})"
        )
    else:
        lines.append(f"Every fold is done; outputs: {run_dir} (au-llm report {run_dir})")
    return "\n".join(lines)
