"""What each sensor tick stores: Dagster keeps the cursor in every tick row, and two sensors tick every 3 s."""

from __future__ import annotations

from datetime import UTC, datetime

from sensors.cursor import IntakeCursor

NOW = datetime(2026, 12, 8, 0, 6, tzinfo=UTC)


def _watching(repositories: int) -> IntakeCursor:
    """A cursor of idle repositories as polling leaves them (a start, an ETag, a last poll, nothing pending), one
    with a decided event and one that failed."""
    cursor = IntakeCursor(next_index=7)
    for i in range(repositories):
        repo = cursor.repo(f"someorg/repository-{i}")
        repo.since = repo.floor = "2026-12-08T00:00:00Z"
        repo.etag = 'W/"' + "a" * 64 + '"'
        repo.polled_at = "2026-12-08T00:05:00Z"
    cursor.repo("someorg/repository-0").mark(101, "2026-12-08T00:04:00Z")
    cursor.repo("someorg/repository-1").repository_failed(NOW, "502")
    return cursor


def test_an_idle_repository_costs_the_cursor_only_what_differs_from_a_new_one() -> None:
    """300 idle repositories made a 101 KB cursor, 40% of it fields at their defaults, stored in every tick row."""
    cursor = _watching(300)
    raw = cursor.to_json()
    assert len(raw) < 65_000
    assert IntakeCursor.from_json(raw) == cursor  # read back whole: what was left out are the defaults
