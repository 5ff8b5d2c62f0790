"""What the AU head reads at initialisation: the LLM's last state after the prompt, per reader.

For each reader (the pretrained LLM, the same architecture re-initialised at random, no LLM), a
model of ``configs/ablate_llm_study.yaml`` is built as a fold starts (LoRA adds nothing yet) and
run on ``--clips`` random clips. Per dimension of the state the head reads: the mean magnitude
over clips and the spread across clips. Recorded: the share of the squared norm held by the
``--top`` largest dimensions, their mean magnitudes, and the median and largest spread across
clips, which is what a linear head can use to tell clips apart (``model.head_norm`` divides
each dimension by it).

Usage: ``python bench/read_state.py [--clips 32] [--top 5] [--readers llm,llm_reinit,none]``;
writes ``bench/results/read_state.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from packed_crossover import study_model
from record import cpu_flags

from au_llm.io_utils import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]


def read_state(reader: str, n_clips: int) -> torch.Tensor:
    """The states ``[n_clips, D]`` the head of a freshly built ``reader`` model reads."""
    model = study_model([f"model.reader={reader}"]).eval()
    generator = torch.Generator().manual_seed(0)
    clips = torch.rand(n_clips, *model.clip_shape, generator=generator)
    with torch.no_grad():
        tokens = model.get_visual_tokens(clips)
        if model.llm is not None:
            return model._llm_read(tokens, None).double()
        return model.control_read(tokens).double()


def describe(states: torch.Tensor, top: int) -> dict[str, object]:
    """Magnitude and spread across clips of each dimension of ``states`` ``[N, D]``."""
    magnitude = states.abs().mean(0)
    spread = states.std(0)
    largest = magnitude.topk(top)
    squared = states.square().sum(0)
    return {
        "width": states.shape[1],
        "top_dims": largest.indices.tolist(),
        "top_mean_magnitude": largest.values.tolist(),
        "median_magnitude": float(magnitude.median()),
        "top_share_of_squared_norm": float(squared[largest.indices].sum() / squared.sum()),
        "top_spread_across_clips": spread[largest.indices].tolist(),
        "median_spread_across_clips": float(spread.median()),
        "max_spread_across_clips": float(spread.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--top", type=int, default=5)
    parser.add_argument("--readers", default="llm,llm_reinit,none")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/read_state.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    readers = args.readers.split(",")
    result = {
        "command": f"python bench/read_state.py --clips {args.clips} --top {args.top} "
        f"--readers {args.readers}",
        "config": "configs/ablate_llm_study.yaml",
        "readers": {name: describe(read_state(name, args.clips), args.top) for name in readers},
        "load_average": [round(v, 2) for v in os.getloadavg()],
        "cpu_flags": cpu_flags(),
        "machine": platform.processor() or platform.machine(),
    }
    print(json.dumps(result["readers"], indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
