"""Go modules (go.mod, go.sum) and Cargo.lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.security.dependencies import CRATES, GO, Dependency, ExtractionError
from codexk8s_pipelines.security.lockfiles import extract_dependencies, parse_file
from codexk8s_pipelines.security.lockfiles.go import go_mod_settles

Row = tuple[str, str, str | None, int | None, bool | None]


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(dependencies: list[Dependency]) -> list[Row]:
    return [(d.ecosystem, d.name, d.version, d.line, d.direct) for d in dependencies]


def messages(errors: list[ExtractionError]) -> list[str]:
    return [str(error) for error in errors]


GO_MOD = """\
module example.com/app

go 1.22

toolchain go1.22.2

require github.com/spf13/cobra v1.8.0

require (
\tgithub.com/google/uuid v1.6.0
\tgolang.org/x/net v0.23.0 // indirect
\tgithub.com/old/lib v1.0.0
\tgithub.com/local/mod v0.1.0
\tgopkg.in/yaml.v3 v3.0.1 // indirect
\tgithub.com/pinned/only v1.2.0
)

replace github.com/old/lib => github.com/fork/lib v1.0.1

replace (
\tgithub.com/local/mod => ../mod
\tgithub.com/pinned/only v1.1.0 => github.com/pinned/only v1.1.1
)

exclude golang.org/x/net v0.20.0
"""

GO_SUM = """\
github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=
github.com/google/uuid v1.6.0/go.mod h1:TIyPZe4MgqvfeYDBFedMoGGpEw/LqOeaOT+nhxU+yHo=
github.com/spf13/cobra v1.8.0 h1:7aJaZx1B85qltLMc546zn58BxxfZdR/W22ej9CFoEf0=
github.com/spf13/cobra v1.8.0/go.mod h1:WXLWApfZ71AjXPya3WOlMsY9yMs7YeiHhFVlvLyhcho=
github.com/spf13/pflag v1.0.5 h1:iy+VFUOCP1a+8yFto/drg2CJ5u0yRoB7fZw3DKv/JXA=
github.com/spf13/pflag v1.0.5/go.mod h1:McXfInJRrz4CZXVZOBLb0bTZqETkiAhM9Iw0y3An2Bg=
golang.org/x/net v0.20.0/go.mod h1:z8BVo6PvndSri0LbOE3hAn0apkU+1YvI6E70E9jsnvY=
golang.org/x/net v0.23.0 h1:7EYJ93RZ9vYSZAIb2x3lnuvqO5zneoD6IvWjuhfxjTs=
golang.org/x/net v0.23.0/go.mod h1:JKghWKKOSdJwpW2GEx0Ja7fmaKnMsbu+MWVZTokSYmg=
github.com/fork/lib v1.0.1 h1:jkl0Xx0YQ4w3B6l5d5v5h5n5n5n5n5n5n5n5n5n5n5k=
github.com/fork/lib v1.0.1/go.mod h1:mno0Xx0YQ4w3B6l5d5v5h5n5n5n5n5n5n5n5n5n5n5k=
github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=
"""


def test_go_mod_require_forms_indirect_and_replace(tmp_path: Path) -> None:
    path = write(tmp_path, "svc/go.mod", GO_MOD)
    dependencies, errors = parse_file(path, "svc/go.mod")
    assert errors == []
    assert rows(dependencies) == [
        (GO, "github.com/spf13/cobra", "v1.8.0", 7, True),
        (GO, "github.com/google/uuid", "v1.6.0", 10, True),
        (GO, "golang.org/x/net", "v0.23.0", 11, False),
        (GO, "github.com/fork/lib", "v1.0.1", 12, True),
        (GO, "github.com/local/mod", None, 13, True),
        (GO, "gopkg.in/yaml.v3", "v3.0.1", 14, False),
        (GO, "github.com/pinned/only", "v1.2.0", 15, True),  # its replace is for v1.1.0 only
    ]
    specs = {d.name: d.spec for d in dependencies}
    assert specs["github.com/fork/lib"] == "github.com/old/lib v1.0.0 => github.com/fork/lib v1.0.1"
    assert specs["github.com/local/mod"] == "github.com/local/mod v0.1.0 => ../mod"
    assert specs["github.com/spf13/cobra"] is None
    assert {d.file for d in dependencies} == {"svc/go.mod"}


def test_version_specific_replace_applies(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "go.mod",
        "module m\n\nrequire github.com/a/b v1.1.0\n\nreplace github.com/a/b v1.1.0 => github.com/a/b v1.1.1\n",
    )
    dependencies, _errors = parse_file(path, "go.mod")
    assert rows(dependencies) == [(GO, "github.com/a/b", "v1.1.1", 3, True)]


def test_go_sum_downloaded_modules_only(tmp_path: Path) -> None:
    path = write(tmp_path, "go.sum", GO_SUM)
    dependencies, errors = parse_file(path, "go.sum")
    assert errors == []
    assert rows(dependencies) == [
        (GO, "github.com/google/uuid", "v1.6.0", 1, None),
        (GO, "github.com/spf13/cobra", "v1.8.0", 3, None),
        (GO, "github.com/spf13/pflag", "v1.0.5", 5, None),
        (GO, "golang.org/x/net", "v0.23.0", 8, None),  # v0.20.0 only has a /go.mod line: not built
        (GO, "github.com/fork/lib", "v1.0.1", 10, None),
    ]


def test_go_sum_beside_go_mod_adds_only_what_go_mod_does_not_report(tmp_path: Path) -> None:
    write(tmp_path, "svc/go.mod", GO_MOD)
    write(tmp_path, "svc/go.sum", GO_SUM)
    write(tmp_path, "other/go.sum", "github.com/google/uuid v1.6.0 h1:NIvaJDMOsjHA8n1jAhLSgzrAzy1Hgr+hNrb57e+94F0=\n")
    extraction = extract_dependencies(tmp_path)
    assert extraction.errors == []
    assert extraction.files == ["other/go.sum", "svc/go.mod", "svc/go.sum"]
    from_sum = [(d.file, d.name, d.version, d.line) for d in extraction.dependencies if d.file.endswith("go.sum")]
    assert from_sum == [
        ("other/go.sum", "github.com/google/uuid", "v1.6.0", 1),  # another directory: not deduplicated
        ("svc/go.sum", "github.com/spf13/pflag", "v1.0.5", 5),
    ]
    assert len([d for d in extraction.dependencies if d.file == "svc/go.mod"]) == 7


STALE_GO_MOD = """\
module example.com/svc

