"""``au-llm ablate``: settings compared on the same folds and seeds, with paired statistics.

Two ways to name the settings (the *arms*):

* one key swept over values: ``au-llm ablate --config C train.explain_weight=0.5,1`` (an arm per
  value, run directory ``<name>_<key>_<value>``);
* an arms file: ``au-llm ablate --config C --arms arms.yaml``, a YAML mapping of arm names to
  lists of ``key=value`` overrides (run directory ``<name>_<arm>``; an arm with the same name and
  overrides in another arms file reuses its finished folds).

Every arm runs the config's protocol with every other setting equal: the same manifests, folds,
seeds, epochs and fold seeds (:func:`~au_llm.protocols.fold_seed` depends only on the seed and the
fold's name). Afterwards the runs are checked to share their folds, seeds, fold seeds, clips and
labels, and one table compares each arm with the reference arm (``--reference``, default the
first): pooled binary F1 and AUC (mean +- std over seeds), whether the difference exceeds the seed
spread, and the paired per-subject difference in binary F1 and AUC with a bootstrap interval and a
Wilcoxon signed-rank p (:mod:`au_llm.reports.paired`), beside each arm's training time and
trainable parameters.

A key that is not a config key is tried under ``model.`` (``explain`` means
``model.explain``). Settings that would change the folds or seeds cannot be compared.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from au_llm.config import ConfigError, ExperimentConfig, load_config
from au_llm.config_yaml import read_yaml
from au_llm.io_utils import atomic_write_csv, atomic_write_text
from au_llm.reports.paired import PAIRED_METRICS, paired_difference, subject_metrics
from au_llm.runs.layout import SUMMARY, RunLayout
from au_llm.runs.run import Run

FIXED_PREFIXES = ("seeds", "name", "out_dir", "protocol", "data.", "launch")


@dataclass(frozen=True)
class Arm:
    """One setting of an ablation.

    Attributes:
        name: The arm's name (a swept value, or a name from the arms file).
        overrides: Its ``key=value`` overrides, with full config keys.
    """

    name: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class Ablation:
    """The arms compared and how their folders are named.

    Attributes:
        label: What varies: the swept key (``train.explain_weight``) or the arms file's stem.
        arms: The arms, in table order.
        reference: Name of the arm every other arm is compared with.
        swept_key: The swept key for a one-key sweep (run folders ``<name>_<key>_<value>``);
            None for an arms file (run folders ``<name>_<arm>``).
    """

    label: str
    arms: tuple[Arm, ...]
    reference: str
    swept_key: str | None = None


def _is_list(value: str) -> bool:
    """A comma-separated list of values (not a bracketed YAML list such as ``[1,2]``)."""
    return "," in value and not value.strip().startswith(("[", "{"))


def _split(override: str) -> tuple[str, str]:
    key, value = override.split("=", 1)
    return key.strip(), value


def _check_overrides(overrides: list[str]) -> None:
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"command line: override {bad[0]!r}: expected key=value")


def _in_schema(key: str) -> bool:
    """Whether ``key`` (dotted) names a setting of the experiment config.

    Below a free-form mapping (``model.backbone.builder_kwargs``, ``launch.slurm_extra``) any key
    is a setting.
    """
    node: Any = OmegaConf.structured(ExperimentConfig)
    for part in key.split("."):
        if not isinstance(node, DictConfig):
            return False
        if OmegaConf.get_type(node) is dict:
            return True
        if part not in node:
            return False
        node = node[part]
    return True


def _full_key(key: str) -> str:
    """``key`` as a config key (tried under ``model.`` when it is not one), never a fixed one.

    Raises:
        ConfigError: ``key`` is no setting, or one that would change the data, folds or seeds.
    """
    candidates = [key] if key.startswith("model.") else [key, f"model.{key}"]
    full = next((name for name in candidates if _in_schema(name)), None)
    if full is None:
        raise ConfigError(f"au-llm ablate: {key} is not a config key")
    if full.startswith(FIXED_PREFIXES):
        raise ConfigError(
            f"au-llm ablate: {full} cannot be compared: every setting must run on the same data, "
            "folds and seeds"
        )
    return full


def _pick_reference(arms: tuple[Arm, ...], reference: str | None) -> str:
    names = [arm.name for arm in arms]
    if reference is None:
        return names[0]
    if reference not in names:
        raise ConfigError(f"au-llm ablate: --reference {reference!r}: expected one of {names}")
    return reference


def parse_sweep(
    config: Path | None, overrides: list[str], reference: str | None = None
) -> tuple[list[str], Ablation]:
    """Split the command line's overrides into fixed ones and the one swept setting.

    Args:
        config: The experiment YAML (to check the key).
        overrides: ``key=value`` items; exactly one has a comma-separated value.
        reference: The value every other is compared with (None: the first).

    Returns:
        ``(fixed overrides, ablation)``: an arm per value, named by the value.

    Raises:
        ConfigError: No or several swept settings, a value list with a duplicate or an empty
            value, an unknown key, a key that would change the folds or seeds, or an unknown
            reference.
    """
    _check_overrides(overrides)
    swept = [o for o in overrides if _is_list(_split(o)[1])]
    if len(swept) != 1:
        raise ConfigError(
            "au-llm ablate: expected exactly one setting with comma-separated values "
            f"(e.g. train.explain_weight=0.5,1) or --arms FILE, got {len(swept)}"
        )
    key, text = _split(swept[0])
    values = tuple(v.strip() for v in text.split(","))
    if any(not v for v in values) or len(set(values)) != len(values):
        raise ConfigError(f"au-llm ablate: {swept[0]!r}: expected distinct, non-empty values")
    fixed = [o for o in overrides if o != swept[0]]
    full = _full_key(key)
    for value in values:
        load_config(config, [*fixed, f"{full}={value}"])
    arms = tuple(Arm(value, (f"{full}={value}",)) for value in values)
    return fixed, Ablation(full, arms, _pick_reference(arms, reference), swept_key=full)


def read_arms(
    path: Path, config: Path | None, fixed: list[str], reference: str | None = None
) -> Ablation:
    """The arms of an arms file: a YAML mapping ``name: [key=value, ...]``.

    An arm with an empty list (or nothing) runs the config as it is.

    Raises:
        ConfigError: Naming the file, for a file that is not such a mapping, an arm name that
            is not a plain name, an override of a key that would change the folds or seeds, an
            arm whose config is invalid, two arms with the same overrides, or an unknown
            reference.
    """
    try:
        data = OmegaConf.to_container(read_yaml(path))
    except (ConfigError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{path}: expected a mapping of arm names to lists of key=value")
    arms, seen = [], {}
    for name, items in data.items():
        name = str(name)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise ConfigError(f"{path}: arm name {name!r}: expected letters, digits, . _ -")
        if items is None:
            items = []
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{path}: arm {name}: expected a list of key=value strings")
        try:
            _check_overrides(items)
            full = [f"{_full_key(_split(o)[0])}={_split(o)[1]}" for o in items]
            load_config(config, [*fixed, *full])
        except ConfigError as exc:
            raise ConfigError(f"{path}: arm {name}: {exc}") from None
        signature = tuple(sorted(full))
        if signature in seen:
            raise ConfigError(f"{path}: arms {seen[signature]} and {name} are the same setting")
        seen[signature] = name
        arms.append(Arm(name, tuple(full)))
    return Ablation(path.stem, tuple(arms), _pick_reference(tuple(arms), reference))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-") or "x"


def arm_configs(
    config: Path | None, fixed: list[str], ablation: Ablation
) -> list[tuple[Arm, ExperimentConfig]]:
    """One config per arm, in its own run folder; everything else equal."""
    base = load_config(config, fixed)
    configs = []
    for arm in ablation.arms:
        if ablation.swept_key is not None:
            short = ablation.swept_key.removeprefix("model.")
            name = f"{base.name}_{_slug(short)}_{_slug(arm.name)}"
        else:
            name = f"{base.name}_{arm.name}"
        configs.append((arm, load_config(config, [*fixed, *arm.overrides, f"name={name}"])))
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


def _cost(run: Run) -> dict[str, Any]:
    """Training minutes summed over the run's folds, and its trainable parameters."""
    records = run.fold_records()
    counts = {r["trainable_parameters"] for r in records if "trainable_parameters" in r}
    return {
        "train_minutes": sum(float(r.get("seconds", 0.0)) for r in records) / 60,
        "trainable_parameters": counts.pop() if len(counts) == 1 else None,
    }


