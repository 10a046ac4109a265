"""GitHub's JSON, parsed once at the edge into frozen dataclasses: users, label events, issues, pull requests,
reviews, repositories, permissions and webhook deliveries.

Why: the REST answers and the webhook payloads are untrusted, loosely shaped JSON (`actor` may be null for a
deleted user, `label` is absent on non-label events, `role_name` may name a custom role). Parsing them in one
place means the sensors, the delivery context and the MCP tools read typed fields instead of chaining
`.get(…) or {}`, and a malformed item fails here with a `PayloadError` that says what is wrong and where, which
the caller audits and skips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from ..domain.stages import Permission

_LINKED_ISSUE = re.compile(r"\b(?:close[sd]?|fix(?:e[sd])?|resolve[sd]?)\s+#(\d+)\b", re.IGNORECASE)
_BRANCH_ISSUE = re.compile(r"^codex/issue-(\d+)\b")
# The platform's own PR ends its body with this marker, naming the run that opened it (delivery/publish.py).
PR_MARKER = "<!-- codexk8s:pr {key} -->"
_PR_MARKER = re.compile(r"<!-- codexk8s:pr \S+?#(\d+):\S* -->")
_BASE_ROLES = {p.value for p in Permission}
_LEGACY = {"pull": "read", "push": "write"}


class PayloadError(ValueError):
    """A GitHub payload lacks a field the platform needs, or has it in the wrong shape."""


def _obj(data: object, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise PayloadError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return cast(Mapping[str, Any], data)


def _opt_obj(data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    return _obj(value, f"{where}.{key}")


def _req(data: Mapping[str, Any], key: str, where: str) -> Any:
    value = data.get(key)
    if value is None or value == "":
        raise PayloadError(f"{where}: field {key!r} is missing")
    return value


def _int(data: Mapping[str, Any], key: str, where: str) -> int:
    value = _req(data, key, where)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise PayloadError(f"{where}: field {key!r} is not a number: {value!r}")
    try:
        return int(value)
    except ValueError:
        raise PayloadError(f"{where}: field {key!r} is not a number: {value!r}") from None


ITEM_NUMBER_MAX = 2**31 - 1  # the platform stores issue and PR numbers as INTEGER


def _item_number(data: Mapping[str, Any], key: str, where: str) -> int:
    """An issue or PR number: positive and within the database's INTEGER, else a PayloadError (a signed webhook
    body with a number past 2**31 would otherwise fail at the INSERT and look like a database outage)."""
    value = _int(data, key, where)
    if not 1 <= value <= ITEM_NUMBER_MAX:
        raise PayloadError(f"{where}: field {key!r} is not an issue or pull request number: {value}")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _labels(data: Mapping[str, Any], where: str) -> tuple[str, ...]:
    raw: Any = data.get("labels") or []
    if not isinstance(raw, list):
        raise PayloadError(f"{where}: field 'labels' is not a list")
    names: list[str] = []
    for entry in cast(list[Any], raw):
        name = _str(cast(Mapping[str, Any], entry), "name") if isinstance(entry, Mapping) else ""
        if name:
            names.append(name)
    return tuple(names)


def label_names(data: object, where: str = "issue") -> tuple[str, ...]:
    """The label names of an issue or PR object."""
    return _labels(_obj(data, where), where)


@dataclass(frozen=True)
class GitHubUser:
    """An account as GitHub shows it. A deleted account (`null`) is the empty login, which may trigger nothing."""

    login: str
    type: str = "User"
    id: int | None = None

    @classmethod
    def parse(cls, data: object, where: str = "user") -> GitHubUser:
        if data is None:
            return cls("")
        obj = _obj(data, where)
        raw_id = obj.get("id")
        return cls(_str(obj, "login"), _str(obj, "type") or "User", raw_id if isinstance(raw_id, int) else None)


@dataclass(frozen=True)
class IssueEvent:
    """One entry of `/issues/N/events`. `label` is set for `labeled` and `unlabeled`; `via_app` names the GitHub
    App the actor acted through (`performed_via_github_app`), if any."""

    id: str
    event: str
    created_at: str
    actor: GitHubUser
    label: str = ""
    via_app: str | None = None

    @classmethod
    def parse(cls, data: object, where: str = "issue event") -> IssueEvent:
        obj = _obj(data, where)
        event_id = str(_int(obj, "id", where))
        where = f"{where} {event_id}"
        app = _opt_obj(obj, "performed_via_github_app", where)
        return cls(
            id=event_id,
            event=str(_req(obj, "event", where)),
            created_at=str(_req(obj, "created_at", where)),
            actor=GitHubUser.parse(obj.get("actor"), f"{where}.actor"),
            label=_str(_opt_obj(obj, "label", where), "name"),
            via_app=_str(app, "slug") or _str(app, "name") or None,
        )

    @property
    def is_label_change(self) -> bool:
        return self.event in ("labeled", "unlabeled") and bool(self.label)

    @property
    def moment(self) -> tuple[str, str]:
        """Events of one API request share their second and their actor: GitHub's only trace of a batch."""
        return self.created_at, self.actor.login.lower()


