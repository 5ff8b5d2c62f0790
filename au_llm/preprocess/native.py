"""What native libraries (mediapipe, TFLite, decord and FFmpeg) write straight to stderr.

These libraries print to file descriptor 2 from C++, past Python's ``sys.stderr``: mediapipe's
start-up chatter on every new graph, and decord's reason for a video it cannot open or decode (its
Python exception only says "Error reading <file>..."). :func:`native_stderr` captures such output
around one call, so that chatter can be dropped (:func:`quiet_native_stderr`) and a reason can be
put into the error message whole (:func:`with_native_reason`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator

# Native start-up lines of mediapipe, TFLite and LiteRT: informational, never actionable.
NATIVE_CHATTER = re.compile(r"^(INFO: |[IW]\d{4} |WARNING: Logging before InitGoogle\(\))")


@contextlib.contextmanager
def native_stderr() -> Iterator[list[str]]:
    """Capture what is written to file descriptor 2 inside the block.

    Yields:
        A list that holds the captured lines (without line ends; blank lines left out) once the
        block has ended, normally or by an exception.
    """
    lines: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield lines
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            lines.extend(line for line in text.splitlines() if line.strip())


def pass_on(lines: list[str], drop: re.Pattern[str] | None = None) -> None:
    """Write captured ``lines`` back to stderr, leaving out those that match ``drop``."""
    kept = [line for line in lines if drop is None or not drop.match(line)]
    if kept:
        sys.stderr.write("\n".join(kept) + "\n")
        sys.stderr.flush()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop native start-up chatter (:data:`NATIVE_CHATTER`) written inside the block.

    Every other captured line (native errors, Python warnings) is written back to stderr.
    """
    lines: list[str] = []
    try:
        with native_stderr() as lines:
            yield
    finally:
        pass_on(lines, NATIVE_CHATTER)


def with_native_reason(exc: BaseException, lines: list[str]) -> str:
    """``exc``'s message followed by the native lines captured when it was raised."""
    return f"{exc}" + (f" ({'; '.join(line.strip() for line in lines)})" if lines else "")
