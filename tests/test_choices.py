"""Each kind of choice is one table; the config checks and the command line read it.

A name added to a table (here with ``monkeypatch.setitem``, as an edit of the owning module
would) is one the config check accepts and the CLI offers and lists, with no other edit; a
config check or CLI option holding its own copy of the names fails these tests.
"""

from __future__ import annotations

import argparse
import ast
from dataclasses import fields
from pathlib import Path

import pytest

from au_llm.answers import FORMATS, AnswerFormat, ParsedAnswer, parse_answer, target_answer
from au_llm.config import BackboneConfig, ConfigError, TextConfig, TrainConfig, load_config
from au_llm.config_checks import PRECISIONS, AlignMode, FacePolicy, LaunchMode, Precision, choices
from au_llm.data.build import MANIFEST_KINDS, TABLE_FILE, ManifestKind, build_manifest
from au_llm.data.builders import SMIC_KIND
from au_llm.model.backbones import BACKBONES
from au_llm.predict.config import PredictConfig
from au_llm.protocols import PROTOCOLS, Fold, Protocol
from au_llm.recipes.cli import predict_options
from au_llm.recipes.parser import build_parser
from au_llm.synth.plan import DIFFICULTIES
from au_llm.synth.styles import SYNTH_STYLES

PACKAGE = Path(__file__).resolve().parents[1] / "au_llm"
CONFIG = PACKAGE.parent / "configs" / "tiny_cpu_loso.yaml"


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def _option(parser: argparse.ArgumentParser, dest: str) -> argparse.Action:
    return next(action for action in parser._actions if action.dest == dest)


def _help(parser: argparse.ArgumentParser, *command: str) -> str:
    for name in command:
        parser = _subcommands(parser)[name]
    return parser.format_help()


def test_protocols_are_the_subcommands_and_the_config_choices(monkeypatch):
    parser = build_parser()
    assert set(PROTOCOLS) <= set(_subcommands(parser))
    for name, protocol in PROTOCOLS.items():
        assert f"run a {protocol.title} experiment" in _help(parser)
        assert load_config(CONFIG, [f"protocol={name}", "data.target_manifests=[t.csv]"])
    with pytest.raises(ConfigError, match="protocol = 'lopo': expected one of loso, lodo, cross"):
        load_config(CONFIG, ["protocol=lopo"])

    def one_fold(source, target):
        return [Fold("all", source, source)]

    monkeypatch.setitem(PROTOCOLS, "lopo", Protocol("leave-one-pose-out", one_fold))
    assert load_config(CONFIG, ["protocol=lopo"]).protocol == "lopo"
    assert "run a leave-one-pose-out experiment" in _help(build_parser())
    assert "--folds" in _help(build_parser(), "lopo")


def test_a_protocol_with_a_target_needs_target_manifests():
    targeted = [name for name, protocol in PROTOCOLS.items() if protocol.target]
    assert targeted == ["cross"]
    with pytest.raises(ConfigError, match="protocol 'cross' needs data.target_manifests"):
        load_config(CONFIG, ["protocol=cross", "data.target_manifests=[]"])


def test_backbones_are_the_config_choices(monkeypatch):
    for name in BACKBONES:
        assert BackboneConfig(name=name).name == name
    with pytest.raises(ConfigError, match=f"expected one of {', '.join(BACKBONES)}$"):
        BackboneConfig(name="vit")
    monkeypatch.setitem(BACKBONES, "vit", BACKBONES["led3dcnn"])
    assert BackboneConfig(name="vit").name == "vit"


def test_manifest_kinds_are_the_cli_choices(monkeypatch, tmp_path):
    kind = _option(_subcommands(build_parser())["manifest"], "kind")
    assert list(kind.choices) == [*MANIFEST_KINDS, SMIC_KIND]
    table = tmp_path / "clips.csv"
    table.write_text("x\n")
    seen = {}

    def build(table, strict):
        seen.update(table=table, strict=strict)
        return "built"

    monkeypatch.setitem(MANIFEST_KINDS, "meb", ManifestKind("MEB's own table", TABLE_FILE, build))
    assert build_manifest("MEB", table=table, strict=True) == "built"
    assert seen == {"table": table, "strict": True}
    assert "meb" in _option(_subcommands(build_parser())["manifest"], "kind").choices
    assert "meb: MEB's own table" in " ".join(_help(build_parser(), "manifest").split())


