import dataclasses
import re
import time
import typing
from pathlib import Path

import pytest

from au_llm.config import ConfigError, ExperimentConfig, load_config, save_config
from au_llm.config_keys import RENAMED_KEYS, RETIRED_KEYS

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONFIG_FILES = sorted(CONFIG_DIR.glob("*.yaml"))


def test_configs_folder_is_not_empty():
    assert len(CONFIG_FILES) >= 6


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: p.name)
def test_every_config_loads_and_opens_with_its_launch_command(path):
    cfg = load_config(path)
    assert isinstance(cfg, ExperimentConfig)
    first = path.read_text().splitlines()[0]
    assert first.startswith("# Launch: au-llm ")
    assert f"--config configs/{path.name}" in first


@pytest.mark.parametrize("name", ["casme2_loso.yaml", "samm_loso.yaml"])
def test_paper_presets_match_the_published_settings(name):
    cfg = load_config(CONFIG_DIR / name)
    assert (cfg.sampling.frames_per_clip, cfg.preprocess.size, cfg.preprocess.color) == (
        6,
        64,
        "gray",
    )
    assert cfg.model.backbone.name == "led3dcnn" and cfg.model.backbone.dropout == 0.3
    lora = cfg.model.llm.lora
    assert (lora.r, lora.alpha, lora.dropout, lora.target_modules) == (
        16,
        32,
        0.1,
        ["q_proj", "v_proj"],
    )
    t = cfg.train
    assert (t.optimizer, t.lr, t.weight_decay, t.epochs, t.batch_size) == (
        "adam",
        3e-5,
        0.005,
        350,
        256,
    )
    assert (t.loss, t.asl_gamma_neg, t.asl_gamma_pos, t.asl_clip) == ("asl", 4.0, 0.0, 0.05)
    assert cfg.seeds == [1]
    assert cfg.eval.threshold_policy == "fixed"


def test_cross_presets_use_the_shared_aus():
    for name in ("casme2_to_samm.yaml", "samm_to_casme2.yaml"):
        cfg = load_config(CONFIG_DIR / name)
        assert cfg.protocol == "cross" and cfg.data.aus == [2, 4, 7, 12]


def test_overrides_are_typed():
    cfg = load_config(CONFIG_DIR / "demo_casme2_loso.yaml", ["train.lr=1e-4", "seeds=[1,2]"])
    assert cfg.train.lr == 1e-4 and cfg.seeds == [1, 2]


def test_unknown_key_in_file_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.lrr"):
        load_config(bad)


def test_wrong_type_names_key_and_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*train\.epochs"):
        load_config(bad)


def test_unknown_override_key_names_the_key():
    with pytest.raises(ConfigError, match=r"command line.*model\.llm\.nope"):
        load_config(None, ["model.llm.nope=1"])


def test_invalid_value_is_rejected_by_validation():
    with pytest.raises(ConfigError, match="train.loss"):
        load_config(None, ["train.loss=mse"])
    with pytest.raises(ConfigError, match="model.llm.path"):
        load_config(None, ["model.llm.source=path"])
    with pytest.raises(ConfigError, match="target_manifests"):
        load_config(None, ["protocol=cross"])


