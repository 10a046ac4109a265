"""Secrets never reach audit payloads, comments or logs."""

from __future__ import annotations

import base64
import copy
import time

import pytest

from codexk8s_pipelines.domain.redaction import REDACTED, encoded_forms, redact, redact_known, redact_text

GHP = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
GHS = "ghs_" + "Z" * 36
PAT = "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"
PEM_BEGIN = "-----BEGIN " + "RSA PRIVATE KEY-----"
PEM_END = "-----END " + "RSA PRIVATE KEY-----"
PEM = PEM_BEGIN + "\nMIIEowIBAAKCAQEAx1y2z3\nabcdefghijklmnop\n" + PEM_END
OPENSSH_PEM = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END " + "OPENSSH PRIVATE KEY-----"


def test_redacted_marker() -> None:
    assert REDACTED == "[redacted]"


@pytest.mark.parametrize(
    "key",
    [
        "token",
        "github_token",
        "GITHUB_TOKEN",
        "access_token",
        "password",
        "db_Password",
        "passwd",
        "client_secret",
        "private_key",
        "private-key",
        "privateKey",
        "Authorization",
        "api_key",
        "api-key",
        "apikey",
    ],
)
def test_secret_keys_are_redacted(key: str) -> None:
    assert redact({key: "hunter2", "user": "alice"}) == {key: REDACTED, "user": "alice"}


def test_secret_key_hides_structured_values_too() -> None:
    assert redact({"secret": {"a": 1, "b": [1, 2]}}) == {"secret": REDACTED}


@pytest.mark.parametrize("token", [GHP, GHS, "gho_" + "x" * 30, "ghu_" + "9" * 40, "ghr_" + "Ab" * 15, PAT])
def test_github_tokens_in_text(token: str) -> None:
    text = f"cloning with {token} now"
    assert redact_text(text) == f"cloning with {REDACTED} now"
    assert redact({"note": text}) == {"note": f"cloning with {REDACTED} now"}


@pytest.mark.parametrize("pem", [PEM, OPENSSH_PEM])
def test_pem_private_keys(pem: str) -> None:
    out = redact_text(f"key:\n{pem}\nend")
    assert out == f"key:\n{REDACTED}\nend"
    assert "PRIVATE KEY" not in out
    assert "MII" not in out


def test_two_pem_keys_are_redacted_separately() -> None:
    out = redact_text(f"{PEM} keep me {PEM}")
    assert out == f"{REDACTED} keep me {REDACTED}"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:s3cr3t@github.com/o/r.git", f"https://{REDACTED}@github.com/o/r.git"),
        ("postgresql://app:pa55w0rd@db:5432/platform", f"postgresql://{REDACTED}@db:5432/platform"),
        ("https://x-access-token:abc123@github.com", f"https://{REDACTED}@github.com"),
        # libpq's keyword form, which the MCP server's URL takes once its statement timeout is added (review 39)
        (
            "host=db user=app password=pa55w0rd dbname=platform options='-c statement_timeout=10000'",
            f"host=db user=app password={REDACTED} dbname=platform options='-c statement_timeout=10000'",
        ),
        ("host=db password='pa 55\\'w0rd' dbname=platform", f"host=db password={REDACTED} dbname=platform"),
    ],
)
def test_url_passwords(url: str, expected: str) -> None:
    assert redact_text(url) == expected
    assert redact({"remote": url}) == {"remote": expected}


@pytest.mark.parametrize(
    "url",
    ["https://github.com/o/r.git", "https://user@github.com/o/r", "postgresql://db:5432/platform", "mailto:a@b.c"],
)
def test_urls_without_password_unchanged(url: str) -> None:
    assert redact_text(url) == url


def test_nested_dicts_and_lists() -> None:
    payload = {
        "repo": "o/r",
        "number": 7,
        "labels": ["run:dev", f"token is {GHP}"],
        "nested": {
            "env": [{"name": "GITHUB_TOKEN", "token": "abc"}, {"remote": "https://u:p@h/x"}],
            "ok": True,
            "Authorization": "Bearer xyz",
        },
        "tuple": ("plain", GHS),
    }
    original = copy.deepcopy(payload)
    assert redact(payload) == {
        "repo": "o/r",
        "number": 7,
        "labels": ["run:dev", f"token is {REDACTED}"],
        "nested": {
            "env": [{"name": "GITHUB_TOKEN", "token": REDACTED}, {"remote": f"https://{REDACTED}@h/x"}],
            "ok": True,
            "Authorization": REDACTED,
        },
        "tuple": ["plain", REDACTED],
    }
    assert payload == original  # a copy; the input is not modified


@pytest.mark.parametrize(
    "value",
    [
        None,
        0,
        3.5,
        True,
        "",
        "run:dev added by alice",
        "ghp_short",
        "see docs/ghp_policy.md",
        "-----BEGIN CERTIFICATE-----",
        {"user": "alice", "count": 3},
        ["a", "b"],
    ],
)
def test_non_secret_values_unchanged(value: object) -> None:
    assert redact(value) == value


def test_non_string_keys() -> None:
    assert redact({1: "one", 2: GHP}) == {1: "one", 2: REDACTED}


def test_unterminated_private_key_is_masked_to_the_end() -> None:
    """No END marker: everything from BEGIN on is masked (fail closed), the text before it is kept."""
    out = redact_text(f"before {PEM_BEGIN}\nMIIEowIBAAKCAQEAx1y2z3\nno end here")
    assert out == f"before {REDACTED}"


