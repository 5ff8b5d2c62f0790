"""What failed while predicting (``failures.csv``) and how each input went (the summary)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from au_llm.data.fields import ClipReadError
from au_llm.io_utils import OutputError

log = logging.getLogger(__name__)

FAILURE_COLUMNS = ["input", "clip", "face_id", "frame_start", "frame_end", "time_start", "time_end"]
FAILURE_COLUMNS += ["reason"]
# ``fps``: a recording's mean frame rate; ``variable_fps``: whether its frames' own times depart
# from that constant rate by more than half a frame (times then come from each frame's timestamp).
SUMMARY_COLUMNS = ["input", "frames", "windows", "failed_windows", "fps", "variable_fps"]
SUMMARY_COLUMNS += ["reason"]


@dataclass
class FailureLog:
    """Failed inputs, clips and windows, and one summary row per input.

    Attributes:
        strict: Raise on the first failure instead of recording it.
        failures: One row per failed input, clip or window (``FAILURE_COLUMNS``).
        summary: One row per input (``SUMMARY_COLUMNS``).
    """

    strict: bool = False
    failures: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)

    def fail(
        self, source: Path | str, reason: str, clip: str = "", *, warn: bool = True, **span: Any
    ) -> None:
        """Record a failure (``span``: the window's FAILURE_COLUMNS); raise under ``strict``.

        Raises:
            ValueError: Under ``strict``, naming the source, the clip and the reason.
        """
        if self.strict:
            raise ValueError(f"{source}: {clip + ': ' if clip else ''}{reason}")
        if warn:
            log.warning("%s: %s%s", source, clip + ": " if clip else "", reason)
        self.failures.append({"input": str(source), "clip": clip, "reason": reason, **span})

    def attempt(self, source: Path, work: Callable[[], pd.DataFrame]) -> pd.DataFrame:
        """The rows ``work`` gives for ``source``; a failure is recorded and gives none.

        The input's summary row then gives the failure as its reason, in place of any row
        ``work`` recorded before it failed (``9 windows, 0 failed`` for a manifest whose scores
        were all refused).

        Raises:
            OutputError: The toolkit's own output cannot be written (stops the run).
        """
        done = len(self.summary)
        try:
            return work()
        except OutputError:
            raise
        except (ClipReadError, ValueError, RuntimeError) as exc:
            self.fail(source, str(exc))
            self.summary[done:] = [{"input": str(source), "reason": str(exc)}]
            return pd.DataFrame()

    def failure_table(self, source: Path | None = None) -> pd.DataFrame:
        """The failures (of ``source`` only when given) as a table of ``FAILURE_COLUMNS``."""
        table = pd.DataFrame(self.failures, columns=FAILURE_COLUMNS)
        return table if source is None else table[table["input"] == str(source)]
