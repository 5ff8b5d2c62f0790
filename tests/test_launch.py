import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from submitit.core.utils import DelayedSubmission

from au_llm.config import ConfigError, parse_devices, save_config
from au_llm.data.manifest import read_manifest
from au_llm.recipes.cli import main
from au_llm.recipes.experiment import run_protocol
from au_llm.recipes.launch import (
    TaskSpec,
    deal,
    run_local,
    run_task,
    submit_slurm,
    task_items,
    worker_gpus,
)
from au_llm.recipes.run_config import start_run
from au_llm.recipes.status import run_status
from au_llm.runs.fold_lock import Owner, read_lock, try_claim
from au_llm.runs.layout import RunLayout
from tests.conftest import CONFIG_DIR, tiny_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reference(tiny_data, tmp_path_factory):
    """Predictions of the tiny LOSO run in one process (the bytes every launch must give)."""
    cfg = tiny_config(tiny_data, tmp_path_factory.mktemp("reference"), "loso")
    run_dir, _ = run_protocol(cfg, progress=False)
    return (run_dir / "predictions.csv").read_bytes()


def subjects(tiny_data) -> list[str]:
    return sorted(read_manifest(tiny_data.casme2)["subject"].unique())


def test_items_are_dealt_round_robin_and_no_task_is_empty():
    items = [(1, f"s{i}") for i in range(5)]
    assert deal(items, 2) == [items[0::2], items[1::2]]
    assert deal(items, 0) == [[item] for item in items]
    assert deal(items, 9) == [[item] for item in items]


def test_a_task_takes_other_items_only_while_its_time_limit_allows(tiny_data, tmp_path):
    items = [(1, "a"), (1, "b"), (1, "c")]
    cfg = tiny_config(tiny_data, tmp_path, "loso")
    spec = TaskSpec(cfg, "run", items[:1], items, "probe", "login1")
    assert list(task_items(spec, time.monotonic())) == items
    spec = replace(spec, time_limit_s=1.0)
    taken = task_items(spec, time.monotonic() - 0.5)
    assert next(taken) == items[0]
    time.sleep(0.3)  # the first item took 0.3 s: 0.5 + 0.3 + 1.25 * 0.3 > 1.0
    assert list(taken) == []
    assert list(task_items(spec, time.monotonic())) == items


def test_launch_settings_are_validated_and_may_differ_within_a_run(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "run")
    with pytest.raises(ConfigError, match="HH:MM:SS"):
        tiny_config(tiny_data, tmp_path, "run", "loso", "launch.time=12:00:00")
    with pytest.raises(ConfigError, match="launch.devices"):
        tiny_config(tiny_data, tmp_path, "run", "loso", "launch.mode=local")
    with pytest.raises(ConfigError, match="launch.devices"):
        tiny_config(tiny_data, tmp_path, "run", "loso", "launch.devices='0,0'")
    gpus = ("launch.mode=local", "launch.devices=0,2")
    local = tiny_config(tiny_data, tmp_path, "run", "loso", *gpus)
    assert parse_devices(local.launch.devices) == [0, 2]
    assert parse_devices("cpu:3") == [None, None, None]
    run_dir = start_run(cfg).root
    assert start_run(replace(cfg, launch=local.launch)).root == run_dir


def test_slurm_array_run_by_debug_jobs_equals_one_process(tiny_data, tmp_path, reference):
    cfg = tiny_config(tiny_data, tmp_path, "loso", "loso", "launch.mode=slurm", "launch.jobs=3")
    submission = submit_slurm(cfg, progress=False, cluster="debug")
    assert len(submission.jobs) == 3
    # The last task runs first: it trains its own fold in a freshly built model, then the two
    # folds no one has claimed (each task builds its model once and re-initialises it per fold).
    finished = [job.result() for job in reversed(submission.jobs)]
    assert [len(f) for f in finished] == [3, 3, 3]
    assert "3 done" in submission.report_job.result()
    assert (submission.run_dir / "predictions.csv").read_bytes() == reference
    record = json.loads(submission.record.read_text())
    assert sorted(map(tuple, sum(record["jobs"].values(), []))) == [
        (1, s) for s in subjects(tiny_data)
    ]


