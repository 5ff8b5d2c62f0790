"""The demo's text step: SmolLM2-135M answers in words (AU-LLaVA's formats) beside the linear head.

The synthetic CASME II-style subjects are split: the last two (by id) are the test subjects, the
others train one ``head: both`` model (``configs/demo_smollm2_text.yaml``: the built-in pretrained
SmolLM2-135M-Instruct, LoRA, the linear head and the text loss together). The test clips are then
answered twice, greedy without and with constrained decoding, and the step prints binary F1 of the
linear head and of every format's parsed answers, the parse rate, and three example answers per
format. With ``au-llm demo --explain`` (``configs/demo_smollm2_explain.yaml``) the model also learns
to explain each clip (``model.explain: true``, VL-FAU); the greedy pass writes one explanation
per test clip, and the
step prints their faithfulness and three examples chosen by rule
(:mod:`au_llm.reports.explanations`). The reliance measure (:mod:`au_llm.reliance`: does the
answer's likelihood depend on the clip's own visual token?) and the number of distinct answers
per format are printed and saved too. Everything is written under ``<out>/text/`` (with explanations
``<out>/text_explain/``); a finished model is reused on a re-run.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from au_llm.config import ExperimentConfig, load_config
from au_llm.data.manifest import read_manifest, write_manifest
from au_llm.deployed import DeployedModel, load_deployed
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.metrics import au_column, binary_f1, roc_auc
from au_llm.model.checkpoint import MODEL_FILE
from au_llm.predict.config import PredictConfig
from au_llm.predict.manifests import ManifestPredictor
from au_llm.predict.scorer import ClipScorer
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.recipes.train import train_deployable
from au_llm.reliance import dataset_reliance, reliance_notes
from au_llm.reports.answers import ANSWER_PREFIX, answer_formats, answer_tables
from au_llm.reports.explanations import explanation_notes, explanation_tables
from au_llm.runs.layout import SUMMARY

TEXT_CONFIG = "demo_smollm2_text.yaml"
EXPLAIN_CONFIG = "demo_smollm2_explain.yaml"
TEST_SUBJECTS = 2
EXAMPLES = 3


def split_subjects(manifest: Path, out: Path, n_test: int = TEST_SUBJECTS) -> tuple[Path, Path]:
    """Write ``train.csv`` (every subject but the last ``n_test``) and ``test.csv`` into ``out``.

    Raises:
        ValueError: If the manifest has no more than ``n_test`` subjects.
    """
    rows = read_manifest(manifest)
    subjects = sorted(rows["subject"].unique())
    if len(subjects) <= n_test:
        raise ValueError(f"{manifest}: {len(subjects)} subjects; the text demo needs > {n_test}")
    test = rows["subject"].isin(subjects[-n_test:])
    paths = out / "train.csv", out / "test.csv"
    write_manifest(rows[~test], paths[0])
    write_manifest(rows[test], paths[1])
    return paths


def text_config_name(*, explain: bool) -> str:
    """The text step's config file: with explanations or without."""
    return EXPLAIN_CONFIG if explain else TEXT_CONFIG


def text_folder(*, explain: bool) -> str:
    """The text step's folder under the demo folder."""
    return "text_explain" if explain else "text"


def text_config(
    config_file: Path, out: Path, train: Path, test: Path, overrides: Sequence[str] = ()
) -> ExperimentConfig:
    """The text step's config redirected to the demo folder ``out``.

    ``overrides`` (``key=value``) are applied last.
    """
    redirect = [
        f"out_dir='{out}'",
        f"data.cache_dir='{out / 'cache'}'",
        f"data.manifests=['{train}']",
        f"data.target_manifests=['{test}']",
    ]
    return load_config(config_file, [*redirect, *overrides])


def _mean_f1(frame: pd.DataFrame, aus: list[int]) -> float:
    scores = [
        binary_f1(frame[au_column(au, "true")].to_numpy(), frame[au_column(au, "pred")].to_numpy())
        for au in aus
    ]
    return float(np.nanmean(scores))


def score_answers(
    frame: pd.DataFrame, aus: list[int], train_thresholds: list[float] | None = None
) -> dict[str, Any]:
    """Linear-head and per-format scores (means over AUs) of a predictions CSV.

    Args:
        frame: Predictions with ``AUxx_prob/pred/true`` and ``answer_<format>`` columns.
        aus: AU numbers.
        train_thresholds: Per-AU thresholds chosen on the training predictions (never on test
            labels); with them, the linear head's binary F1 at those thresholds is added.

    Returns:
        ``linear_binary_f1`` (the model's thresholds), ``linear_auc``, optionally
        ``linear_binary_f1_train_threshold``, and ``formats`` (:func:`answer_tables`).
    """
    _, text = answer_tables(frame, aus)
    truth = {au: frame[au_column(au, "true")].to_numpy().astype(int) for au in aus}
    probs = {au: frame[au_column(au, "prob")].to_numpy() for au in aus}
    scores: dict[str, Any] = {
        "linear_binary_f1": _mean_f1(frame, aus),
        "linear_auc": float(np.nanmean([roc_auc(truth[au], probs[au]) for au in aus])),
    }
    if train_thresholds is not None:
        scores["linear_binary_f1_train_threshold"] = float(
            np.nanmean(
                [
                    binary_f1(truth[au], (probs[au] >= cut).astype(int))
                    for au, cut in zip(aus, train_thresholds, strict=True)
                ]
            )
        )
    return scores | {"formats": text}


