"""The MEGC evaluation as a protocol (``megc``): folds, baselines, the table, a run end to end."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from au_llm.config import load_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import read_manifest, write_manifest
from au_llm.preprocess.landmarks import FaceLandmarks
from au_llm.protocols import PROTOCOLS, check_long_videos, spot_folds
from au_llm.recipes.cli import main
from au_llm.recipes.experiment import run_protocol
from au_llm.reports.spotting import spotting_summary, spotting_table
from au_llm.runs.layout import REPORT, SPOTTING_SUMMARY, SPOTTING_TABLE
from au_llm.spot import protocol as spot_protocol
from au_llm.spot.protocol import held_out_recordings, random_intervals
from au_llm.synth.long import write_long_style
from au_llm.synth.render import source_landmarks
from tests.conftest import CONFIG_DIR

AUS = [1, 2, 4, 7, 12, 14, 15, 17]


def test_random_intervals_keep_count_lengths_and_kinds():
    numbers = np.array([*range(10, 40), *range(50, 80)])  # a gap in the numbering
    rule = pd.DataFrame(
        {
            "onset": [12, 30, 55],
            "apex": [14, 35, 60],
            "offset": [16, 54, 70],  # the second spans the gap: 15 frames read
            "kind": ["micro", "macro", "macro"],
            "score": [1.0, 2.0, 3.0],
        }
    )
    first = random_intervals(rule, numbers, np.random.default_rng(3))
    again = random_intervals(rule, numbers, np.random.default_rng(3))
    pd.testing.assert_frame_equal(first, again)  # seeded
    assert list(first["kind"]) == list(rule["kind"])
    positions = {name: np.searchsorted(numbers, first[name]) for name in ("onset", "offset")}
    assert list(positions["offset"] - positions["onset"] + 1) == [5, 15, 16]
    assert set(first["onset"]) | set(first["offset"]) <= set(numbers.tolist())
    assert (first["onset"] <= first["apex"]).all() and (first["apex"] <= first["offset"]).all()
    placed = [random_intervals(rule, numbers, np.random.default_rng(s)) for s in range(20)]
    assert len({tuple(p["onset"]) for p in placed}) > 10  # positions drawn, not copied


def test_a_recording_must_name_one_source():
    rows = pd.DataFrame(
        {
            "dataset": ["d", "d"],
            "subject": ["s1", "s1"],
            "clip": ["c1", "c2"],
            "recording": ["r1", "r1"],
            "frames_dir": ["/data/r1", "/data/other"],
            "video": ["", ""],
            "fps": [30.0, 30.0],
        }
    )
    with pytest.raises(ValueError, match="d/s1 recording r1: its rows name 2 frame folders"):
        check_long_videos(rows)
    check_long_videos(rows.iloc[:1])
    (one,) = held_out_recordings(rows.iloc[:1])
    assert (one.kind, str(one.path), one.fps) == ("frames", "/data/r1", 30.0)


def test_megc_refuses_a_manifest_of_short_clips_before_writing(tiny_data, tmp_path, capsys):
    with pytest.raises(ValueError, match="protocol megc needs long-video manifests"):
        spot_folds(read_manifest(tiny_data.casme2))
    assert PROTOCOLS["megc"].spotting and not PROTOCOLS["loso"].spotting
    argv = ["megc", "--config", str(CONFIG_DIR / "tiny_cpu_megc.yaml"), f"out_dir={tmp_path}"]
    argv += [f"data.manifests=['{tiny_data.casme2}']", f"data.aus={AUS}"]
    assert main(argv) == 2
    assert "rows name no recording, e.g. casme2/" in capsys.readouterr().err
    assert not (tmp_path / "tiny_cpu_megc").exists()  # nothing written


def _interval(method, onset, offset, kind, pred, dataset="d", recording="r"):
    return {
        "method": method,
        "dataset": dataset,
        "subject": "s",
        "recording": recording,
        "onset": onset,
        "apex": onset,
        "offset": offset,
        "kind": kind,
        "score": None,
        "AU01_prob": float(pred),
        "AU01_pred": pred,
    }


def _record(seed, intervals, annotated):
    return {"seed": seed, "fold": "s", "spotting": {"annotated": annotated, "intervals": intervals}}


def test_spotting_table_scores_hand_made_folds_by_the_megc_rules():
    truth = [
        {"dataset": "d", "subject": "s", "recording": "r", "onset": 10, "offset": 19,
         "kind": "micro", "aus": "1"},
        {"dataset": "d", "subject": "s", "recording": "r", "onset": 100, "offset": 159,
         "kind": "macro", "aus": ""},
        {"dataset": "e", "subject": "s", "recording": "r", "onset": 10, "offset": 19,
         "kind": "micro", "aus": "1"},
    ]  # fmt: skip
    seed1 = [
        _interval("rule", 10, 19, "micro", 1),  # exact hit, AU1 right
        _interval("rule", 105, 159, "macro", 1),  # IoU 55/60: hit, AU1 wrong
        _interval("rule", 14, 23, "micro", 1),  # IoU 6/14 with the first: a false positive
        _interval("rule", 10, 19, "micro", 0, dataset="e"),  # hit in dataset e, AU1 missed
        _interval("random", 40, 49, "micro", 1),
        _interval("random", 100, 159, "micro", 1),  # right place, wrong kind: no hit
    ]
    seed2 = [_interval("rule", 10, 19, "micro", 1), _interval("rule", 10, 19, "micro", 1)]
    records = [_record(1, seed1, truth), _record(2, seed2, truth)]
    table = spotting_table(records, [1]).set_index(["seed", "dataset", "method"])
    d1 = table.loc[(1, "d", "rule")]
    assert (d1["tp"], d1["fp"], d1["fn"]) == (2, 1, 0)
    assert d1["f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))
    assert d1["micro_f1"] == pytest.approx(2 / 3) and d1["macro_f1"] == 1.0
    # AU1 on the two hits: predicted on both, present on one
    assert d1["au_f1"] == pytest.approx(2 / 3)
    assert d1["strs"] == pytest.approx(d1["f1"] * d1["au_f1"])
    random = table.loc[(1, "d", "random")]
    assert (random["tp"], random["fp"], random["fn"]) == (0, 2, 2) and random["strs"] == 0
    none = table.loc[(1, "d", "none")]
    assert (none["tp"], none["fp"], none["fn"], none["f1"]) == (0, 0, 2, 0.0)
    assert math.isnan(none["precision"]) and math.isnan(none["au_f1"])
    pooled = table.loc[(1, "all", "rule")]  # both datasets together
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 1, 0)
    # seed 2: one annotation hit once, the duplicate is a false positive
    d2 = table.loc[(2, "d", "rule")]
    assert (d2["tp"], d2["fp"], d2["fn"]) == (1, 1, 1)
    summary = spotting_summary(table.reset_index())
    assert summary["seeds"] == [1, 2]
    f1 = summary["table"]["d"]["rule"]["f1"]
    assert f1["per_seed"] == pytest.approx([0.8, 0.5])
    assert f1["mean"] == pytest.approx(0.65) and f1["std"] == pytest.approx(0.15)
    assert summary["table"]["d"]["none"]["precision"]["mean"] is None


@pytest.fixture(scope="module")
def long_manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("megc")
    synth = write_long_style(
        "casme-sq-lv", root / "data", subjects=2, recordings_per_subject=1, seconds=6, size=0.5
    )
    result = build_manifest("casme-sq-lv", root=synth.root, coding=synth.codings, strict=True)
    write_manifest(result.frame, root / "long.csv")
    return root


class FixedFaceLandmarker:
    """One face per frame where the synthetic face sits (no landmark model: the CI-sized runs)."""

    def __init__(self, model=None, num_faces=1):
        points = source_landmarks()
        self.unit = (points - points.min(axis=0)) / np.ptp(points, axis=0)

    def detect_all(self, image):
        height, width = image.shape[:2]
        box = np.array([0.3 * width, 0.15 * height]), np.array([0.4 * width, 0.7 * height])
        return [FaceLandmarks(self.unit * box[1] + box[0], 0.9)]

    def close(self):
        pass


def _megc_run(root, name, *overrides):
    cfg = load_config(
        CONFIG_DIR / "tiny_cpu_megc.yaml",
        [
            f"out_dir='{root / 'runs'}'",
            f"data.cache_dir='{root / 'cache'}'",
            f"data.manifests=['{root / 'long.csv'}']",
            f"data.aus={AUS}",
            f"name={name}",
            *overrides,
        ],
    )
    run_dir, _ = run_protocol(cfg, progress=False)
    return cfg, run_dir


def _check_megc_run(root, cfg, run_dir):
    """The fold records, the table and the report of a finished ``megc`` run; a rerun is a no-op."""
    manifest = read_manifest(root / "long.csv")
    for subject in sorted(manifest["subject"].unique()):
        record = json.loads((run_dir / "folds" / "seed1" / f"{subject}.json").read_text())
        spotting = record["spotting"]
        mine = manifest[manifest["subject"] == subject]
        assert len(spotting["annotated"]) == len(mine)
        assert {a["subject"] for a in spotting["annotated"]} == {subject}
        intervals = pd.DataFrame(spotting["intervals"])
        assert set(intervals["subject"]) == {subject}  # only the held-out recordings
        rule = intervals[intervals["method"] == "rule"].reset_index(drop=True)
        random = intervals[intervals["method"] == "random"].reset_index(drop=True)
        assert len(rule) == spotting["recordings"][0]["rule_intervals"] > 0
        # the baseline: the rule's count, lengths and kinds, elsewhere
        assert list(random["offset"] - random["onset"]) == list(rule["offset"] - rule["onset"])
        assert list(random["kind"]) == list(rule["kind"])
        probs = intervals[[f"AU{au:02d}_prob" for au in AUS]].to_numpy(float)
        assert np.isfinite(probs).all() and ((probs >= 0) & (probs <= 1)).all()
    summary = json.loads((run_dir / SPOTTING_SUMMARY).read_text())
    table = summary["table"]["casme-sq-lv"]
    assert set(table) == {"rule", "random", "none"}
    assert table["none"]["f1"]["mean"] == 0.0 and table["none"]["spotted"]["mean"] == 0
    assert table["rule"]["annotated"]["mean"] == len(manifest)
    assert "## Spotting (MEGC rules)" in (run_dir / REPORT).read_text()
    assert len(pd.read_csv(run_dir / SPOTTING_TABLE)) == 3
    # a rerun finds every fold finished: nothing is trained or spotted again
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "folds").rglob("*.json")}
    run_protocol(cfg, progress=False)
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "folds").rglob("*.json")} == before
    assert json.loads((run_dir / SPOTTING_SUMMARY).read_text()) == summary


def test_megc_run_spots_held_out_recordings_scores_baselines_and_resumes(
    long_manifest, precision, monkeypatch
):
    # CI-sized: the face found where the synthetic face sits, clips resized without alignment
    monkeypatch.setattr(spot_protocol, "Landmarker", FixedFaceLandmarker)
    cfg, run_dir = _megc_run(
        long_manifest, f"megc_{precision}", f"train.precision={precision}", "preprocess.align=none"
    )
    _check_megc_run(long_manifest, cfg, run_dir)


@pytest.mark.slow  # about 30 s of CPU: every frame landmarked, every clip aligned
def test_megc_run_with_the_face_landmarker(long_manifest):
    cfg, run_dir = _megc_run(long_manifest, "megc_landmarker")
    _check_megc_run(long_manifest, cfg, run_dir)


def test_demo_spot_runs_the_spotting_demo(tmp_path, monkeypatch):
    from au_llm.recipes import demo_spot

    calls = []
    monkeypatch.setattr(demo_spot, "run_spot_demo", lambda *args: calls.append(args))
    assert main(["demo", "--spot", "--out", str(tmp_path / "d"), "--subjects", "3"]) == 0
    assert calls == [(tmp_path / "d", 3)]
