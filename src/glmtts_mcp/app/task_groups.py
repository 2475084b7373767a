"""A task group's lone failure as itself, not wrapped in an exception group, so callers match on its type
(a UserError reaches its face's handler, a cancelled narration stays NarrationCancelled)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def lone_errors() -> Iterator[None]:
    """Around `async with anyio.create_task_group()`: re-raise a group of one exception as that exception."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from group.exceptions[0].__cause__
        raise
