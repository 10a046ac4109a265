"""Renderings of a drift report: markdown for the dashboard issue, a terminal table, JSON."""

from __future__ import annotations

import datetime
import json

from codexk8s_pipelines.drift import (
    DesiredState,
    DriftReport,
    LiveState,
    ObjectKey,
    Problem,
    compare,
    render_markdown,
    render_table,
    report_to_dict,
)

WEB = ObjectKey("apps", "Deployment", "shop", "web")


def sample() -> DriftReport:
    state = DesiredState(namespace="shop")
    state.add(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"released": datetime.date(2026, 1, 2)}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "w", "args": ["a|b", "x" * 90]}]}}},
        },
        "deploy.yaml, document 1",
    )
    state.add({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}, "svc.yaml, document 1")
    state.problems.append(Problem("bad.yaml, document 2", "invalid YAML: found `|` here"))
    live = {
        "metadata": {"annotations": {"released": "2026-01-03"}},
        "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "w", "args": ["a"]}]}}},
    }
    extra = ObjectKey("", "ConfigMap", "shop", "old")
    return compare(
        state,
        LiveState(objects={WEB: live}, missing={ObjectKey("", "Service", "shop", "web")}, extra={extra: {}}),
    )


def test_markdown_has_one_escaped_row_per_finding_and_folds_errors() -> None:
    report = sample()
    text = render_markdown(report, title="Ops drift for shop")

    assert text.startswith("### Ops drift for shop: 3 changed, 1 missing, 1 extra; 1 of 2 objects compared; 1 error\n")
    rows = [line for line in text.splitlines() if line.startswith("| <code>")]
    assert len(rows) == len(report.items) == 5
    assert all(line.count("|") == 7 for line in rows), rows  # no value's `|` breaks a table row
    replicas = next(r for r in rows if "spec.replicas" in r)
    assert "<code>2</code> | <code>3</code>" in replicas
    assert next(i for i in report.items if i.pointer == "/spec/replicas").fingerprint[:12] in replicas
    args = next(r for r in rows if ".args" in r)
    assert "a&#124;b" in args and "…" in args  # escaped and cut short
    assert "| <code>Service shop/web</code> | missing | not in the cluster |" in text
    assert "<details><summary>1 error: not everything was checked</summary>" in text
    assert "found `|` here" not in text and "found `&#124;` here" in text


def test_markdown_without_drift() -> None:
    text = render_markdown(DriftReport(desired=3, checked=3, selector="a=b"))
    assert text.splitlines()[0] == "### Ops drift: no drift; 3 of 3 objects compared"
    assert "<table" not in text and "| Object" not in text
    assert "labelled `a=b`" in text


def test_table_and_json() -> None:
    report = sample()
    table = render_table(report)
    header, *rest = table.splitlines()
    assert header.split() == ["OBJECT", "DRIFT", "FIELD", "DESIRED", "LIVE"]
    assert any(line.startswith("Deployment.apps shop/web") and "spec.replicas" in line for line in rest)
    assert "error: bad.yaml, document 2: invalid YAML" in table
    assert table.endswith("1 of 2 objects compared; 1 error\n")

    data = report_to_dict(report)
    assert json.loads(json.dumps(data)) == data
    assert data["counts"] == {
        "changed": 3,
        "missing": 1,
        "extra": 1,
        "errors": 1,
        "desired": 2,
        "checked": 1,
        "unchecked": 0,
        "ignored": 0,
    }
    released = next(i for i in data["items"] if i["pointer"] == "/metadata/annotations/released")
    assert released["desired"] == "2026-01-02" and released["live"] == "2026-01-03"
    assert data["items"][0]["key"] == {"group": "", "kind": "ConfigMap", "namespace": "shop", "name": "old"}
