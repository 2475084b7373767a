"""Where tool arguments may point: input files confined to allowed folders, small base64 clips bounded.

Models cannot reliably emit large base64 arguments, so the `audio` argument is a path or `file://`
URI first; base64 (bare or as a `data:` URI) is accepted for small clips only. Nothing is ever
fetched from the network: an http(s) URL gets an error that says so and what to pass instead.
Every message starts with the tool argument it is about (`audio`, `reference_audio`, `path`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse

from mcp.server.mcpserver.exceptions import ToolError

_BASE64_RE = re.compile(r"^[A-Za-z0-9+/=\s_-]+$")  # no ".": a path to an audio file has one
_DATA_URI_RE = re.compile(r"^data:([\w/+.-]*)(;[\w=.-]+)*;base64,", re.IGNORECASE)
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
# A path is never this long; a base64 clip of any use always is.
_MIN_BASE64_CHARS = 256


def _allowed_list(allowed_dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in allowed_dirs)


def _refuse_url(raw: str, allowed_dirs: Sequence[Path], argument: str) -> None:
    """Remote URLs are never fetched (no network access from a local tool); say so, and what works."""
    if _URL_RE.match(raw.strip()) and not raw.strip().lower().startswith("file://"):
        raise ToolError(
            f"{argument} {raw!r} is a URL, and URLs are not fetched: download the file first and pass its "
            f"absolute path (or a file:// URI) inside the allowed folders ({_allowed_list(allowed_dirs)})"
        )


def resolve_allowed_path(raw: str, allowed_dirs: Sequence[Path], *, argument: str = "path") -> Path:
    """An existing regular file inside one of `allowed_dirs`, symlinks resolved before the check."""
    _refuse_url(raw, allowed_dirs, argument)
    text = raw.strip()
    if text.lower().startswith("file://"):
        parsed = urlparse(text)
        if parsed.netloc not in ("", "localhost"):
            raise ToolError(f"{argument} URI {raw!r} names a remote host; only local file:// URIs work")
        text = unquote(parsed.path)
    if not text:
        raise ToolError(f"{argument} is empty: pass an absolute path or a file:// URI")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ToolError(f"{argument} {raw!r} is a relative path: pass an absolute path or a file:// URI")
    real = path.resolve()
    if not any(real.is_relative_to(d) for d in allowed_dirs):
        raise ToolError(
            f"{argument} {str(path)!r} is outside the allowed folders ({_allowed_list(allowed_dirs)}); move it "
            "there or add its folder with --allowed-dir / GLMTTS_MCP_ALLOWED_DIRS"
        )
    if not real.exists():
        raise ToolError(f"{argument} {str(path)!r} does not exist")
    if not real.is_file():
        raise ToolError(f"{argument} {str(path)!r} is not a regular file")
    return real


def writable_target(raw: str, allowed_dirs: Sequence[Path], *, argument: str = "path") -> Path:
    """A file to create, or an existing folder, inside one of `allowed_dirs` (what may be written there is the
    library's export rule: see voices/archive.py)."""
    _refuse_url(raw, allowed_dirs, argument)
    path = Path(raw.strip()).expanduser()
    if not path.is_absolute():
        raise ToolError(f"{argument} {raw!r} is a relative path: pass an absolute path")
    real = path.resolve() if path.is_dir() else path.parent.resolve() / path.name
    if not any(real.is_relative_to(d) for d in allowed_dirs):
        raise ToolError(f"{argument} {str(path)!r} is outside the allowed folders ({_allowed_list(allowed_dirs)})")
    return real


def audio_source(
    raw: str, allowed_dirs: Sequence[Path], max_inline_bytes: int, *, argument: str = "audio"
) -> Path | bytes:
    """An audio argument as a confined file path, or decoded bytes for small base64 clips."""
    text = raw.strip()
    data_uri = _DATA_URI_RE.match(text)
    if data_uri or (len(text) >= _MIN_BASE64_CHARS and _BASE64_RE.match(text)):
        payload = text[data_uri.end() :] if data_uri else text
        if len(payload) * 3 // 4 > max_inline_bytes:
            raise ToolError(
                f"{argument}: base64 audio is larger than {max_inline_bytes} bytes: save the clip to a file and pass its path"
            )
        try:
            return base64.b64decode("".join(payload.split()), altchars=b"-_" if "-" in payload else None, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ToolError(
                f"{argument} looks like base64 but does not decode ({exc}); pass a file path instead"
            ) from exc
    return resolve_allowed_path(text, allowed_dirs, argument=argument)
