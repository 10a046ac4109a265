"""The platform's own account starts no run: its agents label through it.

The attack this pins: an `em` agent, whose token covers a PR, calls the MCP label tool to add `need:reviewer`,
remove it, add it again. Each add was a new `labeled` event by the platform's account: with a person's token as the
platform's credential the intake saw that person (an admin) and started one reviewer run per toggle; with an App or
a bot it started none, but posted one "No run started" comment per toggle. Now the tool refuses the label, and the
intake refuses such a label from the platform's own bot account however it got there, audited per event and
explained by one comment per item; a person's token's labels stay that person's. Real MCP tool, real sensor ticks,
the embedded PostgreSQL and the fake GitHub."""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import github
import pytest
from mcp import Client
from mcp_types import CallToolResult, TextContent

from codexk8s_pipelines.agents.catalog import load_catalog
from codexk8s_pipelines.autonomous.platform_issues import open_labelled_issue
from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.github.api import RepoApi
from codexk8s_pipelines.mcp.server import build_server
from codexk8s_pipelines.mcp.tokens import issue_token
from codexk8s_pipelines.mcp.tools import McpServices
from codexk8s_pipelines.store.database import RunRecord
from sensors.github import github_issue_labels_sensor as issue_sensor
from sensors.github import github_pull_requests_sensor as pr_sensor
from tests.github_server import DEFAULT_TOKEN_LOGIN, pygithub_client

from .conftest import REPO, Intake

SECRET = "mcp-test-secret-5f1c0b8e2d7a4c39"
# A person's token as the platform's credential (the README's `CODEXK8S_GITHUB_TOKEN`, "a token with repo scope").
PERSONAL_TOKEN = "ghp_" + "M4a1n7T0k3n" * 3
IDENTITIES = {"person-token": ("maint", "User"), "bot": (DEFAULT_TOKEN_LOGIN, "Bot")}


@dataclass
class World:
    """The intake, the platform's account (`login`, `kind`), an issue in its plan stage and its PR."""

    intake: Intake
    login: str
    kind: str
    issue: int
    pr: int

    def toggle(self, number: int, label: str, times: int) -> list[int]:
        """The platform's account adds and removes `label` `times` times; the ids of the `labeled` events."""
        added = []
        for _ in range(times):
            added.append(self.intake.state.label(REPO, number, label, actor=self.login, actor_type=self.kind))
            self.intake.state.unlabel(REPO, number, label, actor=self.login, actor_type=self.kind)
        return added

    def audits(self, number: int, label: str, event_id: int) -> list[dict]:
        return self.intake.store.events(correlation_key(REPO, number, label, event_id))


def _world(intake: Intake, monkeypatch: pytest.MonkeyPatch, identity: str) -> World:
    login, kind = IDENTITIES[identity]
    if kind == "User":
        intake.state.add_token(PERSONAL_TOKEN, login, type="User")
        intake.state.set_permission(REPO, login, "admin")
        monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", PERSONAL_TOKEN)
    monkeypatch.setenv("CODEXK8S_MCP_SECRET", SECRET)
    issue = intake.state.add_issue(REPO, "Plan the cart", labels=["run:plan"])
    pr = intake.state.add_pull(REPO, "plan", head=f"codex/issue-{issue}", linked_issue=issue)
    for sensor in (issue_sensor, pr_sensor):
        assert intake.tick(sensor).run_requests == []  # the sensors' first look
    return World(intake, login, kind, issue, pr)


@pytest.fixture(params=list(IDENTITIES), ids=list(IDENTITIES))
def world(request: pytest.FixtureRequest, intake: Intake, monkeypatch: pytest.MonkeyPatch) -> World:
    return _world(intake, monkeypatch, request.param)


