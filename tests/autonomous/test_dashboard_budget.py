"""The dashboard body stays under GitHub's 65,536-character limit, whatever the findings: a refused edit would
leave the issue stale for good. What fits is kept by importance and the rest is counted, with where to see it."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from codexk8s_pipelines.autonomous.dashboard import MAX_BODY_CHARS, MAX_ITEM_CHARS, MAX_LINES, render_dashboard

REPO = "acme/shop"
T0 = datetime(2026, 11, 20, 2, 23, tzinfo=UTC)
GITHUB_LIMIT = 65_536
SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
MARKER = "<!-- codexk8s:dashboard security -->"


def _title(i: int, severity: str) -> str:
    """About as long as a real security finding's title (~280 characters)."""
    return (
        f"**{severity} 8.1** `pkg{i:04d}` 1.24.1 · [CVE-2023-{i:05d}](https://github.com/acme/pkg/security/"
        f"advisories/GHSA-v845-jxx5-{i:04d}) pkg is a user-friendly HTTP client library for Python. It does not "
        f"treat the `Cookie` header specially or provide · fix: 1.26.17 · `requirements.txt:{i}`"
    )


def _rows(count: int, start: int = 0, resolved: bool = False) -> list[dict]:
    return [
        {
            "title": _title(i, SEVERITIES[i % len(SEVERITIES)]),
            "severity": SEVERITIES[i % len(SEVERITIES)],
            "resolved_at": T0 - timedelta(days=i % 20) if resolved else None,
        }
        for i in range(start, start + count)
    ]


def _notes(count: int) -> list[str]:
    return [
        f"`lockfiles/{i:03d}/poetry.lock` line 12: unexpected character, not scanned " + "x" * 150 for i in range(count)
    ]


def _section(body: str, name: str) -> list[str]:
    """The lines of one `### name` section."""
    part = body.split(f"### {name}\n", 1)[1]
    return part.split("\n\n", 1)[0].splitlines()


def _left_out(lines: list[str]) -> int:
    found = [re.match(r"- … and (\d+) more", x) for x in lines]
    counts = [int(m.group(1)) for m in found if m]
    assert len(counts) <= 1
    return counts[0] if counts else 0


def test_400_long_findings_and_100_notes_fit_in_an_issue_body() -> None:
    # The old renderer: 200 open rows of ~280 characters, 200 resolved ones and every note, ~130k characters.
    body = render_dashboard("security", REPO, _rows(400), [], notes=_notes(100))
    assert len(body) <= GITHUB_LIMIT
    body = render_dashboard("security", REPO, _rows(200), _rows(200, 200, resolved=True), notes=_notes(100))
    assert len(body) <= GITHUB_LIMIT and len(body.encode("utf-8")) <= GITHUB_LIMIT


def test_a_long_dashboard_keeps_the_marker_and_the_most_severe_open_findings_and_counts_the_rest() -> None:
    open_rows, resolved_rows, notes = _rows(300), _rows(250, 300, resolved=True), _notes(100)
    body = render_dashboard("security", REPO, open_rows, resolved_rows, notes=notes)

    assert len(body.encode("utf-8")) <= MAX_BODY_CHARS < GITHUB_LIMIT
    assert body.splitlines()[0] == MARKER  # how the dashboard is recognised stays first
    assert "**300 open** · 250 resolved in the last 30 days" in body  # the totals are the real ones
    # Open findings come first, most severe first: no lower-severity row before a higher one.
    shown_open = [x for x in _section(body, "Open") if x.startswith("- [ ]")]
    assert shown_open and body.index("### Open") < body.index("### Resolved") < body.index("### Notes")
    ranks = [next(i for i, s in enumerate(SEVERITIES) if f"**{s} " in x) for x in shown_open]
    assert ranks == sorted(ranks) and ranks[0] == 0
    # What is not shown is counted, section by section, with where to see all of it.
    assert _left_out(_section(body, "Open")) == 300 - len(shown_open)
    shown_resolved = [x for x in _section(body, "Resolved") if x.startswith("- [x]")]
    assert _left_out(_section(body, "Resolved")) == 250 - len(shown_resolved)
    shown_notes = [x for x in _section(body, "Notes") if not x.startswith("- … and")]
    assert _left_out(_section(body, "Notes")) == 100 - len(shown_notes)
    assert "the `security_findings` asset's metadata in Dagster" in body


def test_nothing_less_important_gets_in_while_an_open_finding_is_left_out() -> None:
    longer = [dict(row, title=row["title"] + " · " + "w" * 60) for row in _rows(MAX_LINES)]
    body = render_dashboard("security", REPO, longer, _rows(20, 500, resolved=True), notes=_notes(3))
    shown_open = [x for x in _section(body, "Open") if x.startswith("- [ ]")]
    assert len(shown_open) < MAX_LINES  # 200 rows of ~340 characters do not fit
    assert f"- … and {MAX_LINES - len(shown_open)} more: see" in body
    assert not any(x.startswith("- [x]") for x in body.splitlines())
    assert "- … and 20 more: see the `security_findings` asset's metadata" in body
    assert "- … and 3 more notes: see the `security_findings` asset's metadata" in body


def test_a_dashboard_that_fits_is_shown_whole() -> None:
    body = render_dashboard("drift", REPO, _rows(20), _rows(20, 20, resolved=True), notes=_notes(20))
    assert "… and" not in body
    assert sum(1 for x in body.splitlines() if x.startswith(("- [ ]", "- [x]"))) == 40


def test_non_ascii_titles_and_one_huge_note_still_fit() -> None:
    # GitHub may count bytes: three-byte characters must not push the body over the limit.
    wide = [dict(row, title=row["title"] + " " + "漏洞" * 100) for row in _rows(400)]
    body = render_dashboard("security", REPO, wide, [], notes=["y" * 100_000])
    assert len(body.encode("utf-8")) <= MAX_BODY_CHARS
    huge = render_dashboard("freshness", REPO, [], [], notes=["z" * 100_000, "after it"])
    assert all(len(x.encode("utf-8")) <= MAX_ITEM_CHARS for x in huge.splitlines())
    assert "- after it" in huge  # one note cut short, not the ones after it crowded out
