"""Recognise GitHub's primary and secondary rate limits so that callers back off instead of retrying."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from github.GithubException import GithubException

DEFAULT_SECONDARY_BACKOFF = timedelta(seconds=60)


@dataclass(frozen=True)
class RateLimit:
    kind: str  # "primary" | "secondary"
    resume_at: datetime
    message: str

    def describe(self, now: datetime) -> str:
        wait = max(0, int((self.resume_at - now).total_seconds()))
        return f"GitHub {self.kind} rate limit: backing off for {wait} s, until {self.resume_at:%H:%M:%S} UTC"


class RateLimitWait(RuntimeError):
    """A request not made: the credential it would be made with is still rate limited (`limit`). GitHub counts its
    limits per token or App installation, not per repository, so one refusal holds every repository read with it."""

    def __init__(self, limit: RateLimit) -> None:
        super().__init__(limit.message or f"GitHub {limit.kind} rate limit")
        self.limit = limit


def header(headers: Mapping[str, Any] | None, name: str) -> str | None:
    """The value of the header `name` (any case) in a response's headers, None when absent."""
    for key, value in (headers or {}).items():
        if key.lower() == name.lower():
            return str(value)
    return None


def rate_limit_of(exc: BaseException, now: datetime | None = None) -> RateLimit | None:
    """The rate limit an exception reports, or None when it is not a rate limit."""
    if isinstance(exc, RateLimitWait):
        return exc.limit
    if not isinstance(exc, GithubException) or exc.status not in (403, 429):
        return None
    now = now or datetime.now(UTC)
    headers = exc.headers
    message = str((exc.data or {}).get("message", "")) if isinstance(exc.data, dict) else ""
    retry_after = header(headers, "retry-after")
    if retry_after is not None:
        try:
            seconds = max(1, int(float(retry_after)))
        except ValueError:
            seconds = int(DEFAULT_SECONDARY_BACKOFF.total_seconds())
        return RateLimit("secondary", now + timedelta(seconds=seconds), message)
    remaining = header(headers, "x-ratelimit-remaining")
    reset = header(headers, "x-ratelimit-reset")
    if remaining == "0" and reset is not None:
        try:
            resume = datetime.fromtimestamp(int(reset), UTC)
        except ValueError:
            resume = now + DEFAULT_SECONDARY_BACKOFF
        return RateLimit("primary", max(resume, now + timedelta(seconds=1)), message)
    if exc.status == 429 or "secondary rate limit" in message.lower():
        return RateLimit("secondary", now + DEFAULT_SECONDARY_BACKOFF, message)
    if "rate limit" in message.lower():
        return RateLimit("primary", now + DEFAULT_SECONDARY_BACKOFF, message)
    return None
