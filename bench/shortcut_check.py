"""Static-shortcut check of a dataset: can one frame without motion give the AUs away?

For a manifest (e.g. the synthetic ``--difficulty hard`` level) it fits, subject-wise LOSO, one
L2-regularised logistic regression per AU on the pixels of a single aligned frame (the clip's
onset frame, downsampled to 16x16), and, as the reference that does see the movement, the same
classifier on the difference between the middle sampled frame and the onset frame. It prints
the pooled ROC AUC per AU and the mean of both, and saves JSON. On a dataset without a static
shortcut the onset-frame AUC stays near 0.5 while the difference AUC is clearly above it.

Usage: ``python bench/shortcut_check.py --manifest M.csv --cache DIR [--out results.json]``
(1 torch thread).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from au_llm.config import load_config
from au_llm.metrics import roc_auc
from au_llm.prepare import prepare_data
from au_llm.preprocess.dataset import ClipDataset
from au_llm.runs.layout import preprocess_report

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_casme2_loso.yaml"


def features(clips: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """``[N, C, T, H, W]`` clips -> (onset-frame pixels, middle-minus-onset pixels), 16x16 each."""
    pool = torch.nn.functional.adaptive_avg_pool2d
    onset = pool(clips[:, :, 0], 16).flatten(1)
    middle = pool(clips[:, :, clips.shape[2] // 2], 16).flatten(1)
    return onset.numpy(), (middle - onset).numpy()


def logistic_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Scores of an L2 logistic regression (standardised inputs, 300 L-BFGS steps)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.tensor((x_train - mean) / std, dtype=torch.float32)
    xs = torch.tensor((x_test - mean) / std, dtype=torch.float32)
    y = torch.tensor(y_train, dtype=torch.float32)
    w = torch.zeros(xt.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=300)

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, y)
        loss = loss + 1e-2 * (w**2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return (xs @ w + b).detach().numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("bench/results/shortcut_check.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(
        CONFIG, [f"data.manifests=['{args.manifest}']", f"data.cache_dir='{args.cache}'"]
    )
    data = prepare_data(
        cfg.data,
        cfg.preprocess,
        preprocess_report(args.out.parent),
        cfg.protocol,
        progress=False,
    )
    rows = data.source.reset_index(drop=True)
    dataset = ClipDataset(rows, data.cache, data.aus, cfg.sampling.frames_per_clip, "uniform")
    clips = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = dataset.labels.numpy()
    views = dict(zip(("onset_frame", "middle_minus_onset"), features(clips), strict=True))
    subjects = rows["subject"].astype(str).to_numpy()
    result: dict[str, dict[str, float]] = {}
    for name, x in views.items():
        per_au = {}
        for j, au in enumerate(data.aus):
            scores = np.zeros(len(rows))
            for subject in np.unique(subjects):
                test = subjects == subject
                y = labels[~test, j]
                if y.min() == y.max():
                    scores[test] = y[0]
                    continue
                scores[test] = logistic_scores(x[~test], y, x[test])
            per_au[f"AU{au}"] = roc_auc(labels[:, j], scores)
        per_au["mean"] = float(np.nanmean(list(per_au.values())))
        result[name] = per_au
        print(
            f"{name:<20} mean AUC {per_au['mean']:.3f}  "
            + "  ".join(f"{k} {v:.2f}" for k, v in per_au.items() if k != "mean")
        )
    report = {"manifest": str(args.manifest), "n_clips": len(rows), "auc": result}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
