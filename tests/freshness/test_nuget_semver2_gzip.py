"""NuGet's SemVer 2.0.0 registration hive, and gzip-encoded registry answers (which that hive always sends).

The `registration5-semver1` hive leaves out every SemVer 2.0.0 version (a dotted prerelease such as
`9.0.0-preview.1.24080.9`, or one with `+metadata`), so a project on one was told its version is not published.
`registration5-gz-semver2` lists them, but only gzip-compressed: the client has to inflate answers, and the
answer-size cap has to hold for the inflated size, or a small gzip bomb would exhaust memory.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from datetime import UTC, datetime
from typing import Any

import pytest

from codexk8s_pipelines.config.periodic import FreshnessConfig
from codexk8s_pipelines.freshness.check import check_freshness
from codexk8s_pipelines.freshness.registries import DEFAULT_REGISTRIES, RegistryError, RegistryUrls, fetch_packages
from codexk8s_pipelines.security.dependencies import NUGET, PUB, Dependency

from .registry_server import FakeRegistry

NOW = datetime(2026, 12, 1, tzinfo=UTC)
HIVE = "/v3/registration5-gz-semver2"
GZIP = {"Content-Encoding": "gzip"}


def urls(registry: FakeRegistry) -> RegistryUrls:
    return RegistryUrls(nuget=registry.base + HIVE, pub=registry.base + "/pub")


def gz(document: Any) -> bytes:
    return gzip.compress(json.dumps(document).encode())


def leaf(version: str, published: str, *, listed: bool = True) -> dict[str, Any]:
    """A registration leaf as nuget.org writes it (trimmed `catalogEntry`)."""
    return {
        "@id": f"https://api.nuget.org/v3/registration5-gz-semver2/system.text.json/{version.lower()}.json",
        "@type": "Package",
        "catalogEntry": {
            "@type": "PackageDetails",
            "id": "System.Text.Json",
            "version": version,
            "published": published,
            "listed": listed,
            "authors": "Microsoft",
        },
        "packageContent": f"https://api.nuget.org/v3-flatcontainer/system.text.json/{version.lower()}/x.nupkg",
    }


def publish_system_text_json(registry: FakeRegistry) -> None:
    """An index with one inlined page and one that is not, both gzip-encoded like nuget.org's semver2 hive."""
    page2 = f"{registry.base}{HIVE}/system.text.json/page/9.0.0-preview.1.24080.9/9.0.0.json"
    registry.serve(
        f"{HIVE}/system.text.json/index.json",
        gz(
            {
                "count": 2,
                "items": [
                    {
                        "@id": f"{registry.base}{HIVE}/system.text.json/index.json#page/8.0.0/8.0.4",
                        "lower": "8.0.0",
                        "upper": "8.0.4",
                        "items": [
                            leaf("8.0.0", "2023-11-14T00:00:00+00:00"),
                            leaf("8.0.4", "2024-07-09T00:00:00+00:00"),
                        ],
                    },
                    {"@id": page2, "lower": "9.0.0-preview.1.24080.9", "upper": "9.0.0"},
                ],
            }
        ),
        headers=GZIP,
    )
    registry.serve(
        page2.removeprefix(registry.base),
        gz(
            {
                "items": [
                    leaf("9.0.0-preview.1.24080.9", "2024-02-13T00:00:00+00:00"),
                    leaf("9.0.0+sha.9d5a6a9aa4", "2024-11-12T00:00:00+00:00"),
                ]
            }
        ),
        headers=GZIP,
    )


def test_the_semver2_hive_is_the_default() -> None:
    assert DEFAULT_REGISTRIES.nuget == "https://api.nuget.org/v3/registration5-gz-semver2"
    assert FreshnessConfig().nuget_url == DEFAULT_REGISTRIES.nuget


