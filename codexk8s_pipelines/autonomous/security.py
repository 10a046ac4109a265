"""`security_findings`: OSV advisories matched against a watched repository's lockfiles, kept on a dashboard.

The scanner (`security/`) does the work; this asset loads the offline database, finds the checkout, and hands
the findings to the shared periodic path. Optionally (per repository, off by default) a new critical finding
gets its own issue labelled for the dev stage, so an agent proposes the fix.
"""

from datetime import timedelta
from typing import Any

import dagster as dg

from .. import settings
from ..config.models import PlatformConfig, RepositoryConfig
from ..github.resource import GitHubResource
from ..resources import PlatformConfigResource, PlatformDatabase
from ..security.dependencies import location
from ..store import PlatformStore
from ..store.findings import FindingInput, platform_issue
from .checkouts import checkout
from .partitions import REPOSITORY_PARTITIONS
from .periodic import publish_findings, watched_repository
from .platform_issues import open_labelled_issue


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
    from ..security.osv import format_days

    if not db.stale:
        return None
    snapshot = f"snapshot {db.snapshot:%Y-%m-%d}" if db.snapshot else "snapshot date unknown"
    limit = format_days(db.max_age)
    return (
        f"The OSV database ({snapshot}) is older than {limit}: advisories published since are missing. "
        "Run the `osv_refresh` job (it needs network access to OSV)."
    )


def load_osv(platform: PlatformConfig) -> Any:
    from ..security.osv import OsvDatabase

    cfg = platform.periodic.security
    path = settings.osv_database_dir(cfg.osv_db)
    if not path.exists():
        raise dg.Failure(
            description=f"no OSV database at {path}: run the osv_refresh job, or set periodic.security.osv_db "
            "in codexk8s.yaml to a directory of OSV records"
        )
    db = OsvDatabase.load(path, max_age=timedelta(days=cfg.max_age_days))
    if not db.advisories:
        raise dg.Failure(description=f"the OSV database at {path} has no usable record ({len(db.errors)} errors)")
    return db


@dg.asset(
    name="security_findings",
    partitions_def=REPOSITORY_PARTITIONS,
    group_name="periodic",
    description="OSV advisories (offline database) matched against the repository's lockfiles and manifests; "
    "one dashboard issue per repository, edited in place.",
    kinds={"python", "postgres", "github"},
)
def security_findings(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ..security.scan import scan_path

    platform = platform_config.get()
    repo = watched_repository(platform, context.partition_key)
    db = load_osv(platform)
    root, commit = checkout(repo, github.credentials())
    result = scan_path(root, db)
    broken_files = {e.file for e in result.extraction_errors}
    notes = [n for n in [stale_note(db)] if n]
    notes += [f"`{e}`: not scanned" for e in result.extraction_errors]
    store = platform_db.store()
    metadata, synced = publish_findings(
        context, store=store, github=github, platform=platform, repo=repo, kind="security",
        findings=[finding_input(f) for f in result.findings], notes=notes,
        preserve=lambda details: details.get("file") in broken_files,
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
        }
    )
    if result.findings:
        rows = [f"| {f.severity.label()} | `{f.package}` {f.version} | {f.advisory_id} | {f.fixed_version or '—'} |"
                f" `{f.file}` |" for f in result.findings]  # fmt: skip
        metadata["table"] = dg.MetadataValue.md(
            "| severity | package | advisory | fix | file |\n|---|---|---|---|---|\n" + "\n".join(rows)
        )
    return dg.MaterializeResult(metadata=metadata)


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
