"""Speed of the project's AU-LLM against the reference code's structure, with the same weights.

The reference structure is written here from the AU-LLM paper's description and the published
code's behaviour (not copied from it):

* backbone: the same LED + 3D-CNN, in its 3-D form (``pool(relu(conv3d(x)))``);
* projector: the Enhanced Fusion Projector with the paper's hidden width (in + out) / 2;
* LLM: the base loaded from disk and wrapped with ``peft.get_peft_model`` (LoRA on q/v); for every
  sample the prompt is tokenised again and embedded, the visual token appended, and the full
  causal LM runs with ``output_hidden_states=True`` (vocabulary logits at every position); the
  last position of ``hidden_states[-1]`` feeds the linear AU head;
* optimiser: ``torch.optim.Adam`` with its defaults.

The project's model (:func:`au_llm.model.modeling_au_llm.build_au_llm`) gets the same weights
(backbone, projector, head, LoRA and base); a check prints the largest logit difference. Timed, as
medians over ``--repeats`` interleaved runs (reference, project, reference, ...) after one
warm-up run each:

* a training step (forward, ASL loss, backward, optimiser step; the project's optimiser from
  :func:`au_llm.training.make_optimizer`, fused Adam where available);
* inference without gradients (the project with its prompt cache, computed once per model version
  as every prediction loop does; the cache's own time is reported beside it);
* fold start-up: the reference reloads the LLM from disk and wraps it with LoRA (and builds new
  backbone/projector/head); the project calls ``reset_trainable``;
* the parts both models run alike, backbone and projector (forward+backward in training, forward
  at inference): reference time / that time is the ratio's ceiling, reached only if the
  project's LLM part cost nothing.

Shapes: a random Qwen2-0.5B-shaped LLM (hidden 896, 24 layers, 14 heads / 2 KV heads, MLP 4864,
vocabulary 151936) and a SmolLM2-135M-shaped one (Llama: hidden 576, 30 layers, 9 heads / 3 KV
heads, MLP 1536, vocabulary 49152), tied embeddings; clips of 6 gray 64x64 frames; the project's
default prompt, tokenised by a real BPE tokenizer (the built-in SmolLM2's, installed by ``make``;
its ids fit both vocabularies): the random LLMs' byte tokenizer would make the prompt 82 tokens
instead of about 11, which inflates the reference's per-sample cost (and its batch-128 training
step does not fit in 24 GB). CPU runs use ``--threads`` (default 1) torch threads.

Each shape runs once per ``--precisions`` entry (default ``fp32 bf16``), exactly as training and
inference run under ``train.precision`` (:mod:`au_llm.model.precision`): under ``bf16`` both
models run under bfloat16 autocast (the reference keeps its float32 weights, as autocast code
does) and the project's frozen base is stored in bfloat16; under ``fp32`` neither uses autocast.
``bf16`` is forced even where it is only emulated (an AVX2-only CPU, where it is much slower), so
the CPU flags printed with the results say whether the numbers are native.

Usage: ``python bench/reference_speed.py [--quick] [--device cpu|cuda] [--batches 8 32 128]
[--precisions fp32 bf16]``; writes ``bench/results/reference_speed[_cuda].json``.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import transformers
from torch import Tensor, nn

from au_llm.config import LLMConfig, ModelConfig, TinyLLMConfig, TrainConfig
from au_llm.io_utils import atomic_write_text
from au_llm.losses import build_loss
from au_llm.model.backbones import LED3DCNN, build_backbone
from au_llm.model.llm import PromptTokenizer, load_base_llm, lora_parameters
from au_llm.model.modeling_au_llm import AULLM, build_au_llm
from au_llm.model.precision import CPU_BF16_FLAGS, autocast, bf16_native, cpu_flags
from au_llm.model.processing_au_llm import AULLMProcessor
from au_llm.model.projector import EnhancedFusionProjector
from au_llm.model.spec import ModelSpec
from au_llm.training import make_optimizer

N_AUS, CHANNELS, FRAMES, SIZE = 8, 1, 6, 64
SHAPES = {
    "qwen2-0.5b": TinyLLMConfig(
        arch="qwen2",
        hidden_size=896,
        num_layers=24,
        num_heads=14,
        num_kv_heads=2,
        intermediate_size=4864,
        vocab_size=151936,
    ),
    "smollm2-135m": TinyLLMConfig(
        arch="llama",
        hidden_size=576,
        num_layers=30,
        num_heads=9,
        num_kv_heads=3,
        intermediate_size=1536,
        vocab_size=49152,
    ),
    # dry runs only (bench/gpu_check.py --dry-run): seconds on any CPU
    "tiny": TinyLLMConfig(hidden_size=32, num_layers=1, num_heads=2, num_kv_heads=1),
}


class ReferenceAULLM(nn.Module):
    """The reference code's model structure (see the module docstring).

    Args:
        backbone: LED3DCNN (run in its 3-D form).
        projector: Enhanced Fusion Projector.
        head: Linear AU head.
        llm: Causal LM wrapped by ``peft.get_peft_model``.
        tokenizer: Prompt tokenizer.
        prompt: Prompt text (the visual token goes after it).
    """

    def __init__(
        self,
        backbone: LED3DCNN,
        projector: EnhancedFusionProjector,
        head: nn.Linear,
        llm: nn.Module,
        tokenizer: PromptTokenizer,
        prompt: str,
    ) -> None:
        super().__init__()
        self.backbone, self.projector, self.head, self.llm = backbone, projector, head, llm
        self.tokenizer, self.prompt = tokenizer, prompt

    def features(self, clips: Tensor) -> tuple[Tensor, Tensor]:
        """Backbone in the 3-D form: ``[B, C, T, H, W]`` -> ``(mid [B, m], high [B, h])``."""
        bb = self.backbone
        x = bb.led(clips)
        x = bb.drop1(bb.bn1(bb.pool1(F.relu(bb.conv1(x)))))
        x = bb.se(bb.bn2(F.relu(bb.conv2(x))))
        full = bb.drop2(bb.pool2(x)).flatten(1)
        return full, bb.drop_high(F.relu(bb.fc_high(full)))

    def forward(self, clips: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` clips -> ``[B, n_aus]`` logits."""
        tokens = self.projector(*self.features(clips))  # [B, 1, H]
        embed = self.llm.get_input_embeddings()
        rows = []
        for token in tokens:  # the prompt tokenised and embedded again for every sample
            ids = torch.tensor(self.tokenizer.encode(self.prompt), device=clips.device)
            rows.append(torch.cat([embed(ids), token.to(embed.weight.dtype)]))
        outputs = self.llm(inputs_embeds=torch.stack(rows), output_hidden_states=True)
        return self.head(outputs.hidden_states[-1][:, -1].float())


