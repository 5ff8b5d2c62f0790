"""The recipes stand apart from the library, and ``runs/`` sits below the code that uses it.

The recipes (``au_llm/recipes/``: the CLI's commands, the demos, the run lifecycle) unpack the
experiment config and call the library; every other module of ``au_llm`` is library. Three rules,
read from the source (imports anywhere in a module, also inside functions):

1. No library module imports a recipe.
2. No library module names ``ExperimentConfig``; only the recipes and the module defining it do.
3. ``runs/`` imports nothing above it. A module outside ``runs/`` is *above* ``runs/`` when it
   imports a module of ``runs/``, directly or through other ``au_llm`` modules (importing a
   module also runs its packages' ``__init__``); an import from ``runs/`` to such a module would
   close a loop. Every other module is below (``io_utils``, ``data/``, ``prepare``, ...).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "au_llm"
ROOT = "au_llm"
RECIPES = "au_llm.recipes"
RUNS = "au_llm.runs"
DEFINES_EXPERIMENT = "au_llm.config"


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its ``__init__.py``)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = [package.name, *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def _with_packages(name: str) -> set[str]:
    """``name`` and the packages it lies in (whose ``__init__`` runs first), ``au_llm`` aside."""
    parts = name.split(".")
    return {".".join(parts[:n]) for n in range(2, len(parts) + 1)}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of the package that ``name`` imports, anywhere in its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: -node.level + (path.name == "__init__.py") or None]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        for target in targets:
            if target in known:
                found |= _with_packages(target)
    return found - {name} - {ROOT}


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    names = module_names(package)
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def _inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def recipe_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Rule 1: library module -> the recipes it imports."""
    found = {
        name: sorted(t for t in targets if _inside(t, RECIPES))
        for name, targets in graph.items()
        if not _inside(name, RECIPES)
    }
    return {name: targets for name, targets in found.items() if targets}


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


def experiment_mentions(package: Path) -> dict[str, list[int]]:
    """Rule 2: library module (not the definer) -> lines naming ``ExperimentConfig``."""
    found = {}
    for name, path in module_names(package).items():
        if _inside(name, RECIPES) or name == DEFINES_EXPERIMENT:
            continue
        lines = _mentions(path, "ExperimentConfig")
        if lines:
            found[name] = lines
    return found


def above_runs(graph: dict[str, set[str]]) -> set[str]:
    """The modules outside ``runs/`` that import a module of ``runs/``, directly or not."""
    above = {name for name in graph if _inside(name, RUNS)}
    grown = True
    while grown:
        reached = {name for name, targets in graph.items() if targets & above} - above
        grown = bool(reached)
        above |= reached
    return {name for name in above if not _inside(name, RUNS)}


def upward_imports(graph: dict[str, set[str]]) -> dict[str, list[str]]:
    """Rule 3: module of ``runs/`` -> the modules above ``runs/`` it imports."""
    above = above_runs(graph)
    found = {
        name: sorted(targets & above) for name, targets in graph.items() if _inside(name, RUNS)
    }
    return {name: targets for name, targets in found.items() if targets}


def test_no_library_module_imports_a_recipe():
    graph = import_graph(PACKAGE)
    assert "au_llm.recipes.experiment" in graph["au_llm.recipes.cli"], "lazy imports are seen"
    assert recipe_imports(graph) == {}, "the library must not import a recipe"


def test_only_recipes_mention_the_experiment_config():
    names = module_names(PACKAGE)
    assert _mentions(names["au_llm.recipes.cli"], "ExperimentConfig"), "the check sees the recipes"
    leaks = experiment_mentions(PACKAGE)
    assert leaks == {}, f"take the typed sections or plain arguments instead: {leaks}"


def test_runs_imports_nothing_above_it():
    graph = import_graph(PACKAGE)
    above = above_runs(graph)
    assert {"au_llm.reports.rebuild", "au_llm.recipes.experiment"} <= above  # it sees them
    assert "au_llm.prepare" not in above and "au_llm.io_utils" not in above
    assert upward_imports(graph) == {}, "runs/ may import only modules below it"


def _write(root: Path, files: dict[str, str]) -> Path:
    for relative, text in files.items():
        path = root / "au_llm" / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "au_llm"


def test_each_rule_fails_when_broken(tmp_path):
    package = _write(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "class ExperimentConfig: ...\n",
            "low.py": "import os\n",
            "high.py": "from au_llm.runs.layout import NAME\n",
            "middle.py": "from au_llm import high\n",
            "library.py": "def f():\n    from au_llm.recipes import cli\n",
            "typed.py": '"""ExperimentConfig in a docstring is fine."""\nimport au_llm.config\n'
            "def f(cfg: au_llm.config.ExperimentConfig) -> None: ...\n",
            "recipes/__init__.py": "",
            "recipes/cli.py": "from au_llm.config import ExperimentConfig\nfrom . import run\n",
            "recipes/run.py": "",
            "runs/__init__.py": "",
            "runs/layout.py": "from au_llm import low\nNAME = 'x'\n",
            "runs/run.py": "from au_llm.middle import f\nfrom .layout import NAME\n",
            "runs/lock.py": "from ..high import NAME\n",
        },
    )
    graph = import_graph(package)
    assert graph["au_llm.recipes.cli"] == {"au_llm.config", "au_llm.recipes", "au_llm.recipes.run"}
    assert recipe_imports(graph) == {"au_llm.library": ["au_llm.recipes", "au_llm.recipes.cli"]}
    assert experiment_mentions(package) == {"au_llm.typed": [3]}
    assert above_runs(graph) == {"au_llm.high", "au_llm.middle"}
    assert upward_imports(graph) == {
        "au_llm.runs.lock": ["au_llm.high"],
        "au_llm.runs.run": ["au_llm.middle"],
    }
