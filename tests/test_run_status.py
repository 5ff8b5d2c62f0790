import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from au_llm.data.manifest import read_manifest
from au_llm.recipes.cli import main, protocol_request
from au_llm.recipes.experiment import run_protocol
from au_llm.recipes.parser import build_parser
from au_llm.recipes.status import resubmit_command, run_status
from au_llm.runs.fold_lock import Owner, try_claim
from au_llm.runs.layout import RunLayout, lock_file
from au_llm.runs.run import Run
from tests.conftest import tiny_config


def claim_as(marker: Path, owner: Owner) -> None:
    """Leave a claim of ``owner`` on a fold, as a process that never releases it."""
    assert try_claim(marker, 600, owner) is not None


def test_status_of_a_half_finished_run(tiny_data, tmp_path, capsys):
    cfg = tiny_config(tiny_data, tmp_path, "half", "loso", "seeds=[1,2]")
    first, second, third = sorted(read_manifest(tiny_data.casme2)["subject"].unique())
    run_dir, _ = run_protocol(cfg, [first], progress=False)
    claim_as(RunLayout(run_dir).fold_predictions(1, second), Owner("node7", 4242, "88_1"))
    oom_log = tmp_path / "88_2_0_log.err"
    oom_log.write_text(
        "loading\nTraceback (most recent call last):\nRuntimeError: CUDA out of memory\n"
    )
    with (
        pytest.raises(RuntimeError),
        try_claim(
            RunLayout(run_dir).fold_predictions(1, third),
            600,
            Owner("node8", 17, "88_2", str(oom_log)),
        ),
    ):
        raise RuntimeError("CUDA out of memory")
    dead = subprocess.Popen(["true"])
    dead.wait()
    killed_log = tmp_path / "88_3_0_log.err"
    killed_log.write_text("epoch 3/350\n")
    claim_as(
        RunLayout(run_dir).fold_predictions(2, second),
        Owner(socket.gethostname(), dead.pid, "88_3", str(killed_log)),
    )

    states = {(s.seed, s.fold): s for s in run_status(run_dir)}
    expected = {(1, first): "done", (1, second): "running", (1, third): "failed"}
    expected |= {(2, first): "done", (2, second): "failed", (2, third): "pending"}
    assert {key: s.state for key, s in states.items()} == expected
    assert "job 88_1 on node7, pid 4242" in states[1, second].detail
    assert "RuntimeError: CUDA out of memory" in states[1, third].detail
    assert states[1, third].log_tail[-1] == "RuntimeError: CUDA out of memory"
    assert f"pid {dead.pid}" in states[2, second].detail and "gone" in states[2, second].detail
    assert states[2, second].log_tail == ("epoch 3/350",)

    assert main(["status", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "2 done, 1 running, 2 failed, 1 pending" in out
    assert "| RuntimeError: CUDA out of memory" in out and "| epoch 3/350" in out
    command = resubmit_command(Run.read(run_dir))
    assert f"To run what is missing: {command}" in out
    args = build_parser().parse_args(command.split()[1:])
    again, _, _ = protocol_request(args, "loso")
    assert Path(again.out_dir) / again.name == run_dir.resolve()
    assert again.launch.mode == "none" and again.seeds == [1, 2]


def test_a_stale_claim_of_another_host_reads_as_failed(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "stale", "loso", "launch.lock_timeout=60")
    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    run_dir, _ = run_protocol(cfg, [first], progress=False)
    second = next(s for s in run_status(run_dir) if s.state == "pending")
    marker = RunLayout(run_dir).fold_predictions(second.seed, second.fold)
    claim_as(marker, Owner("node7", 1, "90_0"))
    assert run_status(run_dir)[1].state == "running"
    record = json.loads(lock_file(marker).read_text())
    record["heartbeat"] = time.time() - 120
    lock_file(marker).write_text(json.dumps(record))
    failed = run_status(run_dir)[1]
    assert failed.state == "failed" and "no refresh for 12" in failed.detail


def test_status_of_a_folder_without_a_run_says_so(tmp_path, capsys):
    assert main(["status", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err
