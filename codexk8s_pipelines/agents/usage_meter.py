"""The running usage of one agent process, line by line, so the runner can end it the moment it passes its cap or
loops — not after the money is spent.

`transcript.py` reads a finished run; this reads the same machine-readable lines as they come. Usage increments
are what each agent reports while it works: Codex `turn.completed`, OpenCode `step_finish`, Claude Code's
per-message `usage` on `assistant` events (one API call may appear as several events, one per content block: a
message id counts once, at its highest figure) and its final `result`, the agent's own total. The running usage
only ever grows (`Usage.higher`): the agent's tool commands run as its user, so a report may be forged, and one that
says less, or a count that is negative or absurd, never lowers what the cap is checked against. A line that holds a
usage report but cannot be read ends a capped run (`usage_unreadable`). aider reports only into its analytics log:
its cap is checked when it exits.

A resumed session (a revise continuing the branch's agent session) reports some figures as session totals
(`usage.CUMULATIVE_ON_RESUME`: Codex's token counts, Claude Code's cost). The cap is a cap per run, so it is checked
against the run's own share, `Usage.since(baseline)`: the same subtraction the recorded usage gets, so that a run
is never stopped for figures that are not recorded as its own. `usage` stays the figures as reported (the floor
that only grows); `own` is what the cap sees.

In a Kubernetes pod the meter runs in the agent's container; the finish container reads its `MeterAccount` (usage,
stop, lines) from the handover file, which the agent can rewrite: the account is read as untrusted input, and it can
only raise what the finish container's own replay of the handed-over lines finds, never lower it.

A loop turn is one model answer that called tools: its call signatures (tool + arguments) and whether it edited a
file. A turn of only shell commands may have changed files, so it never counts as idle; the same signatures turn
after turn do count. An agent without turn events (aider, a custom one) is never judged a loop.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..domain.spend import Breach, Budgets, LoopDetector, PriceTable, TokenCounts, Turn, run_cap_reached
from .transcript import Transcript, read_transcript
from .usage import Usage, as_cost, as_count, as_object, input_total, parse_usage

# Tools that only look: a turn of these changed nothing.
_READ_ONLY = frozenset(
    {"read", "grep", "glob", "ls", "list", "webfetch", "websearch", "todowrite", "todoread", "task", "view"}
)
_EDITS = frozenset({"edit", "write", "multiedit", "notebookedit", "patch", "apply_patch"})


# The usage events of each agent as they appear in a line, quotes unescaped: only at the top of an event object
# (inside a JSON string they are escaped), so an unreadable line that holds one held a usage report. A tool command
# can write into the agent program's output; a few bytes without a newline written just before a report make that
# report's line unreadable, and the report would be lost without a trace.
_USAGE_REPORT = {
    "codex": re.compile(r'"type"\s*:\s*"turn\.completed"'),
    "claude-code": re.compile(r'"type"\s*:\s*"(?:assistant|result)"'),
    "opencode": re.compile(r'"type"\s*:\s*"step_finish"'),
}


@dataclass(frozen=True)
class Stop:
    """Why the runner ends the agent now: `budget_exceeded`, `agent_loop` or `usage_unreadable`, with the figures."""

    reason: str
    detail: str


STOP_REASONS = frozenset({"budget_exceeded", "agent_loop", "usage_unreadable"})
# A stop's detail read back from the handover file: the agent can write that file, so its text is bounded and kept
# to one line before it reaches the run's message and the service comment.
STOP_DETAIL_MAX_CHARS = 500
_COUNTS = ("input", "cached_input", "output", "reasoning", "model_requests")


@dataclass(frozen=True)
class MeterAccount:
    """What the agent's container counted, handed to a pod's finish container beside the output lines.

    Why: the finish container gets only the newest lines (the handover file is bounded), so a replay of them
    under-counts a long run and misses the report that stopped it. `usage` is the container's figures as the agent
    reported them (session totals after a resume: the finish container takes nothing off), `stop` what ended the
    agent, `lines` how many output lines it saw (and metered, up to a stop), `unreadable` the usage reports it could
    not read."""

    usage: Usage
    stop: Stop | None
    lines: int
    unreadable: int = 0

    def to_dict(self) -> dict[str, Any]:
        stop = None if self.stop is None else {"reason": self.stop.reason, "detail": self.stop.detail}
        return {"usage": self.usage.to_dict(), "stop": stop, "lines": self.lines, "unreadable": self.unreadable}

    @classmethod
    def read(cls, kind: str, data: Any) -> MeterAccount | None:
        """The account in `data` as the agent's container wrote it, or None when it is missing or malformed in any
        part (then the finish container replays the lines, as before there was an account). The agent can rewrite
        the file: a figure must be a count (or cost) as `usage.py` reads one, a stop one of the meter's reasons."""
        if not isinstance(data, dict):
            return None
        usage, stop = data.get("usage"), data.get("stop")
        lines, unreadable = as_count(data.get("lines")), as_count(data.get("unreadable", 0))
        if not isinstance(usage, dict) or usage.get("agent") != kind or lines is None or unreadable is None:
            return None
        counts: dict[str, int | None] = {}
        for name in _COUNTS:
            counts[name] = as_count(usage.get(name))
            if usage.get(name) is not None and counts[name] is None:
                return None
        cost = as_cost(usage.get("cost_usd"))
        if usage.get("cost_usd") is not None and cost is None:
            return None
        handed_stop = None
        if stop is not None:
            if not isinstance(stop, dict) or stop.get("reason") not in STOP_REASONS:
                return None
            detail = stop.get("detail")
            if not isinstance(detail, str):
                return None
            handed_stop = Stop(str(stop["reason"]), " ".join(detail.split())[:STOP_DETAIL_MAX_CHARS])
        source = "the agent container's meter (handed over)"
        return cls(Usage(kind, **counts, cost_usd=cost, source=source), handed_stop, lines, unreadable)


