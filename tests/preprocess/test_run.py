import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_llm.config import PreprocessConfig
from au_llm.preprocess import run
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.run import (
    REPORT_COLUMNS,
    PreprocessError,
    exclude_failed,
    failed_clips,
    preprocess_manifest,
    write_preprocess_report,
)

from .conftest import Clips

CFG = PreprocessConfig(size=64, color="gray", mode="clip", workers=0)


@pytest.fixture(scope="module")
def first_run(
    clips: Clips, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, pd.DataFrame, float]:
    cache_dir = tmp_path_factory.mktemp("cache")
    start = time.perf_counter()
    report = preprocess_manifest(clips.manifest(), ClipCache(cache_dir, CFG), progress=False)
    return cache_dir, report, time.perf_counter() - start


def test_report_statuses_and_fallbacks(clips: Clips, first_run) -> None:
    cache_dir, report, _ = first_run
    assert list(report.columns) == list(REPORT_COLUMNS)
    status = dict(zip(report["clip"], report["status"], strict=True))
    assert status == {"still": "ok", "still_video": "ok", "noface": "fallback", "corrupt": "failed"}
    by_clip = report.set_index("clip")
    assert by_clip.loc["noface", "fallback"] == "centre_crop"
    assert by_clip.loc["still", "fallback"] == ""
    assert by_clip.loc["still", "landmark_confidence"] > 0.5
    assert by_clip.loc["still", "frames"] == 10
    error = by_clip.loc["corrupt", "error"]
    assert str(clips.corrupt_file) in error and "frame 5" in error
    cache = ClipCache(cache_dir, CFG)
    cached = [cache.has(r) for r in clips.manifest().to_dict("records")]
    assert cached == [True, True, True, False]
    index = pd.read_csv(cache.folder / "index.csv")
    assert sorted(index["clip"]) == ["noface", "still", "still_video"]


def test_frame_folder_and_video_give_close_results(clips: Clips, first_run) -> None:
    cache = ClipCache(first_run[0], CFG)
    rows = clips.manifest().to_dict("records")
    folder, video = cache.load(rows[0]), cache.load(rows[1])
    assert folder.frames.shape == video.frames.shape == (10, 64, 64, 1)
    # The same alignment (transforms from independently decoded frames) ...
    assert folder.transforms is not None and video.transforms is not None
    face = np.array(
        [[110.0, 60.0, 1.0], [230.0, 60.0, 1.0], [110.0, 220.0, 1.0], [230.0, 220.0, 1.0]]
    )
    shift = face @ folder.transforms[0].T - face @ video.transforms[0].T  # in crop pixels
    assert np.abs(shift).max() < 0.5
    # ... and the same pixels up to the mp4v codec's loss.
    assert np.abs(folder.frames.astype(float) - video.frames.astype(float)).mean() < 6.0


def test_second_run_uses_the_cache(clips: Clips, first_run, monkeypatch) -> None:
    cache_dir, report, seconds = first_run

    def no_landmarker(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached clip must not be landmarked")

    monkeypatch.setattr(run.Landmarker, "from_config", no_landmarker)
    manifest = clips.manifest().iloc[:3]  # the failed clip would be retried
    start = time.perf_counter()
    cache = ClipCache(cache_dir, dataclasses.replace(CFG, workers=3))
    again = preprocess_manifest(manifest, cache, progress=False)
    assert time.perf_counter() - start < seconds / 2
    assert again["status"].tolist() == ["cached"] * 3
    assert again["fallback"].tolist() == report["fallback"].tolist()[:3]
    assert np.allclose(
        again["landmark_confidence"], report["landmark_confidence"][:3], equal_nan=True
    )


def test_strict_names_the_failed_clip(clips: Clips, tmp_path: Path) -> None:
    manifest = clips.manifest().iloc[[3]]
    with pytest.raises(PreprocessError, match=r"sub02/corrupt.*img5\.jpg"):
        preprocess_manifest(manifest, ClipCache(tmp_path, CFG), strict=True, progress=False)


def test_bad_row_fails_without_stopping(clips: Clips, tmp_path: Path) -> None:
    manifest = clips.manifest().iloc[[0]].copy()
    manifest.loc[:, "frames_dir"] = np.nan
    manifest = pd.concat([manifest, clips.manifest().iloc[[2]]], ignore_index=True)
    cache = ClipCache(tmp_path, dataclasses.replace(CFG, mode="none"))
    report = preprocess_manifest(manifest, cache, progress=False)
    assert report["status"].tolist() == ["failed", "ok"]
    assert "neither frames_dir nor video" in report["error"][0]


def test_report_helpers(clips: Clips, first_run, tmp_path: Path) -> None:
    report = first_run[1]
    assert failed_clips(report) == {("casme2", "sub02", "corrupt")}
    kept = exclude_failed(clips.manifest(), report)
    assert kept["clip"].tolist() == ["still", "still_video", "noface"]
    path = write_preprocess_report(report, tmp_path / "out" / "report.csv")
    assert pd.read_csv(path)["status"].tolist() == report["status"].tolist()


def test_worker_pool(clips: Clips, tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, workers=2)
    manifest = clips.manifest().iloc[[0, 3, 2]]
    report = preprocess_manifest(manifest, ClipCache(tmp_path, cfg), progress=False)
    assert report["clip"].tolist() == ["still", "corrupt", "noface"]
    assert report["status"].tolist() == ["ok", "failed", "fallback"]
    here = preprocess_manifest(
        manifest.iloc[[0]], ClipCache(tmp_path / "here", CFG), progress=False
    )
    assert here["status"].tolist() == ["ok"]
    row = manifest.iloc[0].to_dict()
    pooled = ClipCache(tmp_path, cfg).load(row).frames
    assert np.array_equal(pooled, ClipCache(tmp_path / "here", CFG).load(row).frames)
