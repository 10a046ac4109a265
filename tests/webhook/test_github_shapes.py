"""Deliveries GitHub really sends that the receiver refused for good (review 41, finding 5): an `issues`
unlabeled without `label` (optional in GitHub's schema), a GitHub App's own events (sent whatever the App subscribes
to), and a repository webhook left on the form-encoded content type, which is told what to change."""

from __future__ import annotations

import json
import urllib.parse

import pytest
import requests

from codexk8s_pipelines.store.intake import delivery_status
from sensors.github import github_issue_labels_sensor as issue_sensor
from tests.github_server import sign
from tests.sensors.conftest import REPO, Intake

from .conftest import SECRET, Receiver


def _post(
    receiver: Receiver, event: str, body: bytes, delivery: str, *, signed: bool = True, ctype: str = "application/json"
) -> requests.Response:
    headers = {"Content-Type": ctype, "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}
    if signed:
        headers["X-Hub-Signature-256"] = sign(SECRET, body)
    return requests.post(receiver.url, data=body, headers=headers, timeout=10)


def _rejections(intake: Intake) -> list[dict]:
    with intake.store.connect() as conn:
        rows = conn.execute("SELECT payload FROM flow_events WHERE event_type = 'webhook.rejected' ORDER BY id")
        return [r["payload"] for r in rows.fetchall()]


def test_an_issue_unlabeled_without_its_label_is_a_hint_all_the_same(
    intake: Intake, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    number = intake.state.add_issue(REPO, "Checkout fails")
    intake.tick(issue_sensor)
    monkeypatch.setenv("CODEXK8S_INTAKE_POLL_SECONDS", "3600")  # polling far away: only the hint looks again
    monkeypatch.setenv("CODEXK8S_INTAKE_RECONCILE_SECONDS", "3600")
    event = intake.state.label(REPO, number, "run:dev", actor="alice")  # what the item's events will show
    # GitHub's schema for issues unlabeled requires action, issue, repository and sender: not label
    body = {"action": "unlabeled", "issue": {"number": number}, "repository": {"full_name": REPO},
            "sender": {"login": "alice"}}  # fmt: skip
    answer = _post(receiver, "issues", json.dumps(body).encode(), "d-unlabeled")
    assert (answer.status_code, answer.json()) == (202, {"delivery": "d-unlabeled", "stored": "pending"})
    assert _rejections(intake) == []
    (request,) = intake.tick(issue_sensor).run_requests  # the item was looked at: its events read from GitHub
    assert request.run_key == f"{REPO}#{number}:run:dev:{event}"
    drained = delivery_status(intake.store, "d-unlabeled")
    assert drained is not None and drained["status"] == "drained"
    assert drained["payload"] is None  # decided: GitHub's body is not kept (store/intake.py mark_drained)


def test_a_label_sent_in_the_wrong_shape_is_still_refused(intake: Intake, receiver: Receiver) -> None:
    body = {"action": "unlabeled", "issue": {"number": 1}, "label": "run:dev", "repository": {"full_name": REPO}}
    answer = _post(receiver, "issues", json.dumps(body).encode(), "d-label-shape")
    assert answer.status_code == 422 and "label: expected a JSON object" in answer.json()["error"]


@pytest.mark.parametrize(
    ("event", "body"),
    [
        ("installation", {"action": "created", "installation": {"id": 1},
                          "repositories": [{"full_name": f"acme/repo-{i}"} for i in range(200)]}),
        ("installation_repositories", {"action": "added", "installation": {"id": 1},
                                       "repositories_added": [{"full_name": REPO}]}),
        ("installation_target", {"action": "renamed", "installation": {"id": 1}, "target_type": "Organization"}),
        ("github_app_authorization", {"action": "revoked", "sender": {"login": "alice"}}),
    ],
)  # fmt: skip
def test_a_github_apps_own_events_are_ignored_without_their_body(
    intake: Intake, receiver: Receiver, event: str, body: dict
) -> None:
    answer = _post(receiver, event, json.dumps(body).encode(), f"d-{event}")
    assert (answer.status_code, answer.json()) == (202, {"delivery": f"d-{event}", "stored": "ignored"})
    assert _rejections(intake) == []  # no permanent audit row for a delivery GitHub sends every App
    kept = delivery_status(intake.store, f"d-{event}")
    assert kept is not None and kept["status"] == "ignored" and kept["payload"] is None
    assert kept["intake"] is None and kept["repository"] is None
    assert f"{event}.{body['action']} is not taken" in kept["reason"]
    again = _post(receiver, event, json.dumps(body).encode(), f"d-{event}")  # a redelivery, as for any other
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_a_form_encoded_body_is_told_to_use_json_once_it_is_signed(intake: Intake, receiver: Receiver) -> None:
    payload = {"action": "labeled", "issue": {"number": 1}, "label": {"name": "run:dev"},
               "repository": {"full_name": REPO}}  # fmt: skip
    form = ("payload=" + urllib.parse.quote(json.dumps(payload))).encode()
    ctype = "application/x-www-form-urlencoded"
    unsigned = _post(receiver, "issues", form, "d-form-unsigned", signed=False, ctype=ctype)
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "no X-Hub-Signature-256"})  # nothing more
    answer = _post(receiver, "issues", form, "d-form", ctype=ctype)
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert "set the webhook's content type to application/json" in error and "Expecting value" not in error
    (audit,) = _rejections(intake)  # a misconfigured webhook the operator must see, as any signed refusal
    assert audit["delivery"] == "d-form" and "application/json" in audit["reason"]
    assert delivery_status(intake.store, "d-form-unsigned") is None
    # the same JSON sent as JSON is taken
    taken = _post(receiver, "issues", json.dumps(payload).encode(), "d-json")
    assert taken.status_code == 202