def _claude_message_usage(event: dict[str, Any]) -> tuple[str, Usage] | None:
    message = as_object(event.get("message"))
    u = message.get("usage")
    if event.get("type") != "assistant" or not isinstance(u, dict) or message.get("model") == "<synthetic>":
        return None

    def n(key: str) -> int:
        return as_count(u.get(key)) or 0  # a count as `usage.py` reads one: never negative, never past MAX_COUNT

    read = n("cache_read_input_tokens")
    total_in = input_total(n("input_tokens"), read, n("cache_creation_input_tokens"))
    usage = Usage("claude-code", total_in, read, n("output_tokens"), model_requests=1, source="claude message usage")
    return str(message.get("id") or id(event)), usage


def _signature(name: str, args: Any) -> str:
    try:
        text = json.dumps(args, sort_keys=True, default=str)
    except (TypeError, ValueError):
        text = str(args)
    return f"{name}:{text[:500]}"


def _turn(kind: str, event: dict[str, Any]) -> Turn | None:
    """The loop check's view of one event: a turn with its calls, or None when the event is not one."""
    etype = event.get("type")
    if kind == "codex" and etype == "item.completed":
        item = event.get("item") or {}
        itype = item.get("type")
        if itype == "command_execution":
            return Turn((_signature("command", item.get("command")),), changed=True)
        if itype == "file_change":
            return Turn((_signature("edit", item.get("changes")),), changed=True)
        if itype == "mcp_tool_call":
            name = f"mcp:{item.get('server')}.{item.get('tool')}"
            return Turn((_signature(name, item.get("arguments")),), changed=False)
        return None
    if kind == "claude-code" and etype == "assistant":
        blocks = [b for b in (event.get("message") or {}).get("content") or [] if isinstance(b, dict)]
        calls = [b for b in blocks if b.get("type") == "tool_use"]
        if not calls:
            return None
        names = [str(b.get("name") or "").lower() for b in calls]
        changed = any(n in _EDITS or (n not in _READ_ONLY and not n.startswith("mcp__")) for n in names)
        return Turn(tuple(_signature(str(b.get("name")), b.get("input")) for b in calls), changed)
    if kind == "opencode" and etype == "tool_use":
        part = event.get("part") or {}
        name = str(part.get("tool") or "").lower()
        changed = name in _EDITS or (name not in _READ_ONLY and "_" not in name)
        return Turn((_signature(name, (part.get("state") or {}).get("input")),), changed)
    return None


