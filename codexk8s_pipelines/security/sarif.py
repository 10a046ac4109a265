"""Scan results as SARIF 2.1.0, the format GitHub code scanning and most CI viewers ingest.

Choices that a consumer will notice:
- one rule per advisory (the alias group's canonical id), with `security-severity` as a numeric string, which is
  what GitHub sorts and filters on; a rating without a score (a GHSA "HIGH" without vector) gets the lower bound
  of its CVSS band, an UNKNOWN severity gets none;
- `partialFingerprints["codexk8sFinding/v1"]` is the finding's own stable fingerprint, so viewers track the alert
  across lockfile edits the same way the platform's dashboard does;
- a stale database, unreadable files and unevaluable advisories are notifications of the one invocation, not
  results: they are about the scan, not about the code.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

from codexk8s_pipelines.security.scan import Finding, ScanResult
from codexk8s_pipelines.security.severity import severity_rank

__all__ = ["FINGERPRINT_KEY", "SARIF_SCHEMA", "SARIF_VERSION", "TOOL_NAME", "to_sarif"]

SARIF_VERSION = "2.1.0"
SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL_NAME = "codexk8s scan"
FINGERPRINT_KEY = "codexk8sFinding/v1"
SRCROOT = "%SRCROOT%"
_LEVELS = {"CRITICAL": "error", "HIGH": "error", "MEDIUM": "warning"}  # LOW, UNKNOWN, NONE: note
_BAND_FLOOR = {"CRITICAL": "9.0", "HIGH": "7.0", "MEDIUM": "4.0", "LOW": "0.1", "NONE": "0.0"}
_COVERAGE_KEYS = ("ecosystem", "dependencies", "checked", "advisories")  # of EcosystemCoverage.to_dict()


def _tool_version() -> str:
    try:
        return importlib.metadata.version("codexk8s-pipelines")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0"


def _security_severity(finding: Finding) -> str | None:
    if finding.severity.score is not None:
        return f"{finding.severity.score:.1f}"
    return _BAND_FLOOR.get(finding.severity.rating)


def _rule(finding: Finding) -> dict[str, Any]:
    properties: dict[str, Any] = {"tags": ["security", "vulnerability", "dependency"]}
    severity = _security_severity(finding)
    if severity is not None:
        properties["security-severity"] = severity
    if finding.aliases:
        properties["aliases"] = list(finding.aliases)
    return {
        "id": finding.advisory_id,
        "name": finding.advisory_id,
        "shortDescription": {"text": finding.summary or finding.advisory_id},
        "helpUri": finding.url,
        "help": {"text": f"{finding.advisory_id}: {finding.summary or 'see the advisory'} ({finding.url})"},
        "properties": properties,
    }


def _message(finding: Finding) -> str:
    also = f" (also known as {', '.join(finding.aliases)})" if finding.aliases else ""
    versions = finding.version + (f" (and {', '.join(finding.other_versions)})" if finding.other_versions else "")
    fix = (
        f"Upgrade to {finding.fixed_version} or later."
        if finding.fixed_version
        else "No fixed version is known: consider replacing or isolating the dependency."
    )
    summary = f": {finding.summary}" if finding.summary else ""
    return (
        f"{finding.ecosystem} package {finding.package} {versions} is affected by {finding.advisory_id}{also}"
        f"{summary.rstrip('.')}. Severity {finding.severity.label()}. {fix}"
    )


def _location(file: str, line: int | None) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": {"uri": file, "uriBaseId": SRCROOT}}
    if line:
        physical["region"] = {"startLine": line}
    return {"physicalLocation": physical}


def _notification(descriptor: str, level: str, text: str, file: str | None = None, line: int | None = None) -> dict:
    note: dict[str, Any] = {"descriptor": {"id": descriptor}, "level": level, "message": {"text": text}}
    if file:
        note["locations"] = [_location(file, line)]
    return note


def to_sarif(result: ScanResult, root: Path) -> dict[str, Any]:
    """One SARIF log with one run. Artifact URIs are the findings' paths relative to `root`, resolved through
    the `%SRCROOT%` base id, so the log stays valid when the checkout moves."""
    rules: list[dict[str, Any]] = []
    rule_index: dict[str, int] = {}
    worst: dict[str, Finding] = {}
    results: list[dict[str, Any]] = []
    for finding in result.findings:
        best = worst.get(finding.advisory_id)
        if best is None or severity_rank(finding.severity) < severity_rank(best.severity):
            worst[finding.advisory_id] = finding
        if finding.advisory_id not in rule_index:
            rule_index[finding.advisory_id] = len(rules)
            rules.append({})
        results.append(
            {
                "ruleId": finding.advisory_id,
                "ruleIndex": rule_index[finding.advisory_id],
                "level": _LEVELS.get(finding.severity.rating, "note"),
                "message": {"text": _message(finding)},
                "locations": [_location(finding.file, finding.line)],
                "partialFingerprints": {FINGERPRINT_KEY: finding.fingerprint},
                "properties": {
                    "package": finding.package,
                    "ecosystem": finding.ecosystem,
                    "version": finding.version,
                    "fixedVersion": finding.fixed_version,
                    "severity": finding.severity.rating,
                    "severitySource": finding.severity.source,
                },
            }
        )
    for advisory_id, index in rule_index.items():
        rules[index] = _rule(worst[advisory_id])

    db = result.database
    notifications: list[dict[str, Any]] = []
    if db.stale_message:
        notifications.append(_notification("osv-database-stale", "warning", db.stale_message))
    for error in result.extraction_errors:
        notifications.append(_notification("extraction-error", "warning", error.message, error.file, error.line))
    for problem in result.matching_errors:
        notifications.append(_notification("advisory-not-evaluated", "note", str(problem)))
    for coverage in result.coverage:
        if coverage.warning:
            notifications.append(_notification("ecosystem-not-covered", "warning", coverage.warning))
    for warning in db.warnings:
        notifications.append(_notification("osv-record-warning", "warning", warning))

    root_uri = Path(root).resolve().as_uri().rstrip("/") + "/"
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": TOOL_NAME,
                "version": _tool_version(),
                "informationUri": "https://osv.dev/",
                "rules": rules,
            }
        },
        "originalUriBaseIds": {SRCROOT: {"uri": root_uri}},
        "invocations": [{"executionSuccessful": True, "toolExecutionNotifications": notifications}],
        "results": results,
        "properties": {
            "dependencies": result.dependencies,
            "unpinned": result.unpinned,
            "coverage": [{key: d[key] for key in _COVERAGE_KEYS} for d in (c.to_dict() for c in result.coverage)],
            "osvDatabase": {
                "records": db.records,
                "snapshot": db.snapshot.isoformat() if db.snapshot else None,
                "stale": db.stale,
            },
        },
    }
    return {"$schema": SARIF_SCHEMA, "version": SARIF_VERSION, "runs": [run]}
