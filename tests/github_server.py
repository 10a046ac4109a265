"""A local fake of the GitHub REST API, good enough for real PyGithub to talk to.

Tests set up state (repos, issues, labels, reviews, tokens, faults) directly in Python through
`GitHubState`, point PyGithub at `GitHubServer.url`, and read the results back from the state. The server
is standard library only (http.server in a daemon thread) so it starts in milliseconds and needs no network.

What it models, and why:
- issues and pull requests share one number sequence per repo, and PRs are listed by the issues endpoint
  with a `pull_request` key, as on GitHub, because label-driven code walks issues and must tell PRs apart;
- label changes are issue events with an actor (user or bot), so "who labelled this" logic can be tested;
- a controllable clock (`GitHubState.now`, 1 s per mutation) makes `updated_at` strictly increasing and
  `since` cursors deterministic;
- rate-limit headers, ETags with free 304s, pagination `Link` headers and injectable faults, so clients'
  caching, paging and retry behaviour can be exercised against the real PyGithub code paths;
- one API request that changes several labels (`POST …/labels`, an issue opened with labels) stamps all its
  events with one second, as GitHub does; `same_moment()` does the same for test set-up, and the `Date` header
  is the fake clock, so "changed in the second it was read" can be reproduced;
- custom repository roles (`role_name` names the role, `permission` and the user's flags its base role);
- webhooks: `add_webhook(url, secret)` makes label changes, issues opened and reviews POST signed deliveries
  (`X-Hub-Signature-256`, `X-GitHub-Delivery`) shaped on GitHub's published examples, from a sender thread.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import hashlib
import hmac
import json
import math
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import github
import jwt
import pytest

DEFAULT_TOKEN = "test-token"
DEFAULT_TOKEN_LOGIN = "codexk8s[bot]"
DEFAULT_APP_BOT_LOGIN = "codexk8s-app[bot]"
CLOCK_START = datetime(2026, 1, 1, tzinfo=UTC)
RATE_LIMIT = 5000
RATE_WINDOW_SECONDS = 3600
DEFAULT_PER_PAGE = 30
MAX_PER_PAGE = 100
DOCS_URL = "https://docs.github.com/rest"

FAULTS = ("500", "502", "503", "timeout", "rate_limit_primary", "rate_limit_secondary", "rate_limit_429")
# Answers nested 200,000 levels deep (`[` * 200,000), with their status: what a broken or hostile server at GitHub's
# URL could send, and what json's decoder cannot follow. Injected by name only, never drawn by `fail_rate`.
DEEP_JSON_LEVELS = 200_000
BODY_FAULTS = {"deep_json": 200, "deep_json_502": 502}
PERMISSION_LEVELS = ("none", "read", "triage", "write", "maintain", "admin")
# GitHub's `permission` field only knows the legacy levels; `role_name` carries the exact one.
LEGACY_PERMISSION = {
    "none": "none",
    "read": "read",
    "triage": "read",
    "write": "write",
    "maintain": "write",
    "admin": "admin",
}
REVIEW_STATES = ("APPROVED", "CHANGES_REQUESTED", "COMMENTED")
SECONDARY_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID."
)
SERVER_ERRORS = {"500": "Server Error", "502": "Bad Gateway", "503": "Service Unavailable"}


def iso(moment: datetime) -> str:
    """GitHub's timestamp format: UTC, second precision, `Z` suffix."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """Parse an ISO 8601 query value; a time without zone is UTC, as GitHub reads it."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ApiError(Exception):
    """An HTTP error answer; raised anywhere in a handler and turned into GitHub's JSON error shape."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status} {message}")
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class User:
    login: str
    id: int
    type: str


@dataclass
class Identity:
    """Who a request is authenticated as: a token's user, or a GitHub App (JWT)."""

    login: str
    type: str
    app_id: str | None = None


@dataclass
class App:
    app_id: str
    public_key_pem: str
    installation_id: int
    bot_login: str
    repos: set[str] | None  # None: installed on every repo


@dataclass
class Comment:
    id: int
    number: int
    body: str
    user: str
    created_at: datetime
    updated_at: datetime


@dataclass
class Review:
    id: int
    state: str
    user: str
    body: str
    submitted_at: datetime
    commit_id: str


@dataclass
class PullInfo:
    id: int
    head: str
    base: str
    head_sha: str
    draft: bool = False
    merged_at: datetime | None = None
    # The fork the head branch lives in ("mallory/shop"), "" for a branch of the repository itself, None for a fork
    # that was deleted (GitHub then sends `head.repo: null`).
    head_fork: str | None = ""


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str
    user: str
    created_at: datetime
    updated_at: datetime
    state: str = "open"
    closed_at: datetime | None = None
    labels: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[Comment] = field(default_factory=list)
    reviews: list[Review] = field(default_factory=list)
    pull: PullInfo | None = None


@dataclass
class Repo:
    full_name: str
    id: int
    default_branch: str
    collaborators: dict[str, str]
    created_at: datetime
    issues: dict[int, Issue] = field(default_factory=dict)
    labels: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (id, color)
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (ref, path) -> text
    next_number: int = 1
    custom_roles: dict[str, str] = field(default_factory=dict)  # custom role name -> the base role it builds on


@dataclass
class Webhook:
    url: str
    secret: str
    repos: set[str] | None  # None: every repository


@dataclass
class Delivery:
    """One webhook delivery as GitHub keeps it: redeliverable, with the status the receiver answered."""

    id: str
    event: str
    url: str
    secret: str
    payload: dict[str, Any]
    created: float  # time.monotonic() when GitHub emitted it
    status: int | None = None
    answered: float | None = None


@dataclass
class Fault:
    kind: str
    method: str | None
    pattern: re.Pattern[str]
    times: int | None  # None: every matching request

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and bool(self.pattern.search(path))


@dataclass
class RandomFaults:
    probability: float
    rng: random.Random
    kinds: tuple[str, ...]
    method: str | None
    pattern: re.Pattern[str]


def _check_fault(kind: str) -> str:
    if kind not in FAULTS and kind not in BODY_FAULTS:
        raise ValueError(f"unknown fault {kind!r}; expected one of {(*FAULTS, *BODY_FAULTS)}")
    return kind


def _method_filter(method: str | None) -> str | None:
    return None if method in (None, "*", "") else method.upper()


