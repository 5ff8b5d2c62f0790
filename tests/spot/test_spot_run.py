import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from au_llm.data.frames import index_frames
from au_llm.data.manifest import read_manifest
from au_llm.metrics import au_column
from au_llm.preprocess.windows import RecordingReader
from au_llm.recipes.cli import main
from au_llm.recipes.train import train_deployable
from au_llm.spot import run as spot_run
from au_llm.spot.outputs import INTERVAL_KEYS, TIMELINE_KEYS
from tests.conftest import tiny_config

AUS = [1, 2, 4, 7, 12, 14, 15, 17]
# Short distances, so that the few frames of a test clip hold intervals of both kinds.
SHORT = ["micro.k_seconds=0.04", "macro.k_seconds=0.08", "micro.p=0.1", "macro.p=0.1"]


@pytest.fixture(scope="module")
def model_dir(tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("spot_model")
    cfg = tiny_config(tiny_data, out, "deploy", "loso", "eval.threshold_policy=train")
    train_deployable(cfg, out / "model")
    return out / "model"


def _write_mp4(folders, path, fps=25.0):
    """The frames of ``folders`` one after the other, as an mp4 at ``fps``."""
    frames = [
        cv2.imread(str(f)) for folder in folders for _, f in sorted(index_frames(folder).items())
    ]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return len(frames)


@pytest.fixture(scope="module")
def spotted(model_dir, tiny_data, tmp_path_factory):
    """``au-llm spot`` on the predict tests' video (one subject's clips), a broken and a
    missing input, with annotations of the video."""
    tmp = tmp_path_factory.mktemp("spot")
    manifest = read_manifest(tiny_data.casme2)
    subject = manifest[manifest["subject"] == manifest["subject"].iloc[0]]
    video = tmp / "recording.mp4"
    n_frames = _write_mp4(list(subject["frames_dir"]), video)
    broken = tmp / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    annotations = tmp / "annotations.csv"
    rows = manifest.iloc[:2].assign(
        video=str(video), frames_dir="", onset=[2, 10], apex=[4, 12], offset=[6, 14],
        n_frames=[5, 5], fps=25.0, kind="micro",
    )  # fmt: skip
    rows.to_csv(annotations, index=False)
    out = tmp / "out"
    argv = ["spot", "--model", str(model_dir), "--input", str(video), str(broken)]
    argv += [str(tmp / "missing.avi"), "--out", str(out), "--annotations", str(annotations)]
    status = main([*argv, *SHORT])
    return {"status": status, "out": out, "video": video, "n_frames": n_frames, "argv": argv}


def test_spot_writes_intervals_timeline_and_plot(spotted):
    assert spotted["status"] == spot_run.EXIT_SOME_FAILED  # the broken and missing inputs
    out = spotted["out"]
    intervals = pd.read_csv(out / "recording_intervals.csv")
    au_cols = [au_column(au, kind) for au in AUS for kind in ("prob", "pred")]
    assert list(intervals.columns) == INTERVAL_KEYS + au_cols
    assert len(intervals) > 0 and set(intervals["kind"]) <= {"micro", "macro"}
    assert (intervals["onset"] <= intervals["apex"]).all()
    assert (intervals["apex"] <= intervals["offset"]).all()
    assert intervals[[au_column(au, "prob") for au in AUS]].stack().between(0, 1).all()
    assert set(intervals[[au_column(au, "pred") for au in AUS]].stack()) <= {0, 1}
    np.testing.assert_allclose(
        intervals["duration"], (intervals["offset"] - intervals["onset"] + 1) / 25
    )
    assert (out / "recording_timeline.png").stat().st_size > 0


def test_timeline_is_openface_layout_with_real_timestamps(spotted):
    out = spotted["out"]
    timeline = pd.read_csv(out / "recording_timeline.csv")
    probs = [au_column(au, "prob") for au in AUS]
    preds = [au_column(au, "pred") for au in AUS]
    assert list(timeline.columns) == TIMELINE_KEYS + probs + preds + [
        "interval", "motion_micro", "motion_macro",
    ]  # fmt: skip
    assert list(timeline["frame"]) == list(range(spotted["n_frames"]))
    expected = RecordingReader(spotted["video"], "video", None).times
    np.testing.assert_allclose(timeline["timestamp"], expected)
    np.testing.assert_allclose(timeline["timestamp"], timeline["frame"] / 25.0, atol=1e-3)
    assert (timeline["face_id"] == 0).all() and timeline["success"].isin([0, 1]).all()
    intervals = pd.read_csv(out / "recording_intervals.csv")
    inside = timeline["interval"].notna()
    # frames outside every interval: no probability, no AU
    assert timeline.loc[~inside, probs].isna().all().all()
    assert (timeline.loc[~inside, preds] == 0).all().all()
    # a frame inside intervals carries the highest probability of those covering it
    for frame in timeline.loc[inside, "frame"]:
        covering = intervals[(intervals["onset"] <= frame) & (frame <= intervals["offset"])]
        row = timeline[timeline["frame"] == frame]
        np.testing.assert_allclose(row[probs].to_numpy()[0], covering[probs].max().to_numpy())


def test_unreadable_inputs_are_named_in_failures_and_the_rest_goes_on(spotted):
    failures = pd.read_csv(spotted["out"] / "failures.csv")
    reported = set(failures["input"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert {"broken.mp4", "missing.avi"} <= reported
    assert failures["reason"].str.len().gt(0).all()
    assert not (spotted["out"] / "broken_intervals.csv").exists()


def test_annotations_are_scored(spotted):
    result = json.loads((spotted["out"] / "evaluation.json").read_text())
    overall = result["counts"]["overall"]
    assert overall["tp"] + overall["fn"] == 2  # the two annotated intervals of the video
    intervals = pd.read_csv(spotted["out"] / "recording_intervals.csv")
    assert overall["tp"] + overall["fp"] == len(intervals)


def test_outputs_are_checked_before_any_work(spotted, monkeypatch, capsys):
    out = spotted["out"]
    kept = (out / "recording_timeline.csv").read_text()

    def no_work(*args, **kwargs):
        raise AssertionError("work started before the outputs were checked")

    monkeypatch.setattr(spot_run, "load_deployed", no_work)
    assert main([*spotted["argv"], *SHORT]) == 2
    assert "recording_intervals.csv exists" in capsys.readouterr().err
    assert (out / "recording_timeline.csv").read_text() == kept
    assert main([*spotted["argv"], "micro.q=1"]) == 2
    assert "micro.q" in capsys.readouterr().err


def test_an_interval_whose_clip_fails_is_reported_and_left_empty(
    model_dir, tiny_data, tmp_path, monkeypatch
):
    manifest = read_manifest(tiny_data.casme2)
    files = [
        f for folder in manifest["frames_dir"][:2] for _, f in sorted(index_frames(folder).items())
    ]
    folder = tmp_path / "rec"
    folder.mkdir()
    numbers = [n for n in range(1, len(files) + 2) if n != 9]  # no frame 9
    for number, source in zip(numbers, files, strict=True):
        (folder / f"img{number}.jpg").write_bytes(source.read_bytes())
    (folder / "fps.txt").write_text("25\n")
    fixed = pd.DataFrame(
        {"onset": [6, 11], "apex": [8, 13], "offset": [10, 15], "kind": "micro", "score": 1.0}
    )
    monkeypatch.setattr(spot_run, "spot_intervals", lambda motion, cfg, times: fixed)
    run = spot_run.spot_inputs(model_dir, [folder], tmp_path / "out")
    assert run.status == 0
    intervals = pd.read_csv(tmp_path / "out" / "rec_intervals.csv")
    probs = [au_column(au, "prob") for au in AUS]
    assert intervals.loc[0, probs].isna().all()  # frames 6..10 lack frame 9
    assert intervals.loc[1, probs].notna().all()
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    row = failures[failures["clip"].astype(str).str.startswith("i0000")].iloc[0]
    assert (row["frame_start"], row["frame_end"]) == (6, 10)
    assert "frame 9" in row["reason"]
    assert run.summary.loc[0, "failed_intervals"] == 1
    timeline = pd.read_csv(tmp_path / "out" / "rec_timeline.csv")
    assert 9 not in set(timeline["frame"]) and len(timeline) == len(files)


def test_spot_a_synthetic_long_recording_against_its_built_manifest(model_dir, tmp_path):
    """``synth --long`` -> ``manifest casme-sq-lv`` -> ``spot --annotations``: the real flow."""
    root = tmp_path / "lv"
    argv = ["synth", "--style", "casme-sq-lv", "--long", "--out", str(root), "--subjects", "1"]
    assert main([*argv, "--recordings-per-subject", "1", "--seconds", "12", "--size", "0.5"]) == 0
    manifest = tmp_path / "long.csv"
    coding = str(root / "CAS(ME)^2code_final.xlsx")
    argv = ["manifest", "casme-sq-lv", "--root", str(root / "rawpic"), "--coding", coding]
    assert main([*argv, "--out", str(manifest)]) == 0
    rows = read_manifest(manifest)
    folder = rows["frames_dir"].iloc[0]
    out = tmp_path / "out"
    argv = ["spot", "--model", str(model_dir), "--input", folder, "--out", str(out)]
    assert main([*argv, "--fps", "30", "--annotations", str(manifest)]) == 0
    result = json.loads((out / "evaluation.json").read_text())
    overall = result["counts"]["overall"]
    assert overall["tp"] + overall["fn"] == len(rows)
    assert overall["tp"] >= 1  # the rule finds embedded expressions with default settings
    assert result["au_f1_count"] >= 1 and 0 <= result["strs"] <= 1
    name = Path(folder).name
    assert (out / f"{name}_timeline.png").stat().st_size > 0


def _write_variable_rate_mkv(frames, times_ms, path):
    """Frames ``[H, W, 3]`` RGB shown at ``times_ms`` (a variable frame rate), as an mkv."""
    import fractions

    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.time_base = stream.codec_context.time_base = fractions.Fraction(1, 1000)
        for image, time_ms in zip(frames, times_ms, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = time_ms, stream.time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def test_timeline_keeps_the_real_times_of_a_variable_frame_rate_video(
    model_dir, tiny_data, tmp_path
):
    folder = read_manifest(tiny_data.casme2)["frames_dir"].iloc[0]
    frames = [
        cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in index_frames(folder).values()
    ]
    times_ms = [0, 40, 80, 200, 240, 500, 540, 580][: len(frames)]
    video = tmp_path / "vfr.mkv"
    _write_variable_rate_mkv(frames, times_ms, video)
    out = tmp_path / "out"
    assert (
        main(["spot", "--model", str(model_dir), "--input", str(video), "--out", str(out), *SHORT])
        == 0
    )
    timeline = pd.read_csv(out / "vfr_timeline.csv")
    np.testing.assert_allclose(timeline["timestamp"], np.array(times_ms) / 1000, atol=1e-6)
    intervals = pd.read_csv(out / "vfr_intervals.csv")
    for _, row in intervals.iterrows():
        onset, offset = times_ms[int(row["onset"])] / 1000, times_ms[int(row["offset"])] / 1000
        assert row["onset_time"] == pytest.approx(onset)
        # the duration is the frames' real span, plus the last frame's period at the mean rate
        # of the timestamps (7 periods in 0.58 s)
        mean_period = (times_ms[-1] - times_ms[0]) / 1000 / (len(times_ms) - 1)
        assert row["duration"] == pytest.approx(offset - onset + mean_period, abs=1e-6)
