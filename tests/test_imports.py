"""The import graph of ``gradcheck/`` and ``layers/``: no cycle, imports only down the tiers that
``docs/architecture.md`` gives every module, and the harness does not import the layer zoo.

The graph is read from the source with :mod:`ast`, without importing anything: every
``import`` and ``from ... import`` at module level, inside functions and under
``if TYPE_CHECKING:``, and every ``importlib.import_module("...")`` / ``__import__("...")`` with
a literal name, because an import hidden inside a function is still a dependency (it only moves
the failure to run time). Importing ``a.b.c`` also runs the packages ``a`` and ``a.b``; those
edges count too, except into the importer's own enclosing packages (which are initialised
before it). Modules outside the two packages (NumPy, Hypothesis, ...) are not nodes.

Run it as a script for the whole picture: ``python tests/test_imports.py`` prints every cycle,
every import of ``layers`` from ``gradcheck`` and every intra-project import inside a function.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("gradcheck", "layers")

#: Modules of ``gradcheck`` allowed to import ``layers`` for good, and which of its modules
#: (``None``: any). The front ends put the layers in front of the user; the paper study measures
#: the paper's layer variants. (The mutation score is handed the mutants by the CLI's
#: ``mutants`` subcommand, the one CLI module that imports the layer zoo.)
ALLOWED_LAYERS_IMPORTS: Dict[str, Optional[Set[str]]] = {
    "gradcheck.cli.mutants": {"layers", "layers.mutants"},
    "gradcheck.pytest_plugin": None,
    "gradcheck.__main__": None,
    "gradcheck.paper": {"layers", "layers.paper", "layers.whitening"},
}



@dataclass(frozen=True)
class Import:
    """One import statement's edge: ``source`` imports ``target`` at ``path:line``."""

    source: str
    target: str
    path: str
    line: int
    in_function: bool
    implicit: bool = False  # a parent package run by importing one of its modules

    def where(self) -> str:
        kind = "inside a function" if self.in_function else "at module level"
        via = " (its package)" if self.implicit else ""
        return f"{self.path}:{self.line} {self.source} -> {self.target}{via}, {kind}"


def discover(root: Path = ROOT, packages: Sequence[str] = PACKAGES) -> Dict[str, Path]:
    """Every module of ``packages``: dotted name -> file (a package is its ``__init__.py``)."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _resolve(name: str, modules: Dict[str, Path]) -> Optional[str]:
    """The longest prefix of ``name`` that is one of ``modules`` (``None`` if outside)."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        candidate = ".".join(parts[:k])
        if candidate in modules:
            return candidate
    return None


def _base(source: str, is_package: bool, level: int, module: Optional[str]) -> str:
    """The absolute module a ``from`` import of ``level`` dots names, seen from ``source``."""
    if level == 0:
        return module or ""
    package = source.split(".") if is_package else source.split(".")[:-1]
    anchor = package[: len(package) - (level - 1)]
    return ".".join([*anchor, module] if module else anchor)


class _Collector(ast.NodeVisitor):
    def __init__(self, source: str, path: Path, modules: Dict[str, Path], root: Path) -> None:
        self.source = source
        self.path = str(path.relative_to(root))
        self.modules = modules
        self.is_package = path.name == "__init__.py"
        self.depth = 0
        self.found: List[Import] = []

    def _add(self, node: ast.AST, name: str) -> None:
        target = _resolve(name, self.modules)
        if target is None or target == self.source:
            return
        line = getattr(node, "lineno", 0)
        edges = [Import(self.source, target, self.path, line, self.depth > 0)]
        # Importing a.b.c runs a and a.b first, unless they enclose the importer already.
        parts = target.split(".")
        for k in range(1, len(parts)):
            parent = ".".join(parts[:k])
            if self.source != parent and not self.source.startswith(parent + "."):
                edges.append(Import(self.source, parent, self.path, line, self.depth > 0, True))
        # One edge per statement and target, however many names it imports.
        self.found += [e for e in edges if e not in self.found]

    def _function(self, node: ast.AST) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _base(self.source, self.is_package, node.level, node.module)
        for alias in node.names:
            full = f"{base}.{alias.name}" if base else alias.name
            # `from pkg import name`: a submodule when there is one, else an attribute of pkg.
            self._add(node, full if full in self.modules else base)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        args = node.args
        if name in ("import_module", "__import__") and args:
            first = args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                self._add(node, first.value)
        self.generic_visit(node)


def imports(root: Path = ROOT, packages: Sequence[str] = PACKAGES) -> List[Import]:
    """Every import edge between the modules of ``packages`` under ``root``."""
    modules = discover(root, packages)
    found: List[Import] = []
    for name, path in modules.items():
        collector = _Collector(name, path, modules, root)
        collector.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        found += collector.found
    return found


