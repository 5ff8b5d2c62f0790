import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from au_llm.answers import parse_answer
from au_llm.config import save_config
from au_llm.data.manifest import read_manifest
from au_llm.metrics import au_column
from au_llm.protocols import (
    Fold,
    LeakageError,
    check_no_clip_leak,
    check_no_subject_leak,
    cross_folds,
    loso_folds,
    parse_shard,
    select_folds,
)
from au_llm.recipes.experiment import run_protocol
from au_llm.recipes.report import build_report
from au_llm.recipes.run_config import start_run
from au_llm.reports.tables import compute_tables, headline_table
from au_llm.runs.layout import RunLayout
from tests.conftest import kill_within_second_fold, tiny_config

REPO = Path(__file__).resolve().parents[1]


def read_predictions(run_dir: Path) -> pd.DataFrame:
    return pd.read_csv(run_dir / "predictions.csv", dtype={"subject": str, "clip": str})


@pytest.fixture(scope="module")
def loso_run(tiny_data, tmp_path_factory):
    cfg = tiny_config(tiny_data, tmp_path_factory.mktemp("runs"), "loso")
    run_dir, tables = run_protocol(cfg, progress=False)
    return cfg, run_dir, tables


def test_loso_writes_every_output(loso_run, tiny_data):
    _, run_dir, _ = loso_run
    for name in (
        "config.yaml",
        "env.json",
        "predictions.csv",
        "metrics_per_au.csv",
        "metrics_per_fold.csv",
        "summary.json",
        "report.md",
        "f1_per_au.png",
        "f1_fold_heatmap.png",
        "preprocess_report.csv",
    ):
        assert (run_dir / name).is_file(), name
    env = json.loads((run_dir / "env.json").read_text())
    assert {"torch", "transformers", "git_commit", "device"} <= env.keys()


def test_predictions_have_one_row_per_clip_and_the_documented_columns(loso_run, tiny_data):
    _, run_dir, _ = loso_run
    manifest = read_manifest(tiny_data.casme2)
    preds = read_predictions(run_dir)
    aus = [1, 2, 4, 7, 12, 14, 15, 17]
    expected = ["dataset", "subject", "clip", "fold", "seed"]
    for au in aus:
        expected += [f"AU{au:02d}_prob", f"AU{au:02d}_pred", f"AU{au:02d}_true"]
    assert list(preds.columns) == expected
    key = ["dataset", "subject", "clip"]
    assert sorted(map(tuple, preds[key].to_numpy())) == sorted(map(tuple, manifest[key].to_numpy()))
    assert (preds["fold"] == preds["subject"]).all()
    merged = preds.merge(manifest[[*key, "aus"]], on=key, validate="one_to_one")
    for au in aus:
        truth = merged["aus"].map(lambda s, a=au: a in {int(x) for x in s.split("+") if x})
        assert (merged[f"AU{au:02d}_true"] == truth.astype(int)).all()
        assert ((preds[f"AU{au:02d}_prob"] >= 0.5).astype(int) == preds[f"AU{au:02d}_pred"]).all()


