from types import SimpleNamespace

import pytest
import torch

from au_llm.answers import parse_answer
from au_llm.model.engine import AnswerTrie, PromptCache, answer_trie
from au_llm.model.llm import ByteTokenizer


def walk(trie: AnswerTrie, eos: int) -> list[list[int]]:
    """Every path of the trie from the root to an end token."""
    paths, stack = [], [([], trie.root)]
    while stack:
        prefix, node = stack.pop()
        for token, child in node.items():
            if token == eos:
                paths.append(prefix)
            else:
                stack.append(([*prefix, token], child))
    return paths


def test_a_trie_allows_exactly_the_continuations_of_its_sequences():
    trie = AnswerTrie([[5, 6, 0], [5, 7, 0], [8, 0]])
    assert sorted(AnswerTrie.allowed(trie.root)) == [5, 8]
    assert sorted(AnswerTrie.allowed(trie.root[5])) == [6, 7]
    assert AnswerTrie.allowed(trie.root[5][6][0]) == []
    assert trie.longest == 3


@pytest.mark.parametrize("fmt", ["list", "yesno", "json", "names"])
def test_the_answer_trie_holds_one_parseable_answer_per_au_subset(fmt):
    tokenizer = ByteTokenizer(300)
    model = SimpleNamespace(spec=SimpleNamespace(aus=(1, 4, 12)), tokenizer=tokenizer)
    answers = [tokenizer.decode(ids) for ids in walk(answer_trie(model, fmt), tokenizer.eos_id)]
    assert len(answers) == 8
    parsed = {tuple(sorted(parse_answer(fmt, [1, 4, 12], text).present)) for text in answers}
    assert len(parsed) == 8 and () in parsed and (1, 4, 12) in parsed
    with pytest.raises(ValueError, match="too many answers"):
        answer_trie(model, fmt, max_answers=4)


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
