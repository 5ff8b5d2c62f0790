import dataclasses
import errno
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from au_llm.data.frames import index_frames
from au_llm.data.manifest import read_manifest
from au_llm.deployed import load_deployed
from au_llm.io_utils import OutputError
from au_llm.metrics import au_column
from au_llm.predict import recordings
from au_llm.predict import run as predict_run
from au_llm.predict.config import PredictConfig
from au_llm.predict.failures import SUMMARY_COLUMNS
from au_llm.predict.manifests import ManifestPredictor
from au_llm.predict.recordings import RecordingScanner
from au_llm.predict.run import predict_inputs
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.windows import window_starts
from au_llm.recipes.train import train_deployable
from tests.conftest import tiny_config
from tests.tolerance import assert_near

AUS = [1, 2, 4, 7, 12, 14, 15, 17]


def _scanner(model, **options):
    """A recording scanner of ``model`` with ``options`` (see PredictConfig)."""
    config = PredictConfig(**options)
    return RecordingScanner(ClipScorer(model, config), config)


def _manifest_rows(model, manifest, cache_dir, **options):
    """The rows a manifest predictor of ``model`` gives for ``manifest``."""
    scorer = ClipScorer(model, PredictConfig(**options))
    return ManifestPredictor(scorer, cache_dir).predict(manifest)


@pytest.fixture(scope="module")
def deployed(tiny_data, tmp_path_factory):
    """The trained model, its directory, and its predictions made before it was ever reloaded."""
    out = tmp_path_factory.mktemp("deploy")
    cfg = tiny_config(tiny_data, out, "deploy", "loso", "eval.threshold_policy=train")
    model = train_deployable(cfg, out / "model")
    return model, out / "model", _manifest_rows(model, tiny_data.casme2, tiny_data.cache_dir)


def test_window_starts_cover_the_recording_end():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(8, 4, 3) == [0, 3, 4]
    assert window_starts(3, 4, 2) == [0]
    assert window_starts(4, 4, 1) == [0]
    with pytest.raises(ValueError, match="window"):
        window_starts(10, 1, 1)


def test_default_window_is_the_training_clip_duration_at_the_input_frame_rate(deployed):
    model, _, _ = deployed
    assert model.inference.clip_seconds == pytest.approx(8 / 200)
    assert _scanner(model).window_for(200.0) == (8, 4)
    assert _scanner(model).window_for(100.0) == (4, 2)
    assert _scanner(model, window=6, stride=1).window_for(30.0) == (6, 1)


def test_model_directory_holds_weights_config_and_aus(deployed):
    model, model_dir, _ = deployed
    assert {"config.json", "model.json"} <= {p.name for p in model_dir.iterdir()}
    loaded = load_deployed(model_dir)
    assert loaded.aus == model.aus == AUS
    np.testing.assert_array_equal(loaded.thresholds, model.thresholds)
    assert loaded.inference == model.inference
    assert loaded.spec == model.spec


def test_model_from_disk_gives_the_same_probabilities(deployed, tiny_data):
    _, model_dir, in_memory = deployed
    from_disk = _manifest_rows(load_deployed(model_dir), tiny_data.casme2, tiny_data.cache_dir)
    pd.testing.assert_frame_equal(in_memory, from_disk)


def test_saved_precision_is_restored_unless_another_is_asked_for(deployed, tiny_data):
    _, model_dir, in_memory = deployed
    assert json.loads((model_dir / "model.json").read_text())["precision"] == "fp32"
    assert load_deployed(model_dir).model.precision == "fp32"
    forced = load_deployed(model_dir, "bf16")
    assert forced.model.precision == "bf16"
    assert forced.model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    bf16 = _manifest_rows(forced, tiny_data.casme2, tiny_data.cache_dir)
    probs = [c for c in in_memory.columns if c.endswith("_prob")]
    # float32 is within 1e-6 of float64 here, so it stands for the exact side at bfloat16's scale;
    # a dozen bfloat16 roundings in a row on the way to a probability
    fp32_probs = torch.as_tensor(in_memory[probs].to_numpy(), dtype=torch.float64)
    bf16_probs = torch.as_tensor(bf16[probs].to_numpy(), dtype=torch.float64)
    assert_near(bf16_probs, fp32_probs, terms=16, dtype=torch.bfloat16, scale=1.0)


