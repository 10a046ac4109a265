"""The sensors' cursor: per repository, how far GitHub has been read and what was already decided.

Why each part:
- `since` and `etag` are one pair: the ETag is only good for the query that produced it, so `since` stays put
  while the ETag holds, and an idle repository costs a free 304 from the first idle tick on. `since` moves
  forward (dropping the ETag, so one listing is counted) only when the listing has grown past `ADVANCE`.
  An ETag is kept only for a listing of one page: it covers page 1 alone, and a later change lands past page 1
  (the listing is sorted by update time), so it would be answered 304 for good. A listing of several pages,
  fully read and decided, moves `since` to its newest change at once: its ETag is worthless, so nothing is
  gained by leaving `since` behind, and the next listing is one page again.
- `since` is also the events' horizon (`horizon`): an item's events are read back to `since - GRACE`. So it
  moves only once every item listed since it was decided. `resume` is where the next listing starts when a
  listing was too long to read (or decide) in one tick: every item updated before it was decided, so the
  listing goes on from there while `since`, and the horizon, stay until the whole listing was decided.
- `items`: per issue or PR, the `updated_at` at which it was fully decided. A listing skips what it already
  decided, so a fault costs a retry of one item, never of the whole second (a bulk edit of 100 issues), and
  a new `since` re-reads no events.
- `unsettled`: items GitHub served in the same second as their last change. A later change in that second
  (a review submitted right after a label) would not show in `updated_at`, so they are read once more.
- `decided`: event and review ids already decided, kept for a grace window: re-reading is free of duplicates.
- `polled_at`: when the listing was last asked; with healthy webhooks polling is only reconciliation and runs
  at a longer interval.
- `IntakeCursor.rate_limits`: per credential (the token, or an App's installation on an owner), until when GitHub
  refused it. GitHub counts its limits per credential, not per repository: a refusal holds every repository read
  with it, and no request is made with it until the time GitHub gave, in this tick or a later one.
- `failures`: how many ticks in a row the repository could not be read at all (its listing, its first look, a
  connection to it). The first is asked again next tick (a blip); from the second on it waits `backoff_until`,
  growing from `FAILURE_BACKOFF` to `FAILURE_BACKOFF_CAP`, so a repository the platform lost access to, or one in
  a long outage, is not asked every 3 s by both sensors.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from codexk8s_pipelines.github.rate_limit import RateLimit

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=10)
ADVANCE = timedelta(minutes=5)  # how far the newest change may run ahead of `since` before `since` follows
FAILURE_BACKOFF = timedelta(seconds=30)  # after the second failure in a row; doubled with each further one
FAILURE_BACKOFF_CAP = timedelta(minutes=30)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _second_after(value: datetime) -> str:
    """`value` to the second, rounded up: a limit kept to the second must not end before GitHub's."""
    whole = value.replace(microsecond=0)
    return format_time(whole + timedelta(seconds=1) if whole < value else whole)


@dataclass
class RepoCursor:
    since: str | None = None
    floor: str | None = None  # when the cursor was created: earlier events are history, never decided
    etag: str | None = None  # the ETag of the listing `since` asked for, and of no other query
    decided: dict[str, str] = field(default_factory=dict[str, str])  # event/review id -> created_at
    items: dict[str, str] = field(default_factory=dict[str, str])  # issue/PR number -> updated_at it was decided at
    unsettled: list[int] = field(default_factory=list[int])
    backoff_until: str | None = None
    backoff_reason: str | None = None
    polled_at: str | None = None
    resume: str | None = None  # where the next listing starts: every item updated before it was decided
    failures: int = 0  # ticks in a row the repository could not be read

    def copy(self) -> RepoCursor:
        """A copy a tick's worker may change while the cursor it came from stays as it was: a repository the tick
        stopped waiting for leaves its cursor untouched, whatever its worker still does."""
        return replace(self, decided=dict(self.decided), items=dict(self.items), unsettled=list(self.unsettled))

    def is_new(self, item_id: str | int, created_at: str) -> bool:
        if str(item_id) in self.decided:
            return False
        if self.since is None:
            return False
        at = parse_time(created_at)
        if self.floor is not None and at <= parse_time(self.floor):
            return False
        return at >= parse_time(self.since) - GRACE

    def horizon(self) -> datetime | None:
        """The oldest time an event or review can have and still be new (`is_new`): what an item's lists are read
        back to, from their newest end."""
        if self.since is None:
            return None
        oldest = parse_time(self.since) - GRACE
        return max(oldest, parse_time(self.floor)) if self.floor is not None else oldest

    def mark(self, item_id: str | int, created_at: str) -> None:
        self.decided[str(item_id)] = created_at

    def item_done(self, number: int, updated_at: str) -> bool:
        """Whether the item was fully decided at exactly this `updated_at` (and is not waiting to settle)."""
        return self.items.get(str(number)) == updated_at and number not in self.unsettled

    def finish_item(self, number: int, updated_at: str, served_at: str | None) -> None:
        """Record an item as decided; it stays unsettled when GitHub served it in the second of its change."""
        self.items[str(number)] = updated_at
        settled = served_at is None or parse_time(updated_at) < parse_time(served_at)
        if settled and number in self.unsettled:
            self.unsettled.remove(number)
        elif not settled and number not in self.unsettled:
            self.unsettled.append(number)

    def maybe_advance(self, watermark: str) -> None:
        """Move `since` (and drop its ETag) once the newest change is `ADVANCE` ahead of it."""
        if self.since is not None and parse_time(watermark) - parse_time(self.since) >= ADVANCE:
            self.since = watermark
            self.etag = None

    def listing_start(self) -> str | None:
        """The `since` the next listing asks: where a listing too long for one tick stopped, else `since`."""
        return self.resume or self.since

    def listing_decided(self, watermark: str | None) -> None:
        """A listing of several pages (or the end of one read over several ticks) was read to its end and every item
        in it decided: `since` moves to its newest change, with no ETag (the next listing gets one)."""
        newest = watermark or self.resume
        if self.since is not None and newest is not None and parse_time(newest) > parse_time(self.since):
            self.since = newest
        self.etag = self.resume = None

    def decided_before(self, at: str) -> None:
        """Every listed item updated before `at` was decided: the next listing starts there (`since` stays)."""
        start = self.listing_start()
        if start is None or parse_time(at) > parse_time(start):
            self.resume = at
        self.etag = None

    def repository_failed(self, now: datetime, reason: str) -> timedelta | None:
        """Count a tick in which the repository could not be read; from the second in a row on, back off (growing,
        capped). Returns the wait, None when it is asked again next tick."""
        self.failures += 1
        self.etag = None
        if self.failures < 2:
            return None
        wait = min(FAILURE_BACKOFF * 2 ** min(self.failures - 2, 16), FAILURE_BACKOFF_CAP)
        until = now + wait
        self.backoff_until = format_time(until)
        self.backoff_reason = (
            f"{reason}; failed {self.failures} ticks in a row, backing off for {int(wait.total_seconds())} s,"
            f" until {until.astimezone(UTC):%H:%M:%S} UTC"
        )
        return wait

    def repository_read(self) -> None:
        self.failures = 0
        self.backoff_until = self.backoff_reason = None

    def prune(self) -> None:
        if self.since is None:
            return
        floor = parse_time(self.since) - GRACE
        self.decided = {k: v for k, v in self.decided.items() if parse_time(v) >= floor}
        self.items = {k: v for k, v in self.items.items() if parse_time(v) >= floor}

    def backing_off(self, now: datetime) -> bool:
        return self.backoff_until is not None and parse_time(self.backoff_until) > now

    def poll_due(self, now: datetime, interval: timedelta) -> bool:
        return self.polled_at is None or now - parse_time(self.polled_at) >= interval


