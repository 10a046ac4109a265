"""What one sensor tick may spend, and in which order its repositories take turns.

Dagster gives a sensor evaluation 60 s. A tick that overruns is discarded together with its cursor, so the next tick
would repeat the same work and overrun again. The sensors that do network work per repository (GitHub intake,
the docs sensor's `git ls-remote`) therefore stop starting work after TICK_BUDGET_SECONDS, keep the rest of the
minute for launching their run requests, and let the next tick start where this one stopped. The GitHub intake
also stops waiting for repositories still being read TICK_GRACE_SECONDS after the budget.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

TICK_SECONDS = 60.0
TICK_BUDGET_SECONDS = 40.0
# How long past the budget a tick waits for repositories it already started: an item being decided finishes, a
# repository slower than that is left for the next tick and the tick still ends well within Dagster's minute.
TICK_GRACE_SECONDS = 10.0


def rotated(items: Sequence[T], start: int) -> list[T]:
    """`items` in round-robin order from position `start` (taken modulo their number): the one the last tick did not
    reach goes first."""
    if not items:
        return []
    start %= len(items)
    return [*items[start:], *items[:start]]
