"""The columns of one prediction row, shared by the protocols' fold CSVs and ``au-llm predict``.

A row is its keys (``dataset, subject, clip, fold, seed`` in a protocol; source, span and face in
``au-llm predict``), then :func:`output_columns`: ``AUxx_prob, AUxx_pred`` (and ``AUxx_true``
when labels are known) per AU, with a vision head (``model.vision_head``) its
``AUxx_prob_vision`` (and ``AUxx_pred_vision`` where its thresholds are known), one
``answer_<format>`` per text format, and with explanations the clip's annotation (``au_raw``,
``aus``) beside its ``explanation``.

No row ever holds a non-finite score: :func:`check_finite_scores` refuses them here, where scores
become rows (and where training predictions become thresholds), naming the clip and the AU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from au_llm.answers import decision_matrix
from au_llm.inference import ClipOutputs
from au_llm.metrics import apply_thresholds, au_column, au_prediction_columns
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.reports.explanations import EXPLANATION_COLUMN


class NonFiniteScoreError(ValueError):
    """A model gave a NaN or infinite score; the message names the clip and the AU."""


def check_finite_scores(
    probs: np.ndarray, aus: Sequence[int], keys: pd.DataFrame | None = None, what: str = "scores"
) -> None:
    """Refuse scores that are NaN or infinite (damaged weights, a diverged training).

    Args:
        probs: ``[N, A]`` scores.
        aus: AU numbers, in the column order of ``probs``.
        keys: ``N`` rows identifying the clips or windows (e.g. ``dataset, subject, clip, fold,
            seed``), to name the first bad one; None names it by its row number.
        what: What the scores are, for the message.

    Raises:
        NonFiniteScoreError: Naming the first clip and AU with a non-finite score, and how many
            scores are.
    """
    bad = ~np.isfinite(np.asarray(probs, dtype=float))
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    if keys is None:
        name = f"row {row}"
    else:
        name = " ".join(f"{key}={value}" for key, value in keys.iloc[row].items())
    raise NonFiniteScoreError(
        f"{what}: {au_column(aus[col], 'prob')} = {probs[row, col]} for {name} ({int(bad.sum())} "
        f"of {bad.size} scores are not finite); nothing of it is written: the model's weights are "
        "damaged or its training diverged"
    )


def output_columns(
    outputs: ClipOutputs,
    aus: Sequence[int],
    thresholds: np.ndarray | float,
    head: str,
    formats: Sequence[str],
    labels: np.ndarray | None = None,
    explained: Mapping[str, Any] | None = None,
    *,
    keys: pd.DataFrame | None = None,
    vision_thresholds: np.ndarray | float | None = None,
) -> dict[str, Any]:
    """The columns after a row's keys, for ``N`` clips, in their order.

    With ``head: text`` the AU scores are the first format's parsed 0/1 answers (the model has
    no trained linear head to give probabilities), so ``AUxx_prob`` holds those decisions.
    Non-finite scores are refused (:func:`check_finite_scores`), the linear head's included
    under ``head: text``: its scores come from the same hidden states as the answers, so NaN
    there means the answers were decoded from NaN logits.

    Args:
        outputs: The model's outputs for the clips (``probs`` ``[N, A]``).
        aus: AU numbers, in the order of ``outputs.probs``.
        thresholds: ``[A]`` per-AU thresholds, or one for every AU.
        head: The model's head (``linear``, ``text`` or ``both``).
        formats: The model's text formats (the first decides under ``head: text``).
        labels: ``[N, A]`` 0/1 labels, when known (adds ``AUxx_true``).
        explained: With explanations: the annotation columns to show beside them (``au_raw``,
            ``aus``); None when explanations were not asked for.
        keys: The rows' keys, to name a clip whose score is not finite.
        vision_thresholds: The vision head's ``[A]`` per-AU thresholds (or one for every AU),
            which add its decisions ``AUxx_pred_vision``; None gives its probabilities alone.

    Returns:
        Column name -> ``N`` values, in column order.

    Raises:
        NonFiniteScoreError: A score is NaN or infinite.
    """
    probs = outputs.probs
    check_finite_scores(probs, aus, keys, "AU scores")
    if head == "text":
        probs = decision_matrix(formats[0], aus, outputs.answers[formats[0]])
    columns: dict[str, Any] = dict(au_prediction_columns(aus, probs, thresholds, labels))
    if outputs.vision_probs is not None:
        check_finite_scores(outputs.vision_probs, aus, keys, "vision-head AU scores")
        columns.update(vision_columns(aus, outputs.vision_probs, vision_thresholds))
    columns.update({f"{ANSWER_PREFIX}{fmt}": texts for fmt, texts in outputs.answers.items()})
    if explained is not None:
        columns.update(explained)
        columns[EXPLANATION_COLUMN] = outputs.explanations
    return columns


VISION_SUFFIX = "_vision"
"""Suffix of the vision head's columns: ``AU01_prob_vision``, ``AU01_pred_vision``."""


def vision_columns(
    aus: Sequence[int], probs: np.ndarray, thresholds: np.ndarray | float | None
) -> dict[str, np.ndarray]:
    """The vision head's ``AUxx_prob_vision`` (and with thresholds ``AUxx_pred_vision``) columns."""
    preds = None if thresholds is None else apply_thresholds(probs, thresholds)
    columns = {}
    for j, au in enumerate(aus):
        columns[au_column(au, "prob") + VISION_SUFFIX] = probs[:, j]
        if preds is not None:
            columns[au_column(au, "pred") + VISION_SUFFIX] = preds[:, j]
    return columns
