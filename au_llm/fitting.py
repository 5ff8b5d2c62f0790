"""One model trained on a fold's clips, with decision thresholds never chosen on test labels.

:func:`fit` holds out an inner validation split of the training subjects when asked, trains
through :func:`~au_llm.training.train_model` and chooses per-AU thresholds on the training clips'
own predictions, or on the validation clips' (``eval.threshold_policy: val``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from au_llm.config import EvalConfig, SamplingConfig, TrainConfig
from au_llm.inference import ClipOutputs, predict_clips
from au_llm.metrics import best_thresholds, known_rows, threshold_grid
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.prediction_rows import check_finite_scores
from au_llm.preprocess.cache import ClipCache
from au_llm.preprocess.dataset import ClipDataset
from au_llm.training import TrainResult, train_model


def inner_split(
    train: pd.DataFrame, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out a fraction of the training subjects (at least one, never all) for validation.

    Raises:
        ValueError: If fewer than two training subjects are available.
    """
    keys = list(zip(train["dataset"], train["subject"], strict=True))
    subjects = sorted(set(keys))
    if len(subjects) < 2:
        raise ValueError(
            f"train.val_fraction = {fraction} needs at least 2 training subjects, "
            f"got {len(subjects)}"
        )
    rng = np.random.default_rng(seed)
    n_val = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    chosen = {subjects[i] for i in rng.choice(len(subjects), size=n_val, replace=False)}
    is_val = np.array([key in chosen for key in keys])
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


def validation_thresholds(
    labels: np.ndarray, probs: np.ndarray, grid: np.ndarray, *, fixed: float
) -> np.ndarray:
    """Per AU, the grid threshold that maximises F1 on validation clips (``val`` policy).

    An AU without a positive label among the validation clips keeps ``fixed``: there the best
    threshold is any that predicts no positive, which says nothing about the AU's positives.

    Args:
        labels: ``[N, A]`` 0/1 labels of the validation clips (NaN where unknown).
        probs: ``[N, A]`` their scores.
        grid: ``[K]`` candidate thresholds.
        fixed: The threshold of an AU without a validation positive.

    Returns:
        ``[A]`` thresholds.
    """
    has_positive = np.nansum(labels, axis=0) > 0
    return np.where(has_positive, best_thresholds(labels, probs, grid), fixed)


def _checked_scores(
    model: AULLM,
    processor: AULLMProcessor,
    dataset: ClipDataset,
    *,
    batch_size: int,
    desc: str,
    clips: str,
) -> ClipOutputs:
    """The model's outputs on ``dataset``, refusing a NaN or infinite score of either head.

    Args:
        model: The trained model.
        processor: Its text processor.
        dataset: The clips to score.
        batch_size: Clips per forward pass.
        desc: The fold, for the error.
        clips: Which of its clips (``training``, ``validation``), for the error.
    """
    outputs, metas = predict_clips(model, processor, dataset, batch_size=batch_size)
    keys = pd.DataFrame(metas, columns=["dataset", "subject", "clip"])
    aus = list(model.spec.aus)
    check_finite_scores(outputs.probs, aus, keys, f"{desc}: scores of its {clips} clips")
    if outputs.vision_probs is not None:
        what = f"{desc}: vision-head scores of its {clips} clips"
        check_finite_scores(outputs.vision_probs, aus, keys, what)
    return outputs


@dataclass
class FitResult:
    """One trained model's record.

    Attributes:
        train: The rows trained on (the inner validation split removed).
        n_val: Clips in the inner validation split (0 without one).
        thresholds: Per-AU decision thresholds ``[n_aus]``.
        result: Loss curves and timing.
        train_thresholds: Per-AU thresholds chosen on the training clips' predictions, whatever
            the policy (reported beside fixed-threshold F1; equal to ``thresholds`` under
            ``train``).
        label_counts: Per AU (as text), the training clips' ``known`` and ``positive`` labels
            (an AU without a known label was never learnt).
        vision_thresholds: The vision head's per-AU thresholds under the same policy (chosen on
            its own training predictions under ``train``); None without a vision head.
    """

    train: pd.DataFrame
    n_val: int
    thresholds: np.ndarray
    result: TrainResult
    train_thresholds: np.ndarray
    label_counts: dict[str, dict[str, int]]
    vision_thresholds: np.ndarray | None = None


