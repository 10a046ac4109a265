"""The correlation key: one GitHub event, one run."""

from __future__ import annotations

import pytest

from codexk8s_pipelines.domain.correlation import CorrelationKey, correlation_key, parse_correlation_key


def test_format() -> None:
    assert correlation_key("codex-k8s/kodex", 42, "run:dev", 123456789) == "codex-k8s/kodex#42:run:dev:123456789"


def test_normalised_lower_case_and_trimmed() -> None:
    assert correlation_key("  Codex-K8s/Kodex ", 42, " RUN:Dev:Revise ", "987") == (
        "codex-k8s/kodex#42:run:dev:revise:987"
    )


def test_number_given_as_string() -> None:
    assert correlation_key("o/r", "7", "run:qa", 1) == "o/r#7:run:qa:1"  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("repository", "number", "label", "event_id"),
    [
        ("o/r", 1, "run:dev", "1"),
        ("my-org/my.service_x", 120, "run:dev:revise", "72d6b2a0-1e1c-11f0-8e4f-1b2c3d4e5f60"),
        ("o/r", 3, "need:reviewer", "555"),
        ("o/r", 9, "run:self-improve:revise", "pr-label-reviewer-abc"),
        ("o/r", 10, "[ai-model-gpt-5.4]", "1"),
    ],
)
def test_parse_round_trip(repository: str, number: int, label: str, event_id: str) -> None:
    key = correlation_key(repository, number, label, event_id)
    parsed = parse_correlation_key(key)
    assert parsed == CorrelationKey(repository, number, label, event_id)
    assert str(parsed) == key


def test_round_trip_of_normalised_key() -> None:
    key = correlation_key("Owner/Repo", 5, "RUN:PLAN", 77)
    assert parse_correlation_key(key) == CorrelationKey("owner/repo", 5, "run:plan", "77")


@pytest.mark.parametrize(
    "key",
    [
        "",
        "owner/repo",
        "ownerrepo#1:run:dev:1",
        "owner/repo#x:run:dev:1",
        "owner/repo#1:1",
        "owner/repo#1:run:dev:",
        "owner/repo#:run:dev:1",
        "owner repo/x#1:run:dev:1",
        "owner/repo 1:run:dev:1",
    ],
)
def test_invalid_keys_raise_with_the_string(key: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_correlation_key(key)
    assert repr(key) in str(exc.value)
    assert "<owner>/<repo>#<number>:<label>:<event id>" in str(exc.value)
