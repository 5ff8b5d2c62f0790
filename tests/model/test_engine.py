import torch

from au_llm.model.engine import AnswerTrie, PromptCache


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
