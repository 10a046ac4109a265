"""Jobs of the periodic checks: one asset job per check, and `osv_refresh`, which fetches advisories."""

import dagster as dg

from .. import settings
from ..resources import PlatformConfigResource
from .drift import ops_drift
from .freshness import dependency_freshness
from .security import security_findings
from .self_improve import self_improve_evidence

PERIODIC_TAGS = {"codexk8s/kind": "periodic"}

security_scan_job = dg.define_asset_job("security_scan_job", selection=[security_findings], tags=PERIODIC_TAGS)
dependency_freshness_job = dg.define_asset_job(
    "dependency_freshness_job", selection=[dependency_freshness], tags=PERIODIC_TAGS
)
ops_drift_job = dg.define_asset_job("ops_drift_job", selection=[ops_drift], tags=PERIODIC_TAGS)
self_improve_job = dg.define_asset_job("self_improve_job", selection=[self_improve_evidence], tags=PERIODIC_TAGS)


@dg.op(description="Download OSV's all.zip per configured ecosystem into the OSV database directory.")
def fetch_osv_exports(context: dg.OpExecutionContext, platform_config: PlatformConfigResource) -> dict:
    from ..security.refresh import refresh_osv_database

    cfg = platform_config.get().periodic.security
    dest = settings.osv_database_dir(cfg.osv_db)
    result = refresh_osv_database(dest, cfg.ecosystems, base_url=cfg.osv_url)
    summary = {e.ecosystem: (f"{e.records} records" if e.ok else f"failed: {e.error}") for e in result.ecosystems}
    context.add_output_metadata({"dest": str(dest), "ecosystems": dg.MetadataValue.json(summary)})
    for entry in result.failed:
        context.log.warning(f"OSV {entry.ecosystem}: {entry.error}; the previous export is kept")
    if not any(e.ok for e in result.ecosystems):
        raise dg.Failure(
            description=f"no OSV export could be fetched from {cfg.osv_url}; scans keep using {dest} "
            "(reported stale once older than periodic.security.max_age_days)",
            metadata={"errors": dg.MetadataValue.json(summary)},
        )
    return summary


@dg.job(name="osv_refresh", tags=PERIODIC_TAGS, description="Refresh the offline OSV advisory database.")
def osv_refresh_job() -> None:
    fetch_osv_exports()


PERIODIC_ASSETS = [security_findings, dependency_freshness, ops_drift, self_improve_evidence]
PERIODIC_JOBS = [security_scan_job, dependency_freshness_job, ops_drift_job, self_improve_job, osv_refresh_job]
