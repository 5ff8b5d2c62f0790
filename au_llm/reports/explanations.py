"""Faithfulness of generated explanations (the ``explanation`` column of predictions.csv).

Each explanation is read back with :func:`au_llm.explain.parse_explanation` and compared, over the
run's AUs, with the linear head's decisions and with the labels; the sides it says are checked
against the annotation (``au_raw`` and ``aus`` columns). All numbers are pooled over every row
(every seed), as for the text answers. Three examples are chosen by rule:

* ``correct``: the named AUs equal the labelled ones and no side is contradicted; among those, the
  clip with the most labelled AUs, then the first in table order;
* ``partially_wrong``: the named and labelled AUs overlap but differ, or they are equal and a
  side is contradicted; the first in table order;
* ``wrong``: no AU in common (and not both empty); the first in table order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from au_llm.explain import annotation_marks, contradicted_sides, parse_explanation
from au_llm.metrics import au_column, decision_metrics

EXPLANATION_COLUMN = "explanation"
EXAMPLE_KINDS = ("correct", "partially_wrong", "wrong")


def _text(value: object) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _aus_text(aus: Sequence[int]) -> str:
    return ", ".join(f"AU{au}" for au in sorted(aus)) or "none"


def explanation_rows(frame: pd.DataFrame, aus: Sequence[int]) -> pd.DataFrame:
    """Per row: the AUs named (within ``aus``), the linear head's and the labelled AU sets.

    Args:
        frame: Predictions with ``explanation``, ``au_raw``, ``aus`` and ``AUxx_pred/_true``.
        aus: The run's AUs.

    Returns:
        Columns ``named``, ``linear``, ``labels`` (frozensets of AUs), ``contradicted`` (AUs
        whose side the annotation contradicts) and ``kind`` (one of :data:`EXAMPLE_KINDS`).
    """
    run_aus = set(aus)
    records = []
    for row in frame.to_dict("records"):
        parsed = parse_explanation(_text(row[EXPLANATION_COLUMN]))
        marks = annotation_marks(_text(row.get("au_raw")), _text(row.get("aus")))
        named = frozenset(parsed.aus & run_aus)
        labels = frozenset(au for au in aus if int(row[au_column(au, "true")]) == 1)
        linear = frozenset(au for au in aus if int(row[au_column(au, "pred")]) == 1)
        contradicted = tuple(contradicted_sides(parsed, marks))
        if named == labels:
            kind = "partially_wrong" if contradicted else "correct"
        elif named & labels:
            kind = "partially_wrong"
        else:
            kind = "wrong"
        records.append(
            {
                "named": named,
                "linear": linear,
                "labels": labels,
                "contradicted": contradicted,
                "kind": kind,
            }
        )
    return pd.DataFrame(records, columns=["named", "linear", "labels", "contradicted", "kind"])


def _example(frame: pd.DataFrame, rows: pd.DataFrame, kind: str) -> dict[str, Any] | None:
    chosen = rows.index[rows["kind"] == kind]
    if len(chosen) == 0:
        return None
    if kind == "correct":
        sizes = rows.loc[chosen, "labels"].map(len)
        position = chosen[int(np.argmax(sizes.to_numpy()))]
    else:
        position = chosen[0]
    source, parsed = frame.iloc[position], rows.loc[position]
    return {
        "seed": int(source["seed"]) if "seed" in source else None,
        "fold": str(source["fold"]) if "fold" in source else None,
        "clip": "/".join(str(source[key]) for key in ("dataset", "subject", "clip")),
        "annotation": _text(source.get("au_raw")),
        "labels": _aus_text(parsed["labels"]),
        "named": _aus_text(parsed["named"]),
        "linear_head": _aus_text(parsed["linear"]),
        "contradicted_sides": [int(au) for au in parsed["contradicted"]],
        "explanation": _text(source[EXPLANATION_COLUMN]),
    }


def explanation_tables(
    frame: pd.DataFrame, aus: Sequence[int]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Faithfulness of the explanations and per-AU metrics of the AUs they name.

    Args:
        frame: Predictions (all seeds) with an ``explanation`` column.
        aus: The run's AUs.

    Returns:
        ``(per_au, summary)``: per AU, ``head = explanation`` rows with ``binary_f1, macro_f1,
        precision, recall, n_clips`` of "the explanation names the AU" against the labels; and
        ``{"n_explanations", "agreement_with_linear_head", "mean_binary_f1",
        "side_contradiction_rate", "n_side_contradictions", "kinds", "examples"}``. Both are
        empty when ``frame`` has no ``explanation`` column.
    """
    if EXPLANATION_COLUMN not in frame.columns:
        return pd.DataFrame(), {}
    frame = frame.reset_index(drop=True)
    rows = explanation_rows(frame, aus)
    y_true = np.asarray([[int(au in s) for au in aus] for s in rows["labels"]], dtype=int)
    named = np.asarray([[int(au in s) for au in aus] for s in rows["named"]], dtype=int)
    y_true, named = y_true.reshape(len(rows), len(aus)), named.reshape(len(rows), len(aus))
    per_au = pd.DataFrame(
        [
            {
                "head": "explanation",
                "au": int(au),
                **decision_metrics(y_true[:, j], named[:, j]),
                "n_clips": len(rows),
            }
            for j, au in enumerate(aus)
        ]
    )
    n = len(rows)
    contradicting = int(sum(bool(c) for c in rows["contradicted"]))
    scores = per_au["binary_f1"].to_numpy(dtype=float)
    summary = {
        "n_explanations": n,
        "agreement_with_linear_head": float((rows["named"] == rows["linear"]).mean())
        if n
        else None,
        "mean_binary_f1": float(np.nanmean(scores)) if np.isfinite(scores).any() else None,
        "side_contradiction_rate": contradicting / n if n else None,
        "n_side_contradictions": contradicting,
        "kinds": {kind: int((rows["kind"] == kind).sum()) for kind in EXAMPLE_KINDS},
        "examples": {kind: _example(frame, rows, kind) for kind in EXAMPLE_KINDS},
        "definitions": {
            "agreement_with_linear_head": "share of explanations whose AUs (within the run's "
            "AUs) equal the linear head's predicted AUs",
            "mean_binary_f1": "binary F1 of 'the explanation names the AU' against the labels, "
            "pooled over all rows, mean over AUs",
            "side_contradiction_rate": "share of explanations that say left or right of an "
            "annotated AU coded bilateral or on the other side",
        },
    }
    return per_au, summary


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def explanation_notes(summary: dict[str, Any]) -> list[str]:
    """Report lines: the faithfulness numbers and the three examples."""
    if not summary:
        return []
    f1 = summary["mean_binary_f1"]
    lines = [
        f"Explanations ({summary['n_explanations']}): AUs named equal the linear head's "
        f"decisions in {_percent(summary['agreement_with_linear_head'])}; F1 of the named AUs "
        f"against the labels {'n/a' if f1 is None else f'{f1:.3f}'} (binary, mean over AUs, "
        f"pooled); a side the annotation contradicts in "
        f"{_percent(summary['side_contradiction_rate'])}."
    ]
    for kind in EXAMPLE_KINDS:
        example = summary["examples"][kind]
        label = kind.replace("_", " ")
        if example is None:
            lines.append(f"Example explanation ({label}): none in this run.")
            continue
        seed = "" if example["seed"] is None else f" (seed {example['seed']})"
        lines.append(
            f"Example explanation ({label}, chosen by rule): clip {example['clip']}{seed}, "
            f"annotated `{example['annotation']}`, labels "
            f"{example['labels']}, linear head {example['linear_head']}, named "
            f"{example['named']}: {json.dumps(example['explanation'], ensure_ascii=False)}"
        )
    return lines
