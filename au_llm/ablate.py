"""``au-llm ablate``: one setting swept over values, every value on the same folds and seeds.

``au-llm ablate --config C explain.weight=0,0.5,1`` runs the config's protocol once per value (a
run directory each, ``<name>_<key>_<value>``), with every other setting equal: the same manifests,
folds, seeds, epochs and fold seeds (:func:`~au_llm.protocol.fold_seed` depends only on the seed
and the fold's name). Afterwards the runs are checked to share their folds, seeds, clips and
labels, and one table compares them: pooled binary F1 (mean +- std over seeds) per value, and
whether its difference from the first value exceeds the seed spread (the sum of the two
standard deviations; undefined with one seed).

A key that is not a config key is tried under ``model.`` (``explain.weight`` means
``model.explain.weight``). Settings that would change the folds or seeds cannot be swept.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from au_llm.config import ConfigError, ExperimentConfig, load_config
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.runs.layout import SUMMARY, RunLayout
from au_llm.runs.run import Run

FIXED_PREFIXES = ("seeds", "name", "out_dir", "protocol", "data.", "launch")


@dataclass(frozen=True)
class Sweep:
    """The swept setting.

    Attributes:
        key: Full config key (``model.explain.weight``).
        values: Its values, as written on the command line, in order.
    """

    key: str
    values: tuple[str, ...]


def _is_list(value: str) -> bool:
    """A comma-separated list of values (not a bracketed YAML list such as ``[1,2]``)."""
    return "," in value and not value.strip().startswith(("[", "{"))


def parse_sweep(config: Path | None, overrides: list[str]) -> tuple[list[str], Sweep]:
    """Split the command line's overrides into fixed ones and the one swept setting.

    Args:
        config: The experiment YAML (to check the key).
        overrides: ``key=value`` items; exactly one has a comma-separated value.

    Returns:
        ``(fixed overrides, sweep)``.

    Raises:
        ConfigError: No or several swept settings, a value list with a duplicate or an empty
            value, an unknown key, or a key that would change the folds or seeds.
    """
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"command line: override {bad[0]!r}: expected key=value")
    swept = [o for o in overrides if _is_list(o.split("=", 1)[1])]
    if len(swept) != 1:
        raise ConfigError(
            "au-llm ablate: expected exactly one setting with comma-separated values "
            f"(e.g. explain.weight=0,0.5,1), got {len(swept)}"
        )
    key, text = swept[0].split("=", 1)
    values = tuple(v.strip() for v in text.split(","))
    if any(not v for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"au-llm ablate: {swept[0]!r}: expected distinct, non-empty values")
    fixed = [o for o in overrides if o != swept[0]]
    full = _resolve_key(config, fixed, key.strip(), values[0])
    if full.startswith(FIXED_PREFIXES):
        raise ConfigError(
            f"au-llm ablate: {full} cannot be swept: every setting must run on the same data, "
            "folds and seeds"
        )
    for value in values:
        load_config(config, [*fixed, f"{full}={value}"])
    return fixed, Sweep(full, values)


def _resolve_key(config: Path | None, fixed: list[str], key: str, value: str) -> str:
    try:
        load_config(config, [*fixed, f"{key}={value}"])
        return key
    except ConfigError:
        if key.startswith("model."):
            raise
        load_config(config, [*fixed, f"model.{key}={value}"])
        return f"model.{key}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def setting_configs(
    config: Path | None, fixed: list[str], sweep: Sweep
) -> list[tuple[str, ExperimentConfig]]:
    """One config per swept value, named ``<name>_<key>_<value>``; everything else equal."""
    base = load_config(config, fixed)
    short = sweep.key.removeprefix("model.")
    configs = []
    for value in sweep.values:
        name = f"{base.name}_{_slug(short)}_{_slug(value)}"
        configs.append(
            (value, load_config(config, [*fixed, f"{sweep.key}={value}", f"name={name}"]))
        )
    return configs


def _fold_seeds(run: Run) -> dict[str, int]:
    return {f"{r['seed']}/{r['fold']}": int(r["fold_seed"]) for r in run.fold_records()}


def check_same_protocol(run_dirs: list[Path]) -> None:
    """Raise RuntimeError unless every run has the same folds, seeds, fold seeds and data.

    Compares each run's plan (seeds x folds), data fingerprint and each finished fold's recorded
    ``fold_seed``.
    """

    def identity(run_dir: Path) -> tuple[Any, ...]:
        run = Run.read(run_dir)
        return run.plan(), run.info()["data_fingerprint"], _fold_seeds(run)

    first = identity(run_dirs[0])
    for run_dir in run_dirs[1:]:
        if identity(run_dir) != first:
            raise RuntimeError(
                f"{run_dir} and {run_dirs[0]} differ in folds, seeds or data: not comparable"
            )


def _summary_row(value: str, run_dir: Path) -> dict[str, Any]:
    summary = json.loads(RunLayout(run_dir).output(SUMMARY).read_text())
    per_seed = summary["per_seed"]
    row: dict[str, Any] = {
        "value": value,
        "run_dir": str(run_dir),
        "n_seeds": summary["n_seeds"],
        "binary_f1_mean": summary["metrics"]["pooled_binary_f1"],
        "binary_f1_std": summary["metrics_std"]["pooled_binary_f1"],
        "roc_auc_mean": summary["metrics"]["pooled_roc_auc"],
        "roc_auc_std": summary["metrics_std"]["pooled_roc_auc"],
        "train_threshold_f1": summary["metrics"].get("binary_f1_train_threshold"),
        "binary_f1_per_seed": {seed: v["pooled_binary_f1"] for seed, v in per_seed.items()},
        "undefined_aus": [u["au"] for u in summary.get("undefined_aus", [])],
    }
    explained = summary.get("explanations")
    if explained:
        row["explanation_f1"] = explained["mean_binary_f1"]
        row["explanation_agreement"] = explained["agreement_with_linear_head"]
    return row


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def compare(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add each setting's difference from the first and whether it exceeds the seed spread.

    The spread is ``std(first) + std(setting)`` (sample std over seeds); with fewer than two
    seeds it is undefined and ``exceeds_seed_spread`` is None.
    """
    first = rows[0]
    out = []
    for row in rows:
        diff = _number(row["binary_f1_mean"]) - _number(first["binary_f1_mean"])
        spread = _number(first["binary_f1_std"]) + _number(row["binary_f1_std"])
        exceeds = None if math.isnan(spread) or math.isnan(diff) else abs(diff) > spread
        out.append({**row, "diff_vs_first": diff, "seed_spread": spread, "exceeds": exceeds})
    return out