def test_private_key_masking_is_linear_on_adversarial_input() -> None:
    """Many BEGIN markers and no END made the lazy `[\\s\\S]*?` scan to the end from each one: 200 kB took minutes.
    The whole text is one unterminated key, so all of it is masked, in well under a second."""
    evil = "-----BEGIN " + "PRIVATE KEY-----"
    text = evil * (200_000 // len(evil))
    started = time.perf_counter()
    out = redact_text(text)
    assert time.perf_counter() - started < 0.5
    assert out == REDACTED
    # Many complete keys, and BEGIN markers of other kinds, stay linear too.
    many = (PEM + " x ") * 5_000 + "-----BEGIN CERTIFICATE-----" * 5_000
    started = time.perf_counter()
    out = redact_text(many)
    assert time.perf_counter() - started < 0.5
    assert out.count(REDACTED) == 5_000 and "MII" not in out


@pytest.mark.parametrize("secret", [GHP, PAT, PEM, "ck8s1.eyJydW4iOiJ4In0.c2lnbmF0dXJlLW9mLWxlbmd0aA"])
def test_secret_looking_keys_are_masked_too(secret: str) -> None:
    """A secret used as a dict key (an agent's argument name) is masked like one in a value."""
    out = redact({secret: 1, "user": "alice", f"note {GHS}": 2})
    assert out == {REDACTED: 1, "user": "alice", f"note {REDACTED}": 2}
    assert secret not in repr(out)


def test_masked_keys_that_collide_keep_every_value() -> None:
    out = redact({GHP: 1, GHS: 2})
    assert sorted(out.values()) == [1, 2]
    assert GHP not in repr(out) and GHS not in repr(out)


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-" + "Ab3dE" * 9,  # OpenAI project key
        "sk-" + "T3BlbkFJ" * 6,  # OpenAI legacy key
        "sk-ant-api03-" + "Qx7_" * 20 + "AA",  # Anthropic
        "sk-or-v1-" + "0f" * 32,  # OpenRouter
        "AIza" + "SyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"[:35],  # Google
        "AKIAIOSFODNN7EXAMPLE",  # AWS access key id
        "xoxb-" + "1234567890-" * 3 + "abcdef",  # Slack
    ],
)
def test_model_provider_keys_in_text(key: str) -> None:
    """An agent holds its model key: one it prints (a summary, a log line, an MCP argument) is masked by its shape."""
    assert redact_text(f"my key is {key}, use it") == f"my key is {REDACTED}, use it"


@pytest.mark.parametrize(
    "text",
    [
        "task-1234567890abcdefghijklmnop",  # `sk-` inside a word
        "pip install sk-learn-compatible-estimators",  # no digit: a name, not a key
        "see sk-12 for details",  # too short
        "AKIA is a prefix; AKIAshort",
    ],
)
def test_key_lookalikes_are_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_provider_key_shapes_are_linear_on_adversarial_input() -> None:
    """Each text is about 1 MB: a pattern that backtracks takes minutes on it. Measured against plain text of the
    same length in the same moment (a loaded machine slows both), with 0.5 s as the least allowed."""
    for text in ["sk-" * 300_000, "sk-" + "a" * 1_000_000, ("sk-" + "a" * 39 + "-") * 30_000, "AIza" * 250_000]:
        started = time.perf_counter()
        redact_text("x" * len(text))
        plain = time.perf_counter() - started
        started = time.perf_counter()
        redact_text(text)
        assert time.perf_counter() - started < max(0.5, 20 * plain)


@pytest.mark.parametrize("before", [b"", b"k", b"ke", b"model_key=", b"\x00\xff\x10"])
def test_a_known_secret_is_redacted_in_base64_and_hex_wherever_it_starts(before: bytes) -> None:
    """An agent told to publish its key "encoded" wrote base64 of it, which neither the redaction nor the push's
    check (the same list of secrets) knew. Whatever precedes the key shifts its base64 characters; each shift is
    covered."""
    key = "sk-proj-" + "Zx9" * 8
    blob = before + key.encode() + b";rest"
    for encoded in (
        base64.b64encode(blob).decode(),
        base64.urlsafe_b64encode(blob).decode(),
        blob.hex(),
        blob.hex().upper(),
    ):
        text = f"the config, made safe: {encoded} (done)"
        redacted = redact_known(text, [key, *encoded_forms(key)])
        assert REDACTED in redacted and encoded not in redacted, encoded
        assert redacted.startswith("the config, made safe: ") and redacted.endswith(" (done)")


def test_encoded_forms_are_long_enough_not_to_match_ordinary_text() -> None:
    forms = encoded_forms("abcdefghijkl")  # the shortest secret the runner learns (Scrubber.MIN_SECRET_CHARS)
    assert min(map(len, forms)) >= 15
    prose = "The quick brown fox jumps over the lazy dog. " * 20
    assert redact_known(prose, forms) == prose


def test_a_known_secret_broken_over_lines_is_redacted_in_text_of_several_lines() -> None:
    """`base64` wraps at 76 characters and `openssl base64` at 64: no whole line holds the secret's base64."""
    key = "sk-ant-api03-" + "Qw9_xZ-" * 22
    for width in (76, 64):
        encoded = base64.b64encode(b"key: " + key.encode()).decode()
        wrapped = "\n".join(encoded[i : i + width] for i in range(0, len(encoded), width))
        redacted = redact_known(f"the blob:\n{wrapped}\nend", [key, *encoded_forms(key)])
        lines = wrapped.splitlines()
        assert len(lines) > 2 and not any(line in redacted for line in lines[1:-1]), redacted
        assert redacted.startswith("the blob:\n") and redacted.endswith("\nend")
    split = f"key = {key[:50]}\n    {key[50:]}"  # the literal, broken and indented
    assert key[:50] not in redact_known(split, [key])
