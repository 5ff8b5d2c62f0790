"""The aligned-clip cache: one compressed ``.npz`` per clip and preprocessing setting.

Layout::

    <root>/<settings hash>/settings.json         the pixel-relevant settings of this folder
    <root>/<settings hash>/index.csv             one row per cached clip (see write_index)
    <root>/<settings hash>/<dataset>/<subject>_<clip>_<key[:16]>.npz

(names made safe file names by :func:`~au_llm.io_utils.safe_component`, so every file stays
inside the settings folder).

Each file holds the FULL onset..offset range at the target size (``frames [T, H, W, C]`` uint8,
``numbers [T]`` int64, ``meta`` a JSON string, ``transforms [T, 2, 3]`` the alignment matrices), so
temporal sampling happens when clips are loaded and changing the number of sampled frames needs no
new preprocessing.

A clip's key hashes the settings that change pixels (``CACHE_VERSION``, size, colour, mode and the
settings that mode uses; never ``workers``) and its source: dataset, subject, clip, source kind,
the normalised ``frames_dir`` / ``video`` path string as written in the manifest, onset and
offset. Each clip's ``meta`` also holds the ``source_stamp`` of its source files (name, size and
modification time of each, :func:`~au_llm.preprocess.readers.source_stamp`) taken before they
were read: a clip whose source files were replaced in place is preprocessed again
(:mod:`au_llm.preprocess.run`), and its optical flow with it (:mod:`au_llm.preprocess.flow`).

Each clip's ``meta`` (and ``index.csv``) also holds its content ``fingerprint``, hashes of its
decoded source frames (:meth:`~au_llm.preprocess.readers.HashingSource.fingerprint`): the
protocols refuse a fold whose train and test sides share a frame, whatever the clips are called.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from au_llm.assets import FACE_LANDMARKER
from au_llm.config import PreprocessConfig
from au_llm.data.fields import clip_name, frame_range, source_path, text_field
from au_llm.io_utils import (
    atomic_open,
    atomic_write_csv,
    atomic_write_text,
    probe_writable,
    remove_stale_temporaries,
    safe_component,
)

# Bump when alignment code changes the pixels or the metadata it writes, so old cache files are
# not reused (2: the content fingerprint in each clip's meta; 3: the Tasks FaceLandmarker).
CACHE_VERSION = 3

INDEX_COLUMNS = (
    "key",
    "dataset",
    "subject",
    "clip",
    "file",
    "frames",
    "fallback",
    "landmark_confidence",
    "fingerprint",
)


class CacheError(RuntimeError):
    """A cached clip is missing or unreadable; the message names the clip and the file."""


@dataclass
class CachedClip:
    """One clip loaded from the cache.

    Attributes:
        frames: ``[T, H, W, C]`` uint8 aligned frames (C = 1 gray, 3 rgb).
        numbers: ``[T]`` int64 frame numbers.
        meta: What was stored with the clip (names, fallback, landmark_confidence, ...).
        transforms: ``[T, 2, 3]`` source-to-crop affine matrices, when they were stored.
    """

    frames: np.ndarray
    numbers: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    transforms: np.ndarray | None = None


def pixel_settings(cfg: PreprocessConfig) -> dict[str, Any]:
    """Return the settings that change the cached pixels (nothing else, e.g. no ``workers``)."""
    settings: dict[str, Any] = {
        "version": CACHE_VERSION,
        "size": cfg.size,
        "color": cfg.color,
        "mode": cfg.align,  # the key is stored in every cache entry: it keeps its first name
    }
    if cfg.align != "none":
        settings.update(
            margin=cfg.margin,
            landmarker_model=cfg.landmarker_model or FACE_LANDMARKER.sha256,
            num_faces=cfg.num_faces,
            max_face_search=cfg.max_face_search,
        )
        if cfg.align == "clip":
            settings["ref_frames"] = cfg.ref_frames
        else:
            settings["smooth"] = cfg.smooth
    return settings


def _digest(data: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


class ClipCache:
    """Aligned clips on disk, keyed by preprocessing settings and source.

    Args:
        root: Cache root folder (``data.cache_dir``).
        cfg: Preprocessing settings; only :func:`pixel_settings` of it matter.
    """

    def __init__(self, root: str | Path, cfg: PreprocessConfig) -> None:
        self.root = Path(root)
        self.cfg = cfg
        self.settings = pixel_settings(cfg)
        self.settings_hash = _digest(self.settings)[:12]
        self.folder = self.root / self.settings_hash
        self.pixels = (cfg.size, cfg.size, cfg.channels)

    def key(self, row: Mapping[str, Any]) -> str:
        """Hex SHA-256 of the pixel settings and the clip's source (see the module docstring)."""
        kind, path = source_path(row)
        onset, offset = frame_range(row)
        source = {
            "dataset": text_field(row, "dataset"),
            "subject": text_field(row, "subject"),
            "clip": text_field(row, "clip"),
            "kind": kind,
            "path": path,
            "onset": onset,
            "offset": offset,
        }
        return _digest({"settings": self.settings, "source": source})

    def path(self, row: Mapping[str, Any]) -> Path:
        """File of a row's cached clip (it may not exist yet)."""
        name = f"{text_field(row, 'subject')}_{text_field(row, 'clip')}_{self.key(row)[:16]}"
        dataset = safe_component(text_field(row, "dataset"))
        return self.folder / dataset / f"{safe_component(name)}.npz"

    def prepare_writes(self) -> None:
        """Check that the cache folder is writable and remove temporaries left by a killed write.

        Raises:
            OutputError: The folder cannot be written (read-only, full, no permission).
        """
        probe_writable(self.folder)
        remove_stale_temporaries(self.folder)

    def has(self, row: Mapping[str, Any]) -> bool:
        """Whether the row's clip is cached with the current settings."""
        return self.path(row).is_file()

    def load(self, row: Mapping[str, Any]) -> CachedClip:
        """Load a row's cached clip.

        Raises:
            CacheError: When it is not cached (run preprocessing first), or the file is
                unreadable (empty, truncated, damaged, not an ``.npz``) or holds arrays of the
                wrong shape for these settings.
        """
        path = self.path(row)
        if not path.is_file():
            raise CacheError(
                f"clip {clip_name(row)} is not in the cache ({path}); run `au-llm preprocess` "
                "with the same preprocess settings first"
            )
        return load_file(path, self.pixels)

    def save(
        self,
        row: Mapping[str, Any],
        frames: np.ndarray,
        numbers: np.ndarray,
        info: Mapping[str, Any] | None = None,
        transforms: np.ndarray | None = None,
    ) -> Path:
        """Write a row's aligned clip atomically.

        Args:
            row: The manifest row.
            frames: ``[T, H, W, C]`` uint8 aligned frames.
            numbers: ``[T]`` frame numbers.
            info: Extra JSON-serialisable metadata stored with the clip (e.g. fallback).
            transforms: Optional ``[T, 2, 3]`` alignment matrices stored with the clip.

        Returns:
            The written file.

        Raises:
            ValueError: For frames of the wrong shape or dtype.
        """
        frames = np.asarray(frames)
        numbers = np.asarray(numbers, dtype=np.int64)
        size, channels = self.cfg.size, self.cfg.channels
        expected = (len(numbers), size, size, channels)
        if frames.dtype != np.uint8 or frames.shape != expected:
            raise ValueError(
                f"clip {clip_name(row)}: expected uint8 frames of shape {expected}, got "
                f"{frames.dtype} {frames.shape}"
            )
        meta = {
            "key": self.key(row),
            "dataset": text_field(row, "dataset"),
            "subject": text_field(row, "subject"),
            "clip": text_field(row, "clip"),
            "settings": self.settings,
            **dict(info or {}),
        }
        arrays = {"frames": frames, "numbers": numbers, "meta": np.array(json.dumps(meta))}
        if transforms is not None:
            arrays["transforms"] = np.asarray(transforms, dtype=np.float64).reshape(-1, 2, 3)
        path = self.path(row)
        self._write_settings()
        with atomic_open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)
        return path

    def _write_settings(self) -> None:
        settings_file = self.folder / "settings.json"
        if not settings_file.is_file():
            atomic_write_text(settings_file, json.dumps(self.settings, indent=2) + "\n")

    def write_index(self) -> Path:
        """Rewrite ``index.csv`` of this settings folder from the cached files (atomically).

        Returns:
            The index file; columns are ``INDEX_COLUMNS`` (``file`` relative to the folder).
        """
        rows = []
        for path in sorted(self.folder.glob("*/*.npz")):
            try:
                meta = read_meta(path, self.pixels)
                with np.load(path) as data:
                    count = len(data["numbers"])
            except (CacheError, *_UNREADABLE):
                continue
            row = {k: meta.get(k, "") for k in INDEX_COLUMNS}
            row.update(file=str(path.relative_to(self.folder)), frames=count)
            rows.append(row)
        index = self.folder / "index.csv"
        atomic_write_csv(index, pd.DataFrame(rows, columns=list(INDEX_COLUMNS)))
        return index


