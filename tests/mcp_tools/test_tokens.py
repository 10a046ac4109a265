"""Run-scoped tokens: the format, the three refusals (malformed, bad signature, expired), the secret's setting,
and the `codexk8s mcp token` command that mints one."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from codexk8s_pipelines import cli
from codexk8s_pipelines.domain.redaction import redact, redact_text
from codexk8s_pipelines.mcp.tokens import (
    MCP_SECRET_VAR,
    RunScope,
    TokenError,
    issue_token,
    load_secret,
    verify_token,
)
from codexk8s_pipelines.store import PlatformStore
from codexk8s_pipelines.store.database import RunRecord

SECRET = "unit-test-secret-0123456789"
KEY = "acme/shop#12:run:dev:901"


def _token(**kw: object) -> str:
    args: dict[str, object] = {"issue_number": 12, "expires_at": 2_000, "secret": SECRET}
    args.update(kw)
    return issue_token(KEY, "acme/shop", **args)  # type: ignore[arg-type]


def test_round_trip_and_format() -> None:
    token = _token(pr_number=34)
    head, payload, signature = token.split(".")
    assert head == "ck8s1"
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims == {"v": 1, "run": KEY, "repo": "acme/shop", "issue": 12, "pr": 34, "exp": 2_000}
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 32
    assert verify_token(token, 1_999, secret=SECRET) == RunScope(KEY, "acme/shop", 12, 34, 2_000)
    assert SECRET not in token


def test_expired_names_the_check_and_keeps_the_scope() -> None:
    with pytest.raises(TokenError, match="token expired at") as caught:
        verify_token(_token(), 2_000, secret=SECRET)
    assert caught.value.reason == "expired"
    assert caught.value.scope is not None and caught.value.scope.run_key == KEY


def test_bad_signature() -> None:
    with pytest.raises(TokenError, match="bad signature") as caught:
        verify_token(_token(), 1_000, secret="some-other-secret-entirely")
    assert caught.value.reason == "bad_signature" and caught.value.scope is None
    head, _payload, signature = _token().split(".")
    widened = base64.urlsafe_b64encode(
        json.dumps({"v": 1, "run": KEY, "repo": "acme/other", "issue": 12, "pr": None, "exp": 9_999}).encode()
    )
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(f"{head}.{widened.decode().rstrip('=')}.{signature}", 1_000, secret=SECRET)


@pytest.mark.parametrize("token", ["", "abc", "ck8s1.a.b.c", "jwt.a.b", "ck8s1.e30.!!", "x" * 5000])
def test_malformed(token: str) -> None:
    with pytest.raises(TokenError, match="token malformed") as caught:
        verify_token(token, 1_000, secret=SECRET)
    assert caught.value.reason == "malformed"


def test_secret_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MCP_SECRET_VAR, raising=False)
    with pytest.raises(TokenError, match=MCP_SECRET_VAR):
        load_secret()
    monkeypatch.setenv(MCP_SECRET_VAR, "short")
    with pytest.raises(TokenError, match="too short") as caught:
        verify_token(_token(), 1_000)
    assert "short'" not in str(caught.value) and caught.value.reason == "not_configured"
    monkeypatch.setenv(MCP_SECRET_VAR, SECRET)
    assert verify_token(_token(secret=None), 1_000).repository == "acme/shop"


def test_issue_refuses_an_inconsistent_scope() -> None:
    with pytest.raises(ValueError, match="issue_number or a pr_number"):
        issue_token(KEY, "acme/shop", secret=SECRET)
    with pytest.raises(ValueError, match="belongs to acme/shop"):
        issue_token(KEY, "acme/other", issue_number=12, secret=SECRET)
    with pytest.raises(ValueError, match="positive"):
        issue_token(KEY, "acme/shop", issue_number=0, secret=SECRET)


def test_cli_token_reads_the_run_scope_from_the_database(
    store: PlatformStore, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store.register_run(RunRecord(KEY, "acme/shop", role="dev", stage="dev", issue_number=12, pr_number=34))
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", store.url)
    monkeypatch.setenv(MCP_SECRET_VAR, SECRET)
    assert cli.main(["mcp", "token", "--run", KEY, "--ttl", "60"]) == 0
    scope = verify_token(capsys.readouterr().out.strip())
    assert (scope.repository, scope.issue_number, scope.pr_number) == ("acme/shop", 12, 34)
    assert scope.role == "dev" and scope.tools is not None and "github_labels_transition" not in scope.tools
    assert cli.main(["mcp", "token", "--run", KEY, "--role", "em"]) == 0
    em = verify_token(capsys.readouterr().out.strip())
    assert em.role == "em" and em.tools is not None and "github_labels_transition" in em.tools

    assert cli.main(["mcp", "token", "--run", "acme/shop#5:run:qa:1"]) == 2
    assert "unknown" in capsys.readouterr().err
    assert cli.main(["mcp", "token", "--run", "acme/shop#5:run:qa:1", "--repository", "acme/shop", "--issue", "5"]) == 0
    assert verify_token(capsys.readouterr().out.strip()).tools is None  # no role known: the server lets it read only


def test_cli_token_with_a_broken_agent_catalog_says_which_file_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "agents.yaml"
    broken.write_text("agents: [not, a, mapping\n")
    monkeypatch.setenv("CODEXK8S_AGENT_CATALOG", str(broken))
    monkeypatch.setenv(MCP_SECRET_VAR, SECRET)
    monkeypatch.delenv("CODEXK8S_DATABASE_URL", raising=False)
    args = ["mcp", "token", "--run", KEY, "--repository", "acme/shop", "--issue", "12", "--role", "dev"]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("codexk8s mcp token: the agent catalog: ") and str(broken) in err and "Traceback" not in err


def test_cli_serve_without_settings_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CODEXK8S_DATABASE_URL", raising=False)
    assert cli.main(["mcp", "serve"]) == 2
    assert "CODEXK8S_DATABASE_URL" in capsys.readouterr().err
    monkeypatch.setenv("CODEXK8S_DATABASE_URL", "postgresql://127.0.0.1:1/x")
    monkeypatch.delenv(MCP_SECRET_VAR, raising=False)
    assert cli.main(["mcp", "serve", "--transport", "http"]) == 2
    assert MCP_SECRET_VAR in capsys.readouterr().err


def test_a_run_token_is_redacted_wherever_the_platform_writes_text() -> None:
    """The shared redaction (audit, comments, logs, tool results) knows the platform's own tokens."""
    token = _token()
    assert redact_text(f"agent said: use {token} please") == "agent said: use [redacted] please"
    assert redact({"note": [f"x {token}"]}) == {"note": ["x [redacted]"]}