def _f1(tp, fp, fn):
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def test_metrics_equal_a_recomputation_from_predictions(loso_run):
    _, run_dir, _ = loso_run
    preds = read_predictions(run_dir)
    saved = pd.read_csv(run_dir / "metrics_per_au.csv").set_index("au")
    binary = []
    for au in [1, 2, 4, 7, 12, 14, 15, 17]:
        pred, true = preds[f"AU{au:02d}_pred"], preds[f"AU{au:02d}_true"]
        tp, fp = int(((pred == 1) & (true == 1)).sum()), int(((pred == 1) & (true == 0)).sum())
        fn, tn = int(((pred == 0) & (true == 1)).sum()), int(((pred == 0) & (true == 0)).sum())
        undefined = tp + fn == 0  # no positive test clip: every metric of the AU is undefined
        binary.append(float("nan") if undefined else _f1(tp, fp, fn))
        macro = float("nan") if undefined else np.nanmean([_f1(tp, fp, fn), _f1(tn, fn, fp)])
        assert saved.loc[au, "binary_f1"] == pytest.approx(binary[-1], nan_ok=True)
        assert saved.loc[au, "macro_f1"] == pytest.approx(macro, nan_ok=True)
        if tp + fp and not undefined:
            assert saved.loc[au, "precision"] == pytest.approx(tp / (tp + fp))
    recomputed = compute_tables(preds, [1, 2, 4, 7, 12, 14, 15, 17])
    assert recomputed.per_au["binary_f1"].tolist() == pytest.approx(binary, nan_ok=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["optimistic"] is False
    assert summary["precision"] == "fp32"  # the tiny config's train.precision
    assert json.loads((run_dir / "run.json").read_text())["precision"] == "fp32"
    assert "| `precision` | fp32 |" in (run_dir / "report.md").read_text()


def test_loso_folds_never_share_a_subject(tiny_data):
    manifest = read_manifest(tiny_data.casme2)
    folds = loso_folds(manifest)
    assert [f.name for f in folds] == sorted(manifest["subject"].unique())
    for fold in folds:
        assert set(fold.test["subject"]) == {fold.name}
        assert fold.name not in set(fold.train["subject"])
        assert len(fold.train) + len(fold.test) == len(manifest)


def test_leakage_guards_raise(tiny_data):
    manifest = read_manifest(tiny_data.casme2)
    subject = manifest["subject"].iloc[0]
    leaky = Fold(subject, manifest, manifest[manifest["subject"] == subject])
    with pytest.raises(LeakageError, match=subject):
        check_no_subject_leak(leaky)
    with pytest.raises(LeakageError, match="clips in both"):
        check_no_clip_leak(leaky)
    with pytest.raises(LeakageError):
        cross_folds(manifest, manifest)


def test_fold_selection_and_shards(tiny_data):
    folds = loso_folds(read_manifest(tiny_data.casme2))
    names = [f.name for f in folds]
    shards = [select_folds(folds, shard=(k, 2)) for k in (1, 2)]
    assert sorted(f.name for s in shards for f in s) == names
    assert not {f.name for f in shards[0]} & {f.name for f in shards[1]}
    assert [f.name for f in select_folds(folds, [names[1]])] == [names[1]]
    with pytest.raises(ValueError, match="unknown fold"):
        select_folds(folds, ["nobody"])
    with pytest.raises(ValueError):
        parse_shard("3/2")


def test_shards_merge_into_the_same_result(loso_run, tiny_data, tmp_path):
    cfg, run_dir, _ = loso_run
    sharded = tiny_config(tiny_data, tmp_path, "loso")
    for k in (1, 2):
        run_protocol(sharded, shard=(k, 2), progress=False)
    pd.testing.assert_frame_equal(read_predictions(tmp_path / "loso"), read_predictions(run_dir))


def test_a_run_directory_refuses_a_different_config(loso_run, tiny_data):
    cfg, run_dir, _ = loso_run
    changed = tiny_config(tiny_data, run_dir.parent, "loso", "loso", "train.epochs=3")
    with pytest.raises(ValueError, match="different config"):
        run_protocol(changed, progress=False)


def test_test_oracle_outputs_say_optimistic(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "oracle", "loso", "eval.threshold_policy=test-oracle")
    run_dir, _ = run_protocol(cfg, progress=False)
    note = "optimistic: thresholds tuned on test labels"
    assert note in (run_dir / "report.md").read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["optimistic"] is True and note in json.dumps(summary)
    for name in ("predictions.csv", "metrics_per_au.csv", "metrics_per_fold.csv"):
        assert (pd.read_csv(run_dir / name)["note"] == note).all(), name
    oracle = json.loads((run_dir / "oracle_thresholds.json").read_text())
    assert oracle["note"] == note and len(oracle["thresholds_per_seed"]["1"]) == 8


VAL_POLICY = ["eval.threshold_policy=val", "train.val_fraction=0.3"]


@pytest.mark.parametrize("policy", [["eval.threshold_policy=train"], VAL_POLICY])
def test_learnt_threshold_policies_ignore_test_labels(tiny_data, tmp_path, policy):
    manifest = read_manifest(tiny_data.casme2)
    flipped = manifest.copy()
    subject = sorted(manifest["subject"].unique())[0]
    flipped.loc[flipped["subject"] == subject, "aus"] = "1+2+4+7+12+14+15+17"
    flipped_path = tmp_path / "flipped.csv"
    flipped.to_csv(flipped_path, index=False)
    outputs = []
    for name, path in (("orig", tiny_data.casme2), ("flip", flipped_path)):
        cfg = tiny_config(
            tiny_data,
            tmp_path,
            name,
            "loso",
            *policy,
            f"data.manifests=['{path}']",
        )
        run_dir, _ = run_protocol(cfg, fold_names=[subject], progress=False)
        preds = read_predictions(run_dir)
        outputs.append(preds.filter(regex="_(prob|pred)$"))
        metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
        if policy == ["eval.threshold_policy=train"]:
            # Under the train policy the decisions are those thresholds: both F1 values agree.
            f1 = metrics["pooled_binary_f1"]
            assert metrics["binary_f1_train_threshold"] == pytest.approx(f1)
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


def test_train_threshold_f1_is_reported_beside_fixed_threshold_f1(loso_run):
    _, run_dir, tables = loso_run
    metrics = json.loads((run_dir / "summary.json").read_text())["metrics"]
    assert 0.0 <= metrics["binary_f1_train_threshold"] <= 1.0
    records = [json.loads(p.read_text()) for p in run_dir.glob("folds/*/*.json")]
    assert all(set(r["train_thresholds"]) == set(map(str, tables.aus)) for r in records)
    assert "chosen on each fold's training predictions" in headline_table(tables)


def test_cross_domain_end_to_end(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "cross", "cross")
    run_dir, tables = run_protocol(cfg, progress=False)
    preds = read_predictions(run_dir)
    assert sorted(preds["clip"]) == sorted(read_manifest(tiny_data.samm)["clip"])
    assert set(preds["fold"]) == {"casme2_to_samm"}
    assert [c for c in preds.columns if c.endswith("_prob")] == [
        au_column(a, "prob") for a in (2, 4, 7, 12)
    ]
    assert (run_dir / "report.md").is_file()


def _run_loso_subprocess(config: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "au_llm.recipes.cli", "loso", "--config", str(config)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TQDM_DISABLE": "1"},
    )


def test_sigkill_mid_fold_then_rerun_equals_an_uninterrupted_run(loso_run, tiny_data, tmp_path):
    _, reference, _ = loso_run
    cfg = tiny_config(tiny_data, tmp_path, "loso", "loso", "train.epochs=2")
    config_file = tmp_path / "killed.yaml"
    save_config(cfg, config_file)
    folds_dir = tmp_path / "loso" / "folds" / "seed1"
    proc = _run_loso_subprocess(config_file)
    kill_within_second_fold(proc, folds_dir)
    finished = sorted(p.stem for p in folds_dir.glob("*.csv"))
    assert 1 <= len(finished) < 3, finished
    assert _run_loso_subprocess(config_file).wait(timeout=300) == 0
    pd.testing.assert_frame_equal(read_predictions(tmp_path / "loso"), read_predictions(reference))
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "loso" / "metrics_per_au.csv"),
        pd.read_csv(reference / "metrics_per_au.csv"),
    )


