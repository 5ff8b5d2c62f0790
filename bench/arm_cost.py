"""Training cost of each arm of the LLM study: seconds per epoch of one fold, per LLM.

For every arm of ``configs/ablate_llm_study.yaml`` (its header lists them) and each LLM source,
one model is built on the config's data and trained for a few epochs on one LOSO fold's training
clips (``train.epochs`` set to ``--epochs``; the first epoch is a warm-up and not counted). The
seconds per epoch are the median of the later epochs; a staged schedule times each stage. The
estimate of one fold x seed at the config's epoch count adds the pass over the training and test
clips that picks thresholds and predicts. The machine's load average is recorded: on a shared
machine the times are upper bounds.

Usage: ``python bench/arm_cost.py [--config configs/ablate_llm_study.yaml] [--fold sub04]
[--sources tiny,smollm2] [--epochs 3] [--arms llm,none]``; writes ``bench/results/arm_cost.json``
(the data must be written first, see the config's header).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from au_llm.config import load_config
from au_llm.device import set_num_threads
from au_llm.inference import predict_clips
from au_llm.io_utils import atomic_write_text
from au_llm.model.checkpoint import build_model
from au_llm.model.spec import ModelSpec
from au_llm.param_groups import trainable_parameter_count
from au_llm.prepare import prepare_data
from au_llm.preprocess.dataset import ClipDataset
from au_llm.protocols import loso_folds
from au_llm.runs.layout import preprocess_report
from au_llm.training import train_model

ROOT = Path(__file__).resolve().parents[1]
STAGED = ["model.vision_head=true", "train.stage_epochs=[20,10,30]"]
ARMS: dict[str, list[str]] = {
    **{
        f"reader={name}": [f"model.reader={name}"]
        for name in (
            "llm",
            "none",
            "mlp",
            "resmlp",
            "attention",
            "transformer",
            "llm_reinit",
            "llm_random_prompt",
        )
    },
    "vision_head": ["model.vision_head=true", "train.vision_weight=1"],
    "staged": STAGED,
    "readout=layer(half)": ["model.llm.readout=layer"],
    "readout=mix": ["model.llm.readout=mix"],
    "au_queries": ["model.au_queries=true"],
    "tokens=cells(4)": [
        "model.backbone.mid_pool=[1,2,2]",
        "model.projector.tokens=cells",
        "model.llm.n_visual_tokens=4",
    ],
    "tuning=norms": ["model.llm.tuning=norms"],
    "tuning=frozen": ["model.llm.tuning=frozen"],
    "lora.r=64": ["model.llm.lora.r=64"],
    "optimizer=adam": ["train.optimizer=adam"],
}


def half_layer(source: str) -> int:
    """The middle layer of the LLM (SmolLM2-135M has 30 layers, the study's tiny LLM 2)."""
    return {"smollm2": 15, "tiny": 1}[source]


def time_arm(config: Path, source: str, overrides: list[str], fold: str, epochs: int) -> dict:
    """Build the arm's model, train ``epochs`` epochs on ``fold``'s training clips, time them."""
    staged = overrides == STAGED
    extra = [f"model.llm.source={source}", *overrides]
    if "model.llm.readout=layer" in overrides:
        extra.append(f"model.llm.readout_layer={half_layer(source)}")
    cfg = load_config(config, extra)
    full_epochs = cfg.train.epochs
    stage_epochs = list(cfg.train.stage_epochs)
    if staged:  # each stage as long as the unstaged run's timed epochs
        extra.append(f"train.stage_epochs=[{epochs},{epochs},{epochs}]")
    cfg = load_config(config, [*extra, f"train.epochs={3 * epochs if staged else epochs}"])
    set_num_threads(cfg.train.num_threads)
    with tempfile.TemporaryDirectory() as report_dir:
        data = prepare_data(
            cfg.data,
            cfg.preprocess,
            preprocess_report(Path(report_dir)),
            cfg.protocol,
            progress=False,
        )
    chosen = next(f for f in loso_folds(data.source) if f.name == fold)
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    start = time.perf_counter()
    model, processor = build_model(spec, seed=1)
    build_s = time.perf_counter() - start
    frames, sampling = cfg.sampling.frames_per_clip, cfg.sampling
    train_set = ClipDataset(chosen.train, data.cache, data.aus, frames, sampling.train_strategy, 1)
    marks = [time.perf_counter()]

    def on_epoch(_: int) -> None:
        marks.append(time.perf_counter())

    train_model(model, processor, train_set, cfg.train, seed=1, progress=False, on_epoch=on_epoch)
    epoch_s = [b - a for a, b in zip(marks[:-1], marks[1:], strict=True)]
    start = time.perf_counter()
    for rows, strategy in (
        (chosen.train, sampling.test_strategy),
        (chosen.test, sampling.test_strategy),
    ):
        dataset = ClipDataset(rows, data.cache, data.aus, frames, strategy, 1)
        predict_clips(model, processor, dataset, batch_size=32)
    eval_s = time.perf_counter() - start
    record: dict[str, Any] = {
        "overrides": extra,
        "trainable_parameters": trainable_parameter_count(model),
        "build_s": build_s,
        "epoch_s_all": epoch_s,
        "eval_s": eval_s,
    }
    if staged:
        per_stage = [
            statistics.median(epoch_s[i * epochs + 1 : (i + 1) * epochs]) for i in range(3)
        ]
        record["stage_epoch_s"] = per_stage
        record["fold_seed_s"] = (
            sum(n * s for n, s in zip(stage_epochs, per_stage, strict=True)) + eval_s
        )
    else:
        record["epoch_s"] = statistics.median(epoch_s[1:])
        record["fold_seed_s"] = full_epochs * record["epoch_s"] + eval_s
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "ablate_llm_study.yaml")
    parser.add_argument("--fold", default="sub04")
    parser.add_argument("--sources", default="tiny,smollm2")
    parser.add_argument("--epochs", type=int, default=3, help="per arm (and per stage); >= 2")
    parser.add_argument("--arms", default="", help="comma-separated arm names (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "arm_cost.json")
    args = parser.parse_args()
    arms = args.arms.split(",") if args.arms else list(ARMS)
    results: dict[str, Any] = {
        "command": "python bench/arm_cost.py "
        + " ".join(
            f"--{k} {v}"
            for k, v in (("fold", args.fold), ("sources", args.sources), ("epochs", args.epochs))
        ),
        "config": str(
            args.config.relative_to(ROOT) if args.config.is_relative_to(ROOT) else args.config
        ),
        "fold": args.fold,
        "torch_threads": 1,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_start": os.getloadavg(),
        "arms": {},
    }
    for source in args.sources.split(","):
        for arm in arms:
            print(f"[arm_cost] {source} {arm}", flush=True)
            results["arms"].setdefault(source, {})[arm] = time_arm(
                args.config, source, ARMS[arm], args.fold, args.epochs
            )
            print(json.dumps(results["arms"][source][arm]), flush=True)
    results["load_average_end"] = os.getloadavg()
    results["torch_threads"] = torch.get_num_threads()
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