def test_a_task_killed_mid_fold_is_completed_by_the_resubmission(tiny_data, tmp_path, reference):
    cfg = tiny_config(tiny_data, tmp_path, "loso", "loso", "launch.mode=slurm")
    first, second, _ = subjects(tiny_data)
    run_protocol(replace(cfg, launch=replace(cfg.launch, mode="none")), [first], progress=False)
    run_dir = tmp_path / "loso"
    # What a SIGKILL mid-fold leaves: a claim of a dead pid, a JSON record, a temporary CSV.
    marker = RunLayout(run_dir).fold_predictions(1, second)
    record = RunLayout(run_dir).fold_record(1, second)
    dead = subprocess.Popen(["true"])
    dead.wait()
    assert try_claim(marker, 600, Owner(socket.gethostname(), dead.pid, "41_1")) is not None
    record.write_text("{}")
    marker.with_name(f".{marker.name}.x.tmp").write_text("dataset,subj")
    assert [s.state for s in run_status(run_dir)] == ["done", "failed", "pending"]
    submission = submit_slurm(cfg, progress=False, cluster="debug")
    assert len(submission.jobs) == 2, "the finished fold must not be submitted again"
    for job in submission.jobs:
        job.result()
    submission.report_job.result()
    assert (run_dir / "predictions.csv").read_bytes() == reference
    assert not list(run_dir.glob("folds/seed1/*.lock"))


def test_a_plain_run_leaves_a_fold_claimed_elsewhere_and_says_so(tiny_data, tmp_path, caplog):
    cfg = tiny_config(tiny_data, tmp_path, "loso")
    second = subjects(tiny_data)[1]
    busy = Owner("node7", 4242, "88_1")
    marker = RunLayout(tmp_path / "loso").fold_predictions(1, second)
    assert try_claim(marker, 600, busy) is not None
    with caplog.at_level(logging.WARNING):
        run_dir, tables = run_protocol(cfg, progress=False)
    assert "1 fold(s) are being trained by another process" in caplog.text
    assert tables.summary["n_folds"] == 2
    assert [s.state for s in run_status(run_dir)] == ["done", "running", "done"]


def _fake_slurm(folder: Path) -> Path:
    """``srun`` and an ``sbatch`` that keeps each script and answers like SLURM."""
    folder.mkdir()
    (folder / "srun").write_text("#!/bin/sh\nexit 0\n")
    (folder / "sbatch").write_text(
        "#!/bin/sh\n"
        'n=$(cat "$0.count" 2>/dev/null || echo 100); n=$((n + 1)); echo $n > "$0.count"\n'
        'cp "$1" "$(dirname "$0")/script_$n.sh"\n'
        'echo "Submitted batch job $n"\n'
    )
    for name in ("srun", "sbatch"):
        (folder / name).chmod(0o755)
    return folder


def test_slurm_submission_writes_the_expected_sbatch_scripts(
    tiny_data, tmp_path, monkeypatch, capsys
):
    fake = _fake_slurm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "runs"
    args = ["loso", "--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml"), f"out_dir={out}"]
    args += [f"data.cache_dir={tiny_data.cache_dir}", f"data.manifests=['{tiny_data.casme2}']"]
    args += ["launch.slurm_extra.account=lab", "launch.setup=['module load cuda/12.4']"]
    args += ["--launch", "slurm", "--jobs", "2", "--gpus-per-job", "2"]
    assert main([*args, "--partition", "gpu", "--time", "1-02:00:30"]) == 0
    assert "Submitted 3 fold(s) as 2 task(s) of job 101" in capsys.readouterr().out
    run_dir = out / "tiny_cpu_loso"
    logs = run_dir / "launch" / "logs"
    array = (fake / "script_101.sh").read_text()
    for line in (
        "#SBATCH --array=0-1%2",
        "#SBATCH --gres=gpu:2",
        "#SBATCH --time=1561",
        "#SBATCH --partition=gpu",
        "#SBATCH --account=lab",
        "#SBATCH --job-name=au-llm-tiny_cpu_loso",
        f"#SBATCH --output={logs}/%A_%a_0_log.out",
        f"#SBATCH --error={logs}/%A_%a_0_log.err",
        "module load cuda/12.4",
    ):
        assert line in array.splitlines(), line
    assert f"-m submitit.core._submit {logs}" in array
    report = (fake / "script_102.sh").read_text()
    assert "#SBATCH --dependency=afterany:101" in report.splitlines()
    assert "#SBATCH --time=60" in report.splitlines()
    assert "--gres" not in report and "--array" not in report
    names = subjects(tiny_data)
    specs = [DelayedSubmission.load(logs / f"101_{k}_submitted.pkl").args[0] for k in (0, 1)]
    assert [spec.own for spec in specs] == [[(1, names[0]), (1, names[2])], [(1, names[1])]]
    assert all(Path(spec.probe).is_file() for spec in specs)
    assert json.loads(Path(specs[0].probe).read_text())["report_job"] == "102"
    assert main(["status", str(run_dir)]) == 0
    status = capsys.readouterr().out
    assert "0 done, 0 running, 0 failed, 3 pending" in status
    assert "jobs 101_0, 101_1; report job 102" in status
    assert "2 job(s) have written no log yet" in status
    (logs / "101_0_0_log.out").write_text("started\n")
    assert main(["status", str(run_dir)]) == 0
    assert "1 job(s) have written no log yet" in capsys.readouterr().out