def test_several_seeds_report_mean_and_std(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "seeds", "loso", "seeds=[1,2]")
    first = loso_folds(read_manifest(tiny_data.casme2))[0].name
    run_dir, _ = run_protocol(cfg, fold_names=[first], progress=False)
    preds = read_predictions(run_dir)
    assert sorted(preds["seed"].unique()) == [1, 2]
    summary = json.loads((run_dir / "summary.json").read_text())
    per_seed = [summary["per_seed"][s]["pooled_binary_f1"] for s in ("1", "2")]
    assert summary["metrics"]["pooled_binary_f1"] == pytest.approx(np.nanmean(per_seed))
    assert summary["metrics_std"]["pooled_binary_f1"] == pytest.approx(
        np.std(per_seed, ddof=1), nan_ok=True
    )


def test_runtime_settings_may_differ_between_shards(loso_run, tiny_data):
    _, run_dir, _ = loso_run
    other = tiny_config(
        tiny_data, run_dir.parent, "loso", "loso", "preprocess.workers=2", "strict=true"
    )
    again, _ = run_protocol(other, progress=False)
    assert again == run_dir


def test_changed_manifest_is_refused_instead_of_mixing_stale_folds(tiny_data, tmp_path):
    manifest = read_manifest(tiny_data.casme2)
    path = tmp_path / "m.csv"
    manifest.to_csv(path, index=False)
    cfg = tiny_config(tiny_data, tmp_path, "stale", "loso", f"data.manifests=['{path}']")
    first = loso_folds(manifest)[0].name
    run_protocol(cfg, fold_names=[first], progress=False)
    manifest.loc[0, "aus"] = "1+2"
    manifest.to_csv(path, index=False)
    with pytest.raises(ValueError, match="changed"):
        run_protocol(cfg, progress=False)


