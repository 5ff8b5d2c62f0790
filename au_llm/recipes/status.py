"""``au-llm status RUN_DIR``: the state of each fold of a run, and how to finish it.

The states come from the run folder (:mod:`au_llm.runs.status`); the run's saved config gives
the claim timeout and the command that runs what is missing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from au_llm.recipes.run_config import saved_config
from au_llm.runs.run import Run
from au_llm.runs.status import STATES, FoldStatus, clock, fold_states


def run_states(run: Run) -> list[FoldStatus]:
    """The state of every work item of ``run``, with the claim timeout of its saved config."""
    return fold_states(run, lock_timeout=saved_config(run).launch.lock_timeout)


def run_status(run_dir: str | Path) -> list[FoldStatus]:
    """The state of every work item of the run in ``run_dir``, in the order of its plan.

    Raises:
        FileNotFoundError: If the folder holds no started run.
    """
    return run_states(Run.read(run_dir))


def resubmit_command(run: Run) -> str:
    """The command that runs only the missing folds of a run (finished and running are skipped).

    It reuses the run's saved config, whose ``launch`` section holds the last launch settings.
    """
    root, cfg = run.root.resolve(), saved_config(run)
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
    when = clock(info["time"])
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