@dataclass(frozen=True)
class IssueItem:
    """An issue or PR as the issues listing shows it (PRs carry a `pull_request` key there)."""

    number: int
    title: str
    body: str
    updated_at: str
    labels: tuple[str, ...]
    is_pull: bool
    state: str = "open"

    @classmethod
    def parse(cls, data: object, where: str = "issue") -> IssueItem:
        obj = _obj(data, where)
        number = _int(obj, "number", where)
        where = f"{where} #{number}"
        return cls(
            number=number,
            title=_str(obj, "title"),
            body=_str(obj, "body"),
            updated_at=str(_req(obj, "updated_at", where)),
            labels=_labels(obj, where),
            is_pull="pull_request" in obj,
            state=_str(obj, "state") or "open",
        )


@dataclass(frozen=True)
class PullRequest:
    number: int
    title: str
    body: str
    head_ref: str
    labels: tuple[str, ...]
    html_url: str | None = None
    head_sha: str = ""
    # The repository the head branch lives in (`head.repo.full_name`): another one for a fork's PR, None when that
    # repository is gone. `head_ref` names a branch there, not here.
    head_repo: str | None = None
    # The branch of this repository the PR would merge into (`base.ref`): not always the default branch (a PR into
    # `release`), and what a review of the PR diffs against.
    base_ref: str = ""
    merged: bool = False  # `merged_at` set: a closed PR whose commits went into its base (squashed or not)

    @classmethod
    def parse(cls, data: object, where: str = "pull request") -> PullRequest:
        obj = _obj(data, where)
        number = _int(obj, "number", where)
        head = _opt_obj(obj, "head", f"{where} #{number}")
        return cls(
            number=number,
            title=_str(obj, "title"),
            body=_str(obj, "body"),
            head_ref=_str(head, "ref"),
            labels=_labels(obj, f"{where} #{number}"),
            html_url=_str(obj, "html_url") or None,
            head_sha=_str(head, "sha"),
            head_repo=_str(_opt_obj(head, "repo", f"{where} #{number}.head"), "full_name") or None,
            base_ref=_str(_opt_obj(obj, "base", f"{where} #{number}"), "ref"),
            merged=bool(_str(obj, "merged_at")),
        )

    def head_is_in(self, repository: str) -> bool:
        """Whether the head branch is a branch of `repository` (owner/name), so that `head_ref` may be pushed to."""
        return self.head_repo is not None and self.head_repo.lower() == repository.lower()

    @property
    def linked_issue(self) -> int | None:
        """The issue a PR works on: for the platform's own PR, the issue of the run that opened it (its marker, the
        body's last, else its `codex/issue-N` branch); for another PR, the first `Closes #N` of its body.

        The platform's first: its body starts with the agent's summary, and a summary saying "this also fixes #1"
        made a review of the PR for #2 revise #1 (or be refused, #1 having no stage)."""
        markers = _PR_MARKER.findall(self.body)
        if markers:
            return int(markers[-1])
        m = _BRANCH_ISSUE.match(self.head_ref)
        if m:
            return int(m.group(1))
        m = _LINKED_ISSUE.search(self.body)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class Review:
    id: int
    state: str
    user: GitHubUser
    submitted_at: str | None
    body: str = ""

    @classmethod
    def parse(cls, data: object, where: str = "review") -> Review:
        obj = _obj(data, where)
        review_id = _int(obj, "id", where)
        return cls(
            id=review_id,
            state=_str(obj, "state"),
            user=GitHubUser.parse(obj.get("user"), f"{where} {review_id}.user"),
            submitted_at=_str(obj, "submitted_at") or None,
            body=_str(obj, "body"),
        )

    @property
    def event_id(self) -> str:
        """The review's part of a correlation key (reviews and issue events have separate id spaces)."""
        return f"review-{self.id}"

    @property
    def requests_changes(self) -> bool:
        return self.state.strip().lower() == "changes_requested"


@dataclass(frozen=True)
class Comment:
    id: int
    author: str
    body: str

    @classmethod
    def parse(cls, data: object, where: str = "comment") -> Comment:
        obj = _obj(data, where)
        return cls(_int(obj, "id", where), GitHubUser.parse(obj.get("user"), f"{where}.user").login, _str(obj, "body"))


@dataclass(frozen=True)
class Repository:
    """`GET /repos/{o}/{r}`: what the platform reads of a repository itself."""

    full_name: str
    # The branch GitHub names the default now: renamed on GitHub (main -> trunk), this is the new name at once.
    default_branch: str

    @classmethod
    def parse(cls, data: object, where: str = "repository") -> Repository:
        obj = _obj(data, where)
        return cls(full_name=_str(obj, "full_name"), default_branch=str(_req(obj, "default_branch", where)))


