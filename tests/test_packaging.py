"""The built wheel installs and works outside the repository."""

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BUILD_IGNORE = (
    ".git",
    ".venv*",
    "build",
    "*.egg-info",
    ".cache",
    "__pycache__",
    ".*_cache",
)

CHECK = """
import json, sys
from pathlib import Path
import au_llm, au_llm.recipes.demo as demo
from au_llm.synth.render import source_landmarks
manifests = {"casme2": Path("c.csv"), "samm": Path("s.csv")}
names = [demo.demo_config(demo.CONFIG_DIR / n, Path("out"), manifests, no_llm=False).name
         for n in demo.DEMO_CONFIGS]
print(json.dumps({"package": au_llm.__file__, "configs": str(demo.CONFIG_DIR), "names": names,
                  "landmarks": source_landmarks().shape}))
"""


def _build_ignore(folder: str, names: list[str]) -> set[str]:
    """What the build copy leaves out: caches and outputs, and the top-level ``runs/`` only."""
    ignored = set(shutil.ignore_patterns(*BUILD_IGNORE)(folder, names))
    return ignored | ({"runs"} & set(names) if Path(folder) == REPO else set())


def run(args: list, cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    # Built from a copy, so no stale build/ folder of the checkout can leak into the wheel.
    source = tmp_path / "src"
    shutil.copytree(REPO, source, ignore=_build_ignore)
    run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "-o", tmp_path, source], source
    )
    wheel = next(tmp_path.glob("au_llm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "au_llm/configs/demo_casme2_loso.yaml" in names
    assert "au_llm/synth/astronaut_landmarks.csv" in names
    assert "au_llm/runs/run.py" in names  # a package named like the top-level output folder
    assert not [n for n in names if n.startswith(("tests/", "configs/"))]
    # A fresh venv that sees this one's dependencies (torch etc.), but not its editable au_llm.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    site = next((venv / "lib").glob("python3.*")) / "site-packages"
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    python = venv / "bin" / "python"
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", wheel], tmp_path)
    work = tmp_path / "empty"
    work.mkdir()
    assert "demo" in run([venv / "bin" / "au-llm", "--help"], work)
    report = run([python, "-c", CHECK], work)
    assert f'"package": "{site}/au_llm/__init__.py"' in report
    assert f'"configs": "{site}/au_llm/configs"' in report
    assert '"names": ["demo_casme2_loso", "demo_casme2_to_samm"]' in report
    assert '"landmarks": [468, 2]' in report
    empty = {**os.environ, "AU_LLM_CACHE": str(tmp_path / "cache")}
    missing = subprocess.run(
        [venv / "bin" / "au-llm", "assets"], cwd=work, env=empty, capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert "is not installed; install it with: python -m au_llm.assets --install" in missing.stderr
    assert "already cached; sha256 verified" in run([venv / "bin" / "au-llm", "assets"], work)
