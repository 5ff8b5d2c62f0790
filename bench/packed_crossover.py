"""When one packed decoder call beats a prefix call followed by the suffixes (training's LLM pass).

A training step runs the prompt prefix (``P`` tokens, shared) and every sample's suffix (``S``
tokens: the visual token(s), any prompt text after them, AU queries) through the LLM with
gradients. :func:`au_llm.model.packed.packed_decode` does it in one call over ``P + B * S`` tokens
with a dense block mask; the alternative computes the prefix's keys and values once (with
gradients) and runs the ``B`` suffixes after them. For each suffix length, both passes'
forward+backward are timed as medians of ``--repeats`` interleaved rounds after a warm-up, on
SmolLM2-135M with the LoRA of ``configs/ablate_llm_study.yaml``, random suffix embeddings, batch
``--batch``. The longest packed sequence where packing still wins is
:data:`au_llm.model.packed.PACKED_MAX_TOKENS`'s evidence.

Usage: ``python bench/packed_crossover.py [--batch 32] [--suffixes 1,2,4,6,8,16,32]
[--repeats 3] [--threads 1]``; writes ``bench/results/packed_crossover.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch
from record import cpu_flags
from step_parts import interleaved_medians

from au_llm.config import load_config
from au_llm.io_utils import atomic_write_text
from au_llm.model.checkpoint import build_model
from au_llm.model.modeling_au_llm import AULLM
from au_llm.model.packed import PACKED_MAX_TOKENS, packed_decode
from au_llm.model.spec import ModelSpec

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "ablate_llm_study.yaml"
AUS = [1, 2, 4, 7, 12, 14, 15, 17]


def study_model(overrides: list[str]) -> AULLM:
    """A model of ``configs/ablate_llm_study.yaml`` with ``overrides``, as a fold builds it."""
    cfg = load_config(CONFIG, overrides)
    spec = ModelSpec.from_sections(cfg.model, AUS, cfg.preprocess, cfg.sampling)
    return build_model(spec, seed=1)[0]


def time_passes(model: AULLM, batch: int, suffix_len: int, repeats: int) -> dict[str, float]:
    """Median seconds of the packed and the two-call forward+backward for one suffix length."""
    decoder = model.llm.get_decoder()
    prefix_len = model._segment_lengths[0]
    generator = torch.Generator().manual_seed(suffix_len)
    hidden = model.llm.config.hidden_size
    suffix = torch.randn(batch, suffix_len, hidden, generator=generator, requires_grad=True)

    def packed() -> None:
        prefix = model.llm.get_input_embeddings()(model.prompt_ids[:prefix_len])
        packed_decode(decoder, prefix, suffix)[0, -1].square().sum().backward()

    def two_calls() -> None:
        past = model._past(suffix[:, :1], None)
        model._decode(suffix, past)[0][:, -1].square().sum().backward()

    medians = interleaved_medians({"packed": packed, "two_calls": two_calls}, repeats)
    return {
        "suffix_len": suffix_len,
        "packed_tokens": prefix_len + batch * suffix_len,
        "packed_s": medians["packed"],
        "two_calls_s": medians["two_calls"],
        "packed_speedup": medians["two_calls"] / medians["packed"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--suffixes", default="1,2,4,6,8,16,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/packed_crossover.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    model = study_model([]).train()
    rows = []
    for suffix_len in (int(s) for s in args.suffixes.split(",")):
        rows.append(time_passes(model, args.batch, suffix_len, args.repeats))
        print(json.dumps(rows[-1]), flush=True)
    packing_wins = [row["packed_tokens"] for row in rows if row["packed_speedup"] > 1]
    packing_loses = [row["packed_tokens"] for row in rows if row["packed_speedup"] <= 1]
    result = {
        "command": f"python bench/packed_crossover.py --batch {args.batch} --suffixes "
        f"{args.suffixes} --repeats {args.repeats} --threads {args.threads}",
        "llm": model.cfg.llm.source,
        "prefix_len": model._segment_lengths[0],
        "batch": args.batch,
        "rows": rows,
        "longest_packed_win": max(packing_wins, default=None),
        "shortest_packed_loss": min(packing_loses, default=None),
        "packed_max_tokens": PACKED_MAX_TOKENS,
        "threads": args.threads,
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "cpu_flags": cpu_flags(),
        "machine": platform.processor() or platform.machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
