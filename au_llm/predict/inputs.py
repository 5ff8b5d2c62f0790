"""What kind of input ``au-llm predict`` was given: a manifest, a frame folder or a video."""

from __future__ import annotations

from pathlib import Path

from au_llm.data.fields import ClipReadError
from au_llm.preprocess.windows import VIDEO_SUFFIXES


def input_kind(path: Path) -> str:
    """``manifest`` (a .csv), ``frames`` (a folder) or ``video`` (a video file).

    Raises:
        ClipReadError: If the path does not exist or is of no known kind.
    """
    if path.is_dir():
        return "frames"
    if not path.exists():
        raise ClipReadError(f"input not found: {path}", path)
    if path.suffix.lower() == ".csv":
        return "manifest"
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return "video"
    raise ClipReadError(
        f"input {path}: expected a manifest .csv, a frame folder or a video "
        f"({', '.join(sorted(VIDEO_SUFFIXES))})",
        path,
    )


def is_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest (an input that is not is a recording, or fails as one)."""
    try:
        return input_kind(path) == "manifest"
    except ClipReadError:
        return False