@pytest.fixture
def bot_world(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> World:
    """The platform writing as a bot (an App): its own labels are marked (a person's token: `world`, below)."""
    return _world(intake, monkeypatch, "bot")


def _text(result: CallToolResult) -> str:
    return " ".join(c.text for c in result.content if isinstance(c, TextContent))


def _em_agent_toggles(world: World, label: str, times: int) -> list[CallToolResult]:
    """An em (plan) run's agent, through the real MCP server, adds and removes `label` on the run's PR."""
    key = correlation_key(REPO, world.issue, "run:plan", 902)
    world.intake.store.register_run(
        RunRecord(key, REPO, role="em", stage="plan", issue_number=world.issue, pr_number=world.pr)
    )
    tools = load_catalog().for_role("em").mcp_tools
    token = issue_token(key, REPO, issue_number=world.issue, pr_number=world.pr, secret=SECRET, role="em", tools=tools)
    services = McpServices.from_environment()

    async def main() -> list[CallToolResult]:
        with anyio.fail_after(60):
            async with Client(build_server(services), read_timeout_seconds=30) as client:
                out = []
                for _ in range(times):
                    for change in ("add", "remove"):
                        args = {"token": token, change: [label], "number": world.pr}
                        out.append(await client.call_tool("github_labels_transition", args))
                return out

    return anyio.run(main)


def test_the_em_agents_need_reviewer_toggles_start_no_run_and_post_no_comment(world: World) -> None:
    results = _em_agent_toggles(world, "need:reviewer", 3)
    for result, change in zip(results, ["add", "remove"] * 3, strict=True):
        assert result.is_error and f"argument '{change}'" in _text(result), _text(result)
        assert "'need:reviewer' starts a reviewer run" in _text(result)
    assert world.intake.state.labels(REPO, world.pr) == []
    assert [e for e in world.intake.state.events(REPO, world.pr) if e["event"] in ("labeled", "unlabeled")] == []
    assert world.intake.tick(pr_sensor).run_requests == []
    assert world.intake.state.comments(REPO, world.pr) == []
    key = correlation_key(REPO, world.issue, "run:plan", 902)
    failures = [e["payload"] for e in world.intake.store.events(key) if e["event_type"] == "mcp.tool.failed"]
    assert len(failures) == 6 and all("need:reviewer" in f["reason"] for f in failures)


def test_the_platforms_own_toggles_start_nothing_are_audited_and_explained_once(bot_world: World) -> None:
    """Defence in depth: the label reaches the PR as the platform's bot account some other way (the tool bypassed)."""
    world = bot_world
    added = world.toggle(world.pr, "need:reviewer", 3)
    data = world.intake.tick(pr_sensor)
    assert data.run_requests == []
    for event_id in added:
        (audit,) = world.audits(world.pr, "need:reviewer", event_id)
        assert audit["event_type"] == "trigger.ignored" and audit["payload"]["reason"] == "platform_account"
        assert audit["payload"]["actor"] == world.login
    more = world.toggle(world.pr, "need:reviewer", 2)
    world.toggle(world.pr, "run:dev", 1)  # a trigger label on a PR: refused with a comment per event to others
    assert world.intake.tick(pr_sensor).run_requests == []
    assert all(world.audits(world.pr, "need:reviewer", e)[0]["payload"]["reason"] == "platform_account" for e in more)
    (comment,) = world.intake.state.comments(REPO, world.pr)  # one for the item, not one per toggle
    assert "platform_account" in comment["body"] and f"{world.login} is the account the platform" in comment["body"]

    # A person's need:reviewer still starts the reviewer run.
    event_id = world.intake.state.label(REPO, world.pr, "need:reviewer", actor="alice")
    (request,) = world.intake.tick(pr_sensor).run_requests
    assert (request.job_name, request.run_key) == ("stage_reviewer", f"{REPO}#{world.pr}:need:reviewer:{event_id}")


def test_the_platforms_own_trigger_and_approval_on_an_issue_start_nothing(bot_world: World) -> None:
    world = bot_world
    intake = world.intake
    intake.state.unlabel(REPO, world.issue, "run:plan")
    added = world.toggle(world.issue, "run:dev", 2)
    assert intake.tick(issue_sensor).run_requests == []
    for event_id in added:
        assert world.audits(world.issue, "run:dev", event_id)[0]["payload"]["reason"] == "platform_account"
    intake.state.label(REPO, world.issue, "run:dev", actor="alice")  # a dev run, so that release may follow
    (dev,) = intake.tick(issue_sensor).run_requests
    assert dev.job_name == "stage_dev"
    intake.store.set_run_status(dev.run_key, "succeeded")
    intake.state.unlabel(REPO, world.issue, "run:dev", actor="alice")
    release = intake.state.label(REPO, world.issue, "run:release", actor="alice")  # write: needs an approval
    assert intake.tick(issue_sensor).run_requests == []
    key = correlation_key(REPO, world.issue, "run:release", release)
    approved = intake.state.label(REPO, world.issue, "state:approved", actor=world.login, actor_type=world.kind)
    assert intake.tick(issue_sensor).run_requests == []
    assert intake.store.get_approval(key)["status"] == "requested"  # type: ignore[index]
    assert world.audits(world.issue, "state:approved", approved)[0]["payload"]["reason"] == "platform_account"
    bodies = [c["body"] for c in intake.state.comments(REPO, world.issue)]
    assert sum("platform_account" in b for b in bodies) == 1  # for three refused labels
    intake.state.unlabel(REPO, world.issue, "state:approved", actor=world.login, actor_type=world.kind)
    intake.state.label(REPO, world.issue, "state:approved", actor="bob")  # maintain: an approver
    (request,) = intake.tick(issue_sensor).run_requests
    assert request.run_key == key


def test_the_platforms_label_on_an_issue_it_opened_for_it_still_starts_the_run(world: World) -> None:
    """The one legitimate case: the self-improve evidence issue (or a critical finding's fix issue) the platform
    opens and labels itself, with a person's token as well as with a bot's."""
    token = PERSONAL_TOKEN if world.kind == "User" else world.intake.server.token
    api = RepoApi(pygithub_client(world.intake.server, auth=github.Auth.Token(token)), REPO)
    number = open_labelled_issue(api, world.intake.store, REPO, "self-improve", "evidence", "body", "run:self-improve")
    (event,) = [e for e in world.intake.state.events(REPO, number) if e["event"] == "labeled"]
    assert event["actor"]["login"] == world.login
    (request,) = world.intake.tick(issue_sensor).run_requests
    assert request.job_name == "stage_self_improve"


def test_a_persons_token_labels_stay_theirs(intake: Intake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The local set-up (DESIGN.md): the platform writes with a person's token. GitHub cannot tell that person's
    labels from the platform's, and the person must be able to use the platform: their trigger label starts the run,
    as any maintainer's; the agents' way to the labels is the label tool, which refuses it."""
    login, _ = IDENTITIES["person-token"]
    intake.state.add_token(PERSONAL_TOKEN, login, type="User")
    intake.state.set_permission(REPO, login, "admin")
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", PERSONAL_TOKEN)
    assert intake.tick(issue_sensor).run_requests == []
    issue = intake.state.add_issue(REPO, "Plan the cart")
    event_id = intake.state.label(REPO, issue, "run:plan", actor=login)
    (request,) = intake.tick(issue_sensor).run_requests
    assert (request.job_name, request.run_key) == ("stage_plan", f"{REPO}#{issue}:run:plan:{event_id}")
