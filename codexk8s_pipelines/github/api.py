"""The part of GitHub's REST API the platform uses, on PyGithub's requester, returning plain JSON.

Why the requester and not PyGithub's object model: polling needs conditional requests (If-None-Match → a
free 304) and exact control of how many requests a tick makes; PyGithub's requester still does the auth,
retries and error-to-exception mapping.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, cast
from urllib.parse import parse_qs, quote, urlsplit

import github
from github.GithubException import GithubException
from github.Requester import Requester

from ..domain.untrusted_data import UntrustedDataError, loads_json
from .payloads import PullRequest, Repository, RepositoryPermission
from .rate_limit import header

log = logging.getLogger(__name__)

_LINK = re.compile(r'<([^>]+)>;\s*rel="(\w+)"')
PER_PAGE = 100
MAX_PAGES = 20  # of one item's events or reviews per read: 2000 entries, a few seconds of a tick at most


class ListTooLong(RuntimeError):
    """More entries are new than one read takes. Raised, never cut short silently: the intake audits the item as
    `intake.item_failed` (the newest entries, the ones that matter, would otherwise be the ones dropped)."""


@dataclass(frozen=True)
class Window:
    """The newest entries of a list, oldest first. `complete`: the whole list; otherwise only the pages back to
    (and including) the first entry older than the `since` the caller asked for, with older pages skipped."""

    items: list[dict[str, Any]]
    complete: bool
    # Set when more pages were new than one read takes: the newest MAX_PAGES are the items, and this says what was
    # left unread (the intake decides the items, then audits the item as failed with this).
    skipped: str | None = None


def _links(value: str | None) -> dict[str, str]:
    return {rel: url for url, rel in _LINK.findall(value or "")}


def _page_number(url: str) -> int | None:
    pages = parse_qs(urlsplit(url).query).get("page")
    return int(pages[0]) if pages and pages[0].isdigit() else None


def _older_than(entry: Any, field: str, since: datetime) -> bool:
    raw = cast(dict[str, Any], entry).get(field) if isinstance(entry, dict) else None
    if not isinstance(raw, str) or not raw:
        return False  # a pending review has no submitted_at: it never ends the walk
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")) < since
    except ValueError:
        return False


def _updated_at(entry: Any) -> str | None:
    """A listed item's `updated_at`, None when it has none GitHub's format can be read from."""
    raw = cast(dict[str, Any], entry).get("updated_at") if isinstance(entry, dict) else None
    if not isinstance(raw, str):
        return None
    try:
        datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return raw


def _later(a: str, b: str) -> bool:
    """Whether GitHub timestamp `a` is after `b` (`b` may be unreadable: then nothing is after it)."""
    try:
        return datetime.fromisoformat(a.replace("Z", "+00:00")) > datetime.fromisoformat(b.replace("Z", "+00:00"))
    except ValueError:
        return False


def _http_date(value: str | None) -> str | None:
    """An HTTP `Date` header as GitHub's timestamp format, or None when absent or unreadable."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (TypeError, ValueError):
        return None


def _answer(verb: str, url: str, body: str) -> Any:
    """GitHub's answer to `verb url` as JSON, None when it is empty. GitHub (or whatever answers at its URL) writes
    it: an answer nested too deeply for json's decoder is `UntrustedDataError` naming the request, where
    `json.loads` let RecursionError out of the sensor's tick or the stage's op."""
    return loads_json(body, f"GitHub's answer to {verb} {url}") if body else None


def _raise_for(status: int, headers: dict[str, Any], body: str) -> None:
    """PyGithub's exception for an error answer, with GitHub's message when the body is JSON."""
    try:
        data: Any = loads_json(body, "GitHub's error answer") if body else {}
    except UntrustedDataError:
        data = {"message": body[:200]}
    output: dict[str, Any] = cast(dict[str, Any], data) if isinstance(data, dict) else {"data": data}
    raise Requester.createException(status, headers, output)


def _checked(requester: Requester, verb: str, url: str, payload: Any = None) -> Any:
    """`requester.requestJsonAndCheck(verb, url, input=payload)[1]` (`url` a path of the API), with the answer read
    by `_answer`: PyGithub's own `json.loads` raised RecursionError on an answer nested too deeply."""
    status, headers, body = requester.requestJson(verb, url, input=payload)
    if status >= 400:
        _raise_for(status, headers, body)
    if body and not body.lstrip().startswith(("{", "[")):
        return {"data": body}  # as PyGithub answers a success that is not JSON (a proxy's page): not an error here
    return _answer(verb, url, body)


