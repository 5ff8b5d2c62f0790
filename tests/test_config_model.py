import pytest

from au_llm.config import ConfigError, load_config
from au_llm.config_model import (
    BackboneConfig,
    LLMConfig,
    LoraConfig,
    ModelConfig,
    TextConfig,
    TinyLLMConfig,
)


def test_the_defaults_are_a_valid_linear_head_on_a_tiny_llm():
    model = ModelConfig()
    assert (model.head, model.llm.source, model.explain) == ("linear", "tiny", False)
    assert model.text.formats == ["list", "yesno", "json", "names"]
    assert BackboneConfig(depth=34).depth == 34, "depth is a setting of the ResNet family only"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: BackboneConfig(name="slow", depth=34),
            r"model.backbone.depth = 34: expected 50, 101 or 152",
        ),
        (lambda: BackboneConfig(mid_pool=[1, 2]), r"mid_pool = \[1, 2\]: expected \[T, H, W\]"),
        (lambda: BackboneConfig(dropout=1.0), r"dropout = 1.0: expected 0 <= p < 1"),
        (lambda: LoraConfig(target_modules=[]), r"target_modules: expected at least one"),
        (lambda: TinyLLMConfig(vocab_size=100), r"vocab_size = 100: expected at least 259"),
        (lambda: TinyLLMConfig(hidden_size=100, num_heads=3), r"divisible by num_heads"),
        (lambda: LLMConfig(source="hub"), r"model.llm.source = 'hub': expected one of"),
        (lambda: LLMConfig(source="path"), r"'path' needs model.llm.path"),
        (lambda: LLMConfig(chat_template="yes"), r"chat_template = 'yes': expected one of auto"),
        (lambda: TextConfig(formats=["list", "list"]), r"expected distinct formats"),
        (lambda: TextConfig(formats=["xml"]), r"model.text.formats = 'xml': expected one of"),
        (
            lambda: ModelConfig(head="text", reader="none"),
            r"model.head = 'text' needs an LLM",
        ),
    ],
)
def test_an_invalid_model_setting_names_its_key(build, message):
    with pytest.raises(ConfigError, match=message):
        build()


def test_explanations_need_an_llm_and_model_errors_surface_through_load_config():
    with pytest.raises(ConfigError, match=r"model.explain needs an LLM"):
        load_config(None, ["model.reader=none", "model.explain=true"])
    with pytest.raises(ConfigError, match=r"model.head = 'words': expected one of linear"):
        load_config(None, ["model.head=words"])
    cfg = load_config(None, ["model.head=both", "model.text.formats=[json]"])
    assert cfg.model.head == "both" and cfg.model.text.formats == ["json"]


@pytest.mark.parametrize(
    ("overrides", "text_head", "explains"),
    [
        ([], False, False),
        (["model.head=both"], True, False),
        (["model.head=text", "model.explain=true", "train.explain_weight=0.5"], True, True),
        (["model.explain=true"], False, True),
    ],
)
def test_the_switches_follow_head_and_explanation(overrides, text_head, explains):
    model = load_config(None, overrides).model
    assert (model.has_text_head, model.explain) == (text_head, explains)
    assert load_config(None, overrides).model.llm.chat_template == "auto"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.reader=gpt"], r"model.reader = 'gpt': expected one of llm, llm_reinit"),
        (["model.llm.source=none"], r"source = 'none' was replaced by model.reader = none"),
        (["model.reader=mlp", "model.au_queries=true"], r"model.au_queries needs an LLM reader"),
        (["model.reader=none", "model.llm.readout=mix"], r"readout = 'mix' needs an LLM reader"),
        (["model.reader=attention", "model.llm.tuning=norms"], r"tuning = 'norms' needs an LLM"),
        (["model.llm.tuning=all"], r"model.llm.tuning = 'all': expected one of lora, norms"),
        (["model.llm.readout=layer"], r"readout_layer = 0: expected a layer >= 1 with readout"),
        (["model.llm.readout_layer=1"], r"readout_layer = 1: expected .* and 0 otherwise"),
        (
            ["model.llm.readout=layer", "model.llm.readout_layer=3"],
            r"readout_layer = 3: the tiny LLM has 2 layer",
        ),
        (["model.projector.tokens=cells"], r"mid_pool = \[\] gives 0 cell\(s\)"),
        (
            ["model.projector.tokens=cells", "model.backbone.mid_pool=[1,2,2]"],
            r"gives 4 cell\(s\) but model.llm.n_visual_tokens = 1",
        ),
    ],
)
def test_reader_and_recipe_options_are_checked_naming_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_reader_and_recipe_options_that_fit_together_load():
    cfg = load_config(
        None,
        [
            "model.reader=llm_reinit",
            "model.llm.readout=layer",
            "model.llm.readout_layer=1",
            "model.llm.tuning=norms",
            "model.au_queries=true",
            "model.projector.tokens=cells",
            "model.backbone.mid_pool=[1,2,2]",
            "model.llm.n_visual_tokens=4",
        ],
    ).model
    assert cfg.has_llm and cfg.reads_prompt and cfg.llm.readout_layer == 1
    control = load_config(None, ["model.reader=attention"]).model
    assert control.reads_prompt and not control.has_llm
    assert not load_config(None, ["model.reader=mlp"]).model.reads_prompt
