"""Spread a protocol's folds over local worker processes or a SLURM job array (with submitit).

The work items are seeds x folds. :func:`submit_slurm` deals the unfinished ones round-robin to
``launch.jobs`` tasks of one SLURM array and submits a report job that runs after the array;
:func:`run_local` starts one worker per entry of ``launch.devices`` (pinned with
``CUDA_VISIBLE_DEVICES``) and builds the report itself when they are done. Every task first
trains its own items, then items that no other process has claimed (so a fast task helps a slow
one), each under a fold claim (:mod:`au_llm.runs.fold_lock`); all of them write into one run
directory, exactly as one process would.

Each submission is recorded in the run folder (:meth:`~au_llm.runs.run.Run.record_submission`);
that file is also the probe that tells a task on another node whether it sees the run directory.
Job logs are in the run's ``launch/logs`` (:mod:`au_llm.runs.layout`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from au_llm.config import ExperimentConfig, parse_devices, slurm_minutes
from au_llm.protocols import select_folds
from au_llm.recipes.experiment import open_run, run_work
from au_llm.recipes.report import report_if_finished
from au_llm.recipes.status import describe_states, run_states
from au_llm.reports.tables import RunTables
from au_llm.runs.fold_lock import Owner, job_id_from_env
from au_llm.runs.layout import RunLayout
from au_llm.runs.run import Item, Run
from au_llm.runs.status import fold_states

log = logging.getLogger(__name__)

# Local workers have no time limit; submitit's local executor needs one (minutes: a year).
LOCAL_TIMEOUT_MIN = 60 * 24 * 365
# Minutes asked for the report job (it only reads the fold CSVs).
REPORT_TIMEOUT_MIN = 60
# Filesystems whose files no other node sees.
NODE_LOCAL_FILESYSTEMS = ("tmpfs", "ramfs")


@dataclass(frozen=True)
class TaskSpec:
    """What one task (a SLURM array task or a local worker) runs; pickled by submitit.

    Attributes:
        cfg: The experiment.
        run_dir: The run directory (absolute).
        own: The work items dealt to this task.
        shared: Every work item of the submission, tried after ``own`` when unclaimed.
        probe: The submission record; a task that cannot read it does not see the run directory.
        submit_host: Host that submitted, for the error message.
        time_limit_s: The task's time limit (None: none); no item beyond ``own`` is started when
            the longest item so far says it would not end in time.
        threads: torch CPU threads (0: ``train.num_threads``, or torch's default when that is 0).
    """

    cfg: ExperimentConfig
    run_dir: str
    own: list[Item]
    shared: list[Item]
    probe: str
    submit_host: str
    time_limit_s: float | None = None
    threads: int = 0


def deal(items: list[Item], n_tasks: int) -> list[list[Item]]:
    """Deal work items round-robin to ``n_tasks`` tasks (0: one per item); no task left empty."""
    n = min(n_tasks or len(items), len(items))
    return [items[k::n] for k in range(n)]


def _submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise RuntimeError(
            "--launch needs submitit: pip install 'au-llm[slurm]' (or pip install submitit)"
        ) from None
    return submitit


def task_items(spec: TaskSpec, started: float) -> Iterator[Item]:
    """A task's items: its own, then the others while its time limit allows another one.

    Args:
        spec: The task.
        started: ``time.monotonic()`` when the task started.

    Yields:
        Work items; the caller trains each one before asking for the next.
    """
    others = [item for item in spec.shared if item not in spec.own]
    longest, last = 0.0, time.monotonic()
    for k, item in enumerate([*spec.own, *others]):
        now = time.monotonic()
        longest, last = max(longest, now - last), now
        late = spec.time_limit_s and now - started + 1.25 * longest > spec.time_limit_s
        if k >= len(spec.own) and late:
            log.info("not starting more folds: the time limit would end this task first")
            return
        yield item


def _log_to_stderr() -> None:
    """In a job process, send the toolkit's log lines to the job's stderr log (no-op if set)."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def check_probe(spec: TaskSpec) -> None:
    """Fail clearly when this node does not see the run directory of the submission.

    Raises:
        RuntimeError: If the submission record written at submit time is missing here.
    """
    if not Path(spec.probe).is_file():
        raise RuntimeError(
            f"{socket.gethostname()} does not see the run directory {spec.run_dir}: "
            f"{spec.probe}, written on {spec.submit_host} at submit time, is missing here. "
            "Put out_dir (and data.cache_dir) on a filesystem that every node mounts, "
            "not /tmp or a node's local disk."
        )


def run_task(spec: TaskSpec) -> list[Item]:
    """One task: prepare the (cached) clips, then train its items into the run directory.

    Returns:
        The items of the submission that are finished when the task ends.

    Raises:
        RuntimeError: If the run directory is not visible here, or its data changed.
    """
    started = time.monotonic()
    _log_to_stderr()
    check_probe(spec)
    threads = spec.threads or spec.cfg.train.num_threads
    if threads:
        torch.set_num_threads(threads)
    opened = open_run(spec.cfg, torch.get_num_threads(), progress=False, joining=Path(spec.run_dir))
    run = opened.run
    owner = Owner.current(str(run.layout.job_log(job_id_from_env())))
    log.info("task %s: %d own work item(s)", owner.describe(), len(spec.own))
    run_work(opened, task_items(spec, started), progress=False, owner=owner)
    return [item for item in spec.shared if run.is_finished(*item)]


def report_task(run_dir: str) -> str:
    """The report job: rebuild the outputs from the finished folds and log the run's status.

    Returns:
        The status text.
    """
    _log_to_stderr()
    run = Run.read(run_dir)
    report_if_finished(run)
    text = describe_states(run, run_states(run))
    log.info("%s", text)
    return text


def _node_local_warning(path: Path) -> None:
    """Warn when ``path`` is on a filesystem that other nodes cannot see (tmpfs, /tmp)."""
    path = path.resolve()
    fstype = ""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
        matches = [m for m in mounts if path.is_relative_to(m[0])]
        fstype = max(matches, key=lambda m: len(m[0]))[1] if matches else ""
    except OSError:
        pass
    where = fstype if fstype in NODE_LOCAL_FILESYSTEMS else "/tmp"
    if fstype in NODE_LOCAL_FILESYSTEMS or path.is_relative_to("/tmp"):
        log.warning(
            "%s is on a node-local filesystem (%s): SLURM tasks on other nodes will not see it; "
            "set out_dir to a shared filesystem",
            path,
            where,
        )


@dataclass
class Prepared:
    """A run directory ready for tasks.

    Attributes:
        run: The run (its folder is absolute).
        todo: Work items neither finished nor held by a live claim.
        record: The submission record (also the probe tasks look for).
    """

    run: Run
    todo: list[Item]
    record: Path

    @property
    def run_dir(self) -> Path:
        """The run folder."""
        return self.run.root


def prepare_launch(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    *,
    progress: bool = True,
    num_threads: int | None = None,
) -> Prepared:
    """Open the run, prepare the clips once, and record a submission of the unfinished items.

    Args:
        cfg: The experiment.
        fold_names: Only these folds (``--folds``).
        shard: Only shard K of N of the folds (``--shard``).
        progress: Show progress bars while preparing the clips.
        num_threads: The CPU threads the tasks will use (None: each task decides and checks).
    """
    opened = open_run(cfg, num_threads, progress=progress)
    selected = {fold.name for fold in select_folds(opened.folds, fold_names, shard)}
    states = fold_states(opened.run, lock_timeout=cfg.launch.lock_timeout)
    waiting = {(s.seed, s.fold) for s in states if s.state in ("pending", "failed")}
    todo = [(seed, f.name) for seed in cfg.seeds for f in opened.folds if f.name in selected]
    todo = [item for item in todo if item in waiting]
    record = opened.run.record_submission(cfg.launch.mode, socket.gethostname(), todo)
    return Prepared(opened.run, todo, record)


def _specs(
    cfg: ExperimentConfig, prepared: Prepared, groups: list[list[Item]], **extra: Any
) -> list[TaskSpec]:
    common = {
        "cfg": cfg,
        "run_dir": str(prepared.run_dir),
        "shared": prepared.todo,
        "probe": str(prepared.record),
        "submit_host": socket.gethostname(),
    }
    return [TaskSpec(own=group, **common, **extra) for group in groups]


def slurm_parameters(cfg: ExperimentConfig) -> dict[str, Any]:
    """The submitit parameters of the array tasks (``None`` values are left unset)."""
    launch = cfg.launch
    return {
        "name": f"au-llm-{cfg.name}",
        "timeout_min": slurm_minutes(cfg.launch.time),
        "cpus_per_task": launch.cpus_per_job or None,
        "mem_gb": launch.mem_gb or None,
        "slurm_partition": launch.partition or None,
        "slurm_gres": f"gpu:{launch.gpus_per_job}" if launch.gpus_per_job else None,
        "slurm_array_parallelism": launch.array_parallelism or None,
        "slurm_additional_parameters": dict(launch.slurm_extra) or None,
        "slurm_setup": list(launch.setup) or None,
    }


@dataclass
class Submission:
    """What :func:`submit_slurm` submitted.

    Attributes:
        run_dir: The run directory.
        record: The submission record.
        jobs: The submitit jobs of the array tasks (empty when nothing was left to do).
        report_job: The submitit job building the report.
        items: The work items submitted.
    """

    run_dir: Path
    record: Path
    jobs: list[Any]
    report_job: Any | None
    items: list[Item]


def submit_slurm(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    *,
    progress: bool = True,
    cluster: str = "slurm",
) -> Submission:
    """Submit the unfinished folds as one SLURM array, and a report job that runs after it.

    Args:
        cfg: The experiment (``launch`` holds the SLURM settings).
        fold_names: Only these folds (``--folds``).
        shard: Only shard K of N of the folds (``--shard``).
        progress: Show progress bars while preparing the clips.
        cluster: submitit executor (``slurm``; ``debug`` or ``local`` run the same submission
            on this machine).

    Returns:
        The submission.
    """
    submitit = _submitit()
    prepared = prepare_launch(
        cfg, fold_names, shard, progress=progress, num_threads=cfg.train.num_threads or None
    )
    if not prepared.todo:
        log.info("%s: every selected fold is finished or running", prepared.run_dir)
        return Submission(prepared.run_dir, prepared.record, [], None, [])
    _node_local_warning(prepared.run_dir)
    folder = prepared.run.layout.logs
    groups = deal(prepared.todo, cfg.launch.jobs)
    specs = _specs(cfg, prepared, groups, time_limit_s=60.0 * slurm_minutes(cfg.launch.time))
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
    parameters = slurm_parameters(cfg)
    executor.update_parameters(**parameters)
    jobs = executor.map_array(run_task, specs)
    array_id = jobs[0].job_id.split("_")[0]
    report = submitit.AutoExecutor(folder=folder, cluster=cluster)
    report.update_parameters(
        **{
            **parameters,
            "name": f"{parameters['name']}-report",
            "timeout_min": min(REPORT_TIMEOUT_MIN, parameters["timeout_min"]),
            "slurm_gres": None,
            "slurm_array_parallelism": None,
            "slurm_dependency": f"afterany:{array_id}",
        }
    )
    report_job = report.submit(report_task, str(prepared.run_dir))
    prepared.run.update_submission(
        prepared.record,
        jobs={job.job_id: group for job, group in zip(jobs, groups, strict=True)},
        report_job=report_job.job_id,
    )
    return Submission(prepared.run_dir, prepared.record, jobs, report_job, prepared.todo)


def _worker_threads(cfg: ExperimentConfig, n_workers: int) -> int:
    """The torch threads of a CPU worker: ``train.num_threads``, else the CPUs split evenly."""
    return cfg.train.num_threads or max(1, (os.cpu_count() or 1) // n_workers)


def _error_line(exc: Exception) -> str:
    """The line of a submitit job error that says what went wrong (the raised error if any)."""
    lines = str(exc).strip().splitlines() or [type(exc).__name__]
    raised = [line for line in lines if re.match(r"[\w.]+(Error|Exception|Interrupt)\b", line)]
    return (raised or lines)[-1 if raised else 0].strip()


def _wait(jobs: list[Any], run: Run, todo: list[Item], *, progress: bool) -> list[str]:
    """Wait for local jobs, showing finished folds; return an error line per failed job."""
    with tqdm(total=len(todo), desc="folds", unit="fold", disable=not progress) as bar:
        while not all(job.done() for job in jobs):
            bar.n = sum(run.is_finished(*item) for item in todo)
            bar.refresh()
            time.sleep(1.0)
    errors = []
    for job in jobs:
        try:
            job.result()
        except Exception as exc:  # noqa: BLE001 (a worker's failure is reported, not raised)
            errors.append(f"worker {job.job_id}: {_error_line(exc)}")
    return errors


def worker_gpus(
    devices: list[int | None], visible: str | None, count: int | None = None
) -> list[int | None]:
    """Physical GPU ids of ``launch.devices`` indices, counted among the GPUs this process sees.

    An index counts the GPUs visible here, as CUDA does: with an inherited
    ``CUDA_VISIBLE_DEVICES=5,7``, index 1 is physical GPU 7 (the id a worker is pinned to).

    Args:
        devices: :func:`~au_llm.config.parse_devices` output (None: a CPU worker).
        visible: The inherited ``CUDA_VISIBLE_DEVICES`` (None when unset).
        count: GPUs present when ``visible`` is unset (default ``torch.cuda.device_count()``).

    Raises:
        ValueError: An index that does not exist, or an inherited list that is not numeric.
    """
    if visible is None:
        ids = list(range(torch.cuda.device_count() if count is None else count))
    else:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if not all(e.isdigit() for e in entries):
            raise ValueError(
                f"CUDA_VISIBLE_DEVICES={visible!r}: launch.devices needs numeric GPU ids there"
            )
        ids = [int(e) for e in entries]
    missing = [d for d in devices if d is not None and d >= len(ids)]
    if missing:
        seen = f"CUDA_VISIBLE_DEVICES={visible}" if visible is not None else "this machine"
        raise ValueError(
            f"launch.devices: GPU index {missing[0]} does not exist; {seen} gives {len(ids)} "
            f"GPU(s) (indices 0..{len(ids) - 1})"
        )
    return [None if d is None else ids[d] for d in devices]


def run_local(
    cfg: ExperimentConfig,
    fold_names: list[str] | None = None,
    shard: tuple[int, int] | None = None,
    *,
    progress: bool = True,
    cluster: str = "local",
) -> tuple[Path, RunTables | None]:
    """Train the unfinished folds with one worker per device, then build the report here.

    Args:
        cfg: The experiment (``launch.devices`` names the workers).
        fold_names: Only these folds (``--folds``).
        shard: Only shard K of N of the folds (``--shard``).
        progress: Show progress bars.
        cluster: submitit executor (``local``; ``debug`` runs the workers one after another in
            this process).

    Returns:
        The run directory and its metric tables (None when no fold of the run is finished).

    Raises:
        RuntimeError: If a worker failed (the report is still rebuilt from the finished folds).
        ValueError: A GPU index that does not exist (see :func:`worker_gpus`).
    """
    submitit = _submitit()
    devices = worker_gpus(parse_devices(cfg.launch.devices), os.environ.get("CUDA_VISIBLE_DEVICES"))
    threads = _worker_threads(cfg, len(devices)) if None in devices else 0
    prepared = prepare_launch(
        cfg,
        fold_names,
        shard,
        progress=progress,
        num_threads=threads or cfg.train.num_threads or None,
    )
    jobs = []
    if prepared.todo:
        groups = deal(prepared.todo, len(devices))
        specs = _specs(cfg, prepared, groups, threads=threads)
        folder = prepared.run.layout.logs
        for device, spec in zip(devices, specs, strict=False):
            if cluster == "local":
                executor = submitit.LocalExecutor(folder=folder)
                executor.update_parameters(
                    timeout_min=LOCAL_TIMEOUT_MIN,
                    gpus_per_node=0 if device is None else 1,
                    visible_gpus=() if device is None else (device,),
                )
            else:
                executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
            jobs.append(executor.submit(run_task, spec))
        owns = {job.job_id: spec.own for job, spec in zip(jobs, specs, strict=True)}
        prepared.run.update_submission(prepared.record, jobs=owns)
    try:
        errors = _wait(jobs, prepared.run, prepared.todo, progress=progress)
    except KeyboardInterrupt:
        for job in jobs:
            job.cancel(check=False)
        raise
    if errors:
        report_if_finished(prepared.run)
        raise RuntimeError(
            f"{len(errors)} of {len(jobs)} workers failed ({'; '.join(errors)}); the report "
            f"holds the finished folds; see au-llm status {prepared.run_dir}"
        )
    return prepared.run_dir, report_if_finished(prepared.run)


def submission_summary(submission: Submission) -> str:
    """What was submitted and how to follow it."""
    if not submission.jobs:
        return f"{submission.run_dir}: nothing to submit (every selected fold is done or running)"
    array = submission.jobs[0].job_id.split("_")[0]
    n_items = len(submission.items)
    return "\n".join(
        [
            f"Submitted {n_items} fold(s) as {len(submission.jobs)} task(s) of job {array}; "
            f"report job {submission.report_job.job_id} runs after them.",
            f"Logs: {RunLayout(submission.run_dir).logs}",
            f"Follow: au-llm status {submission.run_dir}",
        ]
    )
