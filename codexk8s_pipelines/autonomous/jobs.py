"""The jobs of the periodic checks, derived from `registry.PERIODIC_CHECKS`; named here for importers."""

from .registry import ASSETS, JOBS, PERIODIC_CHECKS, PERIODIC_TAGS

security_scan_job = JOBS["security_scan_job"]
dependency_freshness_job = JOBS["dependency_freshness_job"]
ops_drift_job = JOBS["ops_drift_job"]
self_improve_job = JOBS["self_improve_job"]
osv_refresh_job = JOBS["osv_refresh"]
docs_index_job = JOBS["docs_index_job"]

PERIODIC_ASSETS = ASSETS
PERIODIC_JOBS = list(JOBS.values())

__all__ = [
    "PERIODIC_ASSETS",
    "PERIODIC_CHECKS",
    "PERIODIC_JOBS",
    "PERIODIC_TAGS",
    "dependency_freshness_job",
    "docs_index_job",
    "ops_drift_job",
    "osv_refresh_job",
    "security_scan_job",
    "self_improve_job",
]