def _write_mp4(folder, path):
    frames = [cv2.imread(str(f)) for _, f in sorted(index_frames(folder).items())]
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()
    return len(frames)


@pytest.fixture(scope="module")
def predictions(deployed, tiny_data, tmp_path_factory):
    _, model_dir, _ = deployed
    tmp = tmp_path_factory.mktemp("predict")
    folder = read_manifest(tiny_data.casme2)["frames_dir"].iloc[0]
    video = tmp / "recording.mp4"
    n_video = _write_mp4(folder, video)
    broken = tmp / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    noface = tmp / "noface"
    noface.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(noface / f"img{i + 1}.jpg"), rng.integers(100, 140, (120, 160), np.uint8))
    inputs = [tiny_data.casme2, folder, video, broken, noface, tmp / "missing.avi"]
    out = tmp / "preds.csv"
    options = PredictConfig(window=4, stride=3, fps=200.0)
    run = predict_inputs(model_dir, inputs, out, dataclasses.replace(options, plot=True))
    again = tmp / "again.csv"
    predict_inputs(model_dir, inputs, again, options)
    return {
        "table": pd.read_csv(out, dtype={"clip": str, "subject": str}),
        "again": pd.read_csv(again, dtype={"clip": str, "subject": str}),
        "failures": pd.read_csv(tmp / "failures.csv"),
        "folder": folder,
        "video": video,
        "n_video": n_video,
        "tmp": tmp,
        "run": run,
    }


def test_prediction_csv_columns(predictions):
    table = predictions["table"]
    keys = ["source", "dataset", "subject", "clip", "onset", "offset", "face_id"]
    keys += ["frame_start", "frame_end"]
    keys += ["time_start", "time_end", "face_frames", "face_confidence"]
    keys += ["face_x", "face_y", "face_w", "face_h"]
    # the labelled manifest input keeps its ground truth beside the predictions
    au_cols = [au_column(au, kind) for au in AUS for kind in ("prob", "pred", "true")]
    assert list(table.columns) == keys + au_cols
    assert table[[au_column(a, "prob") for a in AUS]].stack().between(0, 1).all()


def test_manifest_input_gives_one_row_per_clip(predictions, tiny_data):
    table = predictions["table"]
    rows = table[table["source"] == str(tiny_data.casme2)]
    manifest = read_manifest(tiny_data.casme2)
    key = ["dataset", "subject", "clip"]
    assert sorted(map(tuple, rows[key].astype(str).to_numpy())) == sorted(
        map(tuple, manifest[key].to_numpy())
    )
    assert rows["frame_start"].isna().all()


def test_recordings_are_scanned_to_their_last_frame(predictions):
    table = predictions["table"]
    numbers = sorted(index_frames(predictions["folder"]))
    rows = table[table["source"] == str(predictions["folder"])]
    starts = window_starts(len(numbers), 4, 3)
    assert list(rows["frame_start"]) == [numbers[s] for s in starts]
    assert rows["frame_end"].iloc[-1] == numbers[-1]
    assert (rows["frame_end"] - rows["frame_start"] == 3).all()
    np.testing.assert_allclose(rows["time_start"], (rows["frame_start"] - numbers[0]) / 200.0)
    video_rows = table[table["source"] == str(predictions["video"])]
    assert list(video_rows["frame_start"]) == window_starts(predictions["n_video"], 4, 3)
    assert video_rows["frame_end"].iloc[-1] == predictions["n_video"] - 1
    np.testing.assert_allclose(video_rows["time_end"], video_rows["frame_end"] / 25.0, rtol=1e-3)


