"""A scripted model on loopback: the real agent programs (Codex CLI, Claude Code, OpenCode, aider) talk to it as
if it were their model provider, and it answers with a fixed script.

No model provider is reachable from the test machines, but the agents' real binaries are, and each can be
pointed at a local HTTP server. This one speaks the three wire protocols those agents use:

- the Responses API (`POST /v1/responses`, SSE) for Codex;
- the Messages API (`POST /v1/messages`, SSE, plus `GET /api/hello`) for Claude Code;
- Chat Completions (`POST /v1/chat/completions`, SSE or not) for OpenCode and aider; `GET /v1/models` too.

A test gives it a script: a list of steps, one per model turn. A step is a tool call (run a shell command,
write a file, call any tool the agent offers, e.g. an MCP tool), a final message, or an HTTP error. The server
translates each step into the protocol of the request it answers, and into the tool the agent offered for it
(`exec_command`/`shell` for Codex, `Bash` for Claude, `bash` for OpenCode); aider has no tools, so its file edits
are SEARCH/REPLACE blocks in the message text. Every request is recorded (path, headers, JSON body) so that a
test asserts what the platform and the agent sent: the prompt, the model, the reasoning effort, the MCP tools.

Requests that are not the agent's main loop (a title or topic summary, a quota probe: requests without tools
while the script expects tool calls) are answered with a short text and do not consume the script.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ------------------------------------------------------------------------------------------------ script steps


@dataclass(frozen=True)
class Shell:
    """Run a shell command with the agent's own command tool."""

    command: str


@dataclass(frozen=True)
class WriteFile:
    """Create or overwrite a file with the agent's own edit tool (Codex `apply_patch`, Claude `Write`, ...)."""

    path: str
    content: str


LAST_OUTPUT = "{{last_output}}"
"""In `CallTool` arguments: the last line of the previous tool call's output, as the agent sent it back (how a
real model would use a value it just read, e.g. `printenv CODEXK8S_MCP_TOKEN`)."""


@dataclass(frozen=True)
class CallTool:
    """Call a tool by (a suffix of) the name the agent offered, e.g. `run_status_report` of an MCP server."""

    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class Say:
    """The final assistant message of the turn; for aider it may carry SEARCH/REPLACE edit blocks."""

    text: str


@dataclass(frozen=True)
class HttpError:
    """Answer the request with an HTTP error instead of a model turn."""

    status: int = 500
    message: str = "scripted failure"


Step = Shell | WriteFile | CallTool | Say | HttpError

USAGE = {"input": 1200, "cached": 200, "output": 80, "reasoning": 16}
"""The token counts every scripted turn reports, so usage parsing can be checked against exact figures."""


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    step: Step | None = None
    at: float = field(default_factory=time.time)
    """When the request arrived (wall clock), and when its answer was sent: for benchmarks."""
    done_at: float | None = None

    @property
    def text(self) -> str:
        """The whole request body as text: to assert that a prompt or a setting reached the model."""
        return json.dumps(self.body, ensure_ascii=False) if self.body is not None else ""

    def tool_names(self) -> list[str]:
        """The tools the agent offered in this request (with those Codex handed back after a tool search)."""
        tools = (self.body or {}).get("tools") or [] if isinstance(self.body, dict) else []
        names = []
        for tool in tools:
            name = tool.get("name") or (tool.get("function") or {}).get("name")
            if name:
                names.append(str(name))
        searched = [t["name"] for t in _searched_tools(self.body) if t["name"] not in names]
        return names + searched


@dataclass
class _State:
    steps: list[Step] = field(default_factory=list)
    position: int = 0
    requests: list[Recorded] = field(default_factory=list)
    ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    lock: threading.Lock = field(default_factory=threading.Lock)
    delay_seconds: float = 0.0
    workdir: str = ""


