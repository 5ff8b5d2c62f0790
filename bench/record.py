"""Run an ``au-llm`` command and record what it printed and measured as a JSON under results/.

The documents quote figures of runs made with the ``au-llm`` commands themselves (``au-llm
demo``, ``au-llm loso``, ``au-llm ablate``, ...). This wrapper runs such a command unchanged,
echoes and keeps its standard output, and writes ``bench/results/<NAME>.json`` with:

- ``command``, ``seconds`` (wall time of the command), ``cpu_seconds`` (the CPU time, user and
  system, of the command and every process it waited for: on a machine shared with other jobs
  the wall time grows with the load, the CPU time of a single-threaded command much less, so it
  estimates the wall time on an idle machine), ``torch_threads`` (``OMP_NUM_THREADS``),
  ``load_average`` at the start and at the end, ``cpu_flags`` (AVX and bfloat16), ``platform``;
- ``stdout``: everything the command printed (the documents' output excerpts are checked
  against it);
- ``runs``: for each ``summary.json`` under the ``--collect`` folder, its content, keyed by its
  folder relative to that folder (``demo_casme2_loso``, ``text``, ...); ``ablations``: the same
  for each ``ablation.json`` (``au-llm ablate``'s comparison).

Run: ``python bench/record.py demo.json --collect /tmp/demo_run -- au-llm demo --out /tmp/demo_run``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

from au_llm.io_utils import atomic_write_text

RESULTS = Path(__file__).resolve().parent / "results"
CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_fp16")


def cpu_flags() -> list[str]:
    """Which of :data:`CPU_FLAGS` ``/proc/cpuinfo`` lists (empty where it cannot be read)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in lines if line.startswith("flags")), [])
    return [flag for flag in CPU_FLAGS if flag in flags]


def run_tee(command: list[str]) -> tuple[int, str]:
    """Run ``command``, echo its standard output line by line; its exit status and output."""
    lines = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            lines.append(line)
    return process.returncode, "".join(lines)


def collect(folder: Path, name: str) -> dict[str, object]:
    """Every file ``name`` under ``folder`` as JSON, keyed by its folder relative to ``folder``."""
    return {
        path.parent.relative_to(folder).as_posix(): json.loads(path.read_text())
        for path in sorted(folder.rglob(name))
    }


def children_cpu_seconds() -> float:
    """User and system CPU seconds of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="the JSON's file name under bench/results/")
    parser.add_argument("--collect", type=Path, help="the folder the command writes its runs into")
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command to run after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    start_load, start, start_cpu = os.getloadavg(), time.perf_counter(), children_cpu_seconds()
    status, stdout = run_tee(command)
    seconds, end_load = time.perf_counter() - start, os.getloadavg()
    cpu_seconds = children_cpu_seconds() - start_cpu
    if status != 0:
        print(f"[record] {' '.join(command)} exited with {status}; nothing written")
        return status
    record = {
        "command": " ".join(command),
        "seconds": round(seconds, 1),
        "cpu_seconds": round(cpu_seconds, 1),
        "torch_threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "load_average": {"start": round(start_load[0], 2), "end": round(end_load[0], 2)},
        "cpu_flags": cpu_flags(),
        "platform": platform.platform(),
        "stdout": stdout,
        "runs": collect(args.collect, "summary.json") if args.collect else {},
        "ablations": collect(args.collect, "ablation.json") if args.collect else {},
    }
    out = RESULTS / args.name
    atomic_write_text(out, json.dumps(record, indent=2, allow_nan=True) + "\n")
    print(f"[record] wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
