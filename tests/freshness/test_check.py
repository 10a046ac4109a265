"""`check_freshness` end to end over the fake registries: versions behind, libyear, dedupe, unpinned, errors."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from codexk8s_pipelines.freshness.check import (
    OUTDATED,
    UNPINNED,
    UP_TO_DATE,
    Behind,
    FreshnessReport,
    FreshnessRow,
    check_freshness,
    libyear,
    versions_behind,
)
from codexk8s_pipelines.security.dependencies import Dependency

from .registry_server import FakeRegistry, PyPIFile

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)


def dep(ecosystem: str, name: str, version: str | None, file: str = "requirements.txt", **kw: object) -> Dependency:
    return Dependency(ecosystem, name, version, file, **kw)  # type: ignore[arg-type]


def check(registry: FakeRegistry, deps: list[Dependency], timeout: float = 2) -> FreshnessReport:
    return check_freshness(deps, registries=registry.urls, now=NOW, timeout=timeout, workers=4)


def row(report: FreshnessReport, name: str, version: str | None = None) -> FreshnessRow:
    found = [r for r in report.rows if r.name == name and (version is None or r.version == version)]
    assert len(found) == 1, (name, report.rows)
    return found[0]


@pytest.mark.parametrize(
    ("ecosystem", "used", "latest", "behind"),
    [
        ("npm", "1.4.2", "3.0.1", Behind(major=2)),  # a new major resets minor and patch: not -4 minors
        ("npm", "1.4.2", "1.6.0", Behind(minor=2)),
        ("npm", "1.4.2", "1.4.7", Behind(patch=5)),
        ("Go", "v0.9.3", "v0.10.0", Behind(minor=1)),
        ("PyPI", "2.0", "2.0.post1", Behind()),  # outdated, but only past the patch
        ("PyPI", "1.5", "1!1.0", Behind()),  # an epoch makes a later triple smaller: never negative
        ("crates.io", "0.3.9", "1.0.0", Behind(major=1)),
    ],
)
def test_versions_behind_counts_the_most_significant_differing_part(
    ecosystem: str, used: str, latest: str, behind: Behind
) -> None:
    assert versions_behind(ecosystem, used, latest) == behind


def test_behind_reads_like_a_sentence() -> None:
    assert (str(Behind(major=2)), str(Behind(minor=1)), str(Behind(patch=3)), str(Behind())) == (
        "2 major",
        "1 minor",
        "3 patch",
        "0",
    )


def test_libyear_is_exact_per_ecosystem_against_the_dates_published(registry: FakeRegistry) -> None:
    registry.publish_pypi("django", {"3.2.0": "2021-04-06T09:00:00Z", "4.2.0": "2023-04-03T09:00:00Z"})
    registry.publish_npm("express", {"4.17.1": "2019-05-26T04:25:34.606Z", "4.18.2": "2022-10-08T19:58:19.119Z"})
    registry.publish_go("github.com/pkg/errors", {"v0.8.1": "2019-01-03T06:52:24Z", "v0.9.1": "2020-01-14T19:47:44Z"})
    registry.publish_crate("rand", {"0.7.3": "2020-01-10T00:00:00+00:00", "0.8.5": "2022-02-14T00:00:00+00:00"})
    report = check(
        registry,
        [
            dep("PyPI", "Django", "3.2.0"),
            dep("npm", "express", "4.17.1", "package-lock.json"),
            dep("Go", "github.com/pkg/errors", "v0.8.1", "go.sum"),
            dep("crates.io", "rand", "0.7.3", "Cargo.lock"),
        ],
    )
    assert report.errors == ()
    django = row(report, "django")  # PEP 503 name
    assert (django.status, django.latest, django.behind) == (OUTDATED, "4.2.0", Behind(major=1))
    assert django.used_released == datetime(2021, 4, 6, 9, tzinfo=UTC)
    assert django.latest_released == datetime(2023, 4, 3, 9, tzinfo=UTC)
    # 727 days / 365.25
    assert round(django.libyear or 0, 3) == 1.990
    express = row(report, "express")
    # 1231 days 15 h 32 min 44.513 s
    assert (express.behind, round(express.libyear or 0, 3)) == (Behind(minor=1), 3.372)
    errors = row(report, "github.com/pkg/errors")
    # 376 days 12 h 55 min 20 s
    assert (errors.latest, errors.behind, round(errors.libyear or 0, 3)) == ("v0.9.1", Behind(minor=1), 1.031)
    rand = row(report, "rand")
    # 766 days
    assert (rand.behind, round(rand.libyear or 0, 3)) == (Behind(minor=1), 2.097)
    # highest libyear first
    assert [r.name for r in report.rows] == ["express", "rand", "django", "github.com/pkg/errors"]
    totals = report.totals
    assert (totals.dependencies, totals.outdated, totals.up_to_date, totals.errors) == (4, 4, 0, 0)
    assert round(totals.libyear, 3) == 8.491
    assert totals.libyear == sum(r.libyear or 0 for r in report.rows)
    assert totals.by_ecosystem["npm"].outdated == 1 and round(totals.by_ecosystem["npm"].libyear, 3) == 3.372
    assert report.checked_at == NOW


def test_up_to_date_backport_and_newer_prerelease_count_zero_libyear(registry: FakeRegistry) -> None:
    registry.publish_npm(
        "lib",
        {
            "1.2.8": "2020-01-01T00:00:00.000Z",
            "2.0.0": "2021-01-01T00:00:00.000Z",
            "1.2.9": "2022-01-01T00:00:00.000Z",  # a backport released after 2.0.0
            "3.0.0-rc.1": "2022-06-01T00:00:00.000Z",
        },
    )
    report = check(
        registry,
        [
            dep("npm", "lib", "2.0.0", "a/package-lock.json"),
            dep("npm", "lib", "1.2.9", "b/package-lock.json"),
            dep("npm", "lib", "3.0.0-rc.1", "c/package-lock.json"),
        ],
    )
    assert (row(report, "lib", "2.0.0").status, row(report, "lib", "2.0.0").libyear) == (UP_TO_DATE, 0.0)
    assert row(report, "lib", "2.0.0").behind == Behind()
    backport = row(report, "lib", "1.2.9")
    assert (backport.status, backport.behind, backport.libyear) == (OUTDATED, Behind(major=1), 0.0)
    assert row(report, "lib", "3.0.0-rc.1").status == UP_TO_DATE
    assert registry.paths() == ["/npm/lib"]  # three versions, one request


def test_libyear_never_negative() -> None:
    assert libyear(datetime(2022, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)) == 0.0


def test_one_dependency_per_version_with_every_file_and_one_request_per_package(registry: FakeRegistry) -> None:
    registry.publish_pypi("urllib3", {"1.26.18": "2023-10-17T00:00:00Z", "2.2.1": "2024-02-18T00:00:00Z"})
    report = check(
        registry,
        [
            dep("PyPI", "urllib3", "1.26.18", "requirements.txt", line=3, direct=True),
            dep("PyPI", "URLLib3", "1.26.18", "svc/poetry.lock", direct=False),
            dep("PyPI", "urllib3", "2.2.1", "tools/requirements.txt", direct=False),
        ],
    )
    old = row(report, "urllib3", "1.26.18")
    assert old.files == ("requirements.txt", "svc/poetry.lock")
    assert old.direct is True
    assert row(report, "urllib3", "2.2.1").files == ("tools/requirements.txt",)
    assert report.totals.dependencies == 2
    assert registry.paths() == ["/pypi/pypi/urllib3/json"]


def test_unpinned_dependencies_show_the_latest_without_libyear(registry: FakeRegistry) -> None:
    registry.publish_pypi("httpx", {"0.26.0": "2023-12-20T00:00:00Z", "0.27.0": "2024-02-21T00:00:00Z"})
    report = check(registry, [dep("PyPI", "httpx", None, "pyproject.toml", spec=">=0.25", direct=True)])
    unpinned = row(report, "httpx")
    assert (unpinned.status, unpinned.version, unpinned.latest, unpinned.spec) == (UNPINNED, None, "0.27.0", ">=0.25")
    assert unpinned.latest_released == datetime(2024, 2, 21, tzinfo=UTC)
    assert (unpinned.libyear, unpinned.behind, unpinned.used_released) == (None, None, None)
    assert (report.totals.unpinned, report.totals.outdated) == (1, 0)


def test_a_used_version_the_registry_never_published_is_an_error(registry: FakeRegistry) -> None:
    registry.publish_crate("log", {"0.4.20": "2023-08-01T00:00:00+00:00"})
    report = check(registry, [dep("crates.io", "log", "0.4.99", "Cargo.lock")])
    assert report.rows == ()
    (error,) = report.errors
    assert (error.name, error.version, error.registry) == ("log", "0.4.99", "crates.io")
    assert error.reason == "version 0.4.99 not published on crates.io"
    assert error.files == ("Cargo.lock",)


def test_a_yanked_used_version_is_dated_and_flagged(registry: FakeRegistry) -> None:
    registry.publish_pypi(
        "pkg",
        {
            "1.0.0": "2022-01-01T00:00:00Z",
            "1.0.1": [PyPIFile("2022-02-01T00:00:00Z", yanked=True)],
            "1.0.2": "2022-03-01T00:00:00Z",
        },
    )
    used = row(check(registry, [dep("PyPI", "pkg", "1.0.1")]), "pkg")
    assert (used.status, used.latest, used.behind) == (OUTDATED, "1.0.2", Behind(patch=1))
    assert used.notes == ("1.0.1 is yanked",)


Breaker = Callable[[FakeRegistry], None]


@pytest.mark.parametrize(
    ("ecosystem", "name", "breaker", "reason"),
    [
        ("PyPI", "ghost", lambda r: None, "not found on PyPI"),
        ("npm", "flaky", lambda r: r.fail(r.npm_path("flaky"), 500), "HTTP 500 from npm"),
        ("crates.io", "slow", lambda r: r.hang(r.crates_path("slow"), 2.0), "no answer from crates.io within 0.4 s"),
        (
            "Go",
            "example.com/mod",
            lambda r: r.garble(r.go_path("example.com/mod", "@v/v1.0.0.info")),
            "invalid JSON from the Go module proxy",
        ),
        (
            "npm",
            "odd",
            lambda r: r.serve(r.npm_path("odd"), {"name": "odd", "versions": ["1.0.0"]}),
            "unexpected response from npm: `versions` is not an object",
        ),
    ],
    ids=["404", "500", "timeout", "invalid-json", "shape"],
)
def test_a_failing_registry_answer_is_an_error_of_that_package_only(
    registry: FakeRegistry, ecosystem: str, name: str, breaker: Breaker, reason: str
) -> None:
    registry.publish_go("example.com/mod", {"v1.0.0": "2020-01-01T00:00:00Z"})
    registry.publish_crate("slow", {"1.0.0": "2020-01-01T00:00:00+00:00"})
    registry.publish_pypi("fine", {"1.0": "2020-01-01T00:00:00Z", "1.1": "2021-01-01T00:00:00Z"})
    registry.publish_npm("good", {"2.0.0": "2020-01-01T00:00:00.000Z"})
    breaker(registry)
    report = check(
        registry,
        [
            dep(ecosystem, name, "1.0.0" if ecosystem != "Go" else "v1.0.0", "lock"),
            dep("PyPI", "fine", "1.0"),
            dep("npm", "good", "2.0.0", "package-lock.json"),
        ],
        timeout=0.4,
    )
    (error,) = report.errors
    assert (error.ecosystem, error.name, error.reason, error.files) == (ecosystem, name, reason, ("lock",))
    assert {(r.name, r.status) for r in report.rows} == {("fine", OUTDATED), ("good", UP_TO_DATE)}
    assert (report.totals.errors, report.totals.dependencies) == (1, 3)


def test_npm_dist_tag_disagreement_is_noted_on_the_row(registry: FakeRegistry) -> None:
    registry.publish_npm(
        "typescript", {"5.3.3": "2023-12-06T00:00:00.000Z", "5.4.2": "2024-03-06T00:00:00.000Z"}, latest_tag="5.3.3"
    )
    used = row(check(registry, [dep("npm", "typescript", "5.3.3", "package-lock.json")]), "typescript")
    assert (used.status, used.latest, used.notes) == (OUTDATED, "5.4.2", ("dist-tags.latest is 5.3.3",))


def test_no_dependencies_no_requests(registry: FakeRegistry) -> None:
    report = check(registry, [])
    assert (report.rows, report.errors, report.totals.dependencies) == ((), (), 0)
    assert registry.paths() == []
