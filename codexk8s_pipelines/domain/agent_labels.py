"""Which labels an agent may put on or take off its run's issue or PR (the MCP tool `github_labels_transition`).

The tool writes with the platform's own GitHub credential, so GitHub, and the intake reading its events, see every
label an agent puts as the platform's (or, with a person's token as that credential, as that person's). Hence two
rules, both about keeping a person's decisions a person's:
- a label that starts or approves runs (`decisions.run_effect`: `run:*`, `need:reviewer`, `state:approved`, the
  budgets' override label) is refused both ways: putting one would start a run, and toggling one starts one per
  toggle; taking one off undoes a person's request or approval;
- of the other platform labels (`state:*`, `need:*`) an agent takes off only what is its own: `need:<its role>`,
  a request addressed to it, which it answers by taking it off, and what its own run put there. `state:blocked`,
  `state:abandoned`, `need:input`, … set by a person record that person's decision or question; only a person
  takes them off.
Pure: the tool reads the run's role and its audit, and asks here.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from .decisions import RunEffect, run_effect
from .labels import NEED_VALUES, STATE_VALUES, LabelKind, LabelScheme, normalize

MAX_LABEL_CHARS = 50
"""GitHub's longest label name. A longer one is no label at all: it is refused before anything else reads it, and so
no message here ever holds more of a label than this (one of 3.9 MB was echoed, and audited, whole: review 41)."""
# Why an agent may not touch a label of each effect; `{label}` is the label as the agent wrote it.
_REFUSALS: dict[RunEffect, str] = {
    RunEffect.TRIGGER: "'{label}' is a run:* trigger label; agents cannot start or stop runs",
    RunEffect.REVIEWER: (
        "'{label}' starts a reviewer run when it is put on a pull request; agents cannot start runs, so they may "
        "neither add nor remove it: ask a human in your result"
    ),
    RunEffect.APPROVAL: "'{label}' is an approval; only a human can give or take it back",
    RunEffect.BUDGET_OVERRIDE: (
        "'{label}' is the budgets' override label (it starts a held run); only an approver can add or remove it"
    ),
}


class LabelRefused(ValueError):
    """An agent may not change this label; the message names the label and says why."""


def agent_usable(scheme: LabelScheme, override_label: str | None = None) -> list[str]:
    """Every label an agent may add (and, if it is its own, remove): the platform's state/need labels that start
    and approve nothing."""
    names = [scheme.state_label(v) for v in STATE_VALUES] + [scheme.need_label(v) for v in NEED_VALUES]
    return [n for n in names if run_effect(n, scheme, override_label) is None]


def agent_label(label: str, scheme: LabelScheme, override_label: str | None = None) -> str:
    """The canonical name of `label` when an agent may add or remove it, else `LabelRefused` saying why not.

    Only the platform's own `state:*` and `need:*` labels: model/reasoning labels choose what a run costs, `mode:*`
    and foreign labels belong to the humans, and a label with a run effect is never an agent's (module docstring)."""
    if len(label) > MAX_LABEL_CHARS:
        raise LabelRefused(f"a label name has at most {MAX_LABEL_CHARS} characters")
    effect = run_effect(label, scheme, override_label)
    if effect is not None:
        raise LabelRefused(_REFUSALS[effect].format(label=label))
    parsed = scheme.parse(label)
    if parsed.kind is LabelKind.STATE and parsed.value in STATE_VALUES:
        return scheme.state_label(parsed.value)
    if parsed.kind is LabelKind.NEED and parsed.value in NEED_VALUES:
        return scheme.need_label(parsed.value)
    usable = ", ".join(agent_usable(scheme, override_label))
    raise LabelRefused(f"'{label}' is outside the platform's label groups an agent may use: {usable}")


def removal_refusal(
    name: str, scheme: LabelScheme, role: str | None, own: Collection[str], last_put_by_platform: bool = True
) -> str | None:
    """Why an agent of `role` may not take `name` (canonical, from `agent_label`) off its item, or None when it may.
    `own`: the labels its run put on that item and still owns (`labels_put_by_run`), normalised;
    `last_put_by_platform`: whether the item's newest `labeled` event of `name` is the platform's own account's
    (`last_labeller`). A label the run put, that a person then took off and put back, is the person's again."""
    if role and normalize(name) == normalize(scheme.need_label(role)):
        return None
    if normalize(name) in own and last_put_by_platform:
        return None
    mine = f"{scheme.need_label(role)} or " if role else ""
    return (
        f"'{name}' was not put here by this run: an agent removes only {mine}labels its own run added; "
        "a label a person set records their decision, ask a human in your result to take it off"
    )


def last_labeller(events: Iterable[tuple[str, str, str]], name: str) -> str | None:
    """The login of whoever put `name` on the item last, from its events oldest first as (event, label, actor login):
    the actor of the newest `labeled` one; None when no event says."""
    login = None
    for event, label, actor in events:
        if event == "labeled" and normalize(label) == normalize(name):
            login = actor or None
    return login


def labels_put_by_run(changes: Iterable[Mapping[str, Any]], number: int) -> set[str]:
    """The labels a run's agent put on item `number` and did not take off again, normalised, from the payloads of
    its `run.labels.changed` audit rows made through MCP, oldest first. `put` lists only labels that were not on the
    item before the agent added them: adding a label a person had set does not make it the agent's."""
    own: set[str] = set()
    for payload in changes:
        if payload.get("via") != "mcp" or payload.get("number") != number:
            continue
        own.update(normalize(str(x)) for x in payload.get("put") or ())
        own.difference_update(normalize(str(x)) for x in payload.get("removed") or ())
    return own