def test_text_answers_are_written_parsed_and_reported_beside_the_linear_head(tiny_data, tmp_path):
    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "text",
        "loso",
        "model.head=both",
        "model.text.formats=[list,json]",
        "generation.max_answer_tokens=24",
    )
    run_dir, tables = run_protocol(cfg, [first], progress=False)
    predictions = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    assert {"answer_list", "answer_json"} <= set(predictions.columns)
    summary = json.loads((run_dir / "summary.json").read_text())["text_answers"]
    aus = tables.aus
    for fmt in ("list", "json"):
        failures = sum(not parse_answer(fmt, aus, text).ok for text in predictions[f"answer_{fmt}"])
        assert summary[fmt]["parse_failures"] == failures  # counted, not raised
        assert summary[fmt]["n_answers"] == len(predictions)
        assert summary[fmt]["distinct_answers"] == predictions[f"answer_{fmt}"].nunique()
    reliance = json.loads((run_dir / "summary.json").read_text())["reliance"]
    assert set(reliance) == {"list", "json"}
    assert 0 <= reliance["list"]["own_vs_other"] <= 1
    assert reliance["list"]["n_clips"] == len(predictions)
    per_au = pd.read_csv(run_dir / "metrics_per_au.csv")
    assert set(per_au["head"]) == {"linear", "text:list", "text:json"}
    assert "Text answers, format `list`" in (run_dir / "report.md").read_text()
    assert "Reliance, format `json`" in (run_dir / "report.md").read_text()


def _keys(rows: list[tuple[str, str, str]], prints: list[str] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=["dataset", "subject", "clip"])
    if prints is not None:
        frame["fingerprint"] = prints
    return frame


def test_copied_clips_under_another_subject_are_refused_naming_both(tiny_data, tmp_path):
    manifest = read_manifest(tiny_data.casme2)
    subject = manifest["subject"].iloc[0]
    copies = manifest[manifest["subject"] == subject].assign(subject=subject.upper() + "X")
    copies["clip"] = copies["clip"] + "_renamed"
    path = tmp_path / "leaky.csv"
    pd.concat([manifest, copies]).to_csv(path, index=False)
    cfg = tiny_config(tiny_data, tmp_path, "leaky", "loso", f"data.manifests=['{path}']")
    clip = manifest["clip"].iloc[0]
    both = rf"casme2/{subject}/{clip} \(train\) = casme2/{subject.upper()}X/{clip}_renamed \(test\)"
    with pytest.raises(LeakageError, match=both):
        run_protocol(cfg, progress=False)
    assert not (tmp_path / "leaky" / "folds").exists()


