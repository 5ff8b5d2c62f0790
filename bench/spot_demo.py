"""``au-llm demo --spot`` timed, with its MEGC table: the figures of ``docs/spotting.md``.

Runs the spotting demo (:mod:`au_llm.recipes.demo_spot`: synthetic CAS(ME)^2-style long
recordings -> manifest -> ``megc``, two seeds) into a fresh folder and writes its wall time, the
CPU seconds of the process (every thread; on a shared machine the wall time includes waiting
for a core), the load average before and after, the CPU count, and the run's
``spotting.json`` (mean, std and per-seed values of every metric, by dataset and method: the rule
spotter, random intervals, always negative).

Usage: ``python bench/spot_demo.py [--subjects 5] [--seconds 24] [--out
bench/results/spot_demo.json]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from au_llm.io_utils import atomic_write_text
from au_llm.recipes.demo_spot import run_spot_demo
from au_llm.runs.layout import SPOTTING_SUMMARY, RunLayout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=24.0)
    parser.add_argument("--out", type=Path, default=Path("bench/results/spot_demo.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        start, cpu_start = time.perf_counter(), time.process_time()
        run_dir = run_spot_demo(Path(folder), args.subjects, args.seconds)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        spotting = json.loads(RunLayout(run_dir).output(SPOTTING_SUMMARY).read_text())
        folds = json.loads((run_dir / "run.json").read_text()).get("folds")
    result = {
        "subjects": args.subjects,
        "seconds_per_recording": args.seconds,
        "folds": folds,
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpus": os.cpu_count(),
        "load_before": [round(v, 2) for v in load_before],
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "machine": platform.processor() or platform.machine(),
        "command": f"python bench/spot_demo.py --subjects {args.subjects} --seconds {args.seconds}",
        **spotting,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "table"}, indent=2))


if __name__ == "__main__":
    main()
