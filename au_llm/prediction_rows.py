"""The columns of one prediction row, shared by the protocols' fold CSVs and ``au-llm predict``.

A row is its keys (``dataset, subject, clip, fold, seed`` in a protocol; source, span and face in
``au-llm predict``), then :func:`output_columns`: ``AUxx_prob, AUxx_pred`` (and ``AUxx_true``
when labels are known) per AU, with a vision head (``model.vision_head``) its
``AUxx_prob_vision`` (and ``AUxx_pred_vision`` where its thresholds are known), one
``answer_<format>`` per text format, and with explanations the clip's annotation (``au_raw``,
``aus``) beside its ``explanation``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from au_llm.answers import decision_matrix
from au_llm.inference import ClipOutputs
from au_llm.metrics import apply_thresholds, au_column, au_prediction_columns
from au_llm.reports.answers import ANSWER_PREFIX
from au_llm.reports.explanations import EXPLANATION_COLUMN


def output_columns(
    outputs: ClipOutputs,
    aus: Sequence[int],
    thresholds: np.ndarray | float,
    head: str,
    formats: Sequence[str],
    labels: np.ndarray | None = None,
    explained: Mapping[str, Any] | None = None,
    vision_thresholds: np.ndarray | float | None = None,
) -> dict[str, Any]:
    """The columns after a row's keys, for ``N`` clips, in their order.

    With ``head: text`` the AU scores are the first format's parsed 0/1 answers (the model has
    no linear head to give probabilities), so ``AUxx_prob`` holds those decisions.

    Args:
        outputs: The model's outputs for the clips (``probs`` ``[N, A]``).
        aus: AU numbers, in the order of ``outputs.probs``.
        thresholds: ``[A]`` per-AU thresholds, or one for every AU.
        head: The model's head (``linear``, ``text`` or ``both``).
        formats: The model's text formats (the first decides under ``head: text``).
        labels: ``[N, A]`` 0/1 labels, when known (adds ``AUxx_true``).
        explained: With explanations: the annotation columns to show beside them (``au_raw``,
            ``aus``); None when explanations were not asked for.
        vision_thresholds: The vision head's ``[A]`` per-AU thresholds (or one for every AU),
            which add its decisions ``AUxx_pred_vision``; None gives its probabilities alone.

    Returns:
        Column name -> ``N`` values, in column order.
    """
    probs = outputs.probs
    if head == "text":
        probs = decision_matrix(formats[0], aus, outputs.answers[formats[0]])
    columns: dict[str, Any] = dict(au_prediction_columns(aus, probs, thresholds, labels))
    if outputs.vision_probs is not None:
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
