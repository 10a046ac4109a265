"""Usage per run, as each agent reports it: tokens (input, cached input, output, reasoning) and cost where the
agent gives one.

The figures come from the agent's own report, never from an estimate of ours: Codex's `turn.completed` events,
Claude Code's final `result` object, OpenCode's `step_finish` events, aider's local analytics log (its
`message_send` events, written with `--analytics-log` while sending nothing anywhere). A figure the agent did not
report is `None` ("unknown"), never 0: a budget built on a made-up zero would be wrong in the cheap direction.

A resumed session may report totals for the whole session (Codex's token counts, Claude Code's cost); `since`
takes the previous run's figures off so that each run counts its own.

Pure: no I/O but reading the optional aider log file handed in (as an untrusted file: the agent writes it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from ..security.safe_files import UnsafeFile, read_untrusted_file
from .agent_setup import SESSION_FILE_MAX_BYTES
from .transcript import Transcript, json_object

UNKNOWN = "unknown"
# What a resumed session reports as a session total rather than for the turn (measured with the pinned versions).
CUMULATIVE_ON_RESUME: dict[str, tuple[str, ...]] = {
    "codex": ("input", "cached_input", "output", "reasoning"),
    "claude-code": ("cost_usd",),
}


_FIGURES = ("input", "cached_input", "output", "reasoning", "cost_usd", "model_requests")


@dataclass(frozen=True)
class Usage:
    """One run's consumption; `None` means the agent did not say. Token counts are named without "token" (as
    `domain.spend.TokenCounts`), so that the audit's redaction of secret-looking keys leaves them readable."""

    agent: str
    input: int | None = None
    cached_input: int | None = None
    output: int | None = None
    reasoning: int | None = None
    cost_usd: float | None = None
    model_requests: int | None = None
    source: str = ""

    @property
    def known(self) -> bool:
        return self.input is not None or self.output is not None or self.cost_usd is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Usage | None:
        if not data:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def plus(self, other: Usage) -> Usage:
        """Both reports together (a running sum of turns); a figure neither gave stays unknown."""
        return self._each(other, _bounded_sum)

    def higher(self, other: Usage) -> Usage:
        """Each figure at the higher of the two reports (a figure one of them lacks: the other's). Why: what the
        agent reported on the way is a floor. A later report that says less (a forged `result` line, a message
        shown again with smaller counts) must not lower what the budget and the spend records count."""
        return self._each(other, max)

    def _each(self, other: Usage, combine: Callable[[Any, Any], Any]) -> Usage:
        """Each figure of both reports combined; a figure only one of them gave is that one's, neither's unknown."""

        def one(a: Any, b: Any) -> Any:
            return b if a is None else a if b is None else combine(a, b)

        return replace(self, **{name: one(getattr(self, name), getattr(other, name)) for name in _FIGURES})

    def since(self, previous: Usage | None) -> Usage:
        """This run's own share when the agent reported session totals after a resume."""
        cumulative = CUMULATIVE_ON_RESUME.get(self.agent, ())
        if previous is None or not cumulative:
            return self
        changes: dict[str, Any] = {}
        for name in cumulative:
            now, before = getattr(self, name), getattr(previous, name)
            if now is not None and before is not None and now >= before:
                changes[name] = round(now - before, 6) if isinstance(now, float) else now - before
        return replace(self, **changes)

    def summary(self) -> str:
        """One line for the service comment and the logs: `1,200 in (200 cached) · 80 out · $0.0128`."""
        if not self.known:
            return f"usage {UNKNOWN} ({self.agent} reported none)"

        def n(value: int | None) -> str:
            return UNKNOWN if value is None else f"{value:,}"

        tokens_in = f"{n(self.input)} in" + (f" ({n(self.cached_input)} cached)" if self.cached_input else "")
        tokens_out = f"{n(self.output)} out" + (f" ({n(self.reasoning)} reasoning)" if self.reasoning else "")
        cost = f"cost {UNKNOWN}" if self.cost_usd is None else f"${self.cost_usd:.4f}"
        return f"{tokens_in} · {tokens_out} tokens · {cost}"


# Counts and costs past these are not reports but damage: no run spends a trillion tokens or ten million dollars,
# and a count past the database's BIGINT would lose the run's whole record.
MAX_COUNT = 10**12
MAX_COST_USD = 10_000_000.0


def _bounded_sum(a: Any, b: Any) -> Any:
    """a + b, no further than MAX_COUNT (a count) or MAX_COST_USD (a cost): millions of forged reports of the
    largest count would add up past the database's BIGINT and lose the run's whole record."""
    total = a + b
    return min(total, MAX_COST_USD if isinstance(total, float) else MAX_COUNT)


