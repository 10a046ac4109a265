"""GitHub payloads parsed once into typed values: what the permission API, the events API and webhooks really send."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.domain.stages import Permission
from codexk8s_pipelines.github.payloads import (
    IssueEvent,
    PayloadError,
    PullRequest,
    Repository,
    RepositoryPermission,
    WebhookEvent,
    label_names,
)


def _permission(permission: str, role_name: str | None, flags: dict[str, bool] | None = None) -> Permission | None:
    user = {"login": "frank", "permissions": flags} if flags is not None else {"login": "frank"}
    return RepositoryPermission.parse({"permission": permission, "role_name": role_name, "user": user}).level


@pytest.mark.parametrize(
    ("permission", "role_name", "flags", "level"),
    [
        ("write", "maintain", None, Permission.MAINTAIN),  # role_name is exact for base roles
        ("read", "triage", None, Permission.TRIAGE),
        ("write", "release-captain", {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True},
         Permission.WRITE),
        ("write", "release-manager", {"admin": False, "maintain": True, "push": True, "triage": True, "pull": True},
         Permission.MAINTAIN),  # a custom role on maintain: `permission` alone would say write
        ("write", "release-captain", None, Permission.WRITE),  # no flags: the coarse base permission
        ("push", None, None, Permission.WRITE),  # legacy names
        ("mystery", "mystery", None, None),
    ],
)  # fmt: skip
def test_permission_levels(
    permission: str, role_name: str | None, flags: dict | None, level: Permission | None
) -> None:
    assert _permission(permission, role_name, flags) is level


def test_an_event_of_a_deleted_user_and_an_app() -> None:
    ghost = IssueEvent.parse({"id": 7, "event": "labeled", "created_at": "2026-01-01T00:00:00Z", "actor": None,
                              "label": {"name": "run:dev"}, "performed_via_github_app": None})  # fmt: skip
    assert (ghost.actor.login, ghost.label, ghost.via_app) == ("", "run:dev", None)
    app = IssueEvent.parse({"id": 8, "event": "labeled", "created_at": "2026-01-01T00:00:00Z", "label": {"name": "x"},
                            "actor": {"login": "ci[bot]", "type": "Bot"},
                            "performed_via_github_app": {"id": 1, "slug": "ci", "node_id": "A_1"}})  # fmt: skip
    assert app.via_app == "ci" and app.moment == ("2026-01-01T00:00:00Z", "ci[bot]")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"event": "labeled", "created_at": "2026-01-01T00:00:00Z"}, "issue event: field 'id' is missing"),
        ({"id": "x1", "event": "labeled"}, "issue event: field 'id' is not a number: 'x1'"),
        ({"id": 3, "event": "labeled"}, "issue event 3: field 'created_at' is missing"),
        ([1, 2], "issue event: expected a JSON object, got list"),
    ],
)
def test_malformed_events_say_what_and_where(data: object, message: str) -> None:
    with pytest.raises(PayloadError, match="^" + message.replace("[", r"\[") + "$"):
        IssueEvent.parse(data)


def test_webhook_events() -> None:
    repo = {"full_name": "Acme/Shop"}
    labeled = WebhookEvent.parse("issues", {"action": "labeled", "issue": {"number": 4}, "label": {"name": "run:dev"},
                                            "repository": repo})  # fmt: skip
    assert (labeled.repository, labeled.number, labeled.intake) == ("acme/shop", 4, "issue_labels")
    review = WebhookEvent.parse("pull_request_review", {"action": "submitted", "review": {"id": 9},
                                                        "pull_request": {"number": 5}, "repository": repo})  # fmt: skip
    assert (review.number, review.intake) == (5, "pull_requests")
    closed = WebhookEvent.parse("issues", {"action": "closed", "issue": {"number": 4}, "repository": repo})
    assert closed.intake is None
    with pytest.raises(PayloadError, match="event 'push' is not taken"):
        WebhookEvent.parse("push", {})
    with pytest.raises(PayloadError, match=r"issues delivery: field 'label' is missing"):
        WebhookEvent.parse("issues", {"action": "labeled", "issue": {"number": 4}, "repository": repo})
    assert label_names({"labels": [{"name": "a"}, "junk", {"name": ""}, {"name": "b"}]}) == ("a", "b")


def test_a_pull_requests_head_repository_says_whether_its_branch_is_ours() -> None:
    def pull(head_repo: object) -> PullRequest:
        head = {"ref": "main", "sha": "a" * 40, "repo": head_repo}
        return PullRequest.parse({"number": 7, "title": "t", "body": "", "head": head, "labels": []})

    assert pull({"full_name": "Acme/Shop"}).head_is_in("acme/shop")
    assert not pull({"full_name": "mallory/shop"}).head_is_in("acme/shop")  # a fork's `main` is not ours
    assert not pull(None).head_is_in("acme/shop")  # the fork was deleted: its branch is nobody's here


def test_a_repositorys_default_branch_is_githubs_and_its_absence_is_named() -> None:
    """GitHub's published example of GET /repos/{owner}/{repo} carries `default_branch`: the stage runs' base."""
    assert Repository.parse({"full_name": "acme/shop", "default_branch": "master"}).default_branch == "master"
    with pytest.raises(PayloadError, match=r"repository acme/shop: field 'default_branch' is missing"):
        Repository.parse({"full_name": "acme/shop", "default_branch": ""}, "repository acme/shop")
