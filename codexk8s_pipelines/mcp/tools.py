"""What each MCP tool does, given a verified run scope: plain synchronous Python over the store and GitHub.

Kept apart from the SDK wiring (`server.py`) so the rules — which runs an agent may see, which labels it may
set, how its status reaches the service comment — read as platform code, not as protocol plumbing. Every
refusal raises `ToolError` (the SDK turns it into an `isError` tool result the model can read and correct);
an argument problem raises `ArgumentError`, whose message always starts with the argument's name.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from mcp.server.mcpserver.exceptions import ToolError

from .. import settings
from ..agents.catalog import agent_name_for_role, current_catalog
from ..config import load_config_from_environment
from ..domain.agent_labels import (
    MAX_LABEL_CHARS,
    LabelRefused,
    agent_label,
    labels_put_by_run,
    last_labeller,
    removal_refusal,
)
from ..domain.correlation import comment_number
from ..domain.labels import DEFAULT_SCHEME, LabelScheme, normalize
from ..domain.redaction import redact_text
from ..domain.spend import Amount, Budgets, Scope, TokenCounts
from ..github.client import GitHubConnector, GitHubCredentials
from ..github.payloads import ITEM_NUMBER_MAX, IssueEvent, label_names
from ..github.service_comment import inert
from ..knowledge.diffs import MAX_CHANGED_FILES
from ..store import PlatformStore
from ..store.database import FINISHED
from ..store.usage import spent, usage_figures, usage_for_runs
from .limits import MAX_DIFF_CHARS, STATUS_EDIT_INTERVAL_SECONDS
from .status_pacing import StatusPacer
from .tokens import RunScope, TokenError, load_secret, verify_token

ACTOR = "mcp"
MAX_K = 50
MAX_STATUS_CHARS = 500
# What a status line may be before its whitespace is collapsed: room for indentation and line breaks, no more.
MAX_STATUS_RAW_CHARS = 4 * MAX_STATUS_CHARS
MAX_LABELS = 10
MAX_RUNS = 100
# Issue and PR numbers are PostgreSQL `integer`s in the platform's tables: a larger one is an argument error, not
# a database error.
MAX_NUMBER = ITEM_NUMBER_MAX
EVENTS_PER_RUN = 10
MAX_NAME_CHARS = 100  # a caller's name (tool, argument, label) as audited and echoed
STATUS_MARKER = "<!-- codexk8s:agent-status -->"
# The tools that change something besides the audit (GitHub labels, the service comment): refused to a token whose
# run's role is unknown, and once the run has finished. server.py annotates the same ones as not read-only.
WRITE_TOOLS = frozenset({"run_status_report", "github_labels_transition"})
_STATUS_TITLE = {"en": "Latest agent status", "ru": "Последний статус агента"}
_WS = re.compile(r"\s+")
# What `run_status_report` hands the pacer to show later: the run's scope, its record, the status, when it was said.
StatusUpdate = tuple[RunScope, dict[str, Any] | None, str, float]


def storable(value: Any) -> Any:
    """A value PostgreSQL's jsonb can hold: it refuses the NUL character, so an argument carrying one would make
    the audit fail and the call look like a database outage. NUL is written as the visible "\\u0000"."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000")
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(str(k)): storable(v) for k, v in value.items()}
    return value


def shown(name: str, limit: int = MAX_NAME_CHARS) -> str:
    """A caller's text (a tool, argument or label name) as the audit and our messages show it: NUL made visible, secrets
    masked, at most `limit` characters and then its length. Only a bounded prefix is ever redacted (a secret
    starting inside the kept part is whole in it, or masked to its end)."""
    head = redact_text(storable(name[: limit + 300]))
    return head if len(name) <= limit and len(head) <= limit else f"{head[:limit]}... <{len(name)} characters>"


class McpConfigError(RuntimeError):
    """The server cannot start: a required setting (database, token secret) is missing or unusable."""


class ArgumentError(ToolError):
    """A wrong argument; `argument` is its name, and the message starts with it so the model knows what to fix."""

    def __init__(self, argument: str, problem: str) -> None:
        super().__init__(f"argument '{argument}': {problem}")
        self.argument = argument