def results_table(scores: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table: one row per head/format, one column pair per decoding mode."""
    modes = list(scores)
    header = f"{'head':<14}" + "".join(
        f"{m + ' F1':>18}{'parsed':>10}{'distinct':>10}" for m in modes
    )
    first = scores[modes[0]]
    lines = [header, "-" * len(header)]
    linear = first["linear_binary_f1"]
    lines.append(f"{'linear':<14}" + "".join(f"{linear:>18.3f}{'-':>10}{'-':>10}" for _ in modes))
    at_train = first.get("linear_binary_f1_train_threshold")
    notes = [f"linear head: AUC {first['linear_auc']:.3f}"]
    if at_train is not None:
        notes.append(
            f"binary F1 {at_train:.3f} at per-AU thresholds chosen on the training predictions "
            "(never on test labels), beside the table's F1 at the fixed threshold"
        )
    for fmt in first["formats"]:
        row = f"{'text:' + fmt:<14}"
        for mode in modes:
            values = scores[mode]["formats"][fmt]
            parsed = f"{values['n_answers'] - values['parse_failures']}/{values['n_answers']}"
            distinct = values["distinct_answers"]
            row += f"{values['mean_binary_f1']:>18.3f}{parsed:>10}{distinct:>10}"
        lines.append(row)
    return "\n".join([*lines, "; ".join(notes)])


def examples_text(frame: pd.DataFrame, aus: list[int], count: int = EXAMPLES) -> str:
    """The first ``count`` test clips' true AUs and answers in every format."""
    lines = []
    for _, row in frame.head(count).iterrows():
        truth = [f"AU{au}" for au in aus if row[au_column(au, "true")] == 1] or ["none"]
        lines.append(f"clip {row['subject']}/{row['clip']} (annotated: {', '.join(truth)})")
        for fmt in answer_formats(frame):
            lines.append(f"  {fmt:<6} {row[ANSWER_PREFIX + fmt]!r}")
    return "\n".join(lines)


def test_reliance(deployed: DeployedModel, cache_dir: Path, test: Path) -> dict[str, Any]:
    """The reliance measure (:mod:`au_llm.reliance`) of the deployed model on the test clips."""
    inference = deployed.inference
    cache = ClipCache(cache_dir, inference.preprocess)
    frames, strategy = deployed.spec.frames_per_clip, inference.frame_sampling
    dataset = ClipDataset(read_manifest(test), cache, deployed.aus, frames, strategy)
    return dataset_reliance(
        deployed.model, deployed.processor, dataset, batch_size=inference.batch_size
    )


def _deployed(cfg: ExperimentConfig, model_dir: Path) -> DeployedModel:
    """The model folder's model, trained first when the folder holds none."""
    if (model_dir / MODEL_FILE).is_file():
        return load_deployed(model_dir)
    return train_deployable(cfg, model_dir)


def run_text_demo(config_file: Path, out: Path, casme2_manifest: Path) -> dict[str, Any]:
    """Train the SmolLM2 ``head: both`` model, answer the test clips, print and save the results.

    Args:
        config_file: ``configs/demo_smollm2_text.yaml`` or, with explanations,
            ``configs/demo_smollm2_explain.yaml``.
        out: The demo folder (the step writes into ``out/text``, or ``out/text_explain`` when
            the config trains explanations; see :func:`text_folder`).
        casme2_manifest: The synthetic CASME II-style manifest.

    Returns:
        The scores per decoding mode (``free``, ``constrained``) and, with explanations, their
        faithfulness (``explanations``), as written to ``summary.json`` in the step's folder.
    """
    folder = out / text_folder(explain=load_config(config_file).model.explain)
    train, test = split_subjects(casme2_manifest, folder)
    cfg = text_config(config_file, out, train, test)
    deployed = _deployed(cfg, folder / "model")
    aus = deployed.aus
    explained = deployed.spec.model.explain
    scores, frames = {}, {}
    for mode, constrained in (("free", False), ("constrained", True)):
        options = PredictConfig(explain=explained and not constrained, constrained=constrained)
        predictor = ManifestPredictor(ClipScorer(deployed, options), out / "cache")
        frames[mode] = predictor.predict(test)
        atomic_write_csv(folder / f"predictions_{mode}.csv", frames[mode])
        train_thresholds = deployed.record.get("train_thresholds")
        scores[mode] = score_answers(frames[mode], aus, train_thresholds)
    results: dict[str, Any] = dict(scores)
    if explained:
        results["explanations"] = explanation_tables(frames["free"], aus)[1]
    results["reliance"] = test_reliance(deployed, out / "cache", test)
    atomic_write_text(folder / SUMMARY, json.dumps(results, indent=2) + "\n")
    print(
        f"== SmolLM2-135M, head: both, {len(frames['free'])} test clips of 2 held-out subjects =="
    )
    print(results_table(scores))
    print("\nExample answers (greedy, unconstrained):")
    print(examples_text(frames["free"], aus))
    if explained:
        print("\n" + "\n".join(explanation_notes(results["explanations"])))
    print("\n" + "\n".join(reliance_notes(results["reliance"])))
    return results
