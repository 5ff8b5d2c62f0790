import io
import json
import shlex
import shutil
import tokenize
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from au_llm.data.manifest import read_manifest
from au_llm.recipes.cli import main
from au_llm.recipes.experiment import run_protocol
from au_llm.recipes.launch import run_local
from au_llm.recipes.run_config import saved_config, start_run
from au_llm.runs import layout
from au_llm.runs.layout import RunLayout
from au_llm.runs.run import Run
from tests.conftest import CONFIG_DIR, tiny_config

PACKAGE = Path(layout.__file__).resolve().parents[1]
FILE_NAMES = {
    value
    for name, value in vars(layout).items()
    if name.isupper() and isinstance(value, str) and "." in value.strip(".")
}


def subjects(tiny_data) -> list[str]:
    return sorted(read_manifest(tiny_data.casme2)["subject"].unique())


@pytest.fixture(scope="module")
def oracle_run(tiny_data, tmp_path_factory):
    """A finished tiny LOSO run with every optional output (test-oracle thresholds, 2 seeds)."""
    out = tmp_path_factory.mktemp("runs")
    cfg = tiny_config(
        tiny_data, out, "all", "loso", "eval.threshold_policy=test-oracle", "seeds=[1,2]"
    )
    run_dir, _ = run_protocol(cfg, progress=False)
    return run_dir


def test_a_run_writes_exactly_the_files_its_layout_names(oracle_run):
    run = Run.read(oracle_run)
    folder = run.layout
    expected = {folder.config, folder.env, folder.record, folder.preprocess_report}
    expected |= {folder.output(name) for name in (*layout.OUTPUTS, layout.ORACLE_THRESHOLDS)}
    for seed, fold in run.plan():
        expected |= {folder.fold_predictions(seed, fold), folder.fold_record(seed, fold)}
    written = {path for path in oracle_run.rglob("*") if path.is_file()}
    assert written == expected
    assert len(run.plan()) == 6


def test_only_the_layout_module_spells_a_run_file_name():
    spelled = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == Path(layout.__file__).resolve():
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        for token in tokens:
            if token.type == tokenize.STRING and token.string.strip("\"'") in FILE_NAMES:
                spelled.append(f"{path.relative_to(PACKAGE)}:{token.start[0]} {token.string}")
    assert {"run.json", "summary.json", "predictions.csv"} <= FILE_NAMES
    assert spelled == []


def test_the_plan_is_every_seed_times_every_fold_in_run_json(oracle_run, tiny_data):
    run = Run.read(oracle_run)
    names = subjects(tiny_data)
    assert run.plan() == [(seed, name) for seed in (1, 2) for name in names]
    assert run.info()["folds"] == names and run.info()["seeds"] == [1, 2]
    assert not (oracle_run / "plan.json").exists()
    record = run.read_fold_record(2, names[0])
    assert record["device"] == "cpu" and record["num_threads"] == 1


def test_reading_a_folder_without_a_run_names_the_missing_record(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run.json"):
        Run.read(tmp_path)


def test_resume_with_local_workers_uses_the_workers_thread_count(tiny_data, tmp_path):
    """A launcher whose own process has 2 threads resumes a run its 1-thread workers began."""
    cfg = tiny_config(
        tiny_data, tmp_path, "loso", "loso", "launch.mode=local", "launch.devices=cpu:2"
    )
    first = subjects(tiny_data)[0]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run_local(cfg, [first], progress=False, cluster="debug")
        torch.set_num_threads(2)
        run_dir, tables = run_local(cfg, progress=False, cluster="debug")
    finally:
        torch.set_num_threads(threads)
    assert tables is not None and tables.summary["n_folds"] == 3
    assert {r["num_threads"] for r in Run.read(run_dir).fold_records()} == {1}
    plain = replace(cfg, launch=replace(cfg.launch, mode="none"))
    assert run_protocol(plain, progress=False)[0] == run_dir


def test_a_finished_shard_reruns_as_a_no_op(tiny_data, tmp_path, capsys):
    args = ["--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml"), f"out_dir={tmp_path}", "name=sh"]
    args += [f"data.cache_dir={tiny_data.cache_dir}", f"data.manifests=['{tiny_data.casme2}']"]
    assert main(["loso", *args, "--shard", "2/2"]) == 0
    predictions = (tmp_path / "sh" / "predictions.csv").read_bytes()
    records = sorted((tmp_path / "sh" / "folds").rglob("*.json"))
    stamps = [path.stat().st_mtime_ns for path in records]
    capsys.readouterr()
    assert main(["loso", *args, "--shard", "2/2"]) == 0
    assert "partial: 1 of 3 folds" in capsys.readouterr().out
    assert (tmp_path / "sh" / "predictions.csv").read_bytes() == predictions
    assert [path.stat().st_mtime_ns for path in records] == stamps, "no fold is trained again"