def _usage(row: dict[str, Any] | None) -> dict[str, Any] | None:
    """A run's recorded usage without the word the audit redacts: `input`/`output` counts, cost as text. A run
    re-executed from the Dagster UI shows its attempts summed, how many there were, and how many of them reported
    no usage or have no price (the cost leaves those out, as the spend report's does)."""
    if row is None:
        return None
    tokens = TokenCounts(row["input_tokens"], row["cached_input_tokens"], row["output_tokens"])
    figures = usage_figures(row["agent"], row["model"], tokens, row["cost"], row["currency"])
    attempts = int(row.get("attempts") or 1)
    if attempts > 1:
        unknown = int(row.get("unknown_attempts") or 0)
        figures["attempts"] = attempts
        figures["attempts_usage_unknown"] = unknown
        figures["attempts_without_price"] = int(row.get("unpriced_attempts") or 0) - unknown
    return figures


def _left(scope: Scope, unit: str, cap: Any, used: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"scope": scope.value, "unit": unit, "cap": str(cap)}
    if used is not None:
        entry |= {"used": str(used), "left": str(max(cap - used, 0))}
    return entry


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


@dataclass
class McpServices:
    """Everything the tools need from outside, built once per server from the environment (or by tests)."""

    database_url: str
    secret: bytes
    credentials: GitHubCredentials = field(default_factory=GitHubCredentials)
    labels: LabelScheme = DEFAULT_SCHEME
    # The budgets' override label starts a held run: configurable, so the label tool must know it to refuse it.
    budget_override_label: str = Budgets().override_label
    locale: str = "en"
    clock: Callable[[], float] = time.time
    # Overrides of the knowledge core's functions (tests, or another index); None imports the real ones lazily.
    search: Callable[..., Sequence[Any]] | None = None
    change_impact: Callable[..., Sequence[Any]] | None = None
    embedder: Any = None

    @classmethod
    def from_environment(cls) -> McpServices:
        """The database from `$CODEXK8S_DATABASE_URL`, the secret from `$CODEXK8S_MCP_SECRET`, GitHub and the
        label scheme as every other part of the platform reads them. Missing database or secret: an error."""
        url = settings.database_url()
        if not url:
            raise McpConfigError(f"no platform database: set {settings.DATABASE_URL_VAR}")
        try:
            secret = load_secret(os.environ)
        except TokenError as exc:
            raise McpConfigError(str(exc)) from None
        config = load_config_from_environment()
        return cls(
            database_url=url,
            secret=secret,
            credentials=GitHubCredentials.from_environment(),
            labels=config.label_scheme(),
            budget_override_label=config.budgets.budgets().override_label,
            locale=config.locale,
        )

    @cached_property
    def store(self) -> PlatformStore:
        return PlatformStore(self.database_url)

    @cached_property
    def _connector(self) -> GitHubConnector:
        return GitHubConnector(self.credentials)

    def github_missing_reason(self) -> str | None:
        return self.credentials.missing_reason()

    def repo_api(self, repository: str) -> Any:
        """A `RepoApi` for the repository, or None when GitHub is not configured."""
        if not self.credentials.configured:
            return None
        from ..github.api import RepoApi

        return RepoApi(self._connector.for_repository(repository), repository)


def _role_tools(role: str) -> frozenset[str] | None:
    """The MCP tools the catalog gives the agent of `role`; None when the role or the catalog is unknown here."""
    try:
        return frozenset(current_catalog().for_role(role).mcp_tools)
    except Exception:
        return None


def _github_failure(action: str, exc: Exception) -> ToolError:
    """GitHub's own answer (status and message), never the request's headers or our credentials."""
    status = getattr(exc, "status", None)
    data = getattr(exc, "data", None)
    message = data.get("message") if isinstance(data, dict) else None
    detail = message or type(exc).__name__
    return ToolError(redact_text(f"{action}: GitHub answered {status or 'an error'}: {detail}"))