def _summary_row(arm: Arm, run_dir: Path) -> dict[str, Any]:
    summary = json.loads(RunLayout(run_dir).output(SUMMARY).read_text())
    per_seed = summary["per_seed"]
    row: dict[str, Any] = {
        "value": arm.name,
        "overrides": list(arm.overrides),
        "run_dir": str(run_dir),
        "n_seeds": summary["n_seeds"],
        "binary_f1_mean": summary["metrics"]["pooled_binary_f1"],
        "binary_f1_std": summary["metrics_std"]["pooled_binary_f1"],
        "roc_auc_mean": summary["metrics"]["pooled_roc_auc"],
        "roc_auc_std": summary["metrics_std"]["pooled_roc_auc"],
        "train_threshold_f1": summary["metrics"].get("binary_f1_train_threshold"),
        "binary_f1_per_seed": {seed: v["pooled_binary_f1"] for seed, v in per_seed.items()},
        **_cost(Run.read(run_dir)),
        "undefined_aus": [u["au"] for u in summary.get("undefined_aus", [])],
    }
    explained = summary.get("explanations")
    if explained:
        row["explanation_f1"] = explained["mean_binary_f1"]
        row["explanation_agreement"] = explained["agreement_with_linear_head"]
    return row


def _number(value: Any) -> float:
    return float("nan") if value is None else float(value)


