import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from au_llm.config import PreprocessConfig
from au_llm.preprocess.cache import CacheError, ClipCache, load_file

from .conftest import manifest_row


def row(**changes: object) -> dict:
    base = manifest_row("EP02_01f", frames_dir="/data/casme2/sub01/EP02_01f")
    base.update(changes)
    return base


def test_key_depends_on_pixel_settings_and_source_only(tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=64, workers=0)
    key = ClipCache(tmp_path, cfg).key(row())
    same = [
        dataclasses.replace(cfg, workers=4),
        dataclasses.replace(cfg, smooth=9),  # only used by mode 'frame'
    ]
    for other in same:
        assert ClipCache(tmp_path, other).key(row()) == key
    different = [
        dataclasses.replace(cfg, size=112),
        dataclasses.replace(cfg, color="rgb"),
        dataclasses.replace(cfg, margin=0.2),
        dataclasses.replace(cfg, align="frame"),
        dataclasses.replace(cfg, ref_frames=5),
    ]
    keys = {ClipCache(tmp_path, other).key(row()) for other in different}
    assert key not in keys and len(keys) == len(different)
    cache = ClipCache(tmp_path, cfg)
    # Sampling fields (apex, n_frames) and labels are not part of the key; the source is.
    assert cache.key(row(apex=9, n_frames=3, aus="12")) == key
    for change in (
        {"onset": 1},
        {"offset": 12},
        {"subject": "sub02"},
        {"clip": "EP02_01g"},
        {"dataset": "samm"},
        {"frames_dir": "/data/casme2/sub01/EP02_02f"},
    ):
        assert cache.key(row(**change)) != key, change


def test_save_load_roundtrip_is_atomic(tmp_path: Path) -> None:
    cfg = PreprocessConfig(size=32, color="gray", workers=0)
    cache = ClipCache(tmp_path / "cache", cfg)
    frames = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    numbers = np.arange(46, 51)
    assert not cache.has(row())
    with pytest.raises(CacheError, match="EP02_01f is not in the cache"):
        cache.load(row())
    path = cache.save(row(), frames, numbers, {"fallback": "", "landmark_confidence": 0.9})
    assert path == cache.path(row()) and cache.has(row())
    assert path.is_relative_to(cache.folder)
    loaded = cache.load(row())
    assert np.array_equal(loaded.frames, frames) and loaded.numbers.tolist() == numbers.tolist()
    assert loaded.meta["landmark_confidence"] == 0.9 and loaded.meta["clip"] == "EP02_01f"
    assert not [p for p in cache.folder.rglob("*") if p.name.endswith(".tmp")]
    assert (cache.folder / "settings.json").is_file()
    index = pd.read_csv(cache.write_index())
    assert index["clip"].tolist() == ["EP02_01f"] and index["frames"].tolist() == [5]
    with pytest.raises(ValueError, match=r"expected uint8 frames of shape \(5, 32, 32, 1\)"):
        cache.save(row(), np.zeros((5, 32, 32, 3), np.uint8), numbers)


def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CacheError, match="bad.npz"):
        load_file(bad)
