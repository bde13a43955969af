"""Import rules of the package, read from the source with ``ast`` (module- and function-level imports alike).

Dependencies run one way: the sparsity engine -> training -> runs -> search/evolution ->
reports -> cli. The engine and the training loop stay free of the distributed and
tracking libraries, and no package hides a cycle behind lazy loading.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "tuneprune"
THIRD_PARTY_SERVICES = ("ray", "mlflow", "optuna", "pymoo")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, wherever the import statement stands (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # `from pkg import submodule`
    return found


def imports_of(subpackage: str) -> dict[str, set[str]]:
    """``{file: imported modules}`` of every file of ``tuneprune.<subpackage>``."""
    root = PACKAGE / subpackage
    return {str(path.relative_to(PACKAGE.parent)): imported_modules(path) for path in sorted(root.rglob("*.py"))}


def top(module: str) -> str:
    return module.split(".")[0]


def unit(module: str) -> str | None:
    """The tuneprune subpackage (or top-level module) ``module`` belongs to; None outside tuneprune."""
    parts = module.split(".")
    return parts[1] if parts[0] == "tuneprune" and len(parts) > 1 else None


def existing_unit(name: str | None) -> bool:
    return name is not None and ((PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file())


def violations(
    subpackage: str, forbidden_libraries: tuple[str, ...], allowed_units: set[str] | None, forbidden_units: set[str]
) -> list[str]:
    found = []
    for path, modules in imports_of(subpackage).items():
        for module in sorted(modules):
            if top(module) in forbidden_libraries:
                found.append(f"{path}: imports {module}")
            name = unit(module)
            if not existing_unit(name) or name == subpackage:
                continue
            if name in forbidden_units or (allowed_units is not None and name not in allowed_units):
                found.append(f"{path}: imports {module}")
    return found


def test_the_sparsity_engine_imports_no_service_and_only_the_shared_config_helpers():
    assert violations("sparsity", THIRD_PARTY_SERVICES, allowed_units={"shared"}, forbidden_units=set()) == []


def test_training_is_pure_pytorch():
    """The one training loop (a run or a pack of K trials): the search and the evolution use it, never the reverse."""
    forbidden = {"cluster", "tracking", "relevance", "search", "runs", "evolution", "stochastic", "reports", "cli"}
    assert violations("training", THIRD_PARTY_SERVICES, allowed_units=None, forbidden_units=forbidden) == []


def subpackage_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        source = unit(module_name(path))
        if source is None:
            continue
        graph[source]
        for module in imported_modules(path):
            target = unit(module)
            if target is not None and existing_unit(target) and target != source:
                graph[source].add(target)
    return dict(graph)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as a path that returns to its start, or None (depth-first search)."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_cycle_between_subpackages():
    graph = subpackage_graph()
    assert {"sparsity", "training", "runs", "relevance", "search"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("graph", "cyclic"), [({"a": {"b"}, "b": {"c"}, "c": set()}, False), ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, True)]
)
def test_the_cycle_finder_finds_cycles(graph, cyclic):
    assert (find_cycle(graph) is not None) == cyclic


def test_no_lazy_loading_in_package_init_files():
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text(), str(init))
        names = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        assert "__getattr__" not in names, f"{init}: module __getattr__"
        modules = imported_modules(init)
        assert "importlib" not in {top(m) for m in modules}, f"{init}: imports importlib"


def private_uses(path: Path) -> list[str]:
    """``name._attr`` (not ``self``/``cls``, not a dunder) and direct ``optuna.trial.Trial(...)`` in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            found += [] if own else [f"{path.name}:{node.lineno}: {ast.unparse(node)}"]
        if isinstance(node, ast.Call) and ast.unparse(node.func) in ("optuna.trial.Trial", "Trial"):
            found.append(f"{path.name}:{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


def test_optuna_is_used_through_its_public_api_only():
    """Optuna documents its public API and says not to build ``optuna.trial.Trial`` directly: no module that
    imports optuna reaches a private attribute of another object."""
    users = [path for path in sorted(PACKAGE.rglob("*.py")) if any(top(m) == "optuna" for m in imported_modules(path))]
    assert users
    assert [use for path in users for use in private_uses(path)] == []


def test_every_subpackage_has_a_test_directory_of_its_own():
    """``tests/`` mirrors the packages of ``tuneprune/``: each subpackage is tested directly, not only through others."""
    tests = Path(__file__).resolve().parents[1]
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert {"sparsity", "tracking", "output", "cluster"} <= set(subpackages)
    untested = [name for name in subpackages if not any((tests / name).glob("test_*.py"))]
    assert untested == []
