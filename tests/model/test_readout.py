"""model.llm.readout (a layer, a learnt mix), model.au_queries and cell tokens, against float64."""

from __future__ import annotations

import pytest
import torch

from au_llm.config import BackboneConfig, ProjectorConfig
from au_llm.model.checkpoint import build_model
from au_llm.model.llm import lora_parameters
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.projector import EnhancedFusionProjector
from au_llm.model.spec import ModelSpec
from tests.model import build_tiny, one_torch_thread, tiny_model_config, tiny_spec
from tests.tolerance import assert_near, max_error

AUS = (1, 2, 4)


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _model(seed: int = 0, queries: bool = False, **llm) -> AULLM:
    cfg = tiny_model_config()
    cfg.au_queries = queries
    for key, value in llm.items():
        setattr(cfg.llm, key, value)
    model = build_tiny(ModelSpec(cfg, AUS, 1, 6, 64), seed=seed)
    generator = torch.Generator().manual_seed(1)  # LoRA B starts at zero: give it values
    with torch.no_grad():
        for param in lora_parameters(model.llm):
            param.add_(0.1 * torch.randn(param.shape, generator=generator))
    return model.eval()


def _tokens(dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(3, 1, 32, generator=torch.Generator().manual_seed(2), dtype=dtype)


def _paths(model: AULLM, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Logits of the packed (training), prompt-cache and straightforward paths."""
    out = {}
    with torch.no_grad():
        out["packed"] = model.score_tokens(tokens)
        out["cached"] = model.score_tokens(tokens, model.prompt_cache())
        model.cfg.llm.fast_path = False
        out["straightforward"] = model.score_tokens(tokens)
        model.cfg.llm.fast_path = True
    return out


HEAD_TERMS = 32
"""The longest sum of the float32 head (``fp32_linear``) that a float64 model still runs: the
tiny LLM's hidden size."""

LLM_TERMS = 64
"""The longest sum of a float32 pass of the tiny LLM: its MLP's intermediate width."""


def _layer_reference(model: AULLM, tokens: torch.Tensor, layer: int) -> torch.Tensor:
    """``head(norm(h_layer))`` at the last position, from the full LLM's hidden states (the last
    of them is already after the final norm)."""
    embed = model.llm.get_input_embeddings()
    inputs = torch.cat([embed(model.prompt_ids).expand(len(tokens), -1, -1), tokens], 1)
    with torch.no_grad():
        states = model.llm(inputs_embeds=inputs, output_hidden_states=True).hidden_states
        hidden = states[layer][:, -1]
        if layer < len(states) - 1:
            hidden = model.llm.get_decoder().norm(hidden)
        return torch.nn.functional.linear(hidden, model.head.weight, model.head.bias)


def test_readout_layer_k_equals_the_llm_cut_after_layer_k():
    full = _model().double()
    cut = _model(readout="layer", readout_layer=1).double()
    assert len(cut.llm.get_decoder().layers) == 1 and cut.llm.config.num_hidden_layers == 1
    assert len(lora_parameters(cut.llm)) == len(lora_parameters(full.llm)) // 2
    assert torch.equal(cut.head.weight, full.head.weight)  # same seed: same trainable weights
    tokens = _tokens()
    reference = _layer_reference(full, tokens, 1)  # layer 1's output, before the final norm
    assert max_error(_layer_reference(full, tokens, 2), reference) > 1e-3  # the layers differ
    for name, logits in _paths(cut, tokens).items():
        assert_near(logits, reference, terms=HEAD_TERMS, dtype=torch.float32, name=name)


def test_a_one_hot_mix_is_that_layer_and_every_path_agrees():
    tokens = _tokens()
    mix = _model(readout="mix").double()
    assert mix.readout_mix is not None and mix.readout_mix.weights.shape == (2,)
    with torch.no_grad():
        mix.readout_mix.weights.copy_(torch.tensor([0.0, -1000.0]))  # softmax: [1, 0]
    full = _model().double()
    exact = _layer_reference(full, tokens, 1)
    for name, logits in _paths(mix, tokens).items():
        assert_near(logits, exact, terms=HEAD_TERMS, dtype=torch.float32, name=name)
    with torch.no_grad():
        mix.readout_mix.weights.copy_(torch.tensor([-1000.0, 0.0]))  # the last layer
    exact = _layer_reference(full, tokens, 2)
    assert_near(_paths(mix, tokens)["packed"], exact, terms=HEAD_TERMS, dtype=torch.float32)


def test_the_mix_learns_and_the_packed_path_equals_float64():
    model = _model(readout="mix")
    reference = _model(readout="mix").double()
    with torch.no_grad():
        for m in (model, reference):
            m.readout_mix.weights.copy_(torch.tensor([0.3, -0.2]))
    tokens = _tokens(torch.float32).requires_grad_(True)
    logits = model.score_tokens(tokens)
    logits.sum().backward()
    assert model.readout_mix.weights.grad is not None
    assert model.readout_mix.weights.grad.abs().sum() > 0
    with torch.no_grad():
        expected = reference.score_tokens(tokens.detach().double())
    assert_near(logits, expected, terms=LLM_TERMS, name="mix")


def _query_reference(model: AULLM, processor, tokens: torch.Tensor) -> torch.Tensor:
    """Each AU's row of the head on the full LLM's final state at the end of its query."""
    embed = model.llm.get_input_embeddings()
    queries = [embed(ids) for ids in processor.query_ids]
    sequence = [embed(model.prompt_ids).expand(len(tokens), -1, -1), tokens]
    sequence += [q.expand(len(tokens), -1, -1) for q in queries]
    ends, position = [], len(model.prompt_ids) + tokens.shape[1] - 1
    for ids in processor.query_ids:
        position += len(ids)
        ends.append(position)
    with torch.no_grad():
        states = model.llm(inputs_embeds=torch.cat(sequence, 1), output_hidden_states=True)
        hidden = states.hidden_states[-1][:, ends]  # [B, n_aus, H]
        return (hidden * model.head.weight).sum(-1) + model.head.bias


def test_au_queries_fast_paths_equal_a_float64_reference_and_each_au_reads_its_own_row():
    cfg = tiny_model_config()
    cfg.au_queries = True
    spec = ModelSpec(cfg, AUS, 1, 6, 64)
    model, processor = build_model(spec, seed=0)
    assert [len(ids) for ids in processor.query_ids] == [
        len(f"\nAU{au} {name}:".encode())
        for au, name in ((1, "inner brow raiser"), (2, "outer brow raiser"), (4, "brow lowerer"))
    ]
    model.eval()
    tokens = _tokens(torch.float32)
    reference = _query_reference(model.double(), processor, tokens.double())
    model.float()
    for name, logits in _paths(model, tokens).items():
        assert_near(logits, reference, terms=LLM_TERMS, name=name)
    with torch.no_grad():
        before = model.score_tokens(tokens)
        model.head.weight[1].add_(0.5)
        model.head.bias[1].add_(0.5)
        after = model.score_tokens(tokens)
    assert torch.equal(after[:, [0, 2]], before[:, [0, 2]])  # AU i's score: head row i only
    assert (after[:, 1] - before[:, 1]).abs().min() > 1e-3


def test_au_queries_train_through_the_packed_path_and_need_one_segment_per_au():
    cfg = tiny_model_config()
    cfg.au_queries = True
    model, processor = build_model(ModelSpec(cfg, AUS, 1, 6, 64), seed=0)
    tokens = _tokens(torch.float32)
    model.score_tokens(tokens).sum().backward()
    assert all(p.grad is not None for p in model.head.parameters())
    with pytest.raises(ValueError, match="one query segment per AU \\(3\\), got 2"):
        AULLM(model.spec, processor.prompt_ids, processor.query_ids[:2])
    assert "au_queries" in processor.to_dict()


def test_cell_tokens_come_one_per_pooled_cell():
    cfg = ProjectorConfig(hidden=16, dropout=0.0, tokens="cells")
    projector = EnhancedFusionProjector(8 * 4, 6, 12, cfg, n_tokens=4).eval()
    assert projector.in_dim == 8 + 6
    mid, high = torch.rand(2, 32), torch.rand(2, 6)
    tokens = projector(mid, high)
    assert tokens.shape == (2, 4, 12)
    changed = mid.clone().view(2, 8, 4)
    changed[:, :, 2] += 1.0  # cell 2's channels (the map is [C, cells] flattened)
    other = projector(changed.view(2, 32), high)
    assert torch.equal(other[:, [0, 1, 3]], tokens[:, [0, 1, 3]])
    assert (other[:, 2] - tokens[:, 2]).abs().max() > 1e-4
    with pytest.raises(ValueError, match="not 5 cells"):
        EnhancedFusionProjector(32, 6, 12, cfg, n_tokens=5)


def test_a_model_with_cell_tokens_feeds_one_token_per_cell_to_the_llm():
    cfg = tiny_model_config(n_visual_tokens=4)
    cfg.backbone = BackboneConfig(high_dim=32, dropout=0.0, mid_pool=[1, 2, 2])
    cfg.projector.tokens = "cells"
    model = build_tiny(tiny_spec(cfg, 3), seed=0)
    assert model.projector.in_dim == 64 + 32  # led3dcnn's 64 channels per cell, and high
    clips = torch.rand(2, 1, 6, 64, 64, generator=torch.Generator().manual_seed(0))
    assert model.get_visual_tokens(clips).shape == (2, 4, 32)
    assert model(clips).shape == (2, 3)


@pytest.mark.parametrize("option", ["readout=mix", "au_queries"])
def test_the_text_pass_gives_the_scores_the_forward_gives(option):
    cfg = tiny_model_config()
    cfg.head, cfg.text.formats = "both", ["list"]
    if option == "readout=mix":
        cfg.llm.readout = "mix"
    else:
        cfg.au_queries = True
    model, processor = build_model(ModelSpec(cfg, AUS, 1, 6, 64), seed=0)
    model.eval()
    if model.readout_mix is not None:
        with torch.no_grad():
            model.readout_mix.weights.copy_(torch.tensor([0.4, -0.3]))
    tokens = _tokens(torch.float32)
    ids, _ = processor.answer_batch(torch.tensor([[1.0, 0, 1], [0, 1, 0], [0, 0, 0]]), ["list"] * 3)
    with torch.no_grad():
        au_logits, lm_logits = model.forward_text_tokens(tokens, ids)
        reference = model.double().score_tokens(tokens.double())
    assert lm_logits.shape[:2] == ids.shape
    assert_near(au_logits, reference, terms=LLM_TERMS, name=option)