def test_synthetic_styles_and_difficulties_are_the_cli_choices(monkeypatch):
    synth = _subcommands(build_parser())["synth"]
    assert list(_option(synth, "style").choices) == list(SYNTH_STYLES)
    assert list(_option(synth, "difficulty").choices) == list(DIFFICULTIES)
    monkeypatch.setitem(SYNTH_STYLES, "smic", SYNTH_STYLES["casme2"])
    assert "smic" in _option(_subcommands(build_parser())["synth"], "style").choices


def test_answer_formats_are_the_config_choices(monkeypatch):
    for name in FORMATS:
        assert TextConfig(formats=[name]).formats == [name]
    with pytest.raises(ConfigError, match="model.text.formats = 'xml': expected one of"):
        TextConfig(formats=["xml"])
    count = AnswerFormat(
        "How many action units are present?",
        lambda aus, chosen: str(len(chosen)),
        lambda aus, text: ParsedAnswer(None, "a count names no AU"),
    )
    monkeypatch.setitem(FORMATS, "count", count)
    assert TextConfig(formats=["count"]).formats == ["count"]
    assert target_answer("count", [1, 2, 4], [2, 4]) == "2"
    assert parse_answer("count", [1, 2, 4], " 2 ").error == "a count names no AU"


def test_the_other_choices_of_the_cli_are_their_literals():
    subcommands = _subcommands(build_parser())
    predict = subcommands["predict"]
    assert tuple(_option(predict, "precision").choices) == PRECISIONS == choices(Precision)
    assert tuple(_option(predict, "face").choices) == choices(FacePolicy)
    assert tuple(_option(predict, "align").choices) == choices(AlignMode)
    for protocol in PROTOCOLS:
        assert tuple(_option(subcommands[protocol], "launch").choices) == choices(LaunchMode)
    for precision in PRECISIONS:
        assert TrainConfig(precision=precision).precision == precision
    with pytest.raises(ConfigError, match="train.precision = 'fp16': expected one of auto"):
        TrainConfig(precision="fp16")


def test_predict_options_are_the_predict_config_fields():
    predict = _subcommands(build_parser())["predict"]
    options = {a.dest for a in predict._actions if a.dest not in ("help", "model", "input", "out")}
    assert options <= {field.name for field in fields(PredictConfig)}, "an option would be lost"
    argv = ["predict", "--model", "m", "--input", "v.mp4", "--out", "o.csv", "--window", "9"]
    argv += ["--face", "all", "--plot", "--explain", "--precision", "bf16", "--cache-dir", "c"]
    chosen = predict_options(build_parser().parse_args(argv))
    assert chosen == PredictConfig(
        window=9, face="all", plot=True, explain=True, precision="bf16", cache_dir=Path("c")
    )


def _inline_choices(path: Path) -> list[int]:
    """Lines of ``check_choice`` calls whose allowed values are spelled in the call."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "check_choice":
            allowed = node.args[3] if len(node.args) > 3 else None
            if isinstance(allowed, ast.Tuple | ast.List | ast.Set | ast.Dict):
                lines.append(node.lineno)
    return lines


def test_config_checks_name_their_choices_instead_of_spelling_them(tmp_path):
    spelled = {
        path.relative_to(PACKAGE).as_posix(): _inline_choices(path)
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert {module: lines for module, lines in spelled.items() if lines} == {}
    sample = tmp_path / "m.py"
    sample.write_text('check_choice("a", "b", x, Color)\ncheck_choice("a", "b", x, ("p", "q"))\n')
    assert _inline_choices(sample) == [2]
