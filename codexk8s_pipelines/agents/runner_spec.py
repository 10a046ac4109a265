"""What the agent runner is asked to do, and what it reports back.

The spec is a JSON file because the same runner runs as a local subprocess and in a pod: a file is the one
transport both share. The result mirrors it so Dagster (through Pipes) and a `--result` file see the same thing.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import settings
from ..domain.spend import Budgets, Limit, Price, PriceTable
from ..domain.stages import WriteScope
from ..domain.write_scope import DEFAULT_MAX_TEXT_BYTES, DEFAULT_SELF_IMPROVE_ALLOW
from .agent_env import refuse_platform_secrets
from .agent_setup import AgentSettings
from .egress import Endpoint

TOKEN_ENV_VAR = settings.GITHUB_TOKEN_VAR
# The agent's secrets, given again to a pod's runner containers under these names (`<prefix>0`, `<prefix>1`, ...) so
# that the finish step can redact them and refuse a push that holds one; never passed on to an agent.
AGENT_SECRET_PREFIX = "CODEXK8S_AGENT_SECRET_"
DEFAULT_RESULT_FILE = ".codexk8s/result.json"

RunnerMode = Literal["work", "revise", "comment_only"]
RunnerStatus = Literal["succeeded", "failed_precondition", "failed", "blocked", "timed_out", "cancelled"]

# A conservative subset of `git check-ref-format --branch`: no option-looking names, no `..`, no spaces.
_BRANCH_RE = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*@\{)[A-Za-z0-9._/+-]+(?<![./])$")


class SpecError(ValueError):
    """The spec file is missing, is not JSON, or does not validate; the message says which and where."""


class SpendGuard(BaseModel):
    """The run's own cap and the loop rule (`budgets:`), with the model's price (`pricing:`): what the runner
    needs to end the agent at the usage report that passes the cap, not after the money is spent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str | None = None
    currency: str = "USD"
    price_input: Decimal | None = Field(default=None, ge=0, description="per million tokens")
    price_cached_input: Decimal | None = Field(default=None, ge=0)
    price_output: Decimal | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_cost: Decimal | None = Field(default=None, gt=0)
    loop_turns: int = Field(default=0, ge=0)
    push_partial_work: bool = False

    def prices(self) -> PriceTable:
        if self.model and self.price_input is not None and self.price_output is not None:
            cached = self.price_cached_input if self.price_cached_input is not None else self.price_input
            return PriceTable(self.currency, {self.model: Price(self.price_input, cached, self.price_output)})
        return PriceTable(self.currency)

    def budgets(self) -> Budgets:
        return Budgets(per_run=Limit(self.max_tokens, self.max_cost), push_partial_work=self.push_partial_work)


class ClosedPull(BaseModel):
    """The work branch's merged or closed PR (it has no open one): the run starts again from the base branch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    number: int = Field(gt=0)
    merged: bool = False

    @property
    def kept_at(self) -> str:
        """Where GitHub keeps the PR's head, whatever becomes of its branch."""
        return f"refs/pull/{self.number}/head"

    def describe(self) -> str:
        return f"pull request #{self.number} was {'merged' if self.merged else 'closed without merging'}"


