"""Synthetic data in the CASME, CAS(ME)^3, MMEW and 4DME formats, read back by their builders."""

from __future__ import annotations

from pathlib import Path

import pytest

from au_llm.data.build import build_manifest
from au_llm.data.manifest import read_manifest, write_manifest
from au_llm.synth.styles import COMPOSITE_STYLES, write_composite_style


@pytest.mark.parametrize("style", COMPOSITE_STYLES)
def test_each_style_round_trips_through_its_builder(tmp_path: Path, style: str) -> None:
    written = write_composite_style(
        style, tmp_path, subjects=2, clips_per_subject=4, frames_per_clip=4
    )
    result = build_manifest(style, root=written.root, coding=written.coding, strict=True)
    expected = sorted(
        (c.subject, c.clip, c.onset, c.apex, c.offset, "+".join(map(str, c.aus)))
        for c in written.clips
    )
    columns = ["subject", "clip", "onset", "apex", "offset", "aus"]
    got = sorted(tuple(row) for row in result.frame[columns].values.tolist())
    assert got == expected
    out = tmp_path / "manifest.csv"
    write_manifest(result.frame, out)
    again = read_manifest(out)
    assert again[columns].values.tolist() == result.frame[columns].values.tolist()
    assert (again["dataset"] == style).all()


def test_casme3_style_repeats_recordings_with_disjoint_frames(tmp_path: Path) -> None:
    written = write_composite_style(
        "casme3", tmp_path, subjects=1, clips_per_subject=5, frames_per_clip=4
    )
    names = sorted(c.clip for c in written.clips)
    assert names == ["a", "a2", "b", "b2", "e"]
    spans = sorted((c.onset, c.offset) for c in written.clips if c.clip.startswith("a"))
    assert spans[0][1] < spans[1][0]
    assert len({c.frames_dir for c in written.clips}) == 3


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = write_composite_style(
        "4dme", tmp_path / "a", subjects=1, clips_per_subject=2, frames_per_clip=3
    )
    second = write_composite_style(
        "4dme", tmp_path / "b", subjects=1, clips_per_subject=2, frames_per_clip=3
    )
    assert first.coding.read_bytes() == second.coding.read_bytes()


def test_cli_writes_and_builds_a_composite_style(tmp_path: Path, capsys) -> None:
    from au_llm.recipes.cli import main

    assert (
        main(
            [
                "synth",
                "--style",
                "mmew",
                "--out",
                str(tmp_path),
                "--subjects",
                "1",
                "--clips-per-subject",
                "2",
            ]
        )
        == 0
    )
    out = tmp_path / "m.csv"
    assert (
        main(
            [
                "manifest",
                "mmew",
                "--root",
                str(tmp_path / "Micro_Expression"),
                "--coding",
                str(tmp_path / "MMEW_Micro_Exp.xlsx"),
                "--out",
                str(out),
                "--strict",
            ]
        )
        == 0
    )
    assert len(read_manifest(out)) == 2
    assert (
        main(
            [
                "manifest",
                "smic",
                "--root",
                str(tmp_path),
                "--coding",
                str(out),
                "--out",
                str(tmp_path / "s.csv"),
            ]
        )
        != 0
    )
    assert "SMIC has no Action Unit labels" in capsys.readouterr().err


def test_composite_demo_data_is_kept_when_complete(tmp_path: Path) -> None:
    from au_llm.recipes.demo_composite import write_composite_data

    paths, written = write_composite_data(tmp_path, 1, 2)
    assert written and [p.stem for p in paths] == list(COMPOSITE_STYLES)
    again, rewritten = write_composite_data(tmp_path, 1, 2)
    assert again == paths and not rewritten


def test_synth_replaces_earlier_output_only_with_overwrite(tmp_path: Path, capsys) -> None:
    from au_llm.recipes.cli import main

    args = ["synth", "--style", "casme3", "--out", str(tmp_path), "--subjects", "1"]
    args += ["--clips-per-subject", "1", "--seed"]
    assert main([*args, "1"]) == 0
    coding = tmp_path / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx"
    first = coding.read_bytes()
    assert main([*args, "2"]) == 2
    error = capsys.readouterr().err
    assert f"--out {tmp_path} already holds a result ({coding.name})" in error
    assert "--overwrite" in error
    assert coding.read_bytes() == first
    assert main([*args, "2", "--overwrite"]) == 0
    assert coding.read_bytes() != first


def test_synth_errors_name_the_style_asked_for(tmp_path: Path, capsys) -> None:
    """CAS(ME)^3 data is rendered like CASME II; its messages still say casme3."""
    from au_llm.recipes.cli import main

    args = ["synth", "--style", "casme3", "--out", str(tmp_path), "--subjects", "150"]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "synthetic casme3: at most 99 subjects, got 150" in error
    assert "casme2" not in error
    with pytest.raises(ValueError, match="synthetic mmew: frames_per_clip = 2"):
        write_composite_style("mmew", tmp_path, 1, 1, frames_per_clip=2)