def test_saved_config_round_trips(tmp_path):
    cfg = load_config(CONFIG_DIR / "samm_to_casme2.yaml", ["train.epochs=3"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


def test_explain_settings_are_validated():
    assert load_config(None).model.explain is False
    cfg = load_config(None, ["model.explain=true", "train.explain_weight=0.5"])
    assert (cfg.model.explain, cfg.train.explain_weight) == (True, 0.5)
    with pytest.raises(ConfigError, match="train.explain_weight"):
        load_config(None, ["train.explain_weight=-1"])
    with pytest.raises(ConfigError, match="needs an LLM"):
        load_config(None, ["model.explain=true", "model.reader=none"])


def test_each_choice_is_listed_once_for_the_config_and_the_command_line():
    from au_llm.config_checks import AlignMode, FacePolicy, LaunchMode, choices
    from au_llm.preprocess.tracks import FACE_POLICIES
    from au_llm.recipes.cli import build_parser

    def offered(command: str, option: str) -> tuple[str, ...]:
        sub = next(a for a in build_parser()._subparsers._group_actions)
        action = next(a for a in sub.choices[command]._actions if option in a.option_strings)
        return tuple(action.choices)

    assert offered("loso", "--launch") == choices(LaunchMode) == ("none", "local", "slurm")
    assert offered("predict", "--align") == choices(AlignMode) == ("clip", "frame", "none")
    assert offered("predict", "--face") == choices(FacePolicy) == FACE_POLICIES
    with pytest.raises(ConfigError, match=r"launch.mode = 'cloud': expected one of none, local"):
        load_config(None, ["launch.mode=cloud"])
    with pytest.raises(
        ConfigError, match=r"preprocess.align = 'warp': expected one of clip, frame"
    ):
        load_config(None, ["preprocess.align=warp"])


@pytest.mark.parametrize(
    ("yaml_text", "override"),
    [("train:\n  bf16: false\n", "train.bf16=false"), ("model:\n  llm:\n    dtype: auto\n", "")],
)
def test_retired_precision_keys_name_the_new_one(tmp_path, yaml_text, override):
    path = tmp_path / "old.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=r"old.yaml: .* replaced by train.precision"):
        load_config(path)
    if override:
        with pytest.raises(ConfigError, match=r"command line: train.bf16 .* train.precision"):
            load_config(None, [override])


@pytest.mark.parametrize(
    ("yaml_text", "old", "new"),
    [
        ("preprocess:\n  mode: frame\n", "preprocess.mode", "preprocess.align"),
        ("eval:\n  threshold: train\n", "eval.threshold", "eval.threshold_policy"),
        ("sampling:\n  test: onset_apex\n", "sampling.test", "sampling.test_strategy"),
    ],
)
def test_renamed_keys_are_refused_from_a_user_and_read_from_a_saved_run(
    tmp_path, yaml_text, old, new
):
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=rf"config.yaml: {old} was replaced by {new}"):
        load_config(path)
    with pytest.raises(ConfigError, match=rf"command line: {old} was replaced by {new}"):
        load_config(None, [f"{old}={yaml_text.split()[-1]}"])
    saved = load_config(path, saved=True)
    section, key = new.split(".")
    assert getattr(getattr(saved, section), key) == yaml_text.split()[-1]


def test_precision_setting_is_checked():
    assert load_config(None, ["train.precision=bf16"]).train.precision == "bf16"
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, ["train.precision=fp16"])


