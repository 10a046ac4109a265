"""The bundle of rules a decision needs: stage catalog with overrides, label names, who may trigger, profiles.

Built once from the platform configuration; the defaults here are the reference system's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .labels import DEFAULT_SCHEME, LabelScheme
from .stages import MAIN_PATH, STAGES, Permission, Stage, UnknownStageError

DEFAULT_LAUNCH_PROFILES: dict[str, tuple[str, ...]] = {
    "new-service": MAIN_PATH,
    "feature": ("intake", "prd", "design", "plan", "dev", "qa", "release", "postdeploy", "ops"),
    "quick-fix": ("intake", "plan", "dev", "qa", "release", "postdeploy", "ops"),
}
DEFAULT_MODEL = "gpt-5.4"
DEFAULT_REASONING = "high"


@dataclass(frozen=True)
class Actor:
    """Who caused a GitHub event: login, GitHub account type, and permission on the repository if known."""

    login: str
    type: str = "User"
    permission: Permission | None = None
    # The platform's own trigger label on an issue it opened for that label (the self-improve evidence issue, the
    # fix issue of a critical finding): the one case a bot starts a run. Agents cannot forge it: the sensor sets
    # it only when the login and the label match what the platform recorded when it opened the issue.
    platform_prepared: bool = False
    # The account the platform itself writes to GitHub as (`RepoApi.own_login`). Its agents change labels through
    # it (the MCP label tool), so a label it puts is not a person's decision, even when that account is a person's
    # (a personal token as the platform's credential): the decisions refuse it to start or approve a run, but for a
    # `platform_prepared` label. Set by the sensor, which knows the login; False where nobody could tell.
    platform_account: bool = False

    @property
    def is_human(self) -> bool:
        return self.type.strip().lower() == "user" and not self.login.strip().lower().endswith("[bot]")


@dataclass(frozen=True)
class TriggerPolicy:
    """Who may start runs: humans with at least `min_permission`, or on the allow-list. Bots never, except the
    platform's own label on an issue it prepared (see `Actor.platform_prepared`)."""

    min_permission: Permission = Permission.WRITE
    allow_logins: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        object.__setattr__(self, "allow_logins", frozenset(a.strip().lower() for a in self.allow_logins))

    def refusal(self, actor: Actor) -> str | None:
        """None when the actor may trigger, else a sentence saying why not."""
        if not actor.login.strip():
            return "the event has no actor login"
        if actor.platform_prepared:
            return None
        if not actor.is_human:
            return f"{actor.login} is a {actor.type.strip() or 'non-user'} account; only humans can trigger runs"
        if actor.login.strip().lower() in self.allow_logins:
            return None
        if actor.permission is None:
            return f"the permission of {actor.login} on the repository is unknown"
        if actor.permission.at_least(self.min_permission):
            return None
        return (
            f"{actor.login} has {actor.permission.value} permission; "
            f"triggering needs {self.min_permission.value} or a place on the allow-list"
        )


@dataclass(frozen=True)
class Rules:
    stages: Mapping[str, Stage] = field(default_factory=lambda: dict(STAGES))
    labels: LabelScheme = DEFAULT_SCHEME
    policy: TriggerPolicy = TriggerPolicy()
    launch_profiles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_LAUNCH_PROFILES))
    default_model: str = DEFAULT_MODEL
    default_reasoning: str = DEFAULT_REASONING

    def stage(self, name: str) -> Stage:
        try:
            return self.stages[name]
        except KeyError:
            raise UnknownStageError(name) from None


DEFAULT_RULES = Rules()
