"""The checkpoint code has one direction: layout (files, paths, errors) <- models <- loader.

Imports inside functions count too: a circle (layout -> models -> layout) can hide in one.
"""

from __future__ import annotations

from pathlib import Path

from source_imports import PACKAGE, imports, module_name

CHECKPOINT = PACKAGE / "engine" / "checkpoint"


def _glmtts_imports(path: Path) -> set[str]:
    return {name for name in imports(path) if name.startswith("glmtts_mcp.")}


def _engine_graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in (PACKAGE / "engine").rglob("*.py")}
    return {name: _glmtts_imports(path) & set(modules) for name, path in modules.items()}


def test_layout_manifest_and_download_import_no_model() -> None:
    for name in ("layout", "manifest", "download"):
        imported = _glmtts_imports(CHECKPOINT / f"{name}.py")
        models = sorted(m for m in imported if m.startswith(("glmtts_mcp.engine.models", "glmtts_mcp.engine.frontend")))
        assert not models, f"checkpoint/{name}.py imports {models}: only checkpoint/loader.py may build models"
        assert "glmtts_mcp.engine.checkpoint.loader" not in imported


def test_the_loader_is_the_only_checkpoint_module_that_loads_models() -> None:
    """tiny.py *makes* checkpoints (it needs the architectures to write their weights); nothing else may."""
    importers = {
        path.name
        for path in CHECKPOINT.glob("*.py")
        if any(m.startswith("glmtts_mcp.engine.models") for m in _glmtts_imports(path))
    }
    assert importers == {"loader.py", "tiny.py"}


def test_the_engine_imports_in_no_circle() -> None:
    graph = _engine_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph[name]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [name, dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[name] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
