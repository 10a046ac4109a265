"""The platform's MCP server (official SDK, `MCPServer`): run-scoped tools for the agent of one run.

Why a guard around every call rather than checks inside each tool: the audit trail must show every call,
including the ones the SDK would reject before a tool body runs (a missing argument, a wrong type). The guard
is an SDK `Extension` whose `intercept_tool_call` wraps `tools/call`: it verifies the token, writes
`mcp.tool.called` under the token's run key, checks the arguments (types and ranges from the tool's own
schema, and any `repository`/`issue`/`pr` argument against the token's scope), runs the tool, then writes
`mcp.tool.succeeded` or `mcp.tool.failed` with the reason. A call whose token does not verify is audited
under `mcp:unverified` (an expired token, whose signature was good, under its own run key).

Failures are tool results with `isError: true` and a message naming the argument or the check, the MCP way
for errors the model should read and correct; protocol errors are left to the SDK.

The guard also bounds what one caller may use (`limits.py` has the numbers and why): a token bucket per token and
one per peer address for calls whose token does not verify ("rate limited: ... retry after N s"), at most a few
calls of one token and a few more of the whole server at once (`throttle.py`), a statement timeout on every
connection to the platform database, and an audit of refused calls that counts each one but writes at most a few
rows per peer and minute (`refusals.py`). The service comment's edits are paced per run (`status_pacing.py`),
and over HTTP the server keeps no sessions and bounds what a request may cost before its token is read: requests in
flight per peer, body size, large bodies read at once and only with a token the platform signed (`http.py`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import anyio.to_thread
import psycopg
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import Extension, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools import Tool
from mcp_types import CallToolRequestParams, CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from ..domain.redaction import redact, redact_text
from .housekeeping import Housekeeping
from .http import serve_http
from .limits import McpLimits, with_statement_timeout
from .refusals import RefusalLog
from .status_pacing import StatusPacer
from .throttle import Busy, Throttle
from .tokens import RunScope, TokenError
from .tools import ACTOR, MAX_K, MAX_NUMBER, MAX_RUNS, ArgumentError, McpServices, PlatformTools, shown, storable

logger = logging.getLogger(__name__)

SERVER_NAME = "codexk8s"
UNVERIFIED_KEY = "mcp:unverified"
LOCAL_PEER = "local"  # the peer of a call with no network address (stdio, an in-process client)
DEFAULT_HTTP_PATH = "/mcp"
# Bounds on what one call can make the server keep or echo, applied before any redaction pattern runs: the
# arguments come from anyone who can reach the server, before their token is checked (attack review 26a).
MAX_AUDITED_CHARS = 1000  # a string argument (or list item) kept whole up to this; longer ones by length only
MAX_LIST_ITEMS = 50
MAX_AUDIT_CHARS = 8000  # all the arguments of one `mcp.tool.called` row, as JSON
# The `reason` of an `mcp.tool.failed` row: a message of ours is far shorter; one that echoes a caller's text at length
# (a 3.9 MB label name did, review 41) is cut here, however it came about.
MAX_REASON_CHARS = 1000
NOT_READ = "(not read)"  # the tool of a request the HTTP gate refused before reading it (`http.py`)
# Arguments no tool declares but an agent may well send: tolerated when they repeat the token's scope, refused
# (naming the argument) when they point anywhere else.
SCOPE_ARGUMENTS = {
    "repository": "repository",
    "repo": "repository",
    "issue": "issue",
    "issue_number": "issue",
    "pr": "pr",
    "pr_number": "pr",
    "pull_request": "pr",
    "run": "run",
    "run_key": "run",
    "correlation_key": "run",
}
INSTRUCTIONS = """\
Platform tools for the agent of one codex-k8s run. Every tool takes `token`: the run-scoped token the platform
gave you (environment variable CODEXK8S_MCP_TOKEN). The token fixes the repository, the issue/PR and the run;
the tools never act elsewhere. Failures come back as tool errors naming the argument or the check that failed."""

Token = Annotated[str, Field(description="The run-scoped token the platform gave this agent.")]
TopK = Annotated[int, Field(ge=1, le=MAX_K, description=f"How many results, 1..{MAX_K}.")]


# Optional issue/PR number arguments, bounded in the schema as the platform's tables store them.
IssueArg = Annotated[
    int | None, Field(ge=1, le=MAX_NUMBER, description="An issue of this repository (default: this run's).")
]
PrArg = Annotated[
    int | None, Field(ge=1, le=MAX_NUMBER, description="A pull request of this repository, instead of an issue.")
]
NumberArg = Annotated[
    int | None, Field(ge=1, le=MAX_NUMBER, description="This run's issue or PR (default: the issue).")
]


def _error(tool: str, message: str) -> CallToolResult:
    text = redact_text(f"Error executing tool {tool}: {message}")
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def _safe(result: dict[str, Any]) -> dict[str, Any]:
    """Results pass the same redaction as the audit: an indexed doc or an echoed argument never hands a
    credential-looking string (GitHub's or one of our run tokens) to the model."""
    return redact(result)


def _result_text(result: CallToolResult) -> str:
    text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
    return text.split(": ", 1)[1] if text.startswith("Error executing tool ") and ": " in text else text


def _bounded_reason(reason: str) -> str:
    """A failure's reason as the audit keeps it: at most MAX_REASON_CHARS, saying how much was cut."""
    if len(reason) <= MAX_REASON_CHARS:
        return reason
    return f"{reason[:MAX_REASON_CHARS]}... <cut: {len(reason) - MAX_REASON_CHARS} of {len(reason)} characters>"


def _argument_size(arguments: Mapping[str, Any]) -> int:
    """Roughly how much there is to check: the characters of the text arguments and the items of the lists."""
    return sum(len(v) if isinstance(v, str | list) else 1 for v in arguments.values())


def _audited_value(value: Any, top: bool = True) -> Any:
    """One argument as the audit keeps it: long text (a diff) as its length, a list as its first items, anything
    nested (no tool takes it) as its size only."""
    if isinstance(value, str):
        return f"<{len(value)} characters>" if len(value) > MAX_AUDITED_CHARS else storable(value)
    if isinstance(value, list):
        if not top:
            return f"<list of {len(value)} items>"
        kept = [_audited_value(v, top=False) for v in value[:MAX_LIST_ITEMS]]
        return kept + ([f"<{len(value) - MAX_LIST_ITEMS} more>"] if len(value) > MAX_LIST_ITEMS else [])
    if isinstance(value, dict):
        return f"<object with {len(value)} keys>"
    return value


def _called_payload(tool: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The `mcp.tool.called` row: the (shown) tool name and the arguments with no token at all, each bounded, and
    all of them within MAX_AUDIT_CHARS; when some do not fit, `truncated` says how many were left out."""
    out: dict[str, Any] = {}
    size = 0
    names = [n for n in arguments if n != "token"]
    for i, name in enumerate(names):
        entry = redact({shown(str(name)): _audited_value(arguments[name])})
        key, value = next(iter(entry.items()))
        cost = len(json.dumps(entry, ensure_ascii=False, default=str))
        if size + cost > MAX_AUDIT_CHARS:
            left = len(names) - i
            return {
                "tool": tool,
                "arguments": out,
                "truncated": f"{left} of {len(names)} arguments left out: the audit keeps {MAX_AUDIT_CHARS}"
                " characters of arguments per call",
            }
        while key in out:  # two long names cut to the same prefix
            key = f"{key} ({i})"
        out[key] = value
        size += cost
    return {"tool": tool, "arguments": out}


def _schema_types(schema: Mapping[str, Any]) -> set[str]:
    """The JSON types a property's schema allows (`type`, or the types of its `anyOf` branches)."""
    types: set[str] = {schema["type"]} if isinstance(schema.get("type"), str) else set(schema.get("type") or ())
    for branch in schema.get("anyOf") or ():
        types |= _schema_types(branch)
    return types


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


_TYPE_NAMES = {"integer": "an integer", "number": "a number", "boolean": "a boolean", "string": "a string"}


def _json_type(value: Any) -> str | None:
    """The JSON type of a scalar as the schema names it (2.0 is a number: pydantic then decides if it is whole)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


def _type_problem(tool: Tool, arguments: Mapping[str, Any]) -> str | None:
    """What pydantic's lax mode would let through although the schema says otherwise — a boolean for an integer
    (`k: true` would become 1), a string for a number or a boolean (`k: "3"`, `all_chunks: "yes"`), a number for a
    boolean (`all_chunks: 1`) — and NUL characters, which no text in the platform can hold. The schema is the
    contract an agent reads; the server takes what it says, no more."""
    properties = tool.parameters.get("properties", {})
    for name, value in arguments.items():
        if _has_nul(value) or "\x00" in name:
            return f"argument '{shown(name)}': must not contain NUL characters (\\u0000)"
        types = _schema_types(properties.get(name) or {}) - {"null"}
        kind = _json_type(value)
        if not types or kind is None or kind in types or (kind == "number" and "integer" in types):
            continue
        wanted = " or ".join(_TYPE_NAMES.get(t, t) for t in sorted(types))
        given = json.dumps(value[:40] if isinstance(value, str) else value)
        return f"argument '{shown(name)}': must be {wanted}, not {_TYPE_NAMES[kind]} ({given})"
    return None


def _summary(result: CallToolResult) -> dict[str, Any]:
    """What the audit says about a success: the sizes of the lists returned, not their (possibly long) text."""
    data = result.structured_content
    if not isinstance(data, dict):
        return {}
    return {f"{key}_count": len(value) for key, value in data.items() if isinstance(value, list)}


def _peer(ctx: ServerRequestContext[Any, Any]) -> str:
    """The caller's network address (the HTTP request's client), or `LOCAL_PEER` on stdio and in-process. It is the
    connection's: `http.py` tells uvicorn not to believe forwarded headers, which a caller writes itself."""
    client = getattr(ctx.request, "client", None)
    host = getattr(client, "host", None)
    return shown(str(host), 64) if host else LOCAL_PEER


def _validation_problems(exc: ValidationError) -> str:
    """Each failed argument by name, with pydantic's reason but never the rejected value (it may be long)."""
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        name = loc[0] if loc else "arguments"
        where = f"{name}[{'.'.join(loc[1:])}]" if len(loc) > 1 else name
        if err.get("type") == "missing":
            problems.append(f"argument '{where}' is required")
        else:
            problems.append(f"argument '{where}': {err.get('msg', 'invalid')}")
    return "; ".join(problems)


class RunScopeGuard(Extension):
    """Token, scope, arguments and audit around every `tools/call` (see the module docstring)."""

    identifier = "dev.codexk8s/run-scope"

    def __init__(self, platform: PlatformTools, tools: Mapping[str, Tool], limits: McpLimits | None = None) -> None:
        self.platform = platform
        self._by_name = dict(tools)
        self.limits = limits or McpLimits()
        self.throttle = Throttle(self.limits)
        self.refusals = RefusalLog(self.limits.refusal_window_seconds, self.limits.clock, UNVERIFIED_KEY)

    def settings(self) -> dict[str, Any]:
        return {"token": "every tool takes the run-scoped `token` argument"}

    async def _audit(self, key: str, event: str, payload: dict[str, Any]) -> None:
        store = self.platform.services.store
        if isinstance(payload.get("reason"), str):
            payload = {**payload, "reason": _bounded_reason(payload["reason"])}
        await anyio.to_thread.run_sync(lambda: store.append_event(key, event, "agent", ACTOR, payload))

    async def _refuse(
        self, key: str, peer: str, tool: str, arguments: Mapping[str, Any], kind: str, reason: str
    ) -> CallToolResult:
        """A call refused before the tool ran (its token, or its rate). The first of a window per key and peer is
        audited whole — two rows, as any call — and the rest counted into one row when the window closes
        (`refusals.py`): a flood cannot grow the audit, and the trail still has every attempt, at least as a count."""
        if self.refusals.record(key, peer, tool, kind):
            logger.warning("MCP call of %s refused for %s from %s: %s", tool, key, peer, reason)
            try:
                await self._audit(key, "mcp.tool.called", _called_payload(tool, arguments))
                await self._audit(key, "mcp.tool.failed", {"tool": tool, "reason": reason, "peer": peer})
            except Exception as exc:
                logger.warning("could not audit a refused MCP call of %s: %s", tool, type(exc).__name__)
        return _error(tool, reason)

    # -- the HTTP gate's questions (`http.Gatekeeper`) ----------------------------------------------------------------
    def token_signed(self, token: str) -> bool:
        """Whether `token` is one this platform signed (expired or not: the guard then says it expired)."""
        try:
            self.platform.verify(token)
        except TokenError as exc:
            return exc.reason == "expired"
        except ArgumentError:
            return False
        return True

    async def request_refused(self, peer: str, kind: str, reason: str) -> None:
        """A request the HTTP gate refused before it was read: counted as a refused call of `peer` with no token
        checked, the first of a window audited (`mcp.tool.failed`, the tool `(not read)`), as `_refuse` does."""
        peer = shown(peer, 64)
        if self.refusals.record(UNVERIFIED_KEY, peer, NOT_READ, kind):
            logger.warning("MCP request from %s refused before it was read: %s", peer, reason)
            try:
                await self._audit(UNVERIFIED_KEY, "mcp.tool.failed", {"tool": NOT_READ, "reason": reason, "peer": peer})
            except Exception as exc:
                logger.warning("could not audit a refused MCP request: %s", type(exc).__name__)

    def _scope_problem(self, tool: Tool, arguments: Mapping[str, Any], scope: RunScope) -> str | None:
        declared = set(tool.parameters.get("properties", {}))
        for name, value in arguments.items():
            if name in declared:
                continue
            kind = SCOPE_ARGUMENTS.get(name)
            if kind is None:
                return f"unknown argument '{shown(name)}'; {tool.name} takes: {', '.join(sorted(declared))}"
            if kind == "repository":
                ok = isinstance(value, str) and scope.owns_repository(value)
                own = scope.repository
            elif kind == "run":
                ok, own = value == scope.run_key, scope.run_key
            else:
                mine = scope.issue_number if kind == "issue" else scope.pr_number
                ok = mine is not None and not isinstance(value, bool) and value == mine
                own = f"#{mine}" if mine is not None else "none"
            if not ok:
                given = repr(value) if len(repr(value)) <= 100 else f"{repr(value)[:100]}..."
                return f"argument '{name}': {given} is outside this token's scope ({kind} {own})"
        return None

    async def intercept_tool_call(
        self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any], call_next: CallNext
    ) -> HandlerResult:
        # `name` is the caller's text: audited and echoed only as `shown` (bounded, NUL visible, secrets masked).
        name = shown(params.name)
        arguments = dict(params.arguments or {})
        peer = _peer(ctx)
        try:
            scope = self.platform.verify(arguments.get("token"))
        except (TokenError, ArgumentError) as exc:
            expired = exc.scope if isinstance(exc, TokenError) else None
            key = expired.run_key if expired else UNVERIFIED_KEY
            wait = self.throttle.unverified_wait(peer)
            if wait:
                return await self._refuse(
                    key, peer, name, arguments, "rate limited", self.throttle.unverified_limited(wait)
                )
            kind = f"token {exc.reason.replace('_', ' ')}" if isinstance(exc, TokenError) else "token missing"
            return await self._refuse(key, peer, name, arguments, kind, redact_text(str(exc)))
        wait = self.throttle.call_wait(scope.run_key)
        if wait:
            return await self._refuse(
                scope.run_key, peer, name, arguments, "rate limited", self.throttle.call_limited(wait)
            )
        try:
            async with self.throttle.slot(scope.run_key):
                return await self._guarded(scope, params, name, arguments, ctx, call_next)
        except Busy as busy:
            return await self._refuse(scope.run_key, peer, name, arguments, "busy", str(busy))

    async def _guarded(
        self,
        scope: RunScope,
        params: CallToolRequestParams,
        name: str,
        arguments: dict[str, Any],
        ctx: ServerRequestContext[Any, Any],
        call_next: CallNext,
    ) -> HandlerResult:
        """A verified call within its limits: audited, checked, run, and its outcome audited."""
        called = _called_payload(name, arguments)
        try:
            await self._audit(scope.run_key, "mcp.tool.called", called)
        except Exception as exc:
            logger.warning("could not audit an MCP call of %s: %s", name, type(exc).__name__)
            return _error(name, "the platform database is unavailable; calls are refused when they cannot be audited")

        problem: str | None
        tool = self._by_name.get(params.name)
        if tool is None:
            problem = f"unknown tool '{name}'; tools: {', '.join(sorted(self._by_name))}"
        else:
            problem = await self._permission_problem(scope, tool.name)
            problem = problem or _type_problem(tool, arguments) or self._scope_problem(tool, arguments, scope)
            if problem is None:
                try:
                    # Large arguments (a diff) are checked in a worker thread, not on the loop every caller shares.
                    if _argument_size(arguments) > self.limits.large_body_bytes:
                        await anyio.to_thread.run_sync(lambda: tool.fn_metadata.validate_arguments(arguments))
                    else:
                        tool.fn_metadata.validate_arguments(arguments)
                except ValidationError as exc:
                    problem = _validation_problems(exc)
                except Exception as exc:  # a value pydantic could not even look at
                    problem = f"the arguments could not be read ({type(exc).__name__})"
        if problem is not None:
            await self._finish(scope.run_key, "mcp.tool.failed", {"tool": name, "reason": redact_text(problem)})
            return _error(name, problem)

        try:
            result = await call_next(ctx)
        except Exception as exc:  # a protocol error (MCPError) goes back as such, but never unaudited
            await self._finish(scope.run_key, "mcp.tool.failed", {"tool": name, "reason": type(exc).__name__})
            raise
        if isinstance(result, CallToolResult) and result.is_error:
            reason = redact_text(_result_text(result))
            await self._finish(scope.run_key, "mcp.tool.failed", {"tool": name, "reason": reason})
            return _error(name, reason)
        summary = _summary(result) if isinstance(result, CallToolResult) else {}
        await self._finish(scope.run_key, "mcp.tool.succeeded", {"tool": name, **summary})
        return result

    async def _permission_problem(self, scope: RunScope, tool: str) -> str | None:
        """The run's role and state decide before the arguments (`PlatformTools.permission_problem`)."""
        try:
            return await anyio.to_thread.run_sync(lambda: self.platform.permission_problem(scope, tool))
        except Exception as exc:
            logger.warning("could not check the run of an MCP call of %s: %s", tool, type(exc).__name__)
            return "the platform database is unavailable; the run's role and state could not be checked"

    async def _finish(self, key: str, event: str, payload: dict[str, Any]) -> None:
        try:
            await self._audit(key, event, payload)
        except Exception as exc:  # the call already happened; losing its outcome row must not hide its result
            logger.warning("could not audit the outcome of an MCP call (%s): %s", event, type(exc).__name__)


