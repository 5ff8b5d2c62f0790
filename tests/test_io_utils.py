import errno
import os
import subprocess
import sys
import time

import pandas as pd
import pytest

from au_llm.io_utils import (
    OutputError,
    atomic_open,
    atomic_write_csv,
    atomic_write_text,
    check_output_file,
    check_output_folder,
    probe_writable,
    remove_stale_temporaries,
    safe_component,
    unescape_frame,
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


_FORMULAS = ["=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "-x", "'quoted", "plain", "1"]


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped_and_read_back(tmp_path):
    frame = pd.DataFrame(
        {
            "clip": _FORMULAS,
            "prob": [-0.5, 0.25, -1.0, 0.0, 1.0, -2.5, 3.0, 0.5, -0.125],
            "frame": pd.array([-5, 1, 2, None, 4, 5, 6, 7, 8], dtype="Int64"),
        }
    )
    path = tmp_path / "t.csv"
    atomic_write_csv(path, frame)
    raw = pd.read_csv(path, dtype={"clip": str}, keep_default_na=False)
    for written in raw["clip"]:
        assert not written.startswith(("=", "+", "-", "@", "\t", "\r")), written
    assert raw["clip"].tolist()[:3] == ["'=1+1", "'+cmd|' /C calc'!A0", "'-2+3"]
    assert raw["clip"].tolist()[6:] == ["''quoted", "plain", "1"]
    assert path.read_text().splitlines()[1].endswith(",-0.5,-5")  # numbers stay numbers
    back = unescape_frame(pd.read_csv(path, dtype={"clip": str}))
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)
    atomic_write_csv(path, pd.DataFrame({"clip": ["\rx"]}))
    assert path.read_bytes() == b"clip\n'\rx\n"


def test_an_output_file_is_checked_against_folders_existing_files_and_inputs(tmp_path):
    source = tmp_path / "in" / "manifest.csv"
    source.parent.mkdir()
    source.write_text("keep")
    frames = tmp_path / "frames"
    frames.mkdir()
    link = tmp_path / "link.csv"
    link.symlink_to(source)
    with pytest.raises(ValueError, match=rf"--out {tmp_path} is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(ValueError, match=r"manifest\.csv exists; .*--overwrite"):
        check_output_file(source, overwrite=False)
    for out in (source, link, tmp_path / "in" / "." / "manifest.csv"):
        with pytest.raises(ValueError, match=rf"--out {out} is the input {source}"):
            check_output_file(out, overwrite=True, inputs=[source])
    with pytest.raises(ValueError, match="lies inside the input"):
        check_output_file(frames / "p.csv", overwrite=True, inputs=[source, frames])
    assert check_output_file(tmp_path / "p.csv", overwrite=False, inputs=[source, frames])
    assert source.read_text() == "keep"


def test_an_output_folder_keeps_a_previous_result_unless_overwrite(tmp_path):
    model = tmp_path / "model"
    assert check_output_folder(model, overwrite=False, result="model.json").is_dir()
    (model / "model.json").write_text("{}")
    with pytest.raises(ValueError, match=rf"--out {model} already holds a result \(model\.json\)"):
        check_output_folder(model, overwrite=False, result="model.json")
    assert check_output_folder(model, overwrite=True, result="model.json") == model
    with pytest.raises(ValueError, match="is a file; expected a folder"):
        check_output_folder(model / "model.json", overwrite=True)
    with pytest.raises(ValueError, match="is the input"):
        check_output_folder(model, overwrite=True, inputs=[model])


FILE_SIZE_LIMIT = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, 2048))  # Python ignores SIGXFSZ: EFBIG
from au_llm.recipes.cli import main
from au_llm.io_utils import OutputError, atomic_write_text, create_exclusive
out = Path(sys.argv[1])
for write in (atomic_write_text, create_exclusive):
    try:
        write(out / write.__name__, "x" * 4096)
    except OutputError as exc:
        print(exc)
sys.exit(main(["synth", "--style", "casme2", "--out", str(out / "synth"), "--subjects", "1"]))
"""


def test_a_file_size_limit_stops_each_write_naming_the_path(tmp_path):
    """A file size limit ("[Errno 27] File too large") names the file, like a full disk."""
    done = subprocess.run(
        [sys.executable, "-c", FILE_SIZE_LIMIT, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 2, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"cannot write {tmp_path / 'atomic_write_text'}: File too large" + (
        "; free space or fix permissions, then rerun"
    )
    assert lines[1].startswith(f"cannot write {tmp_path}/.create_exclusive.")
    assert "Traceback" not in done.stderr and "Errno" not in done.stderr
    assert f"au-llm synth: error: cannot write {tmp_path / 'synth'}" in done.stderr
    assert ".jpg: File too large" in done.stderr
    assert not (tmp_path / "atomic_write_text").exists()
    assert not (tmp_path / "create_exclusive").exists()