def test_a_shard_without_folds_says_so_and_succeeds(tiny_data, tmp_path, capsys):
    cross = ["--config", str(CONFIG_DIR / "tiny_cpu_cross.yaml"), f"out_dir={tmp_path}"]
    cross += [f"data.cache_dir={tiny_data.cache_dir}", f"data.manifests=['{tiny_data.casme2}']"]
    cross += [f"data.target_manifests=['{tiny_data.samm}']", "name=x"]
    for _ in range(2):
        assert main(["cross", *cross, "--shard", "2/2"]) == 0
        assert "no fold of the run is finished yet" in capsys.readouterr().out
    assert Run.read(tmp_path / "x").plan() == [(1, "casme2_to_samm")]
    assert not (tmp_path / "x" / "predictions.csv").exists()


def test_fold_files_of_two_names_never_collide(tmp_path):
    folder = RunLayout(tmp_path)
    paths = {folder.fold_predictions(1, name) for name in ("a/b", "a_b", "a-b", "..")}
    assert len(paths) == 4 and all(p.parent == tmp_path / "folds" / "seed1" for p in paths)
    assert folder.fold_record(1, "a").suffix == ".json"
    assert json.dumps(str(folder.job_log("7_1"))).endswith('launch/logs/7_1_0_log.err"')


def test_a_run_folder_that_records_train_bf16_reads_and_resumes(oracle_run, tmp_path, capsys):
    copy = tmp_path / oracle_run.name
    copy.mkdir()
    for path in oracle_run.rglob("*"):
        if path.is_file():
            (copy / path.relative_to(oracle_run)).parent.mkdir(parents=True, exist_ok=True)
            (copy / path.relative_to(oracle_run)).write_bytes(path.read_bytes())
    saved = copy / "config.yaml"
    text = saved.read_text()
    assert "  precision: fp32\n" in text
    saved.write_text(text.replace("  precision: fp32\n", "  bf16: false\n"))  # an older run
    run = Run.read(copy)
    assert saved_config(run).train.precision == "fp32"
    assert main(["status", str(copy)]) == 0 and main(["report", str(copy)]) == 0
    assert (
        start_run(replace(saved_config(run), out_dir=str(tmp_path))).layout.root == copy.resolve()
    )
    assert "error" not in capsys.readouterr().err


def test_an_older_run_folder_resumes_with_the_command_status_prints(oracle_run, tmp_path, capsys):
    copy = tmp_path / oracle_run.name
    shutil.copytree(oracle_run, copy)
    saved = copy / "config.yaml"
    saved.write_text(saved.read_text().replace("  precision: fp32\n", "  bf16: false\n"))
    folder, (seed, fold) = RunLayout(copy), Run.read(copy).plan()[0]
    finished = folder.fold_predictions(seed, fold).read_bytes()
    folder.fold_predictions(seed, fold).unlink()
    folder.fold_record(seed, fold).unlink()
    capsys.readouterr()
    assert main(["status", str(copy)]) == 0
    printed = capsys.readouterr().out.split("To run what is missing: au-llm ")[1].splitlines()[0]
    assert main(shlex.split(printed)) == 0, capsys.readouterr().err
    assert folder.fold_predictions(seed, fold).read_bytes() == finished
    assert "  precision: fp32\n" in saved.read_text()  # the folder's config, in current keys
    given = ["loso", "--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml"), "train.bf16=false"]
    assert main(given) == 2  # a config the user gives still has the old key refused
    assert "train.precision" in capsys.readouterr().err
