"""model.reader: the LLM and its controls build, train, count and keep their fixed parts."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig

from au_llm.config import LoraConfig
from au_llm.config_checks import READERS
from au_llm.model import llm as llm_module
from au_llm.model import readers
from au_llm.model.checkpoint import build_model
from au_llm.model.llm import ByteTokenizer, lora_parameters, norm_parameters
from au_llm.model.readers import lora_parameter_count, mlp_width
from au_llm.model.visual_slots import VISUAL_TOKEN_ID
from au_llm.param_groups import trainable_parameter_count
from tests.model import build_tiny, clips, one_torch_thread, tiny_model_config, tiny_spec

# The tiny LLM of tiny_model_config: hidden 32, 2 layers, 4 heads, 2 key/value heads (head width
# 8), MLP 64, LoRA r 4 on q_proj (32 -> 32) and v_proj (32 -> 16).
H, LAYERS, KV, INTERMEDIATE, R = 32, 2, 16, 64, 4
LORA = LAYERS * R * ((H + H) + (H + KV))
RMSNORM = H
EXTRA = {
    "none": 0,
    "llm": LORA,
    "llm_reinit": LORA,
    "llm_random_prompt": LORA,
    "mlp": 2 * H * 13 + 13 + H,  # m = round((896 - 32) / 65) = 13
    "resmlp": LAYERS * (RMSNORM + 2 * (H * H + H)) + RMSNORM,
    "attention": (3 * H * H + 3 * H) + (H * H + H) + 2 * RMSNORM,
    "transformer": (3 * H * H + 3 * H) + (H * H + H) + 3 * RMSNORM + 3 * H * INTERMEDIATE,
}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model(reader: str = "llm", seed: int = 0, **llm):
    cfg = tiny_model_config(reader=reader)
    for key, value in llm.items():
        setattr(cfg.llm, key, value)
    return build_tiny(tiny_spec(cfg, 3), seed=seed)


@pytest.mark.parametrize("reader", READERS)
def test_each_reader_builds_trains_one_step_and_counts_what_it_trains(reader):
    assert set(EXTRA) == set(READERS)
    model = _model(reader)
    baseline = trainable_parameter_count(_model("none"))
    assert trainable_parameter_count(model) == baseline + EXTRA[reader]
    assert model.projector.out_dim == H  # the configured LLM's hidden size, for every reader
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    optimizer = torch.optim.SGD(model.trainable_parameters(), lr=0.1)
    logits = model(clips(2))
    (logits * torch.arange(1.0, 4.0)).sum().backward()
    optimizer.step()
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
    after = model.trainable_state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert any(k.startswith("backbone.") for k in moved) and "head.weight" in moved
    if reader not in ("none", "llm", "llm_reinit", "llm_random_prompt"):
        assert any(k.startswith("reader.") for k in moved), "the control reader must train"
    if reader.startswith("llm"):  # LoRA B starts at zero: it moves first
        assert any("lora_B" in k for k in moved)


def test_the_mlp_control_matches_the_lora_count_of_smollm2_without_its_weights():
    config = LlamaConfig(  # SmolLM2-135M's shape
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
    )
    lora = LoraConfig(r=16, target_modules=["q_proj", "v_proj"])
    count = lora_parameter_count(config, lora)
    assert count == 30 * 16 * ((576 + 576) + (576 + 192))
    width = mlp_width(count, 576)
    assert abs(2 * 576 * width + width + 576 - count) <= (2 * 576 + 1) / 2
    everything = LoraConfig(r=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    assert lora_parameter_count(config, everything) == 30 * 8 * 2 * ((576 + 576) + (576 + 192))


def test_readers_without_a_prompt_read_only_the_llms_config(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the LLM's weights must not be loaded")

    monkeypatch.setattr(readers, "load_base_llm", refuse)
    monkeypatch.setattr(llm_module, "_tiny_model", refuse)
    for reader in ("none", "mlp", "resmlp"):
        model, processor = build_model(tiny_spec(tiny_model_config(reader=reader), 3), seed=0)
        assert model.llm is None and model.base_identity is None and processor.tokenizer is None
        assert model.projector.out_dim == H


def test_the_reinitialised_llm_differs_from_the_base_and_is_the_same_in_every_fold():
    base = _model("llm").llm.state_dict()
    first = _model("llm_reinit", seed=1)
    second = _model("llm_reinit", seed=2)  # another fold's trainable weights
    weights = [k for k in base if "lora_" not in k and k.endswith("weight")]
    assert weights
    for key in weights:
        assert torch.equal(first.llm.state_dict()[key], second.llm.state_dict()[key]), key
        if "norm" not in key:
            assert not torch.equal(first.llm.state_dict()[key], base[key]), key
    first.reset_trainable(5)  # a later fold of the same process keeps the base
    for key in weights:
        assert torch.equal(first.llm.state_dict()[key], second.llm.state_dict()[key]), key
    frozen = [p for p in first.llm.parameters() if not p.requires_grad]
    assert frozen and {id(p) for p in lora_parameters(first.llm)} == {
        id(p) for p in first.llm.parameters() if p.requires_grad
    }
    cfg = tiny_model_config(reader="llm_reinit")
    cfg.reader_seed = 1
    other = build_tiny(tiny_spec(cfg, 3), seed=1)
    key = "model.embed_tokens.weight"
    assert not torch.equal(other.llm.state_dict()[key], first.llm.state_dict()[key])


def test_the_random_prompt_is_fixed_by_its_seed_and_keeps_length_and_special_tokens():
    def prompt(reader: str, seed: int = 0) -> list[int]:
        cfg = tiny_model_config(reader=reader, prompt="Frames <video> then text", n_visual_tokens=1)
        cfg.reader_seed = seed
        return build_model(tiny_spec(cfg, 3), seed=7)[1].prompt_ids.tolist()

    plain, random = prompt("llm"), prompt("llm_random_prompt")
    assert len(random) == len(plain) and random == prompt("llm_random_prompt")
    assert random[0] == plain[0] == ByteTokenizer.bos_id
    assert random.index(VISUAL_TOKEN_ID) == plain.index(VISUAL_TOKEN_ID)
    ordinary = set(ByteTokenizer(512).ordinary_ids())
    changed = [a != b for a, b in zip(plain, random, strict=True)]
    assert sum(changed) >= len(plain) - 4 and all(
        token in ordinary for token, c in zip(random, changed, strict=True) if c
    )
    assert prompt("llm_random_prompt", seed=1) != random
    spec = tiny_spec(tiny_model_config(reader="llm_random_prompt"), 3)
    model, processor = build_model(spec, seed=0)
    given = [i for i in processor.prompt_ids.tolist() if i != VISUAL_TOKEN_ID]
    assert model.prompt_ids.tolist() == given  # the model reads the random ids
    assert processor.to_dict() == build_model(spec, seed=1)[1].to_dict()  # fixed for the run


def test_the_attention_reader_reads_the_prompt_and_its_last_position():
    model = _model("attention").eval()
    x = clips(2)
    with torch.no_grad():
        logits = model(x)
        model.prompt_embeds.mul_(2.0)  # another prompt
        other = model(x)
    assert (logits - other).abs().max() > 1e-4
    assert model.prompt_embeds.shape == (len(model.prompt_ids), H)
    assert "prompt_embeds" not in model.state_dict()  # rebuilt from the base, never saved


def test_frozen_and_norm_tuning_train_what_they_say():
    frozen = _model("llm", tuning="frozen")
    assert not any(p.requires_grad for p in frozen.llm.parameters())
    assert not lora_parameters(frozen.llm)
    assert trainable_parameter_count(frozen) == trainable_parameter_count(_model("none"))
    norms = _model("llm", tuning="norms")
    trained = [p for p in norms.llm.parameters() if p.requires_grad]
    assert {id(p) for p in trained} == {id(p) for p in norm_parameters(norms.llm)}
    assert sum(p.numel() for p in trained) == (2 * LAYERS + 1) * H
    initial = [p.detach().clone() for p in trained]
    optimizer = torch.optim.SGD(norms.trainable_parameters(), lr=0.5)
    norms(clips(2)).sum().backward()
    optimizer.step()
    assert any(not torch.equal(p, q) for p, q in zip(trained, initial, strict=True))
    assert any(k.startswith("llm.") and "norm" in k for k in norms.trainable_state_dict())
    norms.reset_trainable(3)  # the next fold starts from the base's norm weights again
    assert all(torch.equal(p, q) for p, q in zip(trained, initial, strict=True))
    norms.place("cpu", "bf16")
    assert all(p.dtype == torch.float32 for p in trained)
    assert norms.llm.get_input_embeddings().weight.dtype == torch.bfloat16


def test_the_residual_mlp_starts_as_the_norm_of_its_input_and_again_after_a_reset():
    reader = readers.ResMLPReader(H, blocks=30, eps=1e-5)
    tokens = torch.randn(4, 2, H) * 3.0

    def rms_norm(x: torch.Tensor) -> torch.Tensor:
        x = x.double()
        return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)

    assert torch.allclose(reader(tokens).double(), rms_norm(tokens), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for block in reader.blocks:
            block[-1].weight.normal_()  # as a trained stack's would be
    assert not torch.allclose(reader(tokens).double(), rms_norm(tokens), atol=1e-2)
    reader.reset_parameters()
    assert torch.allclose(reader(tokens).double(), rms_norm(tokens), rtol=1e-5, atol=1e-5)
