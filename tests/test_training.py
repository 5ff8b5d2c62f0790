import os

import numpy as np
import pytest
import torch

from au_llm.config import TrainConfig
from au_llm.data.manifest import read_manifest
from au_llm.device import CUBLAS_WORKSPACE, select_device, set_determinism
from au_llm.fitting import inner_split
from au_llm.inference import predict_clips
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.model.precision import autocast
from au_llm.model.spec import ModelSpec
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset, clip_loader
from au_llm.preprocess.run import preprocess_manifest
from au_llm.training import _epoch_loss, make_optimizer, make_scheduler, train_model
from tests.conftest import tiny_config
from tests.tolerance import assert_as_accurate, assert_near


def _cached(tiny_data, cfg) -> tuple:
    """The tiny CASME II manifest and its aligned-clip cache (aligned now where missing)."""
    manifest = read_manifest(tiny_data.casme2)
    cache = ClipCache(tiny_data.cache_dir, cfg.preprocess)
    preprocess_manifest(manifest, cache, progress=False)
    return manifest, cache


def _lrs(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=cfg.lr)
    scheduler = make_scheduler(
        optimizer,
        kind=cfg.scheduler,
        warmup_epochs=cfg.warmup_epochs,
        epochs=cfg.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    lrs = []
    for _ in range(cfg.epochs * steps_per_epoch):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_fused_optimizer_equals_the_default_over_steps(name):
    generator = torch.Generator().manual_seed(0)
    start = [torch.randn(300, 40, generator=generator), torch.randn(40, generator=generator)]
    grads = [[torch.randn(t.shape, generator=generator) for t in start] for _ in range(5)]
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    plain_params = [torch.nn.Parameter(t.clone()) for t in start]
    exact_params = [torch.nn.Parameter(t.double()) for t in start]
    fused = make_optimizer(fused_params, name=name, lr=1e-2, weight_decay=0.05)
    assert fused.defaults["fused"]
    plain_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    plain = plain_cls(plain_params, lr=1e-2, weight_decay=0.05, foreach=False)
    exact = plain_cls(exact_params, lr=1e-2, weight_decay=0.05, foreach=False)
    runs = ((fused_params, fused), (plain_params, plain), (exact_params, exact))
    for step_grads in grads:
        for params, optimizer in runs:
            for param, grad in zip(params, step_grads, strict=True):
                param.grad = grad.to(param.dtype, copy=True)
            optimizer.step()
    for fused_param, plain_param, exact_param, initial in zip(
        fused_params, plain_params, exact_params, start, strict=True
    ):
        assert (fused_param - initial).abs().max() > 1e-2  # the steps moved the weights
        # elementwise updates: each step rounds a handful of times, nothing is summed
        assert_as_accurate(fused_param, plain_param, exact_param, terms=len(grads))


def test_warmup_then_cosine_decay():
    lrs = _lrs(TrainConfig(lr=1.0, epochs=4, warmup_epochs=1, scheduler="cosine"), 2)
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    assert lrs[2] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))
    assert lrs[-1] == pytest.approx(0.5 * (1 + np.cos(np.pi * 5 / 6)))


def test_constant_and_linear_schedules():
    assert _lrs(TrainConfig(lr=0.1, epochs=3, scheduler="constant"), 1) == pytest.approx([0.1] * 3)
    linear = _lrs(TrainConfig(lr=1.0, epochs=4, scheduler="linear"), 1)
    assert linear == pytest.approx([1.0, 0.75, 0.5, 0.25])


