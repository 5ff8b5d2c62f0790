"""Recordings as ``au-llm predict`` reads them: frame times, window bounds, flow-trained models."""

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from au_llm.data.manifest import read_manifest
from au_llm.predict.config import PredictConfig
from au_llm.predict.recordings import RecordingScanner
from au_llm.predict.run import predict_inputs
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.windows import RecordingReader
from au_llm.recipes.train import train_deployable
from tests.conftest import tiny_config

# Presentation times of a variable-frame-rate recording: 10 fps, then 20, then 50, then 5.
VFR_TIMES = [0.0, 0.1, 0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.52, 0.54, 0.56, 0.58, 0.6, 0.8, 1.0]


def write_timed_video(path: Path, times: list[float], codec: str = "libx264") -> Path:
    """A video whose frame ``i`` is shown at ``times[i]`` seconds (1 ms time base), with PyAV.

    OpenCV's writer only writes constant rates. Frame ``i`` is a flat grey, level
    ``(10 * i) % 250``.
    """
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        for i, seconds in enumerate(times):
            image = np.full((48, 64, 3), (10 * i) % 250, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = round(seconds * 1000), Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def model(tiny_data, tmp_path_factory):
    """A tiny model trained on frames (one epoch), and its folder."""
    out = tmp_path_factory.mktemp("frames_model")
    cfg = tiny_config(tiny_data, out, "frames", "loso", "train.epochs=1")
    return train_deployable(cfg, out / "model"), out / "model"


def _scanner(model, **options) -> RecordingScanner:
    config = PredictConfig(**options)
    return RecordingScanner(ClipScorer(model[0], config), config)


def test_a_video_reader_gives_each_frame_its_own_timestamp(tmp_path):
    vfr = RecordingReader(write_timed_video(tmp_path / "vfr.mkv", VFR_TIMES), "video", None)
    np.testing.assert_allclose(vfr.times, VFR_TIMES, atol=1e-6)
    assert vfr.variable_rate
    assert vfr.fps == pytest.approx(14.0)  # 14 intervals in 1 s; the header guesses 24
    assert vfr.time_of(13) == pytest.approx(0.8)
    levels = [int(image.mean()) for _, image in vfr]
    assert np.abs(np.diff(levels) - 10).max() <= 2  # frames come in presentation order
    # a constant 30 fps in a 1 ms time base (33, 34, 33 ms steps) is not variable
    steady = [round(i / 30, 3) for i in range(30)]
    cfr = RecordingReader(write_timed_video(tmp_path / "cfr.mkv", steady), "video", None)
    assert not cfr.variable_rate and cfr.fps == pytest.approx(30.0, rel=1e-3)
    np.testing.assert_allclose(cfr.times, steady, atol=1e-6)


def test_unusable_timestamps_fall_back_to_the_header_rate(tmp_path, monkeypatch, caplog):
    from au_llm.preprocess.windows import usable_timestamps, variable_rate

    assert usable_timestamps(np.array([0.0, 0.1, 0.05])) is None  # decreasing
    assert usable_timestamps(np.array([0.2, 0.2, 0.2])) is None  # all equal
    assert usable_timestamps(np.array([0.0, np.nan])) is None
    assert usable_timestamps(np.array([0.5])) is None
    assert not variable_rate(np.array([0.0, 0.034, 0.067, 0.1]))  # ms rounding of 30 fps
    assert variable_rate(np.array([0.0, 0.01, 0.2, 0.3]))
    video = write_timed_video(tmp_path / "v.mkv", [i / 10 for i in range(6)])
    import decord

    def broken(self, indices):
        raise decord.DECORDError("no index")

    monkeypatch.setattr(decord.VideoReader, "get_frame_timestamp", broken)
    with caplog.at_level("WARNING"):
        reader = RecordingReader(video, "video", None)
    assert "the frame timestamps are unusable; times follow the header's" in caplog.text
    np.testing.assert_allclose(reader.times, np.arange(6) / reader.fps)


def test_a_frame_folder_keeps_times_from_its_frame_rate(tmp_path):
    folder = tmp_path / "rec"
    folder.mkdir()
    for number in (5, 6, 7, 9):
        cv2.imwrite(str(folder / f"img{number}.png"), np.zeros((8, 8), np.uint8))
    reader = RecordingReader(folder, "frames", 20.0)
    assert reader.numbers.tolist() == [5, 6, 7, 9]
    np.testing.assert_allclose(reader.times, [0.0, 0.05, 0.1, 0.2])
    assert reader.frame_times().to_dict() == pytest.approx({5: 0.0, 6: 0.05, 7: 0.1, 9: 0.2})
    assert not reader.variable_rate  # one missing number moves no frame by half an interval


def test_a_variable_frame_rate_video_gets_true_window_times_and_says_so(model, tmp_path, caplog):
    video = write_timed_video(tmp_path / "phone.mkv", VFR_TIMES)
    steady = write_timed_video(tmp_path / "steady.mkv", [i / 25 for i in range(15)])
    out = tmp_path / "preds.csv"
    options = PredictConfig(window=3, stride=3, align="none", per_frame=True, plot=True)
    with caplog.at_level("WARNING"):
        run = predict_inputs(model[1], [video, steady], out, options)
    table = pd.read_csv(out)
    rows = table[table["source"] == str(video)]
    times = np.array(VFR_TIMES)
    np.testing.assert_allclose(rows["time_start"], times[rows["frame_start"]], atol=1e-6)
    np.testing.assert_allclose(rows["time_end"], times[rows["frame_end"]], atol=1e-6)
    assert rows["time_end"].iloc[-1] == pytest.approx(1.0)  # 14 / 24 = 0.583 from the mean
    per_frame = pd.read_csv(out.with_name("preds_per_frame.csv"))
    frames = per_frame[per_frame["source"] == str(video)]
    assert frames["frame"].tolist() == list(range(15))
    np.testing.assert_allclose(frames["time"], times, atol=1e-6)
    assert run.summary["input"].tolist() == [str(video), str(steady)]
    assert run.summary["variable_fps"].tolist() == [True, False]
    assert run.summary["fps"].tolist() == pytest.approx([14.0, 25.0])
    assert "phone.mkv: variable frame rate (20.0-200.0 ms between frames" in caplog.text
    assert "steady.mkv: variable" not in caplog.text


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("stride", -1, "--stride -1: expected at least 1 frame"),
        ("stride", 0, "--stride 0: expected at least 1 frame"),
        ("window", 1, "--window 1: expected at least 2 frames"),
        ("window", -4, "--window -4: expected at least 2 frames"),
        ("max_window_gib", 0.0, "--max-window-gib 0: expected a positive size"),
        ("max_window_gib", float("nan"), "--max-window-gib nan: expected a positive size"),
    ],
)
def test_window_options_out_of_range_are_refused_naming_the_option(option, value, message):
    with pytest.raises(ValueError, match=message):
        PredictConfig(**{option: value})