class ModelServer:
    """The scripted model, started on 127.0.0.1 on a free port; `script()` sets the steps of the next run."""

    def __init__(self) -> None:
        self._state = _State()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self._state))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="model-server", daemon=True)

    # lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> ModelServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # what tests use -------------------------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL without `/v1` (Claude's `ANTHROPIC_BASE_URL`)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def v1(self) -> str:
        """The OpenAI-style base URL with `/v1` (Codex provider, OpenCode, aider)."""
        return f"{self.url}/v1"

    def script(self, *steps: Step, delay_seconds: float = 0.0, workdir: str | os.PathLike[str] = "") -> None:
        """Replace the script; `delay_seconds` is how long each model turn takes (for benchmarks); `workdir`
        makes relative `WriteFile` paths absolute for the agents whose tools want that."""
        with self._state.lock:
            self._state.workdir = os.fspath(workdir)
            self._state.steps = list(steps)
            self._state.position = 0
            self._state.requests.clear()
            self._state.delay_seconds = delay_seconds

    @property
    def requests(self) -> list[Recorded]:
        with self._state.lock:
            return list(self._state.requests)

    def turns(self) -> list[Recorded]:
        """The requests that consumed a step of the script: the agent's own model turns."""
        return [r for r in self.requests if r.step is not None]

    @property
    def remaining(self) -> int:
        with self._state.lock:
            return len(self._state.steps) - self._state.position


# ------------------------------------------------------------------------------------------------ protocol


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {payload}\n\n".encode()


def _pick_tool(offered: list[str], *candidates: str) -> str | None:
    for wanted in candidates:
        for name in offered:
            if name == wanted:
                return name
    return None


def _suffix_tool(offered: list[str], name: str) -> str:
    for candidate in offered:
        if candidate == name or candidate.endswith(name):
            return candidate
    return name  # not offered: the agent will say so, which is what such a test wants to see


