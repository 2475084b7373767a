"""The seed contract's task board stays bounded: finished tasks expire, and past the cap the oldest go
(finished ones before running ones)."""

from __future__ import annotations

import time

import pytest

from glmtts_mcp.web.errors import WebError
from glmtts_mcp.web.seed_tasks import TaskBoard


def test_the_board_is_bounded_in_count_and_time() -> None:
    board = TaskBoard(max_tasks=3, keep_s=0.2)
    running, done, other = board.start("running"), board.start("done"), board.start()
    board.update(done, "completed", "done")
    board.start("fourth")  # over the cap: the finished task goes first
    assert board.read(done) is None and board.read(running) is not None and len(board) == 3
    board.start("fifth")  # none finished: the oldest goes
    assert board.read(running) is None and board.read(other) is not None
    board.update("fifth", "error", "boom")
    assert board.read("fifth") == {"status": "error", "step": "boom", "elapsed": pytest.approx(0.0, abs=0.1)}
    time.sleep(0.3)
    assert board.read("fifth") is None and board.read("fourth") is not None  # only finished tasks expire


def test_task_ids_are_checked_and_unique() -> None:
    board = TaskBoard()
    board.start("mine")
    with pytest.raises(WebError) as taken:
        board.start("mine")
    assert taken.value.status == 409
    with pytest.raises(WebError) as bad:
        board.start("../etc")
    assert bad.value.status == 400 and bad.value.field == "task_id"
    board.update("mine", "completed", "done")
    board.update("mine", "processing", "late")  # a finished task keeps its end
    assert board.read("mine")["status"] == "completed"  # type: ignore[index]
