"""GPU check: device tests, LOSO F1 in bf16 on CUDA vs fp32 on CPU, speed, SmolLM2 throughput.

Commands (from the repository root):

1. Here, on a CPU machine with the full environment (``make`` done), prepare the data once::

       .venv/bin/python bench/gpu_check.py --prepare .gpudata

   It writes synthetic CASME II-style data, aligns it (mediapipe) and keeps only what the GPU
   machine needs in ``.gpudata`` (a few MB): the manifest, the aligned-clip cache, the SmolLM2
   tokenizer's files and the CPU fp32 LOSO result (``cpu_fp32.json``, 1 thread). The data is
   written under ``--root`` (default ``/tmp/au_llm_gpu_check``), the same absolute path on both
   machines, because the cache is keyed by the clips' source paths.
   ``bash bench/gpu_wheels.sh`` puts the pure-Python wheels the GPU machine lacks (omegaconf and
   antlr4-python3-runtime) into ``.whl/``.

2. On the GPU machine (carry ``.gpudata`` and ``.whl``), at most about 8 minutes::

       python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
       export PYTHONPATH=/tmp/site:$PWD
       python3 bench/gpu_check.py --data .gpudata --out $OUT

   Sections, each in its own process with its own time limit, results written after each:
   (a) the device tests (``tests/model/test_precision.py``) with ``AU_LLM_TEST_DEVICE=cuda``;
   (b) the tiny LOSO (the demo's model and data) on CUDA in bf16 and in fp32, with the F1 of the
   CPU fp32 run from step 1 (same data, same seeds) and the difference;
   (c) ``bench/reference_speed.py --device cuda`` at the Qwen2-0.5B shape, batch 8/32/128, fp32
   and bf16; (d) training and inference throughput (clips/s) of a SmolLM2-135M-shaped model
   (random weights of its shape: speed does not depend on the weights' values).
   ``$OUT/gpu_check.json`` holds everything; a summary is printed at the end.

``--device cpu --dry-run`` runs every section at tiny sizes in seconds (the test suite does).
Nothing here imports mediapipe, decord or pytorchvideo on the GPU machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROOT = Path("/tmp/au_llm_gpu_check")
LOSO_CONFIG = REPO / "configs" / "demo_casme2_loso.yaml"
DRY_CONFIG = REPO / "configs" / "tiny_cpu_loso.yaml"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
DEVICE_TESTS = "tests/model/test_precision.py"
# Time limits of the sections on a GPU (seconds); the whole check stays under 8 minutes.
LIMITS = {"tests": 100, "loso": 150, "reference_speed": 120}


def loso_overrides(root: Path, device: str, precision: str) -> list[str]:
    """Config overrides of the check's LOSO run on the data under ``root``."""
    return [
        f"out_dir='{root / 'runs'}'",
        f"name=loso_{device}_{precision}",
        f"data.manifests=['{root / 'casme2.csv'}']",
        f"data.cache_dir='{root / 'cache'}'",
        f"train.device={device}",
        f"train.precision={precision}",
        "train.num_threads=1",
        "preprocess.workers=0",
    ]


def run_loso(root: Path, device: str, precision: str, dry_run: bool) -> dict[str, Any]:
    """One LOSO run (fresh run folder); its pooled F1, precision used and seconds."""
    from au_llm.config import load_config
    from au_llm.recipes.experiment import run_protocol

    config = DRY_CONFIG if dry_run else LOSO_CONFIG
    cfg = load_config(config, loso_overrides(root, device, precision))
    shutil.rmtree(Path(cfg.out_dir) / cfg.name, ignore_errors=True)
    start = time.perf_counter()
    run_dir, _ = run_protocol(cfg, progress=False)
    summary = json.loads((run_dir / "summary.json").read_text())["metrics"]
    run = json.loads((run_dir / "run.json").read_text())
    return {
        "config": str(config.relative_to(REPO)),
        "device": device,
        "precision": run["precision"],
        "pooled_binary_f1": summary["pooled_binary_f1"],
        "seconds": time.perf_counter() - start,
    }


