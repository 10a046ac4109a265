"""The stage catalog: which stages exist, who works in each, what they may change and where they run.

Kept as data so that a new stage is one row here; the jobs, labels, next steps and prompts derive from it.
Roles, write scopes and the revise loop follow the reference system (DESIGN.md, "The stage model").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    PM = "pm"
    SA = "sa"
    EM = "em"
    DEV = "dev"
    REVIEWER = "reviewer"
    QA = "qa"
    SRE = "sre"
    KM = "km"


class WriteScope(StrEnum):
    """What an agent run may change in the repository; enforced on the diff before anything is pushed."""

    MARKDOWN_ONLY = "markdown-only"
    ANY_FILE = "any-file"
    PROMPTS_AND_DOCS = "prompts-and-docs"
    NONE = "none"


class RuntimeProfile(StrEnum):
    """Where an agent runs: a checkout only, a full environment, or read-only production access."""

    CODE_ONLY = "code-only"
    FULL_ENV = "full-env"
    PRODUCTION_READONLY = "production-readonly"


class Permission(StrEnum):
    """GitHub repository permission levels, weakest first."""

    NONE = "none"
    READ = "read"
    TRIAGE = "triage"
    WRITE = "write"
    MAINTAIN = "maintain"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _PERMISSION_ORDER.index(self)

    def at_least(self, other: Permission) -> bool:
        return self.rank >= other.rank


_PERMISSION_ORDER = list(Permission)


@dataclass(frozen=True)
class ApprovalRule:
    """Whether a run of the stage waits for an approver, and who counts as one.

    An actor who already qualifies as an approver does not wait for a second person: labelling is approving.
    """

    required: bool = False
    min_permission: Permission = Permission.ADMIN
    approvers: frozenset[str] = frozenset()
    ttl_hours: float = 24.0

    def __post_init__(self) -> None:
        # GitHub logins are case-insensitive: compare them in one case whoever built the rule.
        object.__setattr__(self, "approvers", frozenset(a.strip().lower() for a in self.approvers))

    def may_approve(self, login: str, permission: Permission | None) -> bool:
        if login.strip().lower() in self.approvers:
            return True
        return permission is not None and permission.at_least(self.min_permission)

    def describe_approvers(self) -> str:
        parts = [f"a user with {self.min_permission.value} permission"]
        if self.approvers:
            parts.append("or one of: " + ", ".join(sorted(self.approvers)))
        return " ".join(parts)


NO_APPROVAL = ApprovalRule()


@dataclass(frozen=True)
class Stage:
    name: str
    role: Role
    write_scope: WriteScope
    runtime_profile: RuntimeProfile
    main_path: bool
    has_revise: bool = True
    requires_dev_run: bool = False
    approval: ApprovalRule = NO_APPROVAL
    timeout_minutes: int = 60

    @property
    def job_name(self) -> str:
        return "stage_" + self.name.replace("-", "_")


MAIN_PATH: tuple[str, ...] = (
    "intake",
    "vision",
    "prd",
    "arch",
    "design",
    "plan",
    "dev",
    "qa",
    "release",
    "postdeploy",
    "ops",
)
OFF_PATH: tuple[str, ...] = ("doc-audit", "self-improve", "rethink")

_MD = WriteScope.MARKDOWN_ONLY
_CODE = RuntimeProfile.CODE_ONLY
_FULL = RuntimeProfile.FULL_ENV
_PROD = RuntimeProfile.PRODUCTION_READONLY

_STAGES: tuple[Stage, ...] = (
    Stage("intake", Role.PM, _MD, _CODE, main_path=True),
    Stage("vision", Role.PM, _MD, _CODE, main_path=True),
    Stage("prd", Role.PM, _MD, _CODE, main_path=True),
    Stage("arch", Role.SA, _MD, _CODE, main_path=True),
    Stage("design", Role.SA, _MD, _CODE, main_path=True),
    Stage("plan", Role.EM, _MD, _CODE, main_path=True),
    Stage("dev", Role.DEV, WriteScope.ANY_FILE, _FULL, main_path=True, timeout_minutes=120),
    Stage("qa", Role.QA, _MD, _FULL, main_path=True, requires_dev_run=True),
    Stage("release", Role.EM, _MD, _FULL, main_path=True, requires_dev_run=True),
    Stage("postdeploy", Role.SRE, _MD, _PROD, main_path=True),
    Stage("ops", Role.SRE, _MD, _PROD, main_path=True),
    Stage("doc-audit", Role.KM, _MD, _CODE, main_path=False),
    Stage("self-improve", Role.KM, WriteScope.PROMPTS_AND_DOCS, _CODE, main_path=False),
    Stage("rethink", Role.EM, _MD, _CODE, main_path=False, has_revise=False),
)

STAGES: dict[str, Stage] = {s.name: s for s in _STAGES}
STAGE_NAMES: tuple[str, ...] = tuple(STAGES)

# A comment-only reviewer run (need:reviewer on a PR) is not a stage of the path but has its own job.
REVIEWER_JOB_NAME = "stage_reviewer"


class UnknownStageError(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown stage {self.name!r}; expected one of: {', '.join(STAGE_NAMES)}"


def get_stage(name: str) -> Stage:
    key = name.strip().lower()
    try:
        return STAGES[key]
    except KeyError:
        raise UnknownStageError(name) from None


def main_path_index(name: str) -> int:
    return MAIN_PATH.index(name)
