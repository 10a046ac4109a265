"""The sensors' cursor: per repository, how far GitHub has been read and what was already decided.

Why both a watermark and a set of decided ids: GitHub's `since` has one-second resolution and is inclusive, so
the items at the watermark are listed again; the decided event and review ids (kept only for a grace window
behind the watermark) make that re-reading free of duplicates, and a tick that stops half-way simply leaves
the watermark at the last item it fully decided.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=10)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class RepoCursor:
    since: str | None = None
    floor: str | None = None  # when the cursor was created: earlier events are history, never decided
    etag: str | None = None
    decided: dict[str, str] = field(default_factory=dict)  # event/review id -> created_at
    backoff_until: str | None = None
    backoff_reason: str | None = None

    def is_new(self, item_id: str | int, created_at: str) -> bool:
        if str(item_id) in self.decided:
            return False
        if self.since is None:
            return False
        at = parse_time(created_at)
        if self.floor is not None and at <= parse_time(self.floor):
            return False
        return at >= parse_time(self.since) - GRACE

    def mark(self, item_id: str | int, created_at: str) -> None:
        self.decided[str(item_id)] = created_at

    def prune(self) -> None:
        if self.since is None:
            return
        floor = parse_time(self.since) - GRACE
        self.decided = {k: v for k, v in self.decided.items() if parse_time(v) >= floor}

    def backing_off(self, now: datetime) -> bool:
        return self.backoff_until is not None and parse_time(self.backoff_until) > now


@dataclass
class IntakeCursor:
    repos: dict[str, RepoCursor] = field(default_factory=dict)
    next_index: int = 0

    def repo(self, name: str) -> RepoCursor:
        return self.repos.setdefault(name.lower(), RepoCursor())

    def to_json(self) -> str:
        return json.dumps(
            {"v": 1, "next_index": self.next_index, "repos": {k: asdict(v) for k, v in self.repos.items()}}
        )

    @classmethod
    def from_json(cls, raw: str | None) -> IntakeCursor:
        """A cursor from its JSON; an unreadable cursor starts fresh (logged) rather than failing every tick."""
        if not raw:
            return cls()
        try:
            data: dict[str, Any] = json.loads(raw)
            repos = {k: RepoCursor(**v) for k, v in data.get("repos", {}).items()}
            return cls(repos=repos, next_index=int(data.get("next_index", 0)))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("sensor cursor unreadable (%s); starting from the current state of GitHub", exc)
            return cls()
