"""Does the LLM read the clip? The reliance measure of a model with a text head.

For every test clip and answer format, the log-likelihood of the clip's own target answer (the
answer its annotation gives, teacher-forced) is computed three times: with the clip's own visual
token, with the tokens of other clips whose answer differs (up to ``n_others`` of them, the next
ones in clip order), and with a zero token. A model whose text follows the clip gives its own
answer a higher likelihood with its own token; a model that ignores the token gives the same
likelihood whichever token it reads.

Reported per format:

* ``own_vs_other``: the share of (clip, other clip) pairs in which the own token gives the higher
  likelihood (a tie counts one half, so a model that ignores the token scores 0.5, one that
  reads it 1.0), and ``margin_other``: the mean over clips of own minus the mean of the others'
  log-likelihoods (nats per answer).
* ``own_vs_zero`` and ``margin_zero``: the same against the zero token.
* ``n_clips`` and ``n_pairs``: clips measured and (clip, other clip) pairs compared.

The measure needs only the model and labelled clips, so it applies to any data, real included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from au_llm.inference import visual_tokens
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.precision import autocast
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.preprocess.dataset import ClipDataset

N_OTHERS = 3
# Log-likelihoods closer than this (relative) count as a tie: batch composition changes float
# rounding, so a model that ignores its token does not give bit-identical values.
TIE_TOLERANCE = 1e-4

LogLik = Callable[[Tensor, Tensor, Tensor], Tensor]


def answer_logliks(model: AULLM, tokens: Tensor, ids: Tensor, targets: Tensor) -> Tensor:
    """Summed log-probability of each clip's target tokens, teacher-forced.

    Args:
        model: A model with an LLM.
        tokens: ``[B, n, H]`` visual tokens.
        ids: ``[B, L]`` instruction + answer ids (the processor's ``answer_batch``).
        targets: ``[B, L]`` the answer ids, -100 where no loss is taken.

    Returns:
        ``[B]`` float32 log-likelihoods (nats), computed in the model's precision.
    """
    targets = targets.to(tokens.device)
    keep = targets != -100
    with autocast(tokens.device, model.precision):
        _, lm_logits = model.forward_text_tokens(tokens, ids.to(tokens.device), keep)
    logp = torch.log_softmax(lm_logits.float(), dim=-1)
    picked = logp.gather(-1, targets[keep].unsqueeze(-1)).squeeze(-1)
    rows = keep.nonzero()[:, 0]
    return torch.zeros(len(ids), device=picked.device).index_add_(0, rows, picked)


def other_clips(labels: np.ndarray, n_others: int = N_OTHERS) -> np.ndarray:
    """For each clip, the next ``n_others`` clips (cyclic order) whose label row differs.

    Args:
        labels: ``[N, n_aus]`` 0/1 labels.
        n_others: Other clips per clip.

    Returns:
        ``[N, n_others]`` clip indices, -1 where fewer clips with another answer exist.
    """
    n = len(labels)
    chosen = np.full((n, n_others), -1, dtype=int)
    for i in range(n):
        found = [
            (i + k) % n for k in range(1, n) if not np.array_equal(labels[(i + k) % n], labels[i])
        ]
        chosen[i, : min(n_others, len(found))] = found[:n_others]
    return chosen


def preference(own: np.ndarray, other: np.ndarray) -> np.ndarray:
    """1 where ``own`` is higher, 0 where lower, 0.5 for a tie (see ``TIE_TOLERANCE``)."""
    tolerance = TIE_TOLERANCE * np.maximum(1.0, np.abs(own))
    diff = own - other
    return np.where(np.abs(diff) <= tolerance, 0.5, (diff > 0).astype(float))


def summarise_logliks(own: np.ndarray, other: np.ndarray, zero: np.ndarray) -> dict[str, float]:
    """The reliance numbers of one format from its log-likelihoods.

    Args:
        own: ``[N]`` with the clip's own token.
        other: ``[N, K]`` with other clips' tokens (nan where there was none).
        zero: ``[N]`` with a zero token.

    Returns:
        ``own_vs_other, margin_other, own_vs_zero, margin_zero, n_clips, n_pairs`` (nan when
        nothing was compared).
    """
    valid = ~np.isnan(other)
    pairs = preference(np.repeat(own[:, None], other.shape[1], axis=1), np.nan_to_num(other))
    has_other = valid.any(axis=1)
    counts = np.maximum(1, valid.sum(axis=1))
    other_mean = np.where(valid, np.nan_to_num(other), 0.0).sum(axis=1) / counts
    return {
        "own_vs_other": float(pairs[valid].mean()) if valid.any() else float("nan"),
        "margin_other": (
            float((own - other_mean)[has_other].mean()) if has_other.any() else float("nan")
        ),
        "own_vs_zero": float(preference(own, zero).mean()) if len(own) else float("nan"),
        "margin_zero": float((own - zero).mean()) if len(own) else float("nan"),
        "n_clips": len(own),
        "n_pairs": int(valid.sum()),
    }


def token_reliance(
    model: AULLM,
    processor: AULLMProcessor,
    tokens: Tensor,
    labels: np.ndarray,
    formats: Sequence[str],
    loglik: LogLik | None = None,
    n_others: int = N_OTHERS,
) -> dict[str, dict[str, float]]:
    """The reliance numbers per format for clips given by their visual tokens.

    Args:
        model: The model.
        processor: Its text processor (it builds the teacher-forced answers).
        tokens: ``[N, n, H]`` visual tokens of the clips.
        labels: ``[N, n_aus]`` 0/1 labels of the clips.
        formats: Answer formats to measure.
        loglik: ``(tokens, ids, targets) -> [B]`` log-likelihoods (default
            :func:`answer_logliks` of ``model``).
        n_others: Other clips compared per clip.

    Returns:
        Format -> :func:`summarise_logliks`.
    """
    score = loglik or (lambda t, i, y: answer_logliks(model, t, i, y))
    others = other_clips(labels, n_others)
    label_tensor = torch.as_tensor(labels, dtype=torch.float32)
    results = {}
    for fmt in formats:
        ids, targets = processor.answer_batch(label_tensor, [fmt] * len(labels))
        own = score(tokens, ids, targets).float().cpu().numpy()
        other = np.full(others.shape, np.nan)
        for k in range(others.shape[1]):
            rows = np.flatnonzero(others[:, k] >= 0)
            if len(rows):
                swapped = tokens[torch.as_tensor(others[rows, k])]
                values = score(swapped, ids[rows], targets[rows]).float().cpu().numpy()
                other[rows, k] = values
        zero = score(torch.zeros_like(tokens), ids, targets).float().cpu().numpy()
        results[fmt] = summarise_logliks(own, other, zero)
    return results


def dataset_reliance(
    model: AULLM,
    processor: AULLMProcessor,
    dataset: ClipDataset,
    *,
    batch_size: int,
    n_others: int = N_OTHERS,
) -> dict[str, dict[str, float]]:
    """:func:`token_reliance` of every clip of a labelled dataset, for the model's text formats.

    Args:
        model: A trained model with a text head (run in eval mode, without gradients).
        processor: Its text processor.
        dataset: Labelled clips (deterministic sampling).
        batch_size: Clips per backbone pass.
        n_others: Other clips compared per clip.

    Returns:
        Format -> reliance numbers; empty for a model without a text head.
    """
    if not model.cfg.has_text_head:
        return {}
    tokens = visual_tokens(model, dataset, batch_size)
    labels, formats = dataset.labels.numpy(), model.cfg.text.formats
    with torch.inference_mode():
        return token_reliance(model, processor, tokens, labels, formats, n_others=n_others)


def run_reliance(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per format, the clip-weighted mean of the folds' reliance numbers.

    Args:
        records: The finished folds' records (:meth:`~au_llm.runs.run.Run.fold_records`).

    Returns:
        Format -> the mean numbers and the total ``n_clips``/``n_pairs``; empty when no fold
        recorded a reliance measure.
    """
    per_format: dict[str, list[dict[str, float]]] = {}
    for record in records:
        for fmt, values in record.get("reliance", {}).items():
            per_format.setdefault(fmt, []).append(values)
    summary = {}
    for fmt, folds in per_format.items():
        weights = np.array([f["n_clips"] for f in folds], dtype=float)
        entry: dict[str, float] = {}
        for key in ("own_vs_other", "margin_other", "own_vs_zero", "margin_zero"):
            values = np.array([np.nan if f[key] is None else f[key] for f in folds], dtype=float)
            ok = ~np.isnan(values) & (weights > 0)
            entry[key] = float(np.average(values[ok], weights=weights[ok])) if ok.any() else None
        entry["n_clips"] = int(weights.sum())
        entry["n_pairs"] = int(sum(f["n_pairs"] for f in folds))
        summary[fmt] = entry
    return summary


def reliance_notes(summary: dict[str, dict[str, float]]) -> list[str]:
    """Report lines: per format, how often the own visual token wins and by how much."""

    def number(value: float | None, fmt: str) -> str:
        return "n/a" if value is None or np.isnan(value) else format(value, fmt)

    lines = []
    for fmt, v in summary.items():
        lines.append(
            f"Reliance, format `{fmt}`: the clip's own visual token gives its answer the higher "
            f"likelihood in {number(v['own_vs_other'], '.0%')} of {v['n_pairs']} comparisons "
            f"with other clips' tokens (margin {number(v['margin_other'], '.2f')} nats) and in "
            f"{number(v['own_vs_zero'], '.0%')} of {v['n_clips']} clips against a zero token "
            f"(margin {number(v['margin_zero'], '.2f')}); 50% means the text ignores the clip."
        )
    return lines