class DocsHit(BaseModel):
    """One chunk of documentation: where it is (file, heading path, 1-based line range) and what it says."""

    repository: str
    path: str
    heading_path: list[str]
    start_line: int
    end_line: int
    score: float = Field(description="Fused relevance, higher is better (at most 1).")
    text: str


class DocsSearchResult(BaseModel):
    repository: str
    query: str
    path_prefix: str | None
    hits: list[DocsHit]


class ImpactHit(BaseModel):
    """A chunk a change concerns, with why (mentions of changed paths, similar meaning)."""

    repository: str
    path: str
    heading_path: list[str]
    start_line: int
    end_line: int
    score: float
    reasons: list[str]


class DocsImpactResult(BaseModel):
    repository: str
    input: Literal["diff", "files"]
    hits: list[ImpactHit]


def _tool(fn: Any, *, annotations: ToolAnnotations) -> Tool:
    """A tool as clients show it: the docstring without its source indentation as the description, and an
    input schema that says the declared arguments are all there is (`additionalProperties: false`; the guard
    still tolerates scope arguments that repeat the token's own scope)."""
    tool = Tool.from_function(fn, description=inspect.cleandoc(fn.__doc__ or ""), annotations=annotations)
    tool.parameters["additionalProperties"] = False
    return tool


