"""Waiting from a test for state the code under test changes on its own (a sweep, an idle timer), where it
offers nothing to await: poll the condition until it holds, failing after a bound."""

from __future__ import annotations

from collections.abc import Callable

import anyio


async def until(condition: Callable[[], bool], timeout_s: float) -> None:
    """Return once `condition()` holds; TimeoutError after `timeout_s` (a loaded machine may run it late)."""
    with anyio.fail_after(timeout_s):
        while not condition():  # noqa: ASYNC110  # the state changes with no event a test could wait on
            await anyio.sleep(0.05)