def test_unreadable_and_faceless_inputs_are_reported_not_fatal(predictions):
    failures = predictions["failures"]
    reported = set(failures["input"].map(lambda p: p.rsplit("/", 1)[-1]))
    assert {"broken.mp4", "noface", "missing.avi"} <= reported
    assert failures["reason"].str.len().gt(0).all()
    assert "no face" in " ".join(failures["reason"])


def test_predictions_are_identical_across_runs_and_plots_written(predictions):
    pd.testing.assert_frame_equal(predictions["table"], predictions["again"])
    assert list(predictions["tmp"].glob("preds_*.png"))


def test_prediction_output_is_checked_before_any_work(tmp_path, monkeypatch):
    existing = tmp_path / "preds.csv"
    existing.write_text("keep me")
    with pytest.raises(ValueError, match=r"preds\.csv exists.*--overwrite"):
        predict_inputs(tmp_path / "no_model", [], existing)
    assert existing.read_text() == "keep me"
    with pytest.raises(ValueError, match="failures.csv is the failure table"):
        predict_inputs(tmp_path / "no_model", [], tmp_path / "failures.csv")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("au_llm.io_utils.tempfile.mkstemp", read_only)
    with pytest.raises(OutputError, match=r"cannot write .*ro: Read-only file system"):
        predict_inputs(tmp_path / "no_model", [], tmp_path / "ro" / "preds.csv")


def _no_work(*args, **kwargs):
    raise AssertionError("work started before the outputs were checked")


def test_predict_checks_its_outputs_against_its_inputs_before_any_work(
    deployed, tiny_data, tmp_path, monkeypatch
):
    _, model_dir, _ = deployed
    monkeypatch.setattr(predict_run, "load_deployed", _no_work)
    manifest = tmp_path / "failures.csv"
    read_manifest(tiny_data.casme2).iloc[:1].to_csv(manifest, index=False)
    kept = manifest.read_text()
    with pytest.raises(ValueError, match=rf"failures.csv .beside --out. {manifest} is the input"):
        predict_inputs(model_dir, [manifest], tmp_path / "p.csv", PredictConfig(overwrite=True))
    assert manifest.read_text() == kept


def test_predict_out_naming_a_folder_fails_before_any_work(deployed, tmp_path, monkeypatch, capsys):
    from au_llm.recipes.cli import main

    _, model_dir, _ = deployed
    monkeypatch.setattr(predict_run, "load_deployed", _no_work)
    argv = ["predict", "--model", str(model_dir), "--input", str(tmp_path), "--overwrite"]
    assert main([*argv, "--out", str(model_dir.parent)]) == 2
    assert f"--out {model_dir.parent} is a folder" in capsys.readouterr().err


def test_train_refuses_an_existing_model_unless_overwrite(
    deployed, tiny_data, tmp_path, monkeypatch
):
    from au_llm.recipes import train as train_recipe

    _, model_dir, _ = deployed
    cfg = tiny_config(tiny_data, tmp_path, "deploy", "loso", "eval.threshold_policy=train")
    monkeypatch.setattr(train_recipe, "prepare_data", _no_work)
    kept = (model_dir / "weights.safetensors").read_bytes()
    with pytest.raises(ValueError, match=rf"--out {model_dir} already holds a result"):
        train_deployable(cfg, model_dir)
    with pytest.raises(AssertionError, match="work started"):  # the check passes
        train_deployable(cfg, model_dir, overwrite=True)
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        train_deployable(cfg, Path(cfg.data.manifests[0]), overwrite=True)
    assert (model_dir / "weights.safetensors").read_bytes() == kept


