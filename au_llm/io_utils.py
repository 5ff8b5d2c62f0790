"""Atomic file writes: a result file is either complete or absent, never half-written.

Writing the toolkit's own output (cache, run folder, predictions) either succeeds or stops the run:
an ``OSError`` there (a full disk, a read-only folder, no permission) becomes :class:`OutputError`
naming the path, which callers never treat as a problem of one clip.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd

TEMP_SUFFIX = ".tmp"
# First characters that make a spreadsheet run a cell as a formula, and the quote that escapes
# them (OWASP CSV injection); a cell beginning with the quote is escaped too, so the escape is
# undone exactly.
_QUOTE = "'"
_ESCAPED_STARTS = ("=", "+", "-", "@", "\t", "\r", _QUOTE)
STALE_SECONDS = 600.0


class OutputError(RuntimeError):
    """The toolkit cannot write its own output; the message names the path and the cause."""


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}; free space or fix permissions, then rerun")


@contextlib.contextmanager
def output_errors(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised inside into :class:`OutputError` naming ``path``.

    For writes of the toolkit's own output that are not atomic (the frames of a synthetic clip,
    a lock's staging file): a full disk, "File too large" (a file size limit) or a read-only
    folder then stops the command with the path named.
    """
    try:
        yield
    except OSError as exc:
        raise _output_error(Path(path), exc) from exc


def safe_component(text: str) -> str:
    """``text`` as one safe file name, injectively (different texts give different names).

    Letters, digits, ``_``, ``-``, ``+`` and ``.`` are kept; every other character (``/``, ``%``,
    spaces, ...) becomes ``%XX`` of its UTF-8 bytes, and a leading ``.`` is encoded too, so the
    result is never empty, ``.``, ``..``, hidden, nor contains a path separator.
    """
    encoded = re.sub(
        r"[^A-Za-z0-9_.+-]",
        lambda m: "".join(f"%{b:02X}" for b in m.group().encode()),
        text,
    )
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    return encoded or "%"


def child_path(root: str | Path, *names: str) -> Path:
    """``root/names...`` with every name made a :func:`safe_component` (always inside ``root``)."""
    return Path(root).joinpath(*(safe_component(name) for name in names))


def probe_writable(folder: str | Path) -> None:
    """Create ``folder`` and write (then remove) a small file in it, before any work is done.

    Raises:
        OutputError: The folder cannot be created or written (read-only, full, no permission).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=TEMP_SUFFIX)
        try:
            os.write(fd, b"0")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        raise _output_error(folder, exc) from exc


def check_not_input(path: str | Path, inputs: Iterable[str | Path], option: str) -> None:
    """Raise if ``path`` is one of ``inputs``, or lies inside an input folder (symlinks resolved).

    Raises:
        ValueError: Naming ``option``, ``path`` and the input.
    """
    path = Path(path)
    target = path.resolve()
    for given in inputs:
        source = Path(given).resolve()
        if target == source or source in target.parents:
            relation = "is" if target == source else "lies inside"
            raise ValueError(
                f"{option} {path} {relation} the input {given}; outputs never replace or join "
                "an input: choose another path"
            )


def check_output_file(
    path: str | Path,
    *,
    overwrite: bool,
    inputs: Iterable[str | Path] = (),
    option: str = "--out",
) -> Path:
    """Check, before any work, that ``path`` may be written as a file; return it.

    Every sub-command checks its outputs here (files) or in :func:`check_output_folder`.

    Args:
        path: The file to write.
        overwrite: Whether an existing file may be replaced.
        inputs: Files and folders the command reads; ``path`` must be none of them and lie in
            none of them, after symlinks are resolved (so ``--overwrite`` never replaces an
            input).
        option: The option that named ``path``, for messages.

    Raises:
        ValueError: ``path`` is a folder, exists while ``overwrite`` is false, or is an input.
        OutputError: Its folder cannot be written.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; expected a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{option} {path} exists; choose another file or pass --overwrite")
    check_not_input(path, inputs, option)
    probe_writable(path.parent)
    return path


