"""The freshness report for people and programs: a pandas table, a libyear chart, text, Markdown and JSON.

Kept apart from the check so that checking stays free of pandas and matplotlib; they load only when a report is
drawn. The chart uses matplotlib's object API on an Agg canvas, never pyplot: no display is needed, no global
backend is switched under the caller's feet, and charts can be drawn from several threads (Dagster assets).
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .check import UNPINNED

if TYPE_CHECKING:
    import pandas as pd

    from .check import FreshnessReport, FreshnessRow

# One row per FreshnessRow, in the report's order (libyear, highest first). Missing values are pandas' NA:
# `version` for unpinned rows, `latest` when there is no stable release, the behind counts and libyear when they
# cannot be measured.
FRAME_COLUMNS: dict[str, str] = {
    "ecosystem": "str",  # PyPI, npm, Go, crates.io
    "name": "str",
    "version": "str",  # the used version
    "latest": "str",  # the latest stable, unyanked release
    "status": "str",  # up-to-date, outdated, unpinned
    "used_released": "datetime64[us, UTC]",
    "latest_released": "datetime64[us, UTC]",
    "major_behind": "Int64",
    "minor_behind": "Int64",
    "patch_behind": "Int64",
    "libyear": "float64",
    "direct": "boolean",  # declared in a manifest (True), only locked (False), unknown (NA)
    "files": "str",  # every file that declares or locks it, "; "-separated
    "notes": "str",  # yanked, dist-tag disagreement, unknown dates…, "; "-separated
}

PLOT_TOP = 30


def to_frame(report: FreshnessReport) -> pd.DataFrame:
    """Typed columns (`FRAME_COLUMNS`) even when empty, so callers can filter and sum without checking first.
    Registry errors are not rows here: they have nothing to measure (`report.errors` lists them)."""
    import pandas as pd

    def behind(row: FreshnessRow, part: int) -> int | None:
        return None if row.behind is None else row.behind[part]

    data: dict[str, list[Any]] = {
        "ecosystem": [r.ecosystem for r in report.rows],
        "name": [r.name for r in report.rows],
        "version": [r.version for r in report.rows],
        "latest": [r.latest for r in report.rows],
        "status": [r.status for r in report.rows],
        "used_released": [r.used_released for r in report.rows],
        "latest_released": [r.latest_released for r in report.rows],
        "major_behind": [behind(r, 0) for r in report.rows],
        "minor_behind": [behind(r, 1) for r in report.rows],
        "patch_behind": [behind(r, 2) for r in report.rows],
        "libyear": [r.libyear for r in report.rows],
        "direct": [r.direct for r in report.rows],
        "files": ["; ".join(r.files) for r in report.rows],
        "notes": ["; ".join(r.notes) for r in report.rows],
    }
    columns: dict[str, pd.Series] = {}
    for column, dtype in FRAME_COLUMNS.items():
        values = data[column]
        if dtype.startswith("datetime64"):
            columns[column] = pd.Series(pd.to_datetime(values, utc=True), dtype=dtype)
        else:
            columns[column] = pd.Series(values, dtype=dtype)
    return pd.DataFrame(columns)


def _label(row: FreshnessRow) -> str:
    return f"{row.name} {row.version} → {row.latest} ({row.ecosystem})"


def plot_png(report: FreshnessReport, top: int = PLOT_TOP) -> bytes:
    """Libyear per outdated dependency, the largest on top; beyond `top` bars a note says how many were cut,
    so a long tail never makes the chart unreadable or silently partial."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    measured = sorted((r for r in report.rows if r.libyear), key=lambda r: (-(r.libyear or 0.0), r.ecosystem, r.name))
    shown = measured[:top]
    figure = Figure(figsize=(9, max(2.5, 0.32 * len(shown) + 1.6)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    totals = report.totals
    if shown:
        labels = [_label(r) for r in reversed(shown)]
        values = [r.libyear or 0.0 for r in reversed(shown)]
        bars = axes.barh(labels, values, color="#d9822b")
        axes.bar_label(bars, labels=[f"{v:.2f}" for v in values], padding=3, fontsize=8)
        axes.set_xlabel("libyear (years between the used and the latest release)")
        axes.tick_params(axis="y", labelsize=8)
        axes.margins(x=0.12, y=0.01)
        title = f"Dependency freshness: {totals.libyear:.2f} libyears over {totals.outdated} outdated"
        if len(measured) > len(shown):
            title += f"\ntop {len(shown)} of {len(measured)} shown; {len(measured) - len(shown)} more not shown"
        axes.set_title(title)
    else:
        axes.set_axis_off()
        axes.text(0.5, 0.5, "No dependency is behind its latest release", ha="center", va="center")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def to_dict(report: FreshnessReport) -> dict[str, Any]:
    """Plain JSON types; dates are ISO 8601 in UTC, libyear unrounded."""
    totals = report.totals
    return {
        "checked_at": _iso(report.checked_at),
        "totals": {
            "dependencies": totals.dependencies,
            "outdated": totals.outdated,
            "up_to_date": totals.up_to_date,
            "unpinned": totals.unpinned,
            "errors": totals.errors,
            "libyear": totals.libyear,
            "by_ecosystem": {
                eco: {"dependencies": t.dependencies, "outdated": t.outdated, "libyear": t.libyear}
                for eco, t in totals.by_ecosystem.items()
            },
        },
        "rows": [
            {
                "ecosystem": r.ecosystem,
                "name": r.name,
                "version": r.version,
                "latest": r.latest,
                "status": r.status,
                "used_released": _iso(r.used_released),
                "latest_released": _iso(r.latest_released),
                "behind": r.behind._asdict() if r.behind is not None else None,
                "libyear": r.libyear,
                "direct": r.direct,
                "spec": r.spec,
                "files": list(r.files),
                "notes": list(r.notes),
            }
            for r in report.rows
        ],
        "errors": [
            {
                "ecosystem": e.ecosystem,
                "name": e.name,
                "version": e.version,
                "registry": e.registry,
                "reason": e.reason,
                "files": list(e.files),
            }
            for e in report.errors
        ],
    }


def render_json(report: FreshnessReport) -> str:
    return json.dumps(to_dict(report), indent=2, ensure_ascii=False)


def totals_line(report: FreshnessReport) -> str:
    """One line a log or a dashboard can quote: counts, libyears, and where they are."""
    t = report.totals
    parts = [
        f"{t.dependencies} dependencies",
        f"{t.outdated} outdated",
        f"{t.libyear:.2f} libyears",
    ]
    if t.unpinned:
        parts.append(f"{t.unpinned} unpinned")
    if t.errors:
        parts.append(f"{t.errors} not checked")
    line = ", ".join(parts)
    ecosystems = [f"{eco} {e.libyear:.2f} ({e.outdated}/{e.dependencies})" for eco, e in t.by_ecosystem.items()]
    return f"{line}; by ecosystem: {', '.join(ecosystems)}" if ecosystems else line


def _cells(row: FreshnessRow) -> list[str]:
    used = row.version if row.status != UNPINNED else f"unpinned{f' ({row.spec})' if row.spec else ''}"
    return [
        row.ecosystem,
        row.name,
        used or "",
        row.latest or "—",
        str(row.behind) if row.behind is not None else "—",
        f"{row.libyear:.2f}" if row.libyear is not None else "—",
        row.status,
    ]


_HEADERS = ["ecosystem", "name", "used", "latest", "behind", "libyear", "status"]


def render_text(report: FreshnessReport) -> str:
    """An aligned table, most libyears first, then what could not be checked, then the totals line."""
    table = [_HEADERS, *(_cells(r) for r in report.rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if not report.rows:
        lines = ["no dependencies checked"]
    if report.errors:
        lines.append("")
        lines.append("not checked:")
        lines.extend(f"  {e}" for e in report.errors)
    lines.append("")
    lines.append(totals_line(report))
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def render_markdown(report: FreshnessReport) -> str:
    """GitHub Markdown for the per-repository dashboard issue."""
    lines = [f"**{_md(totals_line(report))}**", ""]
    if report.rows:
        lines.append("| Dependency | Ecosystem | Used | Latest | Behind | Libyear | Files |")
        lines.append("|---|---|---|---|---|---:|---|")
        for row in report.rows:
            eco, name, used, latest, behind, years, _ = (_md(c) for c in _cells(row))
            files = ", ".join(f"`{_md(f)}`" for f in row.files)
            lines.append(f"| {name} | {eco} | {used} | {latest} | {behind} | {years} | {files} |")
    if report.errors:
        lines += ["", "Not checked:", ""]
        lines.extend(f"- {_md(str(e))} ({_md(e.registry)})" for e in report.errors)
    return "\n".join(lines) + "\n"
