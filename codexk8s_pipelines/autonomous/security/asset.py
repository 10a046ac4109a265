"""`security_findings`: OSV advisories matched against a watched repository's lockfiles, kept on a dashboard.

The scanner (`security/`) does the work; this asset loads the offline database, finds the checkout, and hands
the findings to the shared periodic path. Optionally (per repository, off by default) a new critical finding
gets its own issue labelled for the dev stage, so an agent proposes the fix.

Its checks: no open finding at or above `periodic.security.fail_on`, and a database younger than `max_age_days`.
"""

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import dagster as dg

from ... import settings
from ...config.models import PlatformConfig, RepositoryConfig
from ...config.periodic import NO_SEVERE_FINDINGS, OSV_DATABASE_FRESH
from ...github.resource import GitHubResource
from ...resources import PlatformConfigResource, PlatformDatabase
from ...security.dependencies import location
from ...store import PlatformStore
from ...store.findings import FindingInput, platform_issue
from ..dashboard import SEVERITY_ORDER
from ..factory import CHECKOUT, cannot, check_result, open_partition, periodic_asset
from ..periodic import publish_findings
from ..platform_issues import open_labelled_issue
from .osv_database import OSV_DATABASE, offline_hint

if TYPE_CHECKING:  # the security package loads with the scan, not with the code location
    from ...security.osv import DatabaseSummary


def _title(f: Any) -> str:
    where = location(f.file, f.line)
    fix = f"fix: {f.fixed_version}" if f.fixed_version else "no fixed version published"
    summary = " ".join(str(f.summary or "").split())[:120]
    return (
        f"**{f.severity.label()}** `{f.package}` {f.version} · [{f.advisory_id}]({f.url}) {summary} · {fix} · `{where}`"
    )


def finding_input(f: Any) -> FindingInput:
    """A scanner finding as a stored finding: the fingerprint is the scanner's (stable across line moves)."""
    return FindingInput(
        fingerprint=f.fingerprint,
        title=_title(f),
        severity=f.severity.rating,
        details={
            "advisory": f.advisory_id,
            "aliases": list(f.aliases),
            "ecosystem": f.ecosystem,
            "package": f.package,
            "version": f.version,
            "file": f.file,
            "line": f.line,
            "score": f.severity.score,
            "vector": f.severity.vector,
            "fixed_version": f.fixed_version,
            "url": f.url,
        },
    )


def stale_note(db: Any) -> str | None:
    """A sentence that stays the same from one night to the next (no day count), so a stale database alone does
    not edit the dashboard every day."""
    from ...security.osv import format_days

    if not db.stale:
        return None
    snapshot = f"snapshot {db.snapshot:%Y-%m-%d}" if db.snapshot else "snapshot date unknown"
    limit = format_days(db.max_age)
    return (
        f"The OSV database ({snapshot}) is older than {limit}: advisories published since are missing. "
        "Materialize `osv_database` (job `osv_refresh`; it needs network access to OSV, or "
        "`periodic.security.osv_source` pointing at a local export)."
    )


MAX_MATCHING_NOTES = 10  # the rest are counted; the asset's `unevaluated` table lists every one


def matching_notes(errors: Sequence[Any]) -> list[str]:
    """Advisories the scan could not evaluate, as dashboard notes.

    Such an advisory may well apply (PYSEC-2021-371, an RCE in binderhub, has a bound that is not PEP 440), so
    without a note a repository it concerns would look clean. The errors come sorted from the scan, so the same
    ones give the same notes every night; a handful is shown, and the count of the others.
    """
    notes = [
        f"**warning**: advisory `{e.advisory_id}` could not be evaluated for {e.ecosystem} `{e.package}` "
        f"{e.version or '(no version)'}: {e.message}; check it by hand"
        for e in errors[:MAX_MATCHING_NOTES]
    ]
    if len(errors) > MAX_MATCHING_NOTES:
        notes.append(
            f"… and {len(errors) - MAX_MATCHING_NOTES} more advisories could not be evaluated: see the "
            "`unevaluated` table in the asset's metadata in Dagster"
        )
    return notes


