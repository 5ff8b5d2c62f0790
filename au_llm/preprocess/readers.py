"""Reading the onset..offset frames of one manifest row, from a frame folder or a video.

Frame numbers:

* Frame folders: a frame's number is the integer at the end of its file name (``img46.jpg`` ->
  46, ``006_05562.jpg`` -> 5562), exactly as the dataset annotations count them. ``onset`` and
  ``offset`` select files by that number; every number in between must be present.
* Videos (mp4, avi, anything decord reads): ``onset`` and ``offset`` are **0-based frame
  indices** into the decoded stream (frame 0 is the first frame).

Images are returned as uint8 RGB; grayscale images are replicated to three channels. A frame
whose size differs from the clip's other frames, and a JPEG file cut short (no end-of-image marker
after its last scan, which libjpeg only reports as "Premature end of JPEG file" and decodes with
grey fill), raise :class:`~au_llm.data.fields.ClipReadError`: the clip is reported and excluded.
decord's own reason for a video it cannot open or decode (printed by FFmpeg and decord's C++ code,
not in its Python exception) is put into that error whole (:func:`call_decord`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

# cv2 must be imported before decord (imported lazily below): decord bundles a zlib that breaks
# cv2 PNG reading when it is loaded first.
import cv2
import numpy as np

from au_llm.data.fields import ClipReadError, clip_name, frame_range, source_path
from au_llm.data.frames import describe_missing, index_frames, missing_frames, scan_frames
from au_llm.preprocess.native import native_stderr, pass_on, with_native_reason

T = TypeVar("T")

_JPEG_SUFFIXES = (".jpg", ".jpeg")
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = b"\xff\xda"


def jpeg_complete(data: bytes) -> bool:
    """Whether JPEG bytes end their last scan with an end-of-image marker (not cut short).

    Inside entropy-coded data every 0xFF byte is followed by 0x00 or a restart marker, so an
    ``FF D9`` after the last ``FF DA`` (start of scan) can only be the real end of the image.
    """
    sos = data.rfind(_JPEG_SOS)
    return sos >= 0 and data.rfind(_JPEG_EOI) > sos


def call_decord(fn: Callable[[], T], what: str, path: str | Path, number: int | None = None) -> T:
    """``fn()``, a decord call; what FFmpeg and decord print meanwhile goes into its error.

    Args:
        fn: Opens a video or decodes a frame.
        what: Start of the error message (``cannot open the video``).
        path: The video, for the error.
        number: The frame, for the error.

    Raises:
        ClipReadError: ``what: <decord's message> (<the native lines, whole>)``.
    """
    import decord

    native: list[str] = []
    try:
        with native_stderr() as native:
            result = fn()
    except (RuntimeError, decord.DECORDError) as exc:
        raise ClipReadError(f"{what}: {with_native_reason(exc, native)}", path, number) from exc
    pass_on(native)
    return result


def read_image_file(path: str | Path, number: int, where: str) -> np.ndarray:
    """Decode one frame file as ``[H, W, 3]`` uint8 BGR (as OpenCV reads it).

    Args:
        path: The image file.
        number: Its frame number (for the error).
        where: Message prefix naming the clip and frame.

    Raises:
        ClipReadError: The file cannot be read or decoded, or is a truncated JPEG.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ClipReadError(f"{where}: cannot read the file: {exc}", path, number) from exc
    if Path(path).suffix.lower() in _JPEG_SUFFIXES and not jpeg_complete(data):
        raise ClipReadError(
            f"{where}: truncated JPEG (no end-of-image marker); expected a complete file",
            path,
            number,
        )
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ClipReadError(f"{where}: cannot decode the image", path, number)
    return image


class FrameSource(Protocol):
    """Random access to the frames of one clip (what :func:`open_clip` returns)."""

    numbers: np.ndarray
    path: str

    def read(self, i: int) -> np.ndarray:
        """Return frame ``i`` (0-based position in ``numbers``) as ``[H, W, 3]`` uint8 RGB."""
        ...

    def close(self) -> None:
        """Release the source."""
        ...


