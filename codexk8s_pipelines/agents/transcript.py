"""What an agent program said about its own run, read once from its output: the one place that knows the four
agents' event formats.

Each supported agent is run in its machine-readable mode (Codex `exec --json`, Claude Code
`--output-format stream-json --verbose`, OpenCode `run --format json`; aider has none and is read from its text
lines and its local analytics log). The runner keeps those lines; `read_transcript` turns them into a
`Transcript`: the session id (for resuming a revise), every tool call with its status, the agent's own errors,
its last message, whether it reported the run as an error, and whether it ever got a model answer. The outcome
judge (`outcome.py`) and the usage parsers (`usage.py`) work from it; so does the compact log line the runner
prints instead of raw JSON.

Pure: no I/O beyond the lines and files handed in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..domain.untrusted_data import UntrustedDataError, loads_json

AgentKind = Literal["codex", "claude-code", "opencode", "aider", "custom"]

# What the agents print while their model endpoint cannot be reached (Codex retries forever; aider for 80 s).
_UNREACHABLE = re.compile(
    r"Reconnecting\.\.\. waiting for network|error sending request|Connection refused|ConnectionRefused|"
    r"APIConnectionError|Connection error|Unable to connect|ECONNREFUSED|Failed to connect|"
    r"connect(ion)? timed out|Name or service not known|getaddrinfo|No route to host",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ToolCall:
    """One tool the agent used: a shell command, a file edit, an MCP tool."""

    kind: str
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Transcript:
    """The parts of an agent's output the platform judges and reports on."""

    kind: str
    session_id: str | None = None
    tools: list[ToolCall] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    final_message: str | None = None
    is_error: bool = False
    model_answered: bool = False
    unreachable: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    text_lines: list[str] = field(default_factory=list)

    @property
    def all_tools_failed(self) -> bool:
        return bool(self.tools) and all(not t.ok for t in self.tools)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_object(line: str) -> dict[str, Any] | None:
    """The line as one JSON object, or None. Strict, because the agent can write these lines (a tool command may
    write to the agent program's own output): `NaN`/`Infinity` are refused (no agent prints them; a count read as
    NaN broke the usage meter), and so is nesting too deep to decode (a RecursionError ended the runner's
    reading of the agent's output)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        value = loads_json(line, "a line of the agent's output", parse_constant=_no_constant)
    except UntrustedDataError:
        return None
    return value if isinstance(value, dict) else None


def read_transcript(kind: str, lines: Iterable[str]) -> Transcript:
    """The transcript of one run from the agent's output lines (stdout and stderr, in order)."""
    transcript = Transcript(kind=kind)
    for line in lines:
        event = json_object(line)
        if event is None:
            transcript.text_lines.append(line)
            if _UNREACHABLE.search(line):
                transcript.unreachable = True
            continue
        reader = _READERS.get(kind)
        if reader is not None:
            try:
                reader(transcript, event)
            except (AttributeError, TypeError, ValueError, KeyError):  # `"item": "x"` where an object belongs
                transcript.text_lines.append(line)  # not an event of the agent's: the agent's process wrote it
                continue
        transcript.events.append(event)
    if kind == "aider":
        _read_aider_text(transcript)
    if transcript.model_answered:
        transcript.unreachable = False  # a network hiccup the agent recovered from is not an unreachable model
    return transcript


# ------------------------------------------------------------------------------------------------ Codex