def _database_bounded(fn: Any, timeout_ms: int) -> Any:
    """`fn` (a tool body), with a statement the server's timeout ended (`limits.STATEMENT_TIMEOUT_MS`) reported as
    what it is, instead of the SDK's bare "Error executing tool"; the signature stays `fn`'s (the input schema)."""

    @functools.wraps(fn)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except psycopg.errors.QueryCanceled:
            raise ToolError(
                f"the platform database did not answer within {timeout_ms / 1000:g} s (the server's statement"
                " timeout); try again later"
            ) from None

    return bounded


def _version() -> str:
    """The installed package's version: clients (the MCP Inspector) show it, and an empty one looks broken."""
    try:
        return importlib.metadata.version("codexk8s-pipelines")
    except importlib.metadata.PackageNotFoundError:
        return "0+unknown"


def _tools(platform: PlatformTools, limits: McpLimits) -> list[Tool]:
    """The tool functions: their signatures are the input schemas agents see, their docstrings the descriptions."""

    def _bounded_tool(fn: Any, *, annotations: ToolAnnotations) -> Tool:
        return _tool(_database_bounded(fn, limits.statement_timeout_ms), annotations=annotations)

    def docs_search(
        token: Token,
        query: Annotated[str, Field(min_length=1, description="What to look for, in words.")],
        path_prefix: Annotated[str | None, Field(description="Only docs under this path, e.g. 'docs/'.")] = None,
        k: TopK = 10,
        all_chunks: Annotated[
            bool, Field(description="Every matching chunk of a file (default: at most 2 per file).")
        ] = False,
    ) -> DocsSearchResult:
        """Search the docs of this run's repository (meaning and words, fused); returns chunks with their
        path, heading path, line range, score and text, at most two per file unless `all_chunks`."""
        return DocsSearchResult.model_validate(_safe(platform.docs_search(token, query, path_prefix, k, all_chunks)))

    def docs_change_impact(
        token: Token,
        diff: Annotated[str | None, Field(description="A unified diff of the change.")] = None,
        files: Annotated[list[str] | None, Field(description="Changed paths, instead of a diff.")] = None,
        k: TopK = 10,
    ) -> DocsImpactResult:
        """Which docs of this run's repository a change concerns (give `diff` or `files`, not both); returns
        doc chunks with the reasons they were picked."""
        return DocsImpactResult.model_validate(_safe(platform.docs_change_impact(token, diff, files, k)))

    def runs_list(
        token: Token,
        limit: Annotated[int, Field(ge=1, le=MAX_RUNS, description=f"At most this many runs, 1..{MAX_RUNS}.")] = 20,
    ) -> dict[str, Any]:
        """The platform runs of this run's issue/PR, newest first: stage, status, times, Dagster run id."""
        return _safe(platform.runs_list(token, limit))

    def run_lookup(
        token: Token,
        issue: IssueArg = None,
        pr: PrArg = None,
    ) -> dict[str, Any]:
        """Runs of an issue or PR of this run's repository with their last audit events (what earlier runs
        decided and did), newest run first."""
        return _safe(platform.run_lookup(token, issue, pr))

    def issue_trace(
        token: Token,
        issue: IssueArg = None,
    ) -> dict[str, Any]:
        """The whole story of an issue of this run's repository, oldest first: every label decision (run,
        refused, conflict, approval requested/granted/expired), every run with its Dagster link, outcome,
        duration, tokens and cost, the PRs, reviews and revise loops, and who did what."""
        return _safe(platform.issue_trace(token, issue))

    def budget_status(token: Token) -> dict[str, Any]:
        """What the budgets of this run have left: its own cap, and its issue's, repository's (day, month) and
        agent's (day) budgets with what is used and held. Each entry: scope, unit (a currency or tokens), cap,
        used, left."""
        return _safe(platform.budget_status(token))

    def run_status_report(
        token: Token,
        status_line: Annotated[str, Field(min_length=1, description="One line: what you are doing now.")],
    ) -> dict[str, Any]:
        """Report progress: audited for this run at once and shown as the latest agent status in its service
        comment, which is edited at most once a minute (a newer status replaces one still waiting)."""
        return _safe(platform.run_status_report(token, status_line))

    def github_labels_list(token: Token) -> dict[str, Any]:
        """The labels of this run's issue and/or PR, each with its kind (run, state, need, mode, model, ...)."""
        return _safe(platform.github_labels_list(token))

    def github_labels_transition(
        token: Token,
        add: Annotated[list[str] | None, Field(description="state:* / need:* labels to add.")] = None,
        remove: Annotated[list[str] | None, Field(description="state:* / need:* labels to remove.")] = None,
        number: NumberArg = None,
    ) -> dict[str, Any]:
        """Add or remove platform state:/need: labels on this run's own issue or PR. Labels that start or approve
        runs (run:*, need:reviewer, state:approved, the budget override label) and labels outside those groups are
        refused, both ways; you may remove only need:<your role> and labels this run added."""
        return _safe(platform.github_labels_transition(token, add, remove, number))

    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)
    writes = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
    return [
        _bounded_tool(docs_search, annotations=read_only),
        _bounded_tool(docs_change_impact, annotations=read_only),
        _bounded_tool(runs_list, annotations=read_only),
        _bounded_tool(run_lookup, annotations=read_only),
        _bounded_tool(issue_trace, annotations=read_only),
        _bounded_tool(budget_status, annotations=read_only),
        _bounded_tool(run_status_report, annotations=writes),
        _bounded_tool(github_labels_list, annotations=ToolAnnotations(read_only_hint=True)),
        _bounded_tool(github_labels_transition, annotations=writes),
    ]


