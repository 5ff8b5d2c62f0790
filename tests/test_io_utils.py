import os

import pytest

from au_llm.io_utils import atomic_open, atomic_write_text


def test_atomic_write_replaces_whole_file_with_usual_permissions(tmp_path):
    target = tmp_path / "sub" / "result.txt"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["result.txt"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "result.txt"
    atomic_write_text(target, "complete")
    with pytest.raises(RuntimeError), atomic_open(target) as handle:
        handle.write("half")
        raise RuntimeError("killed")
    assert target.read_text() == "complete"
    assert [p.name for p in tmp_path.iterdir()] == ["result.txt"]
