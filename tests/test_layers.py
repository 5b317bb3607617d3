"""The rules of docs/design.md "Layers" that import-linter cannot see: no private name of a
module is imported or reached by another module, no module grows past 700 lines, and every
public function and method says what it returns."""

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


def _public_functions(path: Path):
    """(qualified name, line, has a return annotation) of each public module-level function
    and each public method of a public class (dunder methods are not public API)."""
    tree = ast.parse(path.read_text())
    defs = (ast.FunctionDef, ast.AsyncFunctionDef)
    for node in tree.body:
        if isinstance(node, defs) and not node.name.startswith("_"):
            yield node.name, node.lineno, node.returns is not None
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            for sub in node.body:
                if isinstance(sub, defs) and not sub.name.startswith("_"):
                    yield f"{node.name}.{sub.name}", sub.lineno, sub.returns is not None


def test_every_public_function_has_a_return_type():
    missing = []
    for path in _modules():
        rel = path.relative_to(PACKAGE)
        if any(p.startswith("_") and p != "__init__.py" for p in rel.parts):
            continue  # a private module
        for name, line, annotated in _public_functions(path):
            if not annotated:
                missing.append(f"{rel}:{line} {name}")
    assert not missing, "no return type:\n" + "\n".join(missing)


def test_the_return_type_check_sees_what_it_should(tmp_path):
    """The walk finds module functions and methods of public classes, and only those."""
    src = tmp_path / "m.py"
    src.write_text("def f(): pass\ndef g() -> int: return 1\ndef _h(): pass\n"
                   "class C:\n    def m(self): pass\n    def __init__(self): pass\n"
                   "class _D:\n    def m(self): pass\n")
    assert list(_public_functions(src)) == [("f", 1, False), ("g", 2, True), ("C.m", 5, False)]
