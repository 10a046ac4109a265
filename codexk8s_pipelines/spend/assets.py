"""The `spend` asset: one partition per UTC day, a table per repository, agent and model, the cost of the 30 days
up to that day as a plot, and a check that fails when a repository's monthly budget is 80% used."""

from datetime import UTC, timedelta

import dagster as dg

from ..autonomous.factory import OWNERS
from ..insight.assets import START_DATE, check_spec, table
from ..insight.metrics import day_window
from ..insight.plots import bar_chart, markdown_image, save_plot
from ..resources import PlatformConfigResource, PlatformDatabase
from ..store.usage import daily_cost
from .report import WARN_SHARE, build_report

CHECK = "monthly_budget_headroom"
# Today is a partition too (end_offset 1): spend nearing a cap must show the same day, not after midnight.
DAILY_WITH_TODAY = dg.DailyPartitionsDefinition(start_date=START_DATE, timezone="UTC", end_offset=1)
PLOT_DAYS = 30


@dg.asset(
    name="spend",
    partitions_def=DAILY_WITH_TODAY,
    group_name="spend",
    kinds={"postgres"},
    owners=OWNERS,
    check_specs=[
        check_spec(
            CHECK,
            "spend",
            f"No repository has used {WARN_SHARE:.0%} of its monthly budget (budgets.per_repository.month) as of "
            "this day.",
            f"check-{CHECK}",
        )
    ],
    description="What the agents' runs of this UTC day cost, per repository, agent and model (tokens from each "
    "agent's own report, money from `pricing:`), the 30 days up to it, and each repository's monthly budget use.",
)
def spend(
    context: dg.AssetExecutionContext, platform_db: PlatformDatabase, platform_config: PlatformConfigResource
) -> dg.MaterializeResult:
    config = platform_config.get()
    store = platform_db.store()
    start, end = day_window(context.partition_key)
    month_limit = config.budgets.budgets().repository_month
    report = build_report(
        store,
        config.pricing.currency,
        month_limit,
        start,
        end,
        repositories=[r.key for r in config.repositories],
    )
    days = [(end - timedelta(days=PLOT_DAYS - i)).date().isoformat() for i in range(PLOT_DAYS)]
    costs = daily_cost(store, end - timedelta(days=PLOT_DAYS), end)
    png = bar_chart(
        f"Cost per day, {days[0]} → {days[-1]}",
        days,
        {report.currency: [float(costs.get(d, 0)) for d in days]},
        report.currency,
        "No run recorded usage in these 30 days",
    )
    plot = save_plot("spend-30-days.png", png)
    columns = [
        ("repository", "string"), ("agent", "string"), ("model", "string"), ("runs", "int"),
        ("runs_usage_unknown", "int"), ("runs_without_price", "int"), ("input_tokens", "int"),
        ("cached_input_tokens", "int"), ("output_tokens", "int"), ("cost", "float"),
    ]  # fmt: skip
    rows = [
        (r.repository, r.agent, r.model, r.runs, r.unknown_runs, r.without_price, r.input_tokens,
         r.cached_input_tokens, r.output_tokens, float(r.cost))
        for r in report.rows
    ]  # fmt: skip
    over = report.over()
    worst = max((b.share or 0.0 for b in report.budgets), default=0.0)
    if month_limit.empty:
        summary = "no monthly budget is configured (budgets.per_repository.month)"
    elif over:
        summary = "; ".join(b.text(report.currency) for b in over)
    else:
        summary = f"every repository under {WARN_SHARE:.0%} of its monthly budget (highest {worst:.0%})"
    unpriced = sum(b.spent.unpriced - b.spent.unknown_runs for b in report.budgets)
    if unpriced and not month_limit.empty:  # their cost is not in the shares: a budget may be more used than it says
        summary += f"; {unpriced} run(s) this month have no price (pricing:) and are not in these figures"
    return dg.MaterializeResult(
        metadata={
            "runs": report.runs,
            "runs_usage_unknown": report.unknown_runs,
            "runs_without_price": sum(r.without_price for r in report.rows),
            "tokens": report.total_tokens,
            "cost": round(float(report.total_cost), 4),
            "currency": report.currency,
            "spend": table(columns, rows),
            "cost_plot": dg.MetadataValue.path(str(plot)),
            "cost_plot_image": dg.MetadataValue.md(markdown_image(png, "cost per day, last 30 days")),
            "monthly_budget_used": float(round(worst, 4)),
        },
        check_results=[
            dg.AssetCheckResult(
                check_name=CHECK,
                asset_key=dg.AssetKey("spend"),
                passed=not over,
                severity=dg.AssetCheckSeverity.ERROR
                if any((b.share or 0) >= 1 for b in over)
                else dg.AssetCheckSeverity.WARN,
                metadata={"summary": summary, "highest_share": float(round(worst, 4))},
            )
        ],
    )


spend_daily_job = dg.define_asset_job("spend_daily", selection=[spend], tags={"codexk8s/kind": "spend"})


@dg.schedule(
    name="spend_hourly",
    job=spend_daily_job,
    cron_schedule="29 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Today's spend partition, hourly: a budget nearing its cap shows the same day, not the next.",
)
def spend_hourly_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    day = context.scheduled_execution_time.astimezone(UTC).date().isoformat()
    return dg.RunRequest(partition_key=day, run_key=None)