def test_predict_writes_only_under_its_out_folder(deployed, tiny_data, tmp_path):
    _, model_dir, _ = deployed
    # the cache the model was trained with, named in its config.json, is left alone
    trained_cache = Path(json.loads((model_dir / "config.json").read_text())["data"]["cache_dir"])
    before = sorted(trained_cache.rglob("*"))
    model_files = sorted(model_dir.rglob("*"))
    manifest = tmp_path / "one.csv"
    read_manifest(tiny_data.casme2).iloc[:1].to_csv(manifest, index=False)
    out = tmp_path / "out" / "preds.csv"
    predict_inputs(model_dir, [manifest], out)
    assert len(pd.read_csv(out)) == 1
    assert sorted(trained_cache.rglob("*")) == before
    assert sorted(model_dir.rglob("*")) == model_files
    assert (tmp_path / "out" / "cache").is_dir()
    predict_inputs(model_dir, [manifest], out, PredictConfig(overwrite=True))
    assert len(pd.read_csv(out)) == 1


def test_predict_writes_text_answers_and_constrained_answers_parse(tiny_data, tmp_path):
    from au_llm.answers import parse_answer

    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "text",
        "loso",
        "model.head=both",
        "model.text.formats=[list,yesno]",
        "generation.max_answer_tokens=120",  # byte tokens: a yesno answer over 8 AUs is ~72
        "generation.constrained=true",
        "train.epochs=1",
    )
    model = train_deployable(cfg, tmp_path / "model")
    table = _manifest_rows(model, tiny_data.casme2, tiny_data.cache_dir)
    assert {"answer_list", "answer_yesno"} <= set(table.columns)
    for fmt in ("list", "yesno"):
        assert all(parse_answer(fmt, AUS, text).ok for text in table[f"answer_{fmt}"])
    loaded = _manifest_rows(
        load_deployed(tmp_path / "model"), tiny_data.casme2, tiny_data.cache_dir
    )
    pd.testing.assert_frame_equal(table, loaded)


def test_predict_explain_adds_an_explanation_per_clip_and_window(deployed, tiny_data, tmp_path):
    from au_llm.recipes.cli import main

    cfg = tiny_config(
        tiny_data, tmp_path, "explained", "loso", "model.explain=true",
        "generation.max_explanation_tokens=12",
    )  # fmt: skip
    train_deployable(cfg, tmp_path / "model")
    folder = read_manifest(tiny_data.casme2)["frames_dir"].iloc[0]
    out = tmp_path / "preds.csv"
    argv = ["predict", "--model", str(tmp_path / "model"), "--input", str(tiny_data.casme2)]
    argv += [
        folder,
        "--out",
        str(out),
        "--window",
        "4",
        "--stride",
        "4",
        "--explain",
        "--fps",
        "200",
    ]
    assert main(argv) == 0
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table.columns[-3:]) == ["au_raw", "aus", "explanation"]
    manifest = read_manifest(tiny_data.casme2)
    assert len(table) == len(manifest) + 2  # clips, then 2 windows
    # the annotation is kept beside a manifest clip's explanation (empty for windows)
    assert list(table["au_raw"][: len(manifest)]) == list(manifest["au_raw"].astype(str))
    assert (table["au_raw"][len(manifest) :] == "").all()
    assert all(isinstance(text, str) for text in table["explanation"])
    with pytest.raises(ValueError, match="not trained with explanations"):
        ClipScorer(deployed[0], PredictConfig(explain=True))


class FakeLandmarker:
    """Counts calls; finds one face (or two) on the frames whose number ``present`` accepts."""

    def __init__(self, present=lambda number: True, faces=1):
        self.calls, self.present, self.faces, self.frame = 0, present, faces, 0

    def detect_all(self, image):
        from au_llm.preprocess.landmarks import FaceLandmarks

        number, self.frame = self.frame, self.frame + 1
        self.calls += 1
        if not self.present(number):
            return []
        rng = np.random.default_rng(0)
        h, w = image.shape[:2]
        found = []
        for k in range(self.faces):
            x0 = k * w / 2
            points = rng.uniform([x0 + 5, 5], [x0 + w / 2 - 5, h - 5], (478, 2))
            found.append(FaceLandmarks(points, 0.9))
        return found


