"""A torch Dataset over a manifest and the aligned-clip cache (no model imports here).

Randomness (strategy ``random_end``) is reproducible and independent of shuffling order and
DataLoader workers: the k-th draw of item ``i`` since the last :meth:`ClipDataset.set_epoch` uses
``np.random.default_rng([seed, epoch, i, k])``. Call ``set_epoch(epoch)`` at the start of every
epoch (required for fresh draws per epoch with non-persistent DataLoader workers, which receive a
copy of the dataset each epoch); in the calling process draws also differ between epochs without
it, since k keeps counting.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from au_llm.config import SAMPLING_STRATEGIES
from au_llm.data.fields import int_field, text_field
from au_llm.data.manifest import au_label_matrix
from au_llm.preprocess.cache import CachedClip, ClipCache
from au_llm.preprocess.flow import FlowCache
from au_llm.preprocess.sampling import sample_indices

Meta = dict[str, str]
ID_KEYS = ("dataset", "subject", "clip")
ANNOTATION_KEYS = ("au_raw", "aus", "emotion")
Item = tuple[torch.Tensor, torch.Tensor, Meta]


def _apex(row: dict[str, Any]) -> float | None:
    value = text_field(row, "apex")
    try:
        apex = float(value)
    except ValueError:
        return None
    return None if math.isnan(apex) else apex


def to_clip_tensor(frames: np.ndarray) -> torch.Tensor:
    """Sampled uint8 frames ``[T, H, W, C]`` -> model input ``[C, T, H, W]`` float32 in [0, 1]."""
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).float() / 255.0
    return clip.contiguous()


def model_input(frames: np.ndarray, flow: np.ndarray | None, kind: str) -> torch.Tensor:
    """The model's input from sampled frames and their flow, per ``preprocess.input``.

    Args:
        frames: ``[T, H, W, C]`` uint8 sampled aligned frames.
        flow: ``[T, H, W, 3]`` onset-to-frame flow of the same frames (u, v in pixels, strain);
            None for ``kind == "frames"``.
        kind: ``frames`` (pixels in [0, 1]), ``flow`` (the flow's 3 channels) or ``both``
            (pixels, then the flow).

    Returns:
        ``[C', T, H, W]`` float32.
    """
    parts = [] if kind == "flow" else [to_clip_tensor(frames)]
    if kind != "frames":
        parts.append(torch.from_numpy(np.asarray(flow, dtype=np.float32)).permute(3, 0, 1, 2))
    return torch.cat(parts)


class ClipDataset(Dataset):
    """Sampled aligned clips with their AU labels.

    Args:
        manifest: Manifest rows to serve (failed clips should be excluded beforehand, see
            :func:`au_llm.preprocess.run.exclude_failed`).
        cache: The cache the clips were preprocessed into.
        aus: AU numbers, in label order.
        frames_per_clip: Frames per sample.
        strategy: ``uniform``, ``onset_apex`` or ``random_end`` (see
            :mod:`au_llm.preprocess.sampling`).
        seed: Seed of the random strategies.
        annotation: Also put the clip's annotation (:data:`ANNOTATION_KEYS`) in each item's
            meta (explanation targets are built from it).

    Loaded clips stay in memory (uint8) after their first use, so later epochs read no files.
    """

    def __init__(
        self,
        manifest: pd.DataFrame,
        cache: ClipCache,
        aus: Sequence[int],
        frames_per_clip: int,
        strategy: str,
        seed: int = 0,
        *,
        annotation: bool = False,
    ) -> None:
        if strategy not in SAMPLING_STRATEGIES:
            raise ValueError(
                f"sampling strategy {strategy!r}: expected one of {SAMPLING_STRATEGIES}"
            )
        if frames_per_clip < 1:
            raise ValueError(f"frames_per_clip = {frames_per_clip}: expected at least 1")
        frame = manifest.reset_index(drop=True)
        self.rows: list[dict[str, Any]] = frame.to_dict("records")
        self.cache = cache
        self.aus = [int(a) for a in aus]
        self.frames_per_clip = frames_per_clip
        self.strategy = strategy
        self.seed = seed
        self.meta_keys = ID_KEYS + (ANNOTATION_KEYS if annotation else ())
        self.epoch = 0
        labels = np.asarray(au_label_matrix(frame, self.aus), dtype=np.float32)
        self.labels = torch.from_numpy(labels.reshape(len(self.rows), len(self.aus)))
        self._draws = np.zeros(len(self.rows), dtype=np.int64)
        self._clips: dict[int, CachedClip] = {}
        self._flows: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Reseed the random strategies from ``(seed, epoch)`` (see the module docstring)."""
        self.epoch = int(epoch)
        self._draws[:] = 0

    def clip(self, i: int) -> CachedClip:
        """The full cached clip of item ``i`` (loaded once, then kept in memory)."""
        if i not in self._clips:
            self._clips[i] = self.cache.load(self.rows[i])
        return self._clips[i]

    def flow(self, i: int) -> np.ndarray:
        """``[T, H, W, 3]`` float16 onset-to-frame flow of item ``i`` (computed once, cached)."""
        if i not in self._flows:
            self._flows[i] = FlowCache(self.cache).load_or_compute(
                self.rows[i], self.clip(i).frames
            )
        return self._flows[i]

    def indices(self, i: int) -> np.ndarray:
        """``[frames_per_clip]`` frame indices of the next sample of item ``i``."""
        row = self.rows[i]
        rng = None
        if self.strategy == "random_end":
            rng = np.random.default_rng([self.seed, self.epoch, i, int(self._draws[i])])
            self._draws[i] += 1
        return sample_indices(
            self.clip(i).numbers,
            int_field(row, "onset"),
            _apex(row),
            int_field(row, "offset"),
            self.frames_per_clip,
            self.strategy,
            rng,
        )

    def __getitem__(self, i: int) -> Item:
        """Return ``(clip [C, T, H, W] float32, labels [n_aus] float32, meta)``.

        The clip's channels follow ``preprocess.input``: frames in [0, 1], or the flow's u, v
        (pixels) and strain, or the frames then the flow.

        ``meta`` holds ``dataset``, ``subject`` and ``clip`` (strings), and with ``annotation``
        also ``au_raw``, ``aus`` and ``emotion`` (``""`` where the manifest has none).
        """
        cached, index, kind = self.clip(i), self.indices(i), self.cache.cfg.input
        flow = None if kind == "frames" else self.flow(i)[index]
        clip = model_input(cached.frames[index], flow, kind)
        row = self.rows[i]
        meta = {k: text_field(row, k) for k in self.meta_keys}
        return clip, self.labels[i].clone(), meta


def collate(batch: Sequence[Item]) -> tuple[torch.Tensor, torch.Tensor, dict[str, list[str]]]:
    """Batch items: clips ``[B, C, T, H, W]``, labels ``[B, n_aus]``, meta as lists per key."""
    clips = torch.stack([item[0] for item in batch])
    labels = torch.stack([item[1] for item in batch])
    keys = batch[0][2].keys() if batch else ()
    meta = {k: [item[2][k] for item in batch] for k in keys}
    return clips, labels, meta


def meta_rows(meta: dict[str, list[str]]) -> list[Meta]:
    """A collated batch's meta (key -> list) as one dict per clip."""
    n = len(next(iter(meta.values()))) if meta else 0
    return [{key: values[i] for key, values in meta.items()} for i in range(n)]


def clip_loader(dataset: ClipDataset, batch_size: int, *, shuffle: bool, seed: int) -> DataLoader:
    """Batches of ``dataset`` (:func:`collate`) in the calling process, shuffled from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        collate_fn=collate,
        num_workers=0,
        generator=generator,
    )