go 1.22.0

require (
\tgithub.com/gorilla/websocket v1.5.3
\tgolang.org/x/net v0.33.0
\tgithub.com/old/lib v1.4.0
\tgithub.com/local/mod v0.2.0
)

require golang.org/x/text v0.21.0 // indirect

replace github.com/old/lib => github.com/fork/lib v1.4.1

replace github.com/local/mod => ../mod
"""

# What `go mod tidy` leaves behind after upgrades: old checksums of modules go.mod now pins elsewhere.
STALE_GO_SUM = """\
github.com/fork/lib v1.3.0 h1:Q0a8lY5cS1Z3lZ3x1ZkOe8O6l9oUQ3eU9m8R3fXvB9w=
github.com/fork/lib v1.3.0/go.mod h1:0A1GkAmp2t8C3zpxQw9p9C7k1q3Vxq6aH0XWm1S1aYQ=
github.com/fork/lib v1.4.1 h1:7d2m4pXo8S8hC0C7y1qU1c2uJ3fY6Kp2n1cVqD7XyZk=
github.com/fork/lib v1.4.1/go.mod h1:0A1GkAmp2t8C3zpxQw9p9C7k1q3Vxq6aH0XWm1S1aYQ=
github.com/gorilla/websocket v1.4.0 h1:WDFjx/TMzVgy9VdMMQi2K2Emtwi2QcUQsztZ/zLaH/Q=
github.com/gorilla/websocket v1.4.0/go.mod h1:E7qHFY5m1UJ88s3WnNqhKjPHQ0heANvMoAMk2YaljkQ=
github.com/gorilla/websocket v1.5.3 h1:saDtZ6Pbx/0u+bgYQ3q96pZgCzfhKXGPqt7kZ72aNNg=
github.com/gorilla/websocket v1.5.3/go.mod h1:YR8l580nyteQvAITg2hZ9XVh4b55+EU/adAjf1fMHhE=
github.com/local/mod v0.1.0 h1:Xn3eQ0lY5r8W1xVvJmBf0Y9cN6e1tQv3Rk0r5bJ2pGc=
github.com/old/lib v1.2.0 h1:b7o7h1uE8T2j1l3zN0u1o7y9H6lM3nQ2wX4r5t6y7u8=
github.com/pkg/errors v0.8.1 h1:iURUrRGxPUNPdy5/HRSm+Yj6okJ6UtLINN0Q9M4+h3I=
github.com/pkg/errors v0.8.1/go.mod h1:bwawxfHBFNV+L2hUp1rHADufV3IMtnDRdf1r5NINEl0=
golang.org/x/net v0.0.0-20190620200207-3b0461eec859 h1:R/3boaszxrf1GEUWTVDzSKVwLmSJpwZ1yqXm8j0v2QI=
golang.org/x/net v0.0.0-20190620200207-3b0461eec859/go.mod h1:z5CRVTTTmAJ677TzLLGU+0bjPO0LkuOLi4/5GtJWs/s=
golang.org/x/net v0.33.0 h1:74SYHlV8BIgHIFC/LrYkOGIwL19eTYXQ5wc6TBuO36I=
golang.org/x/net v0.33.0/go.mod h1:HXLR5J+9DxmrqMwG9qjGCxZ+zKXxBru04zlTvWlWuN4=
golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=
golang.org/x/text v0.3.0/go.mod h1:NqM8EUOU14njkJ3fqMW+pc6Ldnwhi/IjpwHt7yyuwOQ=
golang.org/x/text v0.21.0 h1:zyQAAkrwaneQ066sspRyJaG9VNi/YJ1NfzcGB3hZ/qo=
golang.org/x/text v0.21.0/go.mod h1:4IBbMaMmOPCJ8SecivzSH54+73PCFmPWxNTLm+vZkEQ=
"""


def test_go_sum_versions_of_a_module_go_mod_requires_are_not_reported(tmp_path: Path) -> None:
    """go.sum keeps a checksum of every version the module ever needed: only go.mod's version is built. Before,
    the leftover x/net pseudo-version of 2019 became findings telling the user to upgrade to v0.33.0, the version
    go.mod already requires. Modules go.mod does not name stay (a go.mod before Go 1.17 omits indirect ones)."""
    write(tmp_path, "svc/go.mod", STALE_GO_MOD)
    write(tmp_path, "svc/go.sum", STALE_GO_SUM)
    extraction = extract_dependencies(tmp_path)
    assert extraction.errors == []
    assert [(d.file, d.name, d.version, d.line, d.direct) for d in extraction.dependencies] == [
        ("svc/go.mod", "github.com/gorilla/websocket", "v1.5.3", 6, True),
        ("svc/go.mod", "golang.org/x/net", "v0.33.0", 7, True),
        ("svc/go.mod", "github.com/fork/lib", "v1.4.1", 8, True),  # the replacement is what is built
        ("svc/go.mod", "github.com/local/mod", None, 9, True),  # a local folder: no registry version
        ("svc/go.mod", "golang.org/x/text", "v0.21.0", 12, False),  # `// indirect` settles it too
        # neither the stale fork/lib v1.3.0 nor the replaced old/lib v1.2.0, nor the local module's v0.1.0
        ("svc/go.sum", "github.com/pkg/errors", "v0.8.1", 11, None),  # go.mod does not name it: kept
    ]


def test_go_sum_keeps_every_version_of_modules_an_old_go_mod_does_not_name(tmp_path: Path) -> None:
    """A go 1.16 go.mod lists direct requirements only; the modules it does not name are judged by go.sum as
    before, every downloaded version of them."""
    write(tmp_path, "go.mod", "module example.com/old\n\ngo 1.16\n\nrequire golang.org/x/net v0.33.0\n")
    write(
        tmp_path,
        "go.sum",
        "golang.org/x/net v0.0.0-20190620200207-3b0461eec859 h1:R/3boaszxrf1GEUWTVDzSKVwLmSJpwZ1yqXm8j0v2QI=\n"
        "golang.org/x/net v0.33.0 h1:74SYHlV8BIgHIFC/LrYkOGIwL19eTYXQ5wc6TBuO36I=\n"
        "golang.org/x/text v0.3.0 h1:g61tztE5qeGQ89tm6NTjjM9VPIm088od1l6aSorWRWg=\n"
        "golang.org/x/text v0.21.0 h1:zyQAAkrwaneQ066sspRyJaG9VNi/YJ1NfzcGB3hZ/qo=\n",
    )
    write(  # a go.sum in another directory is not settled by this go.mod
        tmp_path,
        "tools/go.sum",
        "golang.org/x/net v0.0.0-20190620200207-3b0461eec859 h1:R/3boaszxrf1GEUWTVDzSKVwLmSJpwZ1yqXm8j0v2QI=\n",
    )
    extraction = extract_dependencies(tmp_path)
    assert [(d.file, d.name, d.version) for d in extraction.dependencies] == [
        ("go.mod", "golang.org/x/net", "v0.33.0"),
        ("go.sum", "golang.org/x/text", "v0.3.0"),
        ("go.sum", "golang.org/x/text", "v0.21.0"),
        ("tools/go.sum", "golang.org/x/net", "v0.0.0-20190620200207-3b0461eec859"),
    ]


@pytest.mark.parametrize(
    ("spec", "settles"),
    [
        (None, ("golang.org/x/net",)),
        ("github.com/old/lib v1.4.0 => github.com/fork/lib v1.4.1", ("github.com/fork/lib", "github.com/old/lib")),
        ("github.com/a/b v1.1.0 => github.com/a/b v1.1.1", ("github.com/a/b",)),
        ("github.com/local/mod v0.2.0 => ../mod", ("github.com/local/mod",)),
    ],
)
def test_go_mod_settles(spec: str | None, settles: tuple[str, ...]) -> None:
    name = settles[0]
    assert go_mod_settles(Dependency(GO, name, None, "go.mod", 1, spec=spec)) == settles


def test_go_errors(tmp_path: Path) -> None:
    mod = write(
        tmp_path,
        "go.mod",
        "module m\n\nrequire github.com/x/only-path\n\nreplace github.com/a => \n\n"
        "require (\n\tgithub.com/ok/ok v1.0.0\n",
    )
    dependencies, errors = parse_file(mod, "go.mod")
    assert rows(dependencies) == [(GO, "github.com/ok/ok", "v1.0.0", 8, True)]
    assert messages(errors) == [
        "go.mod:3: malformed require: 'require github.com/x/only-path'",
        "go.mod:5: malformed replace: 'replace github.com/a =>'",
        "go.mod:7: `require (` block is not closed",
    ]
    total = write(tmp_path, "go.sum", "github.com/a/b v1.0.0 h1:abc=\ngarbage line\n")
    dependencies, errors = parse_file(total, "go.sum")
    assert rows(dependencies) == [(GO, "github.com/a/b", "v1.0.0", 1, None)]
    assert messages(errors) == ["go.sum:2: malformed go.sum line: 'garbage line'"]


CARGO_LOCK = """\
# This file is automatically @generated by Cargo.
# It is not intended for manual editing.
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "rand 0.8.5",
 "serde",
]

