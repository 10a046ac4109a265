"""A stage run's spend: the cap and loop rule handed to the runner, the usage recorded when it ends, and the line
the service comment shows ("this run … · this issue: 3 runs · 412k tokens · $1.84")."""

from __future__ import annotations

from typing import Any

from ..agents.runner_spec import RunnerResult, SpendGuard
from ..agents.usage import Usage
from ..config.models import PlatformConfig
from ..domain.spend import Cost, TokenCounts, issue_total_line
from ..store.database import PlatformStore
from ..store.usage import UsageRecord, issue_runs, record_usage, usage_figures
from .context import StageContext

ACTOR = "dagster"


def spend_guard(platform: PlatformConfig, model: str | None) -> SpendGuard | None:
    """What the runner enforces while the agent works; None when no per-run cap and no loop rule is set."""
    budgets = platform.budgets
    if budgets.per_run is None and budgets.loop_turns == 0:
        return None
    price = platform.pricing.table().price(model)
    return SpendGuard(
        model=(model or "").lower() or None,
        currency=platform.pricing.currency,
        price_input=price.input if price else None,
        price_cached_input=price.cached_input if price else None,
        price_output=price.output if price else None,
        max_tokens=budgets.per_run.tokens if budgets.per_run else None,
        max_cost=budgets.per_run.cost if budgets.per_run else None,
        loop_turns=budgets.loop_turns,
        push_partial_work=budgets.push_partial_work,
    )


def _priced(
    platform: PlatformConfig, ctx: StageContext, result: RunnerResult
) -> tuple[Usage | None, TokenCounts, Cost]:
    """The agent's own report, its token counts, and its cost from the price table (or the agent's own figure)."""
    usage = Usage.from_dict(result.usage)
    tokens = TokenCounts(usage.input, usage.cached_input, usage.output) if usage else TokenCounts()
    return usage, tokens, platform.pricing.table().cost(ctx.model, tokens, usage.cost_usd if usage else None)


def record_run(
    store: PlatformStore,
    platform: PlatformConfig,
    ctx: StageContext,
    agent: str,
    result: RunnerResult,
    dagster_run_id: str,
) -> dict[str, Any]:
    """Write the run's usage (unknown stays unknown) with its cost from the price table, release its budget hold,
    and return what the audit and the run metadata show.

    `dagster_run_id`: this attempt. A run re-executed from the Dagster UI (a new Dagster run of the same key) adds
    its usage to the earlier attempts' instead of replacing it (store/usage.py `record_usage`)."""
    usage, tokens, cost = _priced(platform, ctx, result)
    record_usage(
        store,
        UsageRecord(
            correlation_key=ctx.correlation_key,
            repository=ctx.repository,
            agent=agent,
            tokens=tokens,
            cost=cost,
            issue_number=ctx.issue_number,
            stage=ctx.stage,
            model=ctx.model,
            reasoning_tokens=usage.reasoning if usage else None,
            dagster_run_id=dagster_run_id,
        ),
    )
    figures = {
        **usage_figures(agent, ctx.model, tokens, cost.amount, cost.currency),
        "cost_source": cost.source.value,
    }
    store.append_event(
        ctx.correlation_key, "run.usage.recorded", "system", ACTOR, {**figures, "dagster_run_id": dagster_run_id}
    )
    return figures


def comment_line(store: PlatformStore, platform: PlatformConfig, ctx: StageContext, result: RunnerResult) -> str:
    """This run's usage (the agent's own words, priced) and the issue's total so far."""
    usage, _, cost = _priced(platform, ctx, result)
    if usage is not None and usage.known:
        this_run = f"{usage.summary().rsplit(' · ', 1)[0]} · {cost.text()}"
    else:
        this_run = f"usage unknown ({result.agent_kind or 'the agent'} reported none)"
    line = f"this run: {this_run}"
    if ctx.issue_number is not None:
        total = issue_total_line(issue_runs(store, ctx.repository, ctx.issue_number), platform.pricing.currency)
        line += f" — this issue so far: {total}"
    return line