_ALIAS_BOMB = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]
"""


def test_an_alias_bomb_is_refused_at_once_naming_the_file(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(_ALIAS_BOMB)
    start = time.perf_counter()
    with pytest.raises(ConfigError, match=rf"{bomb}: line 1: YAML anchors and aliases"):
        load_config(bomb)
    assert time.perf_counter() - start < 2.0
    plain = tmp_path / "anchor.yaml"
    plain.write_text("train: &t {lr: 0.001}\n")
    with pytest.raises(ConfigError, match="anchors and aliases"):
        load_config(plain)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("train: !!python/object/apply:os.system ['touch {marker}']\n", "python/object/apply"),
        ("train: !!python/name:os.system\n", "python/name"),
        ("train: {lr: [1,\n", "not valid YAML"),
        ("train:\n  lr: 1\n lr: 2\n", "not valid YAML"),
    ],
    ids=["python-object", "python-name", "unclosed", "indentation"],
)
def test_python_tags_and_syntax_errors_name_the_file(tmp_path, text, expected):
    marker = tmp_path / "ran"
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("{marker}", str(marker)))
    with pytest.raises(ConfigError, match=rf"{path}: .*{expected}"):
        load_config(path)
    assert not marker.exists()


def test_a_config_that_is_not_utf8_names_the_file(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=rf"{path}: not a UTF-8 text file"):
        load_config(path)


@pytest.mark.parametrize("value", ["on", "off", "auto"])
def test_on_and_off_reach_a_text_setting_as_written(tmp_path, value):
    # YAML 1.1 reads on/off as booleans; the setting then got the text 'True'/'False'
    assert load_config(None, [f"model.llm.chat_template={value}"]).model.llm.chat_template == value
    path = tmp_path / "c.yaml"
    path.write_text(f"name: no\nmodel:\n  llm:\n    chat_template: {value}\n")
    cfg = load_config(path)
    assert cfg.model.llm.chat_template == value and cfg.name == "no"
    # a boolean setting still takes them
    assert load_config(None, ["train.compile=on"]).train.compile is True
    assert load_config(None, ["train.compile=off", "strict=yes"]).strict is True
    path.write_text("train:\n  compile: on\n  lr: 1e-3\n")
    assert load_config(path).train.compile is True and load_config(path).train.lr == 1e-3


def test_a_key_given_twice_in_a_file_is_refused(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("train:\n  lr: 0.1\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=rf"{path}: not valid YAML: .*duplicate key lr"):
        load_config(path)


@pytest.mark.parametrize("text", ["- 1\n- 2\n", "42\n", "just text\n"])
def test_a_file_that_is_not_a_mapping_of_sections_names_the_file(tmp_path, text):
    path = tmp_path / "flat.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf"{path}: expected a mapping of sections"):
        load_config(path)
    path.write_text("train: [1]\n")  # a section that is not a mapping
    with pytest.raises(ConfigError, match=rf"{path}: .*TrainConfig"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "shown"),
    [
        ("name=run\x1b[31m", r"'name=run\\x1b\[31m' holds the control character U\+001B"),
        ("model.llm.prompt=a\tb", r"'model.llm.prompt=a\\tb' holds .* U\+0009"),
        ("na\x07me=x", r"'na\\x07me=x' holds the control character U\+0007"),
        ("name=[", r"'name=\[': the value is not valid YAML"),
        ("name", r"'name': expected key=value"),
    ],
    ids=["escape", "tab", "bell-in-key", "unclosed", "no-equals"],
)
def test_a_malformed_override_is_named_with_its_control_characters_escaped(override, shown):
    with pytest.raises(ConfigError, match=rf"^command line: override {shown}") as caught:
        load_config(None, [override])
    assert "\x1b" not in str(caught.value) and "\x07" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("train.lr=nan", r"train.lr = nan: expected a finite number"),
        ("train.lr=.inf", r"train.lr = inf: expected a finite number"),
        ("launch.lock_timeout=.nan", r"launch.lock_timeout = nan"),
        ("eval.threshold_grid=[0.1,.nan,0.05]", r"eval.threshold_grid\[1\] = nan"),
        ("seeds=[[1]]", r"seeds\[0\] = \[1\]: expected a value of type int"),
        ("launch.slurm_extra={qos: [1]}", r"launch.slurm_extra.qos = \[1\]: expected .* str"),
    ],
)
def test_numbers_that_are_not_finite_and_nested_lists_are_refused(tmp_path, override, key):
    with pytest.raises(ConfigError, match=rf"command line: {key}"):
        load_config(None, [override])
    section, _, rest = override.partition(".")
    name, _, value = rest.partition("=")
    path = tmp_path / "c.yaml"
    if section in ("train", "launch", "eval"):
        path.write_text(f"{section}:\n  {name}: {value}\n")
        with pytest.raises(ConfigError, match=rf"{path}: {key}"):
            load_config(path)


@pytest.mark.parametrize(("old", "precision"), [("bf16: true", "auto"), ("bf16: false", "fp32")])
def test_a_saved_config_reads_train_bf16_as_the_precision_it_meant(tmp_path, old, precision):
    # train.bf16 was bfloat16 where the device computes it natively, float32 elsewhere: auto
    path = tmp_path / "config.yaml"
    path.write_text(f"train:\n  {old}\n  lr: 0.01\nmodel:\n  llm:\n    dtype: auto\n")
    cfg = load_config(path, saved=True)
    assert cfg.train.precision == precision and cfg.train.lr == 0.01
    with pytest.raises(ConfigError, match=rf"{path}: train.bf16 was replaced by train.precision"):
        load_config(path)
    path.write_text(f"train:\n  {old}\n  precision: bf16\n")  # both: the precision written wins
    assert load_config(path, saved=True).train.precision == "bf16"


def test_source_none_is_refused_from_a_user_and_read_from_a_saved_run_as_reader_none(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  llm:\n    source: none\n    tiny:\n      hidden_size: 64\n")
    with pytest.raises(ConfigError, match=r"config.yaml: .*replaced by model.reader = none"):
        load_config(path)
    saved = load_config(path, saved=True).model
    assert (saved.reader, saved.llm.source, saved.llm.tiny.hidden_size) == ("none", "tiny", 64)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.stage_epochs=[1,1]"], r"stage_epochs = \[1, 1\]: expected \[\] or three"),
        (["train.stage_epochs=[10,10,5]"], r"summing to train.epochs = 30"),
        (["train.stage_epochs=[-1,16,15]"], r"epoch counts >= 0"),
        (["train.vision_weight=-1"], r"train.vision_weight = -1"),
        (["train.vision_weight=0.5"], r"the vision loss needs model.vision_head: true"),
        (["train.stage_epochs=[5,5,20]"], r"the vision loss needs model.vision_head"),
        (["model.vision_head=true"], r"model.vision_head is trained only with"),
        (
            [
                "model.vision_head=true",
                "train.stage_epochs=[5,5,20]",
                "train.val_fraction=0.2",
                "train.patience=2",
            ],
            r"not with early stopping",
        ),
        (["eval.threshold_policy=val"], r"set train.val_fraction > 0"),
    ],
)
def test_stages_and_the_vision_head_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_stages_without_a_vision_stage_and_a_weighted_vision_head_load():
    staged = load_config(None, ["train.stage_epochs=[0,10,20]"]).train
    assert staged.stage_epochs == [0, 10, 20]
    cfg = load_config(None, ["model.vision_head=true", "train.vision_weight=0.5"])
    assert cfg.model.vision_head and cfg.train.vision_weight == 0.5


OLD_MODEL_SECTION = """model:
  head: both
  text:
    formats: [list, json]
    weight: 0.5
    linear_weight: 2.0
    format_weights: [3.0, 1.0]
    first_format_epochs: 2
    max_new_tokens: 40
    constrained: true
  explain:
    weight: 0.25
    max_new_tokens: 50
    stop_repeat: 3