def _codex(t: Transcript, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if kind == "thread.started":
        t.session_id = str(event.get("thread_id") or "") or t.session_id
    elif kind == "error":
        message = str(event.get("message") or "")
        t.errors.append(message)
        if _UNREACHABLE.search(message):
            t.unreachable = True
    elif kind == "turn.failed":
        t.is_error = True
        message = str((event.get("error") or {}).get("message") or "the turn failed")
        if message not in t.errors:
            t.errors.append(message)
    elif kind == "turn.completed":
        t.model_answered = True
    elif kind == "item.completed":
        item = event.get("item") or {}
        itype = item.get("type")
        t.model_answered = True
        if itype == "agent_message":
            t.final_message = str(item.get("text") or "")
        elif itype == "command_execution":
            ok = item.get("status") == "completed" and item.get("exit_code") in (0, None)
            t.tools.append(ToolCall("command", str(item.get("command") or ""), ok, f"exit {item.get('exit_code')}"))
        elif itype == "file_change":
            paths = ", ".join(str(c.get("path")) for c in item.get("changes") or [])
            t.tools.append(ToolCall("edit", paths, item.get("status") == "completed"))
        elif itype == "mcp_tool_call":
            name = f"{item.get('server')}.{item.get('tool')}"
            result = item.get("result") or {}
            failed = item.get("error") or result.get("isError") or result.get("is_error")
            ok = item.get("status") == "completed" and not failed
            t.tools.append(ToolCall("mcp", name, ok, str(item.get("error") or "")[:200]))
        elif itype == "error":
            t.errors.append(str(item.get("message") or ""))


# ------------------------------------------------------------------------------------------------ Claude Code


def _claude(t: Transcript, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if event.get("session_id"):
        t.session_id = str(event["session_id"])
    if kind == "assistant":
        message = event.get("message") or {}
        if message.get("model") == "<synthetic>":  # Claude Code's own words (an API error), not the model's
            for block in message.get("content") or []:
                text = str(block.get("text") or "")
                t.errors.append(text)
                if _UNREACHABLE.search(text):
                    t.unreachable = True
            return
        t.model_answered = True
        for block in message.get("content") or []:
            if block.get("type") == "text":
                t.final_message = str(block.get("text") or "")
    elif kind == "user":
        for block in (event.get("message") or {}).get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                content = block.get("content")
                detail = content if isinstance(content, str) else json.dumps(content)[:200]
                t.tools.append(ToolCall("tool", str(block.get("tool_use_id") or ""), not block.get("is_error"), detail))
    elif kind == "result":
        t.is_error = bool(event.get("is_error"))
        if event.get("result") is not None:
            t.final_message = str(event.get("result"))
        if t.is_error:
            t.errors.append(str(event.get("result") or event.get("subtype") or "the agent reported an error"))
            if _UNREACHABLE.search(str(event.get("result") or "")):
                t.unreachable = True
        for denial in event.get("permission_denials") or []:
            t.errors.append(f"permission denied: {denial.get('tool_name', denial)}")
        if event.get("terminal_reason") == "api_error":
            t.is_error = True


# ------------------------------------------------------------------------------------------------ OpenCode


def _opencode(t: Transcript, event: dict[str, Any]) -> None:
    kind = event.get("type")
    if event.get("sessionID"):
        t.session_id = str(event["sessionID"])
    part = event.get("part") or {}
    if kind == "step_finish":
        t.model_answered = True
    elif kind == "text":
        t.final_message = str(part.get("text") or "")
    elif kind == "tool_use":
        state = part.get("state") or {}
        tool = str(part.get("tool") or "")
        exit_code = (state.get("metadata") or {}).get("exit")
        ok = state.get("status") == "completed" and tool != "invalid" and exit_code in (0, None)
        t.tools.append(ToolCall("tool", tool, ok, str(state.get("error") or state.get("title") or "")))
    elif kind == "error":
        error = event.get("error") or {}
        message = str((error.get("data") or {}).get("message") or error.get("name") or error or "error")
        t.errors.append(message)
        t.is_error = True
        if _UNREACHABLE.search(message):
            t.unreachable = True


# ------------------------------------------------------------------------------------------------ aider

_AIDER_APPLIED = re.compile(r"^Applied edit to (.+)$")
_AIDER_FAILED = re.compile(r"^(\d+ )?SEARCH/REPLACE blocks? failed to match|^Failed to apply edit")
_AIDER_TOKENS = re.compile(r"^Tokens: ")


def _read_aider_text(t: Transcript) -> None:
    for line in t.text_lines:
        text = line.strip()
        applied = _AIDER_APPLIED.match(text)
        if applied:
            t.tools.append(ToolCall("edit", applied.group(1), True))
        elif _AIDER_FAILED.match(text):
            t.tools.append(ToolCall("edit", "", False, text))
        if _AIDER_TOKENS.match(text):
            t.model_answered = True


_READERS = {"codex": _codex, "claude-code": _claude, "opencode": _opencode}


def describe_line(kind: str, line: str, one: Transcript | None = None) -> str | None:
    """A short human line for one output line of the agent, or None to leave it out of the log.

    The machine-readable modes print whole JSON objects (the first one can echo the prompt); the log shows what
    happened instead: commands with their exit code, edits, tool calls, messages and errors. `one`: the line
    already read as a transcript (`read_transcript(kind, [line])`), when the caller has it.
    """
    parsed = one.events if one is not None else [json_object(line)]
    event = parsed[0] if parsed else None
    if event is None:
        return line
    etype = str(event.get("type") or "")
    if kind == "codex":
        item = event.get("item") or {}
        if etype == "item.completed":
            itype = item.get("type")
            if itype == "command_execution":
                return f"$ {item.get('command')} → exit {item.get('exit_code')} ({item.get('status')})"
            if itype == "file_change":
                paths = ", ".join(f"{c.get('kind')} {c.get('path')}" for c in item.get("changes") or [])
                return f"edit {paths} ({item.get('status')})"
            if itype == "agent_message":
                return f"message: {_short(item.get('text'))}"
            if itype == "mcp_tool_call":
                return f"mcp {item.get('server')}.{item.get('tool')} ({item.get('status')})"
            return None
        if etype in ("error", "turn.failed"):
            return f"error: {_short(event.get('message') or (event.get('error') or {}).get('message'))}"
        if etype == "turn.completed":
            return f"turn completed: {json.dumps(event.get('usage') or {}, sort_keys=True)}"
        if etype == "thread.started":
            return f"session {event.get('thread_id')}"
        return None
    if kind == "claude-code":
        if etype == "system":
            return f"session {event.get('session_id')} ({event.get('model')})"
        if etype == "assistant":
            parts = []
            for block in (event.get("message") or {}).get("content") or []:
                if block.get("type") == "tool_use":
                    parts.append(f"tool {block.get('name')} {_short(json.dumps(block.get('input')))}")
                elif block.get("type") == "text":
                    parts.append(f"message: {_short(block.get('text'))}")
            return "; ".join(parts) or None
        if etype == "user":
            results = [
                f"tool result ({'error' if b.get('is_error') else 'ok'}) {_short(b.get('content'))}"
                for b in (event.get("message") or {}).get("content") or []
                if isinstance(b, dict) and b.get("type") == "tool_result"
            ]
            return "; ".join(results) or None
        if etype == "result":
            return (
                f"result: {event.get('subtype')} is_error={event.get('is_error')} turns={event.get('num_turns')} "
                f"cost={event.get('total_cost_usd')}"
            )
        return None
    if kind == "opencode":
        part = event.get("part") or {}
        if etype == "tool_use":
            state = part.get("state") or {}
            return f"tool {part.get('tool')} {_short(state.get('title'))} ({state.get('status')})"
        if etype == "text":
            return f"message: {_short(part.get('text'))}"
        if etype == "error":
            return f"error: {_short(json.dumps(event.get('error')))}"
        if etype == "step_finish":
            return f"step finished: {json.dumps(part.get('tokens') or {}, sort_keys=True)} cost={part.get('cost')}"
        return None
    return _short(line, 400)


def _short(value: Any, limit: int = 160) -> str:
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
