"""The progress of the seed-contract synthesis requests, for GET /api/tts/progress/{task_id}.

Each request gets a task whose state is the seed's `{status, step, elapsed}`: starting, processing (the
engine's progress message as the step), then completed or error. The board is bounded in count and
time: a finished task is kept `keep_s` seconds for a late reader, and past `max_tasks` the oldest tasks
go (finished ones first). Engine progress arrives from worker threads, so every access takes the lock.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from glmtts_mcp.web.errors import WebError

FINAL = ("completed", "error")
TASK_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass
class _Task:
    started: float = field(default_factory=time.monotonic)
    status: str = "starting"
    step: str = "queued"
    elapsed: float = 0.0
    finished: float | None = None


class TaskBoard:
    """Task id -> its progress, bounded in count (`max_tasks`) and in the time finished ones stay (`keep_s`)."""

    def __init__(self, max_tasks: int = 256, keep_s: float = 600.0) -> None:
        self._max_tasks = max_tasks
        self._keep_s = keep_s
        self._tasks: OrderedDict[str, _Task] = OrderedDict()
        self._lock = threading.Lock()

    def start(self, task_id: str | None = None) -> str:
        """A new task (the caller's id, checked, or a fresh one), in state `starting`."""
        if task_id is not None and not TASK_ID.fullmatch(task_id):
            raise WebError(400, "field `task_id` must be 1-64 letters, digits, '-' or '_' (or left out)", "task_id")
        with self._lock:
            self._expire()
            while len(self._tasks) >= self._max_tasks:  # the oldest finished task goes first, else the oldest
                finished = next((k for k, t in self._tasks.items() if t.finished is not None), None)
                del self._tasks[finished if finished is not None else next(iter(self._tasks))]
            if task_id is not None and task_id in self._tasks:
                raise WebError(409, f"task {task_id!r} exists already: choose another `task_id`", "task_id")
            task_id = task_id or secrets.token_hex(8)
            self._tasks[task_id] = _Task()
        return task_id

    def update(self, task_id: str, status: str, step: str) -> None:
        """Record the task's state now (a task evicted meanwhile is simply gone)."""
        with self._lock:
            task = self._tasks.get(task_id)
            if task is None or task.finished is not None:
                return
            task.status, task.step = status, step
            task.elapsed = round(time.monotonic() - task.started, 1)
            if status in FINAL:
                task.finished = time.monotonic()

    def read(self, task_id: str) -> dict[str, object] | None:
        """The task's `{status, step, elapsed}` (elapsed counting while it runs), or None when unknown."""
        with self._lock:
            self._expire()
            task = self._tasks.get(task_id)
            if task is None:
                return None
            elapsed = task.elapsed if task.finished is not None else round(time.monotonic() - task.started, 1)
            return {"status": task.status, "step": task.step, "elapsed": elapsed}

    def __len__(self) -> int:
        with self._lock:
            return len(self._tasks)

    def _expire(self) -> None:
        """Drop the tasks finished more than keep_s ago (lock held)."""
        now = time.monotonic()
        for task_id in [
            k for k, t in self._tasks.items() if t.finished is not None and now - t.finished > self._keep_s
        ]:
            del self._tasks[task_id]
