"""Pydantic models of `codexk8s.yaml`. Unknown keys are errors: a typo must not silently change behaviour."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from ..domain.labels import DEFAULT_MODELS, DEFAULT_REASONING, LabelScheme
from ..domain.rules import DEFAULT_LAUNCH_PROFILES, Rules, TriggerPolicy
from ..domain.stages import MAIN_PATH, STAGE_NAMES, STAGES, ApprovalRule, Permission, RuntimeProfile
from .periodic import PeriodicConfig, RepositoryDriftConfig, RepositoryPolicyConfig
from .repository_keys import LEGACY_LOCAL_PREFIX, identity, listed_twice, listed_twice_text, local_keys
from .spend import BudgetsConfig, PricingConfig

_GITHUB_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# The error type of one repository listed twice: its context holds the pairs, for the loader to name their lines.
LISTED_TWICE_ERROR = "repository_listed_twice"


def _known_stage(name: str) -> str:
    key = name.strip().lower()
    if key not in STAGES:
        raise ValueError(f"unknown stage {name!r}; expected one of: {', '.join(STAGE_NAMES)}")
    return key


def _main_path_stage(name: str) -> str:
    key = _known_stage(name)
    if key not in MAIN_PATH:
        raise ValueError(f"{name!r} is not on the main path; a launch profile lists stages of: {', '.join(MAIN_PATH)}")
    return key


StageName = Annotated[str, AfterValidator(_known_stage)]
MainPathStage = Annotated[str, AfterValidator(_main_path_stage)]
Login = Annotated[str, AfterValidator(lambda s: s.strip().lower())]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RepositoryConfig(_Strict):
    """A watched repository: a GitHub `owner/name`, or a local git checkout (`path`) for work without GitHub."""

    github: str | None = Field(default=None, description="owner/name on GitHub")
    path: str | None = Field(default=None, description="a local git checkout, relative to the working directory")
    default_branch: str | None = Field(
        default=None,
        description="the branch stage runs start from and open pull requests into; default: the repository's default "
        "branch as GitHub names it at each run (a local checkout, and the periodic runs: main)",
    )
    git_url: str | None = Field(
        default=None, description="where agents clone and push; default: the GitHub host's https URL of `github`"
    )
    docs_globs: list[str] | None = Field(
        default=None, min_length=1, description="which files the docs index reads; default **/*.md and **/*.rst"
    )
    drift: RepositoryDriftConfig | None = Field(default=None, description="desired state for the ops drift check")
    policy: RepositoryPolicyConfig = Field(default_factory=RepositoryPolicyConfig)

    @model_validator(mode="after")
    def _one_source(self) -> RepositoryConfig:
        if (self.github is None) == (self.path is None):
            raise ValueError("give exactly one of 'github' (owner/name) or 'path' (a local checkout)")
        if self.github is not None and not _GITHUB_NAME.match(self.github):
            raise ValueError(f"github: {self.github!r} is not of the form owner/name")
        return self

    # A local checkout's key, given by `PlatformConfig` (which sees every repository and keeps the keys unique).
    _local_key: str | None = PrivateAttr(default=None)

    @property
    def key(self) -> str:
        """The repository's readable name: partition key, store rows, run tags. `owner/name` for GitHub; for a
        local checkout its directory's name (see `repository_keys.local_keys` for the rule)."""
        if self.github is not None:
            return self.github
        return self._local_key or local_keys([self.path or "."])[0]

    @property
    def legacy_key(self) -> str | None:
        """What a local checkout was called before it had a readable name (`local:<path>`): old partitions, runs
        and links still name it so, and the re-keying step moves stored rows from it."""
        return None if self.path is None else f"{LEGACY_LOCAL_PREFIX}{self.path}"

    @property
    def default_branch_shown(self) -> str:
        """The default branch as a message names it: `'develop'` when configured, else as the remote names it (a
        stage run asks GitHub, `delivery.context.gather`; a periodic checkout the remote's HEAD,
        `autonomous.checkouts`)."""
        return repr(self.default_branch) if self.default_branch else "the default branch"

    def clone_url(self, api_url: str) -> str:
        """The git remote of the repository: `git_url`, the local checkout, or the GitHub host's https URL."""
        if self.git_url:
            return self.git_url
        if self.path is not None:
            return self.path
        host = api_url.rstrip("/")
        host = "https://github.com" if host == "https://api.github.com" else host.removesuffix("/api/v3")
        return f"{host}/{self.github}.git"


