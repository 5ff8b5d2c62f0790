"""``au-llm demo``: the toolkit's main job end to end on the built-in synthetic data.

synthetic CASME II- and SAMM-style datasets -> manifests -> face alignment -> LOSO on the
CASME II-style set -> cross-domain CASME II-style -> SAMM-style -> reports, plots, per-clip CSVs.
"""

from __future__ import annotations

import shutil
import time
from importlib import resources
from pathlib import Path

from au_llm.config import ExperimentConfig, load_config
from au_llm.data.build import build_manifest
from au_llm.data.manifest import read_manifest, write_manifest
from au_llm.protocols import PROTOCOLS
from au_llm.recipes.demo_text import run_text_demo, text_config_name, text_folder
from au_llm.recipes.experiment import run_protocol
from au_llm.reports.rebuild import headline_text
from au_llm.reports.tables import RunTables
from au_llm.synth import write_synthetic

# The repository's configs/ folder, installed as the package au_llm.configs (see setup.py).
CONFIG_DIR = Path(str(resources.files("au_llm.configs")))
DEMO_CONFIGS = ("demo_casme2_loso.yaml", "demo_casme2_to_samm.yaml")
STYLE_SEEDS = {"casme2": 0, "samm": 1}


def run_demo_protocol(
    config: str, out: Path, manifests: list[Path], *, fresh: bool
) -> tuple[ExperimentConfig, Path, RunTables | None]:
    """Run (or resume) a demo config of :data:`CONFIG_DIR` on manifests written under ``out``.

    Args:
        config: The config's file name.
        out: The demo's folder (run folders and the clip cache go inside).
        manifests: The manifests to run on.
        fresh: The data was just (re)written: a run made on earlier data is removed first.

    Returns:
        The config, the run directory and its metric tables.
    """
    listed = ",".join(f"'{path}'" for path in manifests)
    cfg = load_config(
        CONFIG_DIR / config,
        [f"out_dir='{out}'", f"data.cache_dir='{out / 'cache'}'", f"data.manifests=[{listed}]"],
    )
    if fresh:
        shutil.rmtree(Path(cfg.out_dir) / cfg.name, ignore_errors=True)
    run_dir, tables = run_protocol(cfg)
    return cfg, run_dir, tables


def write_demo_data(
    out: Path, subjects: int, clips_per_subject: int
) -> tuple[dict[str, Path], bool]:
    """Write both synthetic datasets and their manifests (kept when already complete).

    Returns:
        Manifest CSV path per style (``casme2``, ``samm``), and whether any data was (re)written.
    """
    manifests, written = {}, False
    for style, seed in STYLE_SEEDS.items():
        manifest = out / "manifests" / f"{style}.csv"
        if not manifest.exists() or len(read_manifest(manifest)) != subjects * clips_per_subject:
            synth = write_synthetic(style, out / "data" / style, subjects, clips_per_subject, seed)
            result = build_manifest(style, root=synth.root, coding=synth.coding, strict=True)
            write_manifest(result.frame, manifest)
            print(result.summary())
            written = True
        manifests[style] = manifest
    return manifests, written


def demo_config(
    config_file: Path, out: Path, manifests: dict[str, Path], *, no_llm: bool
) -> ExperimentConfig:
    """A demo config redirected to ``out`` (and to the LLM-free ablation when ``no_llm``)."""
    cfg = load_config(config_file)
    overrides = [
        f"out_dir='{out}'",
        f"data.cache_dir='{out / 'cache'}'",
        f"data.manifests=['{manifests['casme2']}']",
    ]
    if PROTOCOLS[cfg.protocol].target:
        overrides.append(f"data.target_manifests=['{manifests['samm']}']")
    if no_llm:
        overrides += ["model.reader=none", f"name={cfg.name}_no_llm"]
    return load_config(config_file, overrides)


def run_demo(
    out: Path,
    *,
    no_llm: bool = False,
    subjects: int = 8,
    clips_per_subject: int = 8,
    text: bool = True,
    explain: bool = False,
) -> list[Path]:
    """Run the whole demo and print where everything is and the headline tables.

    Args:
        out: Folder for data, cache and runs.
        no_llm: Run the ablation without the LLM (``model.reader=none``).
        subjects: Synthetic subjects per dataset.
        clips_per_subject: Synthetic clips per subject.
        text: End with the text step (SmolLM2 answering in words, see
            :mod:`au_llm.recipes.demo_text`); never with ``no_llm``.
        explain: The text step also trains and writes explanations
            (``configs/demo_smollm2_explain.yaml``), into ``out/text_explain`` instead of
            ``out/text``.

    Returns:
        The run directories (LOSO, then cross-domain). Runs made on earlier demo data are
        removed when the data is rewritten (e.g. another ``subjects``); otherwise finished folds
        are kept and a re-run resumes.
    """
    start = time.perf_counter()
    manifests, written = write_demo_data(Path(out), subjects, clips_per_subject)
    print(f"[demo] synthetic data and manifests ready ({time.perf_counter() - start:.0f} s)")
    runs, texts = [], []
    for name in DEMO_CONFIGS:
        cfg = demo_config(CONFIG_DIR / name, Path(out), manifests, no_llm=no_llm)
        if written:
            shutil.rmtree(Path(cfg.out_dir) / cfg.name, ignore_errors=True)
        run_dir, tables = run_protocol(cfg)
        runs.append(run_dir)
        texts.append(f"== {cfg.name} ({cfg.protocol}) ==\n{headline_text(run_dir, tables)}")
        print(f"[demo] {cfg.name} done ({time.perf_counter() - start:.0f} s)")
    print("\n\n".join(texts))
    print(
        "\nEach run directory holds predictions.csv (per-clip AUs), metrics_per_au.csv, "
        "metrics_per_fold.csv, summary.json, report.md and the plots."
    )
    if text and not no_llm:
        folder = Path(out) / text_folder(explain=explain)
        if written:
            shutil.rmtree(folder, ignore_errors=True)
        what = "text answers and explanations" if explain else "text answers"
        print(f"\n[demo] {what} with the built-in SmolLM2-135M (first run converts it once)")
        config = CONFIG_DIR / text_config_name(explain=explain)
        run_text_demo(config, Path(out), manifests["casme2"])
        print(f"[demo] text step done, written under {folder}")
    print(f"[demo] finished in {time.perf_counter() - start:.0f} s")
    return runs