def check_output_folder(
    path: str | Path,
    *,
    overwrite: bool,
    inputs: Iterable[str | Path] = (),
    option: str = "--out",
    result: str | Sequence[str] | None = None,
) -> Path:
    """Check, before any work, that ``path`` may be written as a folder; create and return it.

    Args:
        path: The folder to write into.
        overwrite: Whether a previous result in it may be replaced.
        inputs: Files and folders the command reads (see :func:`check_output_file`).
        option: The option that named ``path``, for messages.
        result: A file (or several) whose presence marks a previous result in the folder
            (``model.json``); it is refused unless ``overwrite``.

    Raises:
        ValueError: ``path`` is a file, holds a previous result while ``overwrite`` is false,
            or is (or lies inside) an input.
        OutputError: The folder cannot be created or written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {path} is a file; expected a folder")
    names = [result] if isinstance(result, str) else list(result or ())
    present = [name for name in names if (path / name).exists()]
    if present and not overwrite:
        raise ValueError(
            f"{option} {path} already holds a result ({present[0]}); choose another folder or "
            "pass --overwrite"
        )
    check_not_input(path, inputs, option)
    probe_writable(path)
    return path


def remove_stale_temporaries(folder: str | Path, older_than: float = STALE_SECONDS) -> int:
    """Remove temporaries of :func:`atomic_open` (``.<name>.<random>.tmp``) left by a kill.

    Only files older than ``older_than`` seconds go, so a write in progress in another process
    sharing the folder (a shard of the same run) is left alone.

    Returns:
        The number of files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    now = time.time()
    removed = 0
    for path in folder.rglob(f".*{TEMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and now - path.stat().st_mtime > older_than:
                path.unlink()
                removed += 1
    return removed


def _umask() -> int:
    """The process umask (mkstemp creates 0600 files; results should get the usual mode)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path`` and rename it onto ``path`` on success.

    Args:
        path: Final file path; its folder is created when missing.
        mode: ``"w"`` for text or ``"wb"`` for bytes.

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and ``path``
        is left untouched.

    Raises:
        OutputError: For any ``OSError`` while writing (disk full, read-only, no permission).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
        os.chmod(tmp, 0o666 & ~_umask())
    except OSError as exc:
        raise _output_error(path, exc) from exc
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _output_error(path, exc) from exc
        raise


def link_exclusive(source: Path, path: Path) -> bool:
    """Give the complete file ``source`` the name ``path`` too, unless ``path`` exists.

    A hard link is atomic on local filesystems and NFS: of several processes linking to one
    ``path``, exactly one succeeds, and a reader never sees ``path`` half-written. Filesystems
    without hard links get an ``O_EXCL`` creation holding a copy (a reader may see it empty).

    Returns:
        True when this call created ``path``; ``source`` is left in place either way.

    Raises:
        OutputError: ``path`` cannot be created (other than because it exists).
    """
    with output_errors(path):
        try:
            os.link(source, path)
            return True
        except FileExistsError:
            # Over NFS a retried link can report EEXIST although it succeeded: the count says.
            return source.stat().st_nlink == 2
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(source.read_bytes())
        return True


def create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` holding ``text`` unless it exists, atomically (:func:`link_exclusive`).

    Returns:
        True when this call created ``path``.

    Raises:
        OutputError: ``path`` cannot be written (other than because it exists).
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with output_errors(tmp):
            tmp.write_text(text)
        return link_exclusive(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that hold text (object or string dtype); numeric columns are never touched."""
    return [
        column
        for column in frame.columns
        if frame[column].dtype == object or isinstance(frame[column].dtype, pd.StringDtype)
    ]


def escape_cell(value: object) -> object:
    """A text cell made safe to open in a spreadsheet (the OWASP CSV-injection rule).

    Text beginning with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run as a
    formula by a spreadsheet; it gets a leading ``'`` (shown as text, never run). Text that
    already begins with ``'`` gets one too, so :func:`unescape_cell` restores every text
    exactly. Other values (numbers, including negative ones) are returned unchanged.
    """
    if isinstance(value, str) and value.startswith(_ESCAPED_STARTS):
        return _QUOTE + value
    return value


def unescape_cell(value: object) -> object:
    """The text :func:`escape_cell` was given (a cell read back from a toolkit CSV)."""
    if (
        isinstance(value, str)
        and value.startswith(_QUOTE)
        and value[1:].startswith(_ESCAPED_STARTS)
    ):
        return value[1:]
    return value


def unescape_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with :func:`unescape_cell` applied to every text column (after ``read_csv``)."""
    columns = _text_columns(frame)
    if not columns:
        return frame
    return frame.assign(**{column: frame[column].map(unescape_cell) for column in columns})


def csv_text(frame: pd.DataFrame) -> str:
    """A DataFrame as CSV text (no index), text cells escaped (see :func:`atomic_write_csv`)."""
    columns = _text_columns(frame)
    if columns:
        frame = frame.assign(**{column: frame[column].map(escape_cell) for column in columns})
    return frame.to_csv(index=False)


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV (no index) to ``path`` atomically, text cells escaped.

    Every CSV the toolkit writes goes through here (or :func:`csv_text`), so no cell of it runs
    as a spreadsheet formula (see :func:`escape_cell`); the toolkit's readers undo the escape
    (:func:`unescape_frame`).
    """
    atomic_write_text(path, csv_text(frame))


def read_json(path: str | Path) -> Any:
    """Read a JSON file the toolkit wrote (a model, a run record).

    Raises:
        ValueError: The file is unreadable, truncated or not JSON; the message names it.
    """
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        reason = f"not a readable JSON file (damaged or truncated?): {exc}"
        raise ValueError(f"{path}: {reason}") from None
