"""The hourly docs index, as the registry derives it (the code location collects it with the other checks)."""

from codexk8s_pipelines.autonomous.registry import DOCS_INDEX_CRON, PERIODIC_CHECKS
from codexk8s_pipelines.config.models import PlatformConfig

from .periodic import schedule_for

docs_index_hourly = schedule_for(
    next(c for c in PERIODIC_CHECKS if c.schedule == "docs_index_hourly"), PlatformConfig()
)

__all__ = ["DOCS_INDEX_CRON", "docs_index_hourly"]
