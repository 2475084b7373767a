"""Form fields at the web edge: uploads read within the upload limit (refused when empty), blank text as
not given."""

from __future__ import annotations

from starlette.datastructures import UploadFile

from glmtts_mcp.web.errors import WebError


async def read_upload(upload: UploadFile, field: str, limit: int) -> bytes:
    """The uploaded file's bytes (spooled to memory or an anonymous temp file by the form parser)."""
    data = await upload.read(limit + 1)
    if len(data) > limit:
        raise WebError(413, f"field `{field}` is larger than the {limit}-byte upload limit (--max-upload-bytes)", field)
    if not data:
        raise WebError(400, f"field `{field}` is an empty file: choose a recording of 5-15 s of speech", field)
    return data


def optional(value: str | None) -> str | None:
    """An empty form field means 'not given'."""
    return value.strip() or None if value is not None else None
