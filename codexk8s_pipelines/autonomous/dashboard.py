"""One dashboard issue per repository and kind of periodic finding, edited in place.

The body is a pure function of the findings (no "checked at" timestamp), so a run that sees what the last one saw
sends no edit at all: watchers get a notification when something changed, not every night. New findings appear
unchecked, resolved ones are checked off with their date and drop out after the retention window. The issue is
closed when nothing is open and reopened when something comes back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..github.api import RepoApi
from ..store import PlatformStore
from ..store.findings import remember_platform_issue
from .platform_issues import recorded_issue

MARKER = "<!-- codexk8s:dashboard {kind} -->"
MAX_LINES = 200  # GitHub caps an issue body at 65,536 characters; the asset's metadata has the full list
SEVERITY_ORDER = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "NONE": 4, "UNKNOWN": 5}
TITLES = {
    "security": "Security findings",
    "freshness": "Dependency freshness",
    "drift": "Ops drift",
}
SOURCES = {
    "security": "`security_findings` (OSV advisories matched against lockfiles)",
    "freshness": "`dependency_freshness` (latest releases from the package registries)",
    "drift": "`ops_drift` (rendered manifests compared with the live cluster; warn-only, nothing is applied)",
}


@dataclass(frozen=True)
class DashboardOutcome:
    action: str  # created | edited | unchanged | skipped
    issue_number: int | None = None
    url: str | None = None
    state: str | None = None


def issue_title(kind: str) -> str:
    return f"codex-k8s: {TITLES[kind].lower()}"


def _order(row: dict[str, Any]) -> tuple[int, str]:
    return SEVERITY_ORDER.get(str(row.get("severity") or "UNKNOWN").upper(), 6), str(row["title"])


def render_dashboard(
    kind: str,
    repository: str,
    open_rows: Sequence[dict[str, Any]],
    resolved_rows: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    keep_resolved_days: int = 30,
) -> str:
    """The issue body. Rows are `findings` rows (title, severity, resolved_at); notes are stable sentences."""
    lines = [
        MARKER.format(kind=kind),
        f"**{TITLES[kind]}** of `{repository}`, kept up to date by codex-k8s from {SOURCES[kind]}.",
        "This issue is edited in place: new findings are added unchecked, resolved ones are checked off with "
        "their date. Edits by hand are overwritten.",
        "",
        f"**{len(open_rows)} open** · {len(resolved_rows)} resolved in the last {keep_resolved_days} days",
    ]
    if open_rows:
        lines += ["", "### Open"]
        ordered = sorted(open_rows, key=_order)
        lines += [f"- [ ] {row['title']}" for row in ordered[:MAX_LINES]]
        if len(ordered) > MAX_LINES:
            lines.append(f"- … and {len(ordered) - MAX_LINES} more: see the asset's metadata in Dagster")
    if resolved_rows:
        lines += ["", "### Resolved"]
        ordered = sorted(resolved_rows, key=lambda r: (r["resolved_at"], r["title"]), reverse=True)
        lines += [f"- [x] ~~{row['title']}~~ — resolved {row['resolved_at']:%Y-%m-%d}" for row in ordered[:MAX_LINES]]
    if notes:
        lines += ["", "### Notes"]
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def _same(a: str | None, b: str) -> bool:
    return (a or "").replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def sync_dashboard(
    api: RepoApi, store: PlatformStore, repository: str, kind: str, body: str, has_open: bool
) -> DashboardOutcome:
    """Create, edit or leave alone the repository's dashboard issue for `kind`.

    The issue is found through the platform's own record (not a search, which GitHub indexes with a delay); if
    someone deleted or transferred it, a new one is opened and recorded. Nothing is opened while nothing is open.
    """
    purpose = f"dashboard:{kind}"
    issue = recorded_issue(api, store, repository, purpose)
    if issue is None:
        if not has_open:
            return DashboardOutcome("skipped")
        created = api.create_issue(issue_title(kind), body)
        login = str((created.get("user") or {}).get("login") or "")
        remember_platform_issue(store, repository, purpose, int(created["number"]), login)
        return DashboardOutcome("created", int(created["number"]), created.get("html_url"), "open")
    state = "open" if has_open else "closed"
    changes: dict[str, str] = {}
    if not _same(issue.get("body"), body):
        changes["body"] = body
    if issue.get("state") != state:
        changes["state"] = state
    number = int(issue["number"])
    if not changes:
        return DashboardOutcome("unchanged", number, issue.get("html_url"), issue.get("state"))
    edited = api.edit_issue(number, **changes)
    return DashboardOutcome("edited", number, edited.get("html_url"), edited.get("state"))
