"""The ``au-llm`` command line: one sub-command per step of the toolkit.

Heavy modules are imported inside each command, so ``au-llm manifest`` starts quickly. The
choices the commands offer (protocols, manifest kinds, synthetic styles, precisions, ...) and their
help come from the tables that own them, so a protocol or a dataset kind added there is listed
here without an edit.
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
from au_llm.config_checks import PRECISIONS, AlignMode, FacePolicy, LaunchMode, choices
from au_llm.data.build import INPUT_FILES, MANIFEST_KINDS
from au_llm.data.builders import SMIC_KIND
from au_llm.predict.config import PredictConfig
from au_llm.protocols import PROTOCOLS
from au_llm.synth.long import LONG_STYLES, long_coding_names
from au_llm.synth.plan import DIFFICULTIES
from au_llm.synth.styles import SYNTH_STYLES


def _add_config_args(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--config", type=Path, required=required, help="experiment YAML")
    parser.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. train.lr=1e-4"
    )


def _add_protocol_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _add_config_args(parser)
    parser.add_argument("--folds", help="comma-separated fold names to run (e.g. sub01,sub05)")
    parser.add_argument("--shard", help="run shard K of N of the folds, e.g. 2/4")
    parser.add_argument("--strict", action="store_true", help="fail on any bad clip")
    launch = parser.add_argument_group("launch (overrides the config's launch section)")
    launch.add_argument("--launch", choices=choices(LaunchMode), help="where folds run")
    launch.add_argument("--jobs", type=int, help="slurm: array tasks (0: one per fold x seed)")
    launch.add_argument("--gpus-per-job", type=int, help="slurm: GPUs per task")
    launch.add_argument("--partition", help="slurm: partition")
    launch.add_argument("--time", help="slurm: time limit per task, HH:MM:SS or D-HH:MM:SS")
    launch.add_argument("--devices", help="local: GPU indices (0,1,2,3) or cpu:N, one worker each")
    return parser


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="au-llm", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    kinds = "; ".join(f"{name}: {kind.title}" for name, kind in MANIFEST_KINDS.items())
    manifest = sub.add_parser("manifest", help="annotation file -> manifest CSV")
    manifest.add_argument(
        "kind", choices=[*MANIFEST_KINDS, SMIC_KIND], help=f"{kinds} ({SMIC_KIND}: refused)"
    )
    for key, what in INPUT_FILES.items():
        users = ", ".join(name for name, kind in MANIFEST_KINDS.items() if key in kind.needs)
        several = {"nargs": "+"} if key == "coding" else {}  # a kind may read several files
        manifest.add_argument(f"--{key}", type=Path, help=f"{what} ({users})", **several)
    manifest.add_argument("--out", type=Path, required=True, help="manifest CSV to write")
    manifest.add_argument("--strict", action="store_true", help="any problem is an error")

    synth = sub.add_parser("synth", help="write a synthetic dataset in a real dataset's format")
    synth.add_argument("--style", choices=SYNTH_STYLES, required=True)
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument(
        "--overwrite", action="store_true", help="replace the style's data already in --out"
    )
    synth.add_argument("--subjects", type=int, help="default 8 (--long: 3)")
    synth.add_argument("--clips-per-subject", type=int, default=8)
    synth.add_argument(
        "--long",
        action="store_true",
        help="long recordings with micro- and macro-expressions at known intervals, head motion "
        f"and blinks (styles {', '.join(LONG_STYLES)})",
    )
    synth.add_argument(
        "--recordings-per-subject", type=int, help="--long: recordings per subject (default 2)"
    )
    synth.add_argument(
        "--seconds", type=float, help="--long: length of each recording in seconds (default 20)"
    )
    synth.add_argument(
        "--size", type=float, help="--long: factor on the image size, e.g. 0.5 (default 1)"
    )
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument(
        "--difficulty",
        choices=DIFFICULTIES,
        default="normal",
        help="hard: smaller movements, more jitter and noise, AU4 in about half the clips",
    )

    prep = sub.add_parser("preprocess", help="align and cache the clips of a manifest")
    prep.add_argument("--manifest", type=Path, required=True, action="append")
    _add_config_args(prep, required=False)
    prep.add_argument("--report", type=Path, help="per-clip report CSV (default: in the cache)")
    prep.add_argument(
        "--preview", type=int, default=0, metavar="N", help="contact sheet of N clips"
    )
    prep.add_argument("--strict", action="store_true", help="fail on the first bad clip")

    for name, protocol in PROTOCOLS.items():
        _add_protocol_args(sub.add_parser(name, help=f"run a {protocol.title} experiment"))

    ablate = sub.add_parser(
        "ablate",
        help="settings (key=a,b,c or --arms FILE) on identical folds and seeds, paired statistics",
    )
    _add_config_args(ablate)
    ablate.add_argument("--folds", help="comma-separated fold names to run in every setting")
    ablate.add_argument(
        "--arms", type=Path, help="YAML mapping of arm names to lists of key=value overrides"
    )
    ablate.add_argument(
        "--reference", help="the arm (or swept value) every other is compared with (default: first)"
    )

    report = sub.add_parser("report", help="rebuild a run's outputs from its finished folds")
    report.add_argument("run_dir", type=Path)

    status = sub.add_parser("status", help="each fold of a run: done, running, failed, pending")
    status.add_argument("run_dir", type=Path)
    assets = sub.add_parser("assets", help="verify and cache model files installed from PyPI")
    assets.add_argument("names", nargs="*", help="assets to check (default: all)")

    demo = sub.add_parser("demo", help="synthetic data -> manifests -> LOSO -> cross -> reports")
    demo.add_argument(
        "--out",
        type=Path,
        help="default runs/demo (--composite: runs/demo_composite; --spot: runs/demo_spot)",
    )
    demo.add_argument("--no-llm", action="store_true", help="no LLM (model.reader=none)")
    demo.add_argument(
        "--subjects", type=int, help="per dataset (default 8; --composite 3; --spot 5)"
    )
    demo.add_argument(
        "--clips-per-subject", type=int, help="per subject (default 8; --composite 4)"
    )
    demo.add_argument(
        "--no-text", action="store_true", help="skip the text step (SmolLM2 answering in words)"
    )
    demo.add_argument(
        "--composite",
        action="store_true",
        help="leave one dataset out over synthetic CASME, CAS(ME)^3, MMEW and 4DME data instead",
    )
    demo.add_argument(
        "--spot",
        action="store_true",
        help="spot-then-recognise on synthetic long recordings instead (the MEGC table)",
    )
    demo.add_argument(
        "--explain",
        action="store_true",
        help="the text step also learns to explain each clip (VL-FAU; the text step takes longer)",
    )

    train = sub.add_parser("train", help="train one deployable model on all clips")
    _add_config_args(train)
    train.add_argument("--out", type=Path, required=True, help="model directory to write")
    train.add_argument("--strict", action="store_true", help="fail on any bad clip")
    train.add_argument("--overwrite", action="store_true", help="replace a model already in --out")

    predict = sub.add_parser(
        "predict",
        help="AU predictions for new recordings",
        description="Exit status: 0 when every input gave rows, 3 when some inputs gave none, "
        "4 when none did, 2 on a usage or output error.",
    )
    predict.add_argument("--model", type=Path, required=True, help="model directory")
    predict.add_argument(
        "--input",
        type=Path,
        nargs="+",
        action="extend",
        required=True,
        help="videos/folders/CSV (the option may be given several times)",
    )
    predict.add_argument("--out", type=Path, required=True, help="predictions CSV")
    predict.add_argument("--window", type=int, help="window length in frames (recordings)")
    predict.add_argument("--stride", type=int, help="window stride in frames (recordings)")
    predict.add_argument(
        "--max-window-gib",
        type=float,
        default=PredictConfig.max_window_gib,
        help="most memory one window's frames may take at full resolution (recordings)",
    )
    predict.add_argument(
        "--fps",
        type=float,
        help="frame rate of frame folders without an fps.txt (required for them; videos use "
        "their own)",
    )
    predict.add_argument(
        "--face",
        choices=choices(FacePolicy),
        default=PredictConfig.face,
        help="which tracked face a window uses; all: one stream per face (face_id column)",
    )
    predict.add_argument(
        "--min-face",
        type=float,
        default=PredictConfig.min_face,
        help="least fraction of a window's frames showing its face (others go to failures.csv)",
    )
    predict.add_argument(
        "--align",
        choices=choices(AlignMode),
        help="alignment replacing the model's preprocess.align (frame: head motion)",
    )
    predict.add_argument("--plot", action="store_true", help="PNG of AU probability over time")
    predict.add_argument(
        "--per-frame",
        action="store_true",
        help="also <out stem>_per_frame.csv: each AU averaged over the windows covering a frame",
    )
    predict.add_argument("--strict", action="store_true", help="stop at the first failed input")
    predict.add_argument(
        "--cache-dir", type=Path, help="aligned-clip cache for manifests (default: cache/ by --out)"
    )
    predict.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    predict.add_argument(
        "--explain", action="store_true", help="add a generated explanation per clip or window"
    )
    predict.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="numeric precision (default: the one the model was trained in)",
    )
    spot = sub.add_parser(
        "spot",
        help="find the expressions in long recordings, then the AUs of each",
        description="Spots micro- and macro-expression intervals in videos or frame folders "
        "(per-frame motion on the aligned face, the MEGC peak rule), scores each interval's "
        "clip with the model, and writes per recording <name>_intervals.csv, "
        "<name>_timeline.csv (OpenFace's per-frame layout) and <name>_timeline.png. Exit "
        "status: 0 when every input was spotted, 3 when some failed, 4 when all did, 2 on a "
        "usage or output error.",
    )
    spot.add_argument("--model", type=Path, required=True, help="model directory")
    spot.add_argument("--input", type=Path, nargs="+", required=True, help="videos/frame folders")
    spot.add_argument("--out", type=Path, required=True, help="output folder")
    spot.add_argument(
        "--config", type=Path, help="spotter settings (YAML, the spot section's keys)"
    )
    spot.add_argument(
        "overrides", nargs="*", metavar="key=value", help="spotter settings, e.g. micro.p=0.4"
    )
    spot.add_argument("--fps", type=float, help="frame rate of frame folders without an fps.txt")
    spot.add_argument(
        "--annotations",
        type=Path,
        help="manifest of annotated intervals of the inputs: drawn on the plots, scored "
        "(evaluation.json)",
    )
    spot.add_argument(
        "--align", choices=choices(AlignMode), help="alignment of the interval clips (the model's)"
    )
    spot.add_argument("--precision", choices=PRECISIONS, help="numeric precision (the model's)")
    spot.add_argument("--batch-size", type=int, help="clips per model batch (the model's)")
    spot.add_argument("--strict", action="store_true", help="stop at the first failure")
    spot.add_argument("--overwrite", action="store_true", help="replace a previous run's outputs")
    spot.add_argument("--cache-dir", type=Path, help="interval clip cache (default: <out>/cache)")
    return parser


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
