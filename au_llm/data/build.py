"""Building a manifest of one kind: the ``au-llm manifest`` command's entry point.

:data:`MANIFEST_KINDS` names every kind of annotation a manifest is built from, with what it
needs and its builder: each dataset of :data:`~au_llm.data.builders.formats.DATASET_FORMATS`
(read by :func:`~au_llm.data.builders.dataset.build_dataset`) and ``csv`` (the user's own clip
table). ``au-llm manifest`` offers and lists exactly these kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from au_llm.data.builders.dataset import build_dataset
from au_llm.data.builders.formats import DATASET_FORMATS, SMIC_KIND, SMIC_REFUSAL, DatasetFormat
from au_llm.data.manifest import ManifestError
from au_llm.data.report import ManifestResult
from au_llm.data.table import build_from_table

# The files a builder reads, each with what it is: a dataset's frames root and annotation
# file(s), or the user's own table.
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
        needs: The files it is given: :data:`DATASET_FILES` (``--root``, ``--coding``: a list
            of one or more annotation files) or :data:`TABLE_FILE` (``--table``).
        build: The builder, called with those files in the order of ``needs`` and ``strict``
            as a keyword.
    """

    title: str
    needs: tuple[str, ...]
    build: Callable[..., ManifestResult]


def _dataset_kind(spec: DatasetFormat) -> ManifestKind:
    """The kind of one dataset of :data:`~au_llm.data.builders.formats.DATASET_FORMATS`."""
    files = len(spec.coding_names)
    codings = "label file" if files == 1 else f"label files (up to {files})"
    return ManifestKind(
        f"{spec.title} {codings} and frames root", DATASET_FILES, partial(build_dataset, spec)
    )


MANIFEST_KINDS: dict[str, ManifestKind] = {
    **{name: _dataset_kind(spec) for name, spec in DATASET_FORMATS.items()},
    "csv": ManifestKind("your own clip table (CSV)", TABLE_FILE, build_from_table),
}
"""Every manifest kind by name (the ``dataset`` column of its manifests, but ``csv``)."""


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
        kind: A name of :data:`MANIFEST_KINDS` (any case): a dataset of
            :data:`~au_llm.data.builders.formats.DATASET_FORMATS` (``casme2``, ``samm``,
            ``casme``, ``casme3``, ``mmew``, ``4dme``, and the long-video datasets ``samm-lv``,
            ``casme-sq-lv``, ``casme3-lv``; needs ``root`` and ``coding``), or ``csv`` (needs
            ``table``); ``smic`` is refused (no AU labels).
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
    if name not in MANIFEST_KINDS:
        raise ManifestError(
            f"unknown manifest kind {kind!r}: expected one of {', '.join(MANIFEST_KINDS)}"
        )
    entry = MANIFEST_KINDS[name]
    given = {
        "root": None if root is None else Path(root),
        "coding": _paths(coding) or None,
        "table": None if table is None else Path(table),
    }
    if any(given[key] is None for key in entry.needs):
        needs = " and ".join(f"{key} ({INPUT_FILES[key]})" for key in entry.needs)
        raise ManifestError(f"manifest {name} needs {needs}")
    return entry.build(*(given[key] for key in entry.needs), strict=strict)
