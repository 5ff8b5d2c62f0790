"""Building a manifest of one kind: the ``au-llm manifest`` command's entry point."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from au_llm.data.builders import COMPOSITE_KINDS, SMIC_REFUSAL, build_composite_dataset
from au_llm.data.builders.long import build_long_dataset
from au_llm.data.builders.long_formats import LONG_KINDS
from au_llm.data.manifest import ManifestError
from au_llm.data.rows import ManifestResult
from au_llm.data.spreadsheets import build_casme2, build_samm
from au_llm.data.table import build_from_table

MANIFEST_KINDS = ("casme2", "samm", *COMPOSITE_KINDS, *LONG_KINDS, "csv")


def _paths(coding: Path | Sequence[Path] | None) -> list[Path]:
    """The annotation file(s) given as one path, several or none."""
    if coding is None:
        return []
    if isinstance(coding, (str, Path)):
        return [Path(coding)]
    return [Path(path) for path in coding]


def build_manifest(
    kind: str,
    *,
    root: Path | None = None,
    coding: Path | Sequence[Path] | None = None,
    table: Path | None = None,
    strict: bool = False,
) -> ManifestResult:
    """Build a manifest of one kind (the ``au-llm manifest`` command).

    Args:
        kind: ``casme2``, ``samm``, ``casme``, ``casme3``, ``mmew``, ``4dme``, and the long-video
            datasets ``samm-lv``, ``casme-sq-lv``, ``casme3-lv`` (need ``root`` and ``coding``),
            or ``csv`` (needs ``table``); ``smic`` is refused (no AU labels).
        root: Frames root folder of a dataset.
        coding: The dataset's annotation spreadsheet (a sequence of them where a dataset has
            several: CAS(ME)^3's micro- and macro-expression files).
        table: The user's CSV table.
        strict: Raise on the first skipped clip or warning.

    Returns:
        The manifest with its report.

    Raises:
        ManifestError: Unknown kind, missing arguments, or as raised by the builder.
    """
    name = kind.strip().lower()
    if name == "smic":
        raise ManifestError(SMIC_REFUSAL)
    codings = _paths(coding)
    if name in LONG_KINDS:
        if root is None or not codings:
            raise ManifestError(
                f"manifest {name} needs root (the frames folder) and coding (the annotation file)"
            )
        return build_long_dataset(name, Path(root), codings, strict=strict)
    if len(codings) > 1:
        raise ManifestError(
            f"manifest {name} reads one annotation file, got {len(codings)}: "
            f"{', '.join(map(str, codings))}"
        )
    coding = codings[0] if codings else None
    if name in ("casme2", "samm", *COMPOSITE_KINDS):
        if root is None or coding is None:
            raise ManifestError(
                f"manifest {name} needs root (the frames folder) and coding (the annotation file)"
            )
        if name in COMPOSITE_KINDS:
            return build_composite_dataset(name, Path(root), Path(coding), strict=strict)
        builder = build_casme2 if name == "casme2" else build_samm
        return builder(Path(root), Path(coding), strict=strict)
    if name == "csv":
        if table is None:
            raise ManifestError("manifest csv needs table (the CSV file)")
        return build_from_table(Path(table), strict=strict)
    raise ManifestError(
        f"unknown manifest kind {kind!r}: expected one of {', '.join(MANIFEST_KINDS)}"
    )
