"""`pricing:` and `budgets:` of `codexk8s.yaml`, checked when the file loads and turned into the domain's types."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..domain.spend import Budgets, Limit, Price, PriceTable


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise ValueError(f"{value!r} is not a three-letter currency code (USD, EUR, …)")
    return code


class ModelPriceConfig(_Strict):
    """Per million tokens. `cached_input` defaults to `input` (no cache discount)."""

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)
    cached_input: Decimal | None = Field(default=None, ge=0)


class PricingConfig(_Strict):
    currency: Annotated[str, AfterValidator(_currency)] = "USD"
    models: dict[str, ModelPriceConfig] = Field(default_factory=dict)

    def table(self) -> PriceTable:
        return PriceTable(
            self.currency,
            {
                name.strip().lower(): Price(p.input, p.input if p.cached_input is None else p.cached_input, p.output)
                for name, p in self.models.items()
            },
        )


class LimitConfig(_Strict):
    """A cap in tokens (input + output), in money (the pricing currency), or both."""

    tokens: int | None = Field(default=None, gt=0)
    cost: Decimal | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _something(self) -> LimitConfig:
        if self.tokens is None and self.cost is None:
            raise ValueError("give `tokens`, `cost` or both")
        return self

    def limit(self) -> Limit:
        return Limit(self.tokens, self.cost)


class PeriodLimits(_Strict):
    day: LimitConfig | None = None
    month: LimitConfig | None = None


class AgentPeriodLimits(_Strict):
    day: LimitConfig | None = None


def _limit(value: LimitConfig | None) -> Limit:
    return value.limit() if value is not None else Limit()


class BudgetsConfig(_Strict):
    per_run: LimitConfig | None = None
    per_issue: LimitConfig | None = None
    per_repository: PeriodLimits = Field(default_factory=PeriodLimits)
    per_agent: AgentPeriodLimits = Field(default_factory=AgentPeriodLimits)
    reserve: LimitConfig | None = Field(
        default=None, description="what a starting run holds until it reports its usage; default: per_run"
    )
    push_partial_work: bool = Field(default=False, description="push what a run did before its cap ended it")
    override_label: str = Field(default="budget:override", min_length=1)
    loop_turns: int = Field(
        default=12,
        ge=0,
        le=1000,
        description="end an agent repeating one tool call this many turns in a row, or changing nothing for twice as"
        " many; 0 = off",
    )

    def budgets(self) -> Budgets:
        return Budgets(
            per_run=_limit(self.per_run),
            per_issue=_limit(self.per_issue),
            repository_day=_limit(self.per_repository.day),
            repository_month=_limit(self.per_repository.month),
            agent_day=_limit(self.per_agent.day),
            reserve=_limit(self.reserve),
            push_partial_work=self.push_partial_work,
            override_label=self.override_label.strip().lower(),
        )
