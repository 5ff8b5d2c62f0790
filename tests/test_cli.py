import logging
import subprocess
import sys
from pathlib import Path

import cv2
import pandas as pd
import pytest

from au_llm.data.frames import index_frames
from au_llm.data.manifest import read_manifest
from au_llm.recipes.cli import main
from au_llm.recipes.experiment import run_protocol
from tests.conftest import CONFIG_DIR, tiny_config

REPO = Path(__file__).resolve().parents[1]


def test_manifest_csv_accepts_frame_folders_and_videos(tiny_data, tmp_path, capsys):
    row = read_manifest(tiny_data.casme2).iloc[0]
    frames = [cv2.imread(str(p)) for _, p in sorted(index_frames(Path(row["frames_dir"])).items())]
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, frames[0].shape[1::-1]
    )
    for frame in frames:
        writer.write(frame)
    writer.release()
    table = pd.DataFrame(
        {
            "subject": ["s1", "s2"],
            "clip": ["from_frames", "from_video"],
            "frames_dir": [row["frames_dir"], ""],
            "video": ["", "clip.mp4"],
            "onset": [row["onset"], 0],
            "offset": [row["offset"], len(frames) - 1],
            "aus": ["1+2", "12"],
        }
    )
    table.to_csv(tmp_path / "mine.csv", index=False)
    out = tmp_path / "manifest.csv"
    assert main(["manifest", "csv", "--table", str(tmp_path / "mine.csv"), "--out", str(out)]) == 0
    manifest = read_manifest(out)
    assert list(manifest["clip"]) == ["from_frames", "from_video"]
    assert manifest.loc[1, "video"] == str(video) and manifest.loc[1, "n_frames"] == len(frames)
    assert "2 clips written" in capsys.readouterr().out


def test_preprocess_writes_report_and_preview(tiny_data, tmp_path):
    report = tmp_path / "report.csv"
    args = ["preprocess", "--manifest", str(tiny_data.casme2), "--config"]
    args += [str(CONFIG_DIR / "tiny_cpu_loso.yaml"), "--report", str(report), "--preview", "2"]
    assert main([*args, f"data.cache_dir={tmp_path / 'cache'}"]) == 0
    statuses = pd.read_csv(report)["status"]
    assert len(statuses) == len(read_manifest(tiny_data.casme2))
    assert set(statuses) <= {"ok", "fallback"}
    assert (tmp_path / "preview.png").read_bytes().startswith(b"\x89PNG")


def test_report_rebuilds_outputs_of_a_run(tiny_data, tmp_path, capsys):
    first = sorted(read_manifest(tiny_data.casme2)["subject"])[0]
    run_dir, _ = run_protocol(tiny_config(tiny_data, tmp_path, "r"), [first], progress=False)
    (run_dir / "predictions.csv").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "predictions.csv").is_file()
    assert "binF1" in capsys.readouterr().out


def test_errors_are_reported_with_the_file_not_a_traceback(tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    args = ["loso", "--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml")]
    assert main([*args, f"data.manifests=['{missing}']", f"out_dir={tmp_path}"]) == 2
    assert str(missing) in capsys.readouterr().err
    assert main(["loso", "--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml"), "train.lrr=1"]) == 2
    assert "train.lrr" in capsys.readouterr().err


