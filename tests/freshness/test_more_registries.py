"""Maven Central, RubyGems, Packagist, NuGet, pub.dev and hex.pm over real HTTP against the fake registry, and
the limits every registry call now has: a total deadline and a cap on the answer's size."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from urllib.parse import quote

import pytest

from codexk8s_pipelines.freshness.check import check_freshness
from codexk8s_pipelines.freshness.registries import RegistryError, RegistryUrls, fetch_packages
from codexk8s_pipelines.security.dependencies import HEX, MAVEN, NUGET, PACKAGIST, PUB, RUBYGEMS, Dependency

from .registry_server import FakeRegistry

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def urls(registry: FakeRegistry) -> RegistryUrls:
    base = registry.base
    return RegistryUrls(
        pypi=base + "/pypi",
        npm=base + "/npm",
        maven=base + "/maven",
        rubygems=base + "/rubygems",
        packagist=base + "/packagist",
        nuget=base + "/nuget",
        pub=base + "/pub",
        hex=base + "/hex",
    )


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


def publish_all(registry: FakeRegistry) -> None:
    query = quote('g:"org.apache.logging.log4j" AND a:"log4j-core"')
    registry.serve(
        f"/maven/solrsearch/select?q={query}&core=gav&rows=1000&wt=json",
        {
            "responseHeader": {"status": 0},
            "response": {
                "numFound": 3,
                "docs": [
                    {
                        "id": "x:2.20.0",
                        "g": "org.apache.logging.log4j",
                        "a": "log4j-core",
                        "v": "2.20.0",
                        "timestamp": ms("2023-02-17T00:00:00+00:00"),
                    },
                    {"v": "2.21.0-beta1", "timestamp": ms("2023-09-01T00:00:00+00:00")},
                    {"v": "2.14.1", "timestamp": ms("2021-03-06T00:00:00+00:00")},
                ],
            },
        },
    )
    registry.serve(
        "/rubygems/api/v1/versions/nokogiri.json",
        [
            {"number": "1.15.0", "created_at": "2023-05-15T00:00:00.000Z", "platform": "ruby", "prerelease": False},
            {"number": "1.15.0", "created_at": "2023-05-16T00:00:00.000Z", "platform": "x86_64-linux"},
            {"number": "1.15.0.rc1", "created_at": "2023-04-01T00:00:00.000Z", "prerelease": True},
            {"number": "1.13.10", "created_at": "2022-12-07T00:00:00.000Z", "platform": "ruby"},
        ],
    )
    registry.serve(
        "/packagist/p2/guzzlehttp/guzzle.json",
        {
            "packages": {
                "guzzlehttp/guzzle": [
                    {"name": "guzzlehttp/guzzle", "version": "7.8.0", "time": "2023-08-27T10:20:53+00:00"},
                    {"version": "7.4.4", "time": "2022-06-09T21:39:15+00:00"},
                    {"version": "dev-master", "time": "2023-09-01T00:00:00+00:00"},
                ]
            },
            "minified": "composer/2.0",
        },
    )
    registry.serve(
        "/nuget/newtonsoft.json/index.json",
        {
            "count": 2,
            "items": [
                {
                    "@id": f"{registry.base}/nuget/newtonsoft.json/page/1.json",
                    "items": [
                        {"catalogEntry": {"version": "13.0.1", "published": "2021-03-22T20:10:49+00:00"}},
                        {
                            "catalogEntry": {
                                "version": "13.0.2",
                                "published": "1900-01-01T00:00:00+00:00",
                                "listed": False,
                            }
                        },
                    ],
                },
                {"@id": f"{registry.base}/nuget/newtonsoft.json/page/2.json"},
            ],
        },
    )
    registry.serve(
        "/nuget/newtonsoft.json/page/2.json",
        {"items": [{"catalogEntry": {"version": "13.0.3+build.7", "published": "2023-03-08T07:42:54+00:00"}}]},
    )
    registry.serve(
        "/pub/api/packages/http",
        {
            "name": "http",
            "latest": {"version": "1.1.0"},
            "versions": [
                {"version": "0.13.4", "published": "2021-10-06T00:00:00.000Z"},
                {"version": "1.1.0", "published": "2023-08-08T00:00:00.000Z"},
                {"version": "1.2.0", "published": "2023-09-08T00:00:00.000Z", "retracted": True},
            ],
        },
    )
    registry.serve(
        "/hex/api/packages/plug",
        {
            "name": "plug",
            "releases": [
                {"version": "1.15.1", "inserted_at": "2023-10-06T00:00:00.000000Z"},
                {"version": "1.15.0", "inserted_at": "2023-10-01T00:00:00.000000Z"},
                {"version": "1.14.0", "inserted_at": "2022-10-31T00:00:00.000000Z"},
            ],
            "retirements": {"1.15.1": {"reason": "security", "message": "use 1.15.2"}},
        },
    )


DEPS = [
    Dependency(MAVEN, "org.apache.logging.log4j:log4j-core", "2.14.1", "pom.xml", 10),
    Dependency(RUBYGEMS, "nokogiri", "1.13.10", "Gemfile.lock", 5),
    Dependency(PACKAGIST, "guzzlehttp/guzzle", "7.4.4", "composer.lock", 8),
    Dependency(NUGET, "newtonsoft.json", "13.0.1", "packages.lock.json", 5),
    Dependency(PUB, "http", "0.13.4", "pubspec.lock", 17),
    Dependency(HEX, "plug", "1.14.0", "mix.lock", 3),
]


def test_six_more_registries(registry: FakeRegistry) -> None:
    publish_all(registry)
    report = check_freshness(DEPS, registries=urls(registry), now=NOW, timeout=5)
    assert report.errors == ()
    got = {(r.ecosystem, r.name): (r.latest, r.status, round(r.libyear or 0, 2)) for r in report.rows}
    assert got == {
        (MAVEN, "org.apache.logging.log4j:log4j-core"): ("2.20.0", "outdated", 1.95),
        (RUBYGEMS, "nokogiri"): ("1.15.0", "outdated", 0.44),
        (PACKAGIST, "guzzlehttp/guzzle"): ("7.8.0", "outdated", 1.21),
        (NUGET, "newtonsoft.json"): ("13.0.3", "outdated", 1.96),  # 13.0.2 is unlisted
        (PUB, "http"): ("1.1.0", "outdated", 1.84),  # 1.2.0 is retracted
        (HEX, "plug"): ("1.15.0", "outdated", 0.92),  # 1.15.1 is retired
    }
    # one request per package, plus NuGet's page that was not inlined
    assert len(registry.paths("/nuget")) == 2 and len(registry.paths("/maven")) == 1


def test_a_registry_that_trickles_ends_at_the_deadline(registry: FakeRegistry) -> None:
    registry.trickle("/pub/api/packages/http", b'{"versions": []}' * 100, 0.2)
    start = time.monotonic()
    answers = fetch_packages({(PUB, "http"): {"0.13.4"}}, urls=urls(registry), timeout=5, deadline=1.5)
    elapsed = time.monotonic() - start
    answer = answers[(PUB, "http")]
    assert isinstance(answer, RegistryError)
    assert answer.reason == "no complete answer from pub.dev within the check's total deadline of 1.5 s"
    assert elapsed < 4


def test_packages_not_reached_by_the_deadline_are_errors_not_waits(registry: FakeRegistry) -> None:
    publish_all(registry)
    registry.hang("/hex/api/packages/plug", 3)
    keys = {(HEX, "plug"): {"1.14.0"}, (PUB, "http"): {"0.13.4"}}
    start = time.monotonic()
    answers = fetch_packages(keys, urls=urls(registry), timeout=10, deadline=1.0, workers=1)
    assert time.monotonic() - start < 4
    reasons = {key: getattr(answer, "reason", None) for key, answer in answers.items()}
    assert reasons[(HEX, "plug")] == "no complete answer from hex.pm within the check's total deadline of 1 s"
    assert reasons[(PUB, "http")] == "no complete answer from pub.dev within the check's total deadline of 1 s"


def test_an_oversized_answer_is_refused(registry: FakeRegistry) -> None:
    big = json.dumps({"versions": [{"version": f"1.0.{n}", "published": "2023-01-01T00:00:00Z"} for n in range(5000)]})
    registry.serve("/pub/api/packages/http", big)
    answers = fetch_packages({(PUB, "http"): set()}, urls=urls(registry), timeout=5, max_bytes=100_000)
    answer = answers[(PUB, "http")]
    assert isinstance(answer, RegistryError)
    assert answer.reason == "answer from pub.dev is over the 0.0953674 MB cap: not read"
    # the same answer under a larger cap is read
    ok = fetch_packages({(PUB, "http"): set()}, urls=urls(registry), timeout=5, max_bytes=10_000_000)
    assert ok[(PUB, "http")].latest == "1.0.4999"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("ecosystem", "name", "path", "body", "reason"),
    [
        (MAVEN, "log4j-core", None, None, "not a Maven `group:artifact` name: 'log4j-core'"),
        (PACKAGIST, "guzzle", None, None, "not a `vendor/name` Composer package: 'guzzle'"),
        (
            RUBYGEMS,
            "rack",
            "/rubygems/api/v1/versions/rack.json",
            {"a": 1},
            "unexpected response from RubyGems.org: the versions answer is not a list",
        ),
        (
            NUGET,
            "x",
            "/nuget/x/index.json",
            {"items": [{"items": [{"catalogEntry": {}}]}]},
            "unexpected response from NuGet: a leaf has no `catalogEntry.version`",
        ),
        (
            HEX,
            "plug",
            "/hex/api/packages/plug",
            {"releases": "many"},
            "unexpected response from hex.pm: `releases` is not a list",
        ),
        (PUB, "http", "/pub/api/packages/http", b"\xff\xfe not json", "invalid JSON from pub.dev"),
        (
            HEX,
            "deep",
            "/hex/api/packages/deep",
            b"[" * 200_000 + b"]" * 200_000,
            "invalid JSON from hex.pm: nested too deeply",
        ),
        (PUB, "nul", "/pub/api/packages/nul", b"null", "unexpected response from pub.dev: body is not an object"),
        (RUBYGEMS, "gone", None, None, "not found on RubyGems.org"),
    ],
)
def test_bad_registry_answers_are_named_errors(
    registry: FakeRegistry, ecosystem: str, name: str, path: str | None, body: object, reason: str
) -> None:
    if path is not None:
        registry.serve(path, body)
    answer = fetch_packages({(ecosystem, name): set()}, urls=urls(registry), timeout=5)[(ecosystem, name)]
    assert isinstance(answer, RegistryError)
    assert answer.reason == reason