class GitHubState:
    """Everything the fake GitHub knows; tests set it up and read it back directly, the server mutates it.

    All access goes through one re-entrant lock because the HTTP server answers on several threads.
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.latency = 0.0
        self.timeout_seconds = 3.0
        self.base_url = "http://127.0.0.1"  # set by GitHubServer so JSON URLs point back at it
        self._clock = CLOCK_START
        self._pinned: datetime | None = None
        self._next_id = 1
        self._webhooks: list[Webhook] = []
        self.deliveries: list[Delivery] = []
        self.outbox = threading.Condition(self.lock)
        self._unsent: list[Delivery] = []
        self._users: dict[str, User] = {}
        self._repos: dict[str, Repo] = {}
        self._tokens: dict[str, Identity] = {}
        self._apps: dict[str, App] = {}
        self._faults: list[Fault] = []
        self._random_faults: RandomFaults | None = None
        self._requests: list[tuple[str, str, int]] = []
        self.rate_limit_limit = RATE_LIMIT
        self._rate_remaining = RATE_LIMIT
        self.rate_limit_reset = int(time.time()) + RATE_WINDOW_SECONDS
        self.add_token(DEFAULT_TOKEN, DEFAULT_TOKEN_LOGIN, type="Bot")

    # -- clock and ids -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The fake clock; the next mutation is stamped with this time, then the clock moves on 1 s."""
        with self.lock:
            return self._pinned or self._clock

    @contextlib.contextmanager
    def same_moment(self) -> Iterator[datetime]:
        """Everything changed inside carries one timestamp, as the events of one GitHub request do; the `Date`
        header says that second too, so a reader sees changes made in the second it reads."""
        with self.lock:
            if self._pinned is not None:
                yield self._pinned
                return
            self._pinned = self.tick()
        try:
            yield self._pinned
        finally:
            with self.lock:
                self._pinned = None

    def advance(self, seconds: float) -> datetime:
        """Move the fake clock forward, e.g. to separate a `since` cursor from earlier changes."""
        with self.lock:
            self._clock += timedelta(seconds=seconds)
            return self._clock

    def tick(self) -> datetime:
        """Stamp a mutation with the current fake time and move the clock on, so stamps strictly increase."""
        if self._pinned is not None:
            return self._pinned
        stamp = self._clock
        self._clock += timedelta(seconds=1)
        return stamp

    def _new_id(self) -> int:
        """One global increasing id sequence for events, comments, reviews, issues and users."""
        value = self._next_id
        self._next_id += 1
        return value

    # -- identities ------------------------------------------------------------------------------------

    def user(self, login: str, type: str | None = None) -> User:
        """The user record for a login, created on first sight; `[bot]` logins default to type Bot."""
        with self.lock:
            known = self._users.get(login)
            if known is None:
                default = "Bot" if login.endswith("[bot]") else "User"
                known = self._users[login] = User(login, self._new_id(), type or default)
            elif type is not None:
                known.type = type
            return known

    def add_token(self, token: str, login: str, type: str = "Bot") -> None:
        """Accept `token` and act as `login` (label events made through the API carry this actor)."""
        with self.lock:
            self.user(login, type)
            self._tokens[token] = Identity(login, type)

    def add_app(
        self,
        app_id: int | str,
        public_key_pem: str | bytes,
        installation_id: int | None = None,
        bot_login: str = DEFAULT_APP_BOT_LOGIN,
        repos: Iterable[str] | None = None,
    ) -> int:
        """Register a GitHub App whose JWTs verify against `public_key_pem`; returns its installation id."""
        pem = public_key_pem.decode() if isinstance(public_key_pem, bytes) else public_key_pem
        with self.lock:
            installation = installation_id if installation_id is not None else 10_000 + self._new_id()
            chosen = None if repos is None else {name.lower() for name in repos}
            self._apps[str(app_id)] = App(str(app_id), pem, installation, bot_login, chosen)
            return installation

    def identity_for_token(self, token: str) -> Identity | None:
        with self.lock:
            return self._tokens.get(token)

    def verify_app_jwt(self, token: str) -> Identity:
        """Check an RS256 app JWT against the registered public key; ApiError 401 when it does not verify."""
        try:
            claims = jwt.decode(token, options={"verify_signature": False})
            app = self._apps[str(claims["iss"])]
            jwt.decode(token, app.public_key_pem, algorithms=["RS256"], leeway=60)
        except (jwt.PyJWTError, KeyError, TypeError) as error:
            raise ApiError(401, "A JSON web token could not be decoded") from error
        return Identity(f"app-{app.app_id}", "App", app_id=app.app_id)

    def app_for_installation(self, installation_id: int) -> App | None:
        with self.lock:
            return next((a for a in self._apps.values() if a.installation_id == installation_id), None)

    def app_for_repo(self, full_name: str, app_id: str | None = None) -> App | None:
        with self.lock:
            candidates = [a for a in self._apps.values() if app_id is None or a.app_id == app_id]
            return next((a for a in candidates if a.repos is None or full_name.lower() in a.repos), None)

    def issue_installation_token(self, app: App) -> tuple[str, datetime]:
        """A fresh installation token, valid one real hour (PyGithub compares expiry with wall-clock time)."""
        with self.lock:
            token = f"ghs_{hashlib.sha1(f'{app.app_id}:{self._new_id()}'.encode()).hexdigest()[:36]}"
            self.add_token(token, app.bot_login, type="Bot")
            return token, datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

    # -- repos -----------------------------------------------------------------------------------------

    def add_repo(
        self, full_name: str, default_branch: str = "main", collaborators: Mapping[str, str] | None = None
    ) -> None:
        """Create a repo; `collaborators` maps login -> one of none/read/triage/write/maintain/admin."""
        with self.lock:
            repo = Repo(full_name, self._new_id(), default_branch, {}, self.tick())
            self._repos[full_name.lower()] = repo
            for login, perm in (collaborators or {}).items():
                self.set_permission(full_name, login, perm)

    def add_custom_role(self, full_name: str, name: str, base: str) -> None:
        """A custom repository role (an organisation feature) built on one of the base roles."""
        if base not in PERMISSION_LEVELS:
            raise ValueError(f"unknown base role {base!r}; expected one of {PERMISSION_LEVELS}")
        with self.lock:
            self.repo(full_name).custom_roles[name] = base

    def set_permission(self, full_name: str, login: str, perm: str) -> None:
        with self.lock:
            if perm not in PERMISSION_LEVELS and perm not in self.repo(full_name).custom_roles:
                raise ValueError(f"unknown permission {perm!r}; expected one of {PERMISSION_LEVELS} or a custom role")
            self.user(login)
            self.repo(full_name).collaborators[login.lower()] = perm

    def permission(self, full_name: str, login: str) -> str:
        """The exact role of `login` on the repo (a custom role by its name); strangers have "none"."""
        with self.lock:
            return self.repo(full_name).collaborators.get(login.lower(), "none")

    def base_permission(self, full_name: str, login: str) -> str:
        """The base role of `login`: a custom role's base, else the role itself."""
        with self.lock:
            role = self.permission(full_name, login)
            return self.repo(full_name).custom_roles.get(role, role)

    def repo(self, full_name: str) -> Repo:
        with self.lock:
            try:
                return self._repos[full_name.lower()]
            except KeyError:
                raise ApiError(404, "Not Found") from None

    def put_file(self, repo: str, path: str, text: str, ref: str | None = None) -> str:
        """Store a file served by the contents endpoint (on the default branch unless `ref`); returns its sha."""
        with self.lock:
            record = self.repo(repo)
            record.files[(ref or record.default_branch, path.strip("/"))] = text
            return git_blob_sha(text)

    # -- issues and pulls ------------------------------------------------------------------------------

    def issue(self, repo: str, number: int) -> Issue:
        """The live issue/PR record (hold `state.lock` if the server may be changing it concurrently)."""
        with self.lock:
            try:
                return self.repo(repo).issues[number]
            except KeyError:
                raise ApiError(404, "Not Found") from None

    def add_issue(self, repo: str, title: str, body: str = "", labels: Iterable[str] = (), user: str = "alice") -> int:
        with self.lock:
            return self._create(repo, title, body, labels, user, pull=None)

    def add_pull(
        self,
        repo: str,
        title: str,
        body: str = "",
        labels: Iterable[str] = (),
        head: str = "codex/issue-1",
        base: str = "main",
        user: str = "alice",
        linked_issue: int | None = None,
        draft: bool = False,
        head_fork: str | None = "",
    ) -> int:
        """Open a PR; `linked_issue` appends "Closes #N" to the body, the way GitHub links PRs to issues; `head_fork`
        puts its head branch in a fork ("mallory/shop"; None: a fork since deleted)."""
        if linked_issue is not None:
            body = f"{body}\n\nCloses #{linked_issue}".strip()
        with self.lock:
            sha = hashlib.sha1(f"{repo}:{head}:{self._next_id}".encode()).hexdigest()
            info = PullInfo(self._new_id(), head, base, sha, draft, head_fork=head_fork)
            return self._create(repo, title, body, labels, user, info)

    def _create(self, repo: str, title: str, body: str, labels: Iterable[str], user: str, pull: PullInfo | None) -> int:
        record = self.repo(repo)
        number = record.next_number
        record.next_number += 1
        stamp = self.tick()
        self.user(user)
        issue = Issue(number, self._new_id(), title, body, user, stamp, stamp, pull=pull)
        record.issues[number] = issue
        for name in labels:
            self._ensure_label(record, name)
            issue.labels.append(name)
        return number

    def label_many(
        self, repo: str, number: int, names: Iterable[str], actor: str = "alice", actor_type: str = "User"
    ) -> list[int]:
        """Add several labels in one request (`POST …/labels`): one second, one actor; returns the event ids."""
        with self.lock, self.same_moment():
            user = self.user(actor, actor_type)
            events = [self.change_label(repo, number, name, user, add=True) for name in names]
            return [e for e in events if e is not None]

    def label(self, repo: str, number: int, name: str, actor: str = "alice", actor_type: str = "User") -> int:
        """Add a label as `actor` and record the `labeled` event; returns the event id."""
        with self.lock:
            event = self.change_label(repo, number, name, self.user(actor, actor_type), add=True)
            assert event is not None
            return event

    def unlabel(self, repo: str, number: int, name: str, actor: str = "alice", actor_type: str = "User") -> int:
        """Remove a label as `actor` and record the `unlabeled` event; returns the event id."""
        with self.lock:
            event = self.change_label(repo, number, name, self.user(actor, actor_type), add=False)
            if event is None:
                raise ApiError(404, "Label does not exist")
            return event

    def change_label(self, repo: str, number: int, name: str, actor: User, add: bool) -> int | None:
        """Apply one label change; None when it changes nothing (GitHub records no event then)."""
        record = self.repo(repo)
        issue = self.issue(repo, number)
        present = name.lower() in (label.lower() for label in issue.labels)
        if present == add:
            return None
        if add:
            self._ensure_label(record, name)
            issue.labels.append(name)
        else:
            issue.labels = [label for label in issue.labels if label.lower() != name.lower()]
        color = record.labels.get(name.lower(), (0, "ededed"))[1]
        action = "labeled" if add else "unlabeled"
        event = self._record_event(issue, action, actor, label={"name": name, "color": color})
        self.emit("pull_request" if issue.pull else "issues", action, record, issue, actor.login, label=name)
        return event

    def _ensure_label(self, record: Repo, name: str) -> None:
        if name.lower() not in record.labels:
            color = hashlib.sha1(name.encode()).hexdigest()[:6]
            record.labels[name.lower()] = (self._new_id(), color)

    def _record_event(self, issue: Issue, kind: str, actor: User, **extra: Any) -> int:
        stamp = self.tick()
        event_id = self._new_id()
        issue.events.append({"id": event_id, "event": kind, "actor": actor.login, "created_at": stamp, **extra})
        issue.updated_at = stamp
        return event_id

    def set_issue_state(self, repo: str, number: int, state: str, actor: str = "alice") -> int:
        """Close or reopen an issue/PR and record the `closed`/`reopened` event; returns the event id."""
        if state not in ("open", "closed"):
            raise ApiError(422, "Validation Failed")
        with self.lock:
            issue = self.issue(repo, number)
            kind = "closed" if state == "closed" else "reopened"
            event = self._record_event(issue, kind, self.user(actor))
            issue.state = state
            issue.closed_at = issue.updated_at if state == "closed" else None
            return event

    def add_comment(self, repo: str, number: int, body: str, user: str = "alice") -> int:
        """Comment on an issue/PR (bumps its updated_at, as on GitHub); returns the comment id."""
        with self.lock:
            issue = self.issue(repo, number)
            stamp = self.tick()
            comment = Comment(self._new_id(), number, body, self.user(user).login, stamp, stamp)
            issue.comments.append(comment)
            issue.updated_at = stamp
            return comment.id

    def find_comment(self, repo: str, comment_id: int) -> tuple[Issue, Comment]:
        with self.lock:
            for issue in self.repo(repo).issues.values():
                for comment in issue.comments:
                    if comment.id == comment_id:
                        return issue, comment
            raise ApiError(404, "Not Found")

    def edit_comment(self, repo: str, comment_id: int, body: str) -> None:
        """Change a comment's body; only the comment's updated_at moves."""
        with self.lock:
            _, comment = self.find_comment(repo, comment_id)
            comment.body = body
            comment.updated_at = self.tick()

    def review(self, repo: str, pr: int, state: str, user: str = "bob", user_type: str = "User", body: str = "") -> int:
        """Submit a review (APPROVED / CHANGES_REQUESTED / COMMENTED); bumps the PR's updated_at."""
        if state not in REVIEW_STATES:
            raise ValueError(f"unknown review state {state!r}; expected one of {REVIEW_STATES}")
        with self.lock:
            issue = self.issue(repo, pr)
            if issue.pull is None:
                raise ApiError(404, "Not Found")
            stamp = self.tick()
            reviewer = self.user(user, user_type)
            review = Review(self._new_id(), state, reviewer.login, body, stamp, issue.pull.head_sha)
            issue.reviews.append(review)
            issue.updated_at = stamp
            self.emit("pull_request_review", "submitted", self.repo(repo), issue, reviewer.login, review=review)
            return review.id

    # -- webhooks --------------------------------------------------------------------------------------

    def add_webhook(self, url: str, secret: str, repos: Iterable[str] | None = None) -> None:
        """Deliver `issues`, `pull_request` and `pull_request_review` events of `repos` (all when None) to `url`."""
        with self.lock:
            chosen = None if repos is None else {name.lower() for name in repos}
            self._webhooks.append(Webhook(url, secret, chosen))

    def emit(self, event: str, action: str, repo: Repo, issue: Issue, sender: str, **extra: Any) -> None:
        """Queue a delivery for every webhook of the repo, its payload rendered now (GitHub snapshots it)."""
        hooks = [h for h in self._webhooks if h.repos is None or repo.full_name.lower() in h.repos]
        if not hooks:
            return
        payload = Renderer(self).webhook(event, action, repo, issue, sender, **extra)
        for hook in hooks:
            delivery = Delivery(str(uuid.uuid4()), event, hook.url, hook.secret, payload, time.monotonic())
            self.deliveries.append(delivery)
            self._unsent.append(delivery)
        self.outbox.notify_all()

    def redeliver(self, delivery_id: str) -> None:
        """GitHub's "Redeliver": the same delivery id and body once more."""
        with self.lock:
            self._unsent.append(next(d for d in self.deliveries if d.id == delivery_id))
            self.outbox.notify_all()

    def next_unsent(self, stop: threading.Event) -> Delivery | None:
        with self.lock:
            while not self._unsent and not stop.is_set():
                self.outbox.wait(0.1)
            return self._unsent.pop(0) if self._unsent else None

    # -- read back -------------------------------------------------------------------------------------

    def labels(self, repo: str, number: int) -> list[str]:
        with self.lock:
            return list(self.issue(repo, number).labels)

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": c.id, "body": c.body, "user": c.user} for c in self.issue(repo, number).comments]

    def events(self, repo: str, number: int) -> list[dict[str, Any]]:
        """Events oldest first, with the actor expanded to {login, type, id} and ISO timestamps."""
        with self.lock:
            return [self._plain_event(event) for event in self.issue(repo, number).events]

    def _plain_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        actor = self.user(event["actor"])
        plain = {**event, "actor": {"login": actor.login, "type": actor.type, "id": actor.id}}
        plain["created_at"] = iso(event["created_at"])
        return plain

    def reviews(self, repo: str, pr: int) -> list[dict[str, Any]]:
        with self.lock:
            return [{"id": r.id, "state": r.state, "user": r.user} for r in self.issue(repo, pr).reviews]

    @property
    def requests(self) -> list[tuple[str, str, int]]:
        """(method, path_with_query, status) per request served, in order; status 0 for a dropped request."""
        with self.lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self.lock:
            self._requests.clear()

    def record_request(self, method: str, target: str, status: int) -> None:
        with self.lock:
            self._requests.append((method, target, status))

    # -- rate limit ------------------------------------------------------------------------------------

    @property
    def rate_limit_remaining(self) -> int:
        with self.lock:
            self._refill_if_reset()
            return self._rate_remaining

    @rate_limit_remaining.setter
    def rate_limit_remaining(self, value: int) -> None:
        with self.lock:
            self._rate_remaining = value

    def reset_rate_limit(self) -> None:
        """Start a fresh rate-limit window now (tests need not wait an hour)."""
        with self.lock:
            self._rate_remaining = self.rate_limit_limit
            self.rate_limit_reset = int(time.time()) + RATE_WINDOW_SECONDS

    def _refill_if_reset(self) -> None:
        if time.time() >= self.rate_limit_reset:
            self.reset_rate_limit()

    def rate_limit_exhausted(self) -> bool:
        with self.lock:
            self._refill_if_reset()
            return self._rate_remaining <= 0

    def spend_rate_limit(self) -> None:
        with self.lock:
            self._rate_remaining = max(0, self._rate_remaining - 1)

    # -- faults ----------------------------------------------------------------------------------------

    def inject(self, fault: str, method: str | None = "GET", path_regex: str = ".*", times: int | None = 1) -> None:
        """Make the next `times` requests matching `method` (None/"*" = any) and `path_regex` (re.search on
        the path without query) fail with `fault`; times=None fails every match until `clear_faults`."""
        with self.lock:
            self._faults.append(Fault(_check_fault(fault), _method_filter(method), re.compile(path_regex), times))

    def fail_rate(
        self,
        p: float,
        seed: int = 0,
        faults: Iterable[str] = FAULTS,
        method: str | None = None,
        path_regex: str = ".*",
    ) -> None:
        """Fail a random fraction `p` of matching requests with a random fault from `faults`; the draws come
        from `random.Random(seed)`, so a sequential client sees the same failures on every run."""
        kinds = tuple(_check_fault(kind) for kind in faults)
        with self.lock:
            rng = random.Random(seed)
            self._random_faults = RandomFaults(p, rng, kinds, _method_filter(method), re.compile(path_regex))

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self._random_faults = None

    def take_fault(self, method: str, path: str) -> str | None:
        """The fault this request must suffer, consuming one use of an injected fault."""
        with self.lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault.kind
            chance = self._random_faults
            if chance is None or chance.method not in (None, method) or not chance.pattern.search(path):
                return None
            return chance.rng.choice(chance.kinds) if chance.rng.random() < chance.probability else None