def fit(
    model: AULLM,
    processor: AULLMProcessor,
    *,
    rows: pd.DataFrame,
    cache: ClipCache,
    train_cfg: TrainConfig,
    sampling: SamplingConfig,
    eval_cfg: EvalConfig,
    seed: int,
    desc: str = "train",
    progress: bool = True,
) -> FitResult:
    """Train ``model`` on ``rows`` and choose its thresholds, never from test labels.

    An inner validation split of the subjects is held out when ``train.val_fraction > 0``. The
    training clips' own predictions always give per-AU thresholds (``train_thresholds``); the
    ``train`` policy decides with them, ``val`` with thresholds chosen on the validation clips'
    predictions (:func:`validation_thresholds`), the others with ``eval.fixed_threshold``
    (``test-oracle`` thresholds are chosen later, on pooled test predictions, when the report is
    built).

    Args:
        model: The model (its spec gives the AUs; it learns explanations with
            ``model.explain``).
        processor: Its text processor.
        rows: Manifest rows of the training clips.
        cache: The aligned-clip cache holding them.
        train_cfg: The ``train`` section.
        sampling: The ``sampling`` section.
        eval_cfg: The ``eval`` section (threshold policy and grid).
        seed: The fold's seed.
        desc: Label of the epoch progress bar.
        progress: Show the epoch progress bar.
    """
    aus, explain = list(model.spec.aus), model.cfg.explain
    frames = model.spec.frames_per_clip
    train, val = rows, None
    if train_cfg.val_fraction > 0:
        train, val = inner_split(rows, train_cfg.val_fraction, seed)
    train_strategy, test_strategy = sampling.train_strategy, sampling.test_strategy
    train_set = ClipDataset(train, cache, aus, frames, train_strategy, seed, annotation=explain)
    val_set = (
        None
        if val is None
        else ClipDataset(val, cache, aus, frames, test_strategy, seed, annotation=explain)
    )
    result = train_model(
        model,
        processor,
        train_set,
        train_cfg,
        seed=seed,
        val_set=val_set,
        desc=desc,
        progress=progress,
    )
    thresholds = np.full(len(aus), eval_cfg.fixed_threshold)
    eval_set = ClipDataset(train, cache, aus, frames, test_strategy, seed=seed)
    batch_size = train_cfg.batch_size
    outputs = _checked_scores(
        model, processor, eval_set, batch_size=batch_size, desc=desc, clips="training"
    )
    grid = threshold_grid(*eval_cfg.threshold_grid)
    labels = eval_set.labels.numpy()
    train_thresholds = best_thresholds(labels, outputs.probs, grid)
    vision = None if outputs.vision_probs is None else thresholds
    if eval_cfg.threshold_policy == "train":
        thresholds = train_thresholds
        if outputs.vision_probs is not None:
            vision = best_thresholds(labels, outputs.vision_probs, grid)
    elif eval_cfg.threshold_policy == "val":
        if val_set is None:
            raise ValueError(
                "eval.threshold_policy = val needs an inner validation split "
                "(train.val_fraction > 0)"
            )
        val_outputs = _checked_scores(
            model, processor, val_set, batch_size=batch_size, desc=desc, clips="validation"
        )
        val_labels = val_set.labels.numpy()
        fixed = eval_cfg.fixed_threshold
        thresholds = validation_thresholds(val_labels, val_outputs.probs, grid, fixed=fixed)
        if val_outputs.vision_probs is not None:
            vision_probs = val_outputs.vision_probs
            vision = validation_thresholds(val_labels, vision_probs, grid, fixed=fixed)
    n_val = 0 if val is None else len(val)
    counts = {
        str(au): {"known": int(known_rows(column).sum()), "positive": int(np.nansum(column))}
        for au, column in zip(aus, labels.T, strict=True)
    }
    return FitResult(train, n_val, thresholds, result, train_thresholds, counts, vision)
