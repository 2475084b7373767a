"""Usage counters for this process and, persisted in the root, for the library's whole life.

stdio hosts start a fresh process per session, so lifetime totals live in `stats.json` under the
root. Counts accumulate in memory and are added to the file by `flush` (from a background timer,
on writes and at close), never on the load path. Adding deltas under the write lock keeps the
totals right when several processes share a root.
"""

from __future__ import annotations

import json
import logging
import threading
from datetime import UTC, datetime

from pydantic import ValidationError

from glmtts_mcp.voices.records import StatsCounters
from glmtts_mcp.voices.store import VoiceStore

log = logging.getLogger(__name__)

STATS_FILE = "stats.json"
_STATS_FORMAT = "glmtts-mcp-voice-stats"
_COUNTER_NAMES = tuple(StatsCounters.model_fields)


class StatsKeeper:
    """Session counters plus deltas not yet added to the lifetime file."""

    def __init__(self, store: VoiceStore) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._session = StatsCounters().model_dump(include=set(_COUNTER_NAMES))
        self._pending: dict[str, float] = {}
        self.started_at = datetime.now(UTC)

    def add(self, **deltas: float) -> None:
        """Count something (names are StatsCounters fields)."""
        with self._lock:
            for name, value in deltas.items():
                self._session[name] += value
                self._pending[name] = self._pending.get(name, 0) + value

    def session(self) -> StatsCounters:
        """Counters since this library instance opened."""
        with self._lock:
            return StatsCounters(**self._session)

    def _read_file(self) -> tuple[dict[str, float], datetime | None]:
        path = self._store.root / STATS_FILE
        try:
            raw = json.loads(path.read_bytes())
            if not isinstance(raw, dict) or raw.get("format") != _STATS_FORMAT:
                raise ValueError("not a stats file")
            counters = StatsCounters(**raw.get("counters", {})).model_dump(include=set(_COUNTER_NAMES))
            since = datetime.fromisoformat(raw["since"]) if raw.get("since") else None
            return counters, since
        except FileNotFoundError:
            return StatsCounters().model_dump(include=set(_COUNTER_NAMES)), None
        except (OSError, ValueError, TypeError, KeyError, ValidationError) as exc:
            log.warning("lifetime stats in %s are unreadable (%s); starting them again from zero", path, exc)
            return StatsCounters().model_dump(include=set(_COUNTER_NAMES)), None

    def lifetime(self) -> tuple[StatsCounters, datetime | None]:
        """Totals over every process that used this root, including this one's unflushed counts."""
        counters, since = self._read_file()
        with self._lock:
            for name, value in self._pending.items():
                counters[name] += value
        return StatsCounters.model_validate(counters), since or self.started_at

    def flush(self) -> None:
        """Add pending counts to the lifetime file; the caller holds the store's write lock."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            counters, since = self._read_file()
            for name, value in pending.items():
                counters[name] += value
            document = {
                "format": _STATS_FORMAT,
                "since": (since or self.started_at).isoformat(),
                "updated": datetime.now(UTC).isoformat(),
                "counters": counters,
            }
            self._store.write_root_file(STATS_FILE, json.dumps(document, indent=1).encode())
        except BaseException:
            with self._lock:
                for name, value in pending.items():
                    self._pending[name] = self._pending.get(name, 0) + value
            raise