def _cell(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(_number(value)) else f"{float(value):.{digits}f}"


def ablation_markdown(sweep: Sweep, rows: list[dict[str, Any]], folds: int) -> str:
    """The comparison table in Markdown."""
    header = (
        "| {} | binary F1 (mean +- std over seeds) | ROC AUC | binary F1 at training thresholds "
        "| diff vs first | exceeds seed spread |"
    )
    lines = [
        f"Ablation of `{sweep.key}`: {folds} folds x {rows[0]['n_seeds']} seed(s), identical "
        "folds and seeds in every setting; pooled binary F1 of the linear head at the run's "
        "threshold policy, and (pooled over seeds) at per-AU thresholds chosen on each fold's "
        "training clips.",
        "",
        header.format(sweep.key),
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        exceeds = {None: "n/a (one seed)", True: "yes", False: "no"}[row["exceeds"]]
        if row is rows[0]:
            exceeds = "(reference)"
        lines.append(
            f"| {row['value']} | {_cell(row['binary_f1_mean'])} +- {_cell(row['binary_f1_std'])} "
            f"| {_cell(row['roc_auc_mean'])} +- {_cell(row['roc_auc_std'])} "
            f"| {_cell(row['train_threshold_f1'])} | {_cell(row['diff_vs_first'])} | {exceeds} |"
        )
    undefined = sorted({au for row in rows for au in row.get("undefined_aus", [])})
    if undefined:
        listed = ", ".join(f"AU{au}" for au in undefined)
        lines += ["", f"Undefined (no positive test clip), left out of every mean: {listed}."]
    explained = [row for row in rows if "explanation_f1" in row]
    if explained:
        lines += ["", "Explanations (pooled over seeds):", ""]
        lines += [
            "| setting | F1 of named AUs vs labels | named AUs = linear head |",
            "|---|---|---|",
        ]
        for row in explained:
            lines.append(
                f"| {row['value']} | {_cell(row['explanation_f1'])} "
                f"| {_cell(row['explanation_agreement'])} |"
            )
    return "\n".join(lines) + "\n"


def write_ablation(
    out_dir: Path, sweep: Sweep, rows: list[dict[str, Any]], folds: int
) -> tuple[Path, str]:
    """Write ``ablation.csv``, ``.json`` and ``.md`` into ``out_dir``; returns it and the text."""
    text = ablation_markdown(sweep, rows, folds)
    table = pd.DataFrame([{k: v for k, v in r.items() if k != "binary_f1_per_seed"} for r in rows])
    atomic_write_csv(out_dir / "ablation.csv", table)
    record = {"key": sweep.key, "values": list(sweep.values), "n_folds": folds, "settings": rows}
    atomic_write_text(out_dir / "ablation.json", json.dumps(record, indent=2, default=str) + "\n")
    atomic_write_text(out_dir / "ablation.md", text)
    return out_dir, text


def run_ablation(
    config: Path | None,
    overrides: list[str],
    fold_names: list[str] | None = None,
    progress: bool = True,
) -> tuple[Path, str]:
    """Run every setting of the sweep (or resume it) and write the comparison.

    Args:
        config: The experiment YAML.
        overrides: ``key=value`` items, one of them with comma-separated values.
        fold_names: Only these folds, in every setting (``--folds``).
        progress: Show progress bars.

    Returns:
        The ablation folder (``<out_dir>/<name>_ablate_<key>``) and the Markdown table.
    """
    from au_llm.protocol import run_protocol

    fixed, sweep = parse_sweep(config, overrides)
    configs = setting_configs(config, fixed, sweep)
    run_dirs = [run_protocol(cfg, fold_names, progress=progress)[0] for _, cfg in configs]
    check_same_protocol(run_dirs)
    rows = compare(
        [_summary_row(value, d) for (value, _), d in zip(configs, run_dirs, strict=True)]
    )
    base = load_config(config, fixed)
    out_dir = Path(base.out_dir) / f"{base.name}_ablate_{_slug(sweep.key.removeprefix('model.'))}"
    n_folds = len(json.loads(RunLayout(run_dirs[0]).output(SUMMARY).read_text())["folds"])
    return write_ablation(out_dir, sweep, rows, n_folds)