def prepare(folder: Path, root: Path, subjects: int, clips: int, dry_run: bool) -> None:
    """Write the data under ``root``, align it, run the CPU fp32 LOSO, copy the needs to ``folder``.

    ``folder`` gets ``casme2.csv``, ``cache/``, ``tokenizer/`` (when the built-in SmolLM2 is
    installed) and ``cpu_fp32.json``.
    """
    from au_llm.config import load_config
    from au_llm.data.build import build_manifest
    from au_llm.data.manifest import write_manifest
    from au_llm.prepare import prepare_data
    from au_llm.runs.layout import preprocess_report
    from au_llm.synth import write_synthetic

    shutil.rmtree(root, ignore_errors=True)
    synth = write_synthetic("casme2", root / "synth", subjects, clips, seed=0)
    result = build_manifest("casme2", root=synth.root, coding=synth.coding, strict=True)
    write_manifest(result.frame, root / "casme2.csv")
    config = DRY_CONFIG if dry_run else LOSO_CONFIG
    cfg = load_config(config, loso_overrides(root, "cpu", "fp32"))
    report = preprocess_report(root / "runs" / "prepare")
    prepare_data(cfg.data, cfg.preprocess, report, cfg.protocol, progress=False)
    reference = run_loso(root, "cpu", "fp32", dry_run)
    print(f"CPU fp32 LOSO: F1 {reference['pooled_binary_f1']:.4f} ({reference['seconds']:.0f} s)")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    shutil.copy2(root / "casme2.csv", folder / "casme2.csv")
    shutil.copytree(root / "cache", folder / "cache")
    tokenizer = _tokenizer_dir()
    if tokenizer is not None:
        (folder / "tokenizer").mkdir()
        for name in TOKENIZER_FILES:
            if (tokenizer / name).is_file():
                shutil.copy2(tokenizer / name, folder / "tokenizer" / name)
    reference["root"] = str(root)
    (folder / "cpu_fp32.json").write_text(json.dumps(reference, indent=2) + "\n")
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    print(f"prepared {folder} ({size / 1e6:.1f} MB); data root {root}")


def _tokenizer_dir() -> Path | None:
    """The built-in SmolLM2's folder when it is installed here, else None."""
    try:
        from au_llm.model.smollm2 import smollm2_dir

        return smollm2_dir()
    except Exception as exc:  # the model files are optional here: report and go on
        print(f"SmolLM2 tokenizer not available ({exc}); reference_speed uses its default")
        return None


def _section(name: str, command: list[str], limit: float, env: dict[str, str]) -> dict[str, Any]:
    """Run one section's command with a time limit; its status, seconds and output tail."""
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command,
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=limit,
        )
        status, output = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        status = "timeout"
        output = (exc.stdout or b"").decode(errors="replace") if exc.stdout else ""
    seconds = time.perf_counter() - start
    print(f"[{name}] status {status} in {seconds:.0f} s", flush=True)
    return {"status": status, "seconds": seconds, "output_tail": output[-4000:]}