class TriggerConfig(_Strict):
    min_permission: Permission = Permission.WRITE
    allow_logins: list[Login] = Field(default_factory=list)


class ApprovalConfig(_Strict):
    required: bool = True
    min_permission: Permission = Permission.ADMIN
    approvers: list[Login] = Field(default_factory=list)
    ttl_hours: float = Field(default=24.0, gt=0)


class StageOverride(_Strict):
    approval: ApprovalConfig | None = None
    runtime_profile: RuntimeProfile | None = None
    timeout_minutes: int | None = Field(default=None, gt=0, le=24 * 60)
    label: str | None = Field(default=None, min_length=1, description="custom trigger label name")
    revise_label: str | None = Field(default=None, min_length=1)


class ModelsConfig(_Strict):
    default: str = "gpt-5.4"
    reasoning: str = "high"
    known: list[str] = Field(default_factory=lambda: list(DEFAULT_MODELS))
    reasoning_levels: list[str] = Field(default_factory=lambda: list(DEFAULT_REASONING))

    @model_validator(mode="after")
    def _defaults_known(self) -> ModelsConfig:
        if self.default not in self.known:
            raise ValueError(f"default model {self.default!r} is not in known: {', '.join(self.known)}")
        if self.reasoning not in self.reasoning_levels:
            raise ValueError(
                f"default reasoning {self.reasoning!r} is not in reasoning_levels: {', '.join(self.reasoning_levels)}"
            )
        return self


class LabelsConfig(_Strict):
    """Label name parts, for a repository whose labels already mean something else. Stage names are appended."""

    run_prefix: str = Field(default="run:", min_length=1)
    revise_suffix: str = Field(default=":revise", min_length=1)
    state_prefix: str = Field(default="state:", min_length=1)
    need_prefix: str = Field(default="need:", min_length=1)
    discussion: str = Field(default="mode:discussion", min_length=1)
    model_prefix: str = Field(default="[ai-model-", min_length=1)
    reasoning_prefix: str = Field(default="[ai-reasoning-", min_length=1)
    group_suffix: str = "]"

    @model_validator(mode="after")
    def _prefixes_distinct(self) -> LabelsConfig:
        prefixes = {
            "run_prefix": self.run_prefix,
            "state_prefix": self.state_prefix,
            "need_prefix": self.need_prefix,
            "model_prefix": self.model_prefix,
            "reasoning_prefix": self.reasoning_prefix,
        }
        for a, pa in prefixes.items():
            for b, pb in prefixes.items():
                if a < b and (pa.lower().startswith(pb.lower()) or pb.lower().startswith(pa.lower())):
                    raise ValueError(f"{a} {pa!r} and {b} {pb!r} overlap: a label could belong to both groups")
        return self


def _ordered_profile(stages: list[str]) -> list[str]:
    if not stages:
        raise ValueError("a launch profile needs at least one stage")
    indexes = [MAIN_PATH.index(s) for s in stages]
    if indexes != sorted(set(indexes)):
        raise ValueError(f"stages must follow the main path order without repeats: {' → '.join(MAIN_PATH)}")
    return stages


class ConcurrencyConfig(_Strict):
    """Run-queue limits: one active run per issue or PR is a rule, not a setting; these are the knobs."""

    per_repository: int = Field(default=3, gt=0, le=100)
    max_concurrent_runs: int = Field(default=10, gt=0, le=1000)


class SloConfig(_Strict):
    """Delivery targets the insight assets' checks hold (docs/runbook.md says what to do when one fails)."""

    approval_latency_p95_hours: float = Field(default=24.0, gt=0, le=24 * 90)
    # Share of first run:dev / run:self-improve runs that must pass without a manual intervention (the roadmap's
    # MVP completion targets).
    dev_without_bypass: float = Field(default=0.95, ge=0, le=1)
    self_improve_without_bypass: float = Field(default=0.85, ge=0, le=1)


