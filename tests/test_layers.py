"""The rules of docs/design.md "Layers" that import-linter cannot see: no private name of a
module is imported or reached by another module, and no module grows past 700 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "vdinspect"
MAX_LINES = 700


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def test_no_private_name_is_used_outside_its_module():
    bad = []
    for path in _modules():
        tree = ast.parse(path.read_text())
        imported_modules = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith(
                    "vdinspect")):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} imports "
                                   f"{alias.name}")
                    else:
                        imported_modules.add(alias.asname or alias.name)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in imported_modules and node.value.id[:1].islower()
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} uses "
                           f"{node.value.id}.{node.attr}")
    assert not bad, "\n".join(bad)


def test_no_module_is_over_700_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in _modules()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


RETURN_TYPED = ("containers", "disk", "chain.py")  # issue 15 item 5: the layers done so far


def test_public_functions_say_what_they_return():
    """Every public function and public method of a public class in RETURN_TYPED carries
    a return annotation (``__init__`` and other dunders aside)."""
    bad = []

    def visit(path, body, owner):
        for node in body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if not node.name.startswith("_") and node.returns is None:
                    bad.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {owner}{node.name}")
            elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                visit(path, node.body, node.name + ".")

    for path in _modules():
        if path.relative_to(PACKAGE).parts[0] in RETURN_TYPED:
            visit(path, ast.parse(path.read_text()).body, "")
    assert not bad, "\n".join(bad)
