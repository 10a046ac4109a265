"""`codexk8s spend [--repo] [--since]`: what the runs cost, in the terminal, from the same report as the asset."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta

from .. import settings


def _since(value: str) -> datetime:
    try:
        day = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    return (day if day.tzinfo else day.replace(tzinfo=UTC)).astimezone(UTC)


def _now() -> datetime:
    """The report's clock: its last day and the month its budgets are counted in (tests set it)."""
    return datetime.now(UTC)


def _cmd_spend(args: argparse.Namespace) -> int:
    from ..config import load_config_from_environment
    from ..store import PlatformStore
    from ..store.usage import day_start
    from .report import build_report

    url = settings.database_url()
    if not url:
        print(f"codexk8s spend: {settings.NO_DATABASE}", file=sys.stderr)
        return 2
    config = load_config_from_environment()
    now = _now()
    start = args.since or day_start(now) - timedelta(days=29)
    end = day_start(now) + timedelta(days=1)
    report = build_report(
        PlatformStore(url),
        config.pricing.currency,
        config.budgets.budgets().repository_month,
        start,
        end,
        repository=args.repo,
        repositories=[r.key for r in config.repositories],
    )
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.table())
    return 0


def add_spend_command(sub: argparse._SubParsersAction) -> None:
    spend = sub.add_parser(
        "spend",
        help="what the agents' runs cost, per repository, agent and model",
        description="Tokens (from each agent's own report) and cost (from `pricing:`) of the runs since a day "
        "(default: the last 30 days), and each repository's monthly budget use. Exit 0, or 2 when the platform "
        "database cannot be reached.",
    )
    spend.add_argument("--repo", help="only this repository (owner/name)")
    spend.add_argument("--since", type=_since, help="first day, YYYY-MM-DD (UTC; default: 29 days ago)")
    spend.add_argument("--json", action="store_true", help="print one JSON object")
    spend.set_defaults(func=_cmd_spend)