class FolderSource:
    """Frames of a clip stored as numbered image files in one folder.

    Args:
        folder: The clip's frame folder.
        onset: First frame number.
        offset: Last frame number (inclusive).
        name: Clip name for messages.

    Raises:
        ClipReadError: When the folder is missing or a frame number in the range has no file.
    """

    def __init__(self, folder: str | Path, onset: int, offset: int, name: str = "") -> None:
        self.path = str(folder)
        self.name = name or self.path
        if not Path(folder).is_dir():
            raise ClipReadError(f"clip {self.name}: frame folder not found: {folder}", folder)
        files = index_frames(Path(folder))
        self.numbers = np.arange(onset, offset + 1, dtype=np.int64)
        missing = missing_frames(files, onset, offset)
        if missing:
            raise ClipReadError(
                f"clip {self.name}: {describe_missing(missing, onset, offset)} in {folder}",
                folder,
                missing[0],
            )
        self.files = [files[int(n)] for n in self.numbers]
        self._size: tuple[int, int, int] | None = None

    def read(self, i: int) -> np.ndarray:
        """Decode frame ``i`` (position in ``numbers``) as ``[H, W, 3]`` uint8 RGB.

        Raises:
            ClipReadError: The file cannot be decoded, is a truncated JPEG, or its size differs
                from the clip's frames read before.
        """
        path, number = self.files[i], int(self.numbers[i])
        where = f"clip {self.name}: frame {number} ({path})"
        image = read_image_file(path, number, where)
        if self._size is None:
            self._size = image.shape
        elif image.shape != self._size:
            raise ClipReadError(
                f"{where}: size {image.shape[1]}x{image.shape[0]}, expected "
                f"{self._size[1]}x{self._size[0]} like the clip's other frames",
                path,
                number,
            )
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        """Nothing to release."""


class VideoSource:
    """Frames of a clip inside a video file, read with decord (0-based frame indices).

    Args:
        video: The video file.
        onset: First frame index (0-based).
        offset: Last frame index (inclusive).
        name: Clip name for messages.

    Raises:
        ClipReadError: When the video cannot be opened or is shorter than ``offset + 1``.
    """

    def __init__(self, video: str | Path, onset: int, offset: int, name: str = "") -> None:
        self.path = str(video)
        self.name = name or self.path
        if not Path(video).is_file():
            raise ClipReadError(f"clip {self.name}: video not found: {video}", video)
        import decord

        self._reader = call_decord(
            lambda: decord.VideoReader(self.path, ctx=decord.cpu(0)),
            f"clip {self.name}: cannot open video {video}",
            video,
        )
        if offset >= len(self._reader):
            raise ClipReadError(
                f"clip {self.name}: frame {offset} requested but {video} has "
                f"{len(self._reader)} frames (indices are 0-based)",
                video,
                offset,
            )
        self.numbers = np.arange(onset, offset + 1, dtype=np.int64)

    def read(self, i: int) -> np.ndarray:
        """Decode frame ``i`` (position in ``numbers``) as ``[H, W, 3]`` uint8 RGB."""
        number = int(self.numbers[i])
        frame = call_decord(
            lambda: self._reader[number].asnumpy(),
            f"clip {self.name}: cannot decode frame {number} of {self.path}",
            self.path,
            number,
        )
        if frame.ndim == 2 or frame.shape[2] == 1:
            frame = np.repeat(frame.reshape(frame.shape[0], frame.shape[1], 1), 3, axis=2)
        return np.ascontiguousarray(frame, dtype=np.uint8)

    def close(self) -> None:
        """Drop the decoder."""
        self._reader = None


_FRAME_HASH_CHARS = 16


