"""Only the recipes (the CLI's sub-commands) unpack the experiment config.

Every other module takes the typed sections (``TrainConfig``, ``PreprocessConfig``, ...) or plain
arguments it uses, so a library function never reaches into a whole experiment.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "au_llm"
RECIPES = {
    "cli.py",
    "protocol.py",
    "launch.py",
    "ablate.py",
    "demo.py",
    "demo_text.py",
    "demo_composite.py",
    "train_recipe.py",
    "runs/run.py",
}


def _is_recipe(relative: str) -> bool:
    return relative in RECIPES or (relative.startswith("config") and "/" not in relative)


def _mentions(path: Path, name: str) -> list[int]:
    """Lines whose code (not docstrings or comments) names ``name``."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        named = (
            (isinstance(node, ast.Name) and node.id == name)
            or (isinstance(node, ast.Attribute) and node.attr == name)
            or (isinstance(node, ast.alias) and name in (node.name, node.asname))
        )
        if named:
            lines.append(node.lineno)
    return sorted(lines)


def _modules_mentioning(name: str) -> dict[str, list[int]]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = _mentions(path, name)
        if lines:
            found[path.relative_to(PACKAGE).as_posix()] = lines
    return found


def test_only_recipe_modules_mention_the_experiment_config():
    found = _modules_mentioning("ExperimentConfig")
    assert {"cli.py", "protocol.py", "config.py", "train_recipe.py"} <= set(found)  # it sees them
    leaks = {module: lines for module, lines in found.items() if not _is_recipe(module)}
    assert leaks == {}, f"take the typed sections instead of ExperimentConfig: {leaks}"


def test_the_check_sees_imports_annotations_and_attributes(tmp_path):
    path = tmp_path / "m.py"
    path.write_text(
        '"""ExperimentConfig in a docstring is fine."""\n'
        "from au_llm.config import ExperimentConfig\n"
        "def f(cfg: ExperimentConfig) -> None:\n"
        "    return config.ExperimentConfig\n"
    )
    assert _mentions(path, "ExperimentConfig") == [2, 3, 4]
