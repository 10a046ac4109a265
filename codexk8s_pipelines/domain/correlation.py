"""The correlation key: the identity of a run across the sensor, Dagster and the platform database."""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^(?P<repo>[^#\s]+/[^#\s]+)#(?P<number>\d+):(?P<label>.+):(?P<event>[^:]+)$")
_TARGET = re.compile(r"^(?P<repo>[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+)#(?P<number>\d+)$")


@dataclass(frozen=True)
class CorrelationKey:
    repository: str
    number: int
    trigger_label: str
    event_id: str

    def __str__(self) -> str:
        return f"{self.repository}#{self.number}:{self.trigger_label}:{self.event_id}"


def correlation_key(repository: str, number: int, trigger_label: str, event_id: str | int) -> str:
    """`<owner>/<repo>#<number>:<trigger label>:<GitHub event id>`: one GitHub event, one run."""
    return str(CorrelationKey(repository.strip().lower(), int(number), trigger_label.strip().lower(), str(event_id)))


def parse_correlation_key(key: str) -> CorrelationKey:
    m = _KEY.match(key)
    if not m:
        raise ValueError(f"{key!r} is not a correlation key <owner>/<repo>#<number>:<label>:<event id>")
    return CorrelationKey(m["repo"], int(m["number"]), m["label"], m["event"])


def comment_number(key: str, issue_number: int | None, pr_number: int | None) -> int:
    """Where a run's service comment lives: the number of its correlation key (the issue for a label, the PR for
    a review or need:reviewer); a free-form key (a run launched by hand from the UI) falls back to the issue,
    then the PR."""
    try:
        return parse_correlation_key(key).number
    except ValueError:
        return int(issue_number if issue_number is not None else pr_number or 0)


def parse_target(value: str) -> tuple[str, int]:
    """An issue or PR as a person types it, `owner/repo#N`: the repository (lower case) and the number."""
    m = _TARGET.match(value.strip())
    if not m:
        raise ValueError(f"{value!r} is not owner/repo#N (for example acme/shop#12)")
    return m["repo"].lower(), int(m["number"])