@dataclass
class UsageMeter:
    """Feed it the agent's output lines; it answers when the run must stop."""

    kind: str
    model: str | None
    prices: PriceTable
    budgets: Budgets
    loop_turns: int = 0
    baseline: Usage | None = None
    """The resumed session's figures before this run (None: a fresh session): taken off before the cap check."""
    usage: Usage = field(init=False)
    unreadable: int = field(default=0, init=False)  # lines that held a usage report and could not be read
    _claude_messages: dict[str, Usage] = field(default_factory=dict, init=False)
    _loops: LoopDetector = field(init=False)

    def __post_init__(self) -> None:
        self.usage = Usage(self.kind, source="running")
        self._loops = LoopDetector(self.loop_turns if self.kind in ("codex", "claude-code", "opencode") else 0)

    @property
    def own(self) -> Usage:
        """This run's own usage: the running figures less the resumed session's earlier ones (`Usage.since`, as the
        recorded usage is taken), so the per-run cap never counts what earlier runs of the session used."""
        return self.usage.since(self.baseline)

    @property
    def tokens(self) -> TokenCounts:
        """The run's own token counts (`own`): what the cap is checked against."""
        own = self.own
        return TokenCounts(own.input, own.cached_input, own.output)

    def cost(self) -> Decimal | None:
        """The run's own cost (`own`), from the price table or the agent's own figure."""
        return self.prices.cost(self.model, self.tokens, self.own.cost_usd).amount

    def feed(self, line: str, one: Transcript | None = None) -> Stop | None:
        """`one`: the line already read as a transcript (`read_transcript(kind, [line])`), when the caller has it."""
        transcript = one if one is not None else read_transcript(self.kind, [line])
        if not transcript.events:
            return self._unreadable(line)
        event = transcript.events[0]
        try:
            counted = self._count(event, transcript)
            turn = _turn(self.kind, event)
        except (AttributeError, TypeError, ValueError, KeyError):  # a field of the wrong type: not the agent's own line
            return self._unreadable(line)
        if turn is not None:
            looping = self._loops.feed(turn)
            if looping:
                return Stop("agent_loop", looping)
        if counted:
            breach = self.cap_breach()
            if breach is not None:
                return Stop("budget_exceeded", breach.text(self.prices.currency))
        return None

    def _unreadable(self, line: str) -> Stop | None:
        """A line that is no event but holds a usage report: counted, and with a run cap the run ends, because the
        cap can no longer be kept (what the report said is unknown)."""
        report = _USAGE_REPORT.get(self.kind)
        # Inside an object: a pretty-printed `"type": "result",` line on stderr is none. A report after the line's
        # first `{` (the pattern holds none), so a forged prefix holding the words without a `{` hides nothing; one
        # search, not a slice of the line for every match (quadratic in a long line of them; review of stop 36).
        if report is None:
            return None
        brace = line.find("{")
        if brace < 0 or report.search(line, brace + 1) is None:
            return None
        self.unreadable += 1
        if self.budgets.per_run.empty:
            return None
        return Stop(
            "usage_unreadable",
            "a usage report in the agent's output could not be read (its line was written over or cut), so the run's"
            " cap cannot be kept",
        )

    def cap_breach(self) -> Breach | None:
        return run_cap_reached(self.budgets, self.tokens.total, self.cost())

    def _count(self, event: dict[str, Any], transcript: Transcript) -> bool:
        if self.kind == "claude-code":
            # The running usage only grows (`Usage.higher`): a line that says less, forged by the agent's own
            # process or not, never lowers what the cap is checked against.
            if event.get("type") == "result":
                final = parse_usage("claude-code", transcript)
                if final.known:
                    self.usage = self.usage.higher(final)  # the highest `result` too: the agent's own session total
                    return True
                return False
            seen = _claude_message_usage(event)
            if seen is None:
                return False
            # One API call may show as several events (a content block each), its output count growing: the
            # message counts once, at its highest figure.
            kept = self._claude_messages.get(seen[0])
            self._claude_messages[seen[0]] = seen[1] if kept is None else kept.higher(seen[1])
            total = Usage(self.kind, source="running")
            for usage in self._claude_messages.values():
                total = total.plus(usage)
            self.usage = self.usage.higher(total)
            return True
        if self.kind in ("codex", "opencode") and event.get("type") in ("turn.completed", "step_finish"):
            delta = parse_usage(self.kind, transcript)
            if delta.known:
                self.usage = self.usage.plus(delta)
                return True
        return False