def real_tokenizer_processor(spec: ModelSpec, tokenizer_dir: Path | None = None) -> AULLMProcessor:
    """A text processor with the built-in SmolLM2's BPE tokenizer: both models' prompts use it.

    The random LLM's byte tokenizer is replaced. ``tokenizer_dir``: a folder holding that
    tokenizer's files (default: the built-in model's); ``byte`` keeps the random LLM's own byte
    tokenizer (dry runs).
    """
    if tokenizer_dir == Path("byte"):
        return AULLMProcessor.from_spec(spec)
    from au_llm.model.llm import HFTokenizer
    from au_llm.model.smollm2 import smollm2_dir

    folder = tokenizer_dir or smollm2_dir()
    return AULLMProcessor(
        spec, HFTokenizer(transformers.AutoTokenizer.from_pretrained(str(folder)), folder)
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def _interleaved(
    fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device
) -> dict[str, float]:
    """Median seconds of each function over ``repeats`` interleaved rounds, after one warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn, device))
    return {name: statistics.median(values) for name, values in times.items()}


def _load_reference(
    base_dir: Path, project: AULLM, tokenizer: PromptTokenizer, device: torch.device
) -> tuple[ReferenceAULLM, float]:
    """Reload the base from disk, wrap it with LoRA, build the other parts; returns (model, s)."""
    from peft import LoraConfig, get_peft_model

    spec, cfg = project.spec, project.cfg
    start = time.perf_counter()
    base = transformers.AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    lora = cfg.llm.lora
    llm = get_peft_model(
        base,
        LoraConfig(
            r=lora.r,
            lora_alpha=lora.alpha,
            lora_dropout=lora.dropout,
            target_modules=list(lora.target_modules),
        ),
    )
    backbone = build_backbone(cfg.backbone, spec.in_channels, spec.frames_per_clip, spec.size)
    projector = EnhancedFusionProjector(
        backbone.mid_dim, backbone.high_dim, project.projector.out_dim, cfg.projector
    )
    head = nn.Linear(project.projector.out_dim, spec.n_aus)
    model = ReferenceAULLM(backbone, projector, head, llm, tokenizer, cfg.llm.prompt)
    model.to(device)
    _sync(device)
    return model, time.perf_counter() - start


def _copy_weights(reference: ReferenceAULLM, project: AULLM) -> None:
    """Give the reference the project's trainable weights (backbone, projector, head, LoRA)."""
    reference.backbone.load_state_dict(project.backbone.state_dict())
    reference.projector.load_state_dict(project.projector.state_dict())
    reference.head.load_state_dict(project.head.state_dict())
    ours, theirs = lora_parameters(project.llm), lora_parameters(reference.llm)
    if len(ours) != len(theirs):
        raise RuntimeError(f"LoRA parameter counts differ: {len(ours)} vs {len(theirs)}")
    with torch.no_grad():
        for mine, other in zip(ours, theirs, strict=True):
            other.copy_(mine)


def _perturb_lora(project: AULLM) -> None:
    """LoRA B starts at zero; give it values so that the equality check tests the adapters."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in lora_parameters(project.llm):
            param.add_(0.02 * torch.randn(param.shape, generator=generator).to(param.device))


def _autocast(device: torch.device, precision: str) -> torch.autocast:
    """The autocast of ``precision`` on ``device`` (both models; :mod:`au_llm.model.precision`)."""
    return autocast(device, precision)


def _time_batch(
    models: dict[str, tuple[nn.Module, torch.optim.Optimizer]],
    clips: Tensor,
    labels: Tensor,
    cfg: TrainConfig,
    repeats: int,
    device: torch.device,
    precision: str,
) -> dict[str, Any]:
    """Training-step and inference medians of the reference and the project on one batch."""
    loss_fn = build_loss(labels.cpu().numpy(), kind=cfg.loss, reduction=cfg.loss_reduction)
    loss_fn = loss_fn.to(device)
    project: AULLM = models["project"][0]

    def step(name: str) -> None:
        model, optimizer = models[name]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, precision):
            logits = model(clips)
        loss_fn(logits.float(), labels).backward()
        optimizer.step()

    def infer(name: str, cache: Any = None) -> None:
        model = models[name][0]
        model.eval()
        with torch.no_grad(), _autocast(device, precision):
            model(clips) if cache is None else model(clips, prompt_cache=cache)

    def make_cache() -> Any:
        project.eval()
        with torch.no_grad(), _autocast(device, precision):
            return project.prompt_cache()

    def shared_step() -> None:
        project.train()
        with _autocast(device, precision):
            tokens = project.get_visual_tokens(clips)
        tokens.float().sum().backward()

    def shared_infer() -> None:
        project.eval()
        with torch.no_grad(), _autocast(device, precision):
            project.get_visual_tokens(clips)

    cache = make_cache()
    train = _interleaved(
        {**{name: lambda name=name: step(name) for name in models}, "shared": shared_step},
        repeats,
        device,
    )
    inference = _interleaved(
        {
            "reference": lambda: infer("reference"),
            "project": lambda: infer("project", cache),
            "cache": make_cache,
            "shared": shared_infer,
        },
        repeats,
        device,
    )
    return {
        "train_step_s": {name: train[name] for name in models},
        "inference_s": {name: inference[name] for name in models},
        "shared_s": {"train": train["shared"], "inference": inference["shared"]},
        "prompt_cache_s": inference["cache"],
        "train_ratio": train["reference"] / train["project"],
        "inference_ratio": inference["reference"] / inference["project"],
        "train_ceiling": train["reference"] / train["shared"],
        "inference_ceiling": inference["reference"] / inference["shared"],
    }


def run_shape(
    name: str,
    tiny: TinyLLMConfig,
    batches: list[int],
    repeats: int,
    device: torch.device,
    precision: str,
    tokenizer_dir: Path | None = None,
) -> dict[str, Any]:
    """Benchmark one LLM shape at every batch size in ``precision``; returns timings and ratios."""
    model_cfg = ModelConfig(llm=LLMConfig(source="tiny", tiny=tiny))
    size = SIZE
    if name == "tiny":  # dry runs: a small backbone and projector on 32x32 frames too
        model_cfg.backbone.high_dim, model_cfg.projector.hidden, size = 32, 32, 32
    spec = ModelSpec(model_cfg, tuple(range(1, N_AUS + 1)), CHANNELS, FRAMES, size)
    processor = real_tokenizer_processor(spec, tokenizer_dir)
    project = build_au_llm(spec, 0, device, precision, processor.prompt_ids)
    name = f"{name} {project.precision}"
    _perturb_lora(project)
    with tempfile.TemporaryDirectory(prefix="au_llm_ref_") as tmp:
        base = load_base_llm(spec.model.llm).model
        base.save_pretrained(tmp)
        del base
        gc.collect()
        reference, _ = _load_reference(Path(tmp), project, processor.tokenizer, device)
        _copy_weights(reference, project)
        generator = torch.Generator().manual_seed(0)
        check = torch.rand(2, *spec.clip_shape, generator=generator).to(device)
        project.eval()
        reference.eval()
        with torch.no_grad(), _autocast(device, precision):
            max_diff = float((project(check) - reference(check)).abs().max())
        print(f"{name}: largest logit difference reference vs project {max_diff:.2e}", flush=True)
        cfg = TrainConfig(optimizer="adam", lr=1e-5, weight_decay=0.0)
        ref_optimizer = torch.optim.Adam(
            [p for p in reference.parameters() if p.requires_grad], lr=cfg.lr
        )
        optimizer = make_optimizer(
            project.trainable_parameters(),
            name=cfg.optimizer,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
        )
        per_batch = {}
        for batch_size in batches:
            clips = torch.rand(batch_size, *spec.clip_shape, generator=generator)
            labels = torch.randint(0, 2, (batch_size, N_AUS), generator=generator).float()
            models = {"reference": (reference, ref_optimizer), "project": (project, optimizer)}
            x, y = clips.to(device), labels.to(device)
            row = _time_batch(models, x, y, cfg, repeats, device, project.precision)
            per_batch[str(batch_size)] = row
            train, infer = row["train_step_s"], row["inference_s"]
            print(
                f"  batch {batch_size:4d}: train {train['reference']:.3f}s / "
                f"{train['project']:.3f}s = {row['train_ratio']:.1f}x; inference "
                f"{infer['reference']:.3f}s / {infer['project']:.3f}s = "
                f"{row['inference_ratio']:.1f}x; shared backbone+projector train "
                f"{row['shared_s']['train']:.3f}s, inference {row['shared_s']['inference']:.3f}s "
                f"(ceilings {row['train_ceiling']:.1f}x / {row['inference_ceiling']:.1f}x)",
                flush=True,
            )
        del reference, ref_optimizer
        gc.collect()
        startup = _time_startup(Path(tmp), project, processor.tokenizer, repeats, device)
    print(
        f"  fold start-up: reload + LoRA {startup['reference_s']:.2f}s / reset_trainable "
        f"{startup['project_s']:.3f}s = {startup['ratio']:.0f}x",
        flush=True,
    )
    return {
        "name": name,
        "llm": vars(tiny),
        "precision": project.precision,
        "prompt_tokens": len(project.prompt_ids),
        "trainable_parameters": sum(p.numel() for p in project.trainable_parameters()),
        "frozen_base_dtype": str(project.llm.get_input_embeddings().weight.dtype),
        "max_logit_difference": max_diff,
        "batches": per_batch,
        "startup": startup,
    }


def _time_startup(
    base_dir: Path,
    project: AULLM,
    tokenizer: PromptTokenizer,
    repeats: int,
    device: torch.device,
) -> dict[str, float]:
    """Fold start-up, interleaved: reference reload + LoRA wrap vs project ``reset_trainable``."""
    reference_s, project_s = [], []
    for seed in range(repeats):
        model, seconds = _load_reference(base_dir, project, tokenizer, device)
        reference_s.append(seconds)
        del model
        gc.collect()
        project_s.append(_timed(lambda seed=seed: project.reset_trainable(seed + 1), device))
    ref, ours = statistics.median(reference_s), statistics.median(project_s)
    return {"reference_s": ref, "project_s": ours, "ratio": ref / ours}


def _table(results: list[dict[str, Any]], command: str) -> str:
    """Markdown table of the ratios (reference time / project time)."""
    batches = list(results[0]["batches"])
    lines = [
        f"`{command}`",
        "",
        "| LLM shape | " + " | ".join(f"batch {b}" for b in batches) + " |",
        "|---|" + "---|" * len(batches),
    ]
    for result in results:
        for label, key in (
            ("training step", "train_ratio"),
            ("inference", "inference_ratio"),
            ("training ceiling (reference / shared parts)", "train_ceiling"),
            ("inference ceiling", "inference_ceiling"),
        ):
            cells = [f"{result['batches'][b][key]:.1f}x" for b in batches]
            lines.append(f"| {result['name']}, {label} | " + " | ".join(cells) + " |")
        startup = result["startup"]
        lines.append(
            f"| {result['name']}, fold start-up | {startup['ratio']:.0f}x "
            f"({startup['reference_s']:.1f} s vs {startup['project_s']:.3f} s) |"
            + " |"
            * (len(batches) - 1)
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per measurement")
    parser.add_argument("--quick", action="store_true", help="one timed round (--repeats 1)")
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument(
        "--shapes", nargs="+", choices=list(SHAPES), default=["qwen2-0.5b", "smollm2-135m"]
    )
    parser.add_argument(
        "--precisions", nargs="+", choices=("auto", "fp32", "bf16"), default=["fp32", "bf16"]
    )
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--tokenizer",
        type=Path,
        help="folder of the SmolLM2 tokenizer's files (default: built-in; byte: the random LLM's)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    device = torch.device(args.device)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    out = args.out or Path(f"bench/results/reference_speed{suffix}.json")
    start = time.perf_counter()
    results = [
        run_shape(name, SHAPES[name], args.batches, repeats, device, precision, args.tokenizer)
        for name in args.shapes
        for precision in args.precisions
    ]
    command = "python bench/reference_speed.py " + " ".join(
        part
        for part in (
            "--quick" if args.quick else f"--repeats {repeats}",
            f"--device {args.device}" if device.type != "cpu" else "",
            f"--threads {args.threads}" if args.threads != 1 else "",
            f"--batches {' '.join(map(str, args.batches))}",
            f"--shapes {' '.join(args.shapes)}",
            f"--precisions {' '.join(args.precisions)}",
        )
        if part
    )
    table = _table(results, command)
    print("\nreference time / project time\n" + table)
    report = {
        "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "cpu_bf16_flags": sorted(cpu_flags(Path("/proc/cpuinfo").read_text()) & CPU_BF16_FLAGS)
        if Path("/proc/cpuinfo").is_file()
        else [],
        "bf16_native": bf16_native(device),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "repeats": repeats,
        "clip": [CHANNELS, FRAMES, SIZE, SIZE],
        "total_seconds": time.perf_counter() - start,
        "results": results,
        "table": table,
    }
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {out} ({report['total_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
