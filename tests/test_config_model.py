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
    assert (model.head, model.llm.source, model.explain.weight) == ("linear", "tiny", 0.0)
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
    with pytest.raises(ConfigError, match=r"model.explain.weight > 0 needs an LLM"):
        load_config(None, ["model.reader=none", "model.explain.weight=1"])
    with pytest.raises(ConfigError, match=r"model.head = 'words': expected one of linear"):
        load_config(None, ["model.head=words"])
    cfg = load_config(None, ["model.head=both", "model.text.formats=[json]"])
    assert cfg.model.head == "both" and cfg.model.text.formats == ["json"]


@pytest.mark.parametrize(
    ("overrides", "text_head", "explains"),
    [
        ([], False, False),
        (["model.head=both"], True, False),
        (["model.head=text", "model.explain.weight=0.5"], True, True),
        (["model.explain.weight=1"], False, True),
    ],
)
def test_the_derived_switches_follow_head_and_explanation_weight(overrides, text_head, explains):
    model = load_config(None, overrides).model
    assert (model.has_text_head, model.explains) == (text_head, explains)
    assert load_config(None, overrides).model.llm.chat_template == "auto"
