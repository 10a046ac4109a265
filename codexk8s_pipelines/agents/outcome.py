"""Judge an agent's run from what it did, not from its exit code alone.

The real agents exit 0 in many runs that did nothing useful: Codex when every command failed inside its own
sandbox, Claude Code when the model endpoint refused the connection (`"subtype": "success"` with
`"is_error": true`), aider after 80 s of retries against a dead endpoint. So the verdict weighs, in order:

1. `model_unreachable`: the model endpoint could not be reached (the runner's probe, or the agent's own
   connection errors with no model answer at all);
2. `model_error`: the agent's model turn failed (an HTTP error from the endpoint, `is_error`);
3. `agent_exit_code`: the program itself failed;
4. `agent_tools_failed`: it used tools, every one of them failed, and the checkout is unchanged;
5. `no_result`: no usable result file (the prompt's output contract says such a run counts as failed);
6. `agent_blocked`: the agent's own result says `blocked` (its diagnosis is what a human must provide);
7. otherwise `succeeded`.

Every verdict but success carries a diagnosis: the agent's own words when it gave some, else the runner's cause.
Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .transcript import Transcript

Verdict = Literal["succeeded", "blocked", "failed"]


@dataclass(frozen=True)
class Evidence:
    """What the runner saw of one agent run."""

    transcript: Transcript
    exit_code: int | None
    changed_files: list[str] = field(default_factory=list)
    report_status: str | None = None
    report_summary: str | None = None
    report_diagnosis: str | None = None
    report_problem: str | None = None
    unreachable: str | None = None
    """Set by the runner when its probe (or watchdog) found the model endpoint unreachable: the cause."""
    require_result: bool = True
    """The prompt's output contract: no result file, no success. A user's own `custom` command is not held to it."""


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    reason: str
    message: str
    diagnosis: str | None = None


def _agent_words(t: Transcript) -> str | None:
    if t.errors:
        return "; ".join(dict.fromkeys(e for e in t.errors if e))[:600] or None
    if t.final_message:
        return t.final_message[:600]
    last = [line.strip() for line in t.text_lines if line.strip()][-3:]  # a text agent (aider): its last lines
    return " | ".join(last)[:600] or None


def judge(evidence: Evidence) -> Outcome:
    """The verdict of one run; see the module docstring for the order of the rules."""
    t = evidence.transcript
    changed = bool(evidence.changed_files)

    if evidence.unreachable or (t.unreachable and not t.model_answered):
        cause = evidence.unreachable or _agent_words(t) or "connection errors and no model answer"
        return Outcome(
            "failed",
            "model_unreachable",
            "the agent could not reach its model endpoint; nothing was pushed",
            f"model endpoint unreachable: {cause}",
        )
    if t.is_error and not changed:
        words = _agent_words(t) or "the agent reported an error"
        return Outcome(
            "failed",
            "model_error",
            "the agent's model turn failed; nothing was pushed",
            f"the agent reported: {words}",
        )
    if evidence.exit_code not in (0, None):
        words = _agent_words(t)
        return Outcome(
            "failed",
            "agent_exit_code",
            f"the agent exited {evidence.exit_code}",
            f"the agent reported: {words}" if words else None,
        )
    if t.all_tools_failed and not changed:
        failed = "; ".join(f"{c.name} ({c.detail})" if c.detail else c.name for c in t.tools[:5])
        claim = f" Its last message: {t.final_message[:300]!r}." if t.final_message else ""
        return Outcome(
            "failed",
            "agent_tools_failed",
            f"all {len(t.tools)} tool call(s) of the agent failed and nothing changed",
            f"every tool call failed: {failed}.{claim}",
        )
    if evidence.report_problem and evidence.require_result:
        problem = evidence.report_problem
        words = _agent_words(t)
        return Outcome(
            "failed",
            "no_result",
            f"the agent did not deliver its result ({problem})",
            f"{problem}; the agent's last words: {words}" if words else problem,
        )
    status = (evidence.report_status or "done").strip().lower()  # a result without a status reads as done
    if status == "blocked":
        return Outcome(
            "blocked",
            "agent_blocked",
            "the agent says it is blocked",
            evidence.report_diagnosis or evidence.report_summary or "the agent gave no diagnosis",
        )
    if status != "done":
        return Outcome(
            "failed",
            "no_result",
            f"the result file's status is {evidence.report_status!r}, expected 'done' or 'blocked'",
            evidence.report_diagnosis,
        )
    return Outcome("succeeded", "done", evidence.report_summary or "the agent finished")
