"""`dependency_freshness`: how far each dependency is behind its registry's latest release, in libyears.

An outdated dependency is a finding (one per package and ecosystem: bumping it to another old version keeps
the same finding, with a new title); the full table and a libyear plot are in the materialisation metadata.

Its checks: every dependency was answered for (registry errors fail it and name the registries), and the total
libyears stay under `periodic.freshness.libyear_budget`.
"""

import hashlib
import re
from typing import Any

import dagster as dg

from ...config.models import PlatformConfig
from ...config.periodic import ALL_DEPENDENCIES_CHECKED, LIBYEARS_WITHIN_BUDGET
from ...github.resource import GitHubResource
from ...insight.plots import markdown_image, save_plot
from ...resources import PlatformConfigResource, PlatformDatabase
from ...store.findings import FindingInput
from ..factory import check_result, open_partition, periodic_asset
from ..periodic import publish_findings


def fingerprint(ecosystem: str, name: str) -> str:
    return hashlib.sha256("\0".join(("freshness", ecosystem, name)).encode()).hexdigest()


def finding_input(row: Any) -> FindingInput:
    behind = row.behind
    severity = "MEDIUM" if behind is not None and behind.major else "LOW"
    years = f"{row.libyear:.1f} libyears" if row.libyear is not None else "release dates unknown"
    files = ", ".join(f"`{f}`" for f in row.files[:3]) + (" …" if len(row.files) > 3 else "")
    return FindingInput(
        fingerprint=fingerprint(row.ecosystem, row.name),
        title=f"`{row.name}` ({row.ecosystem}) {row.version} → {row.latest} · {behind} behind · {years} · {files}",
        severity=severity,
        details={
            "ecosystem": row.ecosystem,
            "package": row.name,
            "version": row.version,
            "latest": row.latest,
            "libyear": row.libyear,
            "behind": str(behind),
            "files": list(row.files),
        },
    )


def _table(frame: Any) -> dg.TableMetadataValue:
    columns = [c for c in ("ecosystem", "name", "version", "latest", "status", "libyear") if c in frame.columns]
    records = []
    for values in frame[columns].itertuples(index=False):
        cells = {}
        for col, value in zip(columns, values, strict=True):
            cells[col] = (
                None if value is None or value != value else (round(value, 3) if col == "libyear" else str(value))
            )
        records.append(dg.TableRecord(cells))
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "float" if c == "libyear" else "string") for c in columns])
    return dg.MetadataValue.table(records=records, schema=schema)