# What numpy and zipfile raise for an empty, truncated, damaged or foreign cache file.
_UNREADABLE = (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile, zlib.error)


def _header(data: Any, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of array ``name`` of an open ``.npz``, read without decompressing it."""
    with data.zip.open(f"{name}.npy") as member:
        major, _ = np.lib.format.read_magic(member)
        if major == 1:
            shape, _, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(member)
    return tuple(shape), dtype


def _shape_problem(
    frames: tuple[tuple[int, ...], np.dtype],
    numbers: tuple[int, ...],
    pixels: tuple[int, int, int] | None,
) -> str | None:
    """What is wrong with a cached clip's arrays, or None (``pixels``: expected ``(H, W, C)``)."""
    shape, dtype = frames
    if len(shape) != 4 or dtype != np.uint8 or len(numbers) != 1 or shape[0] != numbers[0]:
        return (
            f"expected uint8 frames [T, H, W, C] matching numbers [T], got {dtype} {shape} and "
            f"{numbers}"
        )
    if pixels is not None and shape[1:] != pixels:
        return f"expected frames of {pixels[0]}x{pixels[1]}x{pixels[2]}, got {shape}"
    return None


def read_meta(path: Path, pixels: tuple[int, int, int] | None = None) -> dict[str, Any]:
    """Read the metadata of a cached clip file and check its arrays' shapes.

    Only the metadata and the arrays' headers are read (the frames are not decompressed).

    Args:
        path: The ``.npz`` file.
        pixels: Expected ``(H, W, C)`` of each frame, or None to accept any.

    Raises:
        CacheError: When the file is empty, truncated, not an ``.npz``, lacks an array, or its
            arrays have the wrong shapes.
    """
    try:
        with np.load(path) as data:
            meta = json.loads(str(data["meta"]))
            problem = _shape_problem(_header(data, "frames"), _header(data, "numbers")[0], pixels)
    except _UNREADABLE as exc:
        raise CacheError(f"cached clip {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    if problem is not None or not isinstance(meta, dict):
        raise CacheError(f"cached clip {path}: {problem or 'its meta is not a JSON object'}")
    return meta


def load_file(path: Path, pixels: tuple[int, int, int] | None = None) -> CachedClip:
    """Load a cached clip file.

    Args:
        path: The ``.npz`` file.
        pixels: Expected ``(H, W, C)`` of each frame, or None to accept any.

    Raises:
        CacheError: When the file is unreadable or its arrays are inconsistent.
    """
    try:
        with np.load(path) as data:
            frames, numbers = data["frames"], data["numbers"]
            meta = json.loads(str(data["meta"]))
            transforms = data["transforms"] if "transforms" in data.files else None
    except _UNREADABLE as exc:
        raise CacheError(f"cached clip {path} is unreadable: {type(exc).__name__}: {exc}") from exc
    problem = _shape_problem((frames.shape, frames.dtype), numbers.shape, pixels)
    if problem is not None or not isinstance(meta, dict):
        raise CacheError(f"cached clip {path}: {problem or 'its meta is not a JSON object'}")
    return CachedClip(frames=frames, numbers=numbers, meta=meta, transforms=transforms)