def load_osv(platform: PlatformConfig) -> Any:
    from ...security.osv import OsvDatabase, osv_database_present

    cfg = platform.periodic.security
    path = settings.osv_database_dir(cfg.osv_db)
    if not osv_database_present(path):
        cannot(
            f"no OSV database at {path}: materialize osv_database first (job osv_refresh, needs "
            f"network access to {cfg.osv_url}). {offline_hint(path)}"
        )
    db = OsvDatabase.load(path, max_age=timedelta(days=cfg.max_age_days))
    if not db.advisories:
        cannot(
            f"the OSV database at {path} has no usable record ({len(db.errors)} unreadable): "
            f"materialize osv_database again. {offline_hint(path)}"
        )
    return db


@periodic_asset(
    "security_findings",
    description="OSV advisories (offline database) matched against the repository's lockfiles and manifests; "
    "one dashboard issue per repository, edited in place.",
    kinds={"postgres", "github"},
    deps=(CHECKOUT, OSV_DATABASE),
    checks={
        NO_SEVERE_FINDINGS: "No open finding at or above periodic.security.fail_on (default HIGH).",
        OSV_DATABASE_FRESH: "The OSV database the scan used is younger than periodic.security.max_age_days.",
    },
)
def security_findings(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ...security.report import coverage_notes
    from ...security.scan import scan_path

    db = load_osv(platform_config.get())
    run = open_partition(context, platform_db, platform_config).checked_out(github)
    platform, repo, root, commit = run.platform, run.repo, run.root, run.commit
    result = scan_path(root, db)
    broken_files = {e.file for e in result.extraction_errors}
    notes = [n for n in [stale_note(db)] if n]
    notes += coverage_notes(result)  # per ecosystem: dependencies checked against how many advisories
    notes += [f"`{e}`: not scanned" for e in result.extraction_errors]
    notes += matching_notes(result.matching_errors)
    store = run.store
    metadata, synced, open_rows = publish_findings(
        context, store=store, github=github, platform=platform, repo=repo, kind="security",
        findings=[finding_input(f) for f in result.findings], notes=notes,
        preserve=lambda details: details.get("file") in broken_files,
        attention=bool(result.matching_errors),  # an advisory that may apply, unevaluated: a human must look
    )  # fmt: skip
    fixes = _open_fix_issues(context, store, github, platform, repo, synced.new + synced.reopened)
    metadata.update(
        {
            "commit": commit or "",
            "dependencies": result.dependencies,
            "unpinned": result.unpinned,
            "files": dg.MetadataValue.json(result.files),
            "findings": len(result.findings),
            "by_severity": dg.MetadataValue.json(result.by_severity()),
            "osv_records": len(db),
            "osv_stale": db.stale,
            "fix_issues_opened": fixes,
            "matching_errors": len(result.matching_errors),
        }
    )
    if result.findings:
        metadata["table"] = findings_table(result.findings)
    if result.matching_errors:
        metadata["unevaluated"] = unevaluated_table(result.matching_errors)
    checks = [severe_check(platform, open_rows), fresh_check(platform, result.database)]
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def findings_table(findings: list[Any]) -> dg.TableMetadataValue:
    columns = ("severity", "score", "package", "version", "advisory", "fix", "file")
    types = {"score": "float"}
    records = [
        dg.TableRecord(
            {
                "severity": f.severity.label(),
                "score": float(f.severity.score) if f.severity.score is not None else None,
                "package": f.package,
                "version": f.version,
                "advisory": f.advisory_id,
                "fix": f.fixed_version or "",
                "file": location(f.file, f.line),
            }
        )
        for f in findings
    ]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, types.get(c, "string")) for c in columns])
    return dg.MetadataValue.table(records=records, schema=schema)