def test_a_semver2_prerelease_is_found_in_gzip_answers(registry: FakeRegistry) -> None:
    publish_system_text_json(registry)
    dep = Dependency(NUGET, "System.Text.Json", "9.0.0-preview.1.24080.9", "src/packages.lock.json", 5)
    report = check_freshness([dep], registries=urls(registry), now=NOW, timeout=5)
    assert report.errors == ()
    (row,) = report.rows
    assert (row.version, row.latest, row.status) == ("9.0.0-preview.1.24080.9", "9.0.0", "outdated")
    assert row.used_released == datetime(2024, 2, 13, tzinfo=UTC)
    assert row.latest_released == datetime(2024, 11, 12, tzinfo=UTC)
    assert registry.paths(HIVE) == [
        f"{HIVE}/system.text.json/index.json",
        f"{HIVE}/system.text.json/page/9.0.0-preview.1.24080.9/9.0.0.json",
    ]
    assert {r.headers.get("Accept-Encoding") for r in registry.requests} == {"gzip"}


def test_plain_and_multi_member_gzip_answers_read_the_same(registry: FakeRegistry) -> None:
    """Without `Content-Encoding` the body is taken as it is; gzip members in a row are one body (RFC 1952)."""
    document = json.dumps({"versions": [{"version": "1.1.0", "published": "2023-08-08T00:00:00.000Z"}]}).encode()
    registry.serve("/pub/api/packages/plain", document)
    cut = len(document) // 2
    registry.serve(
        "/pub/api/packages/members",
        gzip.compress(document[:cut]) + gzip.compress(document[cut:]),
        headers={"Content-Encoding": "x-gzip"},
    )
    answers = fetch_packages({(PUB, "plain"): set(), (PUB, "members"): set()}, urls=urls(registry), timeout=5)
    assert [getattr(a, "latest", a) for a in answers.values()] == ["1.1.0", "1.1.0"]


def bomb(inflated_mb: int) -> bytes:
    """`inflated_mb` MB of `[` wrapped in gzip: about a thousandth of that on the wire."""
    squeeze = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = b"[" * (1024 * 1024)
    return b"".join(squeeze.compress(block) for _ in range(inflated_mb)) + squeeze.flush()


def test_a_gzip_bomb_is_refused_at_the_cap_without_inflating_it(registry: FakeRegistry) -> None:
    body = bomb(256)
    assert len(body) < 1_000_000  # under the wire cap: only the inflated size can refuse it
    registry.serve(f"{HIVE}/bomb/index.json", body, headers=GZIP)
    tracemalloc.start()
    try:
        answer = fetch_packages({(NUGET, "bomb"): set()}, urls=urls(registry), timeout=10, max_bytes=1_000_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    error = answer[(NUGET, "bomb")]
    assert isinstance(error, RegistryError)
    assert error.reason == "answer from NuGet inflates to more than the 0.953674 MB cap: not read"
    assert peak < 16 * 1024 * 1024  # a 256 MB bomb held a few MB at most, not 256


def test_the_wire_cap_still_holds_for_gzip_answers(registry: FakeRegistry) -> None:
    registry.serve(f"{HIVE}/big/index.json", bomb(64), headers=GZIP)
    answer = fetch_packages({(NUGET, "big"): set()}, urls=urls(registry), timeout=10, max_bytes=10_000)
    assert (
        getattr(answer[(NUGET, "big")], "reason", None) == "answer from NuGet is over the 0.00953674 MB cap: not read"
    )


@pytest.mark.parametrize(
    ("body", "headers", "reason"),
    [
        (gz({"items": []})[:-12], GZIP, "gzip answer from NuGet is cut short"),
        (
            b"not gzip at all",
            GZIP,
            "corrupt gzip answer from NuGet: Error -3 while decompressing data: incorrect header check",
        ),
        (b"\x1b\x00\x00", {"Content-Encoding": "br"}, "answer from NuGet is encoded as 'br', which is not read"),
    ],
)
def test_bad_encodings_are_named_errors(
    registry: FakeRegistry, body: bytes, headers: dict[str, str], reason: str
) -> None:
    registry.serve(f"{HIVE}/x/index.json", body, headers=headers)
    answer = fetch_packages({(NUGET, "x"): set()}, urls=urls(registry), timeout=5)[(NUGET, "x")]
    assert isinstance(answer, RegistryError)
    assert answer.reason == reason
