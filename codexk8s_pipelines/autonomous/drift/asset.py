"""`ops_drift`: a repository's rendered manifests against the live cluster. Warn-only: it reports, never applies.

Only repositories with a `drift:` section are checked (the schedule fans out over those). Objects the check could
not read keep their findings open: an unreachable API is not a fix.

Its check: no drifted object. A repository without a `drift:` section has nothing to compare: the run fails and
says what to add, rather than turning green for work it did not do.
"""

import os
from pathlib import Path
from typing import Any

import dagster as dg

from ... import settings
from ...config.models import RepositoryConfig
from ...config.periodic import NO_DRIFT
from ...github.resource import GitHubResource
from ...resources import PlatformConfigResource, PlatformDatabase
from ...store.findings import FindingInput
from ..factory import cannot, check_result, open_partition, periodic_asset
from ..periodic import publish_findings


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return (text[:60] + "…") if len(text) > 60 else text


def finding_input(item: Any) -> FindingInput:
    if item.drift == "changed":
        what = f"`{item.path or item.pointer}`: desired `{_value(item.desired)}`, live `{_value(item.live)}`"
        severity = "MEDIUM"
    elif item.drift == "missing":
        what, severity = "missing from the cluster", "HIGH"
    else:
        what, severity = "in the cluster, not in the manifests", "LOW"
    return FindingInput(
        fingerprint=item.fingerprint,
        title=f"{item.drift} · `{item.key}` · {what}",
        severity=severity,
        details={"object": str(item.key), "drift": item.drift, "pointer": item.pointer},
    )


def desired_state(repo: RepositoryConfig, root: Path) -> Any:
    from ...drift import load_manifests, render_helm

    cfg = repo.drift
    assert cfg is not None
    if cfg.manifests is not None:
        return load_manifests(root / cfg.manifests, namespace=cfg.namespace, release=cfg.release, root=root)
    helm = settings.helm_binary()
    if helm is None:
        cannot(f"{repo.key}: drift needs a helm binary: set {settings.HELM_VAR} or put helm on PATH")
    release = cfg.release or (repo.github or repo.key).rsplit("/", 1)[-1]
    return render_helm(
        root / str(cfg.helm_chart), release=release, namespace=cfg.namespace,
        values_files=[root / v for v in cfg.helm_values], helm_bin=helm, root=root,
    )  # fmt: skip


def _cluster() -> Any:
    from ...drift import api_client_from_kubeconfig

    try:
        return api_client_from_kubeconfig(os.environ.get(settings.KUBECONFIG_VAR))
    except Exception as exc:
        cannot(f"no cluster to compare with: {exc} (set {settings.KUBECONFIG_VAR}, or run in the cluster)")


@periodic_asset(
    "ops_drift",
    description="Rendered manifests (YAML or helm template) compared with the live cluster, ignoring "
    "server-populated fields and configured JSON pointers; warn-only, on a dashboard issue.",
    kinds={"kubernetes", "github"},
    checks={NO_DRIFT: "No object differs between the repository's manifests and the live cluster."},
)
def ops_drift(
    context: dg.AssetExecutionContext,
    platform_db: PlatformDatabase,
    platform_config: PlatformConfigResource,
    github: GitHubResource,
) -> dg.MaterializeResult:
    from ...drift import DriftError, check_drift, render_markdown

    opened = open_partition(context, platform_db, platform_config)
    platform, repo = opened.platform, opened.repo
    if repo.drift is None:
        cannot(
            f"{repo.key} has no drift section in codexk8s.yaml: nothing to compare. Add "
            "`drift: {manifests: DIR}` (or helm_chart) to the repository; ops_drift_schedule only runs those."
        )
    run = opened.checked_out(github)
    root, commit = run.root, run.commit
    try:
        desired = desired_state(repo, root)
    except DriftError as exc:
        cannot(f"{repo.key}: {exc}")
    ignore = [{"pointer": r.pointer, "kind": r.kind, "name": r.name} for r in repo.drift.ignore]
    report = check_drift(desired, _cluster(), ignore=ignore, managed_selector=repo.drift.selector)
    # Objects the check could not read keep their findings: an unreachable API is not a fix.
    unchecked = {str(key) for key in report.unchecked} | {str(p.key) for p in report.errors if p.key is not None}
    notes = [f"{p}" for p in report.errors]
    metadata, _, open_rows = publish_findings(
        context, store=run.store, github=github, platform=platform, repo=repo, kind="drift",
        findings=[finding_input(i) for i in report.items], notes=notes,
        preserve=lambda details: details.get("object") in unchecked or bool(report.errors and not report.checked),
    )  # fmt: skip
    metadata.update(
        {
            "commit": commit or "",
            **{f"drift_{k}": v for k, v in report.counts.items()},
            "selector": report.selector or "",
            "report": dg.MetadataValue.md(render_markdown(report)),
        }
    )
    drifted = len(report.items)
    if report.errors and not report.checked:
        text = f"nothing could be read from the cluster: {report.errors[0]}"
    elif drifted:
        text = f"{drifted} drifted object(s): " + ", ".join(
            f"{n} {k}" for k, n in report.counts.items() if k in ("changed", "missing", "extra") and n
        )
    else:
        text = f"no drift ({report.checked} object(s) compared)"
    if report.errors and report.checked:
        text += f"; {len(report.errors)} could not be read"
    passed = not drifted and not report.errors
    check = check_result(platform, NO_DRIFT, passed, text, drifted=drifted, open=len(open_rows))
    return dg.MaterializeResult(metadata=metadata, check_results=[check])
