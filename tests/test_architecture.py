"""The rooms and the one direction of imports between them, read from the source (docs/architecture.md).

faces (mcp_face/, web/) -> app/ -> voices/, engine/, engine_ray/; cli.py is the entry point that starts the
faces (and its own commands are the shell's face); asgi/ composes the HTTP faces into one app. No face
imports another; nothing below the faces imports a face or a protocol SDK, so no SDK type can be raised
there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from source_imports import PACKAGE, imports, module_name

FACES = ("mcp_face", "web")
BELOW_FACES = ("app", "voices", "engine", "engine_ray", "errors", "config", "logs")
SDKS = ("mcp", "mcp_types", "fastapi", "fastapi_offline", "starlette", "uvicorn", "h11", "sse_starlette")


def _room(module: str) -> str:
    """The room of a glmtts_mcp module: its first package below glmtts_mcp (or the module itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _modules() -> list[tuple[str, Path]]:
    return [(module_name(path), path) for path in sorted(PACKAGE.rglob("*.py"))]


def _violations(rule: str) -> list[str]:
    found = []
    for module, path in _modules():
        room = _room(module)
        for name in sorted(imports(path)):
            top = name.split(".")[0]
            target = _room(name) if top == "glmtts_mcp" else None
            if rule == "faces" and room in FACES and target in (*FACES, "cli", "asgi") and target != room:
                found.append(f"{module} imports {name}")
            if (
                rule == "below"
                and room in BELOW_FACES
                and (target in (*FACES, "cli", "cli_progress", "asgi") or top in SDKS)
            ):
                found.append(f"{module} imports {name}")
    return found


def test_no_face_imports_another_face() -> None:
    assert _violations("faces") == []


def test_nothing_below_the_faces_imports_a_face_or_a_protocol_sdk() -> None:
    assert _violations("below") == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("glmtts_mcp.web.rest", "from glmtts_mcp.mcp_face.voice_tools import notify_voices_changed\n", "faces"),
        ("glmtts_mcp.app.narration", "from mcp.server.mcpserver.exceptions import ToolError\n", "below"),
        ("glmtts_mcp.voices.library", "def f():\n    from glmtts_mcp.web import errors\n", "below"),
    ],
)
def test_the_rules_catch_a_violation(
    module: str, source: str, rule: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The checks above can fail: a planted import of each kind is reported."""
    planted = tmp_path / "planted.py"
    planted.write_text(source, encoding="utf-8")
    real = _modules()
    monkeypatch.setattr(f"{__name__}._modules", lambda: [*real, (module, planted)])
    assert _violations(rule) == [f"{module} imports {line}" for line in _planted_names(source)]


def _planted_names(source: str) -> list[str]:
    node = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.ImportFrom))
    assert node.module is not None
    return sorted([node.module, *(f"{node.module}.{alias.name}" for alias in node.names)])