class PlatformTools:
    """The tool implementations. Each method takes the raw token first and verifies it itself, so a tool is
    safe even when called without the server's guard (which verifies too, for the audit trail)."""

    def __init__(self, services: McpServices) -> None:
        self.services = services

    # -- scope -----------------------------------------------------------------------------------------------
    def verify(self, token: Any) -> RunScope:
        if not isinstance(token, str) or not token.strip():
            raise ArgumentError("token", "is required: the run-scoped token the platform gave this agent")
        return verify_token(token, self.services.clock(), secret=self.services.secret)

    def scope(self, token: Any) -> RunScope:
        try:
            return self.verify(token)
        except TokenError as exc:
            raise ToolError(str(exc)) from None

    def permission_problem(self, scope: RunScope, tool: str) -> str | None:
        """Why this token may not call `tool` now, or None.

        The catalog gives each role its MCP tools and the agent's own client is configured with them, but the agent
        is untrusted and can call the server without that client: so the token's signed tool list decides here. A
        token without one (minted before tokens carried it, or by hand) gets the tools of its run's recorded role,
        and only the read tools when neither the run nor its role is known. A write tool is refused once the run
        has finished: its token may read until it expires, but changes nothing after the run.
        """
        allowed, role = scope.tools, scope.role
        run = self.services.store.get_run(scope.run_key) if allowed is None or tool in WRITE_TOOLS else None
        if allowed is None and run is not None and run.get("role"):
            role = str(run["role"])
            allowed = _role_tools(role)
        if allowed is None:
            if tool in WRITE_TOOLS:
                return (
                    f"{tool} is refused: this token names no role and run {scope.run_key} has no known role, so it"
                    " may only read; ask the platform for a new token"
                )
        elif tool not in allowed:
            return (
                f"{tool} is not one of the tools of this run's role ({role or 'unknown'}): {', '.join(sorted(allowed))}"
            )
        if tool in WRITE_TOOLS and run is not None and run.get("status") in FINISHED:
            return (
                f"{tool} is refused: run {scope.run_key} has finished ({run['status']}); its token can still read until"
                " it expires, but no longer changes labels or the service comment"
            )
        return None

    def _may(self, scope: RunScope, tool: str) -> None:
        """`permission_problem` as a refusal, for a tool called without the server's guard."""
        problem = self.permission_problem(scope, tool)
        if problem is not None:
            raise ToolError(problem)

    # -- docs ------------------------------------------------------------------------------------------------
    def _knowledge(self, name: str) -> Callable[..., Sequence[Any]]:
        override = self.services.search if name == "search" else self.services.change_impact
        if override is not None:
            return override
        try:
            if name == "search":
                from ..knowledge.search import search

                return search
            from ..knowledge.impact import change_impact

            return change_impact
        except ImportError:
            raise ToolError(
                "the docs index is not available in this deployment (codexk8s_pipelines.knowledge is missing)"
            ) from None

    @staticmethod
    def _k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise ArgumentError("k", f"must be an integer from 1 to {MAX_K}")
        return k

    @staticmethod
    def _hit(hit: Any, extra: Sequence[str] = ()) -> dict[str, Any]:
        out = {
            "repository": getattr(hit, "repository", None),
            "path": getattr(hit, "path", None),
            "heading_path": list(getattr(hit, "heading_path", ()) or ()),
            "start_line": getattr(hit, "start_line", None),
            "end_line": getattr(hit, "end_line", None),
            "score": float(getattr(hit, "score", 0.0) or 0.0),
        }
        for name in extra:
            value = getattr(hit, name, None)
            out[name] = list(value) if isinstance(value, tuple | list) else value
        return out

    def _call_index(self, what: str, fn: Callable[..., Sequence[Any]], *args: Any, **kw: Any) -> Sequence[Any]:
        try:
            return fn(*args, **kw)
        except ToolError:
            raise
        except (TypeError, ValueError) as exc:
            raise ToolError(redact_text(f"{what} failed: {exc}")) from None
        except Exception as exc:  # the index is a dependency: say what failed, never a traceback
            raise ToolError(redact_text(f"{what} failed: {type(exc).__name__}: {str(exc)[:300]}")) from None

    def docs_search(
        self, token: str, query: str, path_prefix: str | None, k: int, all_chunks: bool = False
    ) -> dict[str, Any]:
        scope = self.scope(token)
        if not isinstance(query, str) or not query.strip():
            raise ArgumentError("query", "must not be empty: say what you are looking for")
        if "\x00" in query:
            raise ArgumentError("query", "must not contain NUL characters (\\u0000)")
        from ..knowledge.search import MAX_PER_FILE, MAX_QUERY_CHARS  # numpy and the SQL load only for a docs search

        if len(query.strip()) > MAX_QUERY_CHARS:
            raise ArgumentError(
                "query", f"is longer than {MAX_QUERY_CHARS} characters ({len(query.strip())}); ask in fewer words"
            )

        prefix = path_prefix.strip().lstrip("/") if isinstance(path_prefix, str) and path_prefix.strip() else None
        if prefix is not None and ".." in prefix.split("/"):
            raise ArgumentError("path_prefix", "must be a path inside the repository (no '..')")
        fn = self._knowledge("search")
        hits = self._call_index(
            "docs search",
            fn,
            self.services.database_url,
            query.strip(),
            repository=scope.repository,
            path_prefix=prefix,
            k=self._k(k),
            embedder=self.services.embedder,
            per_file=None if all_chunks else MAX_PER_FILE,
        )
        rows = [self._hit(h, ("text",)) for h in hits]
        return {"repository": scope.repository, "query": query.strip(), "path_prefix": prefix, "hits": rows}

    def docs_change_impact(self, token: str, diff: str | None, files: list[str] | None, k: int) -> dict[str, Any]:
        scope = self.scope(token)
        if diff is not None and files is not None:
            raise ArgumentError("diff", "give either 'diff' or 'files', not both")
        if diff is None and files is None:
            raise ArgumentError("diff", "give 'diff' (a unified diff) or 'files' (changed paths)")
        if diff is not None:
            if not diff.strip():
                raise ArgumentError("diff", "must not be empty")
            if len(diff) > MAX_DIFF_CHARS:
                raise ArgumentError("diff", f"is longer than {MAX_DIFF_CHARS} characters; pass 'files' instead")
        paths: list[str] | None = None
        if files is not None:
            paths = [f.strip() for f in files if isinstance(f, str) and f.strip()]
            if not paths:
                raise ArgumentError("files", "must list at least one changed path")
            if len(paths) > MAX_CHANGED_FILES:
                raise ArgumentError("files", f"lists more than {MAX_CHANGED_FILES} paths")
        fn = self._knowledge("change_impact")
        hits = self._call_index(
            "change impact",
            fn,
            self.services.database_url,
            scope.repository,
            diff=diff,
            files=paths,
            k=self._k(k),
            embedder=self.services.embedder,
        )
        rows = [self._hit(h, ("reasons",)) for h in hits]
        return {"repository": scope.repository, "input": "diff" if diff is not None else "files", "hits": rows}

    # -- runs ------------------------------------------------------------------------------------------------
    def _runs(self, repository: str, issue: int | None, pr: int | None, limit: int) -> list[dict[str, Any]]:
        return self.services.store.runs_of_item(repository, issue, pr, limit)

    def _last_events(self, keys: Sequence[str], per_run: int) -> dict[str, list[dict[str, Any]]]:
        """The newest events of each run, oldest first, leaving out the MCP call log itself (`mcp.*`): an
        agent asking what happened wants the run's decisions, not a page of its own tool calls."""
        if not keys:
            return {}
        with self.services.store.connect() as conn:
            rows = conn.execute(
                "SELECT * FROM (SELECT e.*, row_number() OVER (PARTITION BY correlation_key ORDER BY id DESC) AS rn"
                " FROM flow_events e WHERE correlation_key = ANY(%s) AND event_type NOT LIKE 'mcp.%%') last"
                " WHERE rn <= %s ORDER BY correlation_key, id",
                (list(keys), per_run),
            ).fetchall()
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in keys}
        for r in rows:
            out[r["correlation_key"]].append(
                {
                    "type": r["event_type"],
                    "actor": f"{r['actor_type']}:{r['actor_id']}",
                    "at": _iso(r["created_at"]),
                    "payload": r["payload"],
                }
            )
        return out

    @staticmethod
    def _run(row: dict[str, Any], scope: RunScope) -> dict[str, Any]:
        return {
            "run": row["correlation_key"],
            "current": row["correlation_key"] == scope.run_key,
            "stage": row["stage"],
            "revise": bool(row["revise"]),
            "role": row["role"],
            "status": row["status"],
            "issue": row["issue_number"],
            "pr": row["pr_number"],
            "dagster_run_id": row["dagster_run_id"],
            "created_at": _iso(row["created_at"]),
            "started_at": _iso(row["started_at"]),
            "finished_at": _iso(row["finished_at"]),
        }

    def runs_list(self, token: str, limit: int) -> dict[str, Any]:
        scope = self.scope(token)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_RUNS:
            raise ArgumentError("limit", f"must be an integer from 1 to {MAX_RUNS}")
        rows = self._runs(scope.repository, scope.issue_number, scope.pr_number, limit)
        return {
            "repository": scope.repository,
            "issue": scope.issue_number,
            "pr": scope.pr_number,
            "runs": [self._run(r, scope) for r in rows],
        }

    def run_lookup(self, token: str, issue: int | None, pr: int | None) -> dict[str, Any]:
        """Any issue or PR of the token's repository (history is read-only and useful across linked issues and
        PRs); never another repository — the token decides which one."""
        scope = self.scope(token)
        if issue is not None and pr is not None:
            raise ArgumentError("issue", "give either 'issue' or 'pr', not both")
        for name, value in (("issue", issue), ("pr", pr)):
            if value is not None and (isinstance(value, bool) or not 1 <= value <= MAX_NUMBER):
                raise ArgumentError(name, f"must be an issue/PR number from 1 to {MAX_NUMBER}")
        if issue is None and pr is None:
            issue, pr = scope.issue_number, scope.pr_number
        rows = self._runs(scope.repository, issue, pr, 20)
        keys = [r["correlation_key"] for r in rows]
        events = self._last_events(keys, EVENTS_PER_RUN)
        usage = usage_for_runs(self.services.store, keys)
        runs = [
            {**self._run(r, scope), "usage": _usage(usage.get(r["correlation_key"])),
             "last_events": events.get(r["correlation_key"], [])}
            for r in rows
        ]  # fmt: skip
        return {"repository": scope.repository, "issue": issue, "pr": pr, "runs": runs}

    def budget_status(self, token: str) -> dict[str, Any]:
        """What this run's budgets have left: the run's own cap (enforced by the runner as the agent reports its
        usage), and the issue, repository and agent budgets as spent and held so far."""
        scope = self.scope(token)
        config = load_config_from_environment()
        budgets = config.budgets.budgets()
        currency = config.pricing.currency
        run = self.services.store.get_run(scope.run_key)
        agent = agent_name_for_role(run["role"] if run else "")
        spent_now = spent(self.services.store, scope.repository, scope.issue_number, agent)
        limits: list[dict[str, Any]] = []
        for budget_scope in Scope:
            limit = budgets.limit(budget_scope)
            used = spent_now.get(budget_scope, Amount()) if budget_scope is not Scope.RUN else None
            if limit.cost is not None:
                limits.append(_left(budget_scope, currency, limit.cost, used.cost if used else None))
            if limit.tokens is not None:
                limits.append(_left(budget_scope, "tokens", limit.tokens, used.tokens if used else None))
        return {
            "repository": scope.repository,
            "issue": scope.issue_number,
            "agent": agent,
            "limits": limits,
            "note": "no budget is configured"
            if not limits
            else (
                "the run's own cap is checked against your usage reports as you work; "
                "other scopes count spent and held amounts of every run"
            ),
        }

    def issue_trace(self, token: str, issue: int | None) -> dict[str, Any]:
        """The whole story of an issue of the token's repository (label decisions, approvals, runs with their
        outcome and cost, PRs, reviews), oldest first; the same timeline as `codexk8s trace`."""
        from ..insight.trace import issue_trace

        scope = self.scope(token)
        if issue is not None and (isinstance(issue, bool) or not 1 <= issue <= MAX_NUMBER):
            raise ArgumentError("issue", f"must be an issue number from 1 to {MAX_NUMBER}")
        number = issue if issue is not None else (scope.issue_number or scope.pr_number)
        if number is None:
            raise ArgumentError("issue", "this run has no issue: give one")
        return issue_trace(self.services.store, scope.repository, number).to_dict()

    # -- status ----------------------------------------------------------------------------------------------
    @staticmethod
    def _status_line(text: str, title: str, at: float) -> str:
        """One line, in inline code: no mention pings, no markdown or HTML from the agent reaches the thread, and
        no HTML comment (`inert`): another run's marker in it would make the platform take this comment for that
        run's."""
        when = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"{STATUS_MARKER} **{title}** ({when}): `{inert(text.replace('`', chr(39)))}`"

    @staticmethod
    def with_status(body: str, line: str) -> str:
        kept = [x for x in body.splitlines() if STATUS_MARKER not in x]
        while kept and not kept[-1].strip():
            kept.pop()
        return "\n".join([*kept, "", line])

    def _update_comment(self, scope: RunScope, run: dict[str, Any] | None, status: str, at: float) -> dict[str, Any]:
        from ..github.service_comment import COMMENT_EVENT, RunView, comment_id, find_comment, render, run_url

        missing = self.services.github_missing_reason()
        if missing:
            return {"updated": False, "reason": f"GitHub is not configured ({missing}); the status is audited only"}
        store = self.services.store
        number = comment_number(scope.run_key, scope.issue_number, scope.pr_number)
        title = _STATUS_TITLE.get(self.services.locale, _STATUS_TITLE["en"])
        line = self._status_line(status, title, at)
        try:
            api = self.services.repo_api(scope.repository)
            recorded = comment_id(store, scope.run_key)  # one read of the run's audit trail
            found = find_comment(api, number, scope.run_key, recorded)
            if found is not None:
                posted = int(found["id"])
                api.edit_comment(posted, redact_text(self.with_status(str(found.get("body") or ""), line)))
                action = "edited"
            elif run is not None:
                dagster_run = run.get("dagster_run_id")
                view = RunView(
                    correlation_key=scope.run_key,
                    phase="started",
                    stage=run.get("stage"),
                    revise=bool(run.get("revise")),
                    role=str(run.get("role") or "agent"),
                    locale=self.services.locale,
                    run_url=run_url(dagster_run) if dagster_run else None,
                )
                body = redact_text(self.with_status(render(view), line))
                posted = int(api.create_comment(number, body)["id"])
                action = "created"
            else:
                return {"updated": False, "reason": "the run has no service comment and no run record to start one"}
        except ToolError:
            raise
        except Exception as exc:  # the status is already audited; the comment is best effort
            return {"updated": False, "reason": str(_github_failure("service comment", exc))}
        if recorded != posted:
            store.append_event(scope.run_key, COMMENT_EVENT, "system", ACTOR, {"comment_id": posted, "phase": "status"})
        return {"updated": True, "action": action, "number": number, "comment_id": posted}

    @cached_property
    def status_pacer(self) -> StatusPacer[StatusUpdate]:
        """Paces the comment edits of `run_status_report` (status_pacing.py): one run's one at a time, at most one
        an interval, the newest status last. The server sets its own, built from its limits."""
        return StatusPacer(self.publish_status, interval=STATUS_EDIT_INTERVAL_SECONDS)

    def publish_status(self, update: StatusUpdate) -> dict[str, Any]:
        """Show one reported status on its run's service comment (called by the pacer, maybe an interval later).

        The run is read again first: a status held back while the run finished is not shown, as the platform's own
        finishing edit of the comment says what became of the run, and an edit from a read made before it would
        write the "started" comment back over it (review 39)."""
        scope, _, status, at = update
        run = self.services.store.get_run(scope.run_key)
        if run is not None and run.get("status") in FINISHED:
            return {"updated": False, "reason": f"the run has {run['status']}; its comment shows the outcome"}
        return self._update_comment(scope, run, status, at)

    def run_status_report(self, token: str, status_line: str) -> dict[str, Any]:
        scope = self.scope(token)
        self._may(scope, "run_status_report")
        if not isinstance(status_line, str) or not status_line.strip():
            raise ArgumentError("status_line", "must not be empty: one line saying what you are doing")
        too_long = ArgumentError("status_line", f"is longer than {MAX_STATUS_CHARS} characters; keep it to one line")
        if len(status_line) > MAX_STATUS_RAW_CHARS:  # before any pattern runs on it: the text is the agent's
            raise too_long
        text = redact_text(_WS.sub(" ", status_line).strip())
        if len(text) > MAX_STATUS_CHARS:
            raise too_long
        at = self.services.clock()
        store = self.services.store
        event_id = store.append_event(
            scope.run_key, "run.agent.status_reported", "agent", ACTOR, {"status": text, "via": "mcp"}
        )
        run = store.get_run(scope.run_key)
        update = (scope, run, text, at)
        # Without GitHub there is no comment to pace: say so at once rather than promise an edit later.
        paced = self.services.github_missing_reason() is None
        comment = self.status_pacer.report(scope.run_key, event_id, update) if paced else self.publish_status(update)
        return {"run": scope.run_key, "status": text, "event_id": event_id, "comment": comment}

    # -- labels ----------------------------------------------------------------------------------------------
    def _api(self, scope: RunScope) -> Any:
        missing = self.services.github_missing_reason()
        if missing:
            raise ToolError(f"GitHub is not configured: {missing}")
        return self.services.repo_api(scope.repository)

    def _describe_labels(self, names: Sequence[str]) -> list[dict[str, str]]:
        return [{"name": n, "kind": self.services.labels.parse(n).kind.value} for n in names]

    @staticmethod
    def _names(data: dict[str, Any]) -> list[str]:
        return list(label_names(data))

    def github_labels_list(self, token: str) -> dict[str, Any]:
        scope = self.scope(token)
        api = self._api(scope)
        items = []
        for number in scope.numbers:
            try:
                data = api.issue(number)
            except Exception as exc:
                raise _github_failure(f"reading #{number}", exc) from None
            items.append(
                {
                    "number": number,
                    "pull_request": "pull_request" in data,
                    "labels": self._describe_labels(self._names(data)),
                }
            )
        return {"repository": scope.repository, "items": items}

    def _allowed(self, argument: str, label: str) -> str:
        """The canonical name of a label an agent may set or remove, or an `ArgumentError` saying why not.

        The rule is the domain's (`domain.agent_labels`): only the platform's `state:*`/`need:*` labels, and none
        that starts or approves runs (`run:*`, `need:reviewer`, `state:approved`, the budgets' override label),
        which an agent — writing with the platform's own credential — could otherwise start runs with."""
        try:
            return agent_label(label, self.services.labels, self.services.budget_override_label)
        except LabelRefused as exc:
            # The domain's messages hold a label only up to GitHub's length; a longer one is shown as its start.
            shown_label = f": {shown(label, MAX_LABEL_CHARS)}" if len(label) > MAX_LABEL_CHARS else ""
            raise ArgumentError(argument, f"{exc}{shown_label}") from None

    def _run_role(self, scope: RunScope) -> str | None:
        """The run's role: the token's signed claim, else the role the platform recorded for the run."""
        if scope.role:
            return scope.role
        run = self.services.store.get_run(scope.run_key)
        return str(run["role"]) if run and run.get("role") else None

    def _check_removals(self, api: Any, scope: RunScope, target: int, names: Sequence[str]) -> None:
        """Refuse, before anything changes, to take off a label that is not the agent's own (`removal_refusal`):
        `need:<its role>`, or a label its own run put on `target`, as its `run.labels.changed` rows tell, and that
        no one else put back since (the item's events: the newest `labeled` one is the platform account's)."""
        if not names:
            return
        changes = [
            e["payload"] or {}
            for e in self.services.store.events(scope.run_key)
            if e["event_type"] == "run.labels.changed" and e["actor_type"] == "agent"
        ]
        own = labels_put_by_run(changes, target)
        role = self._run_role(scope)
        owned = [n for n in names if normalize(n) in own]
        platform_put: set[str] = set()
        if owned:
            try:
                events = [IssueEvent.parse(e) for e in api.issue_events(target).items]
                login = api.own_login()
            except Exception as exc:
                raise _github_failure(f"reading the labels' history of #{target}", exc) from None
            history = [(e.event, e.label, e.actor.login) for e in events]
            who = {n: last_labeller(history, n) for n in owned}
            platform_put = {n for n, by in who.items() if login and by and by.lower() == login.lower()}
        for name in names:
            problem = removal_refusal(name, self.services.labels, role, own, name in platform_put)
            if problem is not None:
                raise ArgumentError("remove", problem)

    def _label_list(self, argument: str, values: list[str] | None) -> list[str]:
        if values is None:
            return []
        out: list[str] = []
        for value in values:
            if not isinstance(value, str) or not value.strip():
                raise ArgumentError(argument, "labels must be non-empty strings")
            name = self._allowed(argument, value.strip())
            if name.lower() not in (x.lower() for x in out):
                out.append(name)
        if len(out) > MAX_LABELS:
            raise ArgumentError(argument, f"more than {MAX_LABELS} labels at once")
        return out

    def github_labels_transition(
        self, token: str, add: list[str] | None, remove: list[str] | None, number: int | None
    ) -> dict[str, Any]:
        scope = self.scope(token)
        self._may(scope, "github_labels_transition")
        if number is not None and number not in scope.numbers:
            own = ", ".join(f"#{n}" for n in scope.numbers)
            raise ArgumentError("number", f"#{number} is not this run's issue/PR ({own}); the token allows only those")
        target = number if number is not None else scope.numbers[0]
        to_add, to_remove = self._label_list("add", add), self._label_list("remove", remove)
        if not to_add and not to_remove:
            raise ArgumentError("add", "give at least one label in 'add' or 'remove'")
        both = sorted({a.lower() for a in to_add} & {r.lower() for r in to_remove})
        if both:
            raise ArgumentError("remove", f"{', '.join(both)} is both added and removed")
        api = self._api(scope)
        self._check_removals(api, scope, target, to_remove)
        added: list[str] = []
        removed: list[str] = []
        absent: list[str] = []
        put: list[str] = []
        failure: ToolError | None = None
        try:
            if to_add:
                before = {normalize(n) for n in self._names(api.issue(target))}
                new = [n for n in to_add if normalize(n) not in before]  # the run's own, which it may take off again
                api.add_labels(target, to_add)
                added, put = to_add, new
            for name in to_remove:
                (removed if api.remove_label(target, name) else absent).append(name)
            after = self._names(api.issue(target))
        except Exception as exc:
            failure = _github_failure(f"changing labels on #{target}", exc)
        finally:
            # What happened, also when GitHub failed half-way: a label added before the failure is the run's own,
            # which it may take off again (`labels_put_by_run`), and the audit has every change made.
            changed: dict[str, Any] = {
                "number": target, "added": {str(target): added}, "put": put, "removed": removed, "via": "mcp"
            }  # fmt: skip
            if failure is not None:
                changed["error"] = str(failure)
            if added or removed or failure is None:
                self.services.store.append_event(scope.run_key, "run.labels.changed", "agent", ACTOR, changed)
        if failure is not None:
            made = [f"added {', '.join(added)}"] if added else []
            made += [f"removed {', '.join(removed)}"] if removed else []
            raise ToolError(
                f"{failure}; before that, {' and '.join(made)} (see github_labels_list)"
                if made
                else f"{failure}; no label was changed"
            )
        return {
            "repository": scope.repository,
            "number": target,
            "added": to_add,
            "removed": removed,
            "not_present": absent,
            "labels": self._describe_labels(after),
        }
