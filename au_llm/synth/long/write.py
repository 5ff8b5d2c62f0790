"""Writing synthetic long recordings in the real on-disk layouts of SAMM-LV, CAS(ME)^2, CAS(ME)^3.

Frames are rendered and written one at a time; the annotation files are written last, each in
its dataset's real layout (read back by ``au-llm manifest samm-lv|casme-sq-lv|casme3-lv``; see
``data_manifests/DATASETS.md``):

* ``samm-lv``: ``<out>/SAMM_longvideos/006_1/006_1_0001.jpg`` (grayscale) and
  ``<out>/SAMM_LongVideos_V3_Release.xlsx`` (sheet ``FACS_Movement_Only``, 9 preamble rows,
  header in row 10; ``Type`` ``Micro - 1/2`` or ``Macro``; some frame cells are written as
  decimals, ``1234.0``, as in the real file).
* ``casme-sq-lv``: ``<out>/rawpic/s15/15_0101disgustingteeth/img001.jpg`` and
  ``<out>/CAS(ME)^2code_final.xlsx`` (sheets ``CASFEcode_final``, ``naming rule1``,
  ``naming rule2``, no header rows; stimulus codes as numbers, ``101``; every seventh expression
  has apex 0, not annotated, as some real rows do).
* ``casme3-lv``: ``<out>/part_A/spNO.3/a/color/0.jpg`` and the two label files,
  ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx`` (micro-expressions, sheet ``label``) and
  ``cas(me)3_part_A_MaE_label_JpgIndex_v2_emotion.xlsx`` (macro-expressions, sheet ``Sheet1``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from au_llm.data.builders.long_formats import long_format
from au_llm.io_utils import atomic_write_bytes
from au_llm.synth.long.plan import CASME_SQ_STIMULI, long_look_style, plan_long_recordings
from au_llm.synth.long.recording import LongExpression, LongRecording
from au_llm.synth.long.render import LongRenderer
from au_llm.synth.plan import style_spec
from au_llm.synth.write import jpeg_bytes, prepare_root, xlsx_bytes

logger = logging.getLogger(__name__)

SAMM_LV_PREAMBLE: tuple[str | None, ...] = (
    "SAMM Long Videos - FACS codes of the micro- and macro-movements",
    "SYNTHETIC DATA written by au-llm (au_llm.synth.long): no real participant, same layout as "
    "the real file",
    None,
    "Frame numbers are the numbers in the image file names (200 frames per second).",
    "Type: Micro - 1/2 = micro-movement (at most 0.5 s), Macro = macro-movement",
    "Key: / = or; L = left, R = right; A-E after a number = intensity",
    None,
    None,
    None,
)
SAMM_LV_HEADER = (
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset",
    "Apex",
    "Offset",
    "Duration",
    "Type",
    "Action Units",
    "Notes",
)
CASME3_HEADERS = {
    "micro": ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"),
    "macro": ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "emotion"),
}
_CASME_SQ_TYPES = {"micro": "micro-expression", "macro": "macro-expression"}
_CASME_SQ_CLASSES = {"happiness": "positive", "surprise": "surprise", "others": "others"}


@dataclass
class LongSynthResult:
    """What :func:`write_long_style` wrote.

    Attributes:
        style: ``samm-lv``, ``casme-sq-lv`` or ``casme3-lv``.
        root: Frames root (pass it to ``au-llm manifest``).
        codings: The annotation file(s), in the order ``au-llm manifest`` takes them.
        recordings: Every recording (``frames_dir`` absolute), with its ground truth.
    """

    style: str
    root: Path
    codings: tuple[Path, ...]
    recordings: list[LongRecording]

    @property
    def expressions(self) -> list[tuple[LongRecording, LongExpression]]:
        """Every embedded expression with its recording."""
        return [(r, e) for r in self.recordings for e in r.expressions]


def write_recording_frames(recording: LongRecording) -> None:
    """Render every frame of ``recording`` and write each as a JPEG into its (existing) folder.

    Raises:
        RuntimeError: JPEG encoding failed.
    """
    quality = style_spec(long_look_style(recording.style)).jpeg_quality
    renderer = LongRenderer(recording)
    for frame in recording.frame_numbers:
        what = f"{recording.subject}/{recording.recording}: frame {frame}"
        recording.frame_path(frame).write_bytes(jpeg_bytes(renderer.render(frame), quality, what))


def _frame_cell(value: int, messy: bool) -> int | float:
    """A frame number cell; ``messy`` writes it as a decimal (``1234.0``)."""
    return float(value) if messy else value


def _samm_lv_sheet(recordings: Sequence[LongRecording]) -> list[list[object]]:
    rows: list[list[object]] = [[line] for line in SAMM_LV_PREAMBLE]
    rows.append(list(SAMM_LV_HEADER))
    count = 0
    for rec in recordings:
        for e in rec.expressions:
            messy = count % 4 == 3
            count += 1
            rows.append(
                [rec.subject_number, e.name, rec.index + 1]
                + [_frame_cell(v, messy) for v in (e.onset, e.apex, e.offset)]
                + [e.n_frames, "Micro - 1/2" if e.kind == "micro" else "Macro", e.au_cell, None]
            )
    return rows


def _casme_sq_sheets(
    recordings: Sequence[LongRecording],
) -> list[tuple[str, list[list[object]]]]:
    numbers = sorted({r.subject_number for r in recordings})
    index = {number: k + 1 for k, number in enumerate(numbers)}
    codes: list[list[object]] = []
    count = 0
    for rec in recordings:
        for e in rec.expressions:
            apex = 0 if count % 7 == 6 else e.apex
            count += 1
            category = _CASME_SQ_CLASSES.get(e.emotion, "negative")
            codes.append(
                [index[rec.subject_number], e.name, e.onset, apex, e.offset, e.au_cell]
                + [category, _CASME_SQ_TYPES[e.kind], e.emotion]
            )
    rule1: list[list[object]] = [[n, f"s{n}", index[n]] for n in numbers]
    rule2: list[list[object]] = [[code, label] for code, _, label in CASME_SQ_STIMULI]
    return [("CASFEcode_final", codes), ("naming rule1", rule1), ("naming rule2", rule2)]


def _casme3_sheet(recordings: Sequence[LongRecording], kind: str) -> list[list[object]]:
    rows: list[list[object]] = [list(CASME3_HEADERS[kind])]
    for rec in recordings:
        for e in rec.expressions:
            if e.kind != kind:
                continue
            row: list[object] = [rec.subject, rec.recording, e.onset, e.apex, e.offset, e.au_cell]
            rows.append(row + ([e.objective_class] if kind == "micro" else []) + [e.emotion])
    return rows


def _annotation_files(style: str, recordings: Sequence[LongRecording]) -> list[tuple[str, bytes]]:
    """(file name, .xlsx bytes) of each annotation file of a long style."""
    names = [name for name, _ in long_format(style).coding_names]
    if style == "samm-lv":
        return [(names[0], xlsx_bytes([("FACS_Movement_Only", _samm_lv_sheet(recordings))]))]
    if style == "casme-sq-lv":
        return [(names[0], xlsx_bytes(_casme_sq_sheets(recordings)))]
    sheets = {"micro": "label", "macro": "Sheet1"}
    return [
        (name, xlsx_bytes([(sheets[kind], _casme3_sheet(recordings, kind))]))
        for name, kind in long_format(style).coding_names
    ]


def write_long_style(
    style: str,
    out: Path,
    subjects: int = 3,
    recordings_per_subject: int = 2,
    seconds: float = 20.0,
    seed: int = 0,
    difficulty: str = "normal",
    size: float = 1.0,
) -> LongSynthResult:
    """Write synthetic long recordings in a long-video dataset's real on-disk layout.

    Args:
        style: ``samm-lv`` (grayscale, 200 fps), ``casme-sq-lv`` or ``casme3-lv`` (RGB, 30 fps).
        out: Output folder (frames root and annotation files go inside; an existing frames root
            is replaced only when it holds synthetic data).
        subjects: Number of subjects.
        recordings_per_subject: Recordings per subject.
        seconds: Length of each recording.
        seed: Seed; the same seed writes byte-identical files on the same installation.
        difficulty: ``normal`` or ``hard``.
        size: Factor on the image size (1: 680x363 SAMM-LV, 640x480 CAS(ME)^2 / ^3).

    Returns:
        The frames root, the annotation files and the recordings with their ground truth.

    Raises:
        ValueError: Unknown style or difficulty, or impossible sizes.
        FileExistsError: The frames root exists and is not synthetic.
    """
    planned = plan_long_recordings(
        style, subjects, recordings_per_subject, seconds, seed, difficulty, size
    )
    out = Path(out)
    root = out / long_format(style).root_name
    prepare_root(root)
    recordings = [replace(r, frames_dir=root / r.frames_dir) for r in planned]
    started = time.monotonic()
    for number, rec in enumerate(recordings, start=1):
        rec.frames_dir.mkdir(parents=True)
        write_recording_frames(rec)
        logger.info(
            "synthetic %s: recording %d/%d written (%s/%s, %d frames, %.0f s so far)",
            style,
            number,
            len(recordings),
            rec.subject,
            rec.recording,
            rec.n_frames,
            time.monotonic() - started,
        )
    codings = []
    for name, data in _annotation_files(style, recordings):
        atomic_write_bytes(out / name, data)
        codings.append(out / name)
    logger.info("wrote synthetic %s data: %d recordings under %s", style, len(recordings), root)
    return LongSynthResult(style=style, root=root, codings=tuple(codings), recordings=recordings)
