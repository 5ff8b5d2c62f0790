import json
import logging
import multiprocessing
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from au_llm.runs.fold_lock import (
    Owner,
    read_failure,
    read_lock,
    stale_reason,
    try_claim,
)
from au_llm.runs.layout import lock_file


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def write_lock(marker: Path, owner: Owner, heartbeat: float) -> None:
    record = {
        "owner": {"host": owner.host, "pid": owner.pid, "job": owner.job, "log": owner.log},
        "token": "t0",
        "claimed": heartbeat,
        "heartbeat": heartbeat,
    }
    lock_file(marker).write_text(json.dumps(record))


def test_a_claim_is_exclusive_and_released(tmp_path):
    marker = tmp_path / "sub01.csv"
    me = Owner.current()
    claim = try_claim(marker, 60, me)
    assert claim is not None
    with claim:
        assert read_lock(lock_file(marker)).owner == me
        assert try_claim(marker, 60, Owner("node7", 1, "99_1")) is None
    assert not lock_file(marker).exists()
    marker.write_text("finished")
    assert try_claim(marker, 60, me) is None
    assert not lock_file(marker).exists()


def _claim_all(folder: str, n_items: int) -> None:
    owner = Owner.current()
    for i in range(n_items):
        marker = Path(folder) / f"{i}.csv"
        claim = try_claim(marker, 60, owner)
        if claim is None:
            continue
        with claim:
            with open(Path(folder) / "trained.log", "a") as log:
                log.write(f"{i} {os.getpid()}\n")
            time.sleep(0.002)
            marker.write_text("done")


def test_racing_workers_never_train_a_fold_twice(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_claim_all, args=(str(tmp_path), 60)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    trained = [line.split() for line in (tmp_path / "trained.log").read_text().splitlines()]
    assert sorted(int(item) for item, _ in trained) == list(range(60))
    assert len({pid for _, pid in trained}) > 1, "one worker did everything: no race was tested"
    assert not list(tmp_path.glob("*.lock")) and not list(tmp_path.glob(".*"))


def test_the_claim_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    marker = tmp_path / "sub01.csv"
    write_lock(marker, Owner(socket.gethostname(), dead_pid(), "77_2"), time.time())
    assert "is gone" in stale_reason(read_lock(lock_file(marker)), 600)
    with caplog.at_level(logging.WARNING):
        claim = try_claim(marker, 600, Owner.current())
    assert claim is not None
    assert "stale claim of job 77_2" in caplog.text
    assert read_lock(lock_file(marker)).owner == Owner.current()
    claim.release()


def test_a_claim_from_another_host_is_stale_only_after_the_timeout(tmp_path, caplog):
    marker = tmp_path / "sub01.csv"
    elsewhere = Owner("node7", 1, "77_2")
    write_lock(marker, elsewhere, time.time() - 100)
    assert try_claim(marker, 600, Owner.current()) is None
    assert read_lock(lock_file(marker)).owner == elsewhere
    write_lock(marker, elsewhere, time.time() - 700)
    with caplog.at_level(logging.WARNING):
        claim = try_claim(marker, 600, Owner.current())
    assert claim is not None and "no refresh for 7" in caplog.text
    claim.release()


def test_an_unreadable_lock_is_stale_only_after_the_timeout(tmp_path):
    marker = tmp_path / "sub01.csv"
    lock_file(marker).write_text("{not json")
    assert try_claim(marker, 600, Owner.current()) is None
    old = time.time() - 700
    os.utime(lock_file(marker), (old, old))
    claim = try_claim(marker, 600, Owner.current())
    assert claim is not None
    claim.release()


def test_a_held_claim_is_refreshed_so_it_never_goes_stale(tmp_path):
    marker = tmp_path / "sub01.csv"
    with try_claim(marker, 1.0, Owner.current()):
        time.sleep(1.6)
        info = read_lock(lock_file(marker))
        assert info.heartbeat > info.claimed + 1.0
        assert try_claim(marker, 1.0, Owner("node7", 1)) is None


def test_a_failed_fold_is_recorded_and_cleared_by_the_next_claim(tmp_path):
    marker = tmp_path / "sub01.csv"
    me = Owner.current("job.log")
    with pytest.raises(ValueError, match="boom"), try_claim(marker, 60, me):
        raise ValueError("boom")
    failure = read_failure(marker)
    assert failure["error"] == "ValueError: boom" and failure["owner"]["log"] == "job.log"
    assert any("raise ValueError" in line for line in failure["traceback"])
    assert not lock_file(marker).exists()
    with try_claim(marker, 60, me):
        assert read_failure(marker) is None