@periodic_asset(
    "dependency_freshness",
    description="Latest releases from PyPI, npm, the Go proxy and crates.io against the repository's lockfiles: "
    "versions behind and libyears; outdated dependencies on a dashboard issue.",
    kinds={"postgres", "github"},
    checks={
        ALL_DEPENDENCIES_CHECKED: "Every dependency was answered for by its registry and every lockfile could be read.",
        LIBYEARS_WITHIN_BUDGET: "Total libyears under periodic.freshness.libyear_budget.",
    },
)
def dependency_freshness(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ...freshness.check import check_freshness
    from ...freshness.registries import RegistryUrls
    from ...security.lockfiles import extract_dependencies

    run = open_partition(context, platform_db, platform_config).checked_out(github)
    platform, repo, root, commit = run.platform, run.repo, run.root, run.commit
    cfg = platform.periodic.freshness
    extraction = extract_dependencies(root)
    registries = RegistryUrls(
        pypi=cfg.pypi_url, npm=cfg.npm_url, go=cfg.go_proxy_url, crates=cfg.crates_url, maven=cfg.maven_url,
        rubygems=cfg.rubygems_url, packagist=cfg.packagist_url, nuget=cfg.nuget_url, pub=cfg.pub_url, hex=cfg.hex_url,
    )  # fmt: skip
    report = check_freshness(
        extraction.dependencies, registries=registries, workers=cfg.workers, deadline=cfg.deadline_seconds,
        max_bytes=int(cfg.max_answer_mb * 1024 * 1024),
    )  # fmt: skip
    outdated = [r for r in report.rows if r.outdated and (r.libyear is None or r.libyear >= cfg.min_libyear)]
    # A package the registry did not answer for (or whose lockfile broke) keeps its finding until it is asked.
    unanswered = {(e.ecosystem, e.name) for e in report.errors}
    broken_files = {e.file for e in extraction.errors}
    notes = [f"`{e}`: not checked" for e in extraction.errors]
    notes += [f"{e.ecosystem} `{e.name}`: {e.reason}" for e in report.errors]

    def preserve(details: Any) -> bool:
        files = set(details.get("files") or [])
        return (details.get("ecosystem"), details.get("package")) in unanswered or bool(files & broken_files)

    metadata, _, _ = publish_findings(
        context,
        store=run.store,
        github=github,
        platform=platform,
        repo=repo,
        kind="freshness",
        findings=[finding_input(r) for r in outdated],
        notes=notes,
        preserve=preserve,
    )
    totals = report.totals
    metadata.update(
        {
            "commit": commit or "",
            "dependencies": totals.dependencies,
            "checked": totals.dependencies - totals.errors,
            "outdated": totals.outdated,
            "unpinned": totals.unpinned,
            "registry_errors": totals.errors,
            "libyear_total": float(round(totals.libyear, 3)),
            "by_ecosystem": dg.MetadataValue.json(
                {
                    k: {"dependencies": v.dependencies, "outdated": v.outdated, "libyear": round(v.libyear, 3)}
                    for k, v in totals.by_ecosystem.items()
                }
            ),
        }
    )
    frame = report.frame()
    if len(frame):
        metadata["table"] = _table(frame)
    if report.errors:
        metadata["unchecked"] = _errors_table(report.errors)
    checks = [all_checked(platform, report, extraction.errors), budget_check(platform, report)]
    if outdated:
        png = report.plot_png()
        # One file per repository, replaced by each run: the metadata above keeps every run's own copy, and a
        # file per run would grow the state directory by one image per repository a week, forever.
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", repo.key).strip("-.")[:80]
        path = save_plot(f"libyear-{slug}-{hashlib.sha256(repo.key.encode()).hexdigest()[:8]}.png", png)
        metadata["libyear_plot"] = dg.MetadataValue.path(str(path))
        # The same image rendered in the UI's metadata view (its Markdown viewer shows data: images).
        metadata["libyear_plot_image"] = dg.MetadataValue.md(markdown_image(png, "libyear per dependency"))
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


def _errors_table(errors: Any) -> dg.TableMetadataValue:
    columns = ("registry", "ecosystem", "package", "reason")
    records = [
        dg.TableRecord({"registry": e.registry, "ecosystem": e.ecosystem, "package": e.name, "reason": e.reason})
        for e in errors
    ]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=[dg.TableColumn(c) for c in columns]))


def all_checked(platform: PlatformConfig, report: Any, extraction_errors: Any) -> dg.AssetCheckResult:
    """Fails when a registry did not answer (naming the registries and why) or a lockfile could not be read."""
    totals = report.totals
    by_registry: dict[str, list[Any]] = {}
    for error in report.errors:
        by_registry.setdefault(error.registry, []).append(error)
    parts = [
        f"{registry}: {len(items)} unanswered ({items[0].reason})" for registry, items in sorted(by_registry.items())
    ]
    parts += [f"{e.file}: not read" for e in extraction_errors]
    if not parts:
        text = f"all {totals.dependencies} dependencies checked"
    elif totals.errors and totals.errors >= totals.dependencies:
        text = f"nothing could be checked: {'; '.join(parts)}"
    else:
        text = f"{totals.dependencies - totals.errors} of {totals.dependencies} checked; {'; '.join(parts)}"
    return check_result(
        platform, ALL_DEPENDENCIES_CHECKED, not parts, text, registries=dg.MetadataValue.json(sorted(by_registry)),
        unanswered=totals.errors, unreadable_files=len(extraction_errors),
    )  # fmt: skip


def budget_check(platform: PlatformConfig, report: Any) -> dg.AssetCheckResult:
    budget = float(platform.periodic.freshness.libyear_budget)
    total = float(round(report.totals.libyear, 3))
    totals = report.totals
    if totals.dependencies and totals.errors >= totals.dependencies:  # 0 libyears of nothing is not "within"
        text = f"unknown: no dependency could be checked (budget {budget:g})"
        return check_result(platform, LIBYEARS_WITHIN_BUDGET, False, text, libyear_total=None, budget=budget)
    text = f"{total:g} libyears of a budget of {budget:g}"
    if report.errors:
        text += f" ({report.totals.errors} dependencies unanswered are not counted)"
    return check_result(platform, LIBYEARS_WITHIN_BUDGET, total <= budget, text, libyear_total=total, budget=budget)
