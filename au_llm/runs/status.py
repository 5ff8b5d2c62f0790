"""``au-llm status RUN_DIR``: the state of each fold of a run, and how to finish it.

A fold is ``done`` (its predictions CSV exists and reads back whole), ``running`` (a live claim:
which job, host, pid), ``failed`` (its training raised, the process holding its claim died: the
last lines of that job's log are shown, or its files do not read back whole: named, to be set
aside and computed again by the next run) or ``pending`` (with the files of it set aside
earlier, if any). The states are read from the run directory only (nothing is renamed), so the
command works while tasks run on other nodes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from au_llm.fold_lock import read_failure, read_lock, stale_reason
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


def _clock(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def fold_status(run: Run, seed: int, fold: str) -> FoldStatus:
    """The state of work item ``(seed, fold)`` of a run.

    A claim not refreshed for the run's ``launch.lock_timeout`` seconds is dead.
    """
    timeout = run.cfg.launch.lock_timeout
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
    aside = [path.name for path in set_aside_files(marker)]
    detail = f"set aside earlier, not read back whole: {', '.join(aside)}" if aside else ""
    return FoldStatus(seed, fold, "pending", detail)


def fold_states(run: Run) -> list[FoldStatus]:
    """The state of every work item of a run, in the order of its plan."""
    return [fold_status(run, seed, fold) for seed, fold in run.plan()]


def run_status(run_dir: str | Path) -> list[FoldStatus]:
    """The state of every work item of the run in ``run_dir``, in the order of its plan.

    Raises:
        FileNotFoundError: If the folder holds no started run.
    """
    return fold_states(Run.read(run_dir))


def resubmit_command(run: Run) -> str:
    """The command that runs only the missing folds of a run (finished and running are skipped).

    It reuses the run's saved config, whose ``launch`` section holds the last launch settings.
    """
    root, cfg = run.root.resolve(), run.cfg
    command = f"au-llm {cfg.protocol} --config {root / run.layout.config.name}"
    command += f" out_dir={root.parent}"
    if root.name != cfg.name:
        command += f" name={root.name}"
    if cfg.launch.mode != "none":
        command += f" --launch {cfg.launch.mode}"
    return command


def _latest_submission(run: Run) -> list[str]:
    """Lines about the last launch: its jobs, and those that have written no log yet."""
    info = run.latest_submission()
    if info is None:
        return []
    jobs = list(info.get("jobs", {}))
    report = f"; report job {info['report_job']}" if info.get("report_job") else ""
    when = _clock(info["time"])
    listed = ", ".join(jobs) or "none"
    lines = [f"Last launch: {info['mode']} from {info['host']} at {when}, jobs {listed}{report}"]
    silent = [job for job in jobs if not run.layout.job_log(job, "out").exists()]
    if silent:
        lines.append(
            f"{len(silent)} job(s) have written no log yet: still queued, or their node does not "
            f"see {run.root} (it must be on a filesystem that every node mounts)"
        )
    return lines


def describe_states(run: Run, states: list[FoldStatus]) -> str:
    """The text of ``au-llm status``: counts, one line per fold, and what to run next."""
    run_dir = run.root
    counts = Counter(s.state for s in states)
    summary = ", ".join(f"{counts[state]} {state}" for state in STATES)
    shape = f"{len({s.fold for s in states})} fold(s) x {len({s.seed for s in states})} seed(s)"
    lines = [f"Run {run_dir}: {shape}: {summary}"]
    lines += _latest_submission(run)
    width = max(len(s.fold) for s in states) if states else 4
    lines.append(f"{'seed':>4}  {'fold':<{width}}  {'state':<7}  detail")
    for s in states:
        lines.append(f"{s.seed:>4}  {s.fold:<{width}}  {s.state:<7}  {s.detail}".rstrip())
        lines.extend(f"{'':>4}  | {line}" for line in s.log_tail)
    if counts["failed"] or counts["pending"]:
        lines.append(f"To run what is missing: {resubmit_command(run)}")
    elif counts["running"]:
        lines.append(
            "Folds are still running; a launched run rebuilds its report after the last one "
            f"(otherwise: au-llm report {run_dir})"
        )
    else:
        lines.append(f"Every fold is done; outputs: {run_dir} (au-llm report {run_dir})")
    return "\n".join(lines)