@dataclass(frozen=True)
class Listing:
    """Issues and PRs updated since a time; `not_modified` when GitHub answered 304 to the ETag. `served_at` is
    GitHub's own clock (the `Date` header of the first answer, to the second): an item changed in that very second
    may still change within it without its `updated_at` moving.

    `etag` is set only for a listing of one page: GitHub's ETag covers the page it came with, and a later change
    lands at the end of a listing sorted by update time, past page 1, so an ETag of page 1 would answer 304 to it.
    `rest_from` is None when the listing was read to its end; else every item updated before it was read, and the
    rest (updated at or after it) is left for the next read, which asks `since=rest_from`."""

    not_modified: bool
    etag: str | None
    items: list[dict[str, Any]]
    served_at: str | None = None
    pages: int = 1
    rest_from: str | None = None


class RepoApi:
    def __init__(self, gh: github.Github, full_name: str) -> None:
        self.gh = gh
        self.full_name = full_name
        self.base = f"/repos/{full_name}"
        self._own_login: str | None = None
        # Asked before every request; raises to refuse it. The intake's tick sets it: its credential's rate limit
        # and the end of the tick's wait hold every request of every repository read with the same credential.
        self.before_request: Callable[[], None] | None = None

    def own_login(self) -> str | None:
        """The login the platform writes to GitHub as, or None when GitHub would not say (asked again next time).

        A token (PAT or a machine user's) reads its account from `GET /user`. A GitHub App's installation token
        cannot (`/user` answers 403 "Resource not accessible by integration"), so for an App this asks
        `GET /app` with the App's own JWT: the App's `slug` names its bot account, `<slug>[bot]`, the author of
        everything the installation writes. Both are exact identities; `user.type == "Bot"` or
        `performed_via_github_app` alone would also match any other App installed on the repository."""
        if self._own_login is not None:
            return self._own_login
        auth = self._requester.auth
        try:
            if isinstance(auth, github.Auth.AppInstallationAuth):
                app = _checked(auth.requester, "GET", "/app")  # this requester signs with the App JWT
                login = f"{app['slug']}[bot]" if app.get("slug") else None
            else:
                login = _checked(self._requester, "GET", "/user").get("login") or None
        except (GithubException, UntrustedDataError) as exc:
            log.warning("cannot tell which account the platform writes to %s as: %s", self.full_name, exc)
            return None
        self._own_login = str(login) if login else None
        return self._own_login

    @property
    def _requester(self) -> Requester:
        """The requester every request of this class is made with, `before_request` asked first."""
        if self.before_request is not None:
            self.before_request()
        return self.gh.requester

    def _get_pages(
        self, path: str, params: dict[str, Any], headers: dict[str, str] | None = None, max_pages: int = MAX_PAGES
    ) -> tuple[int, dict[str, Any], list[Any]]:
        """Up to `max_pages` pages from the front, following `next`; the first response's status and headers (a 304
        answers a conditional request with no items)."""
        status, resp_headers, body = self._requester.requestJson("GET", path, parameters=params, headers=headers)
        if status == 304:
            return status, resp_headers, []
        if status >= 400:
            _raise_for(status, resp_headers, body)
        items: list[Any] = _answer("GET", path, body) or []
        url, pages = _links(header(resp_headers, "link")).get("next"), 1
        while url and pages < max_pages:
            page, links = self._page(url)
            items.extend(page)
            url, pages = links.get("next"), pages + 1
        if url:
            log.warning("%s: more than %d pages; only the first %d were read", path, max_pages, max_pages)
        return status, resp_headers, items

    def _page(self, url: str, params: dict[str, Any] | None = None) -> tuple[list[Any], dict[str, str]]:
        status, headers, body = self._requester.requestJson("GET", url, parameters=params)
        if status >= 400:
            _raise_for(status, headers, body)
        items: list[Any] = _answer("GET", url, body) or []
        return items, _links(header(headers, "link"))

    def _newest(self, path: str, time_field: str, since: datetime | None) -> Window:
        """A list GitHub serves oldest first (an item's events, its reviews), whole while it has at most MAX_PAGES
        pages, else from its newest end.

        Whole first: GitHub orders reviews by when they were started, not submitted, so a review kept pending for a
        while sits among older ones; only the whole list is sure to hold it. Beyond MAX_PAGES, a read from the
        front would drop the newest entries, the ones a tick is looking for, and anyone who can add entries (a
        review on a public PR, a label toggled by a triage user) could push a real trigger past the cap. So then:
        the last page and back along `prev` until a page holds an entry older than `since` (the oldest that can
        still be new). Reading since a time, MAX_PAGES pages all that new end the read with `skipped` saying so;
        without `since` the newest MAX_PAGES are read. When GitHub gives no numbered `last` link the list is read
        from the front: a cap reached there raises `ListTooLong` when reading since a time, and without one the first
        MAX_PAGES pages are returned, marked incomplete."""
        cap = MAX_PAGES
        first, links = self._page(path, {"per_page": PER_PAGE})
        if "next" not in links:
            return Window(first, True)

        def too_long(outcome: str = "not read, so not decided") -> ListTooLong:
            newer = f" newer than {since:%Y-%m-%dT%H:%M:%SZ}" if since is not None else ""
            return ListTooLong(
                f"{self.full_name}: {path} has more than {cap} pages ({cap * PER_PAGE} entries){newer}; {outcome}"
            )

        last = links.get("last")
        last_number = _page_number(last) if last else None
        if last is None or last_number is None or last_number <= cap:
            items, url, pages = first, links.get("next"), 1
            while url:
                if pages >= cap:
                    if since is None:
                        return Window(items, False)
                    raise too_long()
                page, links = self._page(url)
                items.extend(page)
                url, pages = links.get("next"), pages + 1
            return Window(items, True)
        newest: list[list[Any]] = []
        url, number = last, last_number
        while True:
            page, links = self._page(url)
            newest.insert(0, page)
            if number <= 2:
                return Window([*first, *(e for p in newest for e in p)], True)
            if since is not None and any(_older_than(e, time_field, since) for e in page):
                return Window([e for p in newest for e in p], False)
            if len(newest) >= cap:
                skipped = None if since is None else str(too_long(f"the newest {cap} were decided, the older skipped"))
                return Window([e for p in newest for e in p], False, skipped)
            url, number = links.get("prev") or "", number - 1
            if not url:
                raise too_long() if since is not None else ListTooLong(f"{path}: page {number + 1} has no prev link")

    # -- polling ---------------------------------------------------------------------------------------------
    def updated_since(
        self, since: str, etag: str | None, max_pages: int | None = None, deadline: float | None = None
    ) -> Listing:
        """The issues and PRs updated at or after `since`, oldest change first: one conditional request (`etag`)
        and, when the answer has more pages, up to `max_pages` requests in all.

        Further pages are asked by time, not by offset: the next request is `since=` the last item's `updated_at`
        (GitHub's `since` is inclusive; items read twice are kept once, as last read). GitHub's `page=2` counts
        from the front of a listing that moves while it is read: an item of page 1 changed in between goes to the
        end, the first item of page 2 slides onto page 1, and page 2 no longer holds it. Asked by time, an item
        changed in between is only listed again, further on. Only a full page of one second (100 items changed in
        the same second) cannot be passed by time: it is paged by offset, and unless the read then ends with no
        item seen moving (listed again with another `updated_at`), `rest_from` is that second, so the next read
        lists it again (unless the read was cut and started in that very second: it would never get further).

        More than `max_pages` (MAX_PAGES) pages, or a further page wanted after `deadline` (time.monotonic()): the read
        stops there, `rest_from` saying where the next one starts. A slow GitHub (seconds a request) read 20 pages
        whatever the time, and a tick that had read them had no time left to decide any: every tick read the same
        pages again and nothing was ever decided."""
        cap = max_pages or MAX_PAGES
        path = f"{self.base}/issues"
        params: dict[str, Any] = {"state": "all", "sort": "updated", "direction": "asc", "since": since}
        params["per_page"] = PER_PAGE
        headers = {"If-None-Match": etag} if etag else None
        status, resp_headers, body = self._requester.requestJson("GET", path, parameters=params, headers=headers)
        served_at = _http_date(header(resp_headers, "date"))
        if status == 304:
            return Listing(True, etag, [], served_at)
        if status >= 400:
            _raise_for(status, resp_headers, body)
        page: list[Any] = _answer("GET", path, body) or []
        links = _links(header(resp_headers, "link"))
        if "next" not in links:
            # A full page without a next one (exactly 100 changed) keeps no ETag either: the next change lands on page
            # 2, page 1 stays as it was, and GitHub would answer 304 to every later poll.
            return Listing(False, header(resp_headers, "etag") if len(page) < PER_PAGE else None, page, served_at)
        read: dict[Any, Any] = {}  # an item's number (else its position) -> the item as last read
        unnumbered = itertools.count()
        moved = False
        boundary, offset_from, pages = since, None, 1
        while True:
            for entry in page:
                number = cast(dict[str, Any], entry).get("number") if isinstance(entry, dict) else None
                key = number if isinstance(number, int) else ("unnumbered", next(unnumbered))
                earlier = read.pop(key, None)
                if earlier is not None and _updated_at(earlier) != _updated_at(entry):
                    moved = True
                read[key] = entry
            last = _updated_at(page[-1]) if page else None
            if "next" not in links:
                rest_from = None
                break
            out_of_time = deadline is not None and time.monotonic() >= deadline
            if pages >= cap or out_of_time:
                rest_from = last if last is not None and _later(last, boundary) else boundary
                why = "time is up" if out_of_time and pages < cap else f"it has more than {pages} pages"
                log.warning("%s: the listing since %s stopped after %d pages (%s); read up to %s", path, since,
                            pages, why, rest_from)  # fmt: skip
                break
            if last is not None and _later(last, boundary):
                boundary = last
                page, links = self._page(path, {**params, "since": boundary})
            else:  # a full page of one second: on by offset within it
                offset_from = offset_from or boundary
                page, links = self._page(links["next"])
            pages += 1
        # A second paged by offset is read again unless the read ended with nothing seen moving; but not when the
        # read was cut and that second is where it started: it would read the same pages again on every tick.
        unverified = offset_from is not None and (moved or rest_from is not None)
        if unverified and (rest_from is None or _later(offset_from or since, since)):
            rest_from = offset_from
        return Listing(False, None, list(read.values()), served_at, pages, rest_from)

    def latest_update(self) -> str | None:
        """The newest `updated_at` of the repository's issues and PRs: where a new cursor starts."""
        params = {"state": "all", "sort": "updated", "direction": "desc", "per_page": 1}
        status, headers, body = self._requester.requestJson("GET", f"{self.base}/issues", parameters=params)
        if status >= 400:
            _raise_for(status, headers, body)
        items: list[Any] = _answer("GET", f"{self.base}/issues", body) or []
        if items:
            return str(items[0]["updated_at"])
        return _http_date(header(headers, "date"))  # an empty repository: start at GitHub's own clock

    def issue_events(self, number: int) -> Window:
        """The item's newest events (up to MAX_PAGES pages), oldest first: what `triggers explain` replays. Not
        `complete` when older ones were left unread (read the item's labels first, then `labels_before`)."""
        return self._newest(f"{self.base}/issues/{number}/events", "created_at", None)

    def pull_reviews(self, number: int) -> list[dict[str, Any]]:
        """The PR's newest reviews (up to MAX_PAGES pages), oldest first."""
        return self._newest(f"{self.base}/pulls/{number}/reviews", "submitted_at", None).items

    def issue_events_since(self, number: int, since: datetime) -> Window:
        """Every event of the item created at or after `since` (and, unless complete, not much more), oldest
        first; `ListTooLong` when more than MAX_PAGES pages of them are that new."""
        return self._newest(f"{self.base}/issues/{number}/events", "created_at", since)

    def pull_reviews_since(self, number: int, since: datetime) -> Window:
        """Every review of the PR submitted at or after `since` (see `issue_events_since`)."""
        return self._newest(f"{self.base}/pulls/{number}/reviews", "submitted_at", since)

    def repository(self) -> Repository:
        """The repository as GitHub describes it now: its default branch is GitHub's, whatever a configuration says."""
        return Repository.parse(_checked(self._requester, "GET", self.base), f"repository {self.full_name}")

    def issue(self, number: int) -> dict[str, Any]:
        return _checked(self._requester, "GET", f"{self.base}/issues/{number}")

    def pull(self, number: int) -> dict[str, Any]:
        return _checked(self._requester, "GET", f"{self.base}/pulls/{number}")

    def permission(self, login: str) -> RepositoryPermission:
        """The login's permission on the repository (a custom role resolves to the base role it is built on)."""
        data = _checked(self._requester, "GET", f"{self.base}/collaborators/{quote(login, safe='')}/permission")
        return RepositoryPermission.parse(data, f"permission of {login} on {self.full_name}")

    # -- writes ----------------------------------------------------------------------------------------------
    def add_labels(self, number: int, labels: list[str]) -> None:
        _checked(self._requester, "POST", f"{self.base}/issues/{number}/labels", {"labels": labels})

    def remove_label(self, number: int, label: str) -> bool:
        status, headers, body = self._requester.requestJson(
            "DELETE", f"{self.base}/issues/{number}/labels/{quote(label, safe='')}"
        )
        if status == 404:
            return False
        if status >= 400:
            _raise_for(status, headers, body)
        return True

    def create_issue(self, title: str, body: str, labels: list[str] | None = None) -> dict[str, Any]:
        payload: dict[str, Any] = {"title": title, "body": body}
        if labels:
            payload["labels"] = labels
        return _checked(self._requester, "POST", f"{self.base}/issues", payload)

    def edit_issue(
        self, number: int, *, title: str | None = None, body: str | None = None, state: str | None = None
    ) -> dict[str, Any]:
        payload = {k: v for k, v in (("title", title), ("body", body), ("state", state)) if v is not None}
        return _checked(self._requester, "PATCH", f"{self.base}/issues/{number}", payload)

    def comments(self, number: int) -> list[dict[str, Any]]:
        """The item's newest comments (up to MAX_PAGES pages), oldest first: a run's context is the latest
        discussion, and a run's own comment is among the newest. Read from the front, an issue with more than
        2,000 comments gave its oldest ones, and a run's comment past them was never found again (a new one each
        time)."""
        return self._newest(f"{self.base}/issues/{number}/comments", "created_at", None).items

    def comment(self, comment_id: int) -> dict[str, Any] | None:
        """One issue comment by its id, or None when it is gone."""
        status, headers, body = self._requester.requestJson("GET", f"{self.base}/issues/comments/{comment_id}")
        if status == 404:
            return None
        if status >= 400:
            _raise_for(status, headers, body)
        found: object = _answer("GET", f"{self.base}/issues/comments/{comment_id}", body)
        return cast(dict[str, Any], found) if isinstance(found, dict) else None

    def create_comment(self, number: int, body: str) -> dict[str, Any]:
        return _checked(self._requester, "POST", f"{self.base}/issues/{number}/comments", {"body": body})

    def edit_comment(self, comment_id: int, body: str) -> dict[str, Any]:
        return _checked(self._requester, "PATCH", f"{self.base}/issues/comments/{comment_id}", {"body": body})

    # -- pull requests ---------------------------------------------------------------------------------------
    def open_pull_for_branch(self, branch: str) -> dict[str, Any] | None:
        return next(iter(self._pulls_of_branch(branch, "open")), None)

    def closed_pull_for_branch(self, branch: str) -> dict[str, Any] | None:
        """The newest closed PR (merged, or closed without merging) whose head is `branch` of this repository: GitHub
        keeps a PR's branch after its merge unless told otherwise, and the branch then holds finished work."""
        pulls = self._pulls_of_branch(branch, "closed", {"sort": "created", "direction": "desc"})
        return next((p for p in pulls if PullRequest.parse(p).head_is_in(self.full_name)), None)

    def _pulls_of_branch(self, branch: str, state: str, order: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """The PRs in `state` whose head branch is named `branch` (GitHub's `head` filter, checked again here)."""
        owner = self.full_name.split("/", 1)[0]
        params = {"state": state, "head": f"{owner}:{branch}", "per_page": 100, **(order or {})}
        pulls: list[dict[str, Any]] = self._get_pages(f"{self.base}/pulls", params)[2]
        return [p for p in pulls if PullRequest.parse(p).head_ref == branch]

    def create_pull(self, title: str, head: str, base: str, body: str) -> dict[str, Any]:
        payload = {"title": title, "head": head, "base": base, "body": body}
        return _checked(self._requester, "POST", f"{self.base}/pulls", payload)

    def update_pull(self, number: int, body: str) -> dict[str, Any]:
        return _checked(self._requester, "PATCH", f"{self.base}/pulls/{number}", {"body": body})
