"""`codexk8s trace owner/repo#N`: the whole story of one issue from the platform database."""

from __future__ import annotations

import argparse
import json
import sys

from .. import settings


def _cmd_trace(args: argparse.Namespace) -> int:
    from ..domain.correlation import parse_target
    from ..domain.issue_trace import render_trace
    from ..store import PlatformStore
    from .trace import issue_trace

    try:
        repository, number = parse_target(args.target)
    except ValueError as exc:
        print(f"codexk8s trace: {exc}", file=sys.stderr)
        return 2
    url = settings.database_url()
    if not url:
        print(f"codexk8s trace: {settings.NO_DATABASE}", file=sys.stderr)
        return 2
    trace = issue_trace(PlatformStore(url), repository, number, verbose=args.verbose)
    print(json.dumps(trace.to_dict(), indent=2, default=str) if args.json else render_trace(trace))
    return 0 if trace.steps else 1


def add_trace_command(sub: argparse._SubParsersAction) -> None:
    trace = sub.add_parser(
        "trace",
        help="the whole story of one issue: label decisions, approvals, runs, PRs, reviews",
        description="Every step the platform recorded about an issue and its PRs, in order, and one line per run "
        "(Dagster run link, outcome, duration, tokens and cost where known). Exit 0, or 1 when nothing is recorded.",
    )
    trace.add_argument("target", help="owner/repo#N")
    trace.add_argument("--json", action="store_true", help="print one JSON object")
    trace.add_argument("--verbose", action="store_true", help="also the bookkeeping rows (comments, MCP calls)")
    trace.set_defaults(func=_cmd_trace)
