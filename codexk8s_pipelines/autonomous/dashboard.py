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
MAX_LINES = 200  # rows per section: a list longer than this is not read anyway; the asset's metadata has all
# GitHub rejects an issue body over 65,536 characters, and a rejected edit leaves the dashboard stale for good. The
# whole body is held to this budget (measured in UTF-8 bytes, never fewer than characters, so a title full of
# non-ASCII text cannot push it over), with room to spare for line endings GitHub may rewrite to CRLF.
MAX_BODY_CHARS = 60_000
# One row or note never takes more than this: a single pathological title must not crowd out the rest.
MAX_ITEM_CHARS = 2_000
SEVERITY_ORDER = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "NONE": 4, "UNKNOWN": 5}
TITLES = {
    "security": "Security findings",
    "freshness": "Dependency freshness",
    "drift": "Ops drift",
}
# The asset that keeps each dashboard: its metadata in Dagster has what the issue body has no room for.
ASSETS = {"security": "security_findings", "freshness": "dependency_freshness", "drift": "ops_drift"}
SOURCES = {
    "security": f"`{ASSETS['security']}` (OSV advisories matched against lockfiles)",
    "freshness": f"`{ASSETS['freshness']}` (latest releases from the package registries)",
    "drift": f"`{ASSETS['drift']}` (rendered manifests compared with the live cluster; warn-only, nothing is applied)",
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


def _size(text: str) -> int:
    """What a line costs against the budget, newline included: UTF-8 bytes bound GitHub's count from above."""
    return len(text.encode("utf-8")) + 1


def _clip(line: str) -> str:
    """A line cut to `MAX_ITEM_CHARS` bytes (on a character boundary), marked as cut."""
    data = line.encode("utf-8")
    if len(data) <= MAX_ITEM_CHARS:
        return line
    return data[: MAX_ITEM_CHARS - 4].decode("utf-8", errors="ignore") + " …"


def _more(kind: str, section: str, left_out: int) -> str:
    """The line that stands for what a section leaves out, and where the whole list is."""
    what = "more notes" if section == "Notes" else "more"
    return f"- … and {left_out} {what}: see the `{ASSETS[kind]}` asset's metadata in Dagster"


def render_dashboard(
    kind: str,
    repository: str,
    open_rows: Sequence[dict[str, Any]],
    resolved_rows: Sequence[dict[str, Any]],
    notes: Sequence[str] = (),
    keep_resolved_days: int = 30,
) -> str:
    """The issue body. Rows are `findings` rows (title, severity, resolved_at); notes are stable sentences.

    The body never exceeds `MAX_BODY_CHARS`: GitHub refuses a longer one, and then the dashboard would never be
    updated again. What fits is kept in order of importance (open findings, most severe first; then resolved
    ones, latest first; then notes), and each section that lost something says how many and where to see all.
    """
    header = [
        MARKER.format(kind=kind),
        f"**{TITLES[kind]}** of `{repository}`, kept up to date by codex-k8s from {SOURCES[kind]}.",
        "This issue is edited in place: new findings are added unchecked, resolved ones are checked off with "
        "their date. Edits by hand are overwritten.",
        "",
        f"**{len(open_rows)} open** · {len(resolved_rows)} resolved in the last {keep_resolved_days} days",
    ]
    open_sorted = sorted(open_rows, key=_order)
    resolved_sorted = sorted(resolved_rows, key=lambda r: (r["resolved_at"], r["title"]), reverse=True)
    sections = [
        ("Open", len(open_sorted), [_clip(f"- [ ] {row['title']}") for row in open_sorted[:MAX_LINES]]),
        (
            "Resolved",
            len(resolved_sorted),
            [
                _clip(f"- [x] ~~{row['title']}~~ — resolved {row['resolved_at']:%Y-%m-%d}")
                for row in resolved_sorted[:MAX_LINES]
            ],
        ),
        ("Notes", len(notes), [_clip(f"- {note}") for note in notes]),
    ]
    sections = [s for s in sections if s[1]]
    # Headings and a possible "… and K more" line per section are paid for up front (K at its largest), so the
    # rows can take everything else in order and the body still fits whatever is left out.
    fixed = sum(_size(line) for line in header)
    fixed += sum(_size("") + _size(f"### {name}") + _size(_more(kind, name, total)) for name, total, _ in sections)
    room = MAX_BODY_CHARS - fixed
    lines = list(header)
    full = False
    for name, total, candidates in sections:
        lines += ["", f"### {name}"]
        shown = 0
        for line in candidates:
            if full or _size(line) > room:
                full = True  # strictly by importance: nothing after a row that did not fit gets in
                break
            lines.append(line)
            room -= _size(line)
            shown += 1
        if shown < total:
            lines.append(_more(kind, name, total - shown))
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
