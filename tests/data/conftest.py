"""Fixtures: CASME II and SAMM annotation files in their real layouts, with tiny frame folders."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.data.helpers import (
    casme2_row,
    make_samm_frames,
    samm_rows,
    write_casme2_xlsx,
    write_frames,
    write_samm_xlsx,
)


@pytest.fixture
def casme2(tmp_path: Path) -> tuple[Path, Path]:
    """A CASME II release: root folder and coding workbook (rows in spreadsheet order).

    Excel rows: 1 header; 2 EP02_01f ok; 3 EP03_02 apex '/' (no erratum); 4 sub04/EP12_01f apex
    '/' (erratum 279, reg_img frames); 5 EP01_11f frame 7 missing; 6 EP05_09 folder missing;
    7 no subject; 8 onset 'abc'; 9 onset after offset; 10 empty; 11 EP19_01 ok (int subject 26).
    """
    root = tmp_path / "CASME2_RAW"
    rows = [
        casme2_row(1, "EP02_01f", 46, 49, 53, "4+7+L10", "disgust"),
        casme2_row(1, "EP03_02", 10, "/", 20, 12, "happiness"),
        casme2_row(4, "EP12_01f", 270, "/", 290, "1+L2", "others"),
        casme2_row(2, "EP01_11f", 5, 7, 9, "R1+R2", "surprise"),
        casme2_row(3, "EP05_09", 1, 2, 3, 14, "others"),
        casme2_row(None, "EP09_01", 1, 2, 3, 4, "others"),
        casme2_row(2, "EP06_01", "abc", 2, 3, 4, "others"),
        casme2_row(2, "EP07_01", 30, 25, 20, 4, "others"),
        [None] * 10,
        casme2_row(26, "EP19_01", 100, 101, 104, "4+9+L10+14", "repression"),
    ]
    write_frames(root / "sub01" / "EP02_01f", range(40, 60))
    write_frames(root / "sub01" / "EP03_02", range(10, 21))
    write_frames(root / "sub04" / "EP12_01f", range(270, 291), name=lambda k: f"reg_img{k}.jpg")
    write_frames(root / "sub02" / "EP01_11f", [5, 6, 8, 9])
    write_frames(root / "sub02" / "EP06_01", range(1, 4))
    write_frames(root / "sub02" / "EP07_01", range(20, 31))
    write_frames(root / "sub26" / "EP19_01", range(100, 105))
    coding = write_casme2_xlsx(tmp_path / "CASME2-coding-20190701.xlsx", rows)
    return root, coding


@pytest.fixture
def samm(tmp_path: Path) -> tuple[Path, Path]:
    """A SAMM release with the real 13-row preamble (header on Excel row 14, data from row 15)."""
    root = tmp_path / "SAMM"
    make_samm_frames(root)
    coding = write_samm_xlsx(tmp_path / "SAMM_Micro_FACS_Codes_v2.xlsx", samm_rows())
    return root, coding


@pytest.fixture
def table(tmp_path: Path) -> Path:
    """A user table: c1 frames ok, c2 video ok, c3 video missing, c4 frame 3 gone, c5 no subject."""
    write_frames(tmp_path / "frames" / "s1" / "c1", range(1, 6))
    write_frames(tmp_path / "frames" / "s2" / "c4", [1, 2, 4])
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "c2.mp4").write_bytes(b"not opened")
    data = pd.DataFrame(
        {
            "subject": ["s1", "s1", "s2", "s2", ""],
            "clip": ["c1", "c2", "c3", "c4", "c5"],
            "frames_dir": ["frames/s1/c1", "", "", "frames/s2/c4", "x"],
            "video": ["", "videos/c2.mp4", "videos/missing.mp4", "", ""],
            "onset": [1, 10, 1, 1, 1],
            "apex": [3, "", 2, 2, 2],
            "offset": [5, 20, 3, 4, 3],
            "au_raw": ["AU1+AU2", "4+L7", "12", "4", "4"],
            "emotion": ["happiness", "", "", "", ""],
        }
    )
    path = tmp_path / "my_clips.csv"
    data.to_csv(path, index=False)
    return path
