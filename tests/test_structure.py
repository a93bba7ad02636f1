"""The house: how sacbook's modules import each other, read from their source
with ``ast`` (nothing is imported).

* no import cycles among the modules' top-level imports;
* floors: each module imports only modules listed above it in the package
  docstring's module list, which names every module;
* no import of the package inside a function, where it would hide a cycle
  (or a dependency) from the module's header; the few places that import
  the package late on purpose are listed below, with their reason;
* no file over 450 lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import sacbook

PACKAGE = "sacbook"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
MAX_LINES = 450

# Where a function may import the package, and why (a module name, or a
# package's name followed by ".*" for all its modules).
LATE_IMPORTS_ALLOWED = {
    # each command imports what it runs when it runs: `sacbook --help` and a
    # bad option answer without loading what the other commands need
    "sacbook.cli.*": "command modules",
    # the chapters' first cell: importable before JAX, which setup() starts
    "sacbook.notebook": "setup cell",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> list[tuple[ast.stmt, str | None]]:
    """Every import statement that runs, with the name of the function it is
    in (None: it runs when the module is imported). ``if TYPE_CHECKING:``
    blocks never run."""
    found = []

    def visit(node, function):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, function or child.name)
            elif isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append((child, function))
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                for other in child.orelse:
                    visit(ast.Module(body=[other], type_ignores=[]), function)
            else:
                visit(child, function)

    visit(tree, None)
    return found


def _in_package(name: str | None) -> bool:
    return name is not None and (name == PACKAGE or name.startswith(PACKAGE + "."))


def _nearest_module(name: str) -> str:
    """``name`` if it is a module of the package, else its nearest parent that is."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _targets(importer: str, node: ast.stmt) -> list[str]:
    """The package's modules an import statement in ``importer`` loads."""
    if isinstance(node, ast.Import):
        return [_nearest_module(a.name) for a in node.names if _in_package(a.name)]
    module = node.module
    if node.level:  # relative: from the importer's package
        is_package = MODULES[importer].name == "__init__.py"
        parts = importer.split(".")
        drop = node.level - (1 if is_package else 0)
        base = ".".join(parts[: len(parts) - drop])
        module = f"{base}.{module}" if module else base
    if not _in_package(module):
        return []
    module = _nearest_module(module)
    named = (f"{module}.{alias.name}" for alias in node.names)
    return [name if name in MODULES else module for name in named]


def _scan():
    """``(graph, late)``: each module's top-level imports of the package, and
    ``(module, function, line, imported)`` for each import inside a function."""
    graph, late = {}, []
    for name, path in MODULES.items():
        graph[name] = set()
        for node, function in _imports(ast.parse(path.read_text(), str(path))):
            targets = set(_targets(name, node)) - {name}
            if function is None:
                graph[name] |= targets
            else:
                late += [(name, function, node.lineno, t) for t in sorted(targets)]
    return graph, late


GRAPH, LATE = _scan()


def _drawing(graph) -> str:
    return "\n".join(
        f"  {m} -> {', '.join(sorted(graph[m])) or '(nothing)'}" for m in sorted(graph)
    )


def _cycles(graph) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


# ----------------------------------------------------------------------------
# The scanner itself, on made-up modules
# ----------------------------------------------------------------------------


def test_the_scanner_sees_every_form_of_import():
    """Absolute, relative, submodule and attribute imports resolve to the
    module they load; imports in functions (also nested) are late ones;
    TYPE_CHECKING blocks and other packages are ignored."""
    source = """
import os
import sacbook.loop
from sacbook import sac, checks as c
from sacbook.config import TrainConfig
from . import args
from .options import add_arguments
from sacbook import show_source
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from sacbook import viz
try:
    from sacbook import stats
except ImportError:
    pass

class A:
    def method(self):
        def inner():
            from sacbook import evaluate
        import matplotlib
"""
    tree = ast.parse(source)
    found = [
        (target, function)
        for node, function in _imports(tree)
        for target in _targets("sacbook.cli.train", node)
    ]
    assert found == [
        ("sacbook.loop", None),
        ("sacbook.sac", None),
        ("sacbook.checks", None),
        ("sacbook.config", None),
        ("sacbook.cli.args", None),
        ("sacbook.cli.options", None),
        ("sacbook", None),
        ("sacbook.stats", None),
        ("sacbook.evaluate", "method"),
    ]
    # from a package's __init__, "." is the package itself
    (node,) = ast.parse("from . import args").body
    assert _targets("sacbook.cli", node) == ["sacbook.cli.args"]
    (node,) = ast.parse("from .. import loop").body
    assert _targets("sacbook.cli.train", node) == ["sacbook.loop"]


def test_the_cycle_finder_finds_cycles():
    acyclic = {"a": {"b", "c"}, "b": {"c"}, "c": set()}
    assert _cycles(acyclic) == []
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}}
    assert sorted(_cycles(cyclic)) == [["a", "b", "c"], ["d", "e"]]