def git_blob_sha(text: str) -> str:
    """The sha git (and so GitHub's contents API) gives a file's blob."""
    data = text.encode()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# ---------------------------------------------------------------------------------------------------------
# HTTP layer: requests and responses, JSON shaping, routing.
# ---------------------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    target: str
    query: dict[str, str]
    headers: Mapping[str, str]
    body: Any
    identity: Identity
    params: dict[str, str] = field(default_factory=dict)

    @property
    def repo_name(self) -> str:
        return f"{self.params['owner']}/{self.params['repo']}"

    @property
    def number(self) -> int:
        return int(self.params["number"])


@dataclass
class Response:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None
    free: bool = False  # does not count against the rate limit (e.g. GET /rate_limit)


Handler = Callable[[Request], Response]


class Renderer:
    """Shapes state records into GitHub's JSON; URLs point back at this server so PyGithub follows them."""

    def __init__(self, state: GitHubState) -> None:
        self.state = state

    @property
    def base(self) -> str:
        return self.state.base_url

    def user(self, login: str) -> dict[str, Any]:
        record = self.state.user(login)
        return {
            "login": record.login,
            "id": record.id,
            "node_id": f"U_{record.id}",
            "type": record.type,
            "site_admin": False,
            "url": f"{self.base}/users/{quote(record.login)}",
            "html_url": f"https://github.com/{quote(record.login)}",
        }

    def repo(self, repo: Repo, viewer: str | None = None) -> dict[str, Any]:
        owner, name = repo.full_name.split("/", 1)
        data: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": name,
            "full_name": repo.full_name,
            "owner": self.user(owner),
            "private": False,
            "html_url": f"https://github.com/{repo.full_name}",
            "url": f"{self.base}/repos/{repo.full_name}",
            "default_branch": repo.default_branch,
            "created_at": iso(repo.created_at),
            "updated_at": iso(repo.created_at),
        }
        if viewer is not None:
            data["permissions"] = permission_flags(self.state.base_permission(repo.full_name, viewer))
        return data

    def label(self, repo: Repo, name: str) -> dict[str, Any]:
        label_id, color = repo.labels.get(name.lower(), (0, "ededed"))
        return {
            "id": label_id,
            "node_id": f"LA_{label_id}",
            "url": f"{self.base}/repos/{repo.full_name}/labels/{quote(name)}",
            "name": name,
            "color": color,
            "default": False,
            "description": None,
        }

    def issue(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        url = f"{self.base}/repos/{repo.full_name}/issues/{issue.number}"
        data: dict[str, Any] = {
            "id": issue.id,
            "node_id": f"I_{issue.id}",
            "url": url,
            "repository_url": f"{self.base}/repos/{repo.full_name}",
            "labels_url": f"{url}/labels{{/name}}",
            "comments_url": f"{url}/comments",
            "events_url": f"{url}/events",
            "html_url": f"https://github.com/{repo.full_name}/{'pull' if issue.pull else 'issues'}/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "state_reason": "completed" if issue.state == "closed" else None,
            "title": issue.title,
            "body": issue.body,
            "user": self.user(issue.user),
            "labels": [self.label(repo, name) for name in issue.labels],
            "assignee": None,
            "assignees": [],
            "milestone": None,
            "locked": False,
            "comments": len(issue.comments),
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "author_association": "NONE",
        }
        if issue.pull is not None:
            data["pull_request"] = {
                "url": f"{self.base}/repos/{repo.full_name}/pulls/{issue.number}",
                "html_url": f"https://github.com/{repo.full_name}/pull/{issue.number}",
                "diff_url": f"https://github.com/{repo.full_name}/pull/{issue.number}.diff",
                "patch_url": f"https://github.com/{repo.full_name}/pull/{issue.number}.patch",
                "merged_at": iso(issue.pull.merged_at) if issue.pull.merged_at else None,
            }
        return data

    def pull(self, repo: Repo, issue: Issue) -> dict[str, Any]:
        assert issue.pull is not None
        pull = issue.pull
        owner = repo.full_name.split("/", 1)[0]
        url = f"{self.base}/repos/{repo.full_name}/pulls/{issue.number}"
        base_sha = hashlib.sha1(f"{repo.full_name}:{pull.base}".encode()).hexdigest()
        return {
            "id": pull.id,
            "node_id": f"PR_{pull.id}",
            "url": url,
            "html_url": f"https://github.com/{repo.full_name}/pull/{issue.number}",
            "issue_url": f"{self.base}/repos/{repo.full_name}/issues/{issue.number}",
            "comments_url": f"{self.base}/repos/{repo.full_name}/issues/{issue.number}/comments",
            "review_comments_url": f"{url}/comments",
            "number": issue.number,
            "state": issue.state,
            "locked": False,
            "title": issue.title,
            "body": issue.body,
            "user": self.user(issue.user),
            "labels": [self.label(repo, name) for name in issue.labels],
            "created_at": iso(issue.created_at),
            "updated_at": iso(issue.updated_at),
            "closed_at": iso(issue.closed_at) if issue.closed_at else None,
            "merged_at": iso(pull.merged_at) if pull.merged_at else None,
            "merged": pull.merged_at is not None,
            "mergeable": True,
            "draft": pull.draft,
            "head": self.head(repo, owner, pull),
            "base": self.branch(repo, owner, pull.base, base_sha),
            "comments": len(issue.comments),
            "review_comments": 0,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
            "author_association": "NONE",
        }

    def head(self, repo: Repo, owner: str, pull: PullInfo) -> dict[str, Any]:
        """A PR's `head`: a branch of the repository, or of a fork (its own repository object), or of a deleted fork."""
        data = self.branch(repo, owner, pull.head, pull.head_sha)
        if pull.head_fork is None:
            return {**data, "repo": None}
        if pull.head_fork:
            fork_owner, fork_name = pull.head_fork.split("/", 1)
            fork = {**self.repo(repo), "name": fork_name, "full_name": pull.head_fork, "fork": True}
            fork.update(owner=self.user(fork_owner), html_url=f"https://github.com/{pull.head_fork}")
            return {**data, "label": f"{fork_owner}:{pull.head}", "user": self.user(fork_owner), "repo": fork}
        return data

    def branch(self, repo: Repo, owner: str, ref: str, sha: str) -> dict[str, Any]:
        return {"label": f"{owner}:{ref}", "ref": ref, "sha": sha, "user": self.user(owner), "repo": self.repo(repo)}

    def event(self, repo: Repo, issue: Issue, event: Mapping[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": event["id"],
            "node_id": f"E_{event['id']}",
            "url": f"{self.base}/repos/{repo.full_name}/issues/events/{event['id']}",
            "actor": self.user(event["actor"]),
            "event": event["event"],
            "commit_id": None,
            "commit_url": None,
            "created_at": iso(event["created_at"]),
            "performed_via_github_app": self.app_of(event["actor"]),
        }
        if "label" in event:
            data["label"] = dict(event["label"])
        return data

    def app_of(self, login: str) -> dict[str, Any] | None:
        """The GitHub App a bot login acts for (`performed_via_github_app`), None for people and plain tokens."""
        app = next((a for a in self.state._apps.values() if a.bot_login == login), None)
        if app is None:
            return None
        slug = login.removesuffix("[bot]")
        return {
            "id": int(app.app_id) if app.app_id.isdigit() else app.app_id,
            "slug": slug,
            "node_id": f"A_{app.app_id}",
            "name": slug,
            "owner": None,
            "events": ["issues", "pull_request", "pull_request_review"],
            "permissions": {"issues": "write", "pull_requests": "write", "contents": "read"},
        }

    def webhook(self, event: str, action: str, repo: Repo, issue: Issue, sender: str, **extra: Any) -> dict[str, Any]:
        """A webhook payload shaped on GitHub's published examples for `issues`, `pull_request` and
        `pull_request_review`."""
        payload: dict[str, Any] = {"action": action}
        if event == "issues":
            payload["issue"] = self.issue(repo, issue)
        else:
            payload["number"] = issue.number
            payload["pull_request"] = self.pull(repo, issue)
        if "label" in extra:
            payload["label"] = self.label(repo, extra["label"])
        if "review" in extra:
            payload["review"] = self.review(repo, issue, extra["review"])
        payload["repository"] = self.repo(repo)
        payload["sender"] = self.user(sender)
        app = self.state.app_for_repo(repo.full_name)
        if app is not None:
            payload["installation"] = {"id": app.installation_id, "node_id": f"MDIz_{app.installation_id}"}
        return payload

    def comment(self, repo: Repo, comment: Comment) -> dict[str, Any]:
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{self.base}/repos/{repo.full_name}/issues/comments/{comment.id}",
            "html_url": f"https://github.com/{repo.full_name}/issues/{comment.number}#issuecomment-{comment.id}",
            "issue_url": f"{self.base}/repos/{repo.full_name}/issues/{comment.number}",
            "body": comment.body,
            "user": self.user(comment.user),
            "created_at": iso(comment.created_at),
            "updated_at": iso(comment.updated_at),
            "author_association": "NONE",
            "performed_via_github_app": self.app_of(comment.user),
        }

    def review(self, repo: Repo, issue: Issue, review: Review) -> dict[str, Any]:
        return {
            "id": review.id,
            "node_id": f"PRR_{review.id}",
            "user": self.user(review.user),
            "body": review.body,
            "state": review.state,
            "html_url": f"https://github.com/{repo.full_name}/pull/{issue.number}#pullrequestreview-{review.id}",
            "pull_request_url": f"{self.base}/repos/{repo.full_name}/pulls/{issue.number}",
            "submitted_at": iso(review.submitted_at),
            "commit_id": review.commit_id,
            "author_association": "NONE",
        }

    def content(self, repo: Repo, ref: str, path: str, text: str | None) -> dict[str, Any]:
        """A file (with base64 content, wrapped like GitHub's) or, when `text` is None, a directory entry."""
        url = f"{self.base}/repos/{repo.full_name}/contents/{quote(path)}?ref={quote(ref)}"
        sha = git_blob_sha(text) if text is not None else hashlib.sha1(f"tree:{path}".encode()).hexdigest()
        data: dict[str, Any] = {
            "type": "file" if text is not None else "dir",
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": sha,
            "size": len(text.encode()) if text is not None else 0,
            "url": url,
            "html_url": f"https://github.com/{repo.full_name}/blob/{ref}/{path}",
            "git_url": f"{self.base}/repos/{repo.full_name}/git/blobs/{sha}",
            "download_url": None,
            "_links": {"self": url},
        }
        if text is not None:
            encoded = base64.b64encode(text.encode()).decode()
            data["encoding"] = "base64"
            data["content"] = "\n".join(encoded[i : i + 60] for i in range(0, len(encoded), 60)) + "\n"
        return data


def permission_flags(perm: str) -> dict[str, bool]:
    """The boolean `permissions` object GitHub attaches to users and repos for a role."""
    rank = PERMISSION_LEVELS.index(perm)
    return {
        "admin": rank >= PERMISSION_LEVELS.index("admin"),
        "maintain": rank >= PERMISSION_LEVELS.index("maintain"),
        "push": rank >= PERMISSION_LEVELS.index("write"),
        "triage": rank >= PERMISSION_LEVELS.index("triage"),
        "pull": rank >= PERMISSION_LEVELS.index("read"),
    }


def label_names(body: Any) -> list[str]:
    """Label names from a labels request body: a list, or {"labels": [...]}, of names or {"name": ...}."""
    items = body.get("labels", []) if isinstance(body, dict) else body
    if not isinstance(items, list):
        raise ApiError(422, "Validation Failed")
    return [item["name"] if isinstance(item, dict) else str(item) for item in items]


def require_fields(body: Any, *names: str) -> dict[str, Any]:
    if not isinstance(body, dict) or any(not body.get(name) for name in names):
        raise ApiError(422, "Validation Failed")
    return body


class Api:
    """The endpoints: each takes a parsed Request and returns a Response, with the state lock held."""

    def __init__(self, state: GitHubState) -> None:
        self.state = state
        self.render = Renderer(state)
        repo = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"
        issue = repo + r"/issues/(?P<number>\d+)"
        pull = repo + r"/pulls/(?P<number>\d+)"
        table: list[tuple[str, str, Handler]] = [
            ("GET", r"/rate_limit", self.get_rate_limit),
            ("GET", r"/user", self.get_user),
            ("GET", r"/app", self.get_app),
            ("POST", r"/app/installations/(?P<installation>\d+)/access_tokens", self.create_installation_token),
            ("GET", repo, self.get_repo),
            ("GET", repo + r"/installation", self.get_installation),
            ("GET", repo + r"/collaborators/(?P<login>[^/]+)/permission", self.get_permission),
            ("GET", repo + r"/issues", self.list_issues),
            ("POST", repo + r"/issues", self.create_issue),
            ("GET", repo + r"/issues/events", self.list_repo_events),
            ("GET", repo + r"/issues/comments/(?P<comment>\d+)", self.get_comment),
            ("PATCH", repo + r"/issues/comments/(?P<comment>\d+)", self.edit_comment),
            ("GET", issue, self.get_issue),
            ("PATCH", issue, self.edit_issue),
            ("GET", issue + r"/events", self.list_issue_events),
            ("GET", issue + r"/labels", self.list_labels),
            ("POST", issue + r"/labels", self.add_labels),
            ("PUT", issue + r"/labels", self.set_labels),
            ("DELETE", issue + r"/labels", self.clear_labels),
            ("DELETE", issue + r"/labels/(?P<name>[^/]+)", self.remove_label),
            ("GET", issue + r"/comments", self.list_comments),
            ("POST", issue + r"/comments", self.create_comment),
            ("GET", repo + r"/pulls", self.list_pulls),
            ("POST", repo + r"/pulls", self.create_pull),
            ("GET", pull, self.get_pull),
            ("PATCH", pull, self.edit_pull),
            ("GET", pull + r"/reviews", self.list_reviews),
            ("POST", pull + r"/reviews", self.create_review),
            ("GET", repo + r"/contents/(?P<path>.*)", self.get_contents),
        ]
        self.routes = [(method, re.compile(pattern + "/?$"), handler) for method, pattern, handler in table]

    def route(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler for a request; 404 for unknown paths, as GitHub answers."""
        for verb, pattern, handler in self.routes:
            match = pattern.match(path)
            if match and verb == method:
                return handler, {key: unquote(value) for key, value in match.groupdict().items()}
        raise ApiError(404, "Not Found")

    # -- helpers ---------------------------------------------------------------------------------------

    def paginate(self, request: Request, items: list[Any]) -> Response:
        """One page of `items` with GitHub's Link header (absolute URLs to this server)."""
        per_page = min(max(int_param(request.query, "per_page", DEFAULT_PER_PAGE), 1), MAX_PER_PAGE)
        page = max(int_param(request.query, "page", 1), 1)
        last = max(math.ceil(len(items) / per_page), 1)
        links = []

        def link(number: int, rel: str) -> str:
            query = urlencode({**request.query, "page": str(number)})
            return f'<{self.state.base_url}{request.path}?{query}>; rel="{rel}"'

        if page > 1:
            links += [link(page - 1, "prev"), link(1, "first")]
        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        headers = {"Link": ", ".join(links)} if links else {}
        return Response(200, items[(page - 1) * per_page : page * per_page], headers)

    def repo_for(self, request: Request) -> Repo:
        """The addressed repo; an app's JWT is only good for /app and the installation lookup, as on GitHub."""
        repo = self.state.repo(request.repo_name)
        if request.identity.app_id is not None:
            raise ApiError(403, "Resource not accessible by integration")
        return repo

    def issue_for(self, request: Request, pulls_only: bool = False) -> tuple[Repo, Issue]:
        repo = self.repo_for(request)
        issue = self.state.issue(repo.full_name, request.number)
        if pulls_only and issue.pull is None:
            raise ApiError(404, "Not Found")
        return repo, issue

    def actor(self, request: Request) -> User:
        return self.state.user(request.identity.login, request.identity.type)

    # -- endpoints ---------------------------------------------------------------------------------------

    def get_rate_limit(self, request: Request) -> Response:
        state = self.state
        core = {
            "limit": state.rate_limit_limit,
            "remaining": state.rate_limit_remaining,
            "reset": state.rate_limit_reset,
            "used": state.rate_limit_limit - state.rate_limit_remaining,
            "resource": "core",
        }
        other = {"limit": 30, "remaining": 30, "reset": state.rate_limit_reset, "used": 0}
        resources = {"core": core, "search": {**other, "resource": "search"}, "graphql": {**other, "limit": 5000}}
        return Response(200, {"resources": resources, "rate": core}, free=True)

    def get_user(self, request: Request) -> Response:
        """The token's own account; an App's installation token is refused, as on GitHub ("Resource not
        accessible by integration"), and so is an App JWT."""
        identity = request.identity
        if identity.app_id is not None:
            raise ApiError(401, "'Authorization' header is malformed or the JWT could not be decoded")
        if self.render.app_of(identity.login) is not None:
            raise ApiError(403, "Resource not accessible by integration")
        return Response(200, self.render.user(identity.login))

    def get_app(self, request: Request) -> Response:
        """The authenticated App (JWT only): its `slug` names its bot account, `<slug>[bot]`."""
        if request.identity.app_id is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        app = self.state._apps[request.identity.app_id]
        info = self.render.app_of(app.bot_login)
        assert info is not None
        return Response(
            200, {**info, "external_url": "https://example.com", "html_url": f"https://github.com/apps/{info['slug']}"}
        )

    def get_repo(self, request: Request) -> Response:
        repo = self.repo_for(request)
        return Response(200, self.render.repo(repo, viewer=request.identity.login))

    def get_installation(self, request: Request) -> Response:
        repo = self.state.repo(request.repo_name)
        app = self.state.app_for_repo(repo.full_name, request.identity.app_id)
        if app is None:
            raise ApiError(404, "Not Found")
        owner = repo.full_name.split("/", 1)[0]
        return Response(
            200,
            {
                "id": app.installation_id,
                "app_id": int(app.app_id) if app.app_id.isdigit() else app.app_id,
                "account": self.render.user(owner),
                "target_type": "Organization",
                "repository_selection": "all" if app.repos is None else "selected",
                "permissions": {"issues": "write", "pull_requests": "write", "contents": "read"},
                "access_tokens_url": f"{self.state.base_url}/app/installations/{app.installation_id}/access_tokens",
            },
        )

    def create_installation_token(self, request: Request) -> Response:
        if request.identity.app_id is None:
            raise ApiError(401, "A JSON web token could not be decoded")
        app = self.state.app_for_installation(int(request.params["installation"]))
        if app is None or app.app_id != request.identity.app_id:
            raise ApiError(404, "Not Found")
        token, expires_at = self.state.issue_installation_token(app)
        body = {
            "token": token,
            "expires_at": iso(expires_at),
            "permissions": {"issues": "write", "pull_requests": "write", "contents": "read"},
            "repository_selection": "all" if app.repos is None else "selected",
        }
        return Response(201, body)

    def get_permission(self, request: Request) -> Response:
        repo = self.repo_for(request)
        login = request.params["login"]
        role = self.state.permission(repo.full_name, login)
        base = self.state.base_permission(repo.full_name, login)
        user = {**self.render.user(login), "permissions": permission_flags(base), "role_name": role}
        return Response(200, {"permission": LEGACY_PERMISSION[base], "role_name": role, "user": user})

    def list_issues(self, request: Request) -> Response:
        repo = self.repo_for(request)
        issues = filter_issues(repo.issues.values(), request.query)
        return self.paginate(request, [self.render.issue(repo, issue) for issue in issues])

    def create_issue(self, request: Request) -> Response:
        repo = self.repo_for(request)
        body = require_fields(request.body, "title")
        with self.state.same_moment():  # GitHub records the labels of a new issue as events of its creation
            login = request.identity.login
            number = self.state.add_issue(repo.full_name, body["title"], body.get("body") or "", (), login)
            issue = repo.issues[number]
            self.state.emit("issues", "opened", repo, issue, request.identity.login)
            for name in label_names(body):
                self.state.change_label(repo.full_name, number, name, self.actor(request), add=True)
        return Response(201, self.render.issue(repo, issue))

    def list_repo_events(self, request: Request) -> Response:
        repo = self.repo_for(request)
        pairs = [(issue, event) for issue in repo.issues.values() for event in issue.events]
        pairs.sort(key=lambda pair: pair[1]["id"], reverse=True)
        items = [{**self.render.event(repo, i, e), "issue": self.render.issue(repo, i)} for i, e in pairs]
        return self.paginate(request, items)

    def get_comment(self, request: Request) -> Response:
        repo = self.repo_for(request)
        _, comment = self.state.find_comment(repo.full_name, int(request.params["comment"]))
        return Response(200, self.render.comment(repo, comment), last_modified=comment.updated_at)

    def edit_comment(self, request: Request) -> Response:
        repo = self.repo_for(request)
        body = require_fields(request.body, "body")
        comment_id = int(request.params["comment"])
        self.state.edit_comment(repo.full_name, comment_id, body["body"])
        return Response(200, self.render.comment(repo, self.state.find_comment(repo.full_name, comment_id)[1]))

    def get_issue(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        return Response(200, self.render.issue(repo, issue), last_modified=issue.updated_at)

    def edit_issue(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        self.apply_edits(repo, issue, request)
        if isinstance(request.body, dict) and "labels" in request.body:
            self.replace_labels(repo, issue, label_names(request.body), self.actor(request))
        return Response(200, self.render.issue(repo, issue))

    def apply_edits(self, repo: Repo, issue: Issue, request: Request) -> None:
        """Title/body/state/base edits shared by the issue and pull PATCH endpoints."""
        body = request.body if isinstance(request.body, dict) else {}
        changed = False
        for key in ("title", "body"):
            if key in body and body[key] != getattr(issue, key):
                setattr(issue, key, body[key] or "")
                changed = True
        if issue.pull is not None and body.get("base") and body["base"] != issue.pull.base:
            issue.pull.base = body["base"]
            changed = True
        if changed:
            issue.updated_at = self.state.tick()
        if body.get("state") and body["state"] != issue.state:
            self.state.set_issue_state(repo.full_name, issue.number, body["state"], request.identity.login)

    def list_issue_events(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        return self.paginate(request, [self.render.event(repo, issue, event) for event in issue.events])

    def list_labels(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        return self.paginate(request, [self.render.label(repo, name) for name in issue.labels])

    def add_labels(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        with self.state.same_moment():
            for name in label_names(request.body):
                self.state.change_label(repo.full_name, issue.number, name, self.actor(request), add=True)
        return Response(200, [self.render.label(repo, name) for name in issue.labels])

    def set_labels(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        self.replace_labels(repo, issue, label_names(request.body), self.actor(request))
        return Response(200, [self.render.label(repo, name) for name in issue.labels])

    def replace_labels(self, repo: Repo, issue: Issue, names: list[str], actor: User) -> None:
        with self.state.same_moment():
            self._replace_labels(repo, issue, names, actor)

    def _replace_labels(self, repo: Repo, issue: Issue, names: list[str], actor: User) -> None:
        wanted = {name.lower() for name in names}
        for name in [name for name in issue.labels if name.lower() not in wanted]:
            self.state.change_label(repo.full_name, issue.number, name, actor, add=False)
        for name in names:
            self.state.change_label(repo.full_name, issue.number, name, actor, add=True)

    def clear_labels(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        self.replace_labels(repo, issue, [], self.actor(request))
        return Response(204)

    def remove_label(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        event = self.state.change_label(
            repo.full_name, issue.number, request.params["name"], self.actor(request), False
        )
        if event is None:
            raise ApiError(404, "Label does not exist")
        return Response(200, [self.render.label(repo, name) for name in issue.labels])

    def list_comments(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        comments = issue.comments
        if "since" in request.query:
            since = since_param(request.query)
            comments = [comment for comment in comments if comment.updated_at >= since]
        return self.paginate(request, [self.render.comment(repo, comment) for comment in comments])

    def create_comment(self, request: Request) -> Response:
        repo, issue = self.issue_for(request)
        body = require_fields(request.body, "body")
        comment_id = self.state.add_comment(repo.full_name, issue.number, body["body"], request.identity.login)
        return Response(201, self.render.comment(repo, self.state.find_comment(repo.full_name, comment_id)[1]))

    def list_pulls(self, request: Request) -> Response:
        repo = self.repo_for(request)
        pulls = filter_pulls(repo.issues.values(), request.query)
        return self.paginate(request, [self.render.pull(repo, issue) for issue in pulls])

    def create_pull(self, request: Request) -> Response:
        repo = self.repo_for(request)
        body = require_fields(request.body, "title", "head", "base")
        head = str(body["head"]).split(":", 1)[-1]
        number = self.state.add_pull(
            repo.full_name,
            body["title"],
            body.get("body") or "",
            head=head,
            base=body["base"],
            user=request.identity.login,
            draft=bool(body.get("draft")),
        )
        return Response(201, self.render.pull(repo, repo.issues[number]))

    def get_pull(self, request: Request) -> Response:
        repo, issue = self.issue_for(request, pulls_only=True)
        return Response(200, self.render.pull(repo, issue), last_modified=issue.updated_at)

    def edit_pull(self, request: Request) -> Response:
        repo, issue = self.issue_for(request, pulls_only=True)
        self.apply_edits(repo, issue, request)
        return Response(200, self.render.pull(repo, issue))

    def list_reviews(self, request: Request) -> Response:
        repo, issue = self.issue_for(request, pulls_only=True)
        return self.paginate(request, [self.render.review(repo, issue, review) for review in issue.reviews])

    def create_review(self, request: Request) -> Response:
        repo, issue = self.issue_for(request, pulls_only=True)
        body = request.body if isinstance(request.body, dict) else {}
        event = {"APPROVE": "APPROVED", "REQUEST_CHANGES": "CHANGES_REQUESTED", "COMMENT": "COMMENTED"}
        state = event.get(str(body.get("event", "COMMENT")), "COMMENTED")
        actor = self.actor(request)
        review_id = self.state.review(
            repo.full_name, issue.number, state, actor.login, actor.type, body.get("body") or ""
        )
        review = next(review for review in issue.reviews if review.id == review_id)
        return Response(200, self.render.review(repo, issue, review))

    def get_contents(self, request: Request) -> Response:
        repo = self.repo_for(request)
        ref = request.query.get("ref") or repo.default_branch
        path = request.params["path"].strip("/")
        text = repo.files.get((ref, path))
        if text is not None:
            return Response(200, self.render.content(repo, ref, path, text))
        children = directory_children(repo, ref, path)
        if not children:
            raise ApiError(404, "Not Found")
        entries = [self.render.content(repo, ref, child, repo.files.get((ref, child))) for child in children]
        return Response(200, entries)


def int_param(query: Mapping[str, str], name: str, default: int) -> int:
    try:
        return int(query.get(name, default))
    except ValueError:
        return default


def since_param(query: Mapping[str, str]) -> datetime:
    try:
        return parse_time(query["since"])
    except ValueError:
        raise ApiError(422, "Validation Failed") from None


def filter_issues(issues: Iterable[Issue], query: Mapping[str, str]) -> list[Issue]:
    """GitHub's issue list filters: state (default open), since (updated_at >= since), labels (all of),
    creator, sort (created|updated|comments, default created) and direction (default desc)."""
    wanted_state = query.get("state", "open")
    chosen = [issue for issue in issues if wanted_state == "all" or issue.state == wanted_state]
    if "since" in query:
        since = since_param(query)
        chosen = [issue for issue in chosen if issue.updated_at >= since]
    if query.get("labels"):
        wanted = {name.strip().lower() for name in query["labels"].split(",")}
        chosen = [issue for issue in chosen if wanted <= {name.lower() for name in issue.labels}]
    if query.get("creator"):
        chosen = [issue for issue in chosen if issue.user.lower() == query["creator"].lower()]
    sort_keys: dict[str, Callable[[Issue], Any]] = {
        "created": lambda issue: (issue.created_at, issue.number),
        "updated": lambda issue: (issue.updated_at, issue.number),
        "comments": lambda issue: (len(issue.comments), issue.number),
    }
    key = sort_keys.get(query.get("sort", "created"), sort_keys["created"])
    return sorted(chosen, key=key, reverse=query.get("direction", "desc") != "asc")


def filter_pulls(issues: Iterable[Issue], query: Mapping[str, str]) -> list[Issue]:
    """GitHub's pull list filters: state (default open), head ("owner:ref"), base, sort and direction
    (desc by default for sort=created, asc otherwise)."""
    wanted_state = query.get("state", "open")
    pulls = [issue for issue in issues if issue.pull is not None]
    chosen = [issue for issue in pulls if wanted_state == "all" or issue.state == wanted_state]
    if query.get("head"):
        head = query["head"].split(":", 1)[-1]
        chosen = [issue for issue in chosen if issue.pull is not None and issue.pull.head == head]
    if query.get("base"):
        chosen = [issue for issue in chosen if issue.pull is not None and issue.pull.base == query["base"]]
    sort = query.get("sort", "created")
    key: Callable[[Issue], Any] = (
        (lambda issue: (issue.updated_at, issue.number))
        if sort == "updated"
        else (lambda issue: (issue.created_at, issue.number))
    )
    default_direction = "desc" if sort == "created" else "asc"
    return sorted(chosen, key=key, reverse=query.get("direction", default_direction) == "desc")


def directory_children(repo: Repo, ref: str, path: str) -> list[str]:
    """Immediate children (files and subdirectories) of a directory in the stored files of `ref`."""
    prefix = f"{path}/" if path else ""
    children: set[str] = set()
    for file_ref, file_path in repo.files:
        if file_ref == ref and file_path.startswith(prefix):
            head = file_path[len(prefix) :].split("/", 1)[0]
            children.add(prefix + head)
    return sorted(children)


# ---------------------------------------------------------------------------------------------------------
# The server: authentication, rate limiting, conditional requests, faults, then routing.
# ---------------------------------------------------------------------------------------------------------


def error_body(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "documentation_url": DOCS_URL, "status": str(status)}


def make_etag(payload: bytes) -> str:
    """A weak ETag over the body, like GitHub's: the same body always gets the same tag."""
    return f'W/"{hashlib.sha256(payload).hexdigest()[:40]}"'


def etag_matches(header: str | None, etag: str) -> bool:
    if not header:
        return False
    bare = etag.removeprefix("W/")
    return any(tag.strip() in ("*", etag, bare) or tag.strip().removeprefix("W/") == bare for tag in header.split(","))


def not_modified_since(header: str | None, last_modified: datetime | None) -> bool:
    if not header or last_modified is None:
        return False
    try:
        since = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return False
    return last_modified.replace(microsecond=0) <= since


@dataclass
class Reply:
    """What goes on the wire; `drop` closes the connection without answering (a timeout fault)."""

    status: int = 200
    payload: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


class Dispatcher:
    """Turns one raw HTTP request into a Reply, applying the cross-cutting GitHub behaviours in order:
    latency, injected faults, authentication, the primary rate limit, the endpoint, conditional GETs."""

    def __init__(self, state: GitHubState, stop: threading.Event) -> None:
        self.state = state
        self.api = Api(state)
        self.stop = stop

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> Reply:
        if self.state.latency:
            time.sleep(self.state.latency)
        path = urlsplit(target).path
        fault = self.state.take_fault(method, path)
        if fault == "timeout":
            self.state.record_request(method, target, 0)
            self.stop.wait(self.state.timeout_seconds)
            return Reply(drop=True)
        with self.state.lock:
            reply = self.answer(method, target, headers, raw_body, fault)
            self.state.record_request(method, target, reply.status)
        return reply

    def answer(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes, fault: str | None) -> Reply:
        try:
            if fault is not None:
                return self.fault_reply(fault)
            request = self.parse(method, target, headers, raw_body)
            if self.state.rate_limit_exhausted() and request.path != "/rate_limit":
                return self.primary_limit_reply(self.state.rate_limit_reset)
            handler, request.params = self.api.route(method, request.path)
            return self.success_reply(request, handler(request))
        except ApiError as error:
            spend = error.status not in (401, 403, 429)
            return self.finish(error.status, error_body(error.status, error.message), error.headers, spend=spend)

    def parse(self, method: str, target: str, headers: Mapping[str, str], raw_body: bytes) -> Request:
        parts = urlsplit(target)
        identity = self.authenticate(headers.get("Authorization", ""))
        try:
            body = json.loads(raw_body) if raw_body.strip() else None
        except ValueError:
            raise ApiError(400, "Problems parsing JSON") from None
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        return Request(method, parts.path, target, query, headers, body, identity)

    def authenticate(self, authorization: str) -> Identity:
        """`token X` / `Bearer X` with a known token, or `Bearer <app JWT>`; anything else is 401."""
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() not in ("token", "bearer") or not token:
            raise ApiError(401, "Bad credentials")
        identity = self.state.identity_for_token(token)
        if identity is not None:
            return identity
        if token.count(".") == 2:
            return self.state.verify_app_jwt(token)
        raise ApiError(401, "Bad credentials")

    def success_reply(self, request: Request, response: Response) -> Reply:
        payload = b"" if response.status == 204 else json.dumps(response.body).encode()
        headers = dict(response.headers)
        if request.method == "GET" and response.status == 200:
            headers["ETag"] = make_etag(payload)
            if response.last_modified is not None:
                headers["Last-Modified"] = email.utils.format_datetime(response.last_modified, usegmt=True)
            if self.not_modified(request.headers, headers["ETag"], response.last_modified):
                # GitHub does not charge conditional requests that come back 304.
                return self.finish(304, None, {"ETag": headers["ETag"]}, spend=False)
        return self.finish(response.status, payload, headers, spend=not response.free)

    @staticmethod
    def not_modified(headers: Mapping[str, str], etag: str, last_modified: datetime | None) -> bool:
        if headers.get("If-None-Match"):
            return etag_matches(headers.get("If-None-Match"), etag)
        return not_modified_since(headers.get("If-Modified-Since"), last_modified)

    def fault_reply(self, fault: str) -> Reply:
        if fault in BODY_FAULTS:
            return self.finish(BODY_FAULTS[fault], b"[" * DEEP_JSON_LEVELS, {}, spend=True)
        if fault in SERVER_ERRORS:
            return self.finish(int(fault), error_body(int(fault), SERVER_ERRORS[fault]), {}, spend=True)
        if fault == "rate_limit_primary":
            return self.primary_limit_reply(int(time.time()) + 60)
        status = 429 if fault == "rate_limit_429" else 403
        return self.finish(status, error_body(status, SECONDARY_MESSAGE), {"Retry-After": "30"}, spend=False)

    def primary_limit_reply(self, reset: int) -> Reply:
        """403 with Remaining 0, as GitHub answers when the hourly budget is gone (until `reset`)."""
        user = self.state.user(DEFAULT_TOKEN_LOGIN)
        message = (
            f"API rate limit exceeded for user ID {user.id}. If you reach out to GitHub Support for help, "
            "please include the request ID."
        )
        reply = self.finish(403, error_body(403, message), {}, spend=False)
        limit = self.state.rate_limit_limit
        reply.headers.update(
            {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(reset), "X-RateLimit-Used": str(limit)}
        )
        return reply

    def finish(self, status: int, body: Any, headers: Mapping[str, str], spend: bool) -> Reply:
        """Charge the rate limit (unless `spend` is False) and attach GitHub's rate-limit headers."""
        if spend:
            self.state.spend_rate_limit()
        payload = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        remaining = self.state.rate_limit_remaining
        reply_headers = {
            "X-RateLimit-Limit": str(self.state.rate_limit_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(self.state.rate_limit_reset),
            "X-RateLimit-Used": str(self.state.rate_limit_limit - remaining),
            "X-RateLimit-Resource": "core",
            "X-GitHub-Media-Type": "github.v3; format=json",
            **headers,
        }
        if payload:
            reply_headers["Content-Type"] = "application/json; charset=utf-8"
        return Reply(status, payload, reply_headers)


class _RequestHandler(BaseHTTPRequestHandler):
    """Adapts http.server to the Dispatcher; HTTP/1.1 keep-alive like the real API."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes; avoid 40 ms delayed-ACK stalls
    server: _HTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        reply = self.server.dispatcher.handle(self.command, self.path, self.headers, raw_body)
        if reply.drop:
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.status not in (204, 304):
            self.send_header("Content-Length", str(len(reply.payload)))
        self.end_headers()
        if reply.payload and reply.status not in (204, 304):
            self.wfile.write(reply.payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def date_time_string(self, timestamp: float | None = None) -> str:
        """GitHub's clock is the fake clock: the `Date` header says the second the state is in."""
        return email.utils.format_datetime(self.server.dispatcher.state.now(), usegmt=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: `state.requests` is the log tests look at."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, dispatcher: Dispatcher) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.dispatcher = dispatcher


def sign(secret: str, body: bytes) -> str:
    """GitHub's `X-Hub-Signature-256`: HMAC-SHA256 of the raw body with the webhook secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _send_deliveries(state: GitHubState, stop: threading.Event) -> None:
    """GitHub's delivery worker: POST each queued delivery once (10 s timeout), keep the answer's status."""
    while not stop.is_set():
        delivery = state.next_unsent(stop)
        if delivery is None:
            continue
        body = json.dumps(delivery.payload).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/fake",
            "X-GitHub-Event": delivery.event,
            "X-GitHub-Delivery": delivery.id,
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "repository",
            "X-Hub-Signature": "sha1=" + hmac.new(delivery.secret.encode(), body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": sign(delivery.secret, body),
        }
        request = urllib.request.Request(delivery.url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            status = 0  # no answer: GitHub shows the delivery as failed
        with state.lock:
            delivery.status, delivery.answered = status, time.monotonic()


class GitHubServer:
    """The fake API on 127.0.0.1:<free port>, served from a daemon thread; use as a context manager."""

    def __init__(self, state: GitHubState | None = None) -> None:
        self.state = state or GitHubState()
        self.token = DEFAULT_TOKEN
        self._stop = threading.Event()
        self._httpd = _HTTPServer(Dispatcher(self.state, self._stop))
        host, port = self._httpd.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self.state.base_url = self.url
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-github", daemon=True
        )
        self._sender = threading.Thread(
            target=_send_deliveries, args=(self.state, self._stop), name="fake-github-hooks", daemon=True
        )

    def start(self) -> GitHubServer:
        self._thread.start()
        self._sender.start()
        return self

    def stop(self) -> None:
        """Wake requests sleeping in a timeout fault, stop accepting, release the port."""
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
        self._sender.join(timeout=12)

    def __enter__(self) -> GitHubServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def app_key_pair() -> tuple[str, str]:
    """A fresh RSA key pair for a test GitHub App: (private PEM, public PEM). Made at run time, never stored."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


@pytest.fixture
def github_server() -> Iterator[GitHubServer]:
    """A fresh fake GitHub per test; `.url` is a PyGithub base_url, `.state` the data, `.token` a valid token."""
    with GitHubServer() as server:
        yield server


def pygithub_client(server: GitHubServer, **kw: Any) -> github.Github:
    """A PyGithub client for the fake: no throttling between requests, no retries, a short timeout.

    Keyword arguments override those defaults (e.g. `timeout=1`, `retry=GithubRetry()`, `auth=...`).
    """
    options: dict[str, Any] = {
        "auth": github.Auth.Token(server.token),
        "base_url": server.url,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
        "timeout": 2,
        "retry": None,
        **kw,
    }
    return github.Github(**options)
