"""`codexk8s doctor`: check a deployment's environment, one line per check, each problem with its fix.

    ok   <check>: <what was found>
    warn <check>: <what may bite later> — fix: <what to do>
    skip <check>: <why the check does not apply or could not be made>
    FAIL <check>: <problem> — fix: <what to do>

Groups (each can be left out with `--skip`): `config` (the environment switch, the platform configuration and
the agent catalog), `database` (URL, connection, migrations, pgvector), `github` (credentials, their validity,
each watched `github:` repository and the permissions on it, the rate limit), `agents` (only with
`CODEXK8S_ENV=local`: each role's agent program on the PATH the runs use, bubblewrap, the model key variables; on
Kubernetes the agents run in pods, checked under `kubernetes`) and `kubernetes` (only when
`CODEXK8S_ENV=kubernetes` or `--kubernetes`: the API, the agent namespace, the RBAC the run pods need there, the
agent service account, the token Secret, the model key Secrets, the agent images, the MCP server). The database
group also warns when the platform's role could rewrite the audit trail (a superuser, or the owner of flow_events).

Every check catches its own errors and turns them into one FAIL line naming the cause: `run_checks` never
raises. No secret is ever printed: every line goes through `redact_text`, and the database password, the GitHub
token and the App key are scrubbed from the output literally as well. The Secret is read as metadata only.
Every network call has a short timeout, so a doctor run against a dead host ends in seconds.

One module per group (`config_checks`, `database_checks`, `github_checks`, `agent_checks` (local),
`kubernetes_checks` with the pods' part of `agent_checks`), sharing
`base` (the `Check` line and the `Context` loaded once per run). A new group is a new module: name it in
`GROUPS` and call it from `run_checks`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, replace

from .. import settings
from .agent_checks import check_local_agents
from .base import Check, Context, Status, cause, fail, ok, skip, warn
from .config_checks import check_catalog, check_config, check_environment
from .database_checks import check_database
from .github_checks import check_github
from .kubernetes_checks import POD_VERBS, check_images, check_kubernetes
from .osv_checks import check_osv

GROUPS: tuple[str, ...] = ("config", "database", "github", "agents", "kubernetes")
__all__ = [
    "GROUPS",
    "POD_VERBS",
    "Check",
    "Status",
    "check_catalog",
    "check_config",
    "check_database",
    "check_environment",
    "check_github",
    "check_images",
    "check_kubernetes",
    "check_local_agents",
    "fail",
    "ok",
    "parse_skip",
    "render_json",
    "render_text",
    "run_checks",
    "run_doctor",
    "skip",
    "warn",
]


def parse_skip(value: str) -> tuple[str, ...]:
    """`--skip kubernetes,github`: known group names only (argparse turns the error into a usage message and exit 2)."""
    import argparse

    names = tuple(x.strip().lower() for x in value.split(",") if x.strip())
    unknown = [n for n in names if n not in GROUPS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown check group(s): {', '.join(unknown)}; expected a comma-separated list of: {', '.join(GROUPS)}"
        )
    return names


# -- running -------------------------------------------------------------------------------------------------
def _guarded(name: str, fn: Callable[[], Iterable[Check]]) -> list[Check]:
    try:
        return list(fn())
    except Exception as exc:  # a check that raised is a failed check, never a traceback
        return [fail(name, f"the check itself failed: {cause(exc)}", "report this with the line above")]


def _kubernetes_wanted(force: bool) -> tuple[bool, str]:
    if force:
        return True, "--kubernetes"
    try:
        env = settings.environment()
    except settings.SettingsError:
        return False, f"{settings.ENV_VAR} is invalid (see environment)"
    if env is settings.Environment.KUBERNETES:
        return True, f"{settings.ENV_VAR}=kubernetes"
    return False, f"{settings.ENV_VAR}={env.value}; pass --kubernetes to check a cluster anyway"


def _local() -> bool:
    try:
        return settings.environment() is settings.Environment.LOCAL
    except settings.SettingsError:
        return False  # the environment check says so


def run_checks(
    skip_groups: Sequence[str] = (),
    *,
    kubernetes: bool = False,
    kubeconfig: str | None = None,
) -> list[Check]:
    """Every check of every group not in `skip_groups`, in order; never raises, never returns a secret."""
    ctx = Context()
    checks: list[Check] = []

    def group(name: str, run: Callable[[], Iterator[Check] | list[Check]]) -> None:
        if name in skip_groups:
            checks.append(skip(name, "skipped (--skip)"))
        else:
            checks.extend(_guarded(name, run))

    def config_group() -> list[Check]:
        return [
            check_environment(),
            *_guarded("config", lambda: check_config(ctx)),
            *check_catalog(ctx),
            *_guarded("periodic.osv_database", lambda: check_osv(ctx)),
        ]

    group("config", config_group)
    group("database", lambda: check_database(ctx))
    group("github", lambda: check_github(ctx))
    if "agents" in skip_groups or _local():  # on Kubernetes the agents run in pods: kubernetes.model_keys, .images
        group("agents", lambda: check_local_agents(ctx))
    wanted, why = _kubernetes_wanted(kubernetes)
    if "kubernetes" in skip_groups or wanted:
        group("kubernetes", lambda: check_kubernetes(ctx, kubeconfig))
    else:
        checks.append(skip("kubernetes", why))
    return [
        replace(c, message=ctx.scrub(c.message), fix=ctx.scrub(c.fix) if c.fix else None, name=ctx.scrub(c.name))
        for c in checks
    ]


def render_text(checks: Sequence[Check]) -> str:
    return "\n".join(c.line() for c in checks)


def render_json(checks: Sequence[Check]) -> str:
    failed = sum(1 for c in checks if c.failed)
    return json.dumps({"ok": failed == 0, "failed": failed, "checks": [asdict(c) for c in checks]}, ensure_ascii=False)


def run_doctor(
    skip_groups: Sequence[str] = (),
    *,
    as_json: bool = False,
    kubernetes: bool = False,
    kubeconfig: str | None = None,
) -> int:
    """Print the checks; 0 when none failed, 1 otherwise (bad arguments are argparse's exit 2)."""
    checks = run_checks(skip_groups, kubernetes=kubernetes, kubeconfig=kubeconfig)
    print(render_json(checks) if as_json else render_text(checks), flush=True)
    return 1 if any(c.failed for c in checks) else 0
