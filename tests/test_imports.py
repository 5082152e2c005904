"""Dependencies run one way (issue 10): every module imports on its own in a fresh interpreter,
the project's modules import each other without cycles, and no function body imports project
code (the usual way of hiding a cycle). Issue 19: the same between packages (a module of
``defenses`` importing ``bench`` while one of ``bench`` imports ``defenses`` is a cycle of
packages even when no two modules form one). Issue 29: no package cycle is left; ``attacks`` and
``defenses`` depend on ``core`` alone."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bench", "attacks", "defenses", "core")


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            name = name.removesuffix(".__init__")
            if not name.endswith("__main__"):
                out[name] = path
    return out


def _targets(node: ast.AST, module: str, known: dict[str, Path]) -> list[str]:
    """Project modules an import statement loads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] in PACKAGES]
    if isinstance(node, ast.ImportFrom):
        base = node.module or ""
        if node.level:  # relative import
            parts = module.split(".")[: -node.level] if not known[module].name == "__init__.py" else module.split(".")
            base = ".".join(parts + ([base] if base else []))
        if base.split(".")[0] not in PACKAGES:
            return []
        return [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    return []


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """One interpreter per module would cost a torch import each; instead one interpreter
    forgets every project module before importing the next, which is the same for the
    project's import order (third-party modules stay loaded)."""
    names = sorted(modules())
    code = (
        "import importlib, sys, traceback\n"
        f"names = {names!r}\n"
        "bad = []\n"
        "for n in names:\n"
        f"    for m in [m for m in sys.modules if m.split('.')[0] in {PACKAGES!r}]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(n)\n"
        "    except Exception:\n"
        "        bad.append(n + ': ' + traceback.format_exc().strip().splitlines()[-1])\n"
        "print('\\n'.join(bad))\n"
        "print(f'imported {len(names)} modules one by one; {len(bad)} failed')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(f"imported {len(names)} modules one by one; 0 failed"), res.stdout


def module_graph() -> dict[str, set[str]]:
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for m, path in known.items():
        for node in ast.parse(path.read_text()).body:  # top level only (function bodies: next test)
            for t in _targets(node, m, known):
                if t in known and t != m:
                    graph[m].add(t)
    return graph


def package_graph() -> dict[str, set[str]]:
    """Top-level packages, an edge where any module of one imports a module of the other."""
    graph: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for m, targets in module_graph().items():
        graph[m.split(".")[0]] |= {t.split(".")[0] for t in targets} - {m.split(".")[0]}
    return graph


def cycles_of(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components: any component of two or more nodes is a cycle."""
    index, low, stack, on, cycles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return sorted(cycles)


def test_no_import_cycles_between_project_modules():
    cycles = cycles_of(module_graph())
    assert not cycles, f"import cycles: {cycles}"


def test_cycle_finder_sees_a_cycle():
    assert cycles_of({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles_of({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_packages():
    """Issue 29 broke the last one (attacks <-> bench): ``attacks`` holds the algorithms and a
    tensor-level harness, ``bench.eval`` turns them into rows, and what both need is in ``core``."""
    graph = package_graph()
    assert cycles_of(graph) == [], f"package cycles: {cycles_of(graph)}; edges: {graph}"
    assert graph["attacks"] <= {"core"} and graph["defenses"] <= {"core"} and graph["core"] == set(), graph


# The two shims over ``core`` stay only for modules whose source is hashed into run identities
# (``core.method.code_version``): editing their imports would mark finished runs stale.
SHIM_IMPORTERS = {"bench.errors": {"bench.distill.base"}, "bench.registry": {"bench.multitask.methods.base"}}


def test_only_hashed_method_modules_import_the_shims():
    graph = module_graph()
    for shim, allowed in SHIM_IMPORTERS.items():
        assert {m for m, targets in graph.items() if shim in targets} == allowed, shim


def test_no_function_level_import_of_project_code():
    known = modules()
    found = []
    for m, path in known.items():
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if _targets(node, m, known):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} in {fn.name}()")
    assert not found, "function-level imports of project modules: " + ", ".join(found)


def _imported_names(tree: ast.AST) -> set[str]:
    """Every ``package.module`` (or ``package.module.attr``) a tree imports from the project."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
    return {n for n in out if n.split(".")[0] in PACKAGES}


def _exists(name: str) -> bool:
    """A project module or package of that name is in this tree, or ``name`` is an attribute
    its parent module or package's ``__init__`` defines or imports."""
    import re

    def source(dotted: str) -> str | None:
        path = ROOT.joinpath(*dotted.split("."))
        for f in (path.with_suffix(".py"), path / "__init__.py"):
            if f.is_file():
                return f.read_text()
        return None
    if source(name) is not None:
        return True
    parent, _, attr = name.rpartition(".")
    text = source(parent) if parent else None
    return text is not None and re.search(rf"\b{re.escape(attr)}\b", text) is not None


def test_every_project_import_names_a_module_of_this_tree():
    """Issue 29 moved modules: an import of an old path must fail here, not resolve through an
    editable install of another checkout. Covers the packages, the tests and the study
    notebooks' code cells."""
    import json
    sources = {p: p.read_text() for pkg in (*PACKAGES, "tests") for p in (ROOT / pkg).rglob("*.py")}
    for nb in (ROOT / "docs" / "studies").glob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        sources[nb] = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    missing = [f"{path.relative_to(ROOT)}: {name}" for path, text in sources.items()
               for name in sorted(_imported_names(ast.parse(text))) if not _exists(name)]
    assert not missing, missing


def test_import_check_sees_a_moved_module():
    assert not _exists("attacks.evaluate") and _exists("bench.eval.evaluate") and _exists("bench.eval.evaluate.evaluate")