def frame_hash(frame: np.ndarray) -> str:
    """A short hash of one decoded frame's pixels (64 bits of SHA-256, as hex)."""
    frame = np.ascontiguousarray(frame)
    digest = hashlib.sha256(str(frame.shape).encode())
    digest.update(frame.tobytes())
    return digest.hexdigest()[:_FRAME_HASH_CHARS]


def fingerprint_hashes(fingerprint: object) -> set[str]:
    """The frame hashes of a content fingerprint (empty for a missing one)."""
    return set(fingerprint.split()) if isinstance(fingerprint, str) else set()


class HashingSource:
    """A :class:`FrameSource` that hashes each frame it decodes, for the content fingerprint.

    Alignment decodes every frame once; wrapping its source here gives the fingerprint without
    decoding the clip again.
    """

    def __init__(self, source: FrameSource) -> None:
        self.source = source
        self.numbers = source.numbers
        self.path = source.path
        self._hashes: dict[int, str] = {}

    def read(self, i: int) -> np.ndarray:
        """Frame ``i`` of the wrapped source (its hash is kept)."""
        frame = self.source.read(i)
        self._hashes.setdefault(i, frame_hash(frame))
        return frame

    def close(self) -> None:
        """Release the wrapped source."""
        self.source.close()

    def fingerprint(self) -> str:
        """The clip's content fingerprint (frames not decoded yet are decoded now).

        Returns:
            Every distinct frame hash of the clip, sorted and joined by spaces. A clip copied
            under another name shares them all; a copy shifted by a few frames, or any part of
            the clip copied alone (a single frame included), shares the hashes of the frames it
            holds; two clips share one only if they hold a frame with identical pixels (see
            :func:`fingerprint_hashes`). A re-encoded copy (other pixels) shares none.
        """
        for i in range(len(self.numbers)):
            if i not in self._hashes:
                self.read(i)
        return " ".join(sorted(set(self._hashes.values())))


def is_fingerprint(text: object) -> bool:
    """Whether ``text`` is a content fingerprint as :meth:`HashingSource.fingerprint` writes it."""
    hashes = text.split(" ") if isinstance(text, str) else []
    return len(hashes) > 0 and all(
        len(h) == _FRAME_HASH_CHARS and all(c in "0123456789abcdef" for c in h) for h in hashes
    )


def source_stamp(row: Mapping[str, Any]) -> str | None:
    """A cheap stamp of a clip's source files: changes when any of them is replaced.

    Hashes the name, size and modification time (ns) of every frame file of onset..offset of a
    frame folder (a frame number without a file counts too), or of the video file; the pixels
    are not read.

    Returns:
        Hex SHA-256, or None when the folder or video is not there at all (a machine that sees
        only the cache; nothing to compare).

    Raises:
        ClipReadError: When the row has no source or a bad range.
    """
    kind, path = source_path(row)
    onset, offset = frame_range(row)
    if kind == "frames":
        if not Path(path).is_dir():
            return None
        files = scan_frames(Path(path)).frames
        named = [files.get(number) for number in range(onset, offset + 1)]
    else:
        if not Path(path).is_file():
            return None
        named = [Path(path)]
    digest = hashlib.sha256()
    for file in named:
        try:
            stat = file.stat() if file is not None else None
        except OSError:  # removed since the folder was listed
            stat = None
        entry = (file.name, stat.st_size, stat.st_mtime_ns) if file and stat else None
        digest.update(repr(entry).encode())
    return digest.hexdigest()


def open_clip(row: Mapping[str, Any]) -> FolderSource | VideoSource:
    """Open the frame source of a manifest row (``frames_dir`` or ``video``, onset..offset).

    Raises:
        ClipReadError: When the row has no source, a bad range, or the source cannot be opened.
    """
    kind, path = source_path(row)
    onset, offset = frame_range(row)
    if kind == "frames":
        return FolderSource(path, onset, offset, clip_name(row))
    return VideoSource(path, onset, offset, clip_name(row))
