"""Where a training step's time goes with the demo's LOSO config, on CPU.

Times, as medians of ``--repeats`` interleaved rounds after a warm-up (1 torch thread by default):

* reading and sampling one batch from the aligned-clip cache (the training ``DataLoader``, no
  workers), against the model's training step on that batch: the loader's share of a step, which
  is what prefetching with worker processes could at most remove;
* the led3dcnn backbone forward+backward with its first convolution's backward run by ATen
  (:class:`au_llm.model.backbones.FrameConv2d`, the default) and by oneDNN (plain ``F.conv2d``),
  at batch 32 (the demo's) and 128, for gray and RGB clips;
* one of a Qwen2-0.5B layer's MLP products (``[rows, 896] x [896, 4864]``) in float32, bfloat16
  and float16, for 8 and 128 rows: whether a lower precision of the frozen LLM can pay on this CPU.

The data is a small synthetic CASME II-style set written and aligned into a temporary folder.

Usage: ``python bench/step_parts.py [--repeats 5] [--threads 1]``; writes
``bench/results/step_parts.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from au_llm.config import ModelConfig
from au_llm.io_utils import atomic_write_text
from au_llm.losses import build_loss
from au_llm.model import backbones
from au_llm.model.backbones import build_backbone
from au_llm.model.checkpoint import build_model
from au_llm.model.spec import ModelSpec
from au_llm.prepare import prepare_data
from au_llm.preprocess.dataset import ClipDataset, clip_loader
from au_llm.recipes.demo import CONFIG_DIR, demo_config, write_demo_data
from au_llm.runs.layout import preprocess_report
from au_llm.training import batch_loss, make_optimizer


def interleaved_medians(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` interleaved rounds, after a warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def loader_share(work: Path, repeats: int) -> dict[str, float]:
    """Seconds per batch of the demo LOSO config's loader and of its training step."""
    manifests, _ = write_demo_data(work, 8, 8)
    cfg = demo_config(CONFIG_DIR / "demo_casme2_loso.yaml", work, manifests, no_llm=False)
    data = prepare_data(
        cfg.data, cfg.preprocess, preprocess_report(work), cfg.protocol, progress=False
    )
    frames, strategy = cfg.sampling.frames_per_clip, cfg.sampling.train_strategy
    dataset = ClipDataset(data.source, data.cache, data.aus, frames, strategy)
    loader = clip_loader(dataset, cfg.train.batch_size, shuffle=True, seed=0)
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    model, processor = build_model(spec, 0, "cpu")
    train = cfg.train
    optimizer = make_optimizer(
        model.trainable_parameters(),
        name=train.optimizer,
        lr=train.lr,
        weight_decay=train.weight_decay,
    )
    loss_fn = build_loss(dataset.labels, kind=train.loss, reduction=train.loss_reduction)
    clips, labels, meta = next(iter(loader))

    def load() -> None:
        next(iter(loader))

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        batch_loss(model, processor, clips, labels, loss_fn, 0, meta=meta).backward()
        optimizer.step()

    model.train()
    times = interleaved_medians({"load": load, "step": step}, repeats)
    return {
        "batch_size": cfg.train.batch_size,
        "load_s": times["load"],
        "step_s": times["step"],
        "load_share": times["load"] / (times["load"] + times["step"]),
    }


def backbone_backward(batch: int, channels: int, repeats: int) -> dict[str, float]:
    """led3dcnn forward+backward seconds with ATen's and with oneDNN's first-conv backward."""
    backbone = build_backbone(ModelConfig().backbone, channels, 6, 64)
    clips = torch.rand(batch, channels, 6, 64, 64)
    aten_conv = backbones.FrameConv2d.apply

    def run(conv: Callable[..., torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            backbones.FrameConv2d.apply = conv
            try:
                features = backbone.get_clip_features(clips)
                (features["mid"].sum() + features["high"].sum()).backward()
            finally:
                backbones.FrameConv2d.apply = aten_conv

        return go

    times = interleaved_medians({"aten": run(aten_conv), "onednn": run(F.conv2d)}, repeats)
    return {**times, "speedup": times["onednn"] / times["aten"]}


def matmul_rates(repeats: int) -> dict[str, dict[str, float]]:
    """Seconds and GFLOP/s of ``[rows, 896] x [896, 4864]`` per dtype, for 8 and 128 rows."""
    rates = {}
    for rows in (8, 128):
        fns = {}
        for dtype in (torch.float32, torch.bfloat16, torch.float16):
            x = torch.randn(rows, 896).to(dtype)
            weight = torch.randn(4864, 896).to(dtype)
            fns[str(dtype).removeprefix("torch.")] = lambda x=x, weight=weight: F.linear(x, weight)
        times = interleaved_medians(fns, repeats * 4)
        flops = 2 * rows * 896 * 4864
        rates[f"{rows} rows"] = {
            name: {"ms": 1e3 * sec, "gflops": flops / sec / 1e9} for name, sec in times.items()
        }
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("bench/results/step_parts.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="au_llm_step_") as tmp:
        loading = loader_share(Path(tmp), args.repeats)
    print(
        f"demo LOSO batch of {loading['batch_size']}: loading {loading['load_s'] * 1e3:.0f} ms, "
        f"training step {loading['step_s'] * 1e3:.0f} ms: loading is "
        f"{loading['load_share']:.1%} of a step"
    )
    backbone = {}
    for batch, channels in ((32, 1), (128, 1), (32, 3)):
        row = backbone_backward(batch, channels, args.repeats)
        backbone[f"batch {batch}, {channels} channel(s)"] = row
        print(
            f"led3dcnn fwd+bwd, batch {batch}, {channels} channel(s): oneDNN backward "
            f"{row['onednn']:.3f} s, ATen backward {row['aten']:.3f} s = {row['speedup']:.2f}x"
        )
    matmuls = matmul_rates(args.repeats)
    for rows, row in matmuls.items():
        print(
            f"[{rows}, 896] x [896, 4864]: "
            + ", ".join(f"{n} {v['ms']:.1f} ms ({v['gflops']:.0f} GFLOP/s)" for n, v in row.items())
        )
    report = {
        "command": f"python bench/step_parts.py --repeats {args.repeats} --threads {args.threads}",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "loading": loading,
        "backbone": backbone,
        "matmul": matmuls,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