def _figure(value: Any, high: float) -> int | float | None:
    """A reported number from 0 to `high`, or None (a bool, a string, NaN, infinity, a negative or absurd one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if 0 <= value <= high else None


def as_count(value: Any) -> int | None:
    """A count as reported, or None when it is not a number from 0 to MAX_COUNT. The agent can write the lines these
    come from (a tool command may write into the agent program's output): a negative count lowered the running sum
    the budget is checked against, `1e400` (infinity) and a 400-digit integer broke the meter."""
    figure = _figure(value, MAX_COUNT)
    return None if figure is None else int(figure)


def as_cost(value: Any) -> float | None:
    """A cost in USD as reported, or None when it is not a number from 0 to MAX_COST_USD (see `as_count`)."""
    figure = _figure(value, MAX_COST_USD)
    return None if figure is None else float(figure)


def as_object(value: Any) -> dict[str, Any]:
    """`value` when it is an object, else an empty one: a report whose `usage` (or `part`, `message`) is a string or
    a list is read as saying nothing, not as a crash."""
    return value if isinstance(value, dict) else {}


def input_total(fresh: int | None, cache_read: int | None, cache_write: int | None) -> int | None:
    """All input tokens of a report whose input count excludes the cache (Claude, OpenCode): unknown without it."""
    return None if fresh is None else fresh + (cache_read or 0) + (cache_write or 0)


def codex_usage(transcript: Transcript) -> Usage:
    """Sum of `turn.completed` usage: one per turn of `codex exec` (a resume reports the session's total)."""
    usage = Usage("codex", source="codex --json turn.completed")
    turns = 0
    for event in transcript.events:
        if event.get("type") != "turn.completed":
            continue
        u = as_object(event.get("usage"))
        turns += 1
        usage = usage.plus(
            Usage(
                "codex",
                input=as_count(u.get("input_tokens")),
                cached_input=as_count(u.get("cached_input_tokens")),
                output=as_count(u.get("output_tokens")),
                reasoning=as_count(u.get("reasoning_output_tokens")),
            )
        )
    return usage if turns else Usage("codex", source="codex reported no usage")


def claude_usage(transcript: Transcript) -> Usage:
    """The final `result` object: `usage` (input excludes cache reads and writes, so they are added) and cost."""
    result = next((e for e in reversed(transcript.events) if e.get("type") == "result"), None)
    if result is None:
        return Usage("claude-code", source="claude reported no result")
    u = as_object(result.get("usage"))
    read = as_count(u.get("cache_read_input_tokens"))
    total_in = input_total(as_count(u.get("input_tokens")), read, as_count(u.get("cache_creation_input_tokens")))
    details = as_object(u.get("output_tokens_details"))
    cost = result.get("total_cost_usd")
    requests = sum(1 for e in transcript.events if e.get("type") == "assistant") or as_count(result.get("num_turns"))
    return Usage(
        "claude-code",
        input=total_in,
        cached_input=read,
        output=as_count(u.get("output_tokens")),
        reasoning=as_count(details.get("thinking_tokens")) or None,
        cost_usd=as_cost(cost),
        model_requests=requests,
        source="claude result",
    )


def opencode_usage(transcript: Transcript) -> Usage:
    """Sum of `step_finish` tokens (input excludes the cache, so it is added) and cost."""
    usage = Usage("opencode", source="opencode step_finish")
    steps = 0
    for event in transcript.events:
        if event.get("type") != "step_finish":
            continue
        part = as_object(event.get("part"))
        tokens = as_object(part.get("tokens"))
        cache = as_object(tokens.get("cache"))
        steps += 1
        cost = part.get("cost")
        read = as_count(cache.get("read"))
        usage = usage.plus(
            Usage(
                "opencode",
                input=input_total(as_count(tokens.get("input")), read, as_count(cache.get("write"))),
                cached_input=read,
                output=as_count(tokens.get("output")),
                reasoning=as_count(tokens.get("reasoning")),
                cost_usd=as_cost(cost),
            )
        )
    if not steps:
        return Usage("opencode", source="opencode reported no step")
    # OpenCode reports cost 0 for a model it has no price for: that is "unknown", not free.
    return replace(usage, cost_usd=usage.cost_usd if usage.cost_usd else None, model_requests=steps)


def aider_usage(analytics_lines: Iterable[str]) -> Usage:
    """aider's `message_send` events from its local analytics log: tokens sent/received and cost per message."""
    usage = Usage("aider", source="aider analytics log")
    messages = 0
    total_cost: float | None = None
    for line in analytics_lines:
        event = json_object(line)
        if event is None or event.get("event") != "message_send":
            continue
        props = as_object(event.get("properties"))
        messages += 1
        usage = usage.plus(
            Usage("aider", input=as_count(props.get("prompt_tokens")), output=as_count(props.get("completion_tokens")))
        )
        reported = as_cost(props.get("total_cost"))  # aider's running total: the highest one stands
        if reported is not None:
            total_cost = max(total_cost or 0.0, reported)
    if not messages:
        return Usage("aider", source="aider reported no message")
    return replace(usage, cost_usd=total_cost if total_cost else None, model_requests=messages)


def parse_usage(kind: str, transcript: Transcript, aider_log: Path | None = None) -> Usage:
    """The usage of one run of agent `kind`; a custom agent's is unknown."""
    if kind == "codex":
        return codex_usage(transcript)
    if kind == "claude-code":
        return claude_usage(transcript)
    if kind == "opencode":
        return opencode_usage(transcript)
    if kind == "aider":
        if aider_log is None:
            return aider_usage([])
        try:
            # The log is in the agent's HOME, which the agent can write: a link to a FIFO hung the runner, bytes
            # that are not UTF-8 crashed it. Read as a session file is copied: regular, no link, capped.
            raw = read_untrusted_file(aider_log.parent, aider_log.name, max_bytes=SESSION_FILE_MAX_BYTES)
        except FileNotFoundError:
            return aider_usage([])  # aider sent nothing: it wrote no log
        except UnsafeFile as exc:
            return Usage("aider", source=f"aider analytics log not read: {exc}")
        text = raw.decode("utf-8", "replace")
        return aider_usage(text.split("\n"))
    return Usage(kind or "custom", source="a custom agent reports no usage")