def _last_output(body: Any) -> str:
    """The last non-empty line of the newest tool output in a request, in any of the three protocols."""
    outputs: list[str] = []

    def text_of(value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "\n".join(text_of(v.get("text") if isinstance(v, dict) else v) for v in value)
        return ""

    for item in (body or {}).get("input") or []:  # Responses API
        if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output"):
            outputs.append(text_of(item.get("output")))
    for message in (body or {}).get("messages") or []:  # Messages API and Chat Completions
        if not isinstance(message, dict):
            continue
        if message.get("role") == "tool":
            outputs.append(text_of(message.get("content")))
        for block in message.get("content") if isinstance(message.get("content"), list) else []:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                outputs.append(text_of(block.get("content")))
    newest = re.sub(r"<system-reminder>.*?</system-reminder>", "", outputs[-1] if outputs else "", flags=re.S)
    lines = [line.strip() for line in newest.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _searched_tools(body: Any) -> list[dict[str, Any]]:
    """Tools Codex handed back after a `tool_search_call` (flattened out of their namespaces)."""
    found: list[dict[str, Any]] = []

    def walk(tools: Any, namespace: str | None) -> None:
        for tool in tools or []:
            if not isinstance(tool, dict):
                continue
            if tool.get("type") == "namespace":
                walk(tool.get("tools"), tool.get("name"))
            elif tool.get("name"):
                found.append({**tool, "_namespace": namespace})

    for item in (body or {}).get("input") or []:
        if isinstance(item, dict) and item.get("type") == "tool_search_output":
            walk(item.get("tools"), None)
    walk((body or {}).get("tools"), None)
    return found


def _needs_tool_search(body: Any, offered: list[str], name: str) -> bool:
    searchable = any(isinstance(t, dict) and t.get("type") == "tool_search" for t in (body or {}).get("tools") or [])
    known = [t["name"] for t in _searched_tools(body)] + offered
    return searchable and not any(n == name or n.endswith(name) for n in known)


def _responses_tool(body: Any, name: str) -> tuple[str, str | None]:
    for tool in _searched_tools(body):
        if tool["name"] == name or tool["name"].endswith(name):
            return tool["name"], tool.get("_namespace")
    return name, None


def _fill(arguments: dict[str, Any], body: Any) -> dict[str, Any]:
    return {k: (_last_output(body) if v == LAST_OUTPUT else v) for k, v in arguments.items()}


def _codex_patch(path: str, content: str) -> str:
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"


_WORKDIR = re.compile(r"[Ww]orking directory:\s*(/[^\s\"<\\]+)")


def edit_block(path: str, content: str) -> str:
    """A SEARCH/REPLACE block creating `path` (aider's edit format): several fit in one `Say`."""
    return _aider_block(path, content)


def _aider_block(path: str, content: str) -> str:
    return f"{path}\n```\n<<<<<<< SEARCH\n=======\n{content.rstrip(chr(10))}\n>>>>>>> REPLACE\n```\n"


class _Turn:
    """One answer: text and/or one tool call, in whichever protocol the request came in."""

    def __init__(self, step: Step, offered: list[str], call_id: str) -> None:
        self.step = step
        self.offered = offered
        self.call_id = call_id


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        # plumbing ---------------------------------------------------------------------------------------------
        def _record(self, body: Any) -> Recorded:
            rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            with state.lock:
                state.requests.append(rec)
            return rec

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _start_sse(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True

        def _next_step(self, rec: Recorded, main_loop: bool) -> Step:
            """The next scripted step, or a short text for a side request; an exhausted script says so."""
            if not main_loop:
                return Say("Scripted side answer.")
            with state.lock:
                if state.position < len(state.steps):
                    step = state.steps[state.position]
                    state.position += 1
                else:
                    step = Say("The script has no further steps.")
                rec.step = step
                delay = state.delay_seconds
            if delay:
                time.sleep(delay)
            return step

        def _abs(self, path: str, body: Any = None) -> str:
            """Claude's and OpenCode's file tools want absolute paths: relative ones are resolved against the
            script's workdir, else the working directory the agent tells its model about."""
            if path.startswith("/"):
                return path
            workdir = state.workdir
            if not workdir:
                found = _WORKDIR.search(json.dumps(body or {}))
                workdir = found.group(1) if found else ""
            return f"{workdir.rstrip('/')}/{path}" if workdir else path

        def _call_id(self) -> str:
            with state.lock:
                return f"call_{next(state.ids)}"

        # routes -----------------------------------------------------------------------------------------------
        def do_GET(self) -> None:
            self._record(None)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path == "/api/hello":
                self._json(200, {"message": "hello"})
            elif path.endswith("/models"):
                self._json(200, {"object": "list", "data": [{"id": "scripted", "object": "model", "owned_by": "t"}]})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except json.JSONDecodeError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            rec = self._record(body)
            path = self.path.split("?", 1)[0].rstrip("/")
            if path.endswith("/responses"):
                self._responses(rec)
            elif path.endswith("/messages/count_tokens"):
                self._json(200, {"input_tokens": USAGE["input"]})
            elif path.endswith("/messages"):
                self._messages(rec)
            elif path.endswith("/chat/completions"):
                self._chat(rec)
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})
            rec.done_at = time.time()

        def _error(self, step: HttpError, anthropic: bool = False) -> None:
            if anthropic:
                self._json(step.status, {"type": "error", "error": {"type": "api_error", "message": step.message}})
            else:
                self._json(step.status, {"error": {"message": step.message, "type": "server_error", "code": None}})

        # Responses API (Codex) --------------------------------------------------------------------------------
        def _responses(self, rec: Recorded) -> None:
            offered = rec.tool_names()
            step = self._next_step(rec, main_loop=bool(offered))
            if isinstance(step, HttpError):
                return self._error(step)
            rid, cid = f"resp_{self._call_id()}", self._call_id()
            item: dict[str, Any]
            if isinstance(step, Shell):
                name = _pick_tool(offered, "exec_command", "shell", "local_shell") or "exec_command"
                args = {"cmd": step.command} if name == "exec_command" else {"command": ["bash", "-lc", step.command]}
                item = {"type": "function_call", "name": name, "arguments": json.dumps(args), "call_id": cid}
            elif isinstance(step, WriteFile):
                item = {
                    "type": "custom_tool_call",
                    "name": "apply_patch",
                    "input": _codex_patch(step.path, step.content),
                    "call_id": cid,
                }
            elif isinstance(step, CallTool) and _needs_tool_search(rec.body, offered, step.name):
                # Codex defers MCP tools behind its client-side `tool_search`: search first, call on the next turn.
                with state.lock:
                    state.position -= 1
                    rec.step = None
                arguments = {"query": step.name, "limit": 5}
                item = {"type": "tool_search_call", "call_id": cid, "execution": "client", "status": "completed"}
                item["arguments"] = arguments
            elif isinstance(step, CallTool):
                name, namespace = _responses_tool(rec.body, step.name)
                arguments = json.dumps(_fill(step.arguments, rec.body))
                item = {"type": "function_call", "name": name, "arguments": arguments, "call_id": cid}
                if namespace:
                    item["namespace"] = namespace
            else:
                assert isinstance(step, Say)
                item = {
                    "type": "message",
                    "role": "assistant",
                    "id": f"msg_{cid}",
                    "content": [{"type": "output_text", "text": step.text, "annotations": []}],
                }
            usage = {
                "input_tokens": USAGE["input"],
                "input_tokens_details": {"cached_tokens": USAGE["cached"]},
                "output_tokens": USAGE["output"],
                "output_tokens_details": {"reasoning_tokens": USAGE["reasoning"]},
                "total_tokens": USAGE["input"] + USAGE["output"],
            }
            self._start_sse()
            self.wfile.write(_sse("response.created", {"type": "response.created", "response": {"id": rid}}))
            self.wfile.write(_sse("response.output_item.done", {"type": "response.output_item.done", "item": item}))
            done = {"type": "response.completed", "response": {"id": rid, "usage": usage}}
            self.wfile.write(_sse("response.completed", done))
            self.wfile.flush()

        # Messages API (Claude Code) ---------------------------------------------------------------------------
        def _messages(self, rec: Recorded) -> None:
            body = rec.body if isinstance(rec.body, dict) else {}
            offered = rec.tool_names()
            step = self._next_step(rec, main_loop=bool(offered))
            if isinstance(step, HttpError):
                return self._error(step, anthropic=True)
            cid = self._call_id()
            block: dict[str, Any]
            tool_input: dict[str, Any] | None = None
            if isinstance(step, Shell):
                block, tool_input = {"type": "tool_use", "name": "Bash"}, {"command": step.command}
            elif isinstance(step, WriteFile):
                tool_input = {"file_path": self._abs(step.path, body), "content": step.content}
                block = {"type": "tool_use", "name": "Write"}
            elif isinstance(step, CallTool):
                block, tool_input = (
                    {"type": "tool_use", "name": _suffix_tool(offered, step.name)},
                    _fill(step.arguments, body),
                )
            else:
                assert isinstance(step, Say)
                block = {"type": "text", "text": step.text}
            message = {
                "id": f"msg_{cid}",
                "type": "message",
                "role": "assistant",
                "model": body.get("model", "scripted"),
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {
                    "input_tokens": USAGE["input"] - USAGE["cached"],
                    "cache_read_input_tokens": USAGE["cached"],
                    "cache_creation_input_tokens": 0,
                    "output_tokens": 1,
                },
            }
            stop = "tool_use" if tool_input is not None else "end_turn"
            if not body.get("stream"):
                content = [{**block, "id": f"toolu_{cid}", "input": tool_input}] if tool_input is not None else [block]
                usage = {**message["usage"], "output_tokens": USAGE["output"]}
                return self._json(200, {**message, "content": content, "stop_reason": stop, "usage": usage})
            self._start_sse()
            self.wfile.write(_sse("message_start", {"type": "message_start", "message": message}))
            if tool_input is not None:
                start = {**block, "id": f"toolu_{cid}", "input": {}}
                delta = {"type": "input_json_delta", "partial_json": json.dumps(tool_input)}
            else:
                start = {"type": "text", "text": ""}
                delta = {"type": "text_delta", "text": block["text"]}
            self.wfile.write(
                _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start})
            )
            self.wfile.write(_sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}))
            self.wfile.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
            message_delta = {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output"]},
            }
            self.wfile.write(_sse("message_delta", message_delta))
            self.wfile.write(_sse("message_stop", {"type": "message_stop"}))
            self.wfile.flush()

        # Chat Completions (OpenCode, aider) -------------------------------------------------------------------
        def _chat(self, rec: Recorded) -> None:
            body = rec.body if isinstance(rec.body, dict) else {}
            offered = rec.tool_names()
            # aider never offers tools: every request of it is a main-loop turn. OpenCode's side requests
            # (a session title) come without tools while its main loop always offers them.
            main_loop = bool(offered) or not _is_side_request(body)
            step = self._next_step(rec, main_loop=main_loop)
            if isinstance(step, HttpError):
                return self._error(step)
            cid = self._call_id()
            text: str | None = None
            call: dict[str, Any] | None = None
            if isinstance(step, Shell):
                call = {"name": _pick_tool(offered, "bash", "shell") or "bash", "arguments": {"command": step.command}}
                if call["name"] == "bash":
                    call["arguments"]["description"] = "scripted command"
            elif isinstance(step, WriteFile):
                if "write" in offered:
                    args = {"filePath": self._abs(step.path, body), "content": step.content}
                    call = {"name": "write", "arguments": args}
                elif "apply_patch" in offered:
                    call = {"name": "apply_patch", "arguments": {"patchText": _codex_patch(step.path, step.content)}}
                else:
                    text = _aider_block(step.path, step.content)
            elif isinstance(step, CallTool):
                call = {"name": _suffix_tool(offered, step.name), "arguments": _fill(step.arguments, body)}
            else:
                assert isinstance(step, Say)
                text = step.text
            usage = {
                "prompt_tokens": USAGE["input"],
                "completion_tokens": USAGE["output"],
                "total_tokens": USAGE["input"] + USAGE["output"],
                "prompt_tokens_details": {"cached_tokens": USAGE["cached"]},
                "completion_tokens_details": {"reasoning_tokens": USAGE["reasoning"]},
            }
            model = body.get("model", "scripted")
            finish = "tool_calls" if call else "stop"
            tool_calls = None
            if call:
                function = {"name": call["name"], "arguments": json.dumps(call["arguments"])}
                tool_calls = [{"index": 0, "id": cid, "type": "function", "function": function}]
            if not body.get("stream"):
                msg: dict[str, Any] = {"role": "assistant", "content": text}
                if tool_calls:
                    msg["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in tool_calls]
                choice = {"index": 0, "message": msg, "finish_reason": finish}
                payload = {"id": f"chat_{cid}", "object": "chat.completion", "created": int(time.time())}
                return self._json(200, {**payload, "model": model, "choices": [choice], "usage": usage})
            base = {"id": f"chat_{cid}", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
            self._start_sse()
            first: dict[str, Any] = {"role": "assistant", "content": text or ""}
            self.wfile.write(_sse(None, {**base, "choices": [{"index": 0, "delta": first, "finish_reason": None}]}))
            if tool_calls:
                delta = {"tool_calls": tool_calls}
                self.wfile.write(_sse(None, {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}))
            last = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
            self.wfile.write(_sse(None, last))
            self.wfile.write(_sse(None, {**base, "choices": [], "usage": usage}))
            self.wfile.write(_sse(None, "[DONE]"))
            self.wfile.flush()

    return Handler


def _is_side_request(body: dict[str, Any]) -> bool:
    """OpenCode's session-title request: a system prompt that asks for a title, and no tools."""
    text = json.dumps(body.get("messages") or [])[:4000].lower()
    return "title" in text and "generat" in text
