"""The security check: `osv_database` (the offline advisories) feeds `security_findings` (matched per repository)."""

from .asset import load_osv, security_findings
from .osv_database import OSV_DATABASE, osv_database

__all__ = ["OSV_DATABASE", "load_osv", "osv_database", "security_findings"]