def unevaluated_table(errors: Sequence[Any]) -> dg.TableMetadataValue:
    """Every advisory that could not be evaluated, with why: the dashboard shows only the first few."""
    columns = ("advisory", "ecosystem", "package", "version", "reason")
    records = [
        dg.TableRecord(
            {
                "advisory": e.advisory_id,
                "ecosystem": e.ecosystem,
                "package": e.package,
                "version": e.version or "",
                "reason": e.message,
            }
        )
        for e in errors
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


def severe_check(platform: PlatformConfig, open_rows: list[dict[str, Any]]) -> dg.AssetCheckResult:
    """Open findings (the preserved ones too: a file that broke is not a fix) at or above the threshold."""
    threshold = platform.periodic.security.fail_on
    limit = SEVERITY_ORDER[threshold]
    severe = [r for r in open_rows if SEVERITY_ORDER.get(str(r.get("severity") or "UNKNOWN").upper(), 9) <= limit]
    counts: dict[str, int] = {}
    for row in severe:
        counts[str(row["severity"]).upper()] = counts.get(str(row["severity"]).upper(), 0) + 1
    if severe:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items(), key=lambda kv: SEVERITY_ORDER[kv[0]]))
        text = f"{len(severe)} open finding(s) at or above {threshold}: {summary}"
    else:
        text = f"no open finding at or above {threshold} ({len(open_rows)} open below it)"
    return check_result(
        platform, NO_SEVERE_FINDINGS, not severe, text, threshold=threshold, open_at_or_above=len(severe)
    )


def fresh_check(platform: PlatformConfig, database: "DatabaseSummary") -> dg.AssetCheckResult:
    """The OSV database the scan used, from the scan's own summary of it."""
    limit = float(platform.periodic.security.max_age_days)
    snapshot = database.snapshot.date().isoformat() if database.snapshot else "unknown"
    if database.stale:
        text = (database.stale_message or "the OSV database is stale") + ": materialize osv_database"
    else:
        text = f"snapshot {snapshot}, {database.age_days:g} days old (limit {limit:g})"
    return check_result(
        platform,
        OSV_DATABASE_FRESH,
        not database.stale,
        text,
        snapshot=snapshot,
        age_days=database.age_days,
        max_age_days=limit,
    )


def _open_fix_issues(
    context: dg.AssetExecutionContext,
    store: PlatformStore,
    github: GitHubResource,
    platform: PlatformConfig,
    repo: RepositoryConfig,
    appeared: list[dict[str, Any]],
) -> int:
    """With `policy.fix_critical`, one issue per critical finding that appeared, labelled for the dev stage."""
    if not repo.policy.fix_critical or repo.github is None or not github.credentials().configured:
        return 0
    label = platform.label_scheme().run_label("dev", False)
    api = github.repo_api(repo.github)
    opened = 0
    for row in appeared:
        if str(row.get("severity") or "").upper() != "CRITICAL":
            continue
        purpose = f"fix:{row['fingerprint']}"
        if platform_issue(store, repo.key.lower(), purpose) is not None:
            continue  # a finding that comes back is not fixed twice by the platform; its issue exists
        d = row["details"]
        title = f"Fix {d.get('advisory')} in {d.get('package')} {d.get('version')} (critical)"
        fix = f"upgrade to {d['fixed_version']}" if d.get("fixed_version") else "no fixed version is published yet"
        body = (
            f"The nightly security scan found a **critical** advisory:\n\n- {row['title']}\n\n"
            f"Suggested change: {fix} in `{d.get('file')}`, then regenerate the lockfile and run the tests.\n\n"
            f"Opened by codex-k8s because `policy.fix_critical` is on for `{repo.key}`."
        )
        number = open_labelled_issue(api, store, repo.key.lower(), purpose, title, body, label)
        context.log.info(f"{repo.key}: opened fix issue #{number} for {d.get('advisory')}")
        opened += 1
    return opened
