r"""Held-out text answers and explanations against epochs: one training run, evaluated every k.

The demo's text step (``--config``: ``configs/demo_smollm2_text.yaml`` by default, or
``configs/demo_smollm2_explain.yaml`` with explanations; the demo's split: every synthetic
CASME II-style subject but the last two train, those two are held out) is trained once; after
every ``--every`` epochs (and after the last) the held-out clips are answered greedily, without
constrained decoding, and the tool records per format the parse rate, the mean binary F1 of the
parsed answers and the number of distinct answers; for a model that explains, the named-AU F1
of the explanations; and (unless ``--no-reliance``) the reliance measure
(:mod:`au_llm.reliance`). The cosine schedule spans all epochs, so a point at epoch k is a
model part-way through its schedule, not a k-epoch run. A format curriculum is the config's
``train.first_format_epochs``. It prints one line per evaluation and saves JSON.

Usage (the demo's data first: ``au-llm demo --out /tmp/demo_run``; 1 torch thread)::

    OMP_NUM_THREADS=1 python bench/text_curve.py --demo /tmp/demo_run --every 6 \
        --json bench/results/text_curve_formats_30.json \
        model.text.formats=[list,yesno,json,names] train.format_weights=[1,1,1,1] \
        train.first_format_epochs=6 train.epochs=30
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from au_llm.config import ExperimentConfig, GenerationConfig
from au_llm.device import seed_everything, set_num_threads
from au_llm.inference import predict_clips
from au_llm.io_utils import atomic_write_text
from au_llm.model.checkpoint import build_model
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.spec import ModelSpec
from au_llm.prediction_rows import output_columns
from au_llm.prepare import prepare_data
from au_llm.preprocess.dataset import ID_KEYS, ClipDataset
from au_llm.recipes.demo_text import TEXT_CONFIG, split_subjects, text_config
from au_llm.recipes.experiment import experiment_device
from au_llm.reliance import dataset_reliance
from au_llm.reports.answers import answer_tables
from au_llm.reports.explanations import explanation_tables
from au_llm.runs.layout import preprocess_report
from au_llm.training import train_model

CONFIG = Path(__file__).resolve().parents[1] / "configs" / TEXT_CONFIG


def evaluate(
    model: AULLM,
    processor: AULLMProcessor,
    test_set: ClipDataset,
    batch_size: int,
    reliance: bool,
    generation: GenerationConfig,
) -> dict[str, Any]:
    """Greedy, unconstrained answers (and explanations) of the held-out clips, scored.

    Returns:
        ``formats`` (per format: ``parse_rate``, ``mean_binary_f1``, ``distinct_answers``, ...),
        ``explanation_f1`` and ``explanation_kinds`` when the model explains, ``reliance`` (per
        format) when asked for, ``clips`` and ``answers`` (format or ``explanation`` -> one
        text per clip) and, with explanations, ``explanation_examples`` (chosen by rule).
    """
    explain = model.cfg.explain
    outputs, metas = predict_clips(
        model,
        processor,
        test_set,
        batch_size=batch_size,
        answers=True,
        explain=explain,
        generation=generation,
    )
    explained = {key: [m[key] for m in metas] for key in ("au_raw", "aus")} if explain else None
    aus, cfg = test_set.aus, model.cfg
    columns = output_columns(
        outputs, aus, 0.5, cfg.head, cfg.text.formats, test_set.labels.numpy(), explained
    )
    frame = pd.DataFrame([{key: m[key] for key in ID_KEYS} for m in metas]).assign(**columns)
    result: dict[str, Any] = {"formats": answer_tables(frame, aus)[1]}
    result["clips"] = [f"{m['subject']}/{m['clip']}" for m in metas]
    result["answers"] = dict(outputs.answers)
    if explain:
        summary = explanation_tables(frame, aus)[1]
        result["explanation_f1"] = summary["mean_binary_f1"]
        result["explanation_kinds"] = summary["kinds"]
        result["explanation_examples"] = summary["examples"]
        result["answers"]["explanation"] = outputs.explanations
    if reliance:
        result["reliance"] = dataset_reliance(model, processor, test_set, batch_size=batch_size)
    return result


def curve_line(epoch: int, point: dict[str, Any]) -> str:
    """One printed line: per format F1 / parse rate / distinct answers, explanation F1."""
    parts = [f"epoch {epoch:>3} ({point['seconds']:.0f} s)"]
    for fmt, values in point["formats"].items():
        parts.append(
            f"{fmt} F1 {values['mean_binary_f1']:.3f} parsed {values['parse_rate']:.0%} "
            f"distinct {values['distinct_answers']}"
        )
    if "explanation_f1" in point:
        parts.append(f"explain F1 {point['explanation_f1'] or 0:.3f}")
    for fmt, values in point.get("reliance", {}).items():
        parts.append(f"reliance[{fmt}] {values['own_vs_other']:.0%}")
    return " | ".join(parts)


def run_curve(
    cfg: ExperimentConfig,
    folder: Path,
    every: int,
    reliance: bool = True,
    saved: Callable[[list[dict[str, Any]]], None] | None = None,
) -> dict[str, Any]:
    """Train the text step once and evaluate the held-out clips every ``every`` epochs.

    Args:
        cfg: The text step's config (``data.manifests`` train, ``data.target_manifests`` test).
        folder: Where the preprocessing report goes.
        every: Epochs between evaluations (the last epoch is always evaluated).
        reliance: Also compute the reliance measure at each evaluation.
        saved: Called with the points so far after each evaluation (to save them).

    Returns:
        ``points`` (one per evaluation: ``epoch`` counted from 1, ``seconds`` of training so far,
        and :func:`evaluate`'s scores) and ``train_loss`` per epoch.
    """
    set_num_threads(cfg.train.num_threads)
    data = prepare_data(
        cfg.data, cfg.preprocess, preprocess_report(folder), cfg.protocol, progress=False
    )
    if data.target is None:
        raise ValueError("the curve needs held-out clips (data.target_manifests)")
    seed, sampling = cfg.seeds[0], cfg.sampling
    device, precision = experiment_device(cfg)
    spec = ModelSpec.from_sections(cfg.model, data.aus, cfg.preprocess, cfg.sampling)
    model, processor = build_model(spec, seed, device, precision)
    seed_everything(seed)
    explain = cfg.model.explain
    aus, frames = data.aus, sampling.frames_per_clip
    strategies = sampling.train_strategy, sampling.test_strategy
    train_set = ClipDataset(
        data.source, data.cache, aus, frames, strategies[0], seed, annotation=explain
    )
    test_set = ClipDataset(
        data.target, data.cache, aus, frames, strategies[1], seed, annotation=explain
    )
    points: list[dict[str, Any]] = []
    start, evaluating = time.perf_counter(), 0.0

    def on_epoch(epoch: int) -> None:
        nonlocal evaluating
        if (epoch + 1) % every and epoch + 1 != cfg.train.epochs:
            return
        trained = time.perf_counter() - start - evaluating
        began = time.perf_counter()
        point = {"epoch": epoch + 1, "seconds": round(trained, 1)}
        point |= evaluate(
            model, processor, test_set, cfg.train.batch_size, reliance, cfg.generation
        )
        evaluating += time.perf_counter() - began
        points.append(point)
        print(curve_line(epoch + 1, point), flush=True)
        if saved is not None:
            saved(points)

    result = train_model(
        model, processor, train_set, cfg.train, seed=seed, progress=False, on_epoch=on_epoch
    )
    return {"points": points, "train_loss": result.train_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, required=True, help="folder `au-llm demo` wrote")
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--every", type=int, default=3, help="epochs between evaluations")
    parser.add_argument("--no-reliance", action="store_true")
    parser.add_argument("--json", type=Path, help="where to save the results")
    parser.add_argument("overrides", nargs="*", help="config overrides key=value")
    args = parser.parse_args()
    folder = args.demo / "text_curve"
    folder.mkdir(parents=True, exist_ok=True)
    train, test = split_subjects(args.demo / "manifests" / "casme2.csv", folder)
    overrides = ["train.num_threads=1", "preprocess.workers=0", *args.overrides]
    cfg = text_config(args.config, args.demo, train, test, overrides)
    explain = cfg.model.explain
    print(f"text curve: {' '.join(overrides)}; explain {explain}")
    results: dict[str, Any] = {
        "config": str(args.config),
        "overrides": overrides,
        "explain": explain,
    }

    def save(points: list[dict[str, Any]]) -> None:
        if args.json:
            atomic_write_text(args.json, json.dumps(results | {"points": points}, indent=2) + "\n")

    began = time.perf_counter()
    curve = run_curve(cfg, folder, args.every, not args.no_reliance, save)
    results |= {"wall_seconds": round(time.perf_counter() - began, 1), **curve}
    print(f"wall time {results['wall_seconds']:.0f} s")
    save(curve["points"])


if __name__ == "__main__":
    main()
