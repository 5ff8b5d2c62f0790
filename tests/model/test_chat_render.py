"""A chat template that hangs, floods or fails is refused with its file named, within seconds."""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pytest

from au_llm.config import LLMConfig
from au_llm.model import chat_render
from au_llm.model.llm import load_tokenizer
from tests.model import CHAT_TEMPLATE, save_local_hf_model

HOSTILE = {
    "nested-loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        r"ran past 100,000 lines of its own code",
    ),
    "macro-fan-out": (
        "{% macro f(n) %}{% if n > 0 %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(40) }}",
        r"ran past 100,000 lines",
    ),
    "doubling-namespace": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}"
        "{% endfor %}{{ ns.s }}",
        r"built a value of 1,048,576 characters",
    ),
    "doubling-statements": (
        "{% set s = 'x' %}" + "{% set s = s + s %}" * 40 + "{{ s }}",
        r"built a value of 1,048,576 characters",
    ),
    "flood": (
        "{% set s = 'x' * 900000 %}{% for i in range(1000) %}{{ s }}{% endfor %}",
        r"wrote more than 1,000,000 characters",
    ),
    "syntax-error": ("{% for m in messages %}", r"jinja2.TemplateSyntaxError: Unexpected end"),
    "raises": ("{{ raise_exception('no AU today') }}", r"jinja2.TemplateError: no AU today"),
    "type-error": ("{{ messages|length + 'x' }}", r"TypeError: unsupported operand"),
    "endless-recursion": ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", r"RecursionError"),
}


def _templated(tmp_path: Path, template: str) -> LLMConfig:
    folder = tmp_path / "llm"
    save_local_hf_model(folder, layers=1, chat_template=template)
    return LLMConfig(source="path", path=str(folder))


@pytest.mark.parametrize("name", HOSTILE)
def test_a_hostile_or_broken_template_is_refused_naming_its_file(tmp_path, name):
    template, reason = HOSTILE[name]
    tokenizer = load_tokenizer(_templated(tmp_path, template))
    tracer = sys.gettrace()
    start = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        tokenizer.render_chat("Analyse the following features.")
    assert time.perf_counter() - start < 30  # hours without the bounds
    message = str(caught.value)
    assert f"the chat template in {tmp_path / 'llm' / 'chat_template.jinja'} cannot be used" in (
        message
    )
    assert re.search(reason, message), message
    assert message.endswith("set model.llm.chat_template=off")
    assert sys.gettrace() is tracer  # the caller's trace function (a debugger's) is back


def test_lines_that_each_run_long_built_in_work_stop_at_the_time_backstop(tmp_path, monkeypatch):
    monkeypatch.setattr(chat_render, "MAX_SECONDS", 0.5)
    template = "{% for i in range(100000) %}{{ range(100000)|sum }}{% endfor %}"
    tokenizer = load_tokenizer(_templated(tmp_path, template))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"ran past 0.5 seconds"):
        tokenizer.render_chat("x")
    assert time.perf_counter() - start < 10


def test_a_plain_template_renders_as_transformers_renders_it(tmp_path):
    tokenizer = load_tokenizer(_templated(tmp_path, CHAT_TEMPLATE))
    user = "Analyse the following features."
    bounded = tokenizer.render_chat(user)
    plain = tokenizer.tokenizer.apply_chat_template(
        [{"role": "user", "content": user}], tokenize=False, add_generation_prompt=True
    )
    assert bounded == plain == f"<|user|> {user} <|end|> <|assistant|> "


def test_the_chat_template_setting_off_never_renders_a_broken_template(tmp_path):
    from au_llm.model.processing_au_llm import AULLMProcessor
    from tests.model import tiny_model_config, tiny_spec

    llm = _templated(tmp_path, HOSTILE["nested-loops"][0])
    cfg = tiny_model_config()
    cfg.llm = LLMConfig(source="path", path=llm.path, lora=cfg.llm.lora, chat_template="off")
    assert not AULLMProcessor.from_spec(tiny_spec(cfg, 3)).chat_template
