"""Annotation workbooks are read in bounded time and memory, whatever their declared extent."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest
from openpyxl import Workbook
from openpyxl.styles import Font

from au_llm.data import workbook as workbook_module
from au_llm.data.manifest import ManifestError
from au_llm.data.workbook import read_sheets
from tests.data.helpers import CASME2_HEADER, build_casme2, casme2_row, write_frames

# Generous for a loaded 2-core machine: the reads below take well under a second when idle,
# where every row and column of the declared extent took 51 s and 1 GB (GR20000) or never ended.
SECONDS = 20.0
PEAK_BYTES = 64 * 1024 * 1024


def _styled_far_out(path: Path, cell: str) -> Path:
    """A CASME II label file of two clips with one styled, empty cell at ``cell``."""
    book = Workbook()
    sheet = book.active
    sheet.append(CASME2_HEADER)
    sheet.append(casme2_row(1, "EP02_01f", 1, 3, 6, "4"))
    sheet.append(casme2_row(2, "EP03_02", 1, 3, 6, "12"))
    sheet[cell].font = Font(bold=True)
    book.save(path)
    return path


@pytest.mark.timeout(3 * SECONDS)  # reading the declared extent never ends: fail, not hang
@pytest.mark.parametrize("cell", ["GR20000", "XFD1048576"])
def test_a_styled_cell_far_out_costs_nothing(tmp_path, cell):
    coding = _styled_far_out(tmp_path / "coding.xlsx", cell)
    assert coding.stat().st_size < 10_000
    tracemalloc.start()
    started = time.perf_counter()
    try:
        sheets = read_sheets(coding)
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert elapsed < SECONDS
    assert peak < PEAK_BYTES
    [(title, rows)] = sheets
    assert [number for number, _ in rows] == [1, 2, 3]
    assert rows[1][1] == {0: 1, 1: "EP02_01f", 3: 1, 4: 3, 5: 6, 7: "4", 8: "others", 9: 1}
    root = tmp_path / "CASME2"
    for subject, clip in (("sub01", "EP02_01f"), ("sub02", "EP03_02")):
        write_frames(root / subject / clip, range(1, 7))
    result = build_casme2(root, coding)
    assert result.frame["clip"].tolist() == ["EP02_01f", "EP03_02"]


def test_rows_keep_their_excel_numbers_across_gaps_and_blank_cells(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet["A1"] = "title"
    sheet["B4"] = "  "
    sheet["C7"] = 0
    sheet["E7"] = "x"
    book.save(tmp_path / "gaps.xlsx")
    [(_, rows)] = read_sheets(tmp_path / "gaps.xlsx")
    assert rows == [(1, {0: "title"}), (7, {2: 0, 4: "x"})]


def test_a_workbook_that_unpacks_too_large_is_refused(tmp_path, monkeypatch):
    coding = _styled_far_out(tmp_path / "coding.xlsx", "A9")
    monkeypatch.setattr(workbook_module, "MAX_UNPACKED_BYTES", 1000)
    with pytest.raises(ManifestError, match=r"coding\.xlsx: the workbook unpacks to .* bytes"):
        read_sheets(coding)


def test_a_csv_export_reads_like_the_workbook(tmp_path):
    path = tmp_path / "coding.csv"
    path.write_text("Subject,Filename\n\n1,EP02_01f\n ,\n")
    [(_, rows)] = read_sheets(path)
    assert rows == [(1, {0: "Subject", 1: "Filename"}), (3, {0: "1", 1: "EP02_01f"})]
