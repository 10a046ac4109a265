"""Cron schedules of the periodic runs (security scan, freshness, docs index, drift, self-improve).

They belong to issue #6; this function is the one place `definitions` collects them from.
"""

from __future__ import annotations

import dagster as dg


def all_schedules() -> list[dg.ScheduleDefinition]:
    return []
