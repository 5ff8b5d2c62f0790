import dataclasses
import errno

import cv2
import numpy as np
import pandas as pd
import pytest

from au_llm import deploy
from au_llm.data.frames import index_frames
from au_llm.data.manifest import read_manifest
from au_llm.deploy import Predictor, load_deployed, predict_inputs, train_deployable, window_starts
from au_llm.io_utils import OutputError
from au_llm.metrics import au_column
from tests.conftest import tiny_config

AUS = [1, 2, 4, 7, 12, 14, 15, 17]


@pytest.fixture(scope="module")
def deployed(tiny_data, tmp_path_factory):
    """The trained model, its directory, and its predictions made before it was ever reloaded."""
    out = tmp_path_factory.mktemp("deploy")
    cfg = tiny_config(tiny_data, out, "deploy", "loso", "eval.threshold=train")
    model = train_deployable(cfg, out / "model")
    return model, out / "model", Predictor(model).predict_manifest(tiny_data.casme2)


def test_window_starts_cover_the_recording_end():
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]
    assert window_starts(8, 4, 3) == [0, 3, 4]
    assert window_starts(3, 4, 2) == [0]
    assert window_starts(4, 4, 1) == [0]
    with pytest.raises(ValueError, match="window"):
        window_starts(10, 1, 1)


def test_default_window_is_the_training_clip_duration_at_the_input_frame_rate(deployed):
    model, _, _ = deployed
    assert model.clip_seconds == pytest.approx(8 / 200)
    assert Predictor(model).window_for(200.0) == (8, 4)
    assert Predictor(model).window_for(100.0) == (4, 2)
    assert Predictor(model, window=6, stride=1).window_for(30.0) == (6, 1)


def test_model_directory_holds_weights_config_and_aus(deployed):
    model, model_dir, _ = deployed
    assert {"config.json", "model.json"} <= {p.name for p in model_dir.iterdir()}
    loaded = load_deployed(model_dir)
    assert loaded.aus == model.aus == AUS
    np.testing.assert_array_equal(loaded.thresholds, model.thresholds)
    assert loaded.cfg == model.cfg


def test_model_from_disk_gives_the_same_probabilities(deployed, tiny_data):
    _, model_dir, in_memory = deployed
    from_disk = Predictor(load_deployed(model_dir)).predict_manifest(tiny_data.casme2)
    pd.testing.assert_frame_equal(in_memory, from_disk)


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
    run = predict_inputs(model_dir, inputs, out, window=4, stride=3, fps=200.0, plot=True)
    again = tmp / "again.csv"
    predict_inputs(model_dir, inputs, again, window=4, stride=3, fps=200.0)
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


def test_predict_writes_only_under_its_out_folder(deployed, tiny_data, tmp_path, monkeypatch):
    model, model_dir, _ = deployed
    elsewhere = tmp_path / "config_cache"
    cfg = dataclasses.replace(
        model.cfg, data=dataclasses.replace(model.cfg.data, cache_dir=str(elsewhere))
    )
    monkeypatch.setattr(deploy, "load_deployed", lambda _: dataclasses.replace(model, cfg=cfg))
    manifest = tmp_path / "one.csv"
    read_manifest(tiny_data.casme2).iloc[:1].to_csv(manifest, index=False)
    out = tmp_path / "out" / "preds.csv"
    predict_inputs(model_dir, [manifest], out)
    assert len(pd.read_csv(out)) == 1
    assert not elsewhere.exists()
    assert (tmp_path / "out" / "cache").is_dir()
    predict_inputs(model_dir, [manifest], out, overwrite=True)
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
        "model.text.max_new_tokens=120",  # byte tokens: a yesno answer over 8 AUs is ~72
        "model.text.constrained=true",
        "train.epochs=1",
    )
    model = train_deployable(cfg, tmp_path / "model")
    table = Predictor(model).predict_manifest(tiny_data.casme2)
    assert {"answer_list", "answer_yesno"} <= set(table.columns)
    for fmt in ("list", "yesno"):
        assert all(parse_answer(fmt, AUS, text).ok for text in table[f"answer_{fmt}"])
    loaded = Predictor(load_deployed(tmp_path / "model")).predict_manifest(tiny_data.casme2)
    pd.testing.assert_frame_equal(table, loaded)
