"""What a run costs and whether a budget allows the next one: pure arithmetic over usage figures.

Tokens follow the OpenAI convention the usage parsers normalise to: `input` includes `cached_input`, `output`
includes reasoning. A run's "tokens" for a budget are input + output. Money is `Decimal`: budgets are compared to
the cent, and a float sum of 100,000 runs drifts.

A figure nobody reported stays `None` ("unknown"): a run with unknown usage costs nothing we can prove, so a
budget can only count what it knows, and says so (`unknown_runs`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

MILLION = Decimal(1_000_000)
MONEY_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class Price:
    """Per million tokens, in the price table's currency."""

    input: Decimal
    cached_input: Decimal
    output: Decimal


@dataclass(frozen=True)
class TokenCounts:
    input: int | None = None
    cached_input: int | None = None
    output: int | None = None

    @property
    def known(self) -> bool:
        return self.input is not None or self.output is not None

    @property
    def total(self) -> int | None:
        """Tokens a budget counts: input (cached included) + output; None when the agent said nothing."""
        if not self.known:
            return None
        return (self.input or 0) + (self.output or 0)


class CostSource(StrEnum):
    PRICE_TABLE = "price table"
    AGENT = "agent"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Cost:
    amount: Decimal | None
    currency: str
    source: CostSource

    def text(self) -> str:
        return format_money(self.amount, self.currency)


@dataclass(frozen=True)
class PriceTable:
    """The configured prices (`pricing:`); a model without a price shows tokens only."""

    currency: str = "USD"
    models: Mapping[str, Price] = field(default_factory=dict)

    def price(self, model: str | None) -> Price | None:
        if not model:
            return None
        return self.models.get(model) or self.models.get(model.strip().lower())

    def cost(self, model: str | None, tokens: TokenCounts, agent_cost_usd: float | None = None) -> Cost:
        """The configured price first (the user's own contract); else the agent's own figure when it is in the
        table's currency (agents report USD); else unknown."""
        price = self.price(model)
        if price is not None and tokens.known:
            cached = min(tokens.cached_input or 0, tokens.input or 0)
            fresh = (tokens.input or 0) - cached
            amount = (
                Decimal(fresh) * price.input
                + Decimal(cached) * price.cached_input
                + Decimal(tokens.output or 0) * price.output
            ) / MILLION
            return Cost(amount.quantize(MONEY_PLACES, ROUND_HALF_UP), self.currency, CostSource.PRICE_TABLE)
        if agent_cost_usd is not None and self.currency.upper() == "USD":
            return Cost(Decimal(str(agent_cost_usd)).quantize(MONEY_PLACES, ROUND_HALF_UP), "USD", CostSource.AGENT)
        return Cost(None, self.currency, CostSource.UNKNOWN)


def format_money(amount: Decimal | None, currency: str) -> str:
    if amount is None:
        return "cost unknown"
    symbol = {"USD": "$", "EUR": "€", "GBP": "£"}.get(currency.upper())
    places = Decimal("0.01") if abs(amount) >= 1 else Decimal("0.0001")
    value = amount.quantize(places, ROUND_HALF_UP)
    return f"{symbol}{value}" if symbol else f"{value} {currency}"


def format_tokens(tokens: int | None) -> str:
    if tokens is None:
        return "tokens unknown"
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M tokens"
    if tokens >= 1_000:
        return f"{round(tokens / 1_000)}k tokens"
    return f"{tokens} tokens"


# -- budgets ---------------------------------------------------------------------------------------------------


class Scope(StrEnum):
    RUN = "run"
    ISSUE = "issue"
    REPOSITORY_DAY = "repository/day"
    REPOSITORY_MONTH = "repository/month"
    AGENT_DAY = "agent/day"


@dataclass(frozen=True)
class Limit:
    """A cap in tokens, in money, or both (whichever is reached first)."""

    tokens: int | None = None
    cost: Decimal | None = None

    @property
    def empty(self) -> bool:
        return self.tokens is None and self.cost is None


