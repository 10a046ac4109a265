"""`codexk8s trace owner/repo#N`, the MCP tool `issue_trace` and the service comment's history: one issue's story
read from the audit trail (`store/insight.py`), built and rendered by `domain/issue_trace.py`."""

from __future__ import annotations

from ..domain.issue_trace import IssueTrace, build_trace
from ..github.service_comment import run_url
from ..store import PlatformStore
from ..store import insight as q


def issue_trace(store: PlatformStore, repository: str, number: int, verbose: bool = False) -> IssueTrace:
    """Every step of the issue and its PRs, oldest first, with one line per run (Dagster link, outcome, cost); an
    agent's MCP calls are read only when `verbose` shows them."""
    repository = repository.strip().lower()
    events = q.issue_story_events(store, repository, number, verbose=verbose)
    infos = q.run_infos(store, {e.correlation_key for e in events})
    return build_trace(repository, number, events, run_url, infos, verbose=verbose)