def test_a_negative_stride_exits_2_before_any_work(tmp_path, capsys):
    from au_llm.recipes.cli import main

    argv = ["predict", "--model", str(tmp_path / "no_model"), "--input", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "p.csv"), "--stride", "-1"]) == 2
    assert "--stride -1: expected at least 1 frame" in capsys.readouterr().err
    assert not (tmp_path / "failures.csv").exists()


def test_a_window_too_large_for_memory_fails_after_one_frame(model, tmp_path, caplog):
    video = write_timed_video(tmp_path / "rec.mkv", [i / 25 for i in range(12)])
    scanner = _scanner(model, window=100000, align="none", max_window_gib=12 * 64 * 48 * 3 / 2**30)
    with caplog.at_level("WARNING"):
        assert len(scanner.predict(video)) == 1  # 12 frames of 64x48 fit exactly
    assert "longer than the recording (12 frames): one window covers all of it" in caplog.text
    tight = _scanner(model, window=100000, align="none", max_window_gib=5 * 64 * 48 * 3 / 2**30)
    assert tight.predict(video).empty
    reason = tight.log.failures[-1]["reason"]
    assert "a window of 100000 frames holds 12 frames of 64x48 at once" in reason
    assert "pass --window 5 or less, or a larger --max-window-gib" in reason


@pytest.fixture(scope="module", params=["flow", "both"])
def flow_model(request, tiny_data, tmp_path_factory):
    """The folder of a tiny model trained on optical flow (``flow``) or frames and flow."""
    out = tmp_path_factory.mktemp(f"{request.param}_model")
    extra = ("train.epochs=1", f"preprocess.input={request.param}")
    train_deployable(tiny_config(tiny_data, out, request.param, "loso", *extra), out / "m")
    return out / "m"


def test_a_flow_model_scores_recordings_with_the_input_it_was_trained_on(
    flow_model, tiny_data, tmp_path, precision
):
    manifest = read_manifest(tiny_data.casme2)
    row = manifest.iloc[0]
    one = tmp_path / "one.csv"
    manifest.iloc[:1].to_csv(one, index=False)
    folder = Path(row["frames_dir"])
    frames = sorted(folder.glob("img*.jpg"))
    assert len(frames) == row["offset"] - row["onset"] + 1  # the folder is the clip
    images = [cv2.imread(str(path)) for path in frames]
    video = tmp_path / "clip.avi"
    size = images[0].shape[1::-1]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 200.0, size)
    for image in images:
        writer.write(image)
    writer.release()
    options = PredictConfig(
        window=len(frames), fps=200.0, align="none", precision=precision, cache_dir=tmp_path / "c"
    )
    run = predict_inputs(flow_model, [one, folder, video], tmp_path / "p.csv", options)
    assert run.status == 0
    assert pd.read_csv(run.failures).empty
    table = pd.read_csv(run.out)
    probs = [c for c in table.columns if c.endswith("_prob")]
    clip, window = (table[table["source"] == str(p)] for p in (one, folder))
    assert len(clip) == len(window) == 1
    # the window over the clip's frames gets the very input training computed for the clip
    np.testing.assert_array_equal(clip[probs].to_numpy(), window[probs].to_numpy())
    assert len(table[table["source"] == str(video)]) == 1
