"""The demo: ``python -m pipelines.demo [--out runs/demo] [--no-llm]`` (what ``make demo`` runs).

Synthetic CASME II- and SAMM-style data -> manifests -> alignment -> LOSO -> cross-domain ->
reports, plots and per-clip AU CSVs, with a tiny random LLM on CPU.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from au_llm.demo import run_demo


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the demo."""
    parser = argparse.ArgumentParser(prog="pipelines.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo"))
    parser.add_argument("--no-llm", action="store_true", help="the ablation without the LLM")
    parser.add_argument("--subjects", type=int, default=8, help="synthetic subjects per dataset")
    parser.add_argument("--clips-per-subject", type=int, default=8)
    args = parser.parse_args(argv)
    run_demo(args.out, args.no_llm, args.subjects, args.clips_per_subject)
    return 0


if __name__ == "__main__":
    sys.exit(main())