def smollm2_throughput(
    device: str, precision: str, batch: int, steps: int, shape: str = "smollm2-135m"
) -> dict[str, Any]:
    """Training and inference clips/s of a SmolLM2-135M-shaped model (random weights).

    ``shape``: a ``bench/reference_speed.py`` shape (``tiny`` for dry runs).
    """
    sys.path.insert(0, str(REPO / "bench"))
    from reference_speed import SHAPES

    from au_llm.config import LLMConfig, ModelConfig, TrainConfig
    from au_llm.inference import clip_outputs, inference_prompt_cache
    from au_llm.losses import build_loss
    from au_llm.model.checkpoint import build_model
    from au_llm.model.precision import autocast
    from au_llm.model.spec import ModelSpec
    from au_llm.training import batch_loss, make_optimizer

    model_cfg, size = ModelConfig(llm=LLMConfig(source="tiny", tiny=SHAPES[shape])), 64
    if shape == "tiny":  # dry runs: a small backbone and projector on 32x32 frames too
        model_cfg.backbone.high_dim, model_cfg.projector.hidden, size = 32, 32, 32
    spec = ModelSpec(model_cfg, tuple(range(8)), 1, 6, size)
    torch_device = torch.device(device)
    model, processor = build_model(spec, 0, torch_device, precision)
    generator = torch.Generator().manual_seed(0)
    clips = torch.rand(batch, *spec.clip_shape, generator=generator).to(torch_device)
    labels = torch.randint(0, 2, (batch, 8), generator=generator).float().to(torch_device)
    cfg = TrainConfig()
    loss_fn = build_loss(labels.cpu(), kind=cfg.loss, reduction=cfg.loss_reduction).to(torch_device)
    optimizer = make_optimizer(
        list(model.trainable_parameters()),
        name=cfg.optimizer,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )

    def train_step(step: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast(torch_device, model.precision):
            loss = batch_loss(model, processor, clips, labels, loss_fn, step)
        loss.backward()
        optimizer.step()

    def timed(fn: Any) -> float:
        fn(0)  # warm-up
        _sync(torch_device)
        start = time.perf_counter()
        for step in range(steps):
            fn(step + 1)
        _sync(torch_device)
        return time.perf_counter() - start

    model.train()
    train_s = timed(train_step)
    model.eval()
    cache = inference_prompt_cache(model)
    infer_s = timed(lambda _: clip_outputs(model, processor, clips, prompt_cache=cache))
    return {
        "shape": shape,
        "precision": model.precision,
        "batch": batch,
        "steps": steps,
        "train_clips_per_s": batch * steps / train_s,
        "inference_clips_per_s": batch * steps / infer_s,
    }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _machine(device: str) -> dict[str, Any]:
    """Where the check ran: GPU name and capability, CPU flags, versions."""
    from au_llm.model.precision import bf16_native

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "bf16_native": bf16_native(torch.device(device)),
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
        info["capability"] = list(torch.cuda.get_device_capability(0))
    return info


def check(data: Path, out: Path, device: str, root: Path, dry_run: bool) -> dict[str, Any]:
    """Run the sections on ``device`` with the prepared ``data``; write and return the results."""
    out.mkdir(parents=True, exist_ok=True)
    if root.resolve() != data.resolve():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        shutil.copy2(data / "casme2.csv", root / "casme2.csv")
        shutil.copytree(data / "cache", root / "cache")
    results: dict[str, Any] = {"machine": _machine(device), "dry_run": dry_run}
    path = out / "gpu_check.json"

    def save() -> None:
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")

    limits = {key: value * (4 if dry_run else 1) for key, value in LIMITS.items()}
    python = sys.executable
    tests = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", DEVICE_TESTS]
    if dry_run:
        tests += ["-k", "led or fp32_linear"]
    results["tests"] = _section("tests", tests, limits["tests"], {"AU_LLM_TEST_DEVICE": device})
    save()
    loso: dict[str, Any] = {"prepared_cpu_fp32": json.loads((data / "cpu_fp32.json").read_text())}
    for precision in ("bf16", "fp32"):
        start = time.perf_counter()
        try:
            loso[f"{device}_{precision}"] = run_loso(root, device, precision, dry_run)
        except Exception as exc:  # keep going: the other sections still give their numbers
            loso[f"{device}_{precision}"] = {"error": repr(exc)}
        print(f"[loso {device} {precision}] {time.perf_counter() - start:.0f} s", flush=True)
        if time.perf_counter() - start > limits["loso"]:
            break
    cpu_f1 = loso["prepared_cpu_fp32"]["pooled_binary_f1"]
    for key, row in loso.items():
        if key != "prepared_cpu_fp32" and "pooled_binary_f1" in row:
            row["f1_minus_cpu_fp32"] = row["pooled_binary_f1"] - cpu_f1
    results["loso"] = loso
    save()
    results["reference_speed"] = {}
    for precision in ("bf16", "fp32"):  # one process each: a time-out loses one precision only
        speed_json = out / f"reference_speed_{precision}.json"
        speed = [python, "bench/reference_speed.py", "--device", device, "--out", str(speed_json)]
        speed += ["--precisions", precision]
        if dry_run:
            speed += ["--quick", "--shapes", "tiny", "--batches", "2", "--tokenizer", "byte"]
        else:
            speed += ["--shapes", "qwen2-0.5b", "--batches", "8", "32", "128", "--repeats", "2"]
            if (data / "tokenizer").is_dir():
                speed += ["--tokenizer", str(data / "tokenizer")]
        row = _section(f"reference_speed {precision}", speed, limits["reference_speed"], {})
        if speed_json.is_file():
            row["table"] = json.loads(speed_json.read_text())["table"]
        results["reference_speed"][precision] = row
        save()
    batch, steps = (2, 1) if dry_run else (32, 10)
    smollm2 = {}
    for precision in ("bf16", "fp32"):
        try:
            shape = "tiny" if dry_run else "smollm2-135m"
            smollm2[precision] = smollm2_throughput(device, precision, batch, steps, shape)
        except Exception as exc:  # report it with the other sections' results
            smollm2[precision] = {"error": repr(exc)}
    results["smollm2"] = smollm2
    save()
    print(summary(results))
    print(f"wrote {path}")
    return results


def summary(results: dict[str, Any]) -> str:
    """The check's results in a few lines."""
    lines = [f"machine: {results['machine']}", f"device tests: {results['tests']['status']}"]
    for key, row in results["loso"].items():
        if "pooled_binary_f1" in row:
            diff = row.get("f1_minus_cpu_fp32")
            extra = f", minus CPU fp32: {diff:+.4f}" if diff is not None else ""
            lines.append(
                f"LOSO {key}: F1 {row['pooled_binary_f1']:.4f} ({row['seconds']:.0f} s{extra})"
            )
        else:
            lines.append(f"LOSO {key}: {row}")
    for precision, speed in results["reference_speed"].items():
        lines.append(f"reference_speed {precision}: status {speed['status']}")
        lines.append(speed.get("table", speed["output_tail"][-1500:]))
    for precision, row in results["smollm2"].items():
        if "error" in row:
            lines.append(f"SmolLM2 {precision}: {row['error']}")
        else:
            lines.append(
                f"SmolLM2 {row['shape']} {row['precision']} batch {row['batch']}: train "
                f"{row['train_clips_per_s']:.1f} clips/s, inference "
                f"{row['inference_clips_per_s']:.1f} clips/s"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="write the data folder for the GPU machine")
    parser.add_argument("--data", type=Path, help="the folder written by --prepare")
    parser.add_argument("--out", type=Path, help="results folder (gpu_check.json)")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="absolute data root")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes (seconds, any device)")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--clips-per-subject", type=int, default=8)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.prepare is not None:
        prepare(args.prepare, args.root, args.subjects, args.clips_per_subject, args.dry_run)
        return 0
    if args.data is None or args.out is None:
        parser.error("give --prepare FOLDER, or --data FOLDER and --out FOLDER")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (use --device cpu for a dry run)")
    check(args.data, args.out, args.device, args.root, args.dry_run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
