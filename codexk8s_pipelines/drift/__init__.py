"""Ops drift: a repository's rendered manifests compared with the live cluster, warn-only.

`manifests` builds the desired state (YAML files or `helm template`), `live` reads the cluster (GET only),
`compare` diffs the two into a `DriftReport` with stable fingerprints, `report` renders it. `check_drift`
ties the cluster half together. Plain functions, free of Dagster: the CLI, the nightly asset and tests call
the same code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .compare import DriftItem, DriftReport, compare, fingerprint
from .ignore import IgnoreRule, PointerError, load_ignore_rules, parse_ignore_rules
from .live import DEFAULT_TIMEOUT_SECONDS, LiveState, api_client_from_kubeconfig, helm_selector, read_live
from .manifests import DesiredObject, DesiredState, load_manifests, render_helm
from .model import DriftError, ObjectKey, Problem
from .report import render_markdown, render_table, report_to_dict


def check_drift(
    desired: DesiredState,
    api_client: Any,
    *,
    ignore: Sequence[IgnoreRule | Mapping[str, Any] | str] = (),
    managed_selector: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> DriftReport:
    """Read the cluster for `desired` and diff it; problems are in the report, only bad rules raise.

    Rules are parsed before the cluster is asked anything, so a malformed pointer fails fast.
    """
    rules = parse_ignore_rules(ignore)
    live = read_live(desired, api_client, managed_selector=managed_selector, timeout=timeout)
    return compare(desired, live, ignore=rules)


__all__ = [
    "DesiredObject",
    "DesiredState",
    "DriftError",
    "DriftItem",
    "DriftReport",
    "IgnoreRule",
    "LiveState",
    "ObjectKey",
    "PointerError",
    "Problem",
    "api_client_from_kubeconfig",
    "check_drift",
    "compare",
    "fingerprint",
    "helm_selector",
    "load_ignore_rules",
    "load_manifests",
    "parse_ignore_rules",
    "read_live",
    "render_helm",
    "render_markdown",
    "render_table",
    "report_to_dict",
]
