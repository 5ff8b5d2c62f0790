from __future__ import annotations

import copy

import pytest
import torch

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


@pytest.mark.parametrize(
    ("arch", "prompt", "n_tokens"),
    [("qwen2", None, 1), ("llama", None, 1), ("qwen2", PLACEHOLDER_PROMPT, 2)],
)
def test_packed_pass_equals_prefix_cache_pass_with_gradients(
    arch: str, prompt: str | None, n_tokens: int
) -> None:
    model = build_tiny(
        tiny_spec(tiny_model_config(arch, prompt=prompt, n_visual_tokens=n_tokens), 3), seed=0
    )
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in lora_parameters(model.llm):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    model.eval()  # dropout off; gradients still flow
    exact_model = float64_copy(model)

    def two_calls(model: AULLM, x: torch.Tensor) -> torch.Tensor:
        """A batch-1 prefix pass with gradients, then the suffixes."""
        decoder, embed = model.llm.get_decoder(), model.llm.get_input_embeddings()
        cache = PromptCache.of(decoder, embed(model.prompt_ids[: model._segment_lengths[0]]))
        return model._llm_read(model.get_visual_tokens(x), cache)

    def packed(model: AULLM, x: torch.Tensor) -> torch.Tensor:
        return model._llm_read(model.get_visual_tokens(x), None)

    x = clips(4)
    old_hidden, old_grads = _hidden_and_grads(model, lambda: two_calls(model, x))
    new_hidden, new_grads = _hidden_and_grads(model, lambda: packed(model, x))
    exact_hidden, exact_grads = _hidden_and_grads(
        exact_model, lambda: two_calls(exact_model, x.double())
    )
    assert new_hidden.shape == (4, 32)
    assert_as_accurate(new_hidden, old_hidden, exact_hidden, terms=FORWARD_TERMS, name="hidden")
    assert new_grads.keys() == old_grads.keys()
    assert {n for n in new_grads if "lora_A" in n}, "LoRA A gets no gradient"
    assert_all_as_accurate(new_grads, old_grads, exact_grads, terms=gradient_terms(4))


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
