"""An experiment's run folder: the config it holds, written, compared, read back and summarised.

:class:`~au_llm.runs.run.Run` keeps the config as a file; this module turns an
:class:`~au_llm.config.ExperimentConfig` into that file (:func:`start_run`), reads it back
(:func:`saved_config`) and lists the settings a report shows first (:func:`config_summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from au_llm.config import ExperimentConfig, config_text, load_config
from au_llm.runs.run import Run, run_folder

# Settings that change how a run executes, not what it computes: shards and resumed runs may differ.
# ``name`` and ``out_dir`` locate the folder (a moved or renamed run folder resumes under its new
# ones, as ``au-llm status`` prints them).
RUNTIME_KEYS = (
    ("strict",),
    ("name",),
    ("out_dir",),
    ("preprocess", "workers"),
    ("train", "num_threads"),
    ("launch",),
    ("spot", "buffer_mb"),
)


def comparable(cfg: ExperimentConfig) -> dict[str, Any]:
    """The config as a dict without :data:`RUNTIME_KEYS`."""
    data = cfg.to_dict()
    for path in RUNTIME_KEYS:
        parent = data
        for key in path[:-1]:
            parent = parent[key]
        parent.pop(path[-1])
    return data


def config_differences(saved: dict[str, Any], given: dict[str, Any], prefix: str = "") -> list[str]:
    """``key: saved value -> given value`` for every dotted key whose values differ."""
    lines = []
    for key in sorted(set(saved) | set(given), key=str):
        name, old, new = f"{prefix}{key}", saved.get(key), given.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            lines += config_differences(old, new, f"{name}.")
        elif old != new:
            lines.append(f"{name}: {old!r} -> {new!r}")
    return lines


def start_run(cfg: ExperimentConfig) -> Run:
    """Create (or reopen) the folder of ``cfg``'s run (:meth:`~au_llm.runs.run.Run.start`).

    A folder that already holds a config is reopened when the two differ only in
    :data:`RUNTIME_KEYS` (the saved one read as au-llm wrote it: keys of earlier versions are
    read as their replacements).

    Raises:
        ValueError: ``name`` is not a single folder name, or the folder holds another config.
        OutputError: The run folder cannot be written.
    """

    def differences(saved: Path) -> list[str]:
        return config_differences(comparable(load_config(saved, saved=True)), comparable(cfg))

    root = run_folder(cfg.out_dir, cfg.name)
    return Run.start(root, config_text=config_text(cfg), differences=differences)


def saved_config(run: Run) -> ExperimentConfig:
    """The experiment a run folder holds (its ``config.yaml``, older keys upgraded).

    Raises:
        ConfigError: The file is unreadable or no longer a valid config.
    """
    return load_config(run.layout.config, saved=True)


def config_summary(cfg: ExperimentConfig, aus: list[int]) -> dict[str, str]:
    """The settings a reader of the run's report needs first.

    Args:
        cfg: The run's experiment.
        aus: The AUs it detects (``run.json``).
    """
    llm = cfg.model.llm
    return {
        "protocol": cfg.protocol,
        "manifests": ", ".join(cfg.data.manifests),
        "target": ", ".join(cfg.data.target_manifests) or "-",
        "AUs": ", ".join(f"AU{a}" for a in aus),
        "frames": (
            f"{cfg.sampling.frames_per_clip} x {cfg.preprocess.size}px {cfg.preprocess.color}"
        ),
        "backbone": cfg.model.backbone.name,
        "LLM": llm.source if llm.source != "path" else llm.path,
        "LoRA": f"r={llm.lora.r}, alpha={llm.lora.alpha}",
        "loss": cfg.train.loss,
        "optimizer": f"{cfg.train.optimizer}, lr={cfg.train.lr}, wd={cfg.train.weight_decay}",
        "epochs x batch": f"{cfg.train.epochs} x {cfg.train.batch_size}",
        "threshold": cfg.eval.threshold_policy,
        "seeds": ", ".join(map(str, cfg.seeds)),
    }
