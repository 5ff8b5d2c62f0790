"""A manifest build's result and its report: clips written, clips skipped, warnings, errata.

Every report names the annotation file, the row as Excel shows it and the clip. A clip whose
frames or timing are unusable is reported in :attr:`ManifestResult.skipped` and left out; a
questionable reading (AU alternatives, an estimated apex, ...) is reported in
:attr:`ManifestResult.warnings` and in the clip's ``notes``. With ``strict=True`` any of these
raises :class:`~au_llm.data.manifest.ManifestError` instead.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from au_llm.data.au_codes import parse_aus
from au_llm.data.au_sets import DATASET_AU_SETS, unknown_aus
from au_llm.data.errata_ledger import ErrataLedger
from au_llm.data.manifest import ManifestError, similar_subjects, typed_frame

logger = logging.getLogger(__name__)


@dataclass
class SkippedClip:
    """A clip left out of a manifest.

    Attributes:
        clip: Clip name ("" when the row had none).
        subject: Subject id ("" when the row had none).
        reason: What is wrong, e.g. ``"frames 50-52 missing of 46-110 in /data/sub01/EP02_01f"``.
        row: Row of the annotation file as Excel shows it (header rows included), or None.
        kind: Reason group for the summary (``frames missing``, ``bad onset/offset``, ...).
    """

    clip: str
    subject: str
    reason: str
    row: int | None
    kind: str = "other"

    def describe(self) -> str:
        """One line: ``subject/clip (row N): reason``."""
        where = f"{self.subject or '?'}/{self.clip or '?'}"
        if self.row is not None:
            where += f" (row {self.row})"
        return f"{where}: {self.reason}"


@dataclass
class ManifestResult:
    """A built manifest and what happened while building it.

    Attributes:
        frame: The manifest, columns :data:`MANIFEST_COLUMNS`, one row per usable clip.
        skipped: Clips left out, with reasons.
        warnings: Questionable readings, each naming the row and the clip.
        source: The annotation file or table the manifest was built from.
        errata_applied: Errata applied (each is in its clip's ``notes``).
        errata_skipped: Errata of the dataset not applied.
        errata_lines: Why they were not: a line per erratum naming a clip, a line per row for
            errata that name none (with what that row of the file holds).
        outside_set: (dataset, AU) -> clips coding that AU although it lies outside the
            dataset's AU set (:mod:`au_llm.data.au_sets`); with ``data.uncoded_aus: unknown``
            those positives become unknown labels. Each such clip has a note.
    """

    frame: pd.DataFrame
    skipped: list[SkippedClip] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    source: str = ""
    errata_applied: int = 0
    errata_skipped: int = 0
    errata_lines: list[str] = field(default_factory=list)
    outside_set: dict[tuple[str, int], int] = field(default_factory=dict)

    def summary(self) -> str:
        """Describe the build: clips written, clips skipped grouped by reason, warnings."""
        written = len(self.frame)
        subjects = self.frame["subject"].nunique() if written else 0
        head = (
            f"{written} clips written ({subjects} subjects), {len(self.skipped)} skipped, "
            f"{len(self.warnings)} warnings"
        )
        lines = [f"{self.source}: {head}" if self.source else head]
        estimated = int(self.frame["apex_estimated"].astype(bool).sum()) if written else 0
        if estimated:
            lines.append(f"apex estimated as the middle frame for {estimated} clips")
        if self.errata_applied or self.errata_skipped:
            lines.append(f"errata: {self.errata_applied} applied, {self.errata_skipped} skipped")
            lines.extend(f"  {line}" for line in self.errata_lines)
        for dataset in sorted({name for name, _ in self.outside_set}):
            counts = {
                au: n for (name, au), n in sorted(self.outside_set.items()) if name == dataset
            }
            listed = ", ".join(f"AU{au} in {n}" for au, n in counts.items())
            coded = ", ".join(str(au) for au in DATASET_AU_SETS[dataset])
            lines.append(
                f"AUs coded outside {dataset}'s AU set ({coded}): {listed} clips; with "
                "data.uncoded_aus=unknown these positives are unknown labels (see the clips' notes)"
            )
        if self.skipped:
            groups: dict[str, list[SkippedClip]] = defaultdict(list)
            for item in self.skipped:
                groups[item.kind].append(item)
            lines.append("skipped clips, by reason:")
            for kind in sorted(groups):
                lines.append(f"  {kind} ({len(groups[kind])}):")
                lines.extend(f"    {item.describe()}" for item in groups[kind])
        if self.warnings:
            lines.append("warnings:")
            lines.extend(f"  {warning}" for warning in self.warnings)
        return "\n".join(lines)


class BuildReport:
    """Collects skipped clips and warnings; in strict mode the first problem raises.

    Args:
        source: The annotation file, or the files of a dataset annotated in several (the
            problems of each are listed in their order).
        strict: Raise on the first problem.
    """

    def __init__(self, source: Path | Sequence[Path], *, strict: bool) -> None:
        self.sources = [Path(source)] if isinstance(source, (str, Path)) else list(source)
        self.source = " + ".join(str(path) for path in self.sources)
        self.strict = strict
        self._skipped: dict[Path, list[SkippedClip]] = {path: [] for path in self.sources}
        self._warnings: dict[Path, list[str]] = {path: [] for path in self.sources}

    @property
    def skipped(self) -> list[SkippedClip]:
        """The clips left out so far, file by file."""
        return [item for path in self.sources for item in self._skipped[path]]

    @property
    def warnings(self) -> list[str]:
        """The warnings so far, file by file."""
        return [text for path in self.sources for text in self._warnings[path]]

    def _strict_error(
        self, subject: str, clip: str, row: int | None, message: str, source: Path
    ) -> None:
        if self.strict:
            where = f"row {row}, " if row is not None else ""
            raise ManifestError(
                f"{source}, {where}clip {subject or '?'}/{clip or '?'}: {message} "
                "(strict mode; without it the problem is reported and the build goes on)"
            )

    def skip(
        self,
        kind: str,
        reason: str,
        subject: str,
        clip: str,
        row: int | None,
        source: Path | None = None,
    ) -> None:
        """Leave a clip out for ``reason`` (group ``kind``); raises when strict.

        ``source``: the clip's annotation file (None: the first).
        """
        path = self.sources[0] if source is None else source
        self._strict_error(subject, clip, row, f"{reason}; the clip would be left out", path)
        item = SkippedClip(clip=clip, subject=subject, reason=reason, row=row, kind=kind)
        logger.warning("%s: %s; clip left out", path, item.describe())
        self._skipped[path].append(item)

    def warn(
        self, message: str, subject: str, clip: str, row: int | None, source: Path | None = None
    ) -> None:
        """Record a warning about a written clip; raises when strict (``source`` as for skip)."""
        path = self.sources[0] if source is None else source
        self._strict_error(subject, clip, row, message, path)
        where = f"{subject or '?'}/{clip or '?'}" + (f" (row {row})" if row is not None else "")
        text = f"{where}: {message}"
        logger.warning("%s: %s", path, text)
        self._warnings[path].append(text)

    def result(
        self,
        records: list[dict[str, object]],
        ledger: ErrataLedger | None = None,
        *,
        extra_columns: tuple[str, ...] = (),
    ) -> ManifestResult:
        """The manifest of ``records`` with the skipped clips and warnings collected.

        Subject ids that differ only by case, padding or spaces are warned about (raises when
        strict). Coded AUs outside a clip's dataset AU set get a note and are counted.

        Args:
            records: One dict per clip, keyed by manifest column.
            ledger: The errata matched to the clips: the result counts those applied and
                skipped (None: no errata).
            extra_columns: Optional text columns the records also have (e.g.
                :data:`~au_llm.data.manifest.RECORDING_COLUMNS`), kept after the manifest's.
        """
        outside = _note_outside_set(records)
        frame = typed_frame(records, extra_columns)
        warnings = self.warnings
        first = self.sources[0]
        for message in similar_subjects(frame):
            if self.strict:
                raise ManifestError(f"{first}: {message} (strict mode)")
            logger.warning("%s: %s", first, message)
            warnings.append(message)
        result = ManifestResult(frame, self.skipped, warnings, self.source)
        result.outside_set = outside
        if ledger is not None:
            applied, skipped, lines = ledger.report()
            result.errata_applied, result.errata_skipped, result.errata_lines = (
                applied,
                skipped,
                lines,
            )
        return result


def _note_outside_set(records: list[dict[str, object]]) -> dict[tuple[str, int], int]:
    """Note each coded AU outside its clip's dataset AU set; (dataset, AU) -> clips."""
    counts: Counter[tuple[str, int]] = Counter()
    for record in records:
        dataset = str(record["dataset"])
        outside = unknown_aus(dataset, parse_aus(record["aus"]))
        if not outside:
            continue
        counts.update((dataset, au) for au in outside)
        listed = ", ".join(f"AU{au}" for au in outside)
        note = (
            f"{listed} coded but outside {dataset}'s AU set; with data.uncoded_aus=unknown "
            "the label is unknown, not positive"
        )
        record["notes"] = "; ".join(part for part in (str(record["notes"]), note) if part)
    return dict(counts)