def test_cross_domain_target_made_of_renamed_source_clips_is_refused():
    source = _keys([("casme2", "sub01", "a"), ("casme2", "sub02", "b")], ["p1", "p2"])
    target = _keys([("samm", "006", "x"), ("samm", "007", "y")], ["p3", "p2"])
    with pytest.raises(LeakageError, match=r"casme2/sub02/b \(train\) = samm/007/y \(test\)"):
        cross_folds(source, target)
    assert cross_folds(source, target.assign(fingerprint=["p3", "p4"]))[0].name == "casme2_to_samm"


def test_a_clip_sharing_some_frames_with_a_clip_of_the_other_side_is_refused():
    source = _keys([("casme2", "sub01", "a"), ("casme2", "sub02", "b")], ["f1 f2 f3", "f4 f5"])
    shifted = _keys([("samm", "006", "x"), ("samm", "007", "y")], ["f9", "f2 f3 f8"])
    with pytest.raises(LeakageError, match=r"casme2/sub01/a \(train\) = samm/007/y \(test\)"):
        cross_folds(source, shifted)
    distinct = shifted.assign(fingerprint=["f9", "f7 f8"])
    assert cross_folds(source, distinct)[0].name == "casme2_to_samm"


def test_a_single_frame_or_a_few_frames_of_a_test_clip_on_the_train_side_are_refused(tmp_path):
    from au_llm.config import PreprocessConfig
    from au_llm.preprocess.cache import ClipCache
    from au_llm.preprocess.run import preprocess_manifest
    from tests.preprocess.conftest import manifest_row, write_folder

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (24, 24, 3), np.uint8) for _ in range(30)]

    def clip(dataset, name, images):
        folder = write_folder(tmp_path / dataset / name, images, ext="png")
        row = manifest_row(name, frames_dir=folder, onset=1, apex=1, offset=len(images))
        return row | {"dataset": dataset, "subject": name}

    rows = [clip("samm", "whole", frames)]
    rows += [clip("casme2", f"f{k}", [frames[k]]) for k in range(30)]
    rows += [clip("casme2", "middle", frames[12:15])]
    rows += [clip("casme2", "other", [rng.integers(0, 255, (24, 24, 3), np.uint8)])]
    manifest = pd.DataFrame(rows)
    cache = ClipCache(tmp_path / "cache", PreprocessConfig(size=16, align="none", workers=0))
    manifest["fingerprint"] = preprocess_manifest(manifest, cache, progress=False)["fingerprint"]
    target = manifest.iloc[:1]
    for k in range(1, len(manifest) - 1):  # every single frame, and three frames of the middle
        with pytest.raises(LeakageError, match=r"casme2/f\d+|casme2/middle"):
            cross_folds(manifest.iloc[k : k + 1], target)
    assert cross_folds(manifest.iloc[-1:], target)[0].name == "casme2_to_samm"


def test_fold_names_and_files_never_collide(tmp_path):
    manifest = _keys([("x-y", "z", "a"), ("x", "y-z", "b"), ("x", "../../../../ESCAPED", "c")])
    names = [fold.name for fold in loso_folds(manifest)]
    assert len(set(names)) == 3
    paths = [RunLayout(tmp_path).fold_predictions(1, name) for name in names]
    assert len(set(paths)) == 3
    for path in paths:
        assert path.parent == tmp_path / "folds" / "seed1"


def test_run_name_must_be_one_folder_name(tiny_data, tmp_path):
    for name in ("../../x", "a/b", ".."):
        cfg = tiny_config(tiny_data, tmp_path / "runs", "x")
        cfg.name = name
        with pytest.raises(ValueError, match="run name .*must lie directly in out_dir"):
            start_run(cfg)
    assert not any(tmp_path.rglob("config.yaml"))


def test_folds_with_another_thread_count_are_refused(loso_run, tiny_data, tmp_path):
    _, run_dir, _ = loso_run
    threads = torch.get_num_threads()
    other = tiny_config(tiny_data, run_dir.parent, "loso", "loso", "train.num_threads=2")
    try:
        with pytest.raises(ValueError, match=r"computed with 1 CPU threads, this process uses 2"):
            run_protocol(other, progress=False)
    finally:
        torch.set_num_threads(threads)
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    record = sorted((copy / "folds").glob("seed*/*.json"))[0]
    record.write_text(json.dumps({**json.loads(record.read_text()), "num_threads": 3}))
    with pytest.raises(ValueError, match="different CPU thread counts"):
        build_report(copy)


