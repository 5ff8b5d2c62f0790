"""Frame files of a clip folder, found by the integer at the end of their names.

CASME II names frames ``img46.jpg`` (raw release) or ``reg_img46.jpg`` (cropped release); SAMM
names them ``006_05562.jpg`` with a zero padding that varies between releases. Only the trailing
integer of the file stem matters.

When one folder holds frames under several naming patterns (``img46.jpg`` *and* ``reg_img46.jpg``),
the frames of a clip must not be mixed (the two releases differ in size and crop). The pattern
(the stem without its trailing number, plus the lower-cased extension) that covers the most files
is used; on a tie the alphabetically first pattern wins, so ``img<N>.jpg`` beats ``reg_img<N>.jpg``.
Files of the other patterns are ignored and reported. Within the chosen pattern, two files with
the same number (``006_5562.jpg`` and ``006_05562.jpg``) are resolved by keeping the
alphabetically first name, also reported.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_TRAILING_NUMBER = re.compile(r"(\d+)$")
_MAX_RANGES_SHOWN = 6


@dataclass(frozen=True)
class FrameScan:
    """The frames found in one folder.

    Attributes:
        folder: The folder scanned.
        frames: Frame number -> image path, for the chosen naming pattern.
        pattern: The chosen naming pattern, e.g. ``img<N>.jpg`` ("" when no frame was found).
        messages: One line per ignored file group or duplicate, for the user.
    """

    folder: Path
    frames: dict[int, Path]
    pattern: str
    messages: tuple[str, ...]


def _pattern_label(key: tuple[str, str]) -> str:
    prefix, suffix = key
    return f"{prefix}<N>{suffix}"


def scan_frames(folder: Path) -> FrameScan:
    """Index the image frames of a folder and explain which files were ignored.

    Args:
        folder: A clip folder.

    Returns:
        The scan; see the module docstring for how duplicates are resolved.

    Raises:
        FileNotFoundError: ``folder`` is not an existing directory.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"frames folder {folder} not found")
    groups: dict[tuple[str, str], dict[int, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in folder.iterdir():
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES or not path.is_file():
            continue
        match = _TRAILING_NUMBER.search(path.stem)
        if match is None:
            continue
        key = (path.stem[: match.start()], suffix)
        groups[key][int(match.group(1))].append(path)
    if not groups:
        return FrameScan(folder, {}, "", ())
    chosen = min(groups, key=lambda key: (-len(groups[key]), key))
    messages = [
        f"{folder}: {len(groups[key])} files named {_pattern_label(key)} ignored; "
        f"frames read from {_pattern_label(chosen)}"
        for key in sorted(groups)
        if key != chosen
    ]
    frames: dict[int, Path] = {}
    for number in sorted(groups[chosen]):
        paths = sorted(groups[chosen][number], key=lambda path: path.name)
        frames[number] = paths[0]
        if len(paths) > 1:
            others = ", ".join(path.name for path in paths[1:])
            messages.append(f"{folder}: frame {number} is {paths[0].name}; {others} ignored")
    return FrameScan(folder, frames, _pattern_label(chosen), tuple(messages))


def index_frames(folder: Path) -> dict[int, Path]:
    """Map frame number -> image file for a clip folder (jpg, jpeg, png, bmp; any case).

    Files that carry no trailing number are not frames. When several naming patterns or several
    files with the same number are present, the rule of the module docstring picks one file per
    number and the ignored files are logged as warnings.

    Args:
        folder: A clip folder, e.g. ``<root>/sub01/EP02_01f``.

    Returns:
        Frame number -> path, sorted by frame number.

    Raises:
        FileNotFoundError: ``folder`` is not an existing directory.
    """
    scan = scan_frames(folder)
    for message in scan.messages:
        logger.warning(message)
    return scan.frames


def missing_frames(frames: Iterable[int], onset: int, offset: int) -> list[int]:
    """Return the frame numbers of ``onset..offset`` (inclusive) that are absent from ``frames``."""
    present = set(frames)
    return [number for number in range(onset, offset + 1) if number not in present]


def format_ranges(numbers: Iterable[int]) -> str:
    """Write integers as compact ranges, e.g. ``[50, 51, 52, 60]`` -> ``"50-52, 60"``.

    At most six ranges are written; the rest are counted (``"..., and 4 more ranges"``).
    """
    ranges: list[tuple[int, int]] = []
    for number in sorted(set(numbers)):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1] = (ranges[-1][0], number)
        else:
            ranges.append((number, number))
    parts = [str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges[:_MAX_RANGES_SHOWN]]
    if len(ranges) > _MAX_RANGES_SHOWN:
        parts.append(f"and {len(ranges) - _MAX_RANGES_SHOWN} more ranges")
    return ", ".join(parts)


def describe_missing(missing: Iterable[int], onset: int, offset: int) -> str:
    """Describe missing frames for a report, e.g. ``"frames 50-52 missing of 46-110"``."""
    missing = sorted(set(missing))
    noun = "frame" if len(missing) == 1 else "frames"
    return f"{noun} {format_ranges(missing)} missing of {onset}-{offset}"
