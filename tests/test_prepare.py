import shutil

import pytest

from au_llm.data.manifest import ManifestError, read_manifest
from au_llm.prepare import prepare_data, read_manifests, resolve_aus
from au_llm.recipes.cli import main
from au_llm.runs.layout import PREPROCESS_REPORT, preprocess_report
from tests.conftest import CONFIG_DIR, tiny_config


def test_the_aus_are_the_configured_ones_or_those_the_datasets_share(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "aus")
    assert resolve_aus(cfg.data, cfg.protocol, ["casme2"]) == [1, 2, 4, 7, 12, 14, 15, 17]
    assert resolve_aus(cfg.data, cfg.protocol, ["casme2", "samm"]) == [2, 4, 7, 12]
    chosen = tiny_config(tiny_data, tmp_path, "aus", "loso", "data.aus=[12,4,12]")
    assert resolve_aus(chosen.data, chosen.protocol, ["mine"]) == [4, 12]
    with pytest.raises(ValueError, match=r"datasets \['mine'\] have no default AU set"):
        resolve_aus(cfg.data, cfg.protocol, ["mine"])


def test_a_clip_listed_in_two_manifests_is_refused_naming_both(tiny_data, tmp_path):
    copy = tmp_path / "copy.csv"
    shutil.copy(tiny_data.casme2, copy)
    with pytest.raises(ManifestError, match=r"copy.csv: clip casme2/.* is also listed in .*casme2"):
        read_manifests([str(tiny_data.casme2), str(copy)])
    both = read_manifests([str(tiny_data.casme2), str(tiny_data.samm)])
    assert set(both["dataset"]) == {"casme2", "samm"}


def test_a_clip_that_fails_alignment_is_excluded_and_reported(tiny_data, tmp_path):
    manifest = read_manifest(tiny_data.casme2)
    broken = manifest.iloc[0]
    frames = tmp_path / "frames"
    shutil.copytree(broken["frames_dir"], frames)
    for path in sorted(frames.iterdir())[:2]:
        path.write_bytes(b"not an image")
    manifest.loc[0, "frames_dir"] = str(frames)
    path = tmp_path / "m.csv"
    manifest.to_csv(path, index=False)
    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "prep",
        "loso",
        f"data.manifests=['{path}']",
        f"data.cache_dir='{tmp_path / 'cache'}'",
    )
    run_dir = tmp_path / "run"
    report = preprocess_report(run_dir)
    data = prepare_data(cfg.data, cfg.preprocess, report, cfg.protocol, progress=False)
    key = (broken["dataset"], broken["subject"], broken["clip"])
    assert [tuple(r) for r in data.excluded[["dataset", "subject", "clip"]].to_numpy()] == [key]
    assert data.excluded["reason"].str.len().iloc[0] > 0
    assert len(data.source) == len(manifest) - 1 and data.target is None
    prints = data.source["fingerprint"]
    assert prints.str.fullmatch(r"[0-9a-f]{16}( [0-9a-f]{16})*").all() and prints.is_unique
    assert (run_dir / PREPROCESS_REPORT).is_file()
    assert data.aus == [1, 2, 4, 7, 12, 14, 15, 17]


def test_a_cross_run_whose_every_target_clip_fails_stops_before_training(
    tiny_data, tmp_path, capsys
):
    target = read_manifest(tiny_data.samm).assign(frames_dir=str(tmp_path / "gone"))
    path = tmp_path / "target.csv"
    target.to_csv(path, index=False)
    overrides = [
        f"out_dir={tmp_path}",
        "name=cross",
        f"data.cache_dir={tiny_data.cache_dir}",
        f"data.manifests=[{tiny_data.casme2}]",
        f"data.target_manifests=[{path}]",
    ]
    config = str(CONFIG_DIR / "tiny_cpu_cross.yaml")
    assert main(["cross", "--config", config, *overrides]) == 2
    err = capsys.readouterr().err
    assert f"no usable test clip: all {len(target)} clips of data.target_manifests failed" in err
    assert not list((tmp_path / "cross").glob("folds/*/*")), "nothing was trained"