@dataclass(frozen=True)
class Amount:
    """Spent (or held) in one scope: tokens, money, how many runs reported neither (`unknown_runs`), and how many
    have no money figure (`unpriced`: no price for their model and no cost of the agent's own)."""

    tokens: int = 0
    cost: Decimal = Decimal(0)
    runs: int = 0
    unknown_runs: int = 0
    unpriced: int = 0

    def __add__(self, other: Amount) -> Amount:
        return Amount(
            self.tokens + other.tokens,
            self.cost + other.cost,
            self.runs + other.runs,
            self.unknown_runs + other.unknown_runs,
            self.unpriced + other.unpriced,
        )

    @classmethod
    def of(cls, tokens: int | None, cost: Decimal | None) -> Amount:
        unknown = 1 if tokens is None and cost is None else 0
        return cls(tokens or 0, cost or Decimal(0), 1, unknown, 1 if cost is None else 0)


@dataclass(frozen=True)
class Budgets:
    """`budgets:` of the configuration; every scope optional. `reserve` is what a starting run holds until it
    reports its usage (by default the per-run cap): it is what makes two simultaneous launches exact."""

    per_run: Limit = Limit()
    per_issue: Limit = Limit()
    repository_day: Limit = Limit()
    repository_month: Limit = Limit()
    agent_day: Limit = Limit()
    reserve: Limit = Limit()
    push_partial_work: bool = False
    override_label: str = "budget:override"

    @property
    def any(self) -> bool:
        return not all(
            lim.empty
            for lim in (self.per_run, self.per_issue, self.repository_day, self.repository_month, self.agent_day)
        )

    def limit(self, scope: Scope) -> Limit:
        return {
            Scope.RUN: self.per_run,
            Scope.ISSUE: self.per_issue,
            Scope.REPOSITORY_DAY: self.repository_day,
            Scope.REPOSITORY_MONTH: self.repository_month,
            Scope.AGENT_DAY: self.agent_day,
        }[scope]

    def reservation(self) -> Amount:
        """What a launch holds: `reserve`, else the per-run cap, else nothing (count only what was spent)."""
        tokens = self.reserve.tokens if self.reserve.tokens is not None else self.per_run.tokens
        cost = self.reserve.cost if self.reserve.cost is not None else self.per_run.cost
        return Amount(tokens or 0, cost or Decimal(0), 1, 0)


@dataclass(frozen=True)
class Breach:
    scope: Scope
    limit: Limit
    spent: Amount
    requested: Amount

    def text(self, currency: str) -> str:
        if self.scope is Scope.RUN:  # a running run against its own cap: nothing more is asked for
            used = []
            if self.limit.cost is not None:
                used.append(
                    f"{format_money(self.spent.cost, currency)} used > {format_money(self.limit.cost, currency)}"
                )
            if self.limit.tokens is not None:
                used.append(f"{self.spent.tokens:,} tokens used > {self.limit.tokens:,}")
            return "run budget: " + "; ".join(used)
        parts = []
        if self.limit.cost is not None:
            parts.append(
                f"{format_money(self.spent.cost, currency)} spent + {format_money(self.requested.cost, currency)}"
                f" for this run > {format_money(self.limit.cost, currency)}"
            )
        if self.limit.tokens is not None:
            parts.append(
                f"{self.spent.tokens:,} tokens spent + {self.requested.tokens:,} for this run > {self.limit.tokens:,}"
            )
        return f"{self.scope.value} budget: " + "; ".join(parts)


def _over(limit: Limit, total: Amount, requested: Amount) -> bool:
    """A launch fits while what is spent plus what it holds stays within the cap; with nothing to hold, a cap
    already reached refuses it."""

    def over(spent: int | Decimal, held: int | Decimal, cap: int | Decimal | None) -> bool:
        return cap is not None and (spent + held > cap or (held == 0 and spent >= cap))

    return over(total.cost, requested.cost, limit.cost) or over(total.tokens, requested.tokens, limit.tokens)