def _folder(tmp, n, size=(48, 64), fps=None):
    tmp.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        cv2.imwrite(str(tmp / f"img{i + 1}.png"), rng.integers(0, 255, size, np.uint8))
    if fps is not None:
        (tmp / "fps.txt").write_text(f"{fps}\n")
    return tmp


def test_every_frame_landmarked_once_and_windows_streamed_in_small_batches(deployed, tmp_path):
    model, _, _ = deployed
    folder = _folder(tmp_path / "rec", 40)
    predictor = _scanner(model, window=8, stride=2, fps=25.0, batch_size=3)
    fake = predictor._landmarker = FakeLandmarker()
    table = predictor.predict(folder)
    assert fake.calls == 40  # 17 windows of 8 frames, each frame landmarked once
    assert len(table) == len(window_starts(40, 8, 2)) == 17
    assert predictor.peak_windows <= 3
    np.testing.assert_allclose(table["time_start"], (table["frame_start"] - 1) / 25.0)
    assert (table["face_frames"] == 1.0).all() and (table["face_confidence"] == 0.9).all()
    assert table[["face_x", "face_y", "face_w", "face_h"]].notna().all().all()


def test_stream_holds_at_most_one_window_of_frames_and_never_repeats_a_frame():
    from au_llm.preprocess.tracks import FrameRecord
    from au_llm.preprocess.windows import StreamStats, stream_windows

    for n, window, stride in [(50, 6, 4), (5, 8, 4), (13, 4, 3), (8, 4, 4)]:
        stats = StreamStats()
        records = (FrameRecord(i, np.zeros((2, 2, 3), np.uint8)) for i in range(n))
        windows = list(stream_windows(records, window, stride, stats))
        assert [w[0].number for w in windows] == window_starts(n, window, stride)
        assert all(len({r.number for r in w}) == len(w) == min(window, n) for w in windows)
        assert windows[-1][-1].number == n - 1
        assert stats.peak_frames <= window


def test_face_coverage_is_checked_on_every_frame_of_a_window(deployed, tmp_path):
    model, _, _ = deployed
    folder = _folder(tmp_path / "rec", 12, fps=30)
    # the face is lost on the last 3 frames of the recording (positions 9-11)
    predictor = _scanner(model, window=6, stride=3, min_face=0.8)
    predictor._landmarker = FakeLandmarker(lambda number: number < 9)
    table = predictor.predict(folder)
    assert list(table["frame_start"]) == [1, 4]
    assert list(table["face_frames"]) == [1.0, 1.0]
    failures = pd.DataFrame(predictor.log.failures)
    assert list(failures["frame_start"]) == [7] and list(failures["frame_end"]) == [12]
    assert "fewer than 80%" in failures["reason"].iloc[0]
    assert predictor.log.summary[-1]["failed_windows"] == 1
    lenient = _scanner(model, window=6, stride=3, min_face=0.5)
    lenient._landmarker = FakeLandmarker(lambda number: number < 9)
    assert list(lenient.predict(folder)["face_frames"]) == [1.0, 1.0, 0.5]


def test_frame_folders_need_a_frame_rate(deployed, tmp_path):
    model, _, _ = deployed
    folder = _folder(tmp_path / "rec", 6)
    predictor = _scanner(model, window=4)
    predictor._landmarker = FakeLandmarker()
    assert predictor.predict(folder).empty
    assert "--fps" in predictor.log.failures[-1]["reason"]
    for bad in ("0", "-5", "inf"):
        (folder / "fps.txt").write_text(f"{bad}\n")
        assert predictor.predict(folder).empty
        assert "expected one positive frame rate" in predictor.log.failures[-1]["reason"]
    (folder / "fps.txt").write_text("24\n")
    table = predictor.predict(folder)
    assert table["time_end"].iloc[-1] == pytest.approx(5 / 24)


@pytest.mark.parametrize("fps", [0.0, -5.0, float("inf"), float("nan")])
def test_a_frame_rate_option_that_is_not_positive_is_refused(fps):
    with pytest.raises(ValueError, match="--fps .*: expected a positive frame rate"):
        PredictConfig(window=4, fps=fps)


