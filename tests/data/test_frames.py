from pathlib import Path

import pytest

from au_llm.data.frames import (
    describe_missing,
    format_ranges,
    index_frames,
    missing_frames,
    scan_frames,
)
from tests.data.helpers import write_frames


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("img46.jpg", 46),
        ("reg_img46.jpg", 46),
        ("006_05562.jpg", 5562),
        ("006_5562.jpg", 5562),
        ("IMG0007.PNG", 7),
        ("/data/sub01/EP02_01f/img46.jpg", 46),
        ("face.jpg", None),
        ("img46_a.jpg", None),
    ],
)
def test_frame_number_is_the_trailing_integer(tmp_path, name, expected):
    (tmp_path / Path(name).name).write_bytes(b"x")
    frames = index_frames(tmp_path)
    assert frames == ({} if expected is None else {expected: tmp_path / Path(name).name})


def test_index_frames_finds_images_by_number_any_case(tmp_path):
    write_frames(tmp_path, [3, 1, 2], name=lambda k: f"006_{k:05d}.jpg")
    (tmp_path / "006_00004.JPG").write_bytes(b"x")
    (tmp_path / "006_00005.bmp").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("not a frame")
    (tmp_path / "cover.jpg").write_bytes(b"x")
    frames = index_frames(tmp_path)
    assert list(frames) == [1, 2, 3, 4]
    assert frames[1].name == "006_00001.jpg"


def test_mixed_naming_patterns_are_not_mixed(tmp_path):
    write_frames(tmp_path, range(1, 5), name=lambda k: f"img{k}.jpg")
    write_frames(tmp_path, range(1, 5), name=lambda k: f"reg_img{k}.jpg")
    scan = scan_frames(tmp_path)
    assert scan.pattern == "img<N>.jpg"
    assert all(path.name.startswith("img") for path in scan.frames.values())
    assert any("reg_img<N>.jpg ignored" in message for message in scan.messages)


def test_the_most_frequent_pattern_wins(tmp_path):
    write_frames(tmp_path, range(1, 3), name=lambda k: f"img{k}.jpg")
    write_frames(tmp_path, range(1, 6), name=lambda k: f"reg_img{k}.jpg")
    assert {path.name for path in index_frames(tmp_path).values()} == {
        f"reg_img{k}.jpg" for k in range(1, 6)
    }


def test_same_number_with_different_padding_keeps_the_first_name(tmp_path):
    write_frames(tmp_path, [5562], name=lambda k: f"006_{k}.jpg")
    write_frames(tmp_path, [5562], name=lambda k: f"006_{k:05d}.jpg")
    scan = scan_frames(tmp_path)
    assert scan.frames[5562].name == "006_05562.jpg"
    assert len(scan.messages) == 1 and "006_5562.jpg ignored" in scan.messages[0]


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        index_frames(tmp_path / "nope")


def test_missing_frames_are_described_as_ranges():
    present = [k for k in range(46, 111) if k not in (50, 51, 52, 60)]
    missing = missing_frames(present, 46, 110)
    assert missing == [50, 51, 52, 60]
    assert describe_missing(missing, 46, 110) == "frames 50-52, 60 missing of 46-110"
    assert describe_missing([7], 5, 9) == "frame 7 missing of 5-9"
    assert format_ranges(range(0, 40, 2)).endswith("and 14 more ranges")