def launch_breaches(budgets: Budgets, spent: Mapping[Scope, Amount]) -> list[Breach]:
    """The scopes whose budget a new run would exceed: spent (and held) so far plus this run's reservation."""
    requested = budgets.reservation()
    breaches = []
    for scope in (Scope.ISSUE, Scope.REPOSITORY_DAY, Scope.REPOSITORY_MONTH, Scope.AGENT_DAY):
        limit = budgets.limit(scope)
        if limit.empty:
            continue
        total = spent.get(scope, Amount())
        if _over(limit, total, requested):
            breaches.append(Breach(scope, limit, total, requested))
    return breaches


def run_cap_reached(budgets: Budgets, tokens: int | None, cost: Decimal | None) -> Breach | None:
    """Whether a running run's usage so far passed its own cap: the runner ends the agent then."""
    limit = budgets.per_run
    if limit.empty:
        return None
    over_tokens = limit.tokens is not None and tokens is not None and tokens > limit.tokens
    over_cost = limit.cost is not None and cost is not None and cost > limit.cost
    if over_tokens or over_cost:
        return Breach(Scope.RUN, limit, Amount.of(tokens, cost), Amount())
    return None


def used_share(limit: Limit, spent: Amount) -> float | None:
    """The larger of the token and money shares of a cap that is used (0.8 = 80%); None without a cap."""
    shares = []
    if limit.cost is not None and limit.cost > 0:
        shares.append(float(spent.cost / limit.cost))
    if limit.tokens is not None and limit.tokens > 0:
        shares.append(spent.tokens / limit.tokens)
    return max(shares) if shares else None


def money_text(total: Amount, currency: str) -> str:
    """What `total`'s runs cost, said so that no run without a money figure reads as free: `$1.84`, `$1.84 + 2
    run(s) without a price`, or `cost unknown` when no run has one. Runs with usage unknown are left to the caller,
    which says them once."""
    if total.runs and total.unpriced >= total.runs:
        return "cost unknown"
    money = format_money(total.cost, currency)
    unpriced = total.unpriced - total.unknown_runs
    return money if not unpriced else f"{money} + {unpriced} run(s) without a price"


def issue_total_line(runs: Sequence[Amount], currency: str) -> str:
    """`3 runs · 412k tokens · $1.84` for the service comment; unknown runs are said, never counted as zero."""
    total = sum(runs, Amount())
    parts = [f"{total.runs} run{'s' if total.runs != 1 else ''}", format_tokens(total.tokens)]
    parts.append(money_text(total, currency))
    if total.unknown_runs:
        parts.append(f"{total.unknown_runs} with usage unknown")
    return " · ".join(parts)


# -- loops -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Turn:
    """One agent turn as the loop check sees it: the tool calls it made (normalised) and whether the workspace
    changed since the turn before."""

    calls: tuple[str, ...]
    changed: bool


@dataclass
class LoopDetector:
    """Ends an agent that repeats the same tool call `limit` turns in a row, or changes nothing for twice as many
    (an agent reads a while before its first edit: exploring is not looping).

    Off (limit 0) for an agent that gives no turn events: silence is not a loop."""

    limit: int
    _same: int = 0
    _idle: int = 0
    _last: tuple[str, ...] | None = None

    def feed(self, turn: Turn) -> str | None:
        if self.limit <= 0:
            return None
        if turn.calls and turn.calls == self._last:
            self._same += 1
        else:
            self._same = 1 if turn.calls else 0
        self._last = turn.calls or None
        self._idle = 0 if turn.changed else self._idle + 1
        if self._same >= self.limit:
            return f"the same tool call {turn.calls[0]!r} {self._same} turns in a row"
        if self._idle >= 2 * self.limit:
            return f"no change to the workspace for {self._idle} turns"
        return None

    def feed_all(self, turns: Iterable[Turn]) -> str | None:
        for turn in turns:
            reason = self.feed(turn)
            if reason:
                return reason
        return None
