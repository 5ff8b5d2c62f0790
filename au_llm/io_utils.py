"""Atomic file writes: a result file is either complete or absent, never half-written.

Writing the toolkit's own output (cache, run folder, predictions) either succeeds or stops the run:
an ``OSError`` there (a full disk, a read-only folder, no permission) becomes :class:`OutputError`
naming the path, which callers never treat as a problem of one clip.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pandas as pd

TEMP_SUFFIX = ".tmp"
STALE_SECONDS = 600.0


class OutputError(RuntimeError):
    """The toolkit cannot write its own output; the message names the path and the cause."""


def _output_error(path: Path, exc: OSError) -> OutputError:
    reason = exc.strerror or str(exc)
    return OutputError(f"cannot write {path}: {reason}; free space or fix permissions, then rerun")


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def atomic_write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame as CSV (no index) to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        frame.to_csv(handle, index=False)


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
