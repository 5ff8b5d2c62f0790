import errno
import os
import time

import pytest

from au_llm.io_utils import (
    OutputError,
    atomic_open,
    atomic_write_text,
    probe_writable,
    remove_stale_temporaries,
    safe_component,
)


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


def test_safe_component_is_one_injective_name_inside_its_folder(tmp_path):
    texts = ["../../ESCAPED", "grp/01", "..", ".", "", "a%2Fb", "a/b", "x-y/z", "x/y-z", "sub01"]
    names = [safe_component(text) for text in texts]
    assert len(set(names)) == len(texts)
    for name in names:
        assert "/" not in name and "\\" not in name and not name.startswith(".") and name
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    assert safe_component("sub01") == "sub01"
    assert safe_component("casme2+samm_to_x") == "casme2+samm_to_x"


def test_write_errors_become_output_errors_naming_the_path(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("au_llm.io_utils.os.fsync", full)
    with pytest.raises(OutputError, match=r"cannot write .*result\.txt: No space left on device"):
        atomic_write_text(tmp_path / "result.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_probe_writable_fails_on_a_read_only_folder(tmp_path, monkeypatch):
    probe_writable(tmp_path / "ok")
    assert list((tmp_path / "ok").iterdir()) == []

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("au_llm.io_utils.tempfile.mkstemp", read_only)
    with pytest.raises(OutputError, match=r"cannot write .*ro: Read-only file system"):
        probe_writable(tmp_path / "ro")


def test_only_stale_temporaries_are_removed(tmp_path):
    stale = tmp_path / "folds" / ".x.csv.abc123.tmp"
    fresh = tmp_path / ".y.csv.def456.tmp"
    result = tmp_path / "result.tmp"
    for path in (stale, fresh, result):
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(result, (old, old))
    assert remove_stale_temporaries(tmp_path) == 1
    assert not stale.exists() and fresh.exists() and result.exists()
