"""Renderings of a `DriftReport`: markdown for the dashboard issue, a plain table for a terminal, a JSON-able dict.

Values are shown compact and cut short: a report is read by a human deciding what to look at, and the whole
manifest is one `kubectl get -o yaml` away. Each markdown row carries the start of its fingerprint so a
finding can be matched with the dashboard's record of it.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .compare import DriftItem, DriftReport

VALUE_WIDTH = 60
FINGERPRINT_WIDTH = 12


def report_to_dict(report: DriftReport) -> dict[str, Any]:
    """`report.to_dict()` made JSON-safe: YAML can load dates and other values JSON has no type for."""
    result: dict[str, Any] = json.loads(json.dumps(report.to_dict(), default=str))
    return result


def _value(value: Any, width: int = VALUE_WIDTH) -> str:
    if value is None:
        return "(unset)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def _field(item: DriftItem) -> str:
    if item.drift == "missing":
        return "not in the cluster"
    if item.drift == "extra":
        return "in the cluster, not in the manifests"
    return item.path or item.pointer or "(whole object)"


def summary(report: DriftReport) -> str:
    """One line: what drifted and how much was looked at."""
    counts = report.counts
    found = ", ".join(f"{counts[k]} {k}" for k in ("changed", "missing", "extra") if counts[k]) or "no drift"
    scope = f"{counts['checked']} of {counts['desired']} objects compared"
    extra = f"{counts['ignored']} ignored by rules" if counts["ignored"] else ""
    errors = f"{counts['errors']} error{'s' if counts['errors'] != 1 else ''}" if counts["errors"] else ""
    return "; ".join(part for part in (found, scope, extra, errors) if part)


def _cell(text: str) -> str:
    return html.escape(text).replace("|", "&#124;")


def render_markdown(report: DriftReport, *, title: str = "Ops drift") -> str:
    """A GitHub-flavoured markdown section: summary, one table row per finding, errors folded away."""
    lines = [f"### {title}: {summary(report)}", ""]
    if report.selector:
        lines.append(f"Extra objects: those labelled `{report.selector}`. Warn-only: nothing was changed.")
    else:
        lines.append("Extra objects were not looked for (no release or selector). Warn-only: nothing was changed.")
    if report.items:
        lines += ["", "| Object | Drift | Field | Desired | Live | ID |", "|---|---|---|---|---|---|"]
        for item in report.items:
            fp = f"<code>{item.fingerprint[:FINGERPRINT_WIDTH]}</code>"
            what = f"<code>{_cell(str(item.key))}</code> | {item.drift}"
            if item.drift == "changed":
                values = f"<code>{_cell(_value(item.desired))}</code> | <code>{_cell(_value(item.live))}</code>"
                lines.append(f"| {what} | <code>{_cell(_field(item))}</code> | {values} | {fp} |")
            else:
                lines.append(f"| {what} | {_cell(_field(item))} | | | {fp} |")
    if report.errors:
        noun = "error" if len(report.errors) == 1 else "errors"
        lines += ["", f"<details><summary>{len(report.errors)} {noun}: not everything was checked</summary>", ""]
        lines += [f"- {_cell(str(error))}" for error in report.errors]
        lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_table(report: DriftReport) -> str:
    """Aligned plain-text columns for a terminal, then the errors, then the summary."""
    rows = [("OBJECT", "DRIFT", "FIELD", "DESIRED", "LIVE")]
    for item in report.items:
        changed = item.drift == "changed"
        rows.append(
            (
                str(item.key),
                item.drift,
                _field(item),
                _value(item.desired, 40) if changed else "",
                _value(item.live, 40) if changed else "",
            )
        )
    lines = []
    if report.items:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines += [f"error: {error}" for error in report.errors]
    lines.append(summary(report))
    return "\n".join(lines) + "\n"
