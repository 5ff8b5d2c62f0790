"""Speed of the AU-LLM fast path (prompt cache, no vocabulary logits) vs the straightforward path.

For the same model and batch (led3dcnn on 6 gray 64x64 frames, the default prompt with the built-in
tokenizer) it times, as medians over ``--repeats`` runs after one warm-up run:

* a training step (forward + ASL loss + backward + Adam step) and inference (``torch.no_grad``);
* the same two for the LLM part alone (fixed visual tokens -> LLM -> head), which isolates what the
  fast path changes from the backbone/projector cost that both paths share;
* building the model afresh (its base LLM loaded again: what "reload the LLM for every fold"
  costs) against ``reset_trainable`` (what the protocol does per fold).

At inference the fast path gets a prompt cache computed once (as every prediction loop does).

Two LLM shapes: a tiny random Qwen2 (hidden 128, 2 layers) and a random Qwen2-0.5B-shaped model
(hidden 896, 24 layers, 14 heads, 2 KV heads, MLP 4864, vocabulary 151936, tied embeddings).
Prints a table and writes ``bench/results/model_speed.json``.

Usage: ``python bench/model_speed.py [--device cpu|cuda] [--repeats 5] [--big-repeats 2]``
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import transformers
from reference_speed import SHAPES as REFERENCE_SHAPES  # bench/ is on sys.path

from au_llm.config import LLMConfig, ModelConfig, TinyLLMConfig
from au_llm.io_utils import atomic_write_text
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.spec import ModelSpec

N_AUS, CHANNELS, FRAMES, SIZE = 4, 1, 6, 64
SHAPES = {
    "tiny (h128, 2 layers)": TinyLLMConfig(
        hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256
    ),
    "qwen2-0.5b shape": REFERENCE_SHAPES["qwen2-0.5b"],
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _median_seconds(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _time_paths(
    model: AULLM, batch: torch.Tensor, labels: torch.Tensor, repeats: int, device: torch.device
) -> dict[str, dict[str, float]]:
    """Train-step and inference times of both paths, for the whole model and the LLM alone."""
    loss_fn = build_loss(labels.cpu().numpy()).to(device)
    optimizer = torch.optim.Adam(model.trainable_parameters(), lr=1e-5)
    with torch.no_grad():
        tokens = model.get_visual_tokens(batch).detach()

    def train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(batch), labels).backward()
        optimizer.step()

    def infer() -> None:
        model.eval()
        with torch.no_grad():
            model(batch, prompt_cache=model.prompt_cache())

    def llm_hidden() -> torch.Tensor:  # the path of model.cfg.llm.fast_path
        cache = None if torch.is_grad_enabled() else model.prompt_cache()
        return model._llm_read(tokens, cache)

    def llm_train_step() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model.head(llm_hidden().float()), labels).backward()
        optimizer.step()

    def llm_infer() -> None:
        model.eval()
        with torch.no_grad():
            llm_hidden()

    results: dict[str, dict[str, float]] = {}
    for fast in (True, False):
        model.cfg.llm.fast_path = fast
        results["fast" if fast else "straightforward"] = {
            "train_step_s": _median_seconds(train_step, repeats, device),
            "inference_s": _median_seconds(infer, repeats, device),
            "llm_train_step_s": _median_seconds(llm_train_step, repeats, device),
            "llm_inference_s": _median_seconds(llm_infer, repeats, device),
        }
    model.cfg.llm.fast_path = True
    return results


def _time_rebuild(spec: ModelSpec, model: AULLM, device: torch.device) -> dict[str, float]:
    """Seconds to reset the trainable weights vs building afresh (the base LLM loaded again)."""
    start = time.perf_counter()
    model.reset_trainable(1)
    _sync(device)
    reset_s = time.perf_counter() - start
    del model
    gc.collect()
    start = time.perf_counter()
    build_model(spec, 1, device)
    _sync(device)
    reload_s = time.perf_counter() - start
    return {"reset_trainable_s": reset_s, "build_reload_llm_s": reload_s}


def run_shape(
    name: str, tiny: TinyLLMConfig, batch_size: int, repeats: int, device: torch.device
) -> dict[str, Any]:
    """Benchmark one LLM shape; returns timings and ratios."""
    spec = ModelSpec(
        ModelConfig(llm=LLMConfig(source="tiny", tiny=tiny)),
        tuple(range(1, N_AUS + 1)),
        CHANNELS,
        FRAMES,
        SIZE,
    )
    gc.collect()
    start = time.perf_counter()
    model, _ = build_model(spec, 0, device)
    first_build_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(0)
    batch = torch.rand(batch_size, CHANNELS, FRAMES, SIZE, SIZE, generator=generator).to(device)
    labels = torch.randint(0, 2, (batch_size, N_AUS), generator=generator).float().to(device)
    paths = _time_paths(model, batch, labels, repeats, device)
    fast, slow = paths["fast"], paths["straightforward"]
    ratios = {key.replace("_s", "_speedup"): slow[key] / fast[key] for key in fast}
    rebuild = _time_rebuild(spec, model, device)
    rebuild["reload_vs_reset_ratio"] = rebuild["build_reload_llm_s"] / rebuild["reset_trainable_s"]
    return {
        "name": name,
        "llm": vars(tiny),
        "prompt_tokens": len(model.prompt_ids),
        "repeats": repeats,
        "first_build_s": first_build_s,
        "paths": paths,
        "speedup_straightforward_over_fast": ratios,
        "rebuild": rebuild,
    }


def _table(results: list[dict[str, Any]]) -> str:
    rows = [
        ("train step (full model)", "train_step_s"),
        ("inference (full model)", "inference_s"),
        ("train step (LLM part)", "llm_train_step_s"),
        ("inference (LLM part)", "llm_inference_s"),
    ]
    lines = []
    for result in results:
        fast, slow = result["paths"]["fast"], result["paths"]["straightforward"]
        lines.append(
            f"\n{result['name']}  (prompt {result['prompt_tokens']} tokens, "
            f"median of {result['repeats']})"
        )
        lines.append(f"  {'':26s}{'fast':>10s}{'straightfwd':>13s}{'speedup':>9s}")
        for label, key in rows:
            lines.append(
                f"  {label:26s}{fast[key]:9.4f}s{slow[key]:12.4f}s{slow[key] / fast[key]:8.1f}x"
            )
        rebuild = result["rebuild"]
        lines.append(
            f"  rebuild per fold: reload LLM + build {rebuild['build_reload_llm_s']:.3f}s, "
            f"reset_trainable {rebuild['reset_trainable_s']:.3f}s "
            f"(reload/reset {rebuild['reload_vs_reset_ratio']:.1f}x)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--big-repeats", type=int, default=2, help="timed runs, 0.5B shape")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--skip-big", action="store_true", help="only the tiny LLM")
    parser.add_argument("--out", type=Path, default=Path("bench/results/model_speed.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for index, (name, tiny) in enumerate(SHAPES.items()):
        if index > 0 and args.skip_big:
            break
        repeats = args.repeats if index == 0 else args.big_repeats
        results.append(run_shape(name, tiny, args.batch, repeats, device))
        print(_table(results[-1:]), flush=True)
    report = {
        "device": args.device,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "batch": args.batch,
        "clip": [CHANNELS, FRAMES, SIZE, SIZE],
        "results": results,
    }
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
