"""The package's shape, checked from its source: no import circle anywhere (imports made only for
type hints and inside functions count too), lower layers never import higher ones, and no code
outside a method's own module compares anything with a method's name."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

from pjudge_core.engine.methods import METHODS

PACKAGE = ROOT / "pjudge_core"
# A module may import modules of its own layer and of the layers before it, never of a later one.
LAYERS = [("errors", "paths"), ("engine",), ("presets",), ("evaluation",), ("bench",), ("ui",), ("server",), ("cli",)]


def module_name(path: Path) -> str:
    parts = ["pjudge_core", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    path = PACKAGE.parent / Path(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imports(path: Path) -> set[str]:
    """Every pjudge_core module `path` imports, wherever the import statement is."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            source = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:  # `from package import module` imports the module itself
                found.add(f"{source}.{alias.name}" if is_module(f"{source}.{alias.name}") else source)
    return {m for m in found if m.split(".")[0] == "pjudge_core" and m != name}


def graph() -> dict[str, set[str]]:
    return {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back_through_others():
    assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle_through_type_hints(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(edges) == [["a", "b", "c"]]


def layer(module: str) -> int | None:
    top = module.split(".")[1] if module.count(".") else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_lower_layers_never_import_higher_ones():
    wrong = []
    for module, targets in graph().items():
        mine = layer(module)
        if mine is None:  # the package's root re-exports the library API
            continue
        for target in targets:
            theirs = layer(target)
            same_top = target.split(".")[1] == module.split(".")[1]
            if theirs is not None and (theirs > mine or (theirs == mine and not same_top and mine == len(LAYERS) - 1)):
                wrong.append(f"{module} imports {target}")
    assert wrong == []


# --------------------------------------------------------------------------- method names

NAMES = set(METHODS) | {variant for method in METHODS.values() for variant in method.variants}
OWN = PACKAGE / "engine" / "methods"


def method_names(node: ast.AST) -> set[str]:
    """Method names among a comparison operand (a string, or a tuple / list / set of them)."""
    values = node.elts if isinstance(node, (ast.Tuple, ast.List, ast.Set)) else [node]
    return {v.value for v in values if isinstance(v, ast.Constant) and isinstance(v.value, str)} & NAMES


def compared(source: str) -> list[tuple[int, str]]:
    """(line, name) of every method name a comparison or a prefix test uses in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                found += [(node.lineno, name) for name in method_names(operand)]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and node.args):
            prefix = node.args[0]
            if isinstance(prefix, ast.Constant) and isinstance(prefix.value, str) and any(
                    name.startswith(prefix.value.rstrip("[(")) for name in NAMES) and prefix.value.rstrip("[("):
                found.append((node.lineno, prefix.value))
    return found


def test_no_method_name_is_compared_outside_its_own_module():
    wrong = [f"{path.relative_to(PACKAGE.parent)}:{line} compares {name!r}"
             for path in PACKAGE.rglob("*.py") if OWN not in path.parents
             for line, name in compared(path.read_text(encoding="utf-8"))]
    assert wrong == []


@pytest.mark.parametrize("code", ['if spec.method == "fusion": pass', 'x = method in ("persona-judge", "official")',
                                  'ok = slot.startswith("direct[")', 'y = "official-base" != name'])
def test_the_method_name_check_catches_a_comparison(code):
    assert compared(code)