def _changed_fields(repo: RepoCursor) -> dict[str, Any]:
    """A repository's cursor without the fields that hold a new cursor's values (read back as those defaults)."""
    default = asdict(RepoCursor())
    return {k: v for k, v in asdict(repo).items() if v != default[k]}


CURSOR_VERSION = 3  # 3: an ETag only of a listing of one page that was not full


@dataclass
class IntakeCursor:
    repos: dict[str, RepoCursor] = field(default_factory=dict[str, RepoCursor])
    next_index: int = 0
    # credential -> {"kind", "until", "message"}: GitHub's rate limit on it, kept across ticks (see the module)
    rate_limits: dict[str, dict[str, str]] = field(default_factory=dict[str, dict[str, str]])

    def repo(self, name: str) -> RepoCursor:
        return self.repos.setdefault(name.lower(), RepoCursor())

    def limits_at(self, now: datetime) -> dict[str, RateLimit]:
        """The credentials' rate limits still in force at `now`; an unreadable entry is dropped (logged)."""
        limits: dict[str, RateLimit] = {}
        for credential, raw in self.rate_limits.items():
            try:
                limit = RateLimit(str(raw["kind"]), parse_time(str(raw["until"])), str(raw.get("message", "")))
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("sensor cursor: rate limit of %s unreadable (%s); dropped", credential, exc)
                continue
            if limit.resume_at > now:
                limits[credential] = limit
        return limits

    def keep_limits(self, limits: dict[str, RateLimit]) -> None:
        self.rate_limits = {
            credential: {"kind": limit.kind, "until": _second_after(limit.resume_at), "message": limit.message[:200]}
            for credential, limit in limits.items()
        }

    def backing_off(self, now: datetime) -> set[str]:
        """The repositories a tick at `now` asks nothing (`RepoCursor.backing_off`): the inbox leaves their
        webhook deliveries unread, so they take no other repository's share."""
        return {name for name, repo in self.repos.items() if repo.backing_off(now)}

    def to_json(self) -> str:
        """Compact, each repository's fields only where they differ from a new `RepoCursor`'s (`from_json` fills
        the rest in): Dagster stores the cursor in every tick row, two sensors tick every 3 s, and an idle
        repository's entry is 40% defaults (300 repositories: 101 KB -> 61 KB a tick)."""
        data: dict[str, Any] = {
            "v": CURSOR_VERSION,
            "next_index": self.next_index,
            "repos": {k: _changed_fields(v) for k, v in self.repos.items()},
        }
        if self.rate_limits:
            data["rate_limits"] = self.rate_limits
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | None) -> IntakeCursor:
        """A cursor from its JSON (versions 1 and 2 included); an unreadable cursor starts fresh (logged) rather
        than failing every tick. Before version 3 an ETag could be page 1's of a listing of several pages, which
        GitHub answers 304 as long as page 1 stays as it was, however much changed after it: it is dropped."""
        if not raw:
            return cls()
        try:
            data: dict[str, Any] = json.loads(raw)
            repos = {k: RepoCursor(**v) for k, v in data.get("repos", {}).items()}
            if int(data.get("v", 1)) < CURSOR_VERSION:
                for repo in repos.values():
                    repo.etag = None
            limits: Any = data.get("rate_limits") or {}
            if not isinstance(limits, dict):
                raise TypeError(f"rate_limits is {type(limits).__name__}, not an object")
            kept = cast(dict[str, dict[str, str]], limits)
            return cls(repos=repos, next_index=int(data.get("next_index", 0)), rate_limits=dict(kept))
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("sensor cursor unreadable (%s); starting from the current state of GitHub", exc)
            return cls()
