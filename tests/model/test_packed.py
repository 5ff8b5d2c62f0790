from __future__ import annotations

import copy

import pytest
import torch

from au_llm.model import modeling_au_llm
from au_llm.model import packed as packed_module
from au_llm.model.engine import PromptCache
from au_llm.model.llm import lora_parameters
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.packed import block_attention_mask, packed_decode, unpack_suffix
from tests.model import (
    FORWARD_TERMS,
    build_tiny,
    clips,
    float64_copy,
    gradient_terms,
    one_torch_thread,
    tiny_model_config,
    tiny_spec,
)
from tests.tolerance import assert_all_as_accurate, assert_as_accurate

PLACEHOLDER_PROMPT = "Frames <video> show a face ; the onset <video> is subtle . Which AUs ?"


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def test_block_mask_prefix_causal_and_suffixes_apart() -> None:
    mask = block_attention_mask(2, 2, 2, torch.float32, torch.device("cpu"))[0, 0]
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],  # prefix token 0
        [1, 1, 0, 0, 0, 0],  # prefix token 1
        [1, 1, 1, 0, 0, 0],  # sample 0, suffix token 0
        [1, 1, 1, 1, 0, 0],  # sample 0, suffix token 1
        [1, 1, 0, 0, 1, 0],  # sample 1, suffix token 0
        [1, 1, 0, 0, 1, 1],  # sample 1, suffix token 1
    ]
    assert mask.min() == torch.finfo(torch.float32).min


def _hidden_and_grads(model: AULLM, hidden_fn) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    hidden = hidden_fn()
    weights = torch.linspace(-1, 1, hidden.numel(), dtype=hidden.dtype).reshape(hidden.shape)
    (hidden * weights).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return hidden.detach(), grads


def _perturbed_tiny(arch: str, prompt: str | None, n_tokens: int) -> AULLM:
    """A tiny model in eval mode (dropout off; gradients still flow) with non-zero LoRA B."""
    model = build_tiny(
        tiny_spec(tiny_model_config(arch, prompt=prompt, n_visual_tokens=n_tokens), 3), seed=0
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in lora_parameters(model.llm):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _two_calls(model: AULLM, x: torch.Tensor) -> torch.Tensor:
    """A batch-1 prefix pass with gradients, then the suffixes."""
    decoder, embed = model.llm.get_decoder(), model.llm.get_input_embeddings()
    cache = PromptCache.of(decoder, embed(model.prompt_ids[: model._segment_lengths[0]]))
    return model._llm_read(model.get_visual_tokens(x), cache)


def _training_pass(model: AULLM, x: torch.Tensor) -> torch.Tensor:
    """The training pass: no prompt cache given."""
    return model._llm_read(model.get_visual_tokens(x), None)


@pytest.mark.parametrize(
    ("arch", "prompt", "n_tokens"),
    [("qwen2", None, 1), ("llama", None, 1), ("qwen2", PLACEHOLDER_PROMPT, 2)],
)
def test_packed_pass_equals_prefix_cache_pass_with_gradients(
    arch: str, prompt: str | None, n_tokens: int
) -> None:
    model = _perturbed_tiny(arch, prompt, n_tokens)
    exact_model = float64_copy(model)
    x = clips(4)
    old_hidden, old_grads = _hidden_and_grads(model, lambda: _two_calls(model, x))
    new_hidden, new_grads = _hidden_and_grads(model, lambda: _training_pass(model, x))
    exact_hidden, exact_grads = _hidden_and_grads(
        exact_model, lambda: _two_calls(exact_model, x.double())
    )
    assert new_hidden.shape == (4, 32)
    assert_as_accurate(new_hidden, old_hidden, exact_hidden, terms=FORWARD_TERMS, name="hidden")
    assert new_grads.keys() == old_grads.keys()
    assert {n for n in new_grads if "lora_A" in n}, "LoRA A gets no gradient"
    assert_all_as_accurate(new_grads, old_grads, exact_grads, terms=gradient_terms(4))


def test_a_packed_sequence_over_the_limit_runs_as_two_calls_with_gradients(monkeypatch) -> None:
    model = _perturbed_tiny("qwen2", PLACEHOLDER_PROMPT, 2)
    x = clips(4)
    packed_tokens = model._segment_lengths[0] + 4 * model.suffix_length
    calls: list[int] = []

    def spy(decoder, prefix, suffix):
        calls.append(suffix.shape[0])
        return packed_decode(decoder, prefix, suffix)

    monkeypatch.setattr(modeling_au_llm, "packed_decode", spy)
    monkeypatch.setattr(packed_module, "PACKED_MAX_TOKENS", packed_tokens)
    _hidden_and_grads(model, lambda: _training_pass(model, x))
    assert calls == [4], "a packed sequence at the limit runs as one call"

    monkeypatch.setattr(packed_module, "PACKED_MAX_TOKENS", packed_tokens - 1)
    long_hidden, long_grads = _hidden_and_grads(model, lambda: _training_pass(model, x))
    assert calls == [4], "a packed sequence over the limit must not run as one call"
    # The same kernels as an explicit prefix pass followed by the suffixes: equal exactly.
    two_hidden, two_grads = _hidden_and_grads(model, lambda: _two_calls(model, x))
    assert torch.equal(long_hidden, two_hidden)
    assert long_grads.keys() == two_grads.keys()
    assert {n for n in long_grads if "lora_A" in n}, "LoRA A gets no gradient"
    assert all(torch.equal(long_grads[n], two_grads[n]) for n in two_grads)


def test_packed_pass_without_prefix_is_per_sample_causal() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0).eval()
    decoder = model.llm.get_decoder()
    suffix = torch.randn(3, 2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        packed = unpack_suffix(packed_decode(decoder, suffix[0, :0], suffix), 0, 3)[:, -1]
        alone = decoder(inputs_embeds=suffix, use_cache=False).last_hidden_state[:, -1]
        exact_decoder = copy.deepcopy(decoder).double()
        exact = exact_decoder(inputs_embeds=suffix.double(), use_cache=False).last_hidden_state
    assert_as_accurate(packed, alone, exact[:, -1], terms=64, name="packed")
