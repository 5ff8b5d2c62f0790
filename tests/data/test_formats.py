"""Every dataset format is whole: well formed, offered by the CLI, written by a synthetic style and
read back by the one builder. A format added to DATASET_FORMATS and nowhere else fails here."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from au_llm.data.au_sets import DATASET_AU_SETS
from au_llm.data.build import MANIFEST_KINDS, build_manifest
from au_llm.data.builders.formats import DATASET_FORMATS, HEADER_ROLES, DatasetFormat
from au_llm.data.manifest import EXPRESSION_KINDS
from au_llm.data.workbook import header_name
from au_llm.synth import STYLES, write_synthetic
from au_llm.synth.long import LONG_STYLES, write_long_style
from au_llm.synth.styles import COMPOSITE_STYLES, write_composite_style

_CLIP_FIELDS = {"subject", "clip", "filename", "emotion"}
_LONG_FIELDS = {"subject", "recording"}
_NAMING_FIELDS = {"subject", "number", "code"}


def _template_fields(spec: DatasetFormat) -> set[str]:
    """The fields the format's frames-folder templates name."""
    return {
        name
        for template in spec.frames
        for _, name, _, _ in string.Formatter().parse(template)
        if name is not None
    }


@pytest.mark.parametrize("name", DATASET_FORMATS)
def test_each_format_is_well_formed(name: str) -> None:
    spec = DATASET_FORMATS[name]
    assert spec.name == name and spec.title and spec.root_name and spec.coding_names
    assert spec.fps > 0
    assert {"subject", "clip", "onset", "offset", "aus"} <= set(spec.columns)
    assert any("*" not in template for template in spec.frames)
    layout = spec.recordings
    if layout is None:
        assert _template_fields(spec) <= _CLIP_FIELDS
        assert set(spec.aus) == set(DATASET_AU_SETS[name])
    else:
        assert len(layout.file_kinds) == len(spec.coding_names)
        assert {kind for _, kind in layout.expression_types} == set(EXPRESSION_KINDS)
        assert all(layout.kind_of(cell) for cell in layout.type_cells)
        assert all(kind in ("", *EXPRESSION_KINDS) for kind in layout.file_kinds)
        if layout.expression_pattern:
            assert "(?P<recording>" in layout.expression_pattern and layout.expression_form
    if layout is not None and layout.naming is not None:
        assert _template_fields(spec) <= _NAMING_FIELDS
        assert set(spec.columns) <= {role for role in layout.naming.positions if role}
    elif layout is not None:
        assert _template_fields(spec) <= _LONG_FIELDS
    if layout is None or layout.naming is None:  # header rows: each required column is known
        for role, header in spec.columns.items():
            assert HEADER_ROLES.get(header_name(header)) == role, (name, header)


@pytest.mark.parametrize("name", DATASET_FORMATS)
def test_the_cli_offers_each_format_to_manifest_and_synth(name: str) -> None:
    from au_llm.recipes.cli import build_parser

    parser = build_parser()
    assert name in MANIFEST_KINDS
    assert parser.parse_args(["manifest", name, "--out", "m.csv"]).kind == name
    assert parser.parse_args(["synth", "--style", name, "--out", "x"]).style == name


def _write(name: str, out: Path) -> tuple[Path, list[Path], list[tuple[object, ...]]]:
    """Synthetic data of ``name``: frames root, label files, expected (subject, onset, offset,
    aus, clip or recording) of every clip."""
    if name in LONG_STYLES:
        seconds = 4.0 if DATASET_FORMATS[name].fps > 100 else 8.0
        long = write_long_style(name, out, 1, 1, seconds=seconds, size=0.1)
        expected = [
            (r.subject, e.onset, e.offset, "+".join(map(str, e.aus)), r.recording)
            for r, e in long.expressions
        ]
        return long.root, list(long.codings), expected
    writer = write_composite_style if name in COMPOSITE_STYLES else write_synthetic
    written = writer(name, out, 2, 2, frames_per_clip=3)
    expected = [
        (c.subject, c.onset, c.offset, "+".join(map(str, c.aus)), c.clip) for c in written.clips
    ]
    return written.root, [written.coding], expected


@pytest.mark.parametrize("name", DATASET_FORMATS)
def test_each_format_round_trips_through_its_synthetic_style(tmp_path: Path, name: str) -> None:
    spec = DATASET_FORMATS[name]
    assert name in (*STYLES, *COMPOSITE_STYLES, *LONG_STYLES), f"{name}: no synthetic style"
    root, codings, expected = _write(name, tmp_path)
    assert root.name == spec.root_name
    assert [path.name for path in codings] == list(spec.coding_names)
    result = build_manifest(name, root=root, coding=codings, strict=True)
    frame = result.frame
    ids = frame["clip"] if spec.recordings is None else frame["recording"]
    columns = [frame["subject"], frame["onset"], frame["offset"], frame["aus"], ids]
    assert sorted(zip(*columns, strict=True)) == sorted(expected) and expected
    assert set(frame["dataset"]) == {name} and set(frame["fps"]) == {spec.fps}
    assert not result.skipped


def test_every_synthetic_style_is_a_format() -> None:
    assert set(DATASET_FORMATS) == {*STYLES, *COMPOSITE_STYLES, *LONG_STYLES}


@pytest.mark.parametrize(
    ("name", "cells"),
    [
        ("casme2", [(1, "sub01"), (1.0, "sub01"), ("sub1", "sub01"), ("x", None), (None, None)]),
        ("samm", [(6, "006"), ("006", "006"), ("six", None)]),
        ("casme", [(3, "sub03"), ("sub3", "sub03"), ("S3", "S3")]),
        ("mmew", [("S01", "S01"), (3, "3"), ("sub3", "sub3")]),
        ("samm-lv", [(6.0, "006"), (" 6 ", "006"), ("sub6", None)]),
        ("casme3-lv", [(1, "spNO.1"), ("spNO.2", "spNO.2"), ("", None)]),
    ],
)
def test_subject_cells_read_as_each_format_names_its_subjects(
    name: str, cells: list[tuple[object, str | None]]
) -> None:
    spec = DATASET_FORMATS[name]
    assert [(cell, spec.subject_id(cell)) for cell, _ in cells] == cells


def test_a_kind_refuses_more_label_files_than_it_has(tmp_path: Path) -> None:
    from au_llm.data.manifest import ManifestError

    files = [tmp_path / f"{k}.xlsx" for k in range(3)]
    with pytest.raises(ManifestError, match="manifest casme2 reads one annotation file, got 2"):
        build_manifest("casme2", root=tmp_path, coding=files[:2])
    with pytest.raises(ManifestError, match="casme3-lv reads at most 2 annotation files, got 3"):
        build_manifest("casme3-lv", root=tmp_path, coding=files)
