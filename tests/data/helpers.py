"""Builders of CASME II / SAMM annotation files in their real layouts, tiny frame folders, and
short calls of the dataset builder."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from openpyxl import Workbook

from au_llm.data.builders.dataset import build_dataset
from au_llm.data.builders.formats import DATASET_FORMATS
from au_llm.data.errata import Errata
from au_llm.data.report import ManifestResult

CASME2_HEADER = [
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
]
SAMM_HEADER = [
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
]
# The real file has 13 preamble rows: a title, citation notes and a symbol key.
SAMM_PREAMBLE: list[list[object]] = [
    ["SAMM Micro-Movement FACS Codes"],
    [],
    ["Please cite: Davison et al., SAMM: A Spontaneous Micro-Facial Movement Dataset"],
    ["Objective classes: Yap et al."],
    [],
    ["Key"],
    ["/", "or"],
    ["?", "unclear offset"],
    ["L2 / R2", "unilateral on the left / right"],
    ["A2", "asymmetric"],
    ["Filename", "subject_inducement_clip"],
    ["Subject", "participant number"],
    [],
]
_JPEG = cv2.imencode(".jpg", np.full((8, 8), 128, dtype=np.uint8))[1].tobytes()


def casme2_row(
    subject: object,
    filename: object,
    onset: object,
    apex: object,
    offset: object,
    aus: object,
    emotion: str = "others",
) -> list[object]:
    """One CASME II row: the unnamed columns stay empty, Objective Classes is 1."""
    return [subject, filename, None, onset, apex, offset, None, aus, emotion, 1]


def write_casme2_xlsx(path: Path, rows: Iterable[Sequence[object]]) -> Path:
    """Write a CASME II coding workbook (header in the first row)."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "Sheet1"
    sheet.append(CASME2_HEADER)
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def samm_row(
    subject: object,
    filename: object,
    onset: object,
    apex: object,
    offset: object,
    aus: object,
    emotion: str = "Other",
) -> list[object]:
    """One SAMM row with its extra columns filled as in the real file."""
    duration = offset - onset + 1 if isinstance(onset, int) and isinstance(offset, int) else None
    return [subject, filename, 1, onset, apex, offset, duration, "Micro - 1/2", aus, emotion, 7, ""]


def write_samm_xlsx(
    path: Path, rows: Iterable[Sequence[object]], preamble: Sequence[Sequence[object]] | None = None
) -> Path:
    """Write a SAMM workbook: preamble rows (13 by default), then the header, then the rows."""
    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "FACS Codes"
    for index, line in enumerate(SAMM_PREAMBLE if preamble is None else preamble, start=1):
        for column, value in enumerate(line, start=1):
            sheet.cell(row=index, column=column, value=value)
    start = len(SAMM_PREAMBLE if preamble is None else preamble) + 1
    for offset, line in enumerate([SAMM_HEADER, *rows]):
        for column, value in enumerate(line, start=1):
            sheet.cell(row=start + offset, column=column, value=value)
    workbook.save(path)
    return path


def write_frames(
    folder: Path, numbers: Iterable[int], name: Callable[[int], str] = lambda k: f"img{k}.jpg"
) -> Path:
    """Write tiny 8x8 jpg frames named by ``name(k)`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for number in numbers:
        (folder / name(number)).write_bytes(_JPEG)
    return folder


def samm_rows() -> list[list[object]]:
    """SAMM rows: errata clips, alternatives, messy AU strings and broken rows."""
    return [
        samm_row(6, "006_1_2", 5562, 5565, 5570, "4+7", "Anger"),
        samm_row(7, "007_6_1", 100, 103, 106, "(R6 or R12)+R15", "Contempt"),
        samm_row(11, "011_4_2", 200, 201, 204, "L12 or L14", "Happiness"),
        samm_row(9, "009_3_1", 10, 12, 14, "R12 or R14", "Contempt"),
        samm_row(28, "028_4_1", 1100, 2000, 1120, 12, "Happiness"),
        samm_row(32, "032_3_2", 5126, 5127, 5135, "4+7", "Anger"),
        samm_row(32, "032_3_1", 4940, None, 4960, "ref(5)+20C+25+26", "Surprise"),
        samm_row(13, "013_1_9", 5730, 5735, "?", "B18+25", "Other"),
        samm_row(14, "014_5_2", 20, 21, 25, "12+15 ", "Happiness"),
        samm_row(15, "015_1_1", 30, 31, 33, "R14+17+soft focus", "Other"),
        samm_row(16, "016_2_2", 1, 2, "?", 4, "Other"),
        samm_row(17, None, 1, 2, 3, 4, "Other"),
    ]


def make_samm_frames(root: Path) -> None:
    write_frames(root / "006" / "006_1_2", range(5560, 5572), lambda k: f"006_{k:05d}.jpg")
    write_frames(root / "007" / "007_6_1", range(100, 107), lambda k: f"007_{k}.jpg")
    write_frames(root / "011" / "011_4_2", range(200, 205), lambda k: f"011_{k:04d}.jpg")
    write_frames(root / "009" / "009_3_1", range(10, 15), lambda k: f"009_{k:05d}.jpg")
    write_frames(root / "028" / "028_4_1", range(1100, 1121), lambda k: f"028_{k:05d}.jpg")
    write_frames(root / "032" / "032_3_2", range(5126, 5136), lambda k: f"032_{k:05d}.jpg")
    write_frames(root / "032" / "032_3_1", range(4940, 4961), lambda k: f"032_{k:05d}.jpg")
    write_frames(root / "013" / "013_1_9", range(5730, 5740), lambda k: f"013_{k:05d}.jpg")
    write_frames(root / "014" / "014_5_2", range(20, 26), lambda k: f"014_{k:05d}.jpg")
    write_frames(root / "015" / "015_1_1", range(30, 34), lambda k: f"015_{k:05d}.jpg")
    write_frames(root / "016" / "016_2_2", range(1, 5), lambda k: f"016_{k:05d}.jpg")


def by_clip(frame: pd.DataFrame) -> dict[str, dict[str, object]]:
    """Manifest rows keyed by clip name."""
    return {row["clip"]: row for row in frame.to_dict("records")}


def skipped_by_clip(result) -> dict[str, object]:
    """Skipped clips keyed by clip name (``row N`` for rows without one)."""
    return {item.clip or f"row {item.row}": item for item in result.skipped}


def build(
    name: str,
    root: Path,
    coding: Path | Sequence[Path],
    *,
    strict: bool = False,
    errata: Errata | None = None,
) -> ManifestResult:
    """The manifest of dataset ``name`` built from one label file or several."""
    codings = [coding] if isinstance(coding, (str, Path)) else list(coding)
    return build_dataset(DATASET_FORMATS[name], root, codings, strict=strict, errata=errata)


def build_casme2(
    root: Path, coding: Path, *, strict: bool = False, errata: Errata | None = None
) -> ManifestResult:
    """The CASME II manifest of one coding file."""
    return build("casme2", root, coding, strict=strict, errata=errata)


def build_samm(
    root: Path, coding: Path, *, strict: bool = False, errata: Errata | None = None
) -> ManifestResult:
    """The SAMM manifest of one coding file."""
    return build("samm", root, coding, strict=strict, errata=errata)


def subject_id(name: str, value: object) -> str | None:
    """The subject id dataset ``name`` reads from a subject cell."""
    return DATASET_FORMATS[name].subject_id(value)