def compare(rows: list[dict[str, Any]], reference: int = 0) -> list[dict[str, Any]]:
    """Add each setting's difference from the reference and whether it exceeds the seed spread.

    The spread is ``std(reference) + std(setting)`` (sample std over seeds); with fewer than two
    seeds it is undefined and ``exceeds`` is None.

    Args:
        rows: One row per arm (``binary_f1_mean``, ``binary_f1_std``).
        reference: Index of the reference arm.
    """
    first = rows[reference]
    out = []
    for row in rows:
        diff = _number(row["binary_f1_mean"]) - _number(first["binary_f1_mean"])
        spread = _number(first["binary_f1_std"]) + _number(row["binary_f1_std"])
        exceeds = None if math.isnan(spread) or math.isnan(diff) else abs(diff) > spread
        out.append({**row, "diff_vs_reference": diff, "seed_spread": spread, "exceeds": exceeds})
    return out


def paired_rows(
    rows: list[dict[str, Any]], run_dirs: list[Path], reference: int, *, n_boot: int = 10_000
) -> list[dict[str, Any]]:
    """Add to each row its paired per-subject differences from the reference arm.

    Each row gets ``paired``: metric -> :class:`~au_llm.reports.paired.PairedDifference` as a
    dict (the reference arm's own row gets none).
    """
    runs = [Run.read(d) for d in run_dirs]
    units = [
        subject_metrics(run.finished_predictions(run.scan_folds().whole), run.aus()) for run in runs
    ]
    out = []
    for i, row in enumerate(rows):
        paired = {}
        if i != reference:
            for metric in PAIRED_METRICS:
                diff = paired_difference(units[reference], units[i], metric, n_boot=n_boot)
                paired[metric] = diff.to_dict()
        out.append({**row, "paired": paired})
    return out


