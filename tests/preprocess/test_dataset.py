from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import DataLoader

from au_llm.config import PreprocessConfig
from au_llm.preprocess.cache import CacheError, ClipCache
from au_llm.preprocess.dataset import ClipDataset, collate
from au_llm.preprocess.run import exclude_failed, preprocess_manifest

from .conftest import Clips

AUS = [1, 2, 4, 12]


@pytest.fixture(scope="module")
def cached(
    clips: Clips, tmp_path_factory: pytest.TempPathFactory
) -> tuple[pd.DataFrame, ClipCache]:
    cfg = PreprocessConfig(size=32, color="gray", align="clip", workers=0)
    root = tmp_path_factory.mktemp("ds_cache")
    report = preprocess_manifest(clips.manifest(), ClipCache(root, cfg), progress=False)
    return exclude_failed(clips.manifest(), report), ClipCache(root, cfg)


def test_items_have_clip_labels_and_meta(cached) -> None:
    manifest, cache = cached
    data = ClipDataset(manifest, cache, AUS, frames_per_clip=6, strategy="uniform")
    assert len(data) == 3
    clip, labels, meta = data[0]
    assert clip.shape == (1, 6, 32, 32) and clip.dtype == torch.float32
    assert clip.min() >= 0.0 and clip.max() <= 1.0 and clip.std() > 0.05
    assert labels.tolist() == [1.0, 1.0, 0.0, 0.0]  # "1+2"
    assert meta == {"dataset": "casme2", "subject": "sub01", "clip": "still"}
    annotated = ClipDataset(manifest, cache, AUS, 6, "uniform", annotation=True)[0][2]
    assert annotated == {**meta, "au_raw": "1+2", "aus": "1+2", "emotion": "surprise"}
    assert data[1][1].tolist() == [0.0, 0.0, 1.0, 0.0]  # "4"
    assert data[2][1].tolist() == [0.0, 0.0, 0.0, 1.0]  # "12"
    # Uniform sampling: the first sampled frame is the onset frame of the cached clip.
    full = cache.load(manifest.iloc[0].to_dict()).frames
    assert torch.equal(clip[0, 0], torch.from_numpy(full[0, :, :, 0]).float() / 255)


def test_collate_and_dataloader(cached) -> None:
    manifest, cache = cached
    data = ClipDataset(manifest, cache, AUS, frames_per_clip=4, strategy="random_end", seed=3)
    clips, labels, meta = next(iter(DataLoader(data, batch_size=3, collate_fn=collate)))
    assert clips.shape == (3, 1, 4, 32, 32) and labels.shape == (3, 4)
    assert meta["clip"] == ["still", "still_video", "noface"]
    assert meta["subject"] == ["sub01", "sub01", "sub02"]


def test_random_strategy_is_reproducible_per_seed_and_epoch(cached) -> None:
    manifest, cache = cached

    def draws(seed: int, epoch: int, order: list[int]) -> dict[int, list[int]]:
        data = ClipDataset(
            manifest, cache, AUS, frames_per_clip=4, strategy="random_end", seed=seed
        )
        data.set_epoch(epoch)
        return {i: data.indices(i).tolist() for i in order}

    assert draws(1, 0, [0, 1, 2]) == draws(1, 0, [2, 0, 1])  # independent of call order
    runs = [draws(seed, epoch, [0, 1, 2]) for seed in range(4) for epoch in range(4)]
    ends = {tuple(run[0]) for run in runs}
    assert len(ends) > 1  # different seeds/epochs give different draws
    data = ClipDataset(manifest, cache, AUS, frames_per_clip=4, strategy="random_end", seed=1)
    first, second = data.indices(0).tolist(), data.indices(0).tolist()
    data.set_epoch(0)
    assert data.indices(0).tolist() == first and data.indices(0).tolist() == second


def test_clips_stay_in_memory_and_frames_per_clip_needs_no_new_cache(
    cached, tmp_path: Path
) -> None:
    manifest, cache = cached
    row = manifest.iloc[[0]]
    path = cache.path(row.iloc[0].to_dict())
    copy = ClipCache(tmp_path, cache.cfg)
    copy.save(row.iloc[0].to_dict(), *_arrays(cache, row))
    assert copy.path(row.iloc[0].to_dict()).name == path.name  # same key, other root
    data = ClipDataset(row, copy, AUS, frames_per_clip=8, strategy="uniform")
    assert data[0][0].shape == (1, 8, 32, 32)
    copy.path(row.iloc[0].to_dict()).unlink()
    assert ClipDataset(row, cache, AUS, frames_per_clip=3, strategy="uniform")[0][0].shape[1] == 3
    assert data[0][0].shape == (1, 8, 32, 32)  # served from memory after the file is gone
    with pytest.raises(CacheError, match="not in the cache"):
        ClipDataset(row, copy, AUS, frames_per_clip=8, strategy="uniform")[0]


def _arrays(cache: ClipCache, row: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    clip = cache.load(row.iloc[0].to_dict())
    return clip.frames, clip.numbers


def test_bad_arguments(cached) -> None:
    manifest, cache = cached
    with pytest.raises(ValueError, match="strategy"):
        ClipDataset(manifest, cache, AUS, frames_per_clip=4, strategy="middle")
