"""The OSV database the security scan matches against: present, readable, fresh (or an offline source to
import it from). A fresh install has none until `osv_database` is materialized: said here, with the fix, rather
than by a failed nightly scan."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from .. import settings
from .base import Check, Context, cause, fail, ok, plural, skip, warn

NAME = "periodic.osv_database"


def check_osv(ctx: Context) -> list[Check]:
    try:
        cfg = ctx.config().periodic.security
    except Exception:
        return [skip(NAME, "the configuration does not load (see config)")]
    path = settings.osv_database_dir(cfg.osv_db)
    materialize = "materialize osv_database in the Dagster UI (job osv_refresh)"
    if cfg.osv_source and not Path(cfg.osv_source).expanduser().exists():
        return [
            fail(
                NAME,
                f"periodic.security.osv_source {cfg.osv_source} does not exist",
                "point it at a directory of OSV records or <Ecosystem>/all.zip exports, or at one zip",
            )
        ]
    source = f"from {cfg.osv_source}" if cfg.osv_source else f"from {cfg.osv_url} (needs network access)"
    from ..security.osv import OsvDatabase, osv_database_present

    if not osv_database_present(path):
        return [  # a warning: everything but the security scan works without it
            warn(
                NAME,
                f"no OSV database at {path}: security_findings cannot run",
                f"{materialize} {source}; offline, set periodic.security.osv_source to a local export first",
            )
        ]
    try:
        db = OsvDatabase.load(path, max_age=timedelta(days=cfg.max_age_days))
    except Exception as exc:
        return [fail(NAME, f"the OSV database at {path} cannot be read: {cause(exc)}", f"{materialize} again")]
    if not db.advisories:
        return [fail(NAME, f"the OSV database at {path} has no usable record", f"{materialize} again {source}")]
    snapshot = db.snapshot.date().isoformat() if db.snapshot else "unknown"
    what = f"{plural(len(db), 'record', 'records')} at {path}, snapshot {snapshot}"
    if db.stale:
        return [warn(NAME, f"{what}: {db.staleness_message()}", f"{materialize} {source}")]
    return [ok(NAME, what)]
