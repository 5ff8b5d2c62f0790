"""The model learns: trained on synthetic subjects, it detects AUs on held-out ones.

A change that stops learning (a detached gradient, a frozen parameter group, a broken loss or
schedule) passes every shape and equality test; this check fails on it. A tiny synthetic CASME
II-style set (6 subjects x 8 clips, 6 frames each) is split by subject, 4 train and 2 are held
out, and ``au-llm cross`` trains on the first and tests on the second, with the tiny random LLM
and without an LLM. Each must reach a pooled ROC AUC of at least ``MIN_AUC`` and a binary F1 at
least ``MIN_F1_GAIN`` above predicting every clip positive. The same run with a learning rate of
1e-12 (the config refuses 0) must miss them: the check can fail. About 20 s of CPU in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from au_llm.config import load_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import write_manifest
from au_llm.recipes.experiment import run_protocol
from au_llm.synth import write_synthetic
from tests.conftest import CONFIG_DIR

CONFIG = CONFIG_DIR / "tiny_cpu_cross.yaml"
SETTINGS = ("train.epochs=12",)
"""The check's training settings, over ``CONFIG``."""
VARIANTS = {"tiny LLM": (), "no LLM": ("model.reader=none",)}
"""Each model the check trains, as overrides: the only place that says how "no LLM" is set."""
NOT_LEARNING = ("train.lr=1e-12",)
"""A learning rate that moves no weight (the config refuses 0)."""
MIN_AUC = 0.8
MIN_F1_GAIN = 0.2


@dataclass(frozen=True)
class HeldOut:
    """Manifests of the training and the held-out subjects, and the shared clip cache."""

    root: Path
    train: Path
    test: Path


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> HeldOut:
    root = tmp_path_factory.mktemp("learning")
    synth = write_synthetic("casme2", root / "data", 6, 8, seed=3, frames_per_clip=6)
    frame = build_manifest("casme2", root=synth.root, coding=synth.coding, strict=True).frame
    subjects = sorted(frame["subject"].unique())
    train, test = root / "train.csv", root / "test.csv"
    write_manifest(frame[frame["subject"].isin(subjects[:4])], train)
    write_manifest(frame[frame["subject"].isin(subjects[4:])], test)
    return HeldOut(root, train, test)


def _held_out_metrics(data: HeldOut, name: str, overrides: tuple[str, ...]) -> dict[str, float]:
    """Train on the training subjects, test on the held-out ones; the run's pooled metrics."""
    cfg = load_config(
        CONFIG,
        [
            f"name={name}",
            f"out_dir='{data.root / 'runs'}'",
            f"data.cache_dir='{data.root / 'cache'}'",
            f"data.manifests=['{data.train}']",
            f"data.target_manifests=['{data.test}']",
            *SETTINGS,
            *overrides,
        ],
    )
    _, tables = run_protocol(cfg, progress=False)
    assert tables is not None
    return tables.summary["metrics"]


def _shortfalls(metrics: dict[str, float]) -> list[str]:
    """What the metrics miss of the check's bar (empty: the model learnt)."""
    auc, f1 = metrics["pooled_roc_auc"], metrics["pooled_binary_f1"]
    baseline = metrics["baseline_binary_f1"]
    missed = []
    if not auc >= MIN_AUC:
        missed.append(f"ROC AUC {auc:.3f} < {MIN_AUC}")
    if not f1 >= baseline + MIN_F1_GAIN:
        missed.append(f"binary F1 {f1:.3f} < always-positive {baseline:.3f} + {MIN_F1_GAIN}")
    return missed


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_model_learns_to_detect_aus_on_held_out_subjects(held_out, variant) -> None:
    name = variant.replace(" ", "_")
    metrics = _held_out_metrics(held_out, name, VARIANTS[variant])
    assert not _shortfalls(metrics), f"{variant}: {_shortfalls(metrics)}"


def test_the_learning_check_fails_when_nothing_is_learnt(held_out) -> None:
    metrics = _held_out_metrics(held_out, "not_learning", VARIANTS["no LLM"] + NOT_LEARNING)
    assert _shortfalls(metrics), metrics
