"""The platform database: migrations, runs, the append-only audit trail (`flow_events`) and approvals."""

from .database import PlatformStore
from .embedded import DatabaseUrls, EmbeddedPostgres, sigterm_as_interrupt

__all__ = ["DatabaseUrls", "EmbeddedPostgres", "PlatformStore", "sigterm_as_interrupt"]
