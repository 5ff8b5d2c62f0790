"""Writing a synthetic dataset: frame folders and the annotation spreadsheet."""

from __future__ import annotations

import datetime
import io
import logging
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2  # before anything that may import decord (see the project notes)
import numpy as np

from au_llm.io_utils import atomic_write_bytes
from au_llm.synth.plan import SynthClip, plan_clips, style_spec
from au_llm.synth.render import ClipRenderer

logger = logging.getLogger(__name__)

MARKER_NAME = ".au_llm_synthetic"
"""File written in a synthetic frames root; only a root holding it is ever replaced."""

_FIXED_TIME = datetime.datetime(2020, 1, 1, 0, 0, 0)
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)

SAMM_PREAMBLE: tuple[str | None, ...] = (
    "SAMM - Spontaneous Actions and Micro-Movements: FACS codes of the micro-movements",
    "SYNTHETIC DATA written by au-llm (au_llm.synth): no real participant, same layout as the "
    "real file",
    None,
    "Citation notes: when using the real database cite Davison, A. K., Lansley, C., Costen, N., "
    "Tan, K., Yap, M. H. (2018). SAMM: A Spontaneous Micro-Facial Movement Dataset. IEEE "
    "Transactions on Affective Computing, 9(1), 116-129.",
    "Frame numbers are the numbers in the image file names (200 frames per second).",
    None,
    "Key:",
    "/ = or",
    "? = unclear offset",
    "L = left, R = right (unilateral action, the participant's side)",
    "A = asymmetric (as a prefix, e.g. A12)",
    "Intensity: A = trace, B = slight, C = marked, D = severe, E = maximum (e.g. 12A, 4+7B)",
    None,
)
SAMM_HEADER = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
)
CASME_HEADER = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
)


@dataclass
class SynthResult:
    """What :func:`write_synthetic` wrote.

    Attributes:
        style: ``casme2`` or ``samm``.
        root: Frames root (pass it to the manifest builder).
        coding: The annotation spreadsheet (.xlsx).
        clips: Every clip, in spreadsheet row order.
    """

    style: str
    root: Path
    coding: Path
    clips: list[SynthClip]


def _coding_rows(style: str, clips: Sequence[SynthClip]) -> list[list[object]]:
    rows: list[list[object]] = []
    for c in clips:
        if style == "casme2":
            rows.append(
                [c.subject_number, c.clip, None, c.onset, c.apex, c.offset, None, c.au_cell]
                + [c.emotion, c.objective_class]
            )
        else:
            inducement = int(c.clip.split("_")[1])
            rows.append(
                [c.subject_number, c.clip, inducement, c.onset, c.apex, c.offset, c.n_frames]
                + ["Micro - 1/2", c.au_cell, c.emotion, c.objective_class, None]
            )
    return rows


def _xlsx_bytes(style: str, clips: Sequence[SynthClip]) -> bytes:
    """The annotation workbook of a CASME II or SAMM style dataset."""
    if style == "casme2":
        return xlsx_bytes([("Sheet1", [list(CASME_HEADER), *_coding_rows(style, clips)])])
    rows = [[line] for line in SAMM_PREAMBLE] + [list(SAMM_HEADER), *_coding_rows(style, clips)]
    return xlsx_bytes([("FACS_Codes", rows)])


def write_clip_frames(clip: SynthClip, path_of: Callable[[int], Path]) -> None:
    """Render frames onset..offset of ``clip`` and write each as a JPEG at ``path_of(frame)``.

    Args:
        clip: The clip (its style gives the image size, colour and JPEG quality).
        path_of: Frame number -> file path; the folder must exist.

    Raises:
        RuntimeError: JPEG encoding failed.
    """
    quality = style_spec(clip.style).jpeg_quality
    renderer = ClipRenderer(clip)
    for frame in range(clip.onset, clip.offset + 1):
        data = jpeg_bytes(renderer.render(frame), quality, f"{clip.clip}: frame {frame}")
        path_of(frame).write_bytes(data)


def jpeg_bytes(image: np.ndarray, quality: int, what: str) -> bytes:
    """A rendered frame (RGB ``[H, W, 3]`` or gray ``[H, W]`` uint8) encoded as JPEG.

    Raises:
        RuntimeError: Encoding failed (``what`` names the frame).
    """
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"{what}: JPEG encoding failed")
    return encoded.tobytes()