def cycles(edges: Sequence[Import]) -> List[List[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    graph: Dict[str, Set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    components: List[List[str]] = []

    def visit(v: str) -> None:
        # Recursion is fine: the graph has a few dozen nodes.
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(components)


def describe_cycles(edges: Sequence[Import]) -> str:
    """Each cycle with the import statements that close it."""
    out = []
    for component in cycles(edges):
        members = set(component)
        inside = [e for e in edges if e.source in members and e.target in members]
        out.append(
            "cycle " + " <-> ".join(component) + ":\n" + "\n".join(f"  {e.where()}" for e in inside)
        )
    return "\n".join(out)


def _allowed(e: Import) -> bool:
    for front, targets in ALLOWED_LAYERS_IMPORTS.items():
        if e.source == front or e.source.startswith(front + "."):
            return targets is None or e.target in targets
    return False


def layers_imports(edges: Sequence[Import]) -> List[Import]:
    """The imports of ``layers`` by ``gradcheck`` modules that no allowance covers."""
    return [
        e
        for e in edges
        if e.source.startswith("gradcheck")
        and (e.target == "layers" or e.target.startswith("layers."))
        and not _allowed(e)
    ]


EDGES = imports()


# -- the reader itself -------------------------------------------------------------------------


def _edges_of(root: Path, files: Dict[str, str]) -> List[Import]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return imports(root, sorted({rel.split("/")[0] for rel in files}))


def test_the_reader_finds_hidden_imports_and_their_cycles(tmp_path):
    """A cycle closed by an import inside a function, or by importlib, is found; the same
    modules importing one way only have none."""
    cyclic = _edges_of(
        tmp_path / "a",
        {
            "pkg/__init__.py": "",
            "pkg/low.py": "def f():\n    from . import high\n",
            "pkg/high.py": "from .low import f\n",
            "pkg/other.py": "import importlib\nimportlib.import_module('pkg.low')\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/leaf.py": "from ..other import x\n",
        },
    )
    assert cycles(cyclic) == [["pkg.high", "pkg.low"]]
    hidden = [e for e in cyclic if e.source == "pkg.low"]
    assert [(e.target, e.in_function) for e in hidden] == [("pkg.high", True)]
    assert ("pkg.other", "pkg.low") in {(e.source, e.target) for e in cyclic}
    assert ("pkg.sub.leaf", "pkg.other") in {(e.source, e.target) for e in cyclic}
    one_way = _edges_of(
        tmp_path / "b",
        {
            "pkg/__init__.py": "from .high import g\n",  # a package importing its own modules
            "pkg/low.py": "def f():\n    return 1\n",
            "pkg/high.py": "from .low import f\n\ndef g():\n    return f()\n",
        },
    )
    assert cycles(one_way) == []


def test_the_reader_counts_the_package_an_outside_import_runs(tmp_path):
    edges = _edges_of(
        tmp_path,
        {
            "app/__init__.py": "",
            "app/use.py": "from zoo.beast import B\n",
            "zoo/__init__.py": "from app import use\n",  # zoo's package imports app back
            "zoo/beast.py": "B = 1\n",
        },
    )
    assert cycles(edges) == [["app.use", "zoo"]]


# -- the project --------------------------------------------------------------------------------


def test_the_harness_imports_layers_only_where_allowed():
    """Only the front ends and the paper study (the paper's layers) import ``layers``; the
    rest of ``gradcheck`` works on any layer it is given (the CLI hands the mutation score its
    mutants)."""
    found = [e.where() for e in layers_imports(EDGES)]
    assert found == [], "\n".join(found)


def test_no_import_cycle_at_all():
    assert cycles(EDGES) == [], describe_cycles(EDGES)


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def tiers(page: Path = ARCHITECTURE) -> Dict[str, int]:
    """Module -> tier, from the table of ``docs/architecture.md`` (``| `PATH` | TIER | JOB |``)."""
    found = {}
    for line in page.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("`") and cells[1].isdigit():
            path = Path(cells[0].strip("`"))
            parts = list(path.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = int(cells[1])
    return found


def test_every_module_of_the_harness_has_a_tier_and_a_job():
    listed = tiers()
    modules = {m for m in discover() if m.split(".")[0] == "gradcheck"}
    assert sorted(modules - set(listed)) == [], "add these to docs/architecture.md"
    assert sorted(set(listed) - modules) == [], "docs/architecture.md lists modules that are gone"


def upward_imports(edges: Sequence[Import], tier: Dict[str, int]) -> List[str]:
    return [
        f"{e.where()}: tier {tier[e.source]} -> tier {tier[e.target]}"
        for e in edges
        if e.source in tier and e.target in tier and tier[e.target] > tier[e.source]
    ]


def test_imports_go_down_the_tiers_only():
    """A module imports only from its own tier or the tiers below (docs/architecture.md)."""
    upward = upward_imports(EDGES, tiers())
    assert upward == [], "\n".join(upward)


def test_an_import_up_the_tiers_is_caught(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "__init__.py").write_text("")
    (tmp_path / "app" / "low.py").write_text("def f():\n    from app import high\n")
    (tmp_path / "app" / "high.py").write_text("from app import low\n")
    page = tmp_path / "architecture.md"
    page.write_text("| `app/low.py` | 0 | low |\n| `app/high.py` | 1 | high |\n")
    found = upward_imports(imports(tmp_path, ("app",)), tiers(page))
    assert found == ["app/low.py:2 app.low -> app.high, inside a function: tier 0 -> tier 1"]


def test_the_tier_rule_is_not_vacuous():
    """The table's reader finds the rows it must: a tier-0 estimator, a tier-4 front end."""
    tier = tiers()
    assert tier["gradcheck.finite_diff"] == 0 and tier["gradcheck.cli.report"] == 4
    assert tier["gradcheck"] == 2


def _report() -> str:
    hidden = [e.where() for e in EDGES if e.in_function and not e.implicit]
    lines = [describe_cycles(EDGES) or "no cycle", ""]
    lines.append("gradcheck -> layers imports outside the allowances:")
    lines += [f"  {e.where()}" for e in layers_imports(EDGES)] or ["  none"]
    lines += ["", "intra-project imports inside functions:"]
    lines += [f"  {w}" for w in hidden] or ["  none"]
    return "\n".join(lines)


def _main(argv: Sequence[str]) -> int:
    print(_report())
    return 1 if cycles(EDGES) else 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