# ----------------------------------------------------------------------------
# The package
# ----------------------------------------------------------------------------


def test_the_scan_covers_the_package():
    for name in ("sacbook", "sacbook.loop", "sacbook.train", "sacbook.cli"):
        assert name in MODULES
    assert "sacbook.config" in GRAPH["sacbook.loop"]
    assert "sacbook.sac" in GRAPH["sacbook.config"]


def test_no_import_cycles():
    cycles = _cycles(GRAPH)
    assert not cycles, (
        f"import cycles among {cycles}; the package's imports:\n{_drawing(GRAPH)}"
    )


def _floors() -> list[str]:
    """The module list of sacbook's docstring, top floor first."""
    listing = sacbook.__doc__.split("Modules, one concept each")[1]
    return re.findall(r"^  (\w+) +\S", listing, flags=re.MULTILINE)


def _floor_of(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_the_package_docstring_lists_every_module():
    floors = _floors()
    public = {_floor_of(m) for m in MODULES} - {""}
    public = {m for m in public if not m.startswith("_")}
    assert len(floors) == len(set(floors))
    assert sorted(floors) == sorted(public), (
        f"listed but missing: {sorted(set(floors) - public)}; "
        f"not listed: {sorted(public - set(floors))}"
    )


def _downward(graph, floors: list[str]) -> list[str]:
    """The imports that do not go up ``floors`` (top first): between two
    floors, to the same or a lower one; from a private helper, any."""
    height = {name: i for i, name in enumerate(floors)}
    wrong = []
    for module, targets in sorted(graph.items()):
        floor = _floor_of(module)
        for target in sorted(targets):
            other = _floor_of(target)
            if floor.startswith("_"):
                wrong.append(f"{module} -> {target} (a private helper)")
            elif floor and other and other != floor:
                if height.get(other, -1) >= height.get(floor, len(floors)):
                    wrong.append(f"{module} -> {target}")
    return wrong


def test_the_floor_check_finds_imports_that_go_down():
    floors = ["checks", "loop", "train"]
    graph = {
        "sacbook": {"sacbook._source"},
        "sacbook._source": set(),
        "sacbook.checks": set(),
        "sacbook.loop": {"sacbook.checks"},
        "sacbook.train": {"sacbook.loop", "sacbook.checks"},
    }
    assert _downward(graph, floors) == []
    graph["sacbook.loop"].add("sacbook.train")
    graph["sacbook._source"].add("sacbook.checks")
    assert _downward(graph, floors) == [
        "sacbook._source -> sacbook.checks (a private helper)",
        "sacbook.loop -> sacbook.train",
    ]


def test_each_module_imports_only_the_floors_above_it():
    """Between the modules of the docstring's list, every import goes up the
    list; private helpers (``_source``) import nothing of the package."""
    wrong = _downward(GRAPH, _floors())
    assert not wrong, (
        f"imports of a floor below or beside: {wrong}; the package's imports:\n"
        f"{_drawing(GRAPH)}"
    )


def _late_allowed(module: str) -> bool:
    return any(
        module == rule or (rule.endswith(".*") and module.startswith(rule[:-1]))
        for rule in LATE_IMPORTS_ALLOWED
    )


def test_no_import_of_the_package_inside_functions():
    """Functions do not import the package (the header shows what a module
    needs), except where LATE_IMPORTS_ALLOWED says why; lazy imports of
    other libraries (matplotlib, tqdm, gymnax) are not the package's."""
    hidden = [
        f"{module}.{function} (line {line}) imports {target}"
        for module, function, line, target in LATE
        if not _late_allowed(module)
    ]
    assert not hidden, (
        f"imports of the package inside functions: {hidden}; import at the top "
        f"(if that makes a cycle, the modules need another split). The "
        f"package's top-level imports:\n{_drawing(GRAPH)}"
    )


def test_the_allowed_late_imports_dodge_no_cycle():
    """Even where a function may import the package, moving that import to
    the top must not close a cycle: late is a choice, never a way out."""
    hoisted = {module: set(targets) for module, targets in GRAPH.items()}
    for module, _, _, target in LATE:
        hoisted[module].add(target)
    hoisted = {m: t - {m} for m, t in hoisted.items()}
    cycles = _cycles(hoisted)
    assert not cycles, f"late imports that dodge a cycle: {cycles}"


def test_the_allowed_late_imports_exist():
    """Every entry of LATE_IMPORTS_ALLOWED matches a module (a stale entry
    would allow what nobody asked for)."""
    for rule in LATE_IMPORTS_ALLOWED:
        assert any(
            m == rule or (rule.endswith(".*") and m.startswith(rule[:-1]))
            for m in MODULES
        ), rule


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_file_over_450_lines(module):
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module].relative_to(ROOT.parent)}: {lines}"