def test_short_default_window_warns_with_both_numbers(deployed, tmp_path, caplog):
    model, _, _ = deployed
    folder = _folder(tmp_path / "rec", 6, fps=25)
    predictor = _scanner(model)
    predictor._landmarker = FakeLandmarker()
    with caplog.at_level("INFO"):
        predictor.predict(folder)
    frames = model.spec.frames_per_clip
    assert f"shorter than the model's {frames} frames per clip" in caplog.text
    assert f"pass --window {frames}" in caplog.text
    assert "window 2 frames (0.080 s at 25 fps" in caplog.text


def test_face_all_gives_one_stream_per_tracked_face(deployed, tmp_path):
    model, _, _ = deployed
    folder = _folder(tmp_path / "rec", 8, fps=25)
    predictor = _scanner(model, window=4, stride=4, face="all")
    predictor._landmarker = FakeLandmarker(faces=2)
    table = predictor.predict(folder)
    assert sorted(table["face_id"]) == [0, 0, 1, 1]
    left = table[table["face_id"] == 0]
    assert (left["face_x"] < 32).all()
    largest = _scanner(model, window=4, stride=4)
    largest._landmarker = FakeLandmarker(faces=2)
    assert len(largest.predict(folder)) == 2


def test_exit_status_and_summary(predictions, deployed, tmp_path):
    run = predictions["run"]
    assert run.status == predict_run.EXIT_SOME_FAILED
    assert list(run.summary.columns) == SUMMARY_COLUMNS
    assert len(run.summary) == 6
    _, model_dir, _ = deployed
    none = predict_inputs(model_dir, [tmp_path / "missing.avi"], tmp_path / "none.csv")
    assert none.status == predict_run.EXIT_ALL_FAILED
    video = predictions["video"]
    ok = predict_inputs(model_dir, [video], tmp_path / "ok.csv", PredictConfig(window=4))
    assert ok.status == 0
    text = (tmp_path / "ok.csv").read_text()
    assert ".0," not in text.splitlines()[1].split(",", 3)[2]


def test_mixed_inputs_keep_integer_columns(predictions):
    text = (predictions["tmp"] / "preds.csv").read_text().splitlines()
    header = text[0].split(",")
    for line in text[1:]:
        cells = dict(zip(header, line.split(","), strict=False))
        for name in ("onset", "offset", "frame_start", "frame_end", "face_id"):
            assert not cells[name].endswith(".0"), (name, line)


def test_recording_names_are_unique_per_input(tmp_path):
    from au_llm.preprocess.windows import recording_names

    names = recording_names(
        [
            tmp_path / "day1/rec.avi",
            tmp_path / "day2/rec.avi",
            tmp_path / "x/cam.mp4",
            tmp_path / "a/s/frames",
            tmp_path / "b/s/frames",
            tmp_path / "day1/rec.avi",
        ]
    )
    assert names == ["day1/rec", "day2/rec", "cam", "a/s/frames", "b/s/frames", "day1/rec#5"]
    assert recording_names([tmp_path / "one.mp4"]) == ["one"]


def test_same_named_recordings_get_distinct_clips_and_align_overrides_the_mode(
    predictions, deployed, tmp_path, monkeypatch
):
    _, model_dir, _ = deployed
    copies = []
    for day in ("day1", "day2"):
        (tmp_path / day).mkdir()
        copies.append(tmp_path / day / "rec.mp4")
        copies[-1].write_bytes(predictions["video"].read_bytes())
    modes = []
    align_track = recordings.align_track

    def recording_mode(window, track, cfg, *args):
        modes.append(cfg.align)
        return align_track(window, track, cfg, *args)

    monkeypatch.setattr(recordings, "align_track", recording_mode)
    options = PredictConfig(window=4, align="frame")
    run = predict_inputs(model_dir, copies, tmp_path / "p.csv", options)
    table = pd.read_csv(run.out)
    assert list(table.drop_duplicates("source")["clip"]) == ["day1/rec", "day2/rec"]
    assert modes and set(modes) == {"frame"}
    assert load_deployed(model_dir).inference.preprocess.align == "clip"
    with pytest.raises(ValueError, match="preprocess.align"):
        PredictConfig(align="sideways")


