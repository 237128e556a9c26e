"""The import graph of spoolerd/, read from the source (AST), not by importing it: no cycle among the
modules' own imports, and the layers of DESIGN.md §1 kept (the faces sit on top: the control socket and
the SMTP listeners are started by the runtime, are handed a ``Host``, and never import the runtime)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FACES = ("spoolerd.control", "spoolerd.listener")  # packages started by spoolerd.daemon
# what may import a face: the faces, the runtime that starts them, and the commands people run
ABOVE_FACES = (
    "spoolerd.daemon",
    "spoolerd.cli",
    "spoolerd.ctl",
    "spoolerd.client",
    "spoolerd.sendmail",
    "spoolerd.sendmail_modes",  # sendmail -bs: an SMTP session on stdin (spoolerd.listener.stdio)
)
RUNTIME = ("spoolerd.daemon", "spoolerd.assembly", "spoolerd.reconfigure")  # what a face must not import
# a face's settings checked as config (check-config, run, a reload): importable without the face's server
FACE_CHECKS = ("spoolerd.listener.check", "spoolerd.control.access")


@dataclass(frozen=True, slots=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module
    line: int
    lazy: bool  # inside a function: run when called, not when the module is imported


def _modules(root: Path, package: str) -> dict[str, Path]:
    found = {}
    for path in (root / package).rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, lazy
        inside = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inside)


def imports(root: Path, package: str) -> list[Import]:
    """Every import of a module of ``package`` by another, with whether it is lazy."""
    modules = _modules(root, package)
    found = []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        base = name.split(".") if is_package else name.split(".")[:-1]
        for node, lazy in _walk(ast.parse(path.read_text(), str(path)), False):
            if isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                prefix = base[: len(base) - node.level + 1] if node.level else []
                module = ".".join([*prefix, *([node.module] if node.module else [])])
                candidates = [module, *(f"{module}.{alias.name}" for alias in node.names)]
            for target in candidates:
                if target in modules and target != name:
                    found.append(Import(name, target, node.lineno, lazy))
    return found


def cycles(edges: list[Import]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    graph: dict[str, set[str]] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        graph.setdefault(edge.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_no_import_cycle_among_spoolerd_modules_not_even_through_a_lazy_import() -> None:
    """An import inside a function ties two modules together as much as one at the top: it only moves
    the failure to the first call. What two modules share lives in a module below both."""
    assert cycles(imports(ROOT, "spoolerd")) == []


def test_no_layer_below_the_faces_imports_one_even_lazily() -> None:
    offenders = [
        f"{edge.source}:{edge.line} imports {edge.target}"
        for edge in imports(ROOT, "spoolerd")
        if _under(edge.target, FACES)
        and not _under(edge.source, FACES + ABOVE_FACES)
        and edge.target not in FACE_CHECKS
    ]
    assert offenders == []


def test_the_faces_are_handed_a_host_and_never_import_the_runtime() -> None:
    offenders = [
        f"{edge.source}:{edge.line} imports {edge.target}"
        for edge in imports(ROOT, "spoolerd")
        if _under(edge.source, FACES) and _under(edge.target, RUNTIME)
    ]
    assert offenders == []


def test_the_walk_finds_a_cycle_through_a_package_and_relative_imports(tmp_path: Path) -> None:
    """The checks above can fail: a made-up package whose circle is daemon -> control.server ->
    control.commands -> daemon, the one this test was written against, with a lazy import beside it."""
    pkg = tmp_path / "pkg"
    (pkg / "control").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "daemon.py").write_text("from .control import server\n")
    (pkg / "control" / "__init__.py").write_text("")
    (pkg / "control" / "server.py").write_text("from .commands import run\n")
    (pkg / "control" / "commands.py").write_text(
        "import pkg.daemon\n\ndef later():\n    from ..helpers import x\n"
    )
    (pkg / "helpers.py").write_text("def f():\n    from .control import commands\n")
    edges = imports(tmp_path, "pkg")
    assert cycles([e for e in edges if not e.lazy]) == [
        ["pkg.control.commands", "pkg.control.server", "pkg.daemon"]
    ]
    lazy = {(e.source, e.target) for e in edges if e.lazy}
    assert lazy == {
        ("pkg.control.commands", "pkg.helpers"),
        ("pkg.helpers", "pkg.control"),  # importing a submodule runs its package first
        ("pkg.helpers", "pkg.control.commands"),
    }
    assert cycles(edges) == [["pkg.control.commands", "pkg.control.server", "pkg.daemon", "pkg.helpers"]]


def test_a_cycle_closed_only_by_a_lazy_import_is_found(tmp_path: Path) -> None:
    """The circle this test was written against: sendmail -> sendmail_modes -> listener.stdio, which
    imported sendmail back inside a function; at module level there is no cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "listener").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sendmail.py").write_text("def main():\n    from .sendmail_modes import run_mode\n")
    (pkg / "sendmail_modes.py").write_text("def run_mode():\n    from .listener.stdio import serve\n")
    (pkg / "listener" / "__init__.py").write_text("")
    (pkg / "listener" / "stdio.py").write_text("def submit():\n    from ..sendmail import direct\n")
    edges = imports(tmp_path, "pkg")
    assert cycles([e for e in edges if not e.lazy]) == []
    assert cycles(edges) == [["pkg.listener.stdio", "pkg.sendmail", "pkg.sendmail_modes"]]
