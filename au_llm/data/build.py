"""Building a manifest of one kind: the ``au-llm manifest`` command's entry point.

The kinds are the datasets of :data:`~au_llm.data.builders.formats.DATASET_FORMATS` and ``csv``
(the user's own clip table); the CLI's choices read :data:`MANIFEST_KINDS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from au_llm.data.builders.dataset import build_dataset
from au_llm.data.builders.formats import DATASET_FORMATS, SMIC_KIND, SMIC_REFUSAL
from au_llm.data.manifest import ManifestError
from au_llm.data.report import ManifestResult
from au_llm.data.table import build_from_table

CSV_KIND = "csv"
MANIFEST_KINDS = (*DATASET_FORMATS, CSV_KIND)


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
        kind: A dataset of :data:`~au_llm.data.builders.formats.DATASET_FORMATS` (``casme2``,
            ``samm``, ``casme``, ``casme3``, ``mmew``, ``4dme``, and the long-video datasets
            ``samm-lv``, ``casme-sq-lv``, ``casme3-lv``; needs ``root`` and ``coding``), or
            ``csv`` (needs ``table``); ``smic`` is refused (no AU labels).
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
    if name == SMIC_KIND:
        raise ManifestError(SMIC_REFUSAL)
    if name == CSV_KIND:
        if table is None:
            raise ManifestError("manifest csv needs table (the CSV file)")
        return build_from_table(Path(table), strict=strict)
    if name not in DATASET_FORMATS:
        raise ManifestError(
            f"unknown manifest kind {kind!r}: expected one of {', '.join(MANIFEST_KINDS)}"
        )
    codings = _paths(coding)
    if root is None or not codings:
        raise ManifestError(
            f"manifest {name} needs root (the frames folder) and coding (the annotation file)"
        )
    return build_dataset(DATASET_FORMATS[name], Path(root), codings, strict=strict)