def test_a_video_decord_cannot_open_is_reported_with_its_whole_reason(predictions):
    import re

    import decord

    from au_llm.preprocess.native import native_stderr

    broken = predictions["tmp"] / "broken.mp4"
    with pytest.raises(RuntimeError) as caught, native_stderr() as native:
        decord.VideoReader(str(broken))
    # decord's exception names the file only; FFmpeg's reason is printed by native code
    assert any("moov atom not found" in line for line in native)
    failures = predictions["failures"]
    reason = failures.loc[failures["input"] == str(broken), "reason"].item()
    assert str(caught.value) in reason

    def steady(text):  # without the clock time and the pointer, which differ per call
        return re.sub(r"\[\d\d:\d\d:\d\d\] |0x[0-9a-f]+", "", text)

    for line in native:
        assert steady(line.strip()) in steady(reason)


def test_predict_prints_no_native_start_up_chatter(predictions, deployed, tmp_path, capfd):
    import gc

    from au_llm.preprocess.native import NATIVE_CHATTER

    _, model_dir, _ = deployed
    capfd.readouterr()
    predict_inputs(model_dir, [predictions["video"]], tmp_path / "p.csv", PredictConfig(window=4))
    gc.collect()  # the landmarker's graphs are gone by now, closed or collected
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if NATIVE_CHATTER.match(line)] == []


def test_a_control_reader_with_a_vision_head_trains_then_predicts_its_scores(tiny_data, tmp_path):
    extra = ("model.reader=transformer", "model.vision_head=true", "train.vision_weight=0.5")
    cfg = tiny_config(tiny_data, tmp_path, "vision", "loso", "train.epochs=1", *extra)
    model = train_deployable(cfg, tmp_path / "model")
    out = tmp_path / "preds.csv"
    predict_inputs(tmp_path / "model", [tiny_data.casme2], out, PredictConfig())
    table = pd.read_csv(out, dtype={"clip": str, "subject": str})
    vision = [f"{au_column(au, 'prob')}_vision" for au in AUS]
    assert vision == [c for c in table.columns if c.endswith("_vision")]
    assert table[vision].notna().all().all() and len(table) == len(read_manifest(tiny_data.casme2))
    assert not np.allclose(table[vision].to_numpy(), table[[au_column(a, "prob") for a in AUS]])
    rows = _manifest_rows(model, tiny_data.casme2, tiny_data.cache_dir)
    # the CSV keeps 17 significant digits of the float64 probabilities
    np.testing.assert_allclose(rows[vision].to_numpy(), table[vision].to_numpy(), rtol=1e-15)


def test_a_manifest_whose_scores_are_not_finite_fails_whole_in_failures_and_summary(
    deployed, tiny_data, tmp_path, monkeypatch
):
    real = ClipScorer.outputs

    def nan_scores(self, clips):
        outputs = real(self, clips)
        outputs.probs[:] = np.nan
        return outputs

    monkeypatch.setattr(ClipScorer, "outputs", nan_scores)
    options = PredictConfig(cache_dir=tiny_data.cache_dir)
    run = predict_inputs(deployed[1], [tiny_data.casme2], tmp_path / "p.csv", options)
    assert run.status == predict_run.EXIT_ALL_FAILED
    assert pd.read_csv(run.out).empty
    reason = pd.read_csv(run.failures)["reason"].tolist()
    assert len(reason) == 1 and reason[0].startswith("AU scores: AU01_prob = nan for source=")
    summary = run.summary.iloc[0]
    assert summary["reason"] == reason[0] and pd.isna(summary["failed_windows"])
