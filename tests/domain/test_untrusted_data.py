"""`loads_json` / `loads_toml`: every way a document someone else wrote cannot be read is one `UntrustedDataError`
(a ValueError) naming what was read and why; nesting too deep for the parsers' recursion included."""

from __future__ import annotations

import pickle

import pytest

from codexk8s_pipelines.domain.untrusted_data import (
    NESTED_TOO_DEEPLY,
    UntrustedDataError,
    loads_json,
    loads_toml,
)

DEEP = 200_000


@pytest.mark.parametrize(
    "text",
    ["[" * DEEP, "[" * DEEP + "]" * DEEP, '{"a":' * DEEP, ("[" * DEEP).encode()],
    ids=["open-arrays", "closed-arrays", "objects", "bytes"],
)
def test_json_nested_too_deeply_is_a_value_error_naming_what_and_why(text: str | bytes) -> None:
    with pytest.raises(UntrustedDataError) as caught:
        loads_json(text, "the answer from PyPI")
    error = caught.value
    assert isinstance(error, ValueError) and error.too_deep
    assert (error.what, error.form, error.reason, error.line) == (
        "the answer from PyPI",
        "JSON",
        NESTED_TOO_DEEPLY,
        None,
    )
    assert str(error) == "the answer from PyPI is not JSON the platform can read: nested too deeply"


def test_malformed_json_keeps_the_decoders_words_and_position() -> None:
    with pytest.raises(UntrustedDataError) as caught:
        loads_json('{"a": 1,\n  }', "package-lock.json")
    error = caught.value
    assert not error.too_deep
    assert (error.reason, error.line, error.column) == ("Expecting property name enclosed in double quotes", 2, 3)
    assert error.detail == "Expecting property name enclosed in double quotes: line 2 column 3 (char 11)"
    assert str(error) == (
        "package-lock.json is not JSON the platform can read: Expecting property name enclosed in double quotes "
        "(line 2, column 3)"
    )


def test_bytes_that_are_no_text_and_refused_constants_are_the_same_error() -> None:
    with pytest.raises(UntrustedDataError, match=r"^body is not JSON the platform can read: 'utf-8' codec can't"):
        loads_json(b"\x89PNG\r\n", "body")

    def refuse(name: str) -> object:
        raise ValueError(f"{name} is not JSON")

    with pytest.raises(UntrustedDataError, match=r"^a line is not JSON the platform can read: NaN is not JSON$"):
        loads_json('{"n": NaN}', "a line", parse_constant=refuse)
    assert loads_json('{"n": [1, {"b": null}]}', "a line", parse_constant=refuse) == {"n": [1, {"b": None}]}


@pytest.mark.parametrize(
    "text",
    ["a = " + "[" * DEEP, "a = " + "[" * DEEP + "]" * DEEP, "a = " + "{b = " * DEEP],
    ids=["open-arrays", "closed-arrays", "inline-tables"],
)
def test_toml_nested_too_deeply_is_a_value_error_naming_what_and_why(text: str) -> None:
    with pytest.raises(UntrustedDataError) as caught:
        loads_toml(text, "Cargo.lock")
    assert caught.value.too_deep
    assert str(caught.value) == "Cargo.lock is not TOML the platform can read: nested too deeply"


def test_malformed_toml_keeps_tomllibs_words_and_position() -> None:
    with pytest.raises(UntrustedDataError) as caught:
        loads_toml("[[package]]\nname = \n", "poetry.lock")
    error = caught.value
    assert (error.reason, error.line, error.column) == ("Invalid value", 2, 8)
    assert error.detail == "Invalid value (at line 2, column 8)"
    with pytest.raises(UntrustedDataError) as caught:
        loads_toml("a = [1,", "uv.lock")
    assert (caught.value.line, caught.value.detail) == (None, "Invalid value (at end of document)")
    assert loads_toml('a = [[1], {b = "c"}]', "uv.lock") == {"a": [[1], {"b": "c"}]}


def test_the_error_survives_pickling_whole() -> None:
    """A process pool hands an error back pickled: its parts and its message must arrive as they left."""
    with pytest.raises(UntrustedDataError) as caught:
        loads_json("[1,\n 2,,]", "osv/PYSEC-1.json")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert (copy.what, copy.form, copy.reason, copy.line, copy.column, copy.detail, str(copy)) == (
        "osv/PYSEC-1.json", "JSON", "Expecting value", 2, 4, caught.value.detail, str(caught.value),
    )  # fmt: skip
