"""Building a manifest of one kind: the ``au-llm manifest`` command's entry point.

:data:`MANIFEST_KINDS` names every kind of annotation a manifest is built from, with what it
needs and its builder; ``au-llm manifest`` offers and lists exactly these kinds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from au_llm.data.builders import (
    COMPOSITE_KINDS,
    SMIC_KIND,
    SMIC_REFUSAL,
    build_composite_dataset,
    dataset_format,
)
from au_llm.data.manifest import ManifestError
from au_llm.data.rows import ManifestResult
from au_llm.data.spreadsheets import build_casme2, build_samm
from au_llm.data.table import build_from_table

# The files a builder reads, each with what it is: a dataset's frames root and annotation file,
# or the user's own table.
INPUT_FILES = {
    "root": "the frames folder",
    "coding": "the annotation file",
    "table": "the CSV file",
}
DATASET_FILES = ("root", "coding")
TABLE_FILE = ("table",)


@dataclass(frozen=True)
class ManifestKind:
    """One kind of annotation that ``au-llm manifest`` turns into a manifest.

    Attributes:
        title: What it reads, for ``au-llm manifest --help``.
        needs: The files it is given: :data:`DATASET_FILES` (``--root``, ``--coding``) or
            :data:`TABLE_FILE` (``--table``).
        build: The builder, called with those files as keywords and ``strict``.
    """

    title: str
    needs: tuple[str, ...]
    build: Callable[..., ManifestResult]


def _composite(name: str) -> ManifestKind:
    """The kind of a composite dataset (:func:`~au_llm.data.builders.dataset_format`)."""
    title = f"{dataset_format(name).title} label file and frames root"
    return ManifestKind(title, DATASET_FILES, partial(build_composite_dataset, name))


MANIFEST_KINDS: dict[str, ManifestKind] = {
    "casme2": ManifestKind(
        "CASME II coding spreadsheet and frames root", DATASET_FILES, build_casme2
    ),
    "samm": ManifestKind("SAMM FACS codes spreadsheet and frames root", DATASET_FILES, build_samm),
    **{name: _composite(name) for name in COMPOSITE_KINDS},
    "csv": ManifestKind("your own clip table (CSV)", TABLE_FILE, build_from_table),
}
"""Every manifest kind by name (the ``dataset`` column of its manifests, but ``csv``)."""


def build_manifest(
    kind: str,
    *,
    root: Path | None = None,
    coding: Path | None = None,
    table: Path | None = None,
    strict: bool = False,
) -> ManifestResult:
    """Build a manifest of one kind (the ``au-llm manifest`` command).

    Args:
        kind: A name of :data:`MANIFEST_KINDS` (any case): ``casme2``, ``samm``, ``casme``,
            ``casme3``, ``mmew``, ``4dme`` (need ``root`` and ``coding``) or ``csv`` (needs
            ``table``); ``smic`` is refused (no AU labels).
        root: Frames root folder of a dataset.
        coding: The dataset's annotation spreadsheet.
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
    if name not in MANIFEST_KINDS:
        raise ManifestError(
            f"unknown manifest kind {kind!r}: expected one of {', '.join(MANIFEST_KINDS)}"
        )
    entry = MANIFEST_KINDS[name]
    given = {"root": root, "coding": coding, "table": table}
    if any(given[key] is None for key in entry.needs):
        needs = " and ".join(f"{key} ({INPUT_FILES[key]})" for key in entry.needs)
        raise ManifestError(f"manifest {name} needs {needs}")
    return entry.build(**{key: Path(given[key]) for key in entry.needs}, strict=strict)
