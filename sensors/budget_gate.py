"""Budgets at launch: a run whose budget has no room is held, not started, and the issue is told once.

The reservation is made in the platform database under one lock (`store.usage.reserve`), so two runs deciding at
the same moment against room for one start one. A held run starts later, under its own correlation key, when
the budget allows it again (raised in `codexk8s.yaml`, or a new day or month: every tick looks) or when an
approver of its stage adds the override label (`budgets.override_label`, default `budget:override`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from codexk8s_pipelines.domain.decisions import Decision, budget_override_rule
from codexk8s_pipelines.domain.spend import Breach
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.store.usage import (
    RESCUE_WINDOW,
    BudgetHold,
    hold_run,
    open_holds,
    release_hold,
    released_not_started,
    reserve,
)

from .comment_once import post_once
from .decide import SYSTEM_ACTOR, Decided, TickContext

log = logging.getLogger(__name__)

MARKER = "<!-- codexk8s:budget {key} -->"


def _comment(ctx: TickContext, d: Decided, breaches: Sequence[Breach]) -> str:
    currency = ctx.budgets_currency
    label = d.decision.trigger_label or d.label
    rule = budget_override_rule(d.decision, ctx.rules)
    lines = [
        MARKER.format(key=d.key),
        f"**Budget exhausted: no run started** for `{label}`.",
        *(f"- {b.text(currency)}" for b in breaches),
        "To start it: raise the budget under `budgets:` in codexk8s.yaml (the next sensor tick starts it), or an "
        f"approver ({rule.describe_approvers()}) adds `{ctx.budgets.override_label}`.",
        f"Set: `{ctx.rules.labels.need_input}`",
        "Reason code: `budget_exceeded`",
    ]
    return "\n\n".join(lines)


def admit(api: RepoApi, ctx: TickContext, d: Decided) -> bool:
    """Whether a decided run may start now; when it may not, it is held, audited and explained (each once)."""
    if not ctx.budgets.any or d.budget_override is not None:
        return True
    store = ctx.platform
    repository = api.full_name.lower()
    agent = ctx.agent_for(d.decision.role)
    breaches = reserve(store, ctx.budgets, d.key, repository, d.issue_number, agent, now=ctx.now)
    if not breaches:
        return True
    hold_run(
        store,
        BudgetHold(d.key, repository, d.issue_number, d.pr_number, agent, d.actor.login, d.decision.to_dict(), ctx.now),
    )
    if not store.has_event(d.key, "budget.exceeded"):
        payload = {
            "agent": agent,
            "stage": d.decision.stage,
            "breaches": [b.text(ctx.budgets_currency) for b in breaches],
            "actor": d.actor.login,
            "event_id": d.event_id,
        }
        store.append_event(d.key, "budget.exceeded", "system", SYSTEM_ACTOR, payload)
    body = _comment(ctx, d, breaches)
    post_once(api, store, d.key, "budget.comment.posted", d.number, [ctx.rules.labels.need_input], body)
    return False


def record_override(ctx: TickContext, d: Decided) -> bool:
    """An approver's override: the hold is released (with a reservation, so later launches count it); False
    when it was already released (a tick redone after a crash), so nothing starts twice."""
    assert d.budget_override is not None
    hold = d.budget_override
    released = release_hold(ctx.platform, ctx.budgets, hold, "override", d.actor.login, ctx.now)
    if released is None:
        # Released before: by this override in a tick whose run record then failed (the item is decided again),
        # the run is still to be requested; otherwise it was started, and starts nothing twice.
        return bool(released_not_started(ctx.platform, ctx.now - RESCUE_WINDOW, correlation_key=hold.correlation_key))
    ctx.platform.append_event(
        d.key,
        "budget.overridden",
        "human",
        d.actor.login,
        {"label": ctx.budgets.override_label, "event_id": d.event_id},
    )
    return True


def released_by_budget(ctx: TickContext) -> list[tuple[BudgetHold, Decision]]:
    """The held runs the budgets now have room for, released oldest first (each in its own locked transaction,
    so a run released here counts against the next one)."""
    if ctx.store is None:
        return []
    # Released by the budgets in a tick whose run record then failed: requested now (the same key, so once). Read
    # before this tick releases any, which are requested by this tick.
    released: list[tuple[BudgetHold, Decision]] = []
    for hold in released_not_started(ctx.store, ctx.now - RESCUE_WINDOW, how="budget"):
        try:
            released.append((hold, Decision.from_dict(hold.decision)))
        except Exception as exc:  # one bad row must not stop the tick
            log.warning("budget hold %s: %s", hold.correlation_key, exc)
    for hold in open_holds(ctx.store):
        try:
            breaches = release_hold(ctx.store, ctx.budgets, hold, "budget", SYSTEM_ACTOR, ctx.now)
            if breaches == []:
                ctx.store.append_event(hold.correlation_key, "budget.released", "system", SYSTEM_ACTOR, {})
                released.append((hold, Decision.from_dict(hold.decision)))
        except Exception as exc:  # one bad row must not stop the tick; it is retried next tick
            log.warning("budget hold %s: %s", hold.correlation_key, exc)
    return released
