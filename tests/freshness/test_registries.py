"""The registry clients over real HTTP against the fake registries: what "latest" is, which requests go out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from codexk8s_pipelines.freshness.registries import (
    USER_AGENT,
    PackageInfo,
    RegistryError,
    escape_go_path,
    fetch_packages,
    latest_version,
)

from .registry_server import FakeRegistry, PyPIFile


def fetch_one(registry: FakeRegistry, ecosystem: str, name: str, used: set[str] | None = None) -> PackageInfo:
    answer = fetch_packages({(ecosystem, name): used or set()}, urls=registry.urls, timeout=2)[(ecosystem, name)]
    assert isinstance(answer, PackageInfo), answer
    return answer


def test_pypi_latest_skips_prereleases_and_releases_whose_every_file_is_yanked(registry: FakeRegistry) -> None:
    registry.publish_pypi(
        "requests",
        {
            "2.30.0": "2023-05-03T17:34:03.123456Z",
            "2.31.0": [  # one of two files yanked: the release is still installable
                PyPIFile("2023-05-22T15:12:44.633290Z"),
                PyPIFile("2023-05-22T15:12:46.000000Z", yanked=True, packagetype="bdist_wheel"),
            ],
            "2.32.0": [PyPIFile("2024-05-20T15:00:00Z", yanked=True), PyPIFile("2024-05-20T15:01:00Z", yanked=True)],
            "2.33.0rc1": "2024-06-01T00:00:00Z",
            "3.0.0.dev0": "2024-07-01T00:00:00Z",
            "4.0.0": [],  # no files: never installable, ignored
        },
    )
    info = fetch_one(registry, "PyPI", "requests")
    assert info.latest == "2.31.0"
    assert info.releases["2.32.0"].yanked and not info.releases["2.31.0"].yanked
    assert "4.0.0" not in info.releases
    # the release date is its first file's upload
    assert info.releases["2.31.0"].published == datetime(2023, 5, 22, 15, 12, 44, 633290, tzinfo=UTC)
    assert registry.paths() == ["/pypi/pypi/requests/json"]


def test_npm_latest_by_ordering_not_dist_tag_and_deprecated_still_counts(registry: FakeRegistry) -> None:
    registry.publish_npm(
        "left-pad",
        {
            "1.1.3": "2016-05-10T12:00:00.000Z",
            "1.3.0": "2018-04-09T01:20:33.000Z",
            "1.10.0": "2019-02-01T00:00:00.000Z",  # SemVer order: 1.10.0 > 1.3.0 (not string order)
            "2.0.0-beta.1": "2020-01-01T00:00:00.000Z",
        },
        latest_tag="1.3.0",
        deprecated=["1.10.0"],
    )
    info = fetch_one(registry, "npm", "left-pad")
    assert info.latest == "1.10.0"
    assert info.notes == ("dist-tags.latest is 1.3.0",)
    assert info.releases["1.3.0"].published == datetime(2018, 4, 9, 1, 20, 33, tzinfo=UTC)


def test_npm_scoped_names_travel_as_one_escaped_segment(registry: FakeRegistry) -> None:
    registry.publish_npm("@types/node", {"20.11.0": "2024-01-10T00:00:00.000Z"})
    info = fetch_one(registry, "npm", "@types/node")
    assert info.latest == "20.11.0" and info.notes == ()
    assert registry.paths() == ["/npm/@types%2fnode"]


def test_go_escapes_capitals_and_dates_only_the_used_and_latest_versions(registry: FakeRegistry) -> None:
    module = "github.com/BurntSushi/toml"
    registry.publish_go(
        module,
        {
            "v1.1.0": "2022-04-01T10:00:00Z",
            "v1.2.0": "2022-06-06T10:00:00Z",
            "v1.3.2": "2023-06-08T06:11:35Z",
            "v1.4.0-rc.1": "2024-05-01T00:00:00Z",
        },
    )
    info = fetch_one(registry, "Go", module, {"v1.1.0"})
    assert info.latest == "v1.3.2"
    assert info.releases["v1.1.0"].published == datetime(2022, 4, 1, 10, tzinfo=UTC)
    assert info.releases["v1.3.2"].published == datetime(2023, 6, 8, 6, 11, 35, tzinfo=UTC)
    assert info.releases["v1.2.0"].published is None  # listed, never asked about
    assert sorted(registry.paths()) == [
        "/goproxy/github.com/!burnt!sushi/toml/@v/list",
        "/goproxy/github.com/!burnt!sushi/toml/@v/v1.1.0.info",
        "/goproxy/github.com/!burnt!sushi/toml/@v/v1.3.2.info",
    ]


def test_go_incompatible_versions_are_latest_only_for_incompatible_users(registry: FakeRegistry) -> None:
    module = "github.com/docker/docker"
    registry.publish_go(
        module,
        {
            "v1.13.1": "2017-02-08T00:00:00Z",
            "v1.14.0": "2017-06-01T00:00:00Z",
            "v24.0.7+incompatible": "2023-10-27T00:00:00Z",
            "v25.0.3+incompatible": "2024-02-06T00:00:00Z",
        },
    )
    assert fetch_one(registry, "Go", module, {"v1.13.1"}).latest == "v1.14.0"
    info = fetch_one(registry, "Go", module, {"v24.0.7+incompatible"})
    assert info.latest == "v25.0.3+incompatible"
    assert info.find("v24.0.7+incompatible") is not None
    assert info.find("v24.0.7") is None  # build metadata does not order, but it names a different version


def test_go_pseudo_versions_are_dated_by_info_and_a_module_without_tags_uses_latest(registry: FakeRegistry) -> None:
    module = "golang.org/x/exp"
    registry.serve(registry.go_path(module, "@v/list"), "", content_type="text/plain")
    old, new = "v0.0.0-20230713183714-613f0c0eb8a1", "v0.0.0-20240222234643-814bf88cf225"
    registry.serve(registry.go_path(module, f"@v/{old}.info"), {"Version": old, "Time": "2023-07-13T18:37:14Z"})
    registry.serve(registry.go_path(module, "@latest"), {"Version": new, "Time": "2024-02-22T23:46:43Z"})
    info = fetch_one(registry, "Go", module, {old})
    assert info.latest == new
    assert info.releases[old].published == datetime(2023, 7, 13, 18, 37, 14, tzinfo=UTC)
    assert info.releases[new].published == datetime(2024, 2, 22, 23, 46, 43, tzinfo=UTC)


def test_crates_latest_skips_yanked_and_prereleases_and_every_request_names_us(registry: FakeRegistry) -> None:
    registry.publish_crate(
        "serde",
        {
            "1.0.190": "2023-10-20T00:00:00.000000+00:00",
            "1.0.195": "2024-01-02T00:00:00.000000+00:00",
            "1.0.196": ("2024-01-26T00:00:00.000000+00:00", True),
            "2.0.0-alpha.1": "2024-03-01T00:00:00.000000+00:00",
        },
    )
    registry.publish_crate("tokio", {"1.36.0": "2024-02-02T00:00:00+00:00"})
    fetch_one(registry, "crates.io", "tokio")
    info = fetch_one(registry, "crates.io", "serde")
    assert info.latest == "1.0.195"
    assert info.releases["1.0.196"].yanked
    assert [r.headers.get("User-Agent") for r in registry.requests] == [USER_AGENT, USER_AGENT]


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda r, p: None, "not found on PyPI"),
        (lambda r, p: r.fail(p, 503), "HTTP 503 from PyPI"),
        (lambda r, p: r.garble(p), "invalid JSON from PyPI"),
        (lambda r, p: r.serve(p, {"releases": ["1.0"]}), "unexpected response from PyPI: `releases` is not an object"),
        (lambda r, p: r.serve(p, [1, 2]), "unexpected response from PyPI: body is not an object"),
    ],
    ids=["404", "503", "invalid-json", "shape", "not-an-object"],
)
def test_each_failure_is_an_error_value_naming_registry_and_reason(registry: FakeRegistry, break_it, reason) -> None:
    break_it(registry, registry.pypi_path("broken"))
    registry.publish_pypi("fine", {"1.0": "2020-01-01T00:00:00Z"})
    answers = fetch_packages({("PyPI", "broken"): set(), ("PyPI", "fine"): set()}, urls=registry.urls, timeout=2)
    error = answers[("PyPI", "broken")]
    assert isinstance(error, RegistryError)
    assert (error.registry, error.reason) == ("PyPI", reason)
    assert isinstance(answers[("PyPI", "fine")], PackageInfo)


def test_a_registry_slower_than_the_timeout_fails_alone(registry: FakeRegistry) -> None:
    registry.publish_crate("slow", {"1.0.0": "2020-01-01T00:00:00+00:00"})
    registry.hang(registry.crates_path("slow"), 2.0)
    registry.publish_crate("quick", {"1.0.0": "2020-01-01T00:00:00+00:00"})
    answers = fetch_packages(
        {("crates.io", "slow"): set(), ("crates.io", "quick"): set()}, urls=registry.urls, timeout=0.3
    )
    error = answers[("crates.io", "slow")]
    assert isinstance(error, RegistryError)
    assert error.reason == "no answer from crates.io within 0.3 s"
    assert isinstance(answers[("crates.io", "quick")], PackageInfo)


def test_an_unreachable_registry_and_an_unknown_ecosystem_are_errors_too() -> None:
    from codexk8s_pipelines.freshness.registries import RegistryUrls
    from tests.helpers import free_port

    closed = f"http://127.0.0.1:{free_port()}"
    answers = fetch_packages({("npm", "x"): set(), ("CRAN", "y"): set()}, urls=RegistryUrls(npm=closed), timeout=2)
    assert isinstance(answers[("npm", "x")], RegistryError)
    assert answers[("npm", "x")].reason.startswith("cannot reach npm")  # type: ignore[union-attr]
    assert answers[("CRAN", "y")].reason == "no registry client for ecosystem 'CRAN'"  # type: ignore[union-attr]


def test_escape_go_path_and_latest_version_helpers() -> None:
    assert escape_go_path("github.com/Azure/azure-sdk-for-go") == "github.com/!azure/azure-sdk-for-go"
    assert escape_go_path("example.com/ABC") == "example.com/!a!b!c"
    assert latest_version("PyPI", ["1.0", "1.10", "1.9", "2.0b1", "not a version!"]) == "1.10"
    assert latest_version("npm", ["1.0.0-rc.1"]) is None
