"""bench/record.py: output, wall and CPU time of a command kept as a JSON; none for a failure."""

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "record.py"
BUSY = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\n"
"""A child that spends 0.3 s of CPU, then prints one line."""


def _bench(results: Path):
    spec = importlib.util.spec_from_file_location("record", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RESULTS = results
    return module


def test_a_command_is_recorded_with_its_output_and_its_child_cpu_time(tmp_path: Path) -> None:
    record = _bench(tmp_path)
    run = tmp_path / "run" / "fold"
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps({"metrics": {"f1": 0.5}}))
    command = [sys.executable, "-c", BUSY + "print('AU1 0.914')"]
    assert record.main(["r.json", "--collect", str(tmp_path / "run"), "--", *command]) == 0
    kept = json.loads((tmp_path / "r.json").read_text())
    assert kept["stdout"] == "AU1 0.914\n"
    assert kept["runs"] == {"fold": {"metrics": {"f1": 0.5}}}
    assert kept["cpu_seconds"] >= 0.2  # the child's CPU time, not this process's
    assert kept["seconds"] >= kept["cpu_seconds"] - 0.1


def test_a_failed_command_leaves_no_record(tmp_path: Path) -> None:
    record = _bench(tmp_path)
    command = [sys.executable, "-c", "print('half'); raise SystemExit(3)"]
    assert record.main(["r.json", "--", *command]) == 3
    assert not (tmp_path / "r.json").exists()
