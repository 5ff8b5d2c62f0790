"""Where the demo's text step spends its time: the vocabulary projection at target positions only.

The model of ``configs/demo_smollm2_text.yaml`` with explanations (SmolLM2-135M-Instruct, LoRA,
``head: both``, ``model.explain=true``) on a batch of 8 random clips with annotations drawn
from the demo's AU sets. For its two teacher-forced passes, the ``list`` answer and the
explanation, it times forward + backward of the text loss from fixed visual tokens, as medians
of ``--repeats`` interleaved rounds after a warm-up, in two ways:

* ``all``: next-token logits for every position of instruction + target (49152-word
  vocabulary), then the loss on the target positions;
* ``targets``: logits at the target positions only (what :func:`au_llm.training.batch_loss`
  does), the same loss.

It also times a whole training step (:func:`~au_llm.training.batch_loss` + backward + AdamW),
and prints each pass's tokens and the ratios. Writes ``bench/results/text_step.json``.

Usage: ``python bench/text_step.py [--repeats 5] [--threads 1]``
"""

from __future__ import annotations

import argparse
import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from step_parts import interleaved_medians  # bench/ is on sys.path

from au_llm.config import load_config
from au_llm.data.au_codes import parse_au_cell
from au_llm.io_utils import atomic_write_text
from au_llm.losses import build_loss
from au_llm.model.checkpoint import build_model
from au_llm.model.spec import ModelSpec
from au_llm.training import batch_loss, make_optimizer

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "demo_smollm2_text.yaml"
AU_SETS = ["1+2", "4", "4+7", "12", "14", "1+L2", "15+17", "R12"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("bench/results/text_step.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = load_config(CONFIG, ["model.explain=true", "train.explain_weight=1.0"])
    aus = cfg.data.aus
    spec = ModelSpec.from_sections(cfg.model, aus, cfg.preprocess, cfg.sampling)
    model, processor = build_model(spec, 0, "cpu")
    model.train()
    size, frames = cfg.preprocess.size, cfg.sampling.frames_per_clip
    clips = torch.rand(len(AU_SETS), 1, frames, size, size)
    annotated = [parse_au_cell(cell).aus for cell in AU_SETS]
    labels = torch.tensor([[float(au in cell) for au in aus] for cell in annotated])
    canonical = ["+".join(map(str, cell)) for cell in annotated]
    meta = {
        "dataset": ["casme2"] * len(AU_SETS),
        "subject": [f"sub{i:02d}" for i in range(len(AU_SETS))],
        "clip": ["EP01_01"] * len(AU_SETS),
        "au_raw": AU_SETS,
        "aus": canonical,
        "emotion": ["disgust"] * len(AU_SETS),
    }
    rows = [{key: values[i] for key, values in meta.items()} for i in range(len(AU_SETS))]
    passes = {
        "list": processor.answer_batch(labels, ["list"] * len(AU_SETS)),
        "explanation": processor.explanation_batch(rows, 0),
    }
    tokens = model.get_visual_tokens(clips).detach().requires_grad_(True)

    def text_pass(
        ids: torch.Tensor, targets: torch.Tensor, *, only_targets: bool
    ) -> Callable[[], None]:
        def go() -> None:
            keep = targets != -100
            if only_targets:
                _, logits = model.forward_text_tokens(tokens, ids, keep)
                loss = F.cross_entropy(logits, targets[keep])
            else:
                _, logits = model.forward_text_tokens(tokens, ids)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
            loss.backward()

        return go

    report: dict[str, Any] = {
        "command": f"python bench/text_step.py --repeats {args.repeats} --threads {args.threads}",
        "platform": platform.platform(),
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "batch": len(AU_SETS),
        "passes": {},
    }
    for name, (ids, targets) in passes.items():
        times = interleaved_medians(
            {
                "all": text_pass(ids, targets, only_targets=False),
                "targets": text_pass(ids, targets, only_targets=True),
            },
            args.repeats,
        )
        row = {
            "positions": int(ids.numel()),
            "target_tokens": int((targets != -100).sum()),
            "all_s": times["all"],
            "targets_s": times["targets"],
            "speedup": times["all"] / times["targets"],
        }
        report["passes"][name] = row
        print(
            f"{name} pass (batch {len(AU_SETS)}, {row['positions']} positions, "
            f"{row['target_tokens']} target tokens): logits everywhere {row['all_s']:.3f} s, "
            f"at targets {row['targets_s']:.3f} s = {row['speedup']:.2f}x"
        )
    train = cfg.train
    optimizer = make_optimizer(
        model.trainable_parameters(),
        name=train.optimizer,
        lr=train.lr,
        weight_decay=train.weight_decay,
    )
    loss_fn = build_loss(np.asarray(labels), kind=train.loss, reduction=train.loss_reduction)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        batch_loss(model, processor, clips, labels, loss_fn, 0, meta=meta).backward()
        optimizer.step()

    report["train_step_s"] = interleaved_medians({"step": step}, args.repeats)["step"]
    print(f"whole training step (list + explanation, AdamW): {report['train_step_s']:.3f} s")
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
