"""What a GitHub sensor is doing, visible without clicking a tick.

A sensor's skip reason shows only inside its ticks. The reasons that hold for as long as the code location runs
(no credentials, no GitHub repository watched) are known when it loads, so they are written into the sensor's
description, which the overview and the automation list show: a user who has not set a token sees why nothing
happens on the first screen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from codexk8s_pipelines.config.models import PlatformConfig
    from codexk8s_pipelines.github.client import GitHubCredentials

log = logging.getLogger(__name__)

NO_REPOSITORY = "no GitHub repository is watched: add `github: owner/name` under repositories in codexk8s.yaml"


def skip_reason(credentials: GitHubCredentials, config: Callable[[], PlatformConfig]) -> str | None:
    """Why a tick of the GitHub sensors skips (no credentials; no GitHub repository watched), or None. `config`
    is read only once the credentials are there."""
    if not credentials.configured:
        return credentials.missing_reason()
    if not any(r.github for r in config().repositories):
        return NO_REPOSITORY
    return None


def standing_skip_reason() -> str | None:
    """Why every tick of the GitHub sensors would skip now, or None when they can poll."""
    from codexk8s_pipelines.config import ConfigError, load_config_from_environment
    from codexk8s_pipelines.github.client import GitHubCredentials

    try:
        return skip_reason(GitHubCredentials.from_environment(), load_config_from_environment)
    except ConfigError as exc:
        return f"codexk8s.yaml cannot be read: {str(exc).splitlines()[0]}"


def with_status(description: str) -> str:
    """The sensor's description, followed by its standing skip reason when there is one."""
    try:
        reason = standing_skip_reason()
    except Exception as exc:  # the description must never keep the code location from loading
        log.warning("cannot tell the GitHub sensors' status: %s", exc)
        return description
    return f"{description} SKIPPING EVERY TICK: {reason}." if reason else description
