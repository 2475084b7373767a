"""Turn one synthesized file into the content blocks a host can use, under the host's result-size limit.

Return-mode parts: `audio` (MCP audio content, base64), `resource` (embedded resource, base64),
`link` (resource link to audio://...), `path` (the saved file's path as text). Inline parts are
dropped when they would push the result over `max_result_bytes`; the result then carries a link and
the path instead, and says so.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from mcp_types import (
    AudioContent,
    BlobResourceContents,
    ContentBlock,
    EmbeddedResource,
    ResourceLink,
    TextContent,
)

from glmtts_mcp.app.outputs import StoredOutput
from glmtts_mcp.config import parse_return_mode

# Room left for the structured result, the text block and JSON framing.
_RESULT_OVERHEAD_BYTES = 16 * 1024


@dataclass
class RenderedAudio:
    """The content blocks to send, the parts actually used, and why a part was dropped."""

    blocks: list[ContentBlock]
    parts: list[str]
    note: str | None = None


def inline_fits(size: int, copies: int, max_result_bytes: int) -> bool:
    """Whether `copies` base64 copies of `size` bytes fit the result budget."""
    return copies * ((size + 2) // 3 * 4) + _RESULT_OVERHEAD_BYTES <= max_result_bytes


def render_audio(stored: StoredOutput, return_mode: str, max_result_bytes: int, summary: str) -> RenderedAudio:
    """Content blocks for `return_mode`; `summary` opens the text block every result carries. The file is
    read only when it goes inline, which only a file that fits the result budget does."""
    size = stored.path.stat().st_size
    parts = list(parse_return_mode(return_mode))
    inline = [p for p in parts if p in ("audio", "resource")]
    note = None
    if inline and not inline_fits(size, len(inline), max_result_bytes):
        parts = [p for p in parts if p not in inline]
        parts += [p for p in ("link", "path") if p not in parts]
        note = (
            f"The audio ({size} bytes as {stored.output_id.rsplit('.', 1)[1]}) is too large to send inline "
            f"(result limit {max_result_bytes} bytes), so it is returned as a link and a saved file instead; "
            "ask for a shorter text or a compressed format (ogg, mp3) to get it inline."
        )
    blocks: list[ContentBlock] = []
    inlined = any(p in ("audio", "resource") for p in parts)
    encoded = base64.b64encode(stored.path.read_bytes()).decode("ascii") if inlined else ""
    text = summary
    if note:
        text += "\n" + note
    if "path" in parts:
        text += f"\nSaved to: {stored.path}"
    if "link" in parts or "resource" in parts:
        text += f"\nResource: {stored.uri}"
    blocks.append(TextContent(type="text", text=text))
    for part in parts:
        if part == "audio":
            blocks.append(AudioContent(type="audio", data=encoded, mime_type=stored.mime_type))
        elif part == "resource":
            blocks.append(
                EmbeddedResource(
                    type="resource",
                    resource=BlobResourceContents(uri=stored.uri, blob=encoded, mime_type=stored.mime_type),
                )
            )
        elif part == "link":
            blocks.append(
                ResourceLink(
                    type="resource_link",
                    uri=stored.uri,
                    name=stored.output_id,
                    mime_type=stored.mime_type,
                    size=size,
                    description="Synthesized speech",
                )
            )
    return RenderedAudio(blocks=blocks, parts=parts, note=note)