[[package]]
name = "cfg-if"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "baf1de4339761588bc0619e3cbc0120ee582ebb74b53b4efbf79117bd2da40fd"

[[package]]
name = "rand"
version = "0.8.5"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "34af8d1a0e25924bc5b7c43c079c942339d8f0a8b57c39049bef581b46327404"
dependencies = [
 "rand_core",
]

[[package]]
name = "rand"
version = "0.7.3"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "rand_core"
version = "0.6.4"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "serde"
version = "1.0.197"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "mygit"
version = "0.2.0"
source = "git+https://github.com/org/mygit?branch=main#abcdef"
"""


def test_cargo_lock(tmp_path: Path) -> None:
    path = write(tmp_path, "Cargo.lock", CARGO_LOCK)
    dependencies, errors = parse_file(path, "Cargo.lock")
    assert errors == []
    assert rows(dependencies) == [
        (CRATES, "cfg-if", "1.0.0", 13, False),
        (CRATES, "rand", "0.8.5", 19, True),
        (CRATES, "rand", "0.7.3", 28, False),  # the member asked for rand 0.8.5
        (CRATES, "rand_core", "0.6.4", 33, False),  # crates.io names are exact: `_` stays
        (CRATES, "serde", "1.0.197", 38, True),
        (CRATES, "mygit", None, 43, False),  # a git source: kept unpinned, with the reason (asserted below)
    ]
    assert dependencies[-1].unpinned_reason == "direct URL (git): not a registry release"
    # U+2028 and U+0085 in a comment (TOML allows them) do not move the entries: lines are counted at "\n" alone.
    shifted = write(tmp_path, "b/Cargo.lock", "# a\u2028b\u0085c\n" + CARGO_LOCK)
    dependencies, errors = parse_file(shifted, "b/Cargo.lock")
    assert errors == [] and [d.line for d in dependencies] == [14, 20, 29, 34, 39, 44]


def test_cargo_lock_errors(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "Cargo.lock",
        'version = 3\n\n[[package]]\nname = "nover"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n'
        '\n[[package]]\nname = "ok"\nversion = "1.0.0"\nsource = "registry+https://github.com/rust-lang/crates.io-index"\n',
    )
    dependencies, errors = parse_file(path, "Cargo.lock")
    assert rows(dependencies) == [(CRATES, "ok", "1.0.0", 7, None)]
    assert messages(errors) == ["Cargo.lock:3: [[package]] entry without a version: 'nover'"]
    invalid = write(tmp_path, "x/Cargo.lock", "version = 3\n[[package]\n")
    dependencies, errors = parse_file(invalid, "x/Cargo.lock")
    assert dependencies == [] and errors[0].line == 2 and "invalid TOML" in errors[0].message
