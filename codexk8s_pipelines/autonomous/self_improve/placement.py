"""Where a new window of self-improve evidence goes: the recorded evidence issue, a new one, or nowhere yet.

An evidence issue is a one-shot trigger: its `run:self-improve` label starts one agent run, which reads the body
and proposes a PR that cites the issue ("Closes #N"). Once a run has taken the issue up, refreshing its body would
hand the new evidence to nobody (no label, so no run starts) and would rewrite what the PR says it was built from.
So the recorded issue is refreshed in place only while nothing has worked on it yet; once it was worked on, the
new evidence goes to a new labelled issue; and while its run is in flight, nothing is written and the evidence
waits (it is not recorded as prepared, so the next cadence gathers it again, with what finished meanwhile).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ...domain.labels import LabelKind, LabelScheme, normalize
from ...github.payloads import label_names
from ...store import PlatformStore

STAGE = "self-improve"
# Run statuses of a run that has not finished: registered by the intake sensor, queued in Dagster, or running.
IN_FLIGHT = ("requested", "queued", "running")
# States the platform (or a human) puts on an issue a run has taken up: a PR in review, a run that is blocked, an
# issue given up. `approved` is not one: it can come before the run it approves.
WORKED_ON_STATES = ("in-review", "blocked", "superseded", "abandoned")

Verdict = Literal["refresh", "wait", "replace"]


@dataclass(frozen=True)
class Placement:
    """What to do with the recorded evidence issue, and why (the why goes to the log and the asset check)."""

    verdict: Verdict
    reason: str


def place(
    issue: Mapping[str, Any], trigger_label: str, scheme: LabelScheme, store: PlatformStore, repository: str
) -> Placement:
    """Decide for an evidence issue the platform recorded (open or not; a gone one needs no decision).

    A self-improve run of the issue still in flight comes first: its agent may already have read the body, and a
    second issue would start a second agent on overlapping work. Then the label: without the trigger label (the
    platform takes it off after a success; a human may have taken it off) no run will start from the issue, so
    refreshing it would waste the evidence. A worked-on state, or a finished run of the stage on the issue, says
    the same when the label stayed (a blocked run keeps its trigger label, so a human sees what was asked).
    """
    number = int(issue["number"])
    if store.has_stage_run(repository, number, STAGE, IN_FLIGHT):
        return Placement("wait", f"the self-improve run of #{number} is in flight")
    if issue.get("state") != "open":
        return Placement("replace", f"#{number} is {issue.get('state')}")
    names = label_names(issue, f"evidence issue #{number}")
    if normalize(trigger_label) not in {normalize(n) for n in names}:
        return Placement("replace", f"#{number} no longer carries `{trigger_label}`")
    states = [n for n in names if (p := scheme.parse(n)).kind is LabelKind.STATE and p.value in WORKED_ON_STATES]
    if states:
        return Placement("replace", f"#{number} was worked on ({', '.join(states)})")
    if store.has_stage_run(repository, number, STAGE):
        return Placement("replace", f"a self-improve run already took up #{number}")
    return Placement("refresh", f"#{number} is open, labelled and not taken up yet")
