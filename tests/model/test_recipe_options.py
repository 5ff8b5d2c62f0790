"""Every reader and recipe option trains in fp32 and bf16, and survives save -> load unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from au_llm.config import ModelConfig
from au_llm.config_checks import READERS
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model, load_checkpoint, save_checkpoint
from au_llm.model.precision import model_autocast
from au_llm.model.spec import ModelSpec
from au_llm.training import LossWeights, batch_loss
from tests.model import clips, one_torch_thread, tiny_model_config
from tests.tolerance import assert_near

AUS = (1, 2, 4)


def _reader(name: str):
    return lambda cfg: setattr(cfg, "reader", name)


def _set(section: str, **values):
    def apply(cfg: ModelConfig) -> None:
        for key, value in values.items():
            setattr(getattr(cfg, section) if section else cfg, key, value)

    return apply


def _cells(cfg: ModelConfig) -> None:
    cfg.backbone.mid_pool = [1, 2, 2]
    cfg.llm.n_visual_tokens = 4
    cfg.projector.tokens = "cells"


OPTIONS = {
    **{f"reader={name}": _reader(name) for name in READERS},
    "vision_head": _set("", vision_head=True),
    "readout=mix": _set("llm", readout="mix"),
    "readout=layer": _set("llm", readout="layer", readout_layer=1),
    "au_queries": _set("", au_queries=True),
    "tokens=cells": _cells,
    "tuning=norms": _set("llm", tuning="norms"),
    "tuning=frozen": _set("llm", tuning="frozen"),
    "head_norm": _set("", head_norm=True),
    "head_norm+au_queries": _set("", head_norm=True, au_queries=True),
}
# The options whose forward pass is new (the others reuse the LLM's or the head's).
NEW_PATHS = [
    "reader=mlp",
    "reader=resmlp",
    "reader=attention",
    "reader=transformer",
    "vision_head",
    "readout=mix",
    "readout=layer",
    "au_queries",
    "tokens=cells",
    "tuning=norms",
    "head_norm",
    "head_norm+au_queries",
]


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _spec(option: str) -> ModelSpec:
    cfg = tiny_model_config()
    OPTIONS[option](cfg)
    ModelConfig.__post_init__(cfg)  # the option's settings are valid together
    return ModelSpec(cfg, AUS, 1, 6, 64)


def _train_step(model, processor, precision: str = "fp32") -> torch.Tensor:
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss_fn = build_loss(labels.numpy())
    weight = 0.5 if model.vision_head is not None else 0.0
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2)
    with model_autocast(model):
        weights = LossWeights(vision=weight)
        loss = batch_loss(model, processor, clips(2), labels, loss_fn, 0, weights=weights)
    loss.backward()
    optimizer.step()
    return loss


@pytest.mark.parametrize("option", NEW_PATHS)
def test_each_new_path_trains_and_predicts_in_fp32_and_bf16(option, precision):
    model, processor = build_model(_spec(option), 0, "cpu", precision)
    assert model.precision == precision
    loss = _train_step(model, processor)
    assert torch.isfinite(loss)
    assert all(p.dtype == torch.float32 for p in model.trainable_parameters())
    model.eval()
    with torch.no_grad(), model_autocast(model):
        tokens = model.get_visual_tokens(clips(2, seed=3))
        logits = model.score_tokens(tokens, model.prompt_cache())
    assert logits.dtype == torch.float32 and logits.shape == (2, 3)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("option", list(OPTIONS))
def test_save_then_load_gives_identical_scores(option, tmp_path: Path):
    model, processor = build_model(_spec(option), seed=2)
    _train_step(model, processor)
    model.eval()
    x = clips(2, seed=4)
    with torch.no_grad():
        expected = model(x)
        vision = model.vision_logits(model.get_visual_tokens(x)) if model.vision_head else None
    save_checkpoint(model, processor, {}, tmp_path / "ckpt")
    loaded, loaded_processor, _ = load_checkpoint(tmp_path / "ckpt")
    assert loaded_processor.to_dict() == processor.to_dict()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), expected, rtol=0, atol=0)
        if vision is not None:
            tokens = loaded.get_visual_tokens(x)
            torch.testing.assert_close(loaded.vision_logits(tokens), vision, rtol=0, atol=0)
    fresh = build_model(_spec(option), seed=9)[0].eval()
    with torch.no_grad():
        assert (fresh(x) - expected).abs().max() > 1e-6  # the weights were what was loaded


def test_the_vision_head_loss_enters_with_its_weight():
    model, processor = build_model(_spec("vision_head"), seed=0)
    model.eval()
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    loss_fn = build_loss(labels.numpy())
    x = clips(2)
    with torch.no_grad():
        plain = batch_loss(model, processor, x, labels, loss_fn, 0)
        weights = LossWeights(vision=0.3)
        weighted = batch_loss(model, processor, x, labels, loss_fn, 0, weights=weights)
        vision = loss_fn(model.vision_logits(model.get_visual_tokens(x)), labels)
        alone = batch_loss(model, processor, x, labels, loss_fn, 0, stage="vision")
    assert vision > 1e-3
    exact = torch.tensor(float(plain) + 0.3 * float(vision), dtype=torch.float64)
    assert_near(weighted, exact, terms=2, name="weighted loss")  # the float32 sum of two terms
    assert float(alone) == float(vision)
    with pytest.raises(ValueError, match="no vision head"):
        build_model(_spec("reader=llm"), seed=0)[0].vision_logits(torch.zeros(1, 1, 32))


def test_a_model_folder_saved_with_llm_source_none_loads_as_reader_none(tmp_path: Path):
    model, processor = build_model(_spec("reader=none"), seed=2)
    _train_step(model, processor)
    model.eval()
    save_checkpoint(model, processor, {}, tmp_path)
    meta = json.loads((tmp_path / "model.json").read_text())
    saved = meta["spec"]["model"]
    for key in ("reader", "reader_seed", "vision_head", "au_queries"):
        del saved[key]
    for key in ("tuning", "readout", "readout_layer"):
        del saved["llm"][key]
    del saved["projector"]["tokens"]
    saved["llm"]["source"] = "none"  # how the model without an LLM was written before
    (tmp_path / "model.json").write_text(json.dumps(meta))
    loaded, _, _ = load_checkpoint(tmp_path)
    assert loaded.cfg.reader == "none" and loaded.cfg.llm.source == "tiny"
    x = clips(2, seed=5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
