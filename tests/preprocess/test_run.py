import dataclasses
import errno
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_llm.config import PreprocessConfig
from au_llm.io_utils import OutputError
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

from .conftest import Clips, manifest_row, write_folder, write_video

CFG = PreprocessConfig(size=64, color="gray", align="clip", workers=0)


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
    cache = ClipCache(tmp_path, dataclasses.replace(CFG, align="none"))
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


NONE = dataclasses.replace(CFG, size=16, align="none")


def _tiny_clips(root: Path, names: list[tuple[str, str, int]]) -> pd.DataFrame:
    """Clips of 4 random 24x24 frames; ``(subject, clip, seed)``: equal seeds give equal pixels."""
    rows = []
    for subject, clip, seed in names:
        rng = np.random.default_rng(seed)
        frames = [rng.integers(0, 255, (24, 24, 3), np.uint8) for _ in range(4)]
        folder = write_folder(root / subject / clip, frames, ext="png")
        rows.append(
            manifest_row(clip, frames_dir=folder, onset=1, apex=2, offset=4, subject=subject)
        )
    return pd.DataFrame(rows)


def test_copied_clips_share_a_content_fingerprint_in_report_and_index(tmp_path: Path) -> None:
    manifest = _tiny_clips(tmp_path, [("sub04", "a", 1), ("SUB4", "renamed", 1), ("sub05", "b", 2)])
    cache = ClipCache(tmp_path / "cache", NONE)
    report = preprocess_manifest(manifest, cache, progress=False)
    prints = report["fingerprint"].tolist()
    assert prints[0] == prints[1] != prints[2] and len(prints[0].split()) == 4  # 4 frames
    index = pd.read_csv(cache.folder / "index.csv")
    assert sorted(index["fingerprint"]) == sorted(prints)
    again = preprocess_manifest(manifest, cache, progress=False)
    assert again["status"].tolist() == ["cached"] * 3
    assert again["fingerprint"].tolist() == prints


def test_source_frames_replaced_in_place_are_preprocessed_again(tmp_path: Path, caplog) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1), ("s2", "b", 2)])
    video = tmp_path / "v.mp4"
    write_video(video, [np.full((320, 320, 3), 40 * i, np.uint8) for i in range(4)])
    manifest = pd.concat(
        [manifest, pd.DataFrame([manifest_row("v", video=video, onset=0, apex=1, offset=3)])]
    )
    cache = ClipCache(tmp_path / "cache", NONE)
    before = preprocess_manifest(manifest, cache, progress=False)
    assert before["status"].tolist() == ["ok"] * 3
    assert preprocess_manifest(manifest, cache, progress=False)["status"].tolist() == ["cached"] * 3
    row = manifest.iloc[0].to_dict()
    old = cache.load(row).frames
    rng = np.random.default_rng(9)  # clip a and the video: new pixels under the same names
    write_folder(tmp_path / "s1" / "a", [rng.integers(0, 255, (24, 24, 3), np.uint8)] * 4, "png")
    write_video(video, [np.full((320, 320, 3), 200 - 40 * i, np.uint8) for i in range(4)])
    with caplog.at_level("WARNING"):
        after = preprocess_manifest(manifest, cache, progress=False)
    assert after["status"].tolist() == ["ok", "cached", "ok"]
    assert after["fingerprint"][0] != before["fingerprint"][0]
    assert after["fingerprint"][2] != before["fingerprint"][2]
    assert after["fingerprint"][1] == before["fingerprint"][1]
    assert "source files of clip casme2/s1/a changed since it was cached" in caplog.text
    assert not np.array_equal(cache.load(row).frames, old)


def test_a_cache_whose_sources_are_gone_is_used_as_it_is(tmp_path: Path) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])
    cache = ClipCache(tmp_path / "cache", NONE)
    first = preprocess_manifest(manifest, cache, progress=False)
    (tmp_path / "s1").rename(tmp_path / "elsewhere")  # a node that sees only the cache
    again = preprocess_manifest(manifest, cache, progress=False)
    assert again["status"].tolist() == ["cached"]
    assert again["fingerprint"].tolist() == first["fingerprint"].tolist()


def test_a_cached_clip_without_a_source_stamp_is_preprocessed_again(tmp_path: Path) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])
    cache = ClipCache(tmp_path / "cache", NONE)
    preprocess_manifest(manifest, cache, progress=False)
    row = manifest.iloc[0].to_dict()
    clip = cache.load(row)
    meta = {k: v for k, v in clip.meta.items() if k != "source_stamp"}  # as earlier versions wrote
    cache.save(row, clip.frames, clip.numbers, meta, clip.transforms)
    assert preprocess_manifest(manifest, cache, progress=False)["status"].tolist() == ["ok"]


def _shifted_copy(root: Path, frames: list[np.ndarray], shift: int, name: str) -> dict:
    """A manifest row of ``frames[shift:]`` copied into a folder of its own, numbered from 1."""
    folder = write_folder(root / name / name, frames[shift:], ext="png")
    count = len(frames) - shift
    return manifest_row(name, frames_dir=folder, onset=1, apex=2, offset=count, subject=name)


def test_a_copy_starting_a_few_frames_later_shares_frames_of_the_fingerprint(tmp_path: Path):
    from au_llm.preprocess.readers import fingerprint_hashes

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 24, 3), np.uint8) for _ in range(30)]
    other = [rng.integers(0, 255, (24, 24, 3), np.uint8) for _ in range(30)]
    rows = [_shifted_copy(tmp_path, frames, shift, f"s{shift}") for shift in (0, 1, 3)]
    rows.append(_shifted_copy(tmp_path, other, 0, "distinct"))
    report = preprocess_manifest(
        pd.DataFrame(rows), ClipCache(tmp_path / "c", NONE), progress=False
    )
    original, one, three, distinct = (fingerprint_hashes(p) for p in report["fingerprint"])
    assert (len(original), len(one), len(three)) == (30, 29, 27)  # every frame of each clip
    assert one < original and three < original
    assert not original & distinct and not one & distinct


