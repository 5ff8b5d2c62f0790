"""Shared fixtures: a tiny synthetic dataset in both formats, its manifests, and a tiny config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from au_llm.config import ExperimentConfig, load_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import write_manifest
from au_llm.synth import write_synthetic

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


@dataclass
class TinyData:
    """Manifests of a tiny synthetic CASME II-style and SAMM-style dataset."""

    root: Path
    casme2: Path
    samm: Path
    cache_dir: Path


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    root = tmp_path_factory.mktemp("tiny_data")
    manifests = {}
    for style, subjects in (("casme2", 3), ("samm", 2)):
        synth = write_synthetic(style, root / style, subjects, 3, seed=5, frames_per_clip=8)
        result = build_manifest(style, root=synth.root, coding=synth.coding, strict=True)
        manifests[style] = root / f"{style}.csv"
        write_manifest(result.frame, manifests[style])
    return TinyData(root, manifests["casme2"], manifests["samm"], root / "cache")


def tiny_config(
    data: TinyData, out_dir: Path, name: str, protocol: str = "loso", *extra: str
) -> ExperimentConfig:
    """The tiny CPU config pointed at the tiny data and ``out_dir``."""
    overrides = [
        f"name={name}",
        f"out_dir='{out_dir}'",
        f"data.cache_dir='{data.cache_dir}'",
        f"data.manifests=['{data.casme2}']",
    ]
    if protocol == "cross":
        overrides.append(f"data.target_manifests=['{data.samm}']")
    return load_config(CONFIG_DIR / f"tiny_cpu_{protocol}.yaml", [*overrides, *extra])


@pytest.fixture(params=["fp32", "bf16"])
def precision(request: pytest.FixtureRequest) -> str:
    """Each ``train.precision`` forced, whatever the CPU.

    bfloat16 autocast runs on any CPU (emulated, 20-30x slower, where not native), so the tests
    taking this fixture run both paths everywhere; keep them tiny.
    """
    return request.param


@pytest.fixture
def device() -> torch.device:
    """Device of the device tests: ``AU_LLM_TEST_DEVICE`` (default ``cpu``).

    ``bench/gpu_check.py`` runs them with ``AU_LLM_TEST_DEVICE=cuda`` on a GPU machine.
    """
    return torch.device(os.environ.get("AU_LLM_TEST_DEVICE", "cpu"))


def kill_within_second_fold(proc: subprocess.Popen, folds_dir: Path) -> None:
    """SIGKILL a protocol run part way into its next fold, once its first fold's record is written.

    Waits for the first ``*.json`` fold record in ``folds_dir`` (failing if the run ends first),
    then 40% of that fold's training time more.
    """
    deadline = time.monotonic() + 240
    while not any(folds_dir.glob("*.json")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        time.sleep(0.005)
    first = json.loads(next(folds_dir.glob("*.json")).read_text())
    time.sleep(0.4 * first["seconds"])
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