def xlsx_bytes(sheets: Sequence[tuple[str, Sequence[Sequence[object]]]]) -> bytes:
    """A workbook of ``(title, rows)`` sheets with fixed timestamps (byte-reproducible)."""
    from openpyxl import Workbook
    from openpyxl.writer.excel import ExcelWriter

    book = Workbook()
    book.remove(book.active)
    for title, rows in sheets:
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(list(row))
    book.properties.creator = "au-llm synthetic data"
    book.properties.created = _FIXED_TIME
    book.properties.modified = _FIXED_TIME
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as archive:
        ExcelWriter(book, archive).save()
    fixed = io.BytesIO()
    with (
        zipfile.ZipFile(raw) as source,
        zipfile.ZipFile(fixed, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=_ZIP_TIME)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, source.read(info.filename))
    return fixed.getvalue()


def prepare_root(root: Path) -> None:
    """Create an empty frames root; replace one only when it holds the synthetic marker."""
    if root.exists():
        if not (root / MARKER_NAME).is_file() and any(root.iterdir()):
            raise FileExistsError(
                f"{root}: exists and is not synthetic data written by au_llm.synth "
                f"(no {MARKER_NAME}); choose another output folder"
            )
        shutil.rmtree(root)
    root.mkdir(parents=True)
    (root / MARKER_NAME).write_text("synthetic micro-expression frames written by au_llm.synth\n")


def write_synthetic(
    style: str,
    out: Path,
    subjects: int = 8,
    clips_per_subject: int = 8,
    seed: int = 0,
    frames_per_clip: int | None = None,
    difficulty: str = "normal",
) -> SynthResult:
    """Write a synthetic micro-expression dataset in the CASME II or SAMM on-disk format.

    Args:
        style: ``casme2`` (RGB 640x480 ``subNN/EPxx_yy/imgK.jpg`` + ``CASME2-coding-20190701.xlsx``)
            or ``samm`` (grayscale 680x363 ``NNN/NNN_a_b/NNN_KKKKK.jpg`` +
            ``SAMM_Micro_FACS_Codes_v2.xlsx``).
        out: Output folder; the frames root and the spreadsheet go inside it. An existing frames
            root is replaced only if it was written by this function.
        subjects: Number of subjects (default 8; CASME II ids are drawn from 1-26, SAMM ids from
            the real ones 6-37).
        clips_per_subject: Clips per subject (default 8). AU combinations are dealt from a pool
            of 16 realistic ones, so with the defaults each combination occurs 4 times and every
            AU of the style's set is positive in 19-25 % of the clips.
        seed: Seed of everything random; the same seed writes byte-identical files.
        frames_per_clip: Frames per clip (onset..offset, at least 3); None draws 12-24 per clip.
        difficulty: ``normal``, or ``hard``: AU movements about half as large, three times the
            head jitter, 2.5 times the sensor noise, larger per-clip pose changes, and CASME
            II-like label imbalance (AU4 in about half the clips); see
            :data:`~au_llm.synth.plan.DIFFICULTIES`.

    Returns:
        The frames root, the spreadsheet and every clip.

    Raises:
        ValueError: For an unknown style or difficulty, or impossible sizes.
        FileExistsError: When the frames root exists and is not synthetic.
    """
    spec = style_spec(style)
    out = Path(out)
    root = out / spec.root_name
    planned = plan_clips(style, subjects, clips_per_subject, seed, frames_per_clip, difficulty)
    prepare_root(root)
    clips = [replace(c, frames_dir=root / c.frames_dir) for c in planned]
    for clip in sorted(clips, key=lambda c: (c.subject_index, c.index)):
        clip.frames_dir.mkdir(parents=True)
        write_clip_frames(clip, clip.frame_path)
    coding = out / spec.coding_name
    atomic_write_bytes(coding, _xlsx_bytes(style, clips))
    logger.info("wrote synthetic %s data: %d clips under %s", style, len(clips), root)
    return SynthResult(style=style, root=root, coding=coding, clips=clips)
