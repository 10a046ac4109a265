"""Scan results as a terminal table or a JSON document (SARIF lives in `sarif.py`).

Both carry the database's staleness warning: a clean report from an old database is the one result that must
not look reassuring.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from codexk8s_pipelines.security.dependencies import Dependency, location
from codexk8s_pipelines.security.scan import Finding, ScanResult

__all__ = ["JSON_FORMAT_VERSION", "coverage_notes", "render_json", "render_table", "result_to_dict"]

# Additions (`coverage`, `warnings`, `dependencies`, `severity.source`, `counts.unpinned_reasons`) keep version 1:
# readers of version 1 still find every key they knew.
JSON_FORMAT_VERSION = 1


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    return {
        "fingerprint": finding.fingerprint,
        "advisory_id": finding.advisory_id,
        "aliases": list(finding.aliases),
        "records": list(finding.records),
        "summary": finding.summary,
        "ecosystem": finding.ecosystem,
        "package": finding.package,
        "version": finding.version,
        "other_versions": list(finding.other_versions),
        "file": finding.file,
        "line": finding.line,
        "severity": {
            "rating": finding.severity.rating,
            "score": finding.severity.score,
            "vector": finding.severity.vector,
            "type": finding.severity.type,
            "error": finding.severity.error,
            "source": finding.severity.source,
        },
        "fixed_version": finding.fixed_version,
        "url": finding.url,
    }


def dependency_to_dict(dep: Dependency) -> dict[str, Any]:
    return {
        "ecosystem": dep.ecosystem,
        "name": dep.name,
        "version": dep.version,
        "file": dep.file,
        "line": dep.line,
        "direct": dep.direct,
        "spec": dep.spec,
        "unpinned_reason": dep.unpinned_reason,
    }


def result_to_dict(result: ScanResult) -> dict[str, Any]:
    """The whole scan as plain JSON types. Keys (format_version 1):

    - `findings`: list, worst first; each has `fingerprint` (stable identity, see `scan.py`), `advisory_id`
      (the alias group's canonical id), `aliases`, `records` (ids of the matching records), `summary`,
      `ecosystem`, `package`, `version`, `other_versions`, `file`, `line` (null when unknown), `severity`
      {`rating`, `score` (null without a CVSS vector), `vector`, `type`, `error`}, `fixed_version` (null when
      no fix is known), `url`;
    - `counts`: `dependencies`, `unpinned`, `unsupported`, `findings`, `by_severity` {rating: count} and
      `unpinned_reasons` {reason: count} (URL and VCS requirements);
    - `coverage`: per ecosystem {`ecosystem`, `dependencies`, `checked`, `unpinned`, `advisories` (records of
      that ecosystem in the database), `supported`, `warning` (null, or why the check says nothing)};
    - `warnings`: every coverage, staleness and record warning, as sentences;
    - `dependencies`: the inventory, [{`ecosystem`, `name`, `version`, `file`, `line`, `direct` (null when the
      file does not say), `spec`, `unpinned_reason`}];
    - `files`: the manifests and lockfiles read;
    - `extraction_errors`: [{`file`, `line`, `message`}]; `matching_errors`: [{`advisory_id`, `ecosystem`,
      `package`, `version`, `message`}];
    - `database`: {`path`, `records`, `withdrawn`, `skipped`, `duplicates`, `errors`, `snapshot` (ISO time or
      null), `snapshot_source`, `age_days`, `max_age_days`, `stale`, `stale_message`}.
    """
    db = result.database
    return {
        "format_version": JSON_FORMAT_VERSION,
        "findings": [finding_to_dict(f) for f in result.findings],
        "counts": {
            "dependencies": result.dependencies,
            "unpinned": result.unpinned,
            "unsupported": result.unsupported,
            "findings": len(result.findings),
            "by_severity": result.by_severity(),
            "unpinned_reasons": result.unpinned_reasons(),
        },
        "coverage": [c.to_dict() for c in result.coverage],
        "warnings": result.warnings(),
        "dependencies": [dependency_to_dict(d) for d in result.inventory],
        "files": list(result.files),
        "extraction_errors": [{"file": e.file, "line": e.line, "message": e.message} for e in result.extraction_errors],
        "matching_errors": [
            {
                "advisory_id": e.advisory_id,
                "ecosystem": e.ecosystem,
                "package": e.package,
                "version": e.version,
                "message": e.message,
            }
            for e in result.matching_errors
        ],
        "database": {
            "path": db.path,
            "records": db.records,
            "withdrawn": db.withdrawn,
            "skipped": db.skipped,
            "duplicates": db.duplicates,
            "errors": db.errors,
            "snapshot": _iso(db.snapshot),
            "snapshot_source": db.snapshot_source,
            "age_days": db.age_days,
            "max_age_days": db.max_age_days,
            "stale": db.stale,
            "stale_message": db.stale_message,
            "future_dated": db.future_dated,
            "warnings": list(db.warnings),
        },
    }


def coverage_notes(result: ScanResult) -> list[str]:
    """The dashboard issue's sentences about coverage: one per ecosystem (dependencies checked against how many
    advisories), then every warning of the scan (an ecosystem checked against none, records dated in the
    future...). The database's staleness is left out: the dashboard words it itself."""
    notes = [c.summary for c in result.coverage]
    stale = result.database.stale_message
    notes += [f"**warning**: {w}" for w in result.warnings() if w != stale]
    return notes


def render_json(result: ScanResult) -> str:
    return json.dumps(result_to_dict(result), indent=2, ensure_ascii=False) + "\n"


def render_table(result: ScanResult) -> str:
    """One row per finding, then a footer: what was scanned, the database, warnings and errors."""
    lines: list[str] = []
    if result.findings:
        header = ("SEVERITY", "PACKAGE", "VERSION", "FIX", "ADVISORY", "LOCATION")
        rows = [
            (
                f.severity.label(),
                f.package,
                f.version + (f" (+{', '.join(f.other_versions)})" if f.other_versions else ""),
                f.fixed_version or "-",
                f.advisory_id,
                location(f.file, f.line),
            )
            for f in result.findings
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        lines.append("")
    breakdown = ", ".join(f"{n} {rating.lower()}" for rating, n in result.by_severity().items())
    found = f"{len(result.findings)} findings" + (f" ({breakdown})" if breakdown else "")
    lines.append(
        f"{found} in {result.dependencies} dependencies scanned"
        f" ({result.unpinned} unpinned, not matched"
        + (f"; {result.unsupported} in unsupported ecosystems" if result.unsupported else "")
        + f") from {len(result.files)} files"
    )
    reasons = result.unpinned_reasons()
    if reasons:
        lines.append("unpinned, not matched: " + "; ".join(f"{n} {reason}" for reason, n in sorted(reasons.items())))
    lines += [f"  {c.summary}" for c in result.coverage]
    db = result.database
    snapshot = db.snapshot.date().isoformat() if db.snapshot else "unknown"
    lines.append(
        f"OSV database {db.path}: {db.records} records, snapshot {snapshot}"
        f" ({db.withdrawn} withdrawn, {db.skipped} other ecosystems, {db.errors} unreadable)"
    )
    lines.extend(f"WARNING: {warning}" for warning in result.warnings())
    if result.extraction_errors:
        lines.append(f"{len(result.extraction_errors)} extraction errors:")
        lines.extend(f"  {error}" for error in result.extraction_errors)
    if result.matching_errors:
        lines.append(f"{len(result.matching_errors)} advisories could not be evaluated:")
        lines.extend(f"  {error}" for error in result.matching_errors)
    return "\n".join(lines) + "\n"
