"""docs/architecture.md's file tree matches the repository: nothing missing, nothing left out."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Folders whose files the tree lists one by one, and the file kinds it lists there.
LISTED = {"au_llm": ("*.py", "*.csv"), "configs": ("*.yaml",), "bench": ("*.py", "*.sh")}
UNLISTED = {"__init__.py"}


def tree_paths(text: str) -> set[str]:
    """Every path the ``## Files`` block names, folders included (``au_llm/model/llm.py``)."""
    block = text.split("## Files", 1)[1].split("```")[1]
    stack: list[str] = []
    paths = set()
    for line in block.splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip(" "))) // 2
        names = re.split(r"\s{2,}", line.strip())[0]
        del stack[depth:]
        for name in (part.strip() for part in names.split(",")):
            path = "/".join([*stack, name.rstrip("/")])
            paths.add(path)
            if name.endswith("/"):
                stack.append(name.rstrip("/"))
    return paths


def test_the_parser_reads_nesting_and_comma_lists() -> None:
    text = "## Files\n```\nau_llm/\n  data/\n    facs.py, facs.csv  vocabulary\n  cli.py  x\n```\n"
    assert tree_paths(text) == {
        "au_llm",
        "au_llm/data",
        "au_llm/data/facs.py",
        "au_llm/data/facs.csv",
        "au_llm/cli.py",
    }


def test_every_listed_path_exists() -> None:
    missing = sorted(p for p in tree_paths(ARCHITECTURE.read_text()) if not (ROOT / p).exists())
    assert not missing, f"docs/architecture.md lists paths that do not exist: {missing}"


def test_every_module_config_and_benchmark_is_listed() -> None:
    listed = tree_paths(ARCHITECTURE.read_text())
    actual = {
        path.relative_to(ROOT).as_posix()
        for folder, patterns in LISTED.items()
        for pattern in patterns
        for path in (ROOT / folder).rglob(pattern)
        if path.name not in UNLISTED and "__pycache__" not in path.parts
    }
    assert not actual - listed, f"missing from docs/architecture.md: {sorted(actual - listed)}"
