from __future__ import annotations

import pytest
import torch

from au_llm.model.engine import PromptCache
from au_llm.model.llm import lora_parameters
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.packed import block_attention_mask, packed_decode, unpack_suffix
from tests.model import build_tiny, clips, one_torch_thread, tiny_model_config, tiny_spec

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
    weights = torch.linspace(-1, 1, hidden.numel()).reshape(hidden.shape)
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
    x = clips(4)
    decoder, embed = model.llm.get_decoder(), model.llm.get_input_embeddings()
    prefix_len = model._segment_lengths[0]

    def two_calls() -> torch.Tensor:  # batch-1 prefix pass with gradients, then the suffixes
        cache = PromptCache.of(decoder, embed(model.prompt_ids[:prefix_len]))
        return model._llm_read(model.get_visual_tokens(x), cache)

    def packed() -> torch.Tensor:
        return model._llm_read(model.get_visual_tokens(x), None)

    old_hidden, old_grads = _hidden_and_grads(model, two_calls)
    new_hidden, new_grads = _hidden_and_grads(model, packed)
    assert new_hidden.shape == (4, 32)
    assert (new_hidden - old_hidden).abs().max() <= 1e-5
    assert new_grads.keys() == old_grads.keys()
    assert {n for n in new_grads if "lora_A" in n}, "LoRA A gets no gradient"
    for name, grad in new_grads.items():
        assert (grad - old_grads[name]).abs().max() <= 1e-5, name


def test_packed_pass_without_prefix_is_per_sample_causal() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0).eval()
    decoder = model.llm.get_decoder()
    suffix = torch.randn(3, 2, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        packed = unpack_suffix(packed_decode(decoder, suffix[0, :0], suffix), 0, 3)[:, -1]
        alone = decoder(inputs_embeds=suffix, use_cache=False).last_hidden_state[:, -1]
    assert (packed - alone).abs().max() <= 1e-5
