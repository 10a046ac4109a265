"""The spend report the terminal and the asset share: rows per repository, agent and model, and how much of each
repository's monthly budget is used."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from ..domain.spend import Amount, Limit, format_money, money_text, used_share
from ..store.database import PlatformStore
from ..store.usage import SpendRow, monthly_spend, spend_by

WARN_SHARE = 0.8  # the spend check fails when a monthly budget is this much used


@dataclass(frozen=True)
class BudgetUse:
    repository: str
    spent: Amount
    limit: Limit

    @property
    def share(self) -> float | None:
        return used_share(self.limit, self.spent)

    def text(self, currency: str) -> str:
        share = self.share
        parts = []
        if self.limit.cost is not None:
            # A run without a price is said, not taken for free: the share below counts the priced ones only.
            parts.append(f"{money_text(self.spent, currency)} of {format_money(self.limit.cost, currency)}")
        if self.limit.tokens is not None:
            parts.append(f"{self.spent.tokens:,} of {self.limit.tokens:,} tokens")
        used = "" if share is None else f" ({share:.0%})"
        return f"{self.repository}: {' and '.join(parts)} this month{used}"


@dataclass(frozen=True)
class SpendReport:
    start: datetime
    end: datetime
    currency: str
    rows: Sequence[SpendRow]
    budgets: Sequence[BudgetUse]

    @property
    def total_cost(self) -> Decimal:
        return sum((r.cost for r in self.rows), Decimal(0))

    @property
    def total_tokens(self) -> int:
        return sum(r.input_tokens + r.output_tokens for r in self.rows)

    @property
    def runs(self) -> int:
        return sum(r.runs for r in self.rows)

    @property
    def unknown_runs(self) -> int:
        return sum(r.unknown_runs for r in self.rows)

    @property
    def total(self) -> Amount:
        return sum((r.amount for r in self.rows), Amount())

    def over(self, share: float = WARN_SHARE) -> list[BudgetUse]:
        return [b for b in self.budgets if b.share is not None and b.share >= share]

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "currency": self.currency,
            "runs": self.runs,
            "runs_with_unknown_usage": self.unknown_runs,
            "runs_without_price": sum(r.without_price for r in self.rows),
            "tokens": self.total_tokens,
            "cost": str(self.total_cost),
            "rows": [
                {
                    "repository": r.repository,
                    "agent": r.agent,
                    "model": r.model,
                    "runs": r.runs,
                    "runs_with_unknown_usage": r.unknown_runs,
                    "runs_without_price": r.without_price,
                    "input_tokens": r.input_tokens,
                    "cached_input_tokens": r.cached_input_tokens,
                    "output_tokens": r.output_tokens,
                    "cost": str(r.cost),
                    "currency": r.currency,
                }
                for r in self.rows
            ],
            "monthly_budgets": [
                {
                    "repository": b.repository,
                    "tokens": b.spent.tokens,
                    "cost": str(b.spent.cost),
                    "limit_tokens": b.limit.tokens,
                    "limit_cost": None if b.limit.cost is None else str(b.limit.cost),
                    "used": None if b.share is None else round(b.share, 4),
                }
                for b in self.budgets
            ],
        }

    def table(self) -> str:
        header = ("repository", "agent", "model", "runs", "input", "cached", "output", "cost")
        lines = [
            (
                r.repository,
                r.agent,
                r.model,
                str(r.runs) + (f" ({r.unknown_runs} unknown)" if r.unknown_runs else ""),
                f"{r.input_tokens:,}",
                f"{r.cached_input_tokens:,}",
                f"{r.output_tokens:,}",
                money_text(r.amount, r.currency),
            )
            for r in self.rows
        ]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *lines, strict=True)]
        last = self.end - timedelta(microseconds=1)
        out = [f"spend {self.start:%Y-%m-%d} → {last:%Y-%m-%d} (UTC, days included)"]
        for row in (header, *lines):
            out.append("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
        out.append(
            f"total: {self.runs} runs · {self.total_tokens:,} tokens · {money_text(self.total, self.currency)}"
            + (f" · {self.unknown_runs} runs with usage unknown" if self.unknown_runs else "")
        )
        for b in self.budgets:
            mark = "  ⚠" if b.share is not None and b.share >= WARN_SHARE else ""
            out.append(f"budget {b.text(self.currency)}{mark}")
        return "\n".join(out)


def budget_uses(monthly: Mapping[str, Amount], limit: Limit) -> list[BudgetUse]:
    if limit.empty:
        return []
    return [BudgetUse(repo, amount, limit) for repo, amount in sorted(monthly.items())]


def build_report(
    store: PlatformStore,
    currency: str,
    month_limit: Limit,
    start: datetime,
    end: datetime,
    repository: str | None = None,
    repositories: Sequence[str] = (),
) -> SpendReport:
    """Spend in [start, end) and the monthly budget use (as of `end`) of every repository that spent or is watched."""
    rows = spend_by(store, start, end, repository)
    names = {repository.lower()} if repository else {r.lower() for r in repositories} | {r.repository for r in rows}
    as_of = end - timedelta(microseconds=1)
    uses = budget_uses(monthly_spend(store, as_of, sorted(names)), month_limit) if names else []
    return SpendReport(start, end, currency, rows, uses)
