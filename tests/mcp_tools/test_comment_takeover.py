"""One run's agent cannot take over another run's service comment (attack review 26a, finding 3): the agent's text
carries no HTML comment into the thread, the platform finds a run's comment by its recorded id, and by marker only
at the start of a comment."""

from __future__ import annotations

from codexk8s_pipelines.domain.correlation import correlation_key
from codexk8s_pipelines.github.service_comment import COMMENT_EVENT, MARKER, RunView, comment_id, find_comment, render
from codexk8s_pipelines.mcp.tools import STATUS_MARKER
from codexk8s_pipelines.store.database import RunRecord

from .conftest import REPO, Platform, data_of


def _second_run(platform: Platform) -> tuple[str, int]:
    """A later qa run of the same issue whose comment the platform posted and recorded (as publish.show does)."""
    key = correlation_key(REPO, platform.issue, "run:qa", 950)
    platform.store.register_run(RunRecord(key, REPO, role="qa", stage="qa", issue_number=platform.issue))
    view = RunView(correlation_key=key, phase="started", stage="qa", revise=False, role="qa")
    posted = platform.state.add_comment(REPO, platform.issue, render(view), user="codexk8s[bot]")
    platform.store.append_event(key, COMMENT_EVENT, "system", "dagster", {"comment_id": posted, "phase": "started"})
    return key, posted


def test_a_marker_in_a_status_line_does_not_redirect_another_runs_status(platform: Platform) -> None:
    mine = data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "A working"}))
    my_comment = mine["comment"]["comment_id"]
    other_key, other_comment = _second_run(platform)
    hostile = f"ok {MARKER.format(key=other_key)} {STATUS_MARKER}"
    data_of(platform.call("run_status_report", {"token": platform.token, "status_line": hostile}))
    bodies = {c["id"]: c["body"] for c in platform.state.comments(REPO, platform.issue)}
    assert MARKER.format(key=other_key) not in bodies[my_comment]
    assert bodies[my_comment].count("<!--") == 2  # the platform's own: the run's marker and the status line's
    assert "‹!-- codexk8s:run" in bodies[my_comment]  # still readable, as text

    other = data_of(platform.call("run_status_report", {"token": platform.token_for(run_key=other_key),
                                                          "status_line": "B status"}))  # fmt: skip
    assert other["comment"]["comment_id"] == other_comment
    assert comment_id(platform.store, other_key) == other_comment
    bodies = {c["id"]: c["body"] for c in platform.state.comments(REPO, platform.issue)}
    assert "`B status`" in bodies[other_comment] and "B status" not in bodies[my_comment]


def test_the_recorded_comment_is_edited_even_when_another_comment_carries_the_marker_first(platform: Platform) -> None:
    key = platform.key
    decoy = platform.state.add_comment(REPO, platform.issue, MARKER.format(key=key) + "\nsomeone's copy", user="eve")
    view = RunView(correlation_key=key, phase="started", stage="dev", revise=False, role="dev")
    own = platform.state.add_comment(REPO, platform.issue, render(view), user="codexk8s[bot]")
    platform.store.append_event(key, COMMENT_EVENT, "system", "dagster", {"comment_id": own, "phase": "started"})
    data = data_of(platform.call("run_status_report", {"token": platform.token, "status_line": "on it"}))
    assert data["comment"]["comment_id"] == own
    bodies = {c["id"]: c["body"] for c in platform.state.comments(REPO, platform.issue)}
    assert bodies[decoy] == MARKER.format(key=key) + "\nsomeone's copy"


def test_find_comment_matches_the_marker_only_at_the_start(platform: Platform) -> None:
    api = platform.services.repo_api(REPO)
    marker = MARKER.format(key=platform.key)
    platform.state.add_comment(REPO, platform.issue, f"quoting the bot:\n> {marker}", user="eve")
    assert find_comment(api, platform.issue, platform.key) is None
    own = platform.state.add_comment(REPO, platform.issue, f"{marker}\n### run", user="codexk8s[bot]")
    found = find_comment(api, platform.issue, platform.key)
    assert found is not None and found["id"] == own
    # A recorded id wins over the marker; a recorded comment that is gone falls back to the marker.
    other = platform.state.add_comment(REPO, platform.issue, "edited by hand", user="codexk8s[bot]")
    assert find_comment(api, platform.issue, platform.key, other)["id"] == other  # type: ignore[index]
    assert find_comment(api, platform.issue, platform.key, 999_999)["id"] == own  # type: ignore[index]


def test_agent_text_in_a_rendered_comment_carries_no_html_comment() -> None:
    other = MARKER.format(key="acme/shop#1:run:qa:950")
    view = RunView(
        correlation_key="acme/shop#1:run:dev:901",
        phase="finished",
        stage="dev",
        revise=False,
        role="dev",
        summary=f"done {other}",
        diagnosis=f"{STATUS_MARKER} fine",
        changed_files=(f"a{other}.py",),
    )
    body = render(view)
    assert body.startswith(MARKER.format(key="acme/shop#1:run:dev:901") + "\n")
    assert body.count("<!--") == 1 and other not in body and STATUS_MARKER not in body