class RunnerSpec(BaseModel):
    """One agent run: where the code is, which branch, what to run, and what it may change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    remote_url: str = Field(min_length=1, description="git URL, or local path of a bare repository")
    base_branch: str = "main"
    default_branch: str | None = None  # the repository's default branch, never pushed to (a PR's base may be another)
    protected_branches: list[str] = Field(
        default_factory=list,
        description="more names of the default branch, never pushed to either: GitHub's and the configured one, which"
        " differ once the branch was renamed on GitHub and codexk8s.yaml was not changed",
    )
    branch: str = Field(description="the work branch, e.g. codex/issue-12")
    mode: RunnerMode = "work"
    pull_ref: str | None = Field(
        default=None,
        pattern=r"^refs/pull/[1-9][0-9]{0,9}/head$",
        description="a comment-only run of a PR: its head as this repository keeps it (refs/pull/N/head), read"
        " instead of `branch` (a fork's PR), or in its place once it is gone (with pull_ref_fallback)",
    )
    pull_ref_fallback: bool = Field(
        default=False,
        description="with pull_ref, a PR of this repository: `branch` is its head branch, read while the remote has"
        " it; pull_ref once it was deleted (a merged PR's, say), where a review would otherwise read the base branch",
    )
    closed_pull: ClosedPull | None = Field(
        default=None,
        description="the branch's PR was merged or closed: start again from the base branch; the push replaces the"
        " branch's old head only if it is that PR's (kept at refs/pull/N/head), under a lease on it",
    )
    workdir: str = Field(min_length=1, description="where the checkout is cloned or reused")
    command: list[str] = Field(min_length=1, description="the rendered agent command")
    prompt_file: str
    prompt_via: Literal["stdin", "file"] = "stdin"
    write_scope: WriteScope
    allow_globs: list[str] = Field(default_factory=lambda: list(DEFAULT_SELF_IMPROVE_ALLOW))
    commit_message: str = Field(min_length=1)
    author_name: str = Field(min_length=1)
    author_email: str = Field(min_length=3)
    push: bool = True
    timeout_seconds: int = Field(default=3600, gt=0)
    git_timeout_seconds: int = Field(default=300, gt=0)
    result_file: str = DEFAULT_RESULT_FILE
    env: dict[str, str] = Field(default_factory=dict)
    pass_env: list[str] = Field(
        default_factory=list,
        description="variables the agent's catalog entry declares (its model API key...), passed from the runner's"
        " environment; everything else of it stays behind",
    )
    agent: AgentSettings | None = Field(
        default=None, description="a real agent program's setup (agent_setup.py); None: the command runs as written"
    )
    git_dir: str | None = Field(
        default=None, description="the runner's git directory, outside the agent's reach (default: beside workdir)"
    )
    max_text_bytes: int = Field(default=DEFAULT_MAX_TEXT_BYTES, gt=0, description="size cap of a markdown file")
    memory_bytes: int | None = Field(default=None, gt=0, description="per-process data cap of the agent")
    max_processes: int = Field(default=512, gt=0, description="how many processes the agent may have at once")
    # ---- egress (egress.py): besides its model endpoint, MCP and package indexes (catalog `endpoint`/`network`)
    spend: SpendGuard | None = Field(default=None, description="the run's cap and loop rule; None: unmetered")
    egress_allow: list[str] = Field(
        default_factory=list,
        description="more host:port endpoints the sandboxed agent may reach through the runner's egress relay",
    )

    @field_validator("branch", "base_branch")
    @classmethod
    def _valid_branch(cls, value: str) -> str:
        if not _BRANCH_RE.match(value) or value.endswith(".lock"):
            raise ValueError(f"not a safe git branch name: {value!r}")
        return value

    @model_validator(mode="after")
    def _never_the_base_branch(self) -> RunnerSpec:
        """An agent's commit is pushed to its work branch and reaches the base branch only through a reviewed PR. Nor
        the repository's default branch, when it is not the base: a PR from `main` into `release` has `main` as its
        head branch, and a revise of it would push the agent's commit to `main` unreviewed. By any of its names
        (`protected_branches`): renamed on GitHub, the configuration's old name protected nothing."""
        if self.branch == self.base_branch:
            raise ValueError(f"branch {self.branch!r} is the base branch: an agent's work is never pushed to it")
        if self.mode != "comment_only" and self.branch in {self.default_branch, *self.protected_branches}:
            raise ValueError(
                f"branch {self.branch!r} is the repository's default branch: an agent's work is never pushed to it"
            )
        return self

    @model_validator(mode="after")
    def _pull_ref_only_read(self) -> RunnerSpec:
        """A PR's head is read, never written: only a comment-only run (which changes nothing) starts there. A
        fallback needs its pull_ref: without one, a review whose branch was deleted would start on the base branch."""
        if self.pull_ref is not None and self.mode != "comment_only":
            raise ValueError(f"pull_ref {self.pull_ref!r}: only a comment-only run reads a pull request's head")
        if self.pull_ref_fallback and self.pull_ref is None:
            raise ValueError("pull_ref_fallback: no pull_ref to fall back to")
        if self.pull_ref is not None and self.closed_pull is not None:
            raise ValueError("closed_pull: a run reads a pull request's head (pull_ref) or starts anew, not both")
        return self

    @field_validator("result_file")
    @classmethod
    def _relative_result_file(cls, value: str) -> str:
        path = Path(value)
        if path.is_absolute() or ".." in path.parts or not path.parts:
            raise ValueError("result_file must be a path inside the checkout")
        return value

    @field_validator("env")
    @classmethod
    def _no_platform_secret_in_env(cls, value: dict[str, str]) -> dict[str, str]:
        refuse_platform_secrets(value, "{name} is never given to the agent: {reason}")
        return value

    @field_validator("pass_env")
    @classmethod
    def _no_platform_secret_passed(cls, value: list[str]) -> list[str]:
        refuse_platform_secrets(value, "{name} is never given to the agent: {reason}")
        return value

    @field_validator("egress_allow")
    @classmethod
    def _host_port(cls, value: list[str]) -> list[str]:
        for entry in value:
            Endpoint.parse(entry)  # EgressError is a ValueError: a readable spec error
        return value

    @property
    def effective_scope(self) -> WriteScope:
        """comment_only runs may change nothing, whatever the stage's scope says."""
        return WriteScope.NONE if self.mode == "comment_only" else self.write_scope


class RunnerResult(BaseModel):
    """What one run ended with; `reason` is a stable code for machines, `message` the sentence for people."""

    model_config = ConfigDict(extra="forbid")

    status: RunnerStatus
    reason: str
    message: str
    summary: str | None = None
    diagnosis: str | None = None
    next_step_hint: str | None = None
    agent_status: str | None = None
    branch: str
    commit: str | None = None
    changed_files: list[str] = Field(default_factory=list)
    violations: list[str] = Field(default_factory=list, description="paths outside the write scope")
    violation_rules: list[str] = Field(default_factory=list, description="each violation with the rule it broke")
    pushed: bool = False
    replaced_head: str | None = Field(
        default=None,
        description="the branch's former head the push replaced (kept at its closed PR's refs/pull/N/head)",
    )
    agent_exit_code: int | None = None
    agent_kind: str | None = None
    usage: dict[str, Any] | None = Field(default=None, description="the agent's own report (agents.usage.Usage)")
    session_id: str | None = Field(default=None, description="the agent's session, resumed by the next revise")
    previous_session_id: str | None = None
    resumed: bool = False
    agent_notes: list[str] = Field(default_factory=list, description="setup notes: sandbox flag, model, resume")
    sandboxed: bool | None = Field(default=None, description="False: the agent ran bare (the unsafe opt-out)")
    egress_refusals: list[str] = Field(
        default_factory=list, description="destinations the egress relay refused the agent (egress.py)"
    )
    duration_seconds: float = 0.0


def load_spec(path: str | Path) -> RunnerSpec:
    """Read and validate a spec file, turning every failure into one readable SpecError."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise SpecError(
            f"spec file {path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from exc
    if not isinstance(data, dict):
        raise SpecError(f"spec file {path} must hold a JSON object, not {type(data).__name__}")
    try:
        return RunnerSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"spec file {path} is invalid: {_describe_errors(exc)}") from exc


def _describe_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)
