"""The ``au-llm`` argument parser: every sub-command, its options and their help.

The choices the commands offer (protocols, manifest kinds, synthetic styles, precisions, ...) and
their help come from the tables that own them, so a protocol or a dataset kind added there is
listed here without an edit. The commands themselves are in :mod:`au_llm.recipes.cli`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from au_llm.config_checks import PRECISIONS, AlignMode, FacePolicy, LaunchMode, choices
from au_llm.data.build import INPUT_FILES, MANIFEST_KINDS
from au_llm.data.builders import SMIC_KIND
from au_llm.predict.config import PredictConfig
from au_llm.protocols import PROTOCOLS
from au_llm.synth.long import LONG_STYLES
from au_llm.synth.plan import DIFFICULTIES
from au_llm.synth.styles import SYNTH_STYLES

DESCRIPTION = "The au-llm command line: one sub-command per step of the toolkit."


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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="au-llm", description=DESCRIPTION)
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
