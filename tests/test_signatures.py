"""Library calls read as what they say: no public function takes a boolean by position."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "au_llm"
# The tokenizers' encode(text, add_special_tokens) keeps Hugging Face's calling convention.
HF_CONVENTION = {("encode", "add_special_tokens")}


def positional_booleans(source: str) -> list[str]:
    """``name(parameter)`` of every public function whose bool parameter may be positional."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.FunctionDef):
            continue
        if node.name.startswith("_") and node.name != "__init__":
            continue
        for arg in [*node.args.posonlyargs, *node.args.args]:
            kind = ast.unparse(arg.annotation) if arg.annotation is not None else ""
            if kind in ("bool", "bool | None") and (node.name, arg.arg) not in HF_CONVENTION:
                found.append(f"{node.name}({arg.arg})")
    return found


def test_no_public_library_function_takes_a_boolean_by_position():
    found = {
        str(path.relative_to(PACKAGE)): positional_booleans(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }
    assert {path: names for path, names in found.items() if names} == {}


def test_the_rule_fails_on_a_positional_boolean_and_passes_a_keyword_only_one():
    assert positional_booleans("def f(x: int, strict: bool) -> None: ...") == ["f(strict)"]
    assert positional_booleans("def f(x: int, *, strict: bool) -> None: ...") == []
    assert positional_booleans("def _f(x: int, strict: bool) -> None: ...") == []