class PlatformConfig(_Strict):
    locale: Literal["en", "ru"] = "en"
    repositories: list[RepositoryConfig] = Field(default_factory=list)
    triggers: TriggerConfig = Field(default_factory=TriggerConfig)
    stages: dict[StageName, StageOverride] = Field(default_factory=dict)
    launch_profiles: dict[str, Annotated[list[MainPathStage], AfterValidator(_ordered_profile)]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_LAUNCH_PROFILES.items()}
    )
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    labels: LabelsConfig = Field(default_factory=LabelsConfig)
    concurrency: ConcurrencyConfig = Field(default_factory=ConcurrencyConfig)
    periodic: PeriodicConfig = Field(default_factory=PeriodicConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)

    @model_validator(mode="after")
    def _labels_unique(self) -> PlatformConfig:
        scheme = self.label_scheme()
        owners: dict[str, list[str]] = {}
        for stage in STAGE_NAMES:
            for revise in (False, True) if STAGES[stage].has_revise else (False,):
                name = scheme.run_label(stage, revise).strip().lower()
                owners.setdefault(name, []).append(f"{stage}{':revise' if revise else ''}")
        clashes = [f"{name!r} ({', '.join(users)})" for name, users in owners.items() if len(users) > 1]
        if clashes:
            raise ValueError(
                f"each trigger label must start one stage; used twice: {'; '.join(clashes)} — see stages.<stage>.label"
            )
        return self

    @field_validator("repositories")
    @classmethod
    def _each_repository_once(cls, repositories: list[RepositoryConfig]) -> list[RepositoryConfig]:
        found = listed_twice([identity(r.github, r.path) for r in repositories])
        if found:
            context = {"text": listed_twice_text(found), "listed_twice": found}
            raise PydanticCustomError(LISTED_TWICE_ERROR, "{text}", context)
        return repositories

    @model_validator(mode="after")
    def _name_local_checkouts(self) -> PlatformConfig:
        local = [r for r in self.repositories if r.path is not None]
        for repo, key in zip(local, local_keys([r.path or "." for r in local]), strict=True):
            repo._local_key = key
        return self

    def repository(self, name: str) -> RepositoryConfig | None:
        """The repository of a key: its readable name, or the `local:<path>` an older run or link still holds."""
        key = name.strip().lower()  # partition keys, run records and audit rows hold repositories lower-cased
        found = next((r for r in self.repositories if r.key.lower() == key), None)
        return found or next((r for r in self.repositories if (r.legacy_key or "").lower() == key), None)

    def renamed_repositories(self) -> dict[str, str]:
        """Old key → readable key of each local checkout, lower-cased as stored: what the re-keying step moves."""
        return {
            r.legacy_key.lower(): r.key.lower()
            for r in self.repositories
            if r.legacy_key is not None and r.legacy_key.lower() != r.key.lower()
        }

    def label_scheme(self) -> LabelScheme:
        overrides: dict[str, str] = {}
        for stage, override in self.stages.items():
            if override.label:
                overrides[stage] = override.label
            if override.revise_label:
                overrides[f"{stage}:revise"] = override.revise_label
        return LabelScheme(
            **self.labels.model_dump(),
            models=tuple(self.models.known),
            reasoning_levels=tuple(self.models.reasoning_levels),
            stage_overrides=overrides,
        )

    def rules(self) -> Rules:
        """The domain's rules with this file's overrides applied."""
        stages = dict(STAGES)
        for name, override in self.stages.items():
            stage = stages[name]
            if override.approval is not None:
                a = override.approval
                stage = replace(
                    stage,
                    approval=ApprovalRule(a.required, a.min_permission, frozenset(a.approvers), a.ttl_hours),
                )
            if override.runtime_profile is not None:
                stage = replace(stage, runtime_profile=override.runtime_profile)
            if override.timeout_minutes is not None:
                stage = replace(stage, timeout_minutes=override.timeout_minutes)
            stages[name] = stage
        return Rules(
            stages=stages,
            labels=self.label_scheme(),
            policy=TriggerPolicy(self.triggers.min_permission, frozenset(self.triggers.allow_logins)),
            launch_profiles={k: tuple(v) for k, v in self.launch_profiles.items()},
            default_model=self.models.default,
            default_reasoning=self.models.reasoning,
        )