class PlatformServer(MCPServer[Any]):
    """The SDK's server, with the guard of its calls as the keeper of its HTTP front (`http.py`): the gate asks it
    for the limits, whether a large request's token is the platform's, and to audit the requests it refuses."""

    gatekeeper: RunScopeGuard


def build_server(
    services: McpServices,
    *,
    limits: McpLimits | None = None,
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "WARNING",
) -> PlatformServer:
    """One server for one set of services, within `limits` (default: `McpLimits()`); `mcp.Client(server)` talks to
    it in-process (tests).

    Its connections to the platform database (store, docs search, audit) carry the statement timeout: the server
    works on a copy of `services` whose URL says so."""
    limits = limits or McpLimits()
    bounded = with_statement_timeout(services.database_url, limits.statement_timeout_ms)
    platform = PlatformTools(dataclasses.replace(services, database_url=bounded))
    platform.status_pacer = StatusPacer(
        platform.publish_status, interval=limits.status_edit_interval_seconds, clock=limits.clock
    )
    tools = _tools(platform, limits)
    guard = RunScopeGuard(platform, {t.name: t for t in tools}, limits)
    housekeeping = Housekeeping(
        lambda: platform.services.store, guard.refusals, platform.status_pacer, limits.housekeeping_seconds
    )
    server = PlatformServer(
        SERVER_NAME,
        instructions=INSTRUCTIONS,
        version=_version(),
        tools=tools,
        extensions=[guard],
        log_level=log_level,
        lifespan=housekeeping.lifespan(),
    )
    server.gatekeeper = guard
    return server


def serve(transport: Literal["stdio", "http"] = "stdio", host: str = "127.0.0.1", port: int = 8765) -> None:
    """Run until stopped: stdio for an agent that starts the server itself, streamable HTTP at `/mcp` otherwise
    (stateless: no sessions, see `http.py`)."""
    server = build_server(McpServices.from_environment(), log_level="INFO")
    if transport == "stdio":
        server.run("stdio")
    else:
        serve_http(server, host, port, DEFAULT_HTTP_PATH)