def test_a_task_that_cannot_see_the_run_directory_says_so(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "loso")
    spec = TaskSpec(cfg, str(tmp_path / "loso"), [], [], str(tmp_path / "gone.json"), "login1")
    with pytest.raises(RuntimeError, match="does not see the run directory.*login1"):
        run_task(spec)


def _launch_local(config: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "au_llm.recipes.cli", "loso", "--config", str(config)]
    return subprocess.Popen(
        [*command, "--launch", "local", "--devices", "cpu:2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_local_workers_run_by_debug_jobs_equal_one_process(tiny_data, tmp_path, reference):
    cfg = tiny_config(
        tiny_data, tmp_path, "loso", "loso", "launch.mode=local", "launch.devices=cpu:2"
    )
    run_dir, tables = run_local(cfg, progress=False, cluster="debug")
    assert (run_dir / "predictions.csv").read_bytes() == reference
    assert tables.summary["n_folds"] == 3
    record = json.loads(next((run_dir / "launch" / "submissions").glob("*.json")).read_text())
    assert len(record["jobs"]) == 2


@pytest.mark.slow
def test_local_workers_killed_mid_fold_then_relaunched_equal_one_process(
    tiny_data, tmp_path, reference
):
    cfg = tiny_config(tiny_data, tmp_path, "loso")
    config = tmp_path / "loso.yaml"
    save_config(cfg, config)
    folds = tmp_path / "loso" / "folds" / "seed1"
    parent = _launch_local(config)
    deadline = time.monotonic() + 240
    while not list(folds.glob("*.lock")) and time.monotonic() < deadline:
        assert parent.poll() is None, "the run ended before a worker could be killed"
        time.sleep(0.005)
    lock = next(folds.glob("*.lock"))
    victim = read_lock(lock).owner.pid
    os.kill(victim, signal.SIGKILL)
    assert not lock.with_suffix(".csv").exists(), "the fold ended before the kill"
    assert parent.wait(timeout=300) == 2, "a killed worker must fail the launch"
    assert _launch_local(config).wait(timeout=300) == 0
    assert (tmp_path / "loso" / "predictions.csv").read_bytes() == reference
    assert not list(folds.glob("*.lock"))


def test_worker_gpus_count_the_inherited_visible_devices():
    assert worker_gpus([0, 1], "5,7") == [5, 7]
    assert worker_gpus([1], "5,7") == [7]
    assert worker_gpus([0, 2], None, count=4) == [0, 2]
    assert worker_gpus([None, None], "5") == [None, None]
    with pytest.raises(ValueError, match="GPU index 2 does not exist; CUDA_VISIBLE_DEVICES=5,7"):
        worker_gpus([0, 2], "5,7")
    with pytest.raises(ValueError, match="GPU index 0 does not exist; this machine gives 0"):
        worker_gpus([0], None, count=0)
    with pytest.raises(ValueError, match="numeric GPU ids"):
        worker_gpus([0], "GPU-1234abcd")
