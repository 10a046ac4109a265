"""GitHub polling sensors: they decide, through the domain's trigger decisions, which stage runs start.

The GitHub-driven sensors (issue labels, PR labels and reviews) belong to issue #3; until they land the code
location has none, and this function is the one place `definitions` collects them from.
"""

from __future__ import annotations

import dagster as dg


def all_sensors() -> list[dg.SensorDefinition]:
    return []
