"""`codexk8s freshness PATH` end to end: a checkout on disk, the real lockfile readers, the fake registries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codexk8s_pipelines.cli import main
from tests.helpers import free_port

from .registry_server import FakeRegistry

REQUIREMENTS = "requests==2.31.0\nDjango==4.2.0  # the web framework\nhttpx>=0.25\n"
PACKAGE_LOCK = {
    "name": "web",
    "version": "1.0.0",
    "lockfileVersion": 3,
    "requires": True,
    "packages": {
        "": {"name": "web", "version": "1.0.0", "dependencies": {"express": "^4.17.1", "@types/node": "^20.0.0"}},
        "node_modules/express": {
            "version": "4.17.1",
            "resolved": "https://registry.npmjs.org/express/-/express-4.17.1.tgz",
            "integrity": "sha512-rmLOhG9pCWtNAuU1aNoHFxxqWX0Z1ih+QDMuhjzSBAYZa5vtOYxi7GwpsMQWsVshCRJR3Om2n0Bv2FBvRo==",
        },
        "node_modules/@types/node": {
            "version": "20.11.0",
            "resolved": "https://registry.npmjs.org/@types/node/-/node-20.11.0.tgz",
            "integrity": "sha512-o9bjXmDNcF7GbM4CNQpmi+TutCgap/K3w1JyKgxAjqx41zp9qlIAVFi0IhCNsJcXolEqLWhbFbEeL0PvYm4==",
            "dev": True,
        },
    },
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "web").mkdir(parents=True)
    (root / "requirements.txt").write_text(REQUIREMENTS, encoding="utf-8")
    (root / "web" / "package-lock.json").write_text(json.dumps(PACKAGE_LOCK, indent=2), encoding="utf-8")
    return root


def publish(registry: FakeRegistry, *, outdated: bool) -> None:
    registry.publish_pypi("requests", {"2.30.0": "2023-05-03T00:00:00Z", "2.31.0": "2023-05-22T00:00:00Z"})
    registry.publish_pypi("httpx", {"0.27.0": "2024-02-21T00:00:00Z"})
    django = {"4.2.0": "2023-04-03T00:00:00Z"}
    express = {"4.17.1": "2019-05-26T00:00:00.000Z"}
    if outdated:
        django["5.0.2"] = "2024-02-06T00:00:00Z"  # 309 days later
        express["4.18.2"] = "2022-10-08T00:00:00.000Z"  # 1231 days later
    registry.publish_pypi("django", django)
    registry.publish_npm("express", express)
    registry.publish_npm("@types/node", {"20.11.0": "2024-01-10T00:00:00.000Z"})


def run(registry: FakeRegistry, *args: str) -> int:
    urls = registry.urls
    return main(
        [
            "freshness",
            *args,
            "--pypi-url",
            urls.pypi,
            "--npm-url",
            urls.npm,
            "--go-proxy-url",
            urls.go,
            "--crates-url",
            urls.crates,
            "--timeout",
            "2",
        ]
    )


def test_outdated_tree_exits_1_with_a_table_sorted_by_libyear(
    registry: FakeRegistry, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(registry, outdated=True)
    assert run(registry, str(tree), "--workers", "3") == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["ecosystem", "name", "used", "latest", "behind", "libyear", "status"]
    assert lines[2].split() == ["npm", "express", "4.17.1", "4.18.2", "1", "minor", "3.37", "outdated"]
    assert lines[3].split() == ["PyPI", "django", "4.2.0", "5.0.2", "1", "major", "0.85", "outdated"]
    assert {line.split()[1] for line in lines[4:6]} == {"requests", "@types/node"}
    assert lines[6].split()[:3] == ["PyPI", "httpx", "unpinned"]
    assert lines[-1].startswith("5 dependencies, 2 outdated, 4.22 libyears, 1 unpinned")
    assert sorted(registry.paths()) == [
        "/npm/@types%2fnode",
        "/npm/express",
        "/pypi/pypi/django/json",
        "/pypi/pypi/httpx/json",
        "/pypi/pypi/requests/json",
    ]


def test_json_format_carries_rows_totals_and_the_files_read(
    registry: FakeRegistry, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(registry, outdated=True)
    assert run(registry, str(tree), "--format", "json") == 1
    data = json.loads(capsys.readouterr().out)
    assert data["path"] == str(tree)
    assert data["files"] == ["requirements.txt", "web/package-lock.json"]
    assert data["extraction_errors"] == []
    assert data["totals"]["outdated"] == 2 and round(data["totals"]["libyear"], 3) == 4.216
    express = data["rows"][0]
    assert (express["name"], express["latest"], express["files"]) == ("express", "4.18.2", ["web/package-lock.json"])
    assert express["behind"] == {"major": 0, "minor": 1, "patch": 0}
    assert [r["status"] for r in data["rows"]] == ["outdated", "outdated", "up-to-date", "up-to-date", "unpinned"]


def test_up_to_date_tree_exits_0(registry: FakeRegistry, tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    publish(registry, outdated=False)
    assert run(registry, str(tree)) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("5 dependencies, 0 outdated, 0.00 libyears")


def test_registry_errors_are_listed_but_do_not_make_it_exit_2(
    registry: FakeRegistry, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(registry, outdated=False)
    registry.fail(registry.npm_path("express"), 502)
    registry.garble(registry.pypi_path("requests"))
    assert run(registry, str(tree)) == 0
    out = capsys.readouterr().out
    assert "  npm express@4.17.1: HTTP 502 from npm" in out.splitlines()
    assert "  PyPI requests@2.31.0: invalid JSON from PyPI" in out.splitlines()
    assert "2 not checked" in out.splitlines()[-1]
    assert run(registry, str(tree), "--format", "json") == 0
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert [(e["name"], e["registry"]) for e in errors] == [("requests", "PyPI"), ("express", "npm")]


def test_a_path_that_is_not_a_directory_exits_2(
    registry: FakeRegistry, tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(registry, str(tree / "missing")) == 2
    assert "missing: not a directory" in capsys.readouterr().err
    assert run(registry, str(tree / "requirements.txt")) == 2
    assert registry.paths() == []


def test_a_tree_without_manifests_is_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["freshness", str(tmp_path), "--pypi-url", "http://127.0.0.1:9"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no manifest or lockfile found under") and "0 dependencies" in out


def test_workers_must_be_positive(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["freshness", str(tree), "--workers", "0"])
    assert exit_info.value.code == 2
    assert "is not ≥ 1" in capsys.readouterr().err


def test_no_registry_answering_exits_2_not_up_to_date(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "requirements.txt").write_text("requests==2.20.0\n")
    closed = f"http://127.0.0.1:{free_port()}"
    assert main(["freshness", str(tmp_path), "--pypi-url", closed, "--timeout", "2"]) == 2
    assert "nothing could be checked: no answer from PyPI" in capsys.readouterr().err