def _cell(value: Any, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(_number(value)) else f"{float(value):.{digits}f}"


def _signed(value: Any) -> str:
    return "n/a" if value is None or math.isnan(_number(value)) else f"{float(value):+.3f}"


def _paired_cells(row: dict[str, Any]) -> list[str]:
    """``diff [low, high]`` and p for each paired metric; dashes for the reference."""
    cells = []
    for metric in PAIRED_METRICS:
        diff = row["paired"].get(metric)
        if diff is None:
            cells += ["(reference)", "-"]
            continue
        p = "n/a" if diff["p_wilcoxon"] is None else f"{diff['p_wilcoxon']:.3f}"
        cells += [f"{_signed(diff['mean'])} [{_signed(diff['low'])}, {_signed(diff['high'])}]", p]
    return cells


def _params(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def ablation_markdown(ablation: Ablation, rows: list[dict[str, Any]], folds: int) -> str:
    """The comparison tables in Markdown."""
    n_seeds = rows[0]["n_seeds"]
    lines = [
        f"Ablation of `{ablation.label}`: {folds} folds x {n_seeds} seed(s), identical folds and "
        f"seeds in every setting, compared with `{ablation.reference}`; pooled binary F1 of the "
        "linear head at the run's threshold policy, and (pooled over seeds) at per-AU thresholds "
        "chosen on each fold's training clips.",
        "",
        f"| {ablation.label} | binary F1 (mean +- std over seeds) | ROC AUC | binary F1 at "
        "training thresholds | diff vs reference | exceeds seed spread |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        exceeds = {None: "n/a (one seed)", True: "yes", False: "no"}[row["exceeds"]]
        if row["value"] == ablation.reference:
            exceeds = "(reference)"
        lines.append(
            f"| {row['value']} | {_cell(row['binary_f1_mean'])} +- {_cell(row['binary_f1_std'])} "
            f"| {_cell(row['roc_auc_mean'])} +- {_cell(row['roc_auc_std'])} "
            f"| {_cell(row['train_threshold_f1'])} | {_cell(row['diff_vs_reference'])} "
            f"| {exceeds} |"
        )
    lines += [
        "",
        "Paired per-subject differences from the reference (subject x seed units: the mean over "
        "AUs of binary F1 and of AUC on each test subject's clips; 95% bootstrap interval over "
        "subjects, then seeds; Wilcoxon signed-rank p of the per-subject mean differences):",
        "",
        "| setting | diff binary F1 [95% CI] | p | diff AUC [95% CI] | p | training minutes "
        "| trainable parameters |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [row["value"], *_paired_cells(row), _cell(row["train_minutes"], 1)]
        lines.append("| " + " | ".join([*cells, _params(row["trainable_parameters"])]) + " |")
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
    out_dir: Path, ablation: Ablation, rows: list[dict[str, Any]], folds: int
) -> tuple[Path, str]:
    """Write ``ablation.csv``, ``.json`` and ``.md`` into ``out_dir``; returns it and the text."""
    text = ablation_markdown(ablation, rows, folds)
    flat = []
    for row in rows:
        cells = {k: v for k, v in row.items() if k not in ("binary_f1_per_seed", "paired")}
        for metric, diff in row["paired"].items():
            cells |= {f"{metric}_diff": diff["mean"], f"{metric}_diff_low": diff["low"]}
            cells |= {f"{metric}_diff_high": diff["high"], f"{metric}_p": diff["p_wilcoxon"]}
        flat.append(cells | {"overrides": " ".join(row["overrides"])})
    atomic_write_csv(out_dir / "ablation.csv", pd.DataFrame(flat))
    record = {
        "label": ablation.label,
        "reference": ablation.reference,
        "arms": {arm.name: list(arm.overrides) for arm in ablation.arms},
        "n_folds": folds,
        "settings": rows,
    }
    atomic_write_text(out_dir / "ablation.json", json.dumps(record, indent=2, default=str) + "\n")
    atomic_write_text(out_dir / "ablation.md", text)
    return out_dir, text


def run_ablation(
    config: Path | None,
    overrides: list[str],
    fold_names: list[str] | None = None,
    *,
    arms_file: Path | None = None,
    reference: str | None = None,
    progress: bool = True,
) -> tuple[Path, str]:
    """Run every arm (or resume it) and write the comparison.

    Args:
        config: The experiment YAML.
        overrides: ``key=value`` items; without ``arms_file`` one of them has comma-separated
            values (the swept setting), with it they apply to every arm.
        fold_names: Only these folds, in every arm (``--folds``).
        arms_file: A YAML mapping of arm names to lists of overrides (``--arms``).
        reference: The arm every other is compared with (``--reference``; None: the first).
        progress: Show progress bars.

    Returns:
        The ablation folder (``<out_dir>/<name>_ablate_<key or arms file stem>``) and the
        Markdown tables.
    """
    from au_llm.recipes.experiment import run_protocol

    if arms_file is None:
        fixed, ablation = parse_sweep(config, overrides, reference)
    else:
        _check_overrides(overrides)
        fixed = list(overrides)
        ablation = read_arms(arms_file, config, fixed, reference)
    configs = arm_configs(config, fixed, ablation)
    run_dirs = [run_protocol(cfg, fold_names, progress=progress)[0] for _, cfg in configs]
    check_same_protocol(run_dirs)
    ref = [arm.name for arm in ablation.arms].index(ablation.reference)
    rows = [_summary_row(arm, d) for (arm, _), d in zip(configs, run_dirs, strict=True)]
    rows = paired_rows(compare(rows, ref), run_dirs, ref)
    base = load_config(config, fixed)
    label = _slug(ablation.label.removeprefix("model."))
    out_dir = Path(base.out_dir) / f"{base.name}_ablate_{label}"
    n_folds = len(json.loads(RunLayout(run_dirs[0]).output(SUMMARY).read_text())["folds"])
    return write_ablation(out_dir, ablation, rows, n_folds)