def test_role_and_tools_are_signed_claims() -> None:
    token = _token(role="em", tools=["runs_list", "github_labels_transition", "runs_list"])
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert (claims["role"], claims["tools"]) == ("em", ["github_labels_transition", "runs_list"])
    scope = verify_token(token, 1_000, secret=SECRET)
    assert scope.role == "em" and scope.tools == frozenset({"runs_list", "github_labels_transition"})
    head, _payload, signature = token.split(".")
    widened = dict(claims, tools=[*claims["tools"], "docs_search"])
    forged = base64.urlsafe_b64encode(json.dumps(widened).encode()).decode().rstrip("=")
    with pytest.raises(TokenError, match="bad signature"):
        verify_token(f"{head}.{forged}.{signature}", 1_000, secret=SECRET)
    with pytest.raises(ValueError, match="tools"):
        _token(role="em", tools="runs_list")


def test_the_repository_of_a_token_is_lower_case_as_the_platform_keys_it() -> None:
    """The docs index and correlation keys hold repositories lower-case; a scope of `Acme/Shop` matched none of them
    (review 41). A token minted so, now or before, is scoped to `acme/shop`."""
    claims = json.loads(base64.urlsafe_b64decode(_token().split(".")[1] + "=="))
    minted = issue_token(KEY, "Acme/Shop", issue_number=12, expires_at=2_000, secret=SECRET)
    assert json.loads(base64.urlsafe_b64decode(minted.split(".")[1] + "=="))["repo"] == "acme/shop"
    assert verify_token(minted, 1_000, secret=SECRET).repository == "acme/shop"
    # One minted before, its claim in the case it was given: signed as such, read lower-case.
    payload = base64.urlsafe_b64encode(json.dumps({**claims, "repo": "Acme/Shop"}).encode()).rstrip(b"=").decode()
    signature = hmac.new(SECRET.encode(), f"ck8s1.{payload}".encode(), hashlib.sha256).digest()
    before = f"ck8s1.{payload}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"
    assert verify_token(before, 1_000, secret=SECRET).repository == "acme/shop"