"""


def test_a_saved_config_moves_loss_weights_and_decoding_settings_out_of_the_model(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(OLD_MODEL_SECTION)
    expected = load_config(
        None,
        [
            "model.head=both",
            "model.text.formats=[list,json]",
            "model.explain=true",
            "train.text_weight=0.5",
            "train.linear_weight=2.0",
            "train.format_weights=[3.0,1.0]",
            "train.first_format_epochs=2",
            "train.explain_weight=0.25",
            "generation.max_answer_tokens=40",
            "generation.constrained=true",
            "generation.max_explanation_tokens=50",
            "generation.stop_repeat=3",
        ],
    )
    assert load_config(path, saved=True) == expected
    # a weight of 0 was the model without explanations
    path.write_text("model:\n  explain:\n    weight: 0.0\n    max_new_tokens: 320\n")
    assert load_config(path, saved=True) == load_config(None)


@pytest.mark.parametrize("old", sorted(RENAMED_KEYS.keys() | RETIRED_KEYS.keys()))
def test_every_old_key_from_a_user_names_its_replacement(tmp_path, old):
    new = {**RETIRED_KEYS, **RENAMED_KEYS}[old]
    *sections, key = old.split(".")
    text = "".join(f"{'  ' * depth}{name}:\n" for depth, name in enumerate(sections))
    path = tmp_path / "config.yaml"
    path.write_text(text + f"{'  ' * len(sections)}{key}: 1\n")
    with pytest.raises(ConfigError, match=rf"config.yaml: {re.escape(old)} was replaced by"):
        load_config(path)
    with pytest.raises(ConfigError, match=re.escape(new)):
        load_config(None, [f"{old}=1"])


def _fields(cls: type) -> set[str]:
    """Every field name of a config dataclass and of the dataclasses it holds, recursively."""
    names = set()
    for item in dataclasses.fields(cls):
        names.add(item.name)
        kind = typing.get_type_hints(cls)[item.name]
        if dataclasses.is_dataclass(kind):
            names |= _fields(kind)
    return names


def test_the_model_section_holds_what_the_weights_are_only():
    """No loss weight, curriculum or decoding setting under ``model`` (one name, one place)."""
    from au_llm.config import GenerationConfig, ModelConfig, TrainConfig

    model = _fields(ModelConfig)
    training = _fields(TrainConfig)
    assert not model & training, model & training
    assert not model & _fields(GenerationConfig), model & _fields(GenerationConfig)
    forbidden = ("weight", "epochs", "max_", "constrained", "repeat", "schedule")
    assert not [name for name in model if any(word in name for word in forbidden)]
    assert _fields(GenerationConfig) and {"text_weight", "explain_weight"} <= training


def test_a_saved_explanation_weight_that_is_not_a_number_is_an_error_naming_the_key(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  explain:\n    weight: lots\n")
    with pytest.raises(ConfigError, match=r"config.yaml: model.explain.weight was replaced"):
        load_config(path, saved=True)
