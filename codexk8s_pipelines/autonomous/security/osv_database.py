"""`osv_database`: the offline OSV advisory database that `security_findings` matches against.

Materialized by `osv_refresh` (daily schedule, or from the UI): from OSV's per-ecosystem `all.zip` exports over
the network, or, on an offline install, from the local directory or zip `periodic.security.osv_source` names.
Its metadata says what the scans will see: the snapshot date, the records per ecosystem, the age.
"""

from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from ... import settings
from ...config.periodic import SecurityScanConfig
from ...resources import PlatformConfigResource
from ..factory import OWNERS, cannot, reporting_cannot

OSV_DATABASE = dg.AssetKey("osv_database")


def offline_hint(dest: Path) -> str:
    """What a user without network access does, in one sentence."""
    return (
        "Offline: download OSV's <Ecosystem>/all.zip exports on a machine with network access, set "
        "periodic.security.osv_source in codexk8s.yaml to their directory (or to one zip), and materialize "
        f"osv_database (job osv_refresh); or point periodic.security.osv_db at an existing database instead of {dest}."
    )


def database_metadata(path: Path, max_age_days: float) -> dict[str, Any]:
    """Snapshot date, records per ecosystem and age of the database at `path`, as asset metadata."""
    from ...security.osv import OsvDatabase

    db = OsvDatabase.load(path, max_age=timedelta(days=max_age_days))
    summary = db.summary()
    per_ecosystem = db.advisories_per_ecosystem()
    return {
        "path": dg.MetadataValue.path(str(path)),
        "records": len(db),
        "records_per_ecosystem": dg.MetadataValue.table(
            records=[dg.TableRecord({"ecosystem": k, "records": v}) for k, v in sorted(per_ecosystem.items())],
            schema=dg.TableSchema(columns=[dg.TableColumn("ecosystem", "string"), dg.TableColumn("records", "int")]),
        ),
        "snapshot": summary.snapshot.date().isoformat() if summary.snapshot else "unknown",
        "age_days": summary.age_days if summary.age_days is not None else float("nan"),
        "stale": summary.stale,
        "unreadable_records": summary.errors,
    }


def _refresh(context: dg.AssetExecutionContext, cfg: SecurityScanConfig, dest: Path) -> dict[str, Any]:
    from ...security.osv import osv_database_present
    from ...security.refresh import OsvSourceError, import_osv_source, refresh_osv_database

    if cfg.osv_source:
        try:
            result = import_osv_source(Path(cfg.osv_source), dest)
        except OsvSourceError as exc:
            cannot(str(exc))
        context.log.info(f"OSV database imported from {cfg.osv_source} into {dest}")
        return {"source": cfg.osv_source}
    had_database = osv_database_present(dest)
    result = refresh_osv_database(dest, cfg.ecosystems, base_url=cfg.osv_url)
    failed = {e.ecosystem: e.error for e in result.failed}
    for ecosystem, error in failed.items():
        kept = "the previous export of this ecosystem is kept" if had_database else "no earlier export exists"
        context.log.warning(f"OSV {ecosystem}: {error}; {kept}")
    if not any(e.ok for e in result.ecosystems):
        if had_database:
            what = f"the database already at {dest} is kept and still used (stale after {cfg.max_age_days:g} days)"
        else:
            what = f"there is no OSV database yet at {dest}, so security_findings cannot run. {offline_hint(dest)}"
        first = next(iter(failed.values()), "no ecosystem configured")
        cannot(
            f"no OSV export could be fetched from {cfg.osv_url} ({first}); {what}",
            errors=dg.MetadataValue.json(failed),
        )
    return {"source": cfg.osv_url, "failed_ecosystems": dg.MetadataValue.json(failed)}


@dg.asset(
    key=OSV_DATABASE,
    group_name="periodic",
    description="The offline OSV advisory database (per-ecosystem all.zip exports or a directory of records) "
    "that security_findings matches against: refreshed from the network, or imported from "
    "periodic.security.osv_source on an offline install.",
    kinds={"file"},
    owners=OWNERS,
)
@reporting_cannot
def osv_database(context: dg.AssetExecutionContext, platform_config: PlatformConfigResource) -> dg.MaterializeResult:
    cfg = platform_config.get().periodic.security
    dest = settings.osv_database_dir(cfg.osv_db)
    metadata = _refresh(context, cfg, dest)
    metadata.update(database_metadata(dest, cfg.max_age_days))
    return dg.MaterializeResult(metadata=metadata)
