"""The MCP Apps test host (apps_host/host.html and host.js) served into the browser at the server's own
origin: Playwright answers its paths from these files and from the npm packages in node_modules (the
official `@modelcontextprotocol/ext-apps` and `@modelcontextprotocol/client`, installed by .ci/run), with
an import map for the packages' bare specifiers, so nothing is bundled and nothing comes from a network."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HOST_DIR = Path(__file__).parent / "apps_host"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
EXT_APPS = NODE_MODULES / "@modelcontextprotocol" / "ext-apps" / "package.json"
PREFIX = "/__test_host/"
_IMPORT = re.compile(r"""(?:\bfrom|\bimport)\s*\(?\s*["']([^"'\s]+)["']""")
_CONDITIONS = ("browser", "import", "module", "default")
_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".cjs": "text/javascript", ".html": "text/html"}


def _pick(entry: Any) -> str | None:
    """The file an `exports` entry gives a browser's ES-module import."""
    if isinstance(entry, str):
        return entry
    if isinstance(entry, list):
        return next((p for p in map(_pick, entry) if p), None)
    if isinstance(entry, dict):
        for condition in _CONDITIONS:
            if condition in entry and (found := _pick(entry[condition])):
                return found
    return None


def _resolve(specifier: str) -> Path | None:
    """A bare specifier ("pkg", "pkg/sub", "@scope/pkg/sub") to its file, as package.json says."""
    parts = specifier.split("/")
    width = 2 if specifier.startswith("@") else 1
    package = NODE_MODULES.joinpath(*parts[:width])
    manifest = package / "package.json"
    if not manifest.is_file():
        return None
    meta = json.loads(manifest.read_text())
    sub = "./" + "/".join(parts[width:]) if len(parts) > width else "."
    exports = meta.get("exports")
    target = None
    if exports is not None:
        if not (isinstance(exports, dict) and any(key.startswith(".") for key in exports)):
            exports = {".": exports}
        target = _pick(exports.get(sub))
    if target is None and sub == ".":
        target = meta.get("module") or meta.get("main") or "index.js"
    if target is None:
        target = sub
    found = (package / target).resolve()
    return found if found.is_file() else None


def import_map(entry: Path) -> dict[str, dict[str, str]]:
    """Every bare specifier reachable from `entry`'s imports, mapped to its file under PREFIX."""
    imports: dict[str, str] = {}
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        source = todo.pop()
        if source in seen:
            continue
        seen.add(source)
        for specifier in _IMPORT.findall(source.read_text(errors="replace")):
            if specifier.startswith((".", "/")):
                target = (source.parent / specifier).resolve()
                if target.is_file():
                    todo.append(target)
                continue
            if specifier in imports or ":" in specifier:
                continue
            resolved = _resolve(specifier)
            if resolved is not None:
                imports[specifier] = PREFIX + "node_modules/" + resolved.relative_to(NODE_MODULES.resolve()).as_posix()
                todo.append(resolved)
    return {"imports": imports}


def serve_host(page: Any, base_url: str) -> str:
    """Answer the host's paths for `page` at `base_url`'s origin; the URL of the host page."""
    host_map = json.dumps(import_map(HOST_DIR / "host.js"))
    root = NODE_MODULES.resolve()

    def answer(route: Any) -> None:
        path = route.request.url.split(PREFIX, 1)[1].split("?", 1)[0]
        if path.startswith("node_modules/"):
            file = (root / path.removeprefix("node_modules/")).resolve()
            if not file.is_relative_to(root) or not file.is_file():
                route.fulfill(status=404, body="not found")
                return
        else:
            file = HOST_DIR / path
        body = file.read_text()
        if file.name == "host.html":
            body = body.replace("<!-- IMPORT_MAP -->", f'<script type="importmap">{host_map}</script>')
        route.fulfill(status=200, body=body, content_type=_TYPES.get(file.suffix, "text/plain"))

    page.route(f"{base_url}{PREFIX}**", answer)
    return f"{base_url}{PREFIX}host.html"
