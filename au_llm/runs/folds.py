"""A run's finished folds as read back: whole, damaged (set aside), or outside the plan.

A fold is finished when its predictions CSV exists (it is written atomically, after the fold's
JSON record). It counts only when both files read back whole: the record is a JSON object naming
its seed and fold, and the CSV holds exactly the bytes the fold wrote (their sha256 is in the
record; records written before it was kept are checked by the CSV's row count and its last
line instead). A fold that does not read back whole (a truncated copy, a full disk, a hand edit)
is set aside: both files are renamed ``<file>.<time>.damaged`` (never deleted), so the next run
computes the fold again and the report leaves it out, saying so. Fold files of folds that are
not in the run's plan (``run.json``, edited by hand) are never pooled; the report names them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from au_llm.io_utils import read_json
from au_llm.runs.layout import RunLayout, set_aside_files, set_aside_name

log = logging.getLogger(__name__)

Item = tuple[int, str]
"""A work item: ``(seed, fold name)``."""

CSV_SHA256 = "predictions_sha256"
"""The key of a fold record that holds the sha256 of the fold's predictions CSV."""


def text_sha256(text: str) -> str:
    """The sha256 of ``text`` as the UTF-8 bytes a file holding it has."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fold_problem(layout: RunLayout, seed: int, fold: str) -> str | None:
    """Why a finished fold's files do not read back whole, or None when they do.

    Args:
        layout: The run folder.
        seed: The fold's seed.
        fold: The fold's name.

    Returns:
        A sentence naming the file and what is wrong with it; None when the fold is whole (or
        not finished: no predictions CSV).
    """
    marker, path = layout.fold_predictions(seed, fold), layout.fold_record(seed, fold)
    if not marker.exists():
        return None
    try:
        record = read_json(path)
    except ValueError as exc:
        return str(exc)
    if not isinstance(record, dict) or {"seed", "fold"} - set(record):
        return f"{path}: not a fold record (expected a JSON object with 'seed' and 'fold')"
    try:
        data = marker.read_bytes()
    except OSError as exc:
        return f"{marker}: cannot be read ({exc.strerror or exc})"
    if CSV_SHA256 in record:
        if hashlib.sha256(data).hexdigest() != record[CSV_SHA256]:
            return (
                f"{marker}: not the file the fold wrote (its sha256 differs from the one in "
                f"{path.name}: truncated, damaged or edited)"
            )
        return None
    if not data.endswith(b"\n"):
        return f"{marker}: ends inside a row (truncated?); the fold wrote whole lines"
    try:
        rows = len(pd.read_csv(marker))
    except (ValueError, pd.errors.ParserError) as exc:
        return f"{marker}: not a readable CSV ({str(exc).splitlines()[0]})"
    if rows != record.get("n_test"):
        tested = record.get("n_test")
        return f"{marker}: {rows} rows, but the fold tested {tested} clips (truncated?)"
    return None


def set_aside(paths: list[Path]) -> list[Path]:
    """Rename each existing file to ``<name>.<time>.damaged`` beside it; returns the new paths."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    moved = []
    for path in paths:
        target = set_aside_name(path, stamp)
        with contextlib.suppress(FileNotFoundError):
            path.rename(target)
            moved.append(target)
    return moved


@dataclass
class FoldScan:
    """The finished folds of a run's plan, checked.

    Attributes:
        whole: The plan's finished folds that read back whole, in plan order.
        set_aside: ``(item, problem, renamed files)`` of the folds set aside by this scan.
        damaged_before: Predictions CSVs set aside earlier whose fold is not finished again yet.
        outside_plan: Fold predictions CSVs of folds that are not in the plan (never pooled).
    """

    whole: list[Item] = field(default_factory=list)
    set_aside: list[tuple[Item, str, list[Path]]] = field(default_factory=list)
    damaged_before: list[Path] = field(default_factory=list)
    outside_plan: list[Path] = field(default_factory=list)

    def notes(self, root: Path) -> list[str]:
        """One sentence per fold set aside, file set aside earlier and file outside the plan."""
        notes = [
            f"fold seed{seed}/{fold} was set aside and is left out until a rerun computes it "
            f"again: {problem} (renamed to {', '.join(str(p.relative_to(root)) for p in moved)})"
            for (seed, fold), problem, moved in self.set_aside
        ]
        notes += [
            f"{path.relative_to(root)}: a damaged fold file set aside earlier; its fold is left "
            "out until a rerun computes it again"
            for path in self.damaged_before
        ]
        if self.outside_plan:
            files = ", ".join(str(path.relative_to(root)) for path in self.outside_plan)
            notes.append(
                f"fold files outside the run's plan ({root.name}/run.json) were left out: {files}"
            )
        return notes


def scan_folds(layout: RunLayout, plan: list[Item]) -> FoldScan:
    """Check every finished fold of ``plan``; set aside those that do not read back whole.

    Each problem is logged as a warning naming the file. Safe while other processes write
    folds: a fold's CSV appears, whole, only after its record.
    """
    scan = FoldScan()
    planned = set()
    for seed, fold in plan:
        marker = layout.fold_predictions(seed, fold)
        planned.add(marker)
        problem = fold_problem(layout, seed, fold)
        if problem is not None:
            moved = set_aside([marker, layout.fold_record(seed, fold)])
            log.warning("fold seed%d/%s set aside, to be computed again: %s", seed, fold, problem)
            scan.set_aside.append(((seed, fold), problem, moved))
        elif marker.exists():
            scan.whole.append((seed, fold))
        else:
            scan.damaged_before += set_aside_files(marker)
    scan.outside_plan = [p for p in layout.finished_predictions() if p not in planned]
    for path in scan.outside_plan:
        log.warning("%s: not a fold of the run's plan (%s); left out", path, layout.record)
    return scan
