"""The platform database: migrations, runs, the append-only audit trail (`flow_events`) and approvals."""

from .database import PlatformStore
from .embedded import DatabaseUrls, EmbeddedPostgres

__all__ = ["DatabaseUrls", "EmbeddedPostgres", "PlatformStore"]
