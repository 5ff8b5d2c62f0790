"""The ``au-llm`` command line: one sub-command per step of the toolkit.

Heavy modules are imported inside each command, so ``au-llm manifest`` starts quickly. The
parser (every sub-command's options) is :mod:`au_llm.recipes.parser`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from functools import partial
from pathlib import Path
from typing import TypeVar

from au_llm.config import ConfigError, ExperimentConfig, load_config
from au_llm.predict.config import PredictConfig
from au_llm.protocols import PROTOCOLS
from au_llm.recipes.parser import build_parser
from au_llm.synth.long import LONG_STYLES, long_coding_names
from au_llm.synth.styles import SYNTH_STYLES

_T = TypeVar("_T")

# ``--option`` -> field of the config's launch section.
LAUNCH_OPTIONS = {
    "launch": "mode",
    "jobs": "jobs",
    "gpus_per_job": "gpus_per_job",
    "partition": "partition",
    "time": "time",
    "devices": "devices",
}


def _cmd_manifest(args: argparse.Namespace) -> int:
    from au_llm.data.build import build_manifest
    from au_llm.data.manifest import write_manifest
    from au_llm.io_utils import check_output_file

    sources = [*(args.coding or []), *([args.table] if args.table is not None else [])]
    check_output_file(args.out, overwrite=True, inputs=sources)
    result = build_manifest(
        args.kind, root=args.root, coding=args.coding, table=args.table, strict=args.strict
    )
    write_manifest(result.frame, args.out)
    print(result.summary())
    print(f"manifest written: {args.out}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from au_llm.io_utils import check_output_folder
    from au_llm.synth.styles import output_names

    long_options = {
        "--recordings-per-subject": args.recordings_per_subject,
        "--seconds": args.seconds,
        "--size": args.size,
    }
    if args.long != (args.style in LONG_STYLES):
        raise ValueError(
            f"--style {args.style}: --long writes long recordings, in the styles "
            f"{', '.join(LONG_STYLES)}; "
            + ("choose one of them" if args.long else "add --long to write them")
        )
    given = [option for option, value in long_options.items() if value is not None]
    if given and not args.long:
        raise ValueError(f"{given[0]} applies to long recordings only (with --long)")
    codings = long_coding_names(args.style) if args.long else (output_names(args.style)[1],)
    check_output_folder(args.out, overwrite=args.overwrite, result=codings)
    if args.long:
        return _synth_long(args)
    result = SYNTH_STYLES[args.style](
        args.style,
        args.out,
        8 if args.subjects is None else args.subjects,
        args.clips_per_subject,
        seed=args.seed,
        difficulty=args.difficulty,
    )
    print(f"{len(result.clips)} clips written under {result.root}")
    print(f"annotation file: {result.coding}")
    return 0


def _synth_long(args: argparse.Namespace) -> int:
    result = SYNTH_STYLES[args.style](
        args.style,
        args.out,
        3 if args.subjects is None else args.subjects,
        _given(args.recordings_per_subject, 2),
        seconds=_given(args.seconds, 20.0),
        seed=args.seed,
        difficulty=args.difficulty,
        size=_given(args.size, 1.0),
    )
    kinds = [e.kind for _, e in result.expressions]
    print(
        f"{len(result.recordings)} recordings written under {result.root}: "
        f"{kinds.count('micro')} micro- and {kinds.count('macro')} macro-expressions"
    )
    print("annotation files:" if len(result.codings) > 1 else "annotation file:")
    for path in result.codings:
        print(f"  {path}")
    return 0


def _given(value: _T | None, default: _T) -> _T:
    """``value``, or ``default`` when the option was not given."""
    return default if value is None else value


def _cmd_preprocess(args: argparse.Namespace) -> int:
    import pandas as pd

    from au_llm.data.manifest import read_manifest
    from au_llm.io_utils import check_output_file
    from au_llm.preprocess.cache import ClipCache
    from au_llm.preprocess.preview import write_contact_sheet
    from au_llm.preprocess.run import preprocess_manifest, write_preprocess_report
    from au_llm.runs.layout import preprocess_report

    cfg = load_config(args.config, args.overrides)
    cache_dir = Path(cfg.data.cache_dir)
    report_path = args.report or preprocess_report(cache_dir)
    check_output_file(report_path, overwrite=True, inputs=args.manifest, option="--report")
    manifest = pd.concat([read_manifest(m) for m in args.manifest], ignore_index=True)
    cache = ClipCache(cache_dir, cfg.preprocess)
    report = preprocess_manifest(manifest, cache, strict=args.strict)
    write_preprocess_report(report, report_path)
    print(report["status"].value_counts().to_string())
    print(f"report: {report_path}")
    if args.preview:
        png = write_contact_sheet(
            manifest,
            cache,
            args.preview,
            report_path.with_name("preview.png"),
        )
        print(f"preview: {png}")
    return 0


def protocol_request(
    args: argparse.Namespace, protocol: str
) -> tuple[ExperimentConfig, list[str] | None, tuple[int, int] | None]:
    """Turn parsed protocol arguments into ``(config, fold names, shard)``.

    A run folder's own ``config.yaml`` (the rerun command of ``au-llm status``) is read as the
    config au-llm saved there, so a folder written under keys of an earlier version resumes.

    Raises:
        ConfigError: If the config's ``protocol`` is not the sub-command's.
    """
    from au_llm.protocols import parse_shard
    from au_llm.runs.layout import is_run_config

    overrides = [*args.overrides, *(["strict=true"] if args.strict else [])]
    cfg = load_config(args.config, overrides, saved=is_run_config(args.config))
    if cfg.protocol != protocol:
        raise ConfigError(
            f"{args.config}: protocol is {cfg.protocol!r}, but the command is "
            f"`au-llm {protocol}`; run `au-llm {cfg.protocol}` or set protocol: {protocol}"
        )
    launch = {key: getattr(args, opt) for opt, key in LAUNCH_OPTIONS.items()}
    launch = {key: value for key, value in launch.items() if value is not None}
    if launch:
        cfg = replace(cfg, launch=replace(cfg.launch, **launch))
    folds = args.folds.split(",") if args.folds else None
    return cfg, folds, parse_shard(args.shard) if args.shard else None


def execute_protocol(args: argparse.Namespace, protocol: str) -> int:
    """Run a protocol here, on local workers or on SLURM (``launch.mode``); print the outcome."""
    from au_llm.recipes.experiment import run_protocol
    from au_llm.reports.rebuild import headline_text

    cfg, folds, shard = protocol_request(args, protocol)
    if cfg.launch.mode == "slurm":
        from au_llm.recipes.launch import submission_summary, submit_slurm

        print(submission_summary(submit_slurm(cfg, folds, shard)))
        return 0
    if cfg.launch.mode == "local":
        from au_llm.recipes.launch import run_local

        run_dir, tables = run_local(cfg, folds, shard)
    else:
        run_dir, tables = run_protocol(cfg, folds, shard)
    if tables is None:
        print(f"Run directory: {run_dir}: no fold of the run is finished yet, so no report")
        return 0
    print(headline_text(run_dir, tables))
    return 0


def _cmd_ablate(args: argparse.Namespace) -> int:
    from au_llm.recipes.ablate import run_ablation

    folds = args.folds.split(",") if args.folds else None
    out_dir, text = run_ablation(
        args.config,
        list(args.overrides),
        folds,
        arms_file=args.arms,
        reference=args.reference,
    )
    print(text)
    print(f"ablation written: {out_dir}")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from au_llm.recipes.status import describe_states, run_states
    from au_llm.runs.run import Run

    run = Run.read(args.run_dir)
    print(describe_states(run, run_states(run)))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from au_llm.recipes.report import build_report
    from au_llm.reports.rebuild import headline_text

    print(headline_text(args.run_dir, build_report(args.run_dir)))
    return 0


def _cmd_assets(args: argparse.Namespace) -> int:
    from au_llm.assets import main as assets_main

    return assets_main(args.names)


def _cmd_demo(args: argparse.Namespace) -> int:
    from au_llm.io_utils import check_output_folder
    from au_llm.recipes.demo import run_demo
    from au_llm.recipes.demo_composite import run_composite_demo
    from au_llm.recipes.demo_spot import run_spot_demo

    default = "runs/demo_composite" if args.composite else "runs/demo"
    out = args.out or Path("runs/demo_spot" if args.spot else default)
    check_output_folder(out, overwrite=True)
    if args.spot:
        run_spot_demo(out, args.subjects or 5)
        return 0
    if args.composite:
        run_composite_demo(out, args.subjects or 3, args.clips_per_subject or 4)
        return 0
    run_demo(
        out,
        no_llm=args.no_llm,
        subjects=args.subjects or 8,
        clips_per_subject=args.clips_per_subject or 8,
        text=not args.no_text,
        explain=args.explain,
    )
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from au_llm.recipes.train import train_deployable

    overrides = [*args.overrides, *(["strict=true"] if args.strict else [])]
    train_deployable(load_config(args.config, overrides), args.out, overwrite=args.overwrite)
    print(f"model written: {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from au_llm.predict.run import predict_inputs

    run = predict_inputs(args.model, args.input, args.out, predict_options(args))
    print(run.summary.to_string(index=False, na_rep=""))
    print(f"predictions written: {run.out} (failures: {run.failures}; precision: {run.precision})")
    return run.status


def predict_options(args: argparse.Namespace) -> PredictConfig:
    """The ``au-llm predict`` options that are :class:`PredictConfig` fields, validated there."""
    names = {field.name for field in fields(PredictConfig)}
    return PredictConfig(**{key: value for key, value in vars(args).items() if key in names})


def _cmd_spot(args: argparse.Namespace) -> int:
    from au_llm.spot.config import load_spot_config
    from au_llm.spot.run import SpotOptions, spot_inputs

    cfg = load_spot_config(args.config, args.overrides)
    options = SpotOptions(
        fps=args.fps,
        align=args.align,
        precision=args.precision,
        batch_size=args.batch_size,
        annotations=args.annotations,
        strict=args.strict,
        overwrite=args.overwrite,
        cache_dir=args.cache_dir,
    )
    run = spot_inputs(args.model, args.input, args.out, options, cfg)
    print(run.summary.to_string(index=False, na_rep=""))
    if run.evaluation is not None:
        counts = run.evaluation.counts["overall"]
        print(
            f"against the annotations: spotting F1 {counts.f1:.3f} (TP {counts.tp}, FP "
            f"{counts.fp}, FN {counts.fn}), AU F1 on hits {run.evaluation.au_f1:.3f}, "
            f"STR score {run.evaluation.strs:.3f}"
        )
    print(f"outputs written: {run.out} (failures: {run.out / 'failures.csv'})")
    return run.status


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``au-llm`` console script."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    commands = {
        "manifest": _cmd_manifest,
        "synth": _cmd_synth,
        "preprocess": _cmd_preprocess,
        **{name: partial(execute_protocol, protocol=name) for name in PROTOCOLS},
        "ablate": _cmd_ablate,
        "report": _cmd_report,
        "status": _cmd_status,
        "assets": _cmd_assets,
        "demo": _cmd_demo,
        "train": _cmd_train,
        "predict": _cmd_predict,
        "spot": _cmd_spot,
    }
    try:
        return commands[args.command](args)
    except (ValueError, RuntimeError, OSError) as exc:
        if args.verbose:
            raise
        print(f"au-llm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
