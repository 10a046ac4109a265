"""The platform database: migrations, runs, the append-only audit trail (`flow_events`) and approvals."""

from .database import PlatformStore
from .embedded import EmbeddedPostgres

__all__ = ["EmbeddedPostgres", "PlatformStore"]