def test_full_disk_on_the_cache_is_fatal_naming_the_file(tmp_path: Path, monkeypatch) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1), ("s2", "b", 2)])
    calls = []

    def full(*args, **kwargs):
        calls.append(1)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("au_llm.io_utils.os.fsync", full)
    monkeypatch.setattr("au_llm.io_utils.probe_writable", lambda folder: None)
    monkeypatch.setattr("au_llm.preprocess.cache.probe_writable", lambda folder: None)
    cache = ClipCache(tmp_path / "cache", NONE)
    with pytest.raises(OutputError, match=rf"cannot write {cache.folder}/.*: No space left"):
        preprocess_manifest(manifest, cache, progress=False)
    assert len(calls) == 1  # stopped at the first write, not reported per clip


def test_read_only_cache_fails_before_any_clip_is_read(tmp_path: Path, monkeypatch) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    def never(*args, **kwargs):
        raise AssertionError("a clip was read")

    monkeypatch.setattr("au_llm.io_utils.tempfile.mkstemp", read_only)
    monkeypatch.setattr(run, "open_clip", never)
    cache = ClipCache(tmp_path / "cache", NONE)
    with pytest.raises(OutputError, match=rf"cannot write {cache.folder}: Read-only file system"):
        preprocess_manifest(manifest, cache, progress=False)


def test_truncated_cache_file_is_recomputed(tmp_path: Path) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])
    cache = ClipCache(tmp_path / "cache", NONE)
    preprocess_manifest(manifest, cache, progress=False)
    path = cache.path(manifest.iloc[0].to_dict())
    path.write_bytes(path.read_bytes()[:100])
    report = preprocess_manifest(manifest, cache, progress=False)
    assert report["status"].tolist() == ["ok"]
    assert cache.load(manifest.iloc[0].to_dict()).frames.shape == (4, 16, 16, 1)


def _damaged_entries(path: Path) -> dict[str, bytes]:
    """Bad contents for the cache file ``path`` (a valid entry), each of another kind."""
    good = path.read_bytes()
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    foreign, wrong_shape, no_frames = (path.with_suffix(f".{n}.npz") for n in "abc")
    np.savez(foreign, something=np.zeros(3))
    np.savez(no_frames, numbers=arrays["numbers"], meta=arrays["meta"])
    np.savez(wrong_shape, **{**arrays, "frames": arrays["frames"][:, :8]})
    flipped = bytearray(good)
    middle = len(good) // 2
    flipped[middle : middle + 16] = bytes(b ^ 0xFF for b in flipped[middle : middle + 16])
    return {
        "bytes flipped": bytes(flipped),
        "empty": b"",
        "truncated": good[: len(good) // 2],
        "not an npz": b"\x93NUMPY garbage",
        "wrong keys": foreign.read_bytes(),
        "no frames": no_frames.read_bytes(),
        "wrong shape": wrong_shape.read_bytes(),
    }


def test_unreadable_cache_entries_of_any_kind_are_recomputed(tmp_path: Path, caplog) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])
    row = manifest.iloc[0].to_dict()
    cache = ClipCache(tmp_path / "cache", NONE)
    preprocess_manifest(manifest, cache, progress=False)
    path = cache.path(row)
    expected = cache.load(row).frames
    for kind, content in _damaged_entries(path).items():
        path.write_bytes(content)
        caplog.clear()
        report = preprocess_manifest(manifest, cache, progress=False)
        assert report["status"].tolist() == ["ok"], kind
        assert str(path) in caplog.text and "preprocessed again" in caplog.text, kind
        assert np.array_equal(cache.load(row).frames, expected), kind


def test_stale_temporaries_of_the_cache_are_removed_at_start(tmp_path: Path) -> None:
    manifest = _tiny_clips(tmp_path, [("s1", "a", 1)])
    cache = ClipCache(tmp_path / "cache", NONE)
    stale = cache.folder / "casme2" / ".s1_a.npz.k1ll3d.tmp"
    fresh = cache.folder / "casme2" / ".s1_b.npz.wr1t1ng.tmp"
    for path in (stale, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    preprocess_manifest(manifest, cache, progress=False)
    assert not stale.exists()
    assert fresh.exists()  # may be another process's write in progress


_ORPHAN_SCRIPT = """
import os, sys, time
from concurrent.futures import ProcessPoolExecutor
import multiprocessing
from au_llm.config import PreprocessConfig
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.run import _init_worker

if __name__ == "__main__":
    cache = ClipCache(sys.argv[1], PreprocessConfig(size=16, align="none"))
    pool = ProcessPoolExecutor(
        1, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker,
        initargs=(cache,),
    )
    assert pool.submit(os.getpid).result() > 0
    with open(sys.argv[2], "w") as handle:
        handle.write(str(pool.submit(os.getpid).result()))
    pool.submit(time.sleep, 120)
    time.sleep(0.5)
    os._exit(0)
"""


def test_workers_die_with_their_parent(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(_ORPHAN_SCRIPT)
    pid_file = tmp_path / "worker.pid"
    subprocess.run(
        [sys.executable, str(script), str(tmp_path / "cache"), str(pid_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    worker = int(pid_file.read_text())
    deadline = time.time() + 10
    while time.time() < deadline and _alive(worker):
        time.sleep(0.2)
    alive = _alive(worker)
    if alive:
        os.kill(worker, 9)
    assert not alive, "the worker outlived its killed parent"


def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
