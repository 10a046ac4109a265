"""The `codexk8s` command: explain trigger decisions, check the configuration, run the local platform."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from . import settings
from .cli_args import port_number, positive_int
from .config import ConfigError, PlatformConfig, load_config, load_config_from_environment
from .domain.stages import Permission

if TYPE_CHECKING:
    from .store import PlatformStore


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(x.strip() for x in (value or "").split(",") if x.strip())


def _permission(value: str) -> Permission:
    try:
        return Permission(value.strip().lower())
    except ValueError:
        allowed = ", ".join(p.value for p in Permission)
        raise argparse.ArgumentTypeError(f"{value!r} is not a permission; expected one of: {allowed}") from None


def _config(path: str | None) -> PlatformConfig:
    return load_config(path) if path else load_config_from_environment()


def _cmd_explain_live(args: argparse.Namespace) -> int:
    import json

    import requests
    from github.GithubException import GithubException

    from sensors.explain_live import explain_live, render_live_text
    from sensors.intake import TickContext, now_utc

    from .domain.correlation import parse_target
    from .github.api import RepoApi
    from .github.client import GitHubConnector, GitHubCredentials
    from .store import PlatformStore

    try:
        repository, number = parse_target(args.target)
    except ValueError as exc:
        print(f"codexk8s triggers explain: {exc}", file=sys.stderr)
        return 2
    credentials = GitHubCredentials.from_environment()
    if not credentials.configured:
        print(f"codexk8s triggers explain: {credentials.missing_reason()}", file=sys.stderr)
        return 2
    url = settings.database_url()
    ctx = TickContext(rules=_config(args.config).rules(), store=PlatformStore(url) if url else None, now=now_utc())
    api = RepoApi(GitHubConnector(credentials).for_repository(repository), repository)
    try:
        result = explain_live(api, ctx, number)
    except GithubException as exc:  # GitHub said no: show what and why, never a traceback
        print(f"codexk8s triggers explain: {args.target}: GitHub answered {exc.status}: {exc.data or exc}",
              file=sys.stderr)  # fmt: skip
        return 1
    except requests.RequestException as exc:
        print(f"codexk8s triggers explain: {args.target}: GitHub did not answer: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # our own failure: named as such, never blamed on GitHub
        print(f"codexk8s triggers explain: {args.target}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result.to_dict(), sort_keys=True, default=str) if args.json else render_live_text(result))
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    from .explain import ExplainInputError, ExplainRequest, explain, render_json, render_text

    if args.target:
        return _cmd_explain_live(args)
    if not args.actor:
        print("codexk8s triggers explain: give owner/repo#N, or describe an event with --actor", file=sys.stderr)
        return 2
    request = ExplainRequest(
        labels=_split(args.labels),
        actor=args.actor,
        actor_type=args.actor_type,
        permission=args.permission,
        added=args.added,
        pull_request=args.pr,
        review=args.review,
        issue_labels=_split(args.issue_labels),
        history=_split(args.history),
        dev_run_exists=args.dev_run,
        fork=args.fork,
    )
    try:
        decision = explain(request, _config(args.config).rules())
    except ExplainInputError as exc:
        print(f"codexk8s triggers explain: {exc}", file=sys.stderr)
        return 2
    print(render_json(decision) if args.json else render_text(decision))
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.path) if args.path else settings.config_location().path
    config = load_config(path)
    print(
        f"{path}: valid — {len(config.repositories)} repositories, locale {config.locale}, "
        f"trigger permission ≥ {config.triggers.min_permission.value}, "
        f"{len(config.stages)} stage overrides, profiles: {', '.join(config.launch_profiles)}"
    )
    return 0


def local_migrator_url(url: str | None) -> str | None:
    """The migrator role's URL of the running `make run`'s embedded database, when `url` is the application role's URL
    it recorded (`dev.json`, what `codexk8s env` exports and the CLI adopts); None for any other database.

    The embedded server trusts its own unix socket, so the two URLs differ only in their user (`store/embedded.py`,
    `prepare_database`): nothing is stored for it, and `codexk8s env` still hands out the application role only."""
    if not url:
        return None
    from .platform_record import running_platform

    platform = running_platform()
    if platform is None or platform.database_url != url:
        return None
    from .store.embedded import url_for
    from .store.roles import MIGRATOR_ROLE

    return url_for(url, user=MIGRATOR_ROLE)


def _cmd_db_migrate(args: argparse.Namespace) -> int:
    from .store import PlatformStore
    from .store.migrations import schema_ahead
    from .store.roles import APP_ROLE

    url = settings.database_url()
    if not url:
        print(f"codexk8s db migrate: {settings.NO_DATABASE}", file=sys.stderr)
        return 2
    # Locally the platform connects as the application role, which may not change the schema: migrate the running
    # `make run`'s database as its migrator, and grant the application role its rights as `make run` does at start.
    migrator = local_migrator_url(url)
    store = PlatformStore(migrator or url)
    if not store.wait_until_reachable(args.wait):
        print(f"codexk8s db migrate: the database did not accept connections within {args.wait:g} s", file=sys.stderr)
        return 1
    grant_to = args.grant_to or settings.database_app_role() or (APP_ROLE if migrator else None)
    applied = store.migrate(grant_to=grant_to)
    granted = f"; rights of role {grant_to} granted" if grant_to else ""
    version = store.schema_version()
    print(f"schema version {version}; applied now: {applied or 'nothing'}{granted}")
    ahead = schema_ahead(version)
    if ahead:
        print(f"codexk8s db migrate: warning: {ahead}", file=sys.stderr)
    _rekey_repositories(store)
    return 0


def _rekey_repositories(store: PlatformStore) -> None:
    """Move rows of renamed repositories (`local:<path>` → the directory's name) when the configuration is known."""
    from .store.rekey import rekey_summary

    try:
        config = load_config_from_environment()
    except ConfigError as exc:
        print(f"repository keys not checked (no readable codexk8s.yaml: {exc.problems[0]})", file=sys.stderr)
        return
    renamed = rekey_summary(store, config.renamed_repositories())
    if renamed:
        print(renamed)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import run_doctor

    return run_doctor(args.skip, as_json=args.json, kubernetes=args.kubernetes, kubeconfig=args.kubeconfig)


# Commands that read the platform database: without CODEXK8S_DATABASE_URL they use the running `make run`'s.
DATABASE_COMMANDS = {"db", "docs", "doctor", "triggers", "mcp", "trace", "spend"}


def _adopt_running_platform(command: str) -> None:
    if command not in DATABASE_COMMANDS or settings.database_url():
        return
    from .platform_record import running_platform

    platform = running_platform()
    if platform is not None:
        os.environ[settings.DATABASE_URL_VAR] = platform.database_url


def _cmd_env(args: argparse.Namespace) -> int:
    """The shell lines that point this terminal at the checkout's running platform."""
    from .platform_record import running_platform

    platform = running_platform()
    if platform is None:
        print(
            f"codexk8s env: no platform runs for this checkout (state in {settings.state_dir()}): start it with "
            '`make run`, then run: eval "$(.venv/bin/codexk8s env)"',
            file=sys.stderr,
        )
        return 1
    print("\n".join(platform.env_lines()))
    return 0


def _cmd_dev(args: argparse.Namespace) -> int:
    from .local_stack import run_local_stack

    return run_local_stack(host=args.host, port=args.port, workspace=Path(args.workspace))


def _cmd_webhook_serve(args: argparse.Namespace) -> int:
    import os

    from .webhook import WebhookConfigError, serve

    try:
        serve(args.host, args.port, dict(os.environ))
    except WebhookConfigError as exc:
        print(f"codexk8s webhook serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _cmd_mcp_serve(args: argparse.Namespace) -> int:
    from .mcp.server import serve
    from .mcp.tools import McpConfigError

    try:
        serve(args.transport, host=args.host, port=args.port)
    except McpConfigError as exc:
        print(f"codexk8s mcp serve: {exc}", file=sys.stderr)
        return 2
    return 0


def _known_repository(name: str) -> bool:
    """`owner/name` (GitHub, by the configuration's own rule), or the key of a local checkout the configuration
    watches (`main`)."""
    from pydantic import ValidationError

    from .config.models import RepositoryConfig

    try:
        RepositoryConfig.model_validate({"github": name})
        return True
    except ValidationError:
        pass
    return name.strip().lower() in {r.key for r in load_config_from_environment().repositories if r.path}


def _cmd_mcp_token(args: argparse.Namespace) -> int:
    """Mint a run-scoped token; the run's repository, issue, PR and role come from the platform database if known.
    The token carries the role's MCP tools from the agent catalog, which the server enforces; without a role it
    may only read."""
    from .agents.catalog import UnknownAgentError, current_catalog
    from .mcp.tokens import TokenError, issue_token

    repository, issue, pr, role = args.repository, args.issue, args.pr, args.role
    url = settings.database_url()
    if url and (repository is None or (issue is None and pr is None) or role is None):
        from .store import PlatformStore

        run = PlatformStore(url).get_run(args.run)
        if run is not None:
            repository = repository or run["repository"]
            role = role or run["role"] or None
            if issue is None and pr is None:
                issue, pr = run["issue_number"], run["pr_number"]
    if args.repository is not None and not _known_repository(args.repository):
        print(
            f"codexk8s mcp token: --repository {args.repository!r} is not a repository: give owner/name, or the name "
            "of a local checkout codexk8s.yaml watches",
            file=sys.stderr,
        )
        return 2
    try:
        tools = list(current_catalog().for_role(role).mcp_tools) if role else None
    except UnknownAgentError as exc:
        print(f"codexk8s mcp token: no agent for role {role!r}: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, OSError) as exc:  # the agent catalog does not load: say which file and why
        print(f"codexk8s mcp token: the agent catalog: {exc}", file=sys.stderr)
        return 2
    if not repository or (issue is None and pr is None):
        print(f"codexk8s mcp token: run {args.run!r} is unknown: give --repository and --issue or --pr",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        print(issue_token(args.run, repository, issue_number=issue, pr_number=pr, ttl_seconds=args.ttl, role=role,
                          tools=tools))  # fmt: skip
    except (TokenError, ValueError) as exc:
        print(f"codexk8s mcp token: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codexk8s", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    triggers = sub.add_parser("triggers", help="trigger decisions").add_subparsers(dest="action", required=True)
    ex = triggers.add_parser(
        "explain",
        help="print the decision for a described label or review event",
        description="Why did (or would) a label start a run? Prints the decision the sensors make.",
    )
    ex.add_argument("target", nargs="?", help="a live issue or PR, owner/repo#N (needs GitHub credentials)")
    ex.add_argument("--labels", default="", help="comma-separated labels on the issue (or on the PR with --pr)")
    ex.add_argument("--added", help="the label that was added")
    ex.add_argument("--actor", help="GitHub login of who added the label or reviewed")
    ex.add_argument("--actor-type", default="User", help="GitHub account type: User, Bot, Organization")
    ex.add_argument("--permission", type=_permission, help="the actor's permission on the repository")
    ex.add_argument("--pr", action="store_true", help="the event is on a pull request")
    ex.add_argument("--review", help="a submitted review's state (changes_requested, approved, commented)")
    ex.add_argument("--issue-labels", default="", help="with --review: labels of the PR's linked issue")
    ex.add_argument("--history", default="", help="with --review: stages of earlier runs, newest first")
    ex.add_argument("--dev-run", action="store_true", help="the issue already had a run:dev run")
    ex.add_argument("--fork", action="store_true", help="with --review: the PR's branch is in another repository")
    ex.add_argument("--config", help="configuration file (default: $CODEXK8S_CONFIG or ./codexk8s.yaml)")
    ex.add_argument("--json", action="store_true", help="print one JSON object")
    ex.set_defaults(func=_cmd_explain)

    cfg = sub.add_parser("config", help="platform configuration").add_subparsers(dest="action", required=True)
    check = cfg.add_parser("check", help="validate the configuration file")
    check.add_argument("path", nargs="?")
    check.set_defaults(func=_cmd_config_check)

    db = sub.add_parser("db", help="platform database").add_subparsers(dest="action", required=True)
    migrate = db.add_parser("migrate", help=f"apply migrations to ${settings.DATABASE_URL_VAR} (the migrator's URL)")
    migrate.add_argument(
        "--grant-to",
        help=f"the application role to grant its rights after migrating (default: ${settings.DATABASE_APP_ROLE_VAR})",
    )
    migrate.add_argument(
        "--wait", type=float, default=0, metavar="SECONDS", help="wait this long for the database to accept connections"
    )
    migrate.set_defaults(func=_cmd_db_migrate)

    # docs index|search|impact: the knowledge index (torch and the model load only when one runs).
    from .knowledge.cli import add_docs_commands

    add_docs_commands(sub)

    # scan / freshness: the periodic checks' scanners from a terminal.
    from .freshness.cli import add_freshness_commands
    from .security.cli import add_scan_commands

    add_scan_commands(sub)
    add_freshness_commands(sub)

    # trace: the story of one issue from the audit trail.
    from .insight.cli import add_trace_command

    add_trace_command(sub)

    # spend: what the runs cost.
    from .spend.cli import add_spend_command

    add_spend_command(sub)

    from .doctor import GROUPS, parse_skip

    doc = sub.add_parser(
        "doctor",
        help="check this deployment: config, database, GitHub, Kubernetes",
        description="Check the environment, one line per check: ok, warn, skip or FAIL with its fix. "
        "Exit 0 when nothing failed, 1 otherwise.",
    )
    doc.add_argument("--json", action="store_true", help="print one JSON object")
    doc.add_argument(
        "--skip", type=parse_skip, default=(), help=f"comma-separated groups to leave out: {','.join(GROUPS)}"
    )
    doc.add_argument(
        "--kubernetes", action="store_true", help="check the cluster even when CODEXK8S_ENV is not kubernetes"
    )
    doc.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, in-cluster, ~/.kube/config)")
    doc.set_defaults(func=_cmd_doctor)

    dev = sub.add_parser("dev", help="run the local platform: embedded database and the Dagster UI")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=port_number, default=3000, help="the UI's port (make run PORT=...)")
    dev.add_argument("--workspace", default="workspace.yaml")
    dev.set_defaults(func=_cmd_dev)
    env = sub.add_parser(
        "env",
        help='print the export lines of this checkout\'s running platform: eval "$(.venv/bin/codexk8s env)"',
    )
    env.set_defaults(func=_cmd_env)

    mcp = sub.add_parser("mcp", help="the MCP server of run-scoped agent tools").add_subparsers(
        dest="action", required=True
    )
    serve = mcp.add_parser(
        "serve",
        help="serve the MCP tools (database from $CODEXK8S_DATABASE_URL, token secret from $CODEXK8S_MCP_SECRET)",
    )
    serve.add_argument("--transport", choices=("stdio", "http"), default="stdio", help="stdio or streamable HTTP")
    serve.add_argument("--host", default="127.0.0.1", help="with --transport http")
    serve.add_argument("--port", type=port_number, default=8765, help="with --transport http; the endpoint is /mcp")
    serve.set_defaults(func=_cmd_mcp_serve)
    webhook = sub.add_parser("webhook", help="the GitHub webhook receiver").add_subparsers(dest="action", required=True)
    hook = webhook.add_parser(
        "serve",
        help="receive GitHub deliveries on /webhook (secret from $CODEXK8S_WEBHOOK_SECRET, database from "
        "$CODEXK8S_DATABASE_URL); the intake sensors decide them",
    )
    hook.add_argument("--host", default="127.0.0.1")
    hook.add_argument("--port", type=port_number, default=8090)
    hook.set_defaults(func=_cmd_webhook_serve)
    token = mcp.add_parser("token", help="print a run-scoped token for an agent (signed with $CODEXK8S_MCP_SECRET)")
    token.add_argument("--run", required=True, help="the run's correlation key")
    token.add_argument("--repository", help="owner/name (default: the run's, from the platform database)")
    token.add_argument("--issue", type=int, help="the run's issue number (default: the run's)")
    token.add_argument("--pr", type=int, help="the run's pull request number (default: the run's)")
    token.add_argument("--role", help="the run's agent role, whose MCP tools the token allows (default: the run's)")
    token.add_argument("--ttl", type=positive_int, default=6 * 3600, help="seconds until the token expires")
    token.set_defaults(func=_cmd_mcp_token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _adopt_running_platform(args.command)
    try:
        return int(args.func(args))
    except (ConfigError, settings.SettingsError) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except RuntimeError as exc:
        # The database's own refusals, one line each, not a traceback: a role that may not migrate, an embedded
        # PostgreSQL that did not start. Imported here: the store's modules load psycopg, most commands need neither.
        from .store.embedded import EmbeddedPostgresError
        from .store.migrations import MigrationPermissionError

        if not isinstance(exc, MigrationPermissionError | EmbeddedPostgresError):
            raise
        command = " ".join(str(c) for c in (args.command, getattr(args, "action", None)) if c)
        print(f"codexk8s {command}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
