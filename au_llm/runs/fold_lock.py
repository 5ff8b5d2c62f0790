"""Fold claims: which process trains which fold of a run, shared through the run directory.

Several processes (``--shard`` jobs, local workers, SLURM array tasks) may work on one run
directory. Before training a fold, a process claims it by creating ``<fold>.lock`` beside the
fold's predictions CSV (the CSV is the completion marker; it is written atomically, so a fold
half-written by a dead process never counts). The lock is created with a hard link of a complete
temporary file, which is atomic on local filesystems and NFS: two processes never both hold it.

A lock holds the owner's host, pid, job id and log file, when it was claimed and when it was last
refreshed; its holder refreshes it every ``timeout / 10`` seconds. A lock is stale, and taken over
with a warning, when its pid is dead on this host or it was not refreshed for ``timeout`` seconds
(a task killed on another node). A fold whose training raised gets ``<fold>.failed`` with the
error, for ``au-llm status``. The file names are in :mod:`au_llm.runs.layout`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType

from au_llm.io_utils import atomic_write_text, create_exclusive, read_json
from au_llm.runs.layout import failure_file, lock_file

log = logging.getLogger(__name__)

# Environment variables naming the job of a process, most specific first.
_JOB_VARIABLES = ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID", "SUBMITIT_DEBUG_JOB_ID")


def job_id_from_env() -> str:
    """The SLURM or submitit job id of this process (``<array>_<index>`` in an array), or ``""``."""
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        return f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return next((os.environ[v] for v in _JOB_VARIABLES if os.environ.get(v)), "")


@dataclass(frozen=True)
class Owner:
    """A process that claims folds.

    Attributes:
        host: Host name.
        pid: Process id on that host.
        job: SLURM or submitit job id (empty outside a job).
        log: The log file of that job, shown by ``au-llm status`` when a fold fails (or empty).
    """

    host: str
    pid: int
    job: str = ""
    log: str = ""

    @classmethod
    def current(cls, log_file: str = "") -> Owner:
        """This process."""
        return cls(socket.gethostname(), os.getpid(), job_id_from_env(), log_file)

    def describe(self) -> str:
        """``job J on HOST, pid P`` (the job left out when there is none)."""
        job = f"job {self.job} on " if self.job else ""
        return f"{job}{self.host}, pid {self.pid}"


@dataclass(frozen=True)
class LockInfo:
    """The content of a lock file.

    Attributes:
        owner: The process holding the claim.
        token: Unique id of this claim.
        claimed: When the claim was made (seconds since the epoch, the holder's clock).
        heartbeat: When the holder last refreshed the claim.
    """

    owner: Owner
    token: str
    claimed: float
    heartbeat: float


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(path: Path) -> LockInfo | None:
    """The lock at ``path``; None when there is none.

    A lock file that cannot be parsed (edited by hand, or a full disk) reads as held by an
    unknown owner since its modification time, so only the timeout makes it stale.
    """
    try:
        text = path.read_text()
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        return LockInfo(
            Owner(**data["owner"]), data["token"], float(data["claimed"]), data["heartbeat"]
        )
    except (ValueError, KeyError, TypeError):
        return LockInfo(Owner("?", 0), "", mtime, mtime)


def stale_reason(info: LockInfo, timeout: float, now: float | None = None) -> str | None:
    """Why a lock is stale (its process is dead on this host, or no refresh for ``timeout`` s).

    Returns:
        The reason, or None when the claim is live.
    """
    if info.owner.host == socket.gethostname() and not pid_alive(info.owner.pid):
        return f"process {info.owner.pid} on {info.owner.host} is gone"
    age = (time.time() if now is None else now) - info.heartbeat
    if age > timeout:
        return f"no refresh for {age:.0f} s (launch.lock_timeout = {timeout:g} s)"
    return None


def _lock_text(owner: Owner, token: str, claimed: float) -> str:
    record = {"owner": asdict(owner), "token": token, "claimed": claimed, "heartbeat": time.time()}
    return json.dumps(record, indent=2)


def _remove_stale(path: Path, timeout: float) -> bool:
    """Move a stale lock out of the way; False when it turned out to be live after all.

    The lock is renamed first, so of two processes removing the same stale lock only one does;
    what was moved is checked again and put back if it is live (refreshed, or a new claim).
    """
    grave = path.with_name(f".{path.name}.{uuid.uuid4().hex}.stale")
    try:
        os.replace(path, grave)
    except FileNotFoundError:
        return True
    moved = read_lock(grave)
    live = moved is not None and stale_reason(moved, timeout) is None
    if live:
        with contextlib.suppress(FileExistsError):
            os.link(grave, path)
    grave.unlink()
    return not live


class Claim:
    """A held fold claim; a context manager that refreshes the lock while its block runs.

    Leaving the block removes the lock; an exception leaving it first writes the failure record
    (and is re-raised).
    """

    def __init__(
        self, marker: Path, owner: Owner, token: str, claimed: float, timeout: float
    ) -> None:
        self.marker = marker
        self.owner = owner
        self.token = token
        self.claimed = claimed
        self._interval = timeout / 10
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._refresh, daemon=True, name="fold-claim")

    def __enter__(self) -> Claim:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if exc is not None:
            self._record_failure(exc)
        self.release()

    def _refresh(self) -> None:
        path = lock_file(self.marker)
        while not self._stop.wait(self._interval):
            current = read_lock(path)
            if current is None or current.token != self.token:
                holder = current.owner.describe() if current else "nobody"
                log.warning("%s: claim lost (held by %s); training goes on", path, holder)
                return
            atomic_write_text(path, _lock_text(self.owner, self.token, self.claimed))

    def _record_failure(self, exc: BaseException) -> None:
        record = {
            "owner": asdict(self.owner),
            "time": time.time(),
            "error": f"{type(exc).__name__}: {exc}",
            "traceback": traceback.format_exception(exc)[-20:],
        }
        atomic_write_text(failure_file(self.marker), json.dumps(record, indent=2))

    def release(self) -> None:
        """Remove the lock if this claim still holds it."""
        path = lock_file(self.marker)
        current = read_lock(path)
        if current is not None and current.token == self.token:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def try_claim(marker: Path, timeout: float, owner: Owner) -> Claim | None:
    """Claim the fold whose completion marker is ``marker``, taking over a stale claim.

    Args:
        marker: The fold's predictions CSV.
        timeout: Seconds without refresh after which another process's claim is stale.
        owner: This process.

    Returns:
        The claim (use it as a context manager around the training), or None when the fold is
        finished or another live process holds it.
    """
    path = lock_file(marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        if marker.exists():
            return None
        token, claimed = uuid.uuid4().hex, time.time()
        if create_exclusive(path, _lock_text(owner, token, claimed)):
            claim = Claim(marker, owner, token, claimed, timeout)
            if marker.exists():
                claim.release()
                return None
            with contextlib.suppress(FileNotFoundError):
                failure_file(marker).unlink()
            return claim
        current = read_lock(path)
        if current is None:
            continue
        reason = stale_reason(current, timeout)
        if reason is None:
            log.info("%s: claimed by %s", marker.stem, current.owner.describe())
            return None
        if _remove_stale(path, timeout):
            log.warning(
                "%s: taking over the stale claim of %s (%s)",
                marker.stem,
                current.owner.describe(),
                reason,
            )
    return None


def read_failure(marker: Path) -> dict | None:
    """The failure record of a fold (owner, time, error, traceback), or None.

    A record that cannot be read back (truncated, edited) gives its own problem as the error.
    """
    path = failure_file(marker)
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except ValueError as exc:
        return {"error": str(exc)}
    return record if isinstance(record, dict) else {"error": f"{path}: not a failure record"}
