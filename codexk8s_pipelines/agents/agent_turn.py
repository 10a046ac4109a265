"""The runner's side of one real agent's turn: set it up, watch it, read what it said, judge it, keep its session.

The runner (`runner.py`) owns the checkout, the sandbox, the process and the push; this object owns what is
specific to the agent program (`agent_setup`, `agent_watch`, `transcript`, `usage`, `outcome`), so the runner
calls it at five points:

1. `prepare(command, env)` before the start: config files in the agent's private home, the final command line;
2. `probe()`: the model endpoint answers a TCP connect, else the run ends `model_unreachable` without starting;
3. `started(kill)` / `line(text)` while it runs: every output line is kept for the transcript and shown in a short
   form (no JSON walls, no echo of the prompt), and the unreachable-model watch can stop it;
4. `finish(exit_code)` after it: transcript, usage (`since` the resumed session's previous figures), the session
   kept for the branch's next revise;
5. `judge(...)`: the outcome from what it did (see `outcome.py`).

The run's own usage is the agent's figures less the resumed session's earlier ones (`baseline`): the meter's cap
check and the recorded usage both take the same `baseline` off with `Usage.since`, so a run is stopped for exactly
what is recorded as its own.

In a Kubernetes pod the turn is split: the agent's container meters every line and hands over the newest lines
(`handover_lines`) with its meter's account (`account`); the finish container builds a new turn from them and
`take_over`s the account, so the run's usage and stop are the agent container's, not a replay of a 500 kB tail.

A custom agent (a user's own command) goes through the same calls; it simply has no setup, no usage and no
session, and its output is shown as it is.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from itertools import chain
from pathlib import Path
from typing import Any

from ..security.safe_files import remove_tree
from .agent_setup import AgentSettings, PreparedAgent, archive_session, prepare
from .agent_watch import UnreachableWatch, probe_endpoint
from .outcome import Evidence, Outcome, judge
from .runner_spec import SpendGuard
from .transcript import Transcript, describe_line, read_transcript
from .usage import Usage, as_cost, as_count, parse_usage
from .usage_meter import MeterAccount, Stop, UsageMeter

MAX_KEPT_LINES = 20_000
# What a pod's agent container hands to its finish container of its output (the newest lines): the handover file
# is read with a bound, and the lines only serve the transcript; the usage travels in the meter's account.
HANDOVER_MAX_BYTES = 500_000


class AgentTurn:
    def __init__(
        self,
        launch: AgentSettings | None,
        host_home: Path,
        agent_home: str | None = None,
        *,
        nested: bool = False,
    ) -> None:
        """`nested`: the agent runs inside the platform's own sandbox, where Codex's bubblewrap cannot nest."""
        self.launch = launch
        self.nested = nested
        self.kind = launch.kind if launch is not None else "custom"
        self.host_home = host_home
        self.agent_home = agent_home or str(host_home)
        self.lines: list[str] = []
        self.prepared: PreparedAgent | None = None
        self.watch: UnreachableWatch | None = None
        self.unreachable: str | None = None
        self.transcript: Transcript | None = None
        self.usage: Usage | None = None
        self.notes: list[str] = []
        self.meter: UsageMeter | None = None  # the run's cap and loop rule (usage_meter.py), when metered
        self.stop: Stop | None = None  # why the meter ended the agent
        self.seen = 0  # output lines seen, kept or not
        self.reported: Usage | None = None  # the agent's figures as reported (session totals after a resume)
        self.handed: MeterAccount | None = None  # in a pod's finish container: the agent container's account
        self._kill: Callable[[], None] | None = None
        # The newest lines past MAX_KEPT_LINES, within HANDOVER_MAX_BYTES: a pod's finish container gets the run's
        # real last lines (a final `result`, `turn.completed`), not the last of the first MAX_KEPT_LINES.
        self._newest: deque[str] = deque()
        self._newest_bytes = 0

    # 1 -------------------------------------------------------------------------------------------------------
    def prepare(self, command: Sequence[str], env: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
        """The command to run and the variables to add to the agent's environment (config paths, settings)."""
        remove_tree(self.host_home)  # nothing of an earlier run leaks into this one (and what cannot go ends the run)
        self.host_home.mkdir(parents=True, exist_ok=True, mode=0o700)
        namespaces = False if self.nested else None
        self.prepared = prepare(
            self.launch, command, self.host_home, env, agent_home=self.agent_home, namespaces=namespaces
        )
        self.notes.extend(self.prepared.notes)
        if self.meter is not None:  # metered before the session was known (the runner meters, then prepares)
            self.meter.baseline = self.baseline
        return self.prepared.command, dict(self.prepared.env)

    @property
    def baseline(self) -> Usage | None:
        """The resumed session's figures before this run (None: a fresh session), as the last run recorded them.
        The one source of what is taken off the agent's session totals, for the cap check and the record alike.
        Figures that are not counts are dropped (unknown): a malformed record must not break the meter."""
        if self.prepared is None or not self.prepared.resumed_session:
            return None
        data = self.prepared.previous_usage
        if not isinstance(data, dict):
            return None
        return Usage(
            self.kind,
            input=as_count(data.get("input")),
            cached_input=as_count(data.get("cached_input")),
            output=as_count(data.get("output")),
            reasoning=as_count(data.get("reasoning")),
            cost_usd=as_cost(data.get("cost_usd")),
            source="the resumed session's earlier runs",
        )

    @property
    def declared(self) -> list[str]:
        """Variables the agent reads from the runner's environment (its model key)."""
        return list(self.prepared.declared) if self.prepared else []

    @property
    def key_aliases(self) -> dict[str, str]:
        """{name the agent reads its model key from: the runner's variable holding it} (`PreparedAgent`)."""
        return dict(self.prepared.key_aliases) if self.prepared else {}

    # 2 -------------------------------------------------------------------------------------------------------
    def probe(self) -> str | None:
        if self.launch is None or self.launch.kind == "custom":
            return None
        cause = probe_endpoint(self.launch.endpoint.base_url)
        if cause:
            self.unreachable = f"{self.launch.endpoint.base_url}: {cause}"
        return self.unreachable

    # 3 -------------------------------------------------------------------------------------------------------
    def metered(self, guard: SpendGuard | None) -> None:
        """Watch the run's usage and turns as they come (a custom agent's output has neither: never stopped)."""
        if guard is not None:
            self.meter = UsageMeter(
                self.kind, guard.model, guard.prices(), guard.budgets(), guard.loop_turns, self.baseline
            )

    def started(self, kill: Callable[[], None]) -> None:
        self._kill = kill
        if self.launch is not None and self.launch.kind != "custom":
            self.watch = UnreachableWatch(self.kind, self.launch.unreachable_grace_seconds, kill)

    def line(self, text: str) -> str | None:
        """Keep the line; return what the log shows of it (None: nothing)."""
        self.seen += 1
        if len(self.lines) < MAX_KEPT_LINES:
            self.lines.append(text)
        else:
            self._keep_newest(text)
        if self.kind == "custom" and self.meter is None:
            return text
        one = read_transcript(self.kind, [text])  # parsed once for the watch, the meter and the log line
        if self.watch is not None:
            self.watch.feed(text, one)
        if self.meter is not None and self.stop is None:
            self.stop = self.meter.feed(text, one)
            if self.stop is not None and self._kill is not None:
                self._kill()  # at the report that passed the cap (or the turn that closed a loop), not later
        return describe_line(self.kind, text, one) if self.kind != "custom" else text

    # 4 -------------------------------------------------------------------------------------------------------
    def finish(self) -> None:
        if self.watch is not None:
            self.watch.close()
            self.unreachable = self.unreachable or self.watch.verdict
        self.transcript = read_transcript(self.kind, self.lines)
        analytics = None
        if self.prepared is not None and self.prepared.analytics_log is not None:
            analytics = self.host_home / self.prepared.analytics_log.name
        reported = parse_usage(self.kind, self.transcript, analytics)
        if self.meter is not None and self.meter.usage.known:
            if not reported.known:
                # Ended before its final report (the cap or a loop stopped it): what it reported on the way counts.
                reported = replace(self.meter.usage, source=f"{self.meter.usage.agent} reports before it was stopped")
            else:  # a final report that says less than the way there (forged, or cut) does not lower the record
                reported = reported.higher(self.meter.usage)
        if self.meter is not None and self.meter.unreadable:
            self.notes.append(
                f"{self.meter.unreadable} usage report(s) in the agent's output could not be read (written over or"
                " cut): the usage recorded for this run may be low"
            )
        if self.handed is not None:  # a pod's finish step: the agent container's account is a floor, as above
            raised = reported.higher(self.handed.usage)
            reported = raised if reported.known else replace(raised, source=self.handed.usage.source)
        self.reported = reported
        self.usage = reported.since(self.baseline)  # the run's own share: what the meter's cap was checked against
        if self.launch is not None and self.launch.session_dir and self.transcript.session_id:
            try:
                note = archive_session(
                    self.kind, self.host_home, self.launch.session_dir, self.transcript.session_id, reported.to_dict()
                )
            except OSError as exc:  # e.g. a pod's read-only file system: the next revise starts fresh
                note = f"session {self.transcript.session_id} not kept: {exc}"
            if note:
                self.notes.append(note)

    # 5 -------------------------------------------------------------------------------------------------------
    def judge(
        self,
        exit_code: int | None,
        changed_files: Sequence[str],
        report_status: str | None,
        report_summary: str | None,
        report_diagnosis: str | None,
        report_problem: str | None,
    ) -> Outcome:
        transcript = self.transcript or read_transcript(self.kind, self.lines)
        return judge(
            Evidence(
                transcript,
                exit_code,
                changed_files=list(changed_files),
                report_status=report_status,
                report_summary=report_summary,
                report_diagnosis=report_diagnosis,
                report_problem=report_problem,
                unreachable=self.unreachable,
                require_result=self.kind != "custom",
            )
        )

    def _keep_newest(self, text: str) -> None:
        """A line past MAX_KEPT_LINES: kept among the newest, for the handover, within HANDOVER_MAX_BYTES."""
        self._newest.append(text)
        self._newest_bytes += _size(text)
        while self._newest and self._newest_bytes > HANDOVER_MAX_BYTES:
            self._newest_bytes -= _size(self._newest.popleft())

    def handover_lines(self, max_bytes: int = HANDOVER_MAX_BYTES) -> list[str]:
        """The newest output lines within `max_bytes`: what a pod's agent container hands to its finish step, for
        the transcript and the diagnosis (the usage and the stop travel in `account`)."""
        kept: list[str] = []
        size = 0
        for line in chain(reversed(self._newest), reversed(self.lines)):
            size += _size(line)
            if size > max_bytes:
                break
            kept.append(line)
        return kept[::-1]

    def account(self) -> MeterAccount:
        """What this (agent's) container counted, for a pod's finish step: the figures as reported, its meter's and
        its transcript's the higher (`reported`, once finished), the stop, the lines seen."""
        usage = self.reported
        if usage is None:
            usage = self.meter.usage if self.meter is not None else Usage(self.kind, source="no usage counted")
        unreadable = self.meter.unreadable if self.meter is not None else 0
        return MeterAccount(usage, self.stop, self.seen, unreadable)

    def take_over(self, account: object) -> None:
        """In a pod's finish container, with `lines` the handed-over ones: the run's usage and stop.

        The meter is replayed over the lines (what was done before there was an account, and still the fallback),
        then the agent container's `account` (as read from the handover file) raises the figures and gives its stop.
        The agent can rewrite that file (usage in a pod is the agent's own account): an account that is missing or
        malformed is ignored, and a valid one never lowers what the replay found, nor drops a stop the replay made."""
        self.seen = max(self.seen, len(self.lines))
        replayed = None
        if self.meter is not None:
            replayed = next(filter(None, map(self.meter.feed, self.lines)), None)
        handed = MeterAccount.read(self.kind, account)
        if handed is None:
            self.stop = replayed
            if self.kind != "custom":
                self.notes.append(
                    "the agent's container handed over no readable account of its usage: the usage recorded is read"
                    f" from the {len(self.lines)} output line(s) it handed over, and may be low"
                )
            return
        self.handed = handed
        if self.meter is not None:
            self.meter.usage = self.meter.usage.higher(handed.usage)
            self.meter.unreadable = max(self.meter.unreadable, handed.unreadable)
        self.stop = handed.stop or replayed
        if handed.lines > len(self.lines):
            self.notes.append(
                f"the transcript holds the newest {len(self.lines):,} of the agent's {handed.lines:,} output lines"
            )

    def result_fields(self) -> dict[str, Any]:
        """What goes into the runner's result (and from there run metadata, `flow_events`, the comment)."""
        prepared = self.prepared
        return {
            "agent_kind": self.kind,
            "usage": self.usage.to_dict() if self.usage is not None and self.kind != "custom" else None,
            "session_id": self.transcript.session_id if self.transcript else None,
            "previous_session_id": prepared.previous_session if prepared else None,
            "resumed": bool(prepared and prepared.resumed_session),
            "agent_notes": list(self.notes),
        }


def _size(line: str) -> int:
    """A line's bytes in the handover (UTF-8, and its newline)."""
    return len(line.encode("utf-8", "replace")) + 1