def test_early_stopping_restores_the_best_epoch(tiny_data, tmp_path):
    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "es",
        "loso",
        "train.val_fraction=0.34",
        "train.patience=2",
        "train.epochs=8",
        "train.lr=0.05",
    )
    manifest, cache = _cached(tiny_data, cfg)
    train, val = inner_split(manifest, cfg.train.val_fraction, seed=1)
    aus = [1, 2, 4, 7, 12, 14, 15, 17]
    train_set = ClipDataset(train, cache, aus, 4, "random_end", seed=1)
    val_set = ClipDataset(val, cache, aus, 4, "uniform", seed=1)
    model, processor = build_model(ModelSpec(cfg.model, tuple(aus), 1, 4, 32), seed=1)
    result = train_model(
        model, processor, train_set, cfg.train, seed=1, val_set=val_set, progress=False
    )
    assert result.best_epoch == int(np.argmin(result.val_loss))
    assert result.best_epoch < len(result.val_loss) - 1, "the restore path must be exercised"
    loss_fn = build_loss(train_set.labels)
    loader = clip_loader(val_set, 8, shuffle=False, seed=0)
    restored = _epoch_loss(model, processor, loader, loss_fn, cfg.train)
    assert restored == pytest.approx(min(result.val_loss), rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_compiled_visual_path_equals_eager(precision):
    from au_llm.training import compile_visual_path
    from tests.model import (
        FORWARD_TERMS,
        build_tiny,
        clips,
        float64_copy,
        one_torch_thread,
        tiny_model_config,
        tiny_spec,
    )

    with one_torch_thread():
        model = build_tiny(tiny_spec(tiny_model_config(), 3), 0, "cpu", precision).eval()
        x = clips(2)
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            eager = model(x)
        with torch.no_grad():
            exact = float64_copy(model)(x.double())
        compile_visual_path(model)
        compiled_call = model.get_visual_tokens
        compile_visual_path(model)  # a second call keeps the compiled function
        assert model.get_visual_tokens is compiled_call
        with torch.no_grad(), autocast(torch.device("cpu"), precision):
            compiled = model(x)
        assert set(model.trainable_state_dict()) == set(
            build_tiny(tiny_spec(tiny_model_config(), 3), seed=0).trainable_state_dict()
        )
    if precision == "fp32":
        assert_as_accurate(compiled, eager, exact, terms=FORWARD_TERMS, name="logits")
    else:  # bfloat16 kernels, compiled or not, round operands and results: a few in a row
        for name, logits in (("compiled", compiled), ("eager", eager)):
            assert_near(logits, exact, terms=16, dtype=torch.bfloat16, name=name)


def test_train_and_predict_in_each_precision(tiny_data, tmp_path, precision):
    cfg = tiny_config(
        tiny_data, tmp_path, "p", "loso", f"train.precision={precision}", "train.epochs=1"
    )
    manifest, cache = _cached(tiny_data, cfg)
    aus = [1, 2, 4, 7, 12, 14, 15, 17]
    train_set = ClipDataset(manifest, cache, aus, 4, "random_end", seed=1)
    device, resolved = select_device(
        device=cfg.train.device,
        deterministic=cfg.train.deterministic,
        precision=cfg.train.precision,
    )
    assert (device.type, resolved) == ("cpu", precision)
    model, processor = build_model(ModelSpec(cfg.model, tuple(aus), 1, 4, 32), 1, device, resolved)
    result = train_model(model, processor, train_set, cfg.train, seed=1, progress=False)
    assert np.isfinite(result.train_loss).all()
    test_set = ClipDataset(manifest, cache, aus, 4, "uniform", seed=1)
    outputs, metas = predict_clips(model, processor, test_set, batch_size=4)
    assert outputs.probs.shape == (len(manifest), len(aus)) and len(metas) == len(manifest)
    assert np.isfinite(outputs.probs).all()


def test_determinism_settings_apply_on_cuda_only(monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    set_determinism(torch.device("cpu"), deterministic=True)
    assert "CUBLAS_WORKSPACE_CONFIG" not in os.environ
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_determinism(torch.device("cuda"), deterministic=True)
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == CUBLAS_WORKSPACE
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        set_determinism(torch.device("cuda"), deterministic=False)
        assert not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.use_deterministic_algorithms(before)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = False, False


def _snapshot(model) -> dict[str, torch.Tensor]:
    """Every weight and buffer of the model (the frozen base included), copied."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, after: dict, prefix: str) -> bool:
    keys = [k for k in before if k.startswith(prefix)]
    assert keys, prefix
    return any(not torch.equal(before[k], after[k]) for k in keys)


def test_staged_training_trains_each_stage_and_keeps_the_rest(tiny_data, tmp_path):
    cfg = tiny_config(
        tiny_data,
        tmp_path,
        "stages",
        "loso",
        "train.epochs=3",
        "train.stage_epochs=[1,1,1]",
        "train.lr=0.05",
        "model.vision_head=true",
        "train.vision_weight=0.5",
    )
    manifest, cache = _cached(tiny_data, cfg)
    aus = [1, 2, 4, 7, 12, 14, 15, 17]
    train_set = ClipDataset(manifest, cache, aus, 4, "random_end", seed=1)
    model, processor = build_model(ModelSpec(cfg.model, tuple(aus), 1, 4, 32), seed=1)
    states = [_snapshot(model)]

    def on_epoch(_: int) -> None:
        states.append(_snapshot(model))

    result = train_model(
        model, processor, train_set, cfg.train, seed=1, progress=False, on_epoch=on_epoch
    )
    assert len(result.train_loss) == 3
    vision, heads, everything = zip(states[:-1], states[1:], strict=True)
    # stage 1: the vision side alone; the reader does not run
    assert _changed(*vision, "backbone.") and _changed(*vision, "projector.")
    assert _changed(*vision, "vision_head.")
    assert not _changed(*vision, "llm.") and not _changed(*vision, "head.")
    # stage 2: projector and heads; backbone (and its BatchNorm statistics) and reader frozen
    assert not _changed(*heads, "backbone.") and not _changed(*heads, "llm.")
    assert _changed(*heads, "projector.") and _changed(*heads, "head.")
    # stage 3: everything
    assert _changed(*everything, "backbone.") and _changed(*everything, "llm.")
    base = [k for k in states[0] if k.startswith("llm.") and "lora_" not in k]
    assert all(torch.equal(states[0][k], states[-1][k]) for k in base)  # the base stays frozen


@pytest.mark.parametrize(("name", "coupled"), [("adam", True), ("adamw", False)])
def test_adam_couples_weight_decay_into_the_gradient_and_adamw_does_not(name, coupled):
    param = torch.nn.Parameter(torch.ones(4))
    optimizer = make_optimizer([param], name=name, lr=1e-2, weight_decay=0.01)
    param.grad = torch.zeros(4)  # no gradient from the loss: only the decay acts
    optimizer.step()
    moved = float(1.0 - param.detach()[0])
    # coupled L2 is normalised by Adam into a full step of lr; decoupled decay is lr * wd * w
    assert moved == pytest.approx(1e-2 if coupled else 1e-4, rel=1e-3)
