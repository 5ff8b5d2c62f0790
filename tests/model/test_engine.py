import ast
import inspect
from pathlib import Path

import pytest
import torch

from au_llm.config import GenerationConfig
from au_llm.model.engine import AnswerTrie, PromptCache, generate_answers, repeated_tail
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.reliance import answer_logliks, dataset_reliance, token_reliance
from tests.model import (
    both_heads_model,
    clips,
    one_torch_thread,
)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def test_a_trie_allows_exactly_the_continuations_of_its_sequences():
    trie = AnswerTrie([[5, 6, 0], [5, 7, 0], [8, 0]])
    assert sorted(AnswerTrie.allowed(trie.root)) == [5, 8]
    assert sorted(AnswerTrie.allowed(trie.root[5])) == [6, 7]
    assert AnswerTrie.allowed(trie.root[5][6][0]) == []
    assert trie.longest == 3


def test_a_prompt_cache_serves_any_batch_and_is_never_changed_by_it():
    from transformers import Qwen2Config

    config = Qwen2Config(
        hidden_size=8, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=2
    )
    layers = tuple((torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)) for _ in range(2))
    cache = PromptCache(layers, 3)
    frozen = [(k.clone(), v.clone()) for k, v in layers]
    batch = cache.for_batch(5, config)
    assert batch.get_seq_length() == 3
    keys = batch.layers[0].keys
    assert keys.shape == (5, 1, 3, 4) and torch.equal(keys[4], layers[0][0][0])
    batch.update(torch.ones(5, 1, 1, 4), torch.ones(5, 1, 1, 4), 0)
    assert batch.get_seq_length() == 4
    for (k, v), (k0, v0) in zip(cache.key_values, frozen, strict=True):
        assert torch.equal(k, k0) and torch.equal(v, v0)
    assert cache.for_batch(2, config).get_seq_length() == 3


MODEL_USERS = ("au_llm/model/engine.py", "au_llm/reliance.py", "au_llm/inference.py")
# What lies inside the model: its private attributes, its LLM and the embeddings it builds.
MODEL_INSIDES = ("llm", "suffix_embeds", "decoder")


def model_reach(source: str) -> list[str]:
    """``model.<attribute>`` accesses of ``source`` that reach past the model's public methods."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            private = node.attr.startswith("_") and not node.attr.startswith("__")
            if node.value.id == "model" and (private or node.attr in MODEL_INSIDES):
                found.append(f"line {node.lineno}: model.{node.attr}")
    return found


@pytest.mark.parametrize("path", MODEL_USERS)
def test_generation_and_reliance_use_only_the_models_public_methods(path):
    source = (Path(__file__).resolve().parents[2] / path).read_text(encoding="utf-8")
    assert model_reach(source) == []
    broken = "def f(model):\n    return model._past(1), model.llm.get_input_embeddings()\n"
    assert model_reach(broken) == ["line 2: model._past", "line 2: model.llm"]


@pytest.mark.parametrize(
    "function", [generate_answers, answer_logliks, token_reliance, dataset_reliance]
)
def test_generation_and_reliance_are_typed_with_the_model_class(function):
    assert inspect.signature(function).parameters["model"].annotation == "AULLM"


def test_repeated_tail_finds_loops_only():
    assert repeated_tail([5, 1, 2, 3, 1, 2, 3], 3) == 3
    assert repeated_tail([5, 1, 2, 3, 1, 2, 3], 4) == 0
    assert repeated_tail([1, 2, 3, 4, 9, 1, 2, 3, 4], 2) == 0  # repeated, but not in a row
    assert repeated_tail([7, 7], 1) == 1


def test_generation_stops_at_a_loop_and_keeps_the_text_before_it():
    model = both_heads_model().eval()
    processor = AULLMProcessor.from_spec(model.spec)
    instruction, eos = processor.instruction_ids("list"), processor.eos_id
    torch.manual_seed(0)
    with torch.no_grad():
        tokens = model.get_visual_tokens(clips(4))
        cache = model.prompt_cache()
        options = {"eos_id": eos, "prompt_cache": cache, "max_new_tokens": 40}
        free = generate_answers(model, tokens, instruction, **options)
        stopped = generate_answers(model, tokens, instruction, **options, stop_repeat=1)
    assert GenerationConfig().stop_repeat > 0
    looped = [
        i
        for i, seq in enumerate(free)
        if any(repeated_tail(seq[:k], 1) for k in range(2, len(seq) + 1))
    ]
    assert looped, "the random model must loop for the test to mean anything"
    for seq, short in zip(free, stopped, strict=True):
        assert seq[: len(short)] == short
        assert not any(repeated_tail(short[:k], 1) for k in range(2, len(short) + 1))
    assert all(len(stopped[i]) < len(free[i]) for i in looped)