@dataclass(frozen=True)
class RepositoryPermission:
    """`GET /repos/{o}/{r}/collaborators/{login}/permission`.

    `role_name` is exact for the base roles (triage and maintain included) but names a custom repository role
    (for example `release-captain`) as is; such a role is built on a base role, which GitHub shows in the
    `user.permissions` flags and, coarsely (maintain as write, triage as read), in `permission`."""

    permission: str
    role_name: str | None
    flags: tuple[tuple[str, bool], ...] = ()

    @classmethod
    def parse(cls, data: object, where: str = "permission") -> RepositoryPermission:
        obj = _obj(data, where)
        user = _opt_obj(obj, "user", where)
        flags = _opt_obj(user, "permissions", f"{where}.user")
        return cls(
            permission=_str(obj, "permission").lower() or "none",
            role_name=_str(obj, "role_name").lower() or None,
            flags=tuple((str(k), bool(v)) for k, v in flags.items()),
        )

    @property
    def level(self) -> Permission | None:
        """The base permission level; None when GitHub's answer names none the platform knows."""
        if self.role_name in _BASE_ROLES:
            return Permission(self.role_name)
        granted = {_LEGACY.get(k, k) for k, v in self.flags if v}
        from_flags = [p for p in Permission if p.value in granted]
        if from_flags:  # a custom role: the strongest base role its flags grant
            return max(from_flags, key=lambda p: p.rank)
        base = _LEGACY.get(self.permission, self.permission)
        return Permission(base) if base in _BASE_ROLES else None


# -- webhooks -------------------------------------------------------------------------------------------------
class IntakeKind(StrEnum):
    """The two GitHub intakes: the sensor that decides an item, and the `intake` a webhook delivery is kept under."""

    ISSUE_LABELS = "issue_labels"
    PULL_REQUESTS = "pull_requests"


# The (event, action) pairs the intake takes, and the sensor that drains each.
TAKEN: dict[tuple[str, str], IntakeKind] = {
    ("issues", "labeled"): IntakeKind.ISSUE_LABELS,
    ("issues", "unlabeled"): IntakeKind.ISSUE_LABELS,
    ("issues", "opened"): IntakeKind.ISSUE_LABELS,
    ("pull_request", "labeled"): IntakeKind.PULL_REQUESTS,
    ("pull_request_review", "submitted"): IntakeKind.PULL_REQUESTS,
}
# What GitHub sends a GitHub App about itself whatever it subscribes to (its installation, the repositories it was
# given, an account renamed, a user's authorization revoked): nothing for the intake, answered as `ignored`.
APP_EVENTS = frozenset({"installation", "installation_repositories", "installation_target", "github_app_authorization"})
EVENTS = frozenset({"ping", *(event for event, _ in TAKEN), *APP_EVENTS})


@dataclass(frozen=True)
class WebhookEvent:
    """What a delivery names: which repository's which issue or PR changed, and which sensor decides it.

    The delivery is a hint, not the decision's evidence: the sensor reads the item's events from GitHub, so the
    correlation key (which needs GitHub's event id, absent from webhook payloads) is the one polling computes."""

    event: str
    action: str | None
    repository: str | None
    number: int | None
    intake: IntakeKind | None  # None: an event or action the intake does not take

    @property
    def about_the_app(self) -> bool:
        """A GitHub App's own event (`APP_EVENTS`): kept as `ignored` without its body (an `installation` event
        lists every repository the App was given, and nothing reads it)."""
        return self.event in APP_EVENTS

    @classmethod
    def parse(cls, event: str, body: object) -> WebhookEvent:
        where = f"{event or 'unnamed'} delivery"
        if event not in EVENTS:
            raise PayloadError(f"{where}: event {event!r} is not taken; expected one of {', '.join(sorted(EVENTS))}")
        obj = _obj(body, where)
        action = _str(obj, "action") or None
        if event in APP_EVENTS:  # about the App, not about a repository's item
            return cls(event, action, None, None, None)
        repository = _str(_opt_obj(obj, "repository", where), "full_name").lower() or None
        intake = TAKEN.get((event, action or ""))
        if event == "ping" or intake is None:
            return cls(event, action, repository, None, None)
        if repository is None:
            raise PayloadError(f"{where}: field 'repository.full_name' is missing")
        if event == "issues":
            number = _item_number(_obj(_req(obj, "issue", where), f"{where}.issue"), "number", f"{where}.issue")
        else:
            pull = _obj(_req(obj, "pull_request", where), f"{where}.pull_request")
            number = _item_number(pull, "number", f"{where}.pull_request")
        # GitHub's schema makes `label` optional on `issues` unlabeled: the delivery is only a hint (the sensor reads
        # the item's events), so there it is checked only when sent.
        if event == "pull_request" or (event == "issues" and (action == "labeled" or obj.get("label") is not None)):
            _req(_obj(_req(obj, "label", where), f"{where}.label"), "name", f"{where}.label")
        if event == "pull_request_review":
            _int(_obj(_req(obj, "review", where), f"{where}.review"), "id", f"{where}.review")
        return cls(event, action, repository, number, intake)
