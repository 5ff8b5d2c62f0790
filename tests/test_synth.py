"""The built-in synthetic CASME II / SAMM data: formats, AU ground truth, locality, determinism."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import openpyxl
import pandas as pd
import pytest
import skimage.data

from au_llm import synth
from au_llm.config import DATASET_AUS
from au_llm.data.build import build_manifest
from au_llm.synth import (
    AUAction,
    SynthResult,
    apex_motion,
    plan,
    plan_clips,
    render_frame,
    write,
    write_synthetic,
)
from au_llm.synth.render import ClipRenderer


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SynthResult]:
    out = tmp_path_factory.mktemp("synth")
    return {style: write_synthetic(style, out, 3, 3, seed=7) for style in synth.STYLES}


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image


@pytest.mark.parametrize("style", synth.STYLES)
def test_manifest_builder_reads_intended_aus(written: dict[str, SynthResult], style: str) -> None:
    result = written[style]
    manifest = build_manifest(style, root=result.root, coding=result.coding, strict=True)
    assert not manifest.skipped and not manifest.warnings
    frame = manifest.frame.set_index(["subject", "clip"])
    assert len(frame) == len(result.clips) == 9
    for clip in result.clips:
        row = frame.loc[(clip.subject, clip.clip)]
        assert row["aus"] == "+".join(str(au) for au in clip.aus)
        assert (row["onset"], row["apex"], row["offset"]) == (clip.onset, clip.apex, clip.offset)
        assert row["n_frames"] == clip.n_frames == len(list(clip.frames_dir.glob("*.jpg")))
        assert Path(row["frames_dir"]).resolve() == clip.frames_dir.resolve()


def test_casme2_files_and_sheet(written: dict[str, SynthResult]) -> None:
    result = written["casme2"]
    assert result.root.name == "CASME2_RAW_selected"
    assert result.coding.name == "CASME2-coding-20190701.xlsx"
    clip = result.clips[0]
    assert re.fullmatch(r"sub\d\d", clip.subject) and clip.frames_dir.parent.name == clip.subject
    names = sorted(p.name for p in clip.frames_dir.iterdir())
    assert names == sorted(f"img{k}.jpg" for k in range(clip.onset, clip.offset + 1))
    assert clip.onset > 1
    image = _read(clip.frame_path(clip.apex))
    assert image.shape == (480, 640, 3)
    assert np.abs(image[..., 2].astype(int) - image[..., 0]).mean() > 5  # colour, not gray

    sheet = openpyxl.load_workbook(result.coding).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == write.CASME_HEADER
    by_name = {(row[0], row[1]): row for row in rows[1:]}
    assert len(by_name) == len(rows) - 1 == len(result.clips)
    for clip in result.clips:
        row = by_name[(clip.subject_number, clip.clip)]
        assert row[3:6] == (clip.onset, clip.apex, clip.offset) and row[7] == clip.au_cell
        assert row[8] in {"happiness", "disgust", "repression", "surprise", "fear", "sadness"} | {
            "others"
        }
        plain_single = len(clip.actions) == 1 and not clip.actions[0].side
        assert isinstance(row[7], int) == plain_single


def test_samm_files_and_sheet(written: dict[str, SynthResult]) -> None:
    result = written["samm"]
    assert result.root.name == "SAMM" and result.coding.name == "SAMM_Micro_FACS_Codes_v2.xlsx"
    clip = result.clips[0]
    assert re.fullmatch(r"\d{3}", clip.subject)
    assert re.fullmatch(rf"{clip.subject}_\d_\d+", clip.clip)
    names = sorted(p.name for p in clip.frames_dir.iterdir())
    assert names == [f"{clip.subject}_{k:05d}.jpg" for k in range(clip.onset, clip.offset + 1)]
    image = _read(clip.frame_path(clip.onset))
    assert image.ndim == 2 and image.shape == (363, 680)  # grayscale, 2040x1088 / 3

    table = pd.read_excel(result.coding, header=13)
    assert list(table.columns) == list(write.SAMM_HEADER)
    assert len(table) == len(result.clips)
    preamble = pd.read_excel(result.coding, header=None, nrows=13)[0].dropna().str.cat(sep=" ")
    assert "/ = or" in preamble and "? = unclear offset" in preamble
    for clip, (_, row) in zip(result.clips, table.iterrows(), strict=True):
        assert row["Filename"] == clip.clip and row["Subject"] == int(clip.subject)
        assert str(row["Action Units"]) == str(clip.au_cell)
        assert row["Duration"] == clip.n_frames and row["Micro"] == "Micro - 1/2"
        assert row["Inducement Code"] == int(clip.clip.split("_")[1])


def test_default_plan_covers_every_au() -> None:
    for style in synth.STYLES:
        clips = plan_clips(style)
        assert len(clips) == 64 and len({(c.subject, c.clip) for c in clips}) == 64
        assert all(c.aus for c in clips)
        assert all(12 <= c.n_frames <= 24 and c.onset < c.apex < c.offset for c in clips)
        for au in DATASET_AUS[style]:
            rate = np.mean([au in c.aus for c in clips])
            assert 0.15 <= rate <= 0.45, (style, au, rate)
        for subject in {c.subject for c in clips}:
            seen = {au for c in clips if c.subject == subject for au in c.aus}
            assert len(seen & set(DATASET_AUS[style])) >= 3, (style, subject, seen)
        cells = [str(c.au_cell) for c in clips]
        assert any(re.search(r"(^|\+)[LR]\d", cell) for cell in cells)
        if style == "samm":
            assert any(re.search(r"\d[A-C]($|\+)", cell) for cell in cells)


def test_timing_and_names_do_not_depend_on_aus(monkeypatch: pytest.MonkeyPatch) -> None:
    before = plan_clips("casme2", 4, 4, seed=3)
    spec = plan.STYLE_SPECS["casme2"]
    shuffled = tuple(reversed(spec.combos))
    monkeypatch.setitem(plan.STYLE_SPECS, "casme2", replace(spec, combos=shuffled))
    after = plan_clips("casme2", 4, 4, seed=3)
    assert [c.aus for c in before] != [c.aus for c in after]
    key = [(c.subject, c.index, c.clip, c.onset, c.apex, c.offset) for c in before]
    assert key == [(c.subject, c.index, c.clip, c.onset, c.apex, c.offset) for c in after]


def _clean(clip: synth.SynthClip, frame: int) -> np.ndarray:
    image = render_frame(clip, frame, noise=False, jitter=False).astype(np.float32)
    return image if image.ndim == 2 else image.sum(axis=2)


@pytest.mark.parametrize("style", synth.STYLES)
def test_apex_differs_from_onset_only_in_au_regions(
    written: dict[str, SynthResult], style: str
) -> None:
    clip = written[style].clips[0]
    motion = apex_motion(clip)
    assert 3.0 < motion.max() < 15.0  # a few frame pixels at the apex
    assert (motion > 0.1 * motion.max()).mean() < 0.08  # the face alone is ~13 % of the frame
    region = cv2.dilate((motion > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    diff = np.abs(_clean(clip, clip.apex) - _clean(clip, clip.onset))
    assert diff[~region].max() <= 3
    assert diff[region].max() > 40

    # With sensor noise the difference outside the AU regions is noise; inside it is larger.
    noisy_apex = render_frame(clip, clip.apex, jitter=False).astype(np.float32)
    noisy_onset = render_frame(clip, clip.onset, jitter=False).astype(np.float32)
    noisy = np.abs(noisy_apex - noisy_onset)
    noisy = noisy if noisy.ndim == 2 else noisy.mean(axis=2)
    outside = noisy[~region].mean()
    assert 0.5 < outside < 3.5
    assert np.percentile(noisy[motion > 1.0], 90) > 4 * outside


def test_each_au_moves_its_facial_region(written: dict[str, SynthResult]) -> None:
    base = written["casme2"].clips[0]
    rows = {}
    for au in synth.ANIMATED_AUS:
        motion = apex_motion(replace(base, actions=(AUAction(au, "", 1.0),)))
        moving = motion > 0.1 * motion.max()
        assert moving.mean() < 0.05, au
        rows[au] = np.nonzero(moving)[0].mean()
    # Top to bottom: brows, lower lids, lip corners, chin.
    assert max(rows[1], rows[2], rows[4]) < rows[7] < min(rows[12], rows[14], rows[15])
    assert max(rows[12], rows[14], rows[15]) < rows[17]


def test_written_frame_is_rendering_plus_noise(written: dict[str, SynthResult]) -> None:
    for result in written.values():
        clip = result.clips[1]
        on_disk = _read(clip.frame_path(clip.apex)).astype(np.float32)
        rendered = render_frame(clip, clip.apex, noise=False).astype(np.float32)
        if rendered.ndim == 3:
            rendered = rendered[..., ::-1]  # RGB -> BGR as on disk
        error = np.abs(on_disk - rendered).mean()
        assert 0.5 < error < 3.0  # sensor noise and JPEG, nothing else


@pytest.mark.parametrize("au", [12, 2])
def test_unilateral_au_moves_only_its_side(written: dict[str, SynthResult], au: int) -> None:
    base = written["casme2"].clips[0]
    masks, diffs = {}, {}
    for side in ("L", "R"):
        clip = replace(base, actions=(AUAction(au, side, 1.0),))
        masks[side] = apex_motion(clip) > 0.5
        diffs[side] = np.abs(_clean(clip, clip.apex) - _clean(clip, clip.onset))
    columns = {side: np.nonzero(mask)[1] for side, mask in masks.items()}
    # The subject's right side is the image's left-hand side.
    assert columns["R"].max() < columns["L"].min()
    for side, other in (("L", "R"), ("R", "L")):
        assert diffs[side][masks[other]].max() <= 3
        assert diffs[side][masks[side]].max() > 30


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    for style in synth.STYLES:
        first = write_synthetic(style, tmp_path / "a", 2, 2, seed=11, frames_per_clip=5)
        write_synthetic(style, tmp_path / "b", 2, 2, seed=11, frames_per_clip=5)
        write_synthetic(style, tmp_path / "c", 2, 2, seed=12, frames_per_clip=5)
        assert all(c.n_frames == 5 for c in first.clips)
    hashes = {name: _hashes(tmp_path / name) for name in "abc"}
    assert len(hashes["a"]) == 2 + 2 + 2 * 2 * 2 * 5  # sheets, markers, frames
    assert hashes["a"] == hashes["b"]
    assert hashes["a"] != hashes["c"]
    again = write_synthetic("samm", tmp_path / "a", 2, 2, seed=11, frames_per_clip=5)
    assert _hashes(tmp_path / "a") == hashes["a"]  # rewriting replaces the old output
    assert again.coding.read_bytes() == (tmp_path / "b" / again.coding.name).read_bytes()


def test_refuses_foreign_folder_and_bad_arguments(tmp_path: Path) -> None:
    foreign = tmp_path / "SAMM"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not synthetic"):
        write_synthetic("samm", tmp_path, 1, 1)
    assert (foreign / "keep.txt").exists()
    with pytest.raises(ValueError, match="expected one of"):
        write_synthetic("casme3", tmp_path / "x")
    with pytest.raises(ValueError, match="frames_per_clip"):
        write_synthetic("casme2", tmp_path / "x", frames_per_clip=2)


def test_facemesh_finds_the_face(written: dict[str, SynthResult]) -> None:
    from au_llm.preprocess.landmarks import detect_landmarks

    for result in written.values():
        clip = result.clips[-1]
        image = _read(clip.frame_path(clip.apex))
        rgb = image if image.ndim == 2 else image[..., ::-1]
        points = detect_landmarks(np.ascontiguousarray(rgb))
        assert points is not None, clip.clip
        inside = (points[:, 0] > 0) & (points[:, 0] < image.shape[1]) & (points[:, 1] > 0)
        assert inside.all()


def test_stored_source_landmarks_match_the_landmarker() -> None:
    from au_llm.preprocess.landmarks import detect_landmarks
    from au_llm.synth.render import source_landmarks

    stored = source_landmarks()
    found = detect_landmarks(skimage.data.astronaut())
    assert stored.shape == (468, 2) and found is not None
    error = np.linalg.norm(stored - found[:468], axis=1)
    assert error.mean() < 1.5 and error.max() < 3.0  # pixels, on a face about 92 pixels wide


def test_hard_level_has_smaller_movements_more_jitter_and_noise_and_au4_in_half() -> None:
    for style in synth.STYLES:
        normal, hard = plan_clips(style, seed=2), plan_clips(style, seed=2, difficulty="hard")
        assert [c.clip for c in normal] == [c.clip for c in hard]  # same layout and timing
        assert all(c.difficulty == "hard" for c in hard)
        rate = np.mean([4 in c.aus for c in hard])
        assert 0.4 <= rate <= 0.6, (style, rate)
        others = [np.mean([au in c.aus for c in hard]) for au in DATASET_AUS[style] if au != 4]
        assert max(others) < rate / 1.5  # imbalanced: AU4 dominates
        amplitude = [a.intensity for c in hard for a in c.actions]
        assert max(amplitude) < min(a.intensity for c in normal for a in c.actions)
    clip = plan_clips("casme2", 1, 1, seed=2, frames_per_clip=12)[0]
    hard_clip = replace(clip, difficulty="hard")
    jitter = [ClipRenderer(c).jitter for c in (clip, hard_clip)]
    assert np.abs(jitter[1]).max() > np.abs(jitter[0]).max()
    assert ClipRenderer(hard_clip).noise_sigma == 2.5 * ClipRenderer(clip).noise_sigma
    with pytest.raises(ValueError, match="difficulty"):
        plan_clips("casme2", difficulty="extreme")


def test_cached_render_arrays_are_read_only_and_rendering_is_repeatable() -> None:
    from au_llm.synth import render

    clip = plan_clips("casme2", 1, 1, seed=3, frames_per_clip=6)[0]
    first = [ClipRenderer(clip).render(clip.onset + k) for k in range(clip.n_frames)]
    cached = [
        render._source().image,
        render._identity(clip.style, clip.seed, clip.subject_index).warp,
        render._au_field(clip.actions[0].au, clip.actions[0].side)[2],
        render._noise_table(2.0),
    ]
    for array in cached:
        with pytest.raises(ValueError, match="read-only"):
            array[...] = 0
    again = [ClipRenderer(clip).render(clip.onset + k) for k in range(clip.n_frames)]
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
