from __future__ import annotations

import pytest
import torch

from au_llm.model import precision
from au_llm.model.llm import ByteTokenizer, load_base_llm, lora_parameters
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.visual_slots import VISUAL_TOKEN_ID, merge_visual_tokens
from tests.model import (
    FORWARD_TERMS,
    both_heads_model,
    build_tiny,
    clips,
    float64_copy,
    gradient_terms,
    one_torch_thread,
    tiny_model_config,
    tiny_spec,
)
from tests.tolerance import assert_all_as_accurate, assert_as_accurate


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


PLACEHOLDER_PROMPT = "Frames <video> show a face ; the onset <video> is subtle . Which AUs ?"


def _perturb_lora(model: AULLM, seed: int = 0) -> None:
    """LoRA B starts at zero (so A gets no gradient); give both non-trivial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in lora_parameters(model.llm):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))


def _logits_and_grads(model: AULLM, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
    model.zero_grad(set_to_none=True)
    logits = model(x)
    (logits * torch.arange(1, logits.shape[1] + 1)).mean().backward()  # gradients of order 0.1
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), grads


def test_shapes_and_projector_width() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 4), seed=0)
    x = clips(3)
    feats = model.get_clip_features(x)
    assert model.projector.in_dim == feats["mid"].shape[1] + feats["high"].shape[1]
    assert feats["mid"].shape == (3, 10368)
    assert model.get_visual_tokens(x).shape == (3, 1, 32)
    assert model(x).shape == (3, 4)
    with pytest.raises(ValueError, match=r"expected \[B, 1, 6, 64, 64\]"):
        model(clips(3, frames=5))


def test_gradients_reach_trainable_parts_but_not_base() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 3), seed=0)
    _perturb_lora(model)
    _, grads = _logits_and_grads(model, clips(2))
    for prefix in ("backbone.conv1.", "backbone.fc_high.", "projector.", "head.", "llm."):
        assert any(n.startswith(prefix) and g.abs().sum() > 0 for n, g in grads.items()), prefix
    lora_names = {n for n in grads if n.startswith("llm.")}
    assert lora_names and all("lora_A" in n or "lora_B" in n for n in lora_names)
    frozen = [p for n, p in model.llm.named_parameters() if "lora_" not in n]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    trainable = {id(p) for p in model.trainable_parameters()}
    assert not trainable & {id(p) for p in frozen}
    assert {id(p) for p in lora_parameters(model.llm)} <= trainable


@pytest.mark.parametrize(
    ("arch", "prompt", "n_tokens"),
    [("qwen2", None, 1), ("llama", None, 1), ("qwen2", PLACEHOLDER_PROMPT, 2)],
)
def test_fast_path_equals_straightforward_path(
    arch: str, prompt: str | None, n_tokens: int
) -> None:
    model = build_tiny(
        tiny_spec(tiny_model_config(arch, prompt=prompt, n_visual_tokens=n_tokens), 4), seed=0
    )
    _perturb_lora(model)
    model.eval()  # dropout off, BatchNorm fixed; gradients still flow
    x = clips(3)
    model.cfg.llm.fast_path = True
    fast_logits, fast_grads = _logits_and_grads(model, x)
    model.cfg.llm.fast_path = False
    slow_logits, slow_grads = _logits_and_grads(model, x)
    exact_logits, exact_grads = _logits_and_grads(float64_copy(model), x.double())
    assert_as_accurate(fast_logits, slow_logits, exact_logits, terms=FORWARD_TERMS, name="logits")
    assert fast_grads.keys() == slow_grads.keys()
    assert {n for n in fast_grads if "lora_" in n}, "LoRA gets no gradient"
    assert_all_as_accurate(fast_grads, slow_grads, exact_grads, terms=gradient_terms(3))


def test_fast_path_without_prefix_equals_straightforward_path(monkeypatch) -> None:
    cfg = tiny_model_config(prompt="<video> then a question ?")
    encode = ByteTokenizer.encode
    monkeypatch.setattr(
        ByteTokenizer,
        "encode",
        lambda self, text, add_special_tokens=True: encode(self, text, False),
    )
    model = build_tiny(tiny_spec(cfg, 2), seed=0)
    assert model._segment_lengths[0] == 0  # nothing to cache: the visual token comes first
    _perturb_lora(model)
    model.eval()
    fast_logits, fast_grads = _logits_and_grads(model, clips(2))
    model.cfg.llm.fast_path = False
    slow_logits, slow_grads = _logits_and_grads(model, clips(2))
    exact_logits, exact_grads = _logits_and_grads(float64_copy(model), clips(2).double())
    assert_as_accurate(fast_logits, slow_logits, exact_logits, terms=FORWARD_TERMS, name="logits")
    assert_all_as_accurate(fast_grads, slow_grads, exact_grads, terms=gradient_terms(2))


def test_visual_token_count_is_checked_where_tokens_enter_the_llm() -> None:
    text = [torch.zeros(3, 8), torch.zeros(0, 8)]  # one visual slot
    assert merge_visual_tokens(text, torch.ones(2, 1, 8)).shape == (2, 4, 8)
    with pytest.raises(ValueError, match="2 visual token\\(s\\) per clip but the prompt has 1"):
        merge_visual_tokens(text, torch.ones(2, 2, 8))


def test_explicit_prompt_cache_gives_the_same_logits_and_belongs_to_its_weights() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0)
    _perturb_lora(model)
    model.eval()
    x = clips(2)
    cache = model.prompt_cache()
    assert cache is not None and cache.length == model._segment_lengths[0]
    with torch.no_grad():
        cached = model(x, prompt_cache=cache)
        again = model(x, prompt_cache=cache)  # one cache serves any number of calls
        recomputed = model(x)
    with torch.no_grad():
        exact = float64_copy(model)(x.double())
    assert_as_accurate(cached, recomputed, exact, terms=FORWARD_TERMS, name="cached prompt")
    torch.testing.assert_close(again, cached, rtol=0, atol=0)  # the same kernels again
    # after a LoRA update (an optimizer step), the old cache is stale and a new one is needed
    _perturb_lora(model, seed=1)
    with torch.no_grad():
        stale = model(x, prompt_cache=cache)
        fresh = model(x, prompt_cache=model.prompt_cache())
    model.cfg.llm.fast_path = False
    with torch.no_grad():
        reference = model(x)
        exact = float64_copy(model)(x.double())
    assert_as_accurate(fresh, reference, exact, terms=FORWARD_TERMS, name="fresh cache")
    assert (stale - reference).abs().max() > 1e-4
    model.cfg.llm.fast_path = True
    with pytest.raises(ValueError, match="for inference"):
        model(x, prompt_cache=cache)  # gradients enabled: training recomputes the prefix
    model.train()
    with pytest.raises(RuntimeError, match="eval mode"):
        model.prompt_cache()


def test_reset_trainable_equals_fresh_build() -> None:
    cfg = tiny_model_config(dropout=0.1)
    model = build_tiny(tiny_spec(cfg, 3), seed=5)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    model(clips(2)).sum().backward()
    optimizer.step()  # changes every trainable weight and the BatchNorm statistics
    model.reset_trainable(7)
    reset_state = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    fresh = build_tiny(tiny_spec(cfg, 3), seed=7)
    fresh_state = fresh.trainable_state_dict()
    assert reset_state.keys() == fresh_state.keys()
    assert any("lora_A" in k for k in fresh_state) and any("running_mean" in k for k in fresh_state)
    for key, value in fresh_state.items():
        assert torch.equal(value, reset_state[key]), key
    other = build_tiny(tiny_spec(cfg, 3), seed=8).trainable_state_dict()
    assert not torch.equal(other["projector.mlp.0.weight"], fresh_state["projector.mlp.0.weight"])


def test_two_models_in_one_process_both_work() -> None:
    cfg = tiny_model_config()
    first = build_tiny(tiny_spec(cfg, 2), seed=0)
    _perturb_lora(first, seed=0)
    first.eval()
    x = clips(1)
    with torch.no_grad():
        before = first(x)
    second = build_tiny(tiny_spec(cfg, 2), seed=1)
    _perturb_lora(second, seed=1)
    second.eval()
    assert first.llm is not second.llm
    with torch.no_grad():
        other = second(x)
        after = first(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)  # the second build changed nothing
    assert (other - before).abs().max() > 1e-4
    optimizer = torch.optim.SGD(second.trainable_parameters(), lr=0.5)
    second.train()
    second(clips(2)).sum().backward()
    optimizer.step()
    with torch.no_grad():
        torch.testing.assert_close(first(x), before, rtol=0, atol=0)


def test_tiny_base_is_deterministic_and_identified() -> None:
    cfg = tiny_model_config()
    base = load_base_llm(cfg.llm)
    again = load_base_llm(cfg.llm)
    assert again is not base and again.model is not base.model
    first = base.model.state_dict()
    second = again.model.state_dict()
    assert first.keys() == second.keys()
    for name, value in second.items():
        assert torch.equal(value, first[name]), name
    assert again.identity == base.identity
    assert (
        again.identity["seed"] == cfg.llm.tiny.seed and len(again.identity["config_sha256"]) == 64
    )


def test_placeholder_count_must_match_visual_tokens() -> None:
    cfg = tiny_model_config(prompt="a <video> b <video> c", n_visual_tokens=1)
    with pytest.raises(ValueError, match="2 '<video>' placeholder.*n_visual_tokens = 1"):
        build_tiny(tiny_spec(cfg, 2), seed=0)


def test_the_model_checks_the_visual_slots_of_its_prompt_ids() -> None:
    spec = tiny_spec(tiny_model_config(), 2)
    two_slots = torch.tensor([1, 5, VISUAL_TOKEN_ID, 6, VISUAL_TOKEN_ID])
    with pytest.raises(ValueError, match="2 visual slot.*n_visual_tokens = 1.*do not match"):
        AULLM(spec, two_slots)
    with pytest.raises(ValueError, match="needs prompt_ids"):
        AULLM(spec)
    model = AULLM(spec, torch.tensor([1, 5, 6, VISUAL_TOKEN_ID, 7]))
    assert model.prompt_ids.tolist() == [1, 5, 6, 7] and model._segment_lengths == (3, 1)


def test_visual_token_goes_after_the_prompt() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0)
    expected = ByteTokenizer(model.cfg.llm.tiny.vocab_size).encode(model.cfg.llm.prompt)
    assert model.prompt_ids.tolist() == expected and expected[0] == ByteTokenizer.bos_id
    assert model._segment_lengths == (len(expected), 0)


def test_none_ablation_trains_without_llm() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(reader="none"), 3), seed=0)
    assert model.llm is None and model.base_identity is None
    assert model.projector.out_dim == 32 and model.head.in_features == 32
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    logits = model(clips(2))
    logits.sum().backward()
    optimizer.step()
    assert logits.shape == (2, 3)
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_frozen_base_in_bf16_keeps_trainable_weights_fp32() -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0)
    _perturb_lora(model)
    model.eval()
    model.place("cpu", "bf16")
    assert model.precision == "bf16"
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    logits, grads = _logits_and_grads(model, clips(2))
    assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters())
    assert any("lora_B" in n for n in grads)
    model.to("cpu")  # .to() alone never changes the base's dtype
    assert model.llm.get_input_embeddings().weight.dtype == torch.bfloat16
    model.place("cpu", "fp32")
    assert model.precision == "fp32"
    assert model.llm.get_input_embeddings().weight.dtype == torch.float32


def test_auto_precision_follows_native_bf16(monkeypatch) -> None:
    model = build_tiny(tiny_spec(tiny_model_config(), 2), seed=0)
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(precision, "bf16_native", lambda device, n=native: n)
        assert model.place("cpu", "auto").precision == expected
    with pytest.raises(ValueError, match="precision"):
        model.place("cpu", "fp16")


def test_skip_head_adds_a_linear_map_of_the_visual_token():
    model = both_heads_model(skip=True).eval()
    plain = both_heads_model(skip=False).eval()
    x = clips(2)
    with torch.no_grad():
        tokens = model.get_visual_tokens(x)
        with_skip = model(x)
        model.skip.weight.zero_()
        model.skip.bias.zero_()
        without = model(x)
    assert not torch.allclose(with_skip, without)
    assert plain.skip is None and "skip.weight" not in plain.trainable_state_dict()
    assert "skip.weight" in model.trainable_state_dict()
    with torch.no_grad():
        model.skip.bias.fill_(1.0)  # zero weights and a bias of 1 add exactly 1.0: same kernels
        torch.testing.assert_close(model.score_tokens(tokens), without + 1.0, rtol=0, atol=0)