def _bad_yaml(tmp_path: Path) -> Path:
    text = (CONFIG_DIR / "tiny_cpu_loso.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("color: gray", "color: purple"))
    assert "purple" in bad.read_text()
    return bad


def test_an_error_in_the_file_is_blamed_on_the_file_even_with_overrides(tmp_path, capsys):
    bad = _bad_yaml(tmp_path)
    assert main(["loso", "--config", str(bad), "train.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}: preprocess.color = 'purple'" in err and "command line" not in err


def test_the_files_protocol_must_match_the_sub_command(capsys):
    assert main(["cross", "--config", str(CONFIG_DIR / "tiny_cpu_loso.yaml")]) == 2
    err = capsys.readouterr().err
    assert "protocol is 'loso', but the command is `au-llm cross`" in err


@pytest.mark.parametrize("script", ["loso", "cross", "demo"])
def test_the_module_entry_point_is_the_cli(script, tmp_path):
    help_run = subprocess.run(
        [sys.executable, "-m", "au_llm.recipes.cli", script, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert help_run.returncode == 0 and f"usage: au-llm {script}" in help_run.stdout
    if script == "demo":
        return
    bad = subprocess.run(
        [sys.executable, "-m", "au_llm.recipes.cli", script, "--config", str(_bad_yaml(tmp_path))],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "preprocess.color = 'purple'" in bad.stderr


@pytest.mark.parametrize(
    "text",
    ["train: !!python/object/apply:os.system ['true']\n", "train: {lr: [1,\n", "a: &x 1\nb: *x\n"],
    ids=["python-tag", "syntax", "alias"],
)
def test_a_hostile_or_broken_config_exits_2_naming_the_file(tmp_path, capsys, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "m")]) == 2
    assert str(path) in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_a_damaged_model_folder_exits_2_naming_the_file(tmp_path, capsys):
    from au_llm.model.checkpoint import build_model, save_checkpoint
    from tests.model import one_torch_thread, tiny_model_config, tiny_spec

    with one_torch_thread():
        model, processor = build_model(tiny_spec(tiny_model_config(reader="none"), 3), seed=0)
    save_checkpoint(model, processor, {}, tmp_path / "model")
    meta = tmp_path / "model" / "model.json"
    meta.write_text(meta.read_text()[:55])
    argv = ["predict", "--model", str(tmp_path / "model"), "--input", str(tmp_path / "rec")]
    assert main([*argv, "--out", str(tmp_path / "p.csv")]) == 2
    assert f"{meta}: not a readable JSON file" in capsys.readouterr().err


def test_predict_inputs_given_in_several_options_are_all_kept():
    from au_llm.recipes.parser import build_parser

    argv = ["predict", "--model", "m", "--input", "a.mp4", "b", "--input", "c.csv", "--out", "o"]
    assert build_parser().parse_args(argv).input == [Path("a.mp4"), Path("b"), Path("c.csv")]


def test_an_override_with_an_escape_character_exits_2_naming_it(tmp_path, capsys):
    config = str(CONFIG_DIR / "tiny_cpu_loso.yaml")
    assert main(["loso", "--config", config, f"out_dir={tmp_path}", "name=run\x1b[2J"]) == 2
    err = capsys.readouterr().err
    assert "override 'name=run\\x1b[2J' holds the control character U+001B" in err
    assert "\x1b" not in err and not list(tmp_path.iterdir())


def _bad_llm(kind: str, root: Path) -> Path:
    """An LLM folder or GGUF file that must not train: ``kind`` says what is wrong with it."""
    from tests.model import drop_weights, save_local_hf_model, save_tiny_gguf

    if kind == "truncated-gguf":
        save_tiny_gguf(root / "whole.gguf")
        (root / "cut.gguf").write_bytes((root / "whole.gguf").read_bytes()[:4000])
        return root / "cut.gguf"
    folder = root / kind
    template = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    save_local_hf_model(
        folder,
        layers=2,
        arch="llama",
        chat_template=template if kind == "hostile-template" else None,
        vocab_size=8 if kind == "small-vocabulary" else 64,
    )
    if kind == "missing-layer":
        drop_weights(folder, "model.layers.0.")
    return folder


class _Recorder(logging.Handler):
    """Keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize(
    ("kind", "said"),
    [
        ("missing-layer", "is not a complete model: 9 weights missing from its files"),
        ("hostile-template", "chat_template.jinja cannot be used: it ran past"),
        ("small-vocabulary", "tokens but the model's vocabulary (config.json vocab_size) has 8"),
        ("truncated-gguf", "cut.gguf (damaged, truncated or not a model file?)"),
    ],
    ids=["missing-layer", "hostile-template", "small-vocabulary", "truncated-gguf"],
)
def test_an_llm_that_would_train_wrong_or_hang_exits_2_naming_it(
    tiny_data, tmp_path, capsys, kind, said
):
    llm = _bad_llm(kind, tmp_path)
    heard = _Recorder()
    logging.getLogger("transformers").addHandler(heard)
    argv = [
        "loso",
        "--config",
        str(CONFIG_DIR / "tiny_cpu_loso.yaml"),
        f"out_dir={tmp_path / 'runs'}",
        f"data.cache_dir={tiny_data.cache_dir}",
        f"data.manifests=['{tiny_data.casme2}']",
        "model.llm.source=path",
        f"model.llm.path={llm}",
    ]
    try:
        assert main(argv) == 2
    finally:
        logging.getLogger("transformers").removeHandler(heard)
    err = capsys.readouterr().err
    assert "au-llm loso: error: model.llm.path: " in err and said in err and str(llm) in err
    assert "Traceback" not in err
    # au-llm's error names the missing weights; transformers' own loading report stays quiet.
    assert not [r.getMessage()[:80] for r in heard.records if r.levelno >= logging.WARNING]
