"""bench/gpu_check.py end to end on the CPU at dry-run sizes, as on a GPU machine.

The data folder is prepared (with alignment), then the check runs from a fresh data root holding
only what travels (no source frames), importing neither mediapipe nor decord nor pytorchvideo.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NO_NATIVE = (
    "import sys, runpy, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] in ('mediapipe', 'decord', 'pytorchvideo'):\n"
    "            raise ImportError('not on the GPU machine: ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
    "sys.argv = ['bench/gpu_check.py', *sys.argv[1:]]\n"
    "runpy.run_path('bench/gpu_check.py', run_name='__main__')\n"
)


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_gpu_check_dry_run_on_cpu(tmp_path: Path) -> None:
    data, out = tmp_path / "gpudata", tmp_path / "out"
    root = ("--root", str(tmp_path / "root"), "--dry-run")
    sizes = ("--subjects", "3", "--clips-per-subject", "2")
    prepared = _run("bench/gpu_check.py", "--prepare", str(data), *root, *sizes)
    assert prepared.returncode == 0, prepared.stderr[-3000:]
    assert {"casme2.csv", "cache", "cpu_fp32.json"} <= {p.name for p in data.iterdir()}
    run = _run("-c", NO_NATIVE, "--data", str(data), "--out", str(out), "--device", "cpu", *root)
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    assert results["tests"]["status"] == 0, results["tests"]["output_tail"]
    loso = results["loso"]
    assert loso["cpu_bf16"]["precision"] == "bf16" and loso["cpu_fp32"]["precision"] == "fp32"
    assert loso["prepared_cpu_fp32"]["precision"] == "fp32"
    assert loso["cpu_fp32"]["f1_minus_cpu_fp32"] == pytest.approx(0.0)  # same data, same seeds
    for precision in ("bf16", "fp32"):
        speed = results["reference_speed"][precision]
        assert speed["status"] == 0, speed["output_tail"]
        assert f"tiny {precision}, training step" in speed["table"]
    for precision in ("bf16", "fp32"):
        assert results["smollm2"][precision]["train_clips_per_s"] > 0
    assert "LOSO cpu_bf16: F1" in run.stdout