def test_stale_temporaries_of_a_run_are_removed_at_start(tiny_data, tmp_path):
    cfg = tiny_config(tiny_data, tmp_path, "tmp")
    stale = tmp_path / "tmp" / "folds" / "seed1" / ".sub01.csv.k1ll3d.tmp"
    stale.parent.mkdir(parents=True)
    stale.write_text("half")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    start_run(cfg)
    assert not stale.exists()


def test_explanations_are_written_and_their_faithfulness_reported(tiny_data, tmp_path):
    from au_llm.explain import parse_explanation

    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    cfg = tiny_config(
        tiny_data, tmp_path, "explained", "loso", "model.explain=true",
        "generation.max_explanation_tokens=16",
    )  # fmt: skip
    run_dir, tables = run_protocol(cfg, [first], progress=False)
    predictions = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    manifest = read_manifest(tiny_data.casme2)
    test_rows = manifest[manifest["subject"] == first]
    assert sorted(predictions["au_raw"].astype(str)) == sorted(test_rows["au_raw"])
    summary = json.loads((run_dir / "summary.json").read_text())["explanations"]
    assert summary["n_explanations"] == len(predictions)
    linear = [
        {au for au in tables.aus if row[au_column(au, "pred")] == 1}
        for _, row in predictions.iterrows()
    ]
    named = [parse_explanation(text).aus & set(tables.aus) for text in predictions["explanation"]]
    agreement = np.mean([a == b for a, b in zip(named, linear, strict=True)])
    assert summary["agreement_with_linear_head"] == pytest.approx(agreement)
    assert sum(summary["kinds"].values()) == len(predictions)
    per_au = pd.read_csv(run_dir / "metrics_per_au.csv")
    assert set(per_au["head"]) == {"linear", "explanation"}
    report = (run_dir / "report.md").read_text()
    assert "Explanations (" in report and report.count("Example explanation (") == 3
    again = run_protocol(cfg, [first], progress=False)[0]  # resumed: nothing retrained
    assert pd.read_csv(again / "predictions.csv", keep_default_na=False).equals(predictions)


def test_a_vision_head_is_reported_beside_the_main_head_and_folds_record_their_size(
    tiny_data, tmp_path
):
    from au_llm.model.checkpoint import build_model
    from au_llm.model.spec import ModelSpec
    from au_llm.param_groups import trainable_parameter_count
    from au_llm.reports.vision import vision_frame

    extra = ("model.vision_head=true", "train.vision_weight=0.5", "eval.threshold_policy=train")
    cfg = tiny_config(tiny_data, tmp_path, "vision", "loso", *extra)
    run_dir, tables = run_protocol(cfg, progress=False)
    frame = read_predictions(run_dir)
    for au in tables.aus:
        assert {f"AU{au:02d}_prob_vision", f"AU{au:02d}_pred_vision"} <= set(frame.columns)
    summary = json.loads((run_dir / "summary.json").read_text())
    recomputed = compute_tables(vision_frame(frame, tables.aus), tables.aus).summary["metrics"]
    assert summary["vision_head"]["metrics"] == pytest.approx(recomputed, nan_ok=True)
    assert summary["vision_head"]["metrics"] != pytest.approx(summary["metrics"], nan_ok=True)
    assert "Vision head" in (run_dir / "report.md").read_text()
    spec = ModelSpec.from_sections(cfg.model, tables.aus, cfg.preprocess, cfg.sampling)
    size = trainable_parameter_count(build_model(spec, seed=0)[0])
    for path in run_dir.glob("folds/*/*.json"):
        record = json.loads(path.read_text())
        assert record["trainable_parameters"] == size and record["seconds"] > 0
