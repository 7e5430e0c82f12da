"""The layout's rules, checked on the source: no import cycle, small modules, one-way layers.

Imports inside functions count too: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"featstore": ROOT / "featstore", "featstore_cli": ROOT / "cli"}
MAX_LINES = 500
MAX_TOP_LEVEL_MODULES = 10

# What each subpackage may import from featstore (besides itself and featstore.errors).
ALLOWED = {
    "featstore.store": set(),
    "featstore.extraction": {"featstore.store"},
    "featstore.trainer_json": {"featstore.store", "featstore.extraction.dinov2_specs"},
    "featstore.report": {"featstore.store"},
    "featstore.neighbors": {"featstore.store"},
    "featstore.npy_dir": {
        "featstore.store",
        "featstore.extraction.pose",
        "featstore.trainer_json.json_writer",
    },
    "featstore.dataset": {
        "featstore.store",
        "featstore.trainer_json",
        "featstore.extraction",
        "featstore.npy_dir",
    },
}


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports, anywhere in its body."""
    out = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # `import featstore.a.b` imports featstore.a.b; `from x import y` may name a module.
            if target in known and target != name:
                out.add(target)
    return out


MODULES = _modules()
GRAPH = {name: _imports(name, path, set(MODULES)) for name, path in MODULES.items()}


def test_no_import_cycle() -> None:
    # Package __init__ files re-export their modules; an edge into a package's own
    # __init__ from inside it is how Python loads packages, not a cycle of the design.
    graph = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_is_small(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines < MAX_LINES, f"{MODULES[name]} has {lines} lines; split it by responsibility"


def test_few_modules_sit_directly_in_featstore() -> None:
    top = sorted(p.name for p in PACKAGES["featstore"].glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_layers_point_one_way(package: str) -> None:
    allowed = ALLOWED[package] | {package, "featstore.errors"}
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name == package or name.startswith(package + ".")
        for target in targets
        # `import featstore` (for __version__) is the package itself, not a layer above.
        if target.startswith("featstore.")
        and not any(target == a or target.startswith(a + ".") for a in allowed)
    )
    assert not wrong, "\n".join(wrong)


def test_library_never_imports_the_cli() -> None:
    wrong = sorted(
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        if name.startswith("featstore.") and name != "featstore.__main__"
        for target in targets
        if target.startswith("featstore_cli")
    )
    assert not wrong, "\n".join(wrong)


def test_every_package_is_installed() -> None:
    """pyproject lists packages one by one: a new subpackage missing there would be left
    out of a (non-editable) install."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        name
        for name, path in MODULES.items()
        if path.name == "__init__.py" or (name == "featstore_cli")
    }
    assert found <= listed, sorted(found - listed)
