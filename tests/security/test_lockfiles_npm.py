"""npm lockfiles: package-lock.json (v1 and v2/v3), yarn.lock (classic and Berry), pnpm-lock.yaml (5.x, 6.x, 9.x)."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.security.dependencies import NPM, Dependency, ExtractionError
from codexk8s_pipelines.security.lockfiles import parse_file
from codexk8s_pipelines.security.lockfiles.pnpm import NotRegistryKey, split_key

Row = tuple[str, str | None, int | None, bool | None]


def write(root: Path, relative: str, text: str) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def rows(dependencies: list[Dependency]) -> list[Row]:
    assert {d.ecosystem for d in dependencies} <= {NPM}
    return [(d.name, d.version, d.line, d.direct) for d in dependencies]


def messages(errors: list[ExtractionError]) -> list[str]:
    return [str(error) for error in errors]


# --- package-lock.json --------------------------------------------------------------------------------------------

PACKAGE_LOCK_V3 = """\
{
  "name": "web",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "web",
      "version": "1.0.0",
      "workspaces": [
        "packages/*"
      ],
      "dependencies": {
        "@babel/core": "^7.24.0",
        "lodash": "^4.17.21"
      },
      "devDependencies": {
        "typescript": "^5.4.0"
      }
    },
    "node_modules/@babel/core": {
      "version": "7.24.0",
      "resolved": "https://registry.npmjs.org/@babel/core/-/core-7.24.0.tgz",
      "integrity": "sha512-fQfkg0Gjkza3nf0c7/w6Xf34==",
      "dependencies": {
        "debug": "^4.1.0"
      }
    },
    "node_modules/@babel/core/node_modules/debug": {
      "version": "4.3.4",
      "resolved": "https://registry.npmjs.org/debug/-/debug-4.3.4.tgz"
    },
    "node_modules/debug": {
      "version": "2.6.9",
      "resolved": "https://registry.npmjs.org/debug/-/debug-2.6.9.tgz"
    },
    "node_modules/lodash": {
      "version": "4.17.21",
      "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.21.tgz"
    },
    "node_modules/string-width-cjs": {
      "name": "string-width",
      "version": "4.2.3",
      "resolved": "https://registry.npmjs.org/string-width/-/string-width-4.2.3.tgz"
    },
    "node_modules/typescript": {
      "version": "5.4.5",
      "dev": true
    },
    "node_modules/ui": {
      "resolved": "packages/ui",
      "link": true
    },
    "node_modules/mygit": {
      "version": "1.0.0",
      "resolved": "git+ssh://git@github.com/org/mygit.git#abc"
    },
    "packages/ui": {
      "version": "0.0.1",
      "dependencies": {
        "react": "^18.2.0"
      }
    },
    "packages/ui/node_modules/react": {
      "version": "18.2.0"
    },
    "node_modules/react": {
      "version": "17.0.2"
    }
  }
}
"""


def test_package_lock_v3(tmp_path: Path) -> None:
    path = write(tmp_path, "web/package-lock.json", PACKAGE_LOCK_V3)
    dependencies, errors = parse_file(path, "web/package-lock.json")
    assert errors == []
    assert {d.file for d in dependencies} == {"web/package-lock.json"}
    assert rows(dependencies) == [
        ("@babel/core", "7.24.0", 21, True),
        ("debug", "4.3.4", 29, False),
        ("debug", "2.6.9", 33, False),
        ("lodash", "4.17.21", 37, True),
        ("string-width", "4.2.3", 41, False),
        ("typescript", "5.4.5", 46, True),
        ("mygit", None, 54, None),  # a git dependency: kept unpinned, with the reason
        ("react", "18.2.0", 64, True),
        ("react", "17.0.2", 67, False),
    ]
    assert [d.unpinned_reason for d in dependencies if d.version is None] == [
        "direct URL (git): not a registry release"
    ]


PACKAGE_LOCK_V1 = """\
{
  "name": "old",
  "version": "1.0.0",
  "lockfileVersion": 1,
  "requires": true,
  "dependencies": {
    "accepts": {
      "version": "1.3.8",
      "resolved": "https://registry.npmjs.org/accepts/-/accepts-1.3.8.tgz",
      "requires": {
        "mime-types": "~2.1.34"
      },
      "dependencies": {
        "mime-types": {
          "version": "2.1.35",
          "resolved": "https://registry.npmjs.org/mime-types/-/mime-types-2.1.35.tgz"
        }
      }
    },
    "string-width-cjs": {
      "version": "npm:string-width@4.2.3"
    },
    "local": {
      "version": "file:../local"
    },
    "broken": {
      "resolved": "https://registry.npmjs.org/broken/-/broken-1.0.0.tgz"
    }
  }
}
"""


def test_package_lock_v1_tree(tmp_path: Path) -> None:
    path = write(tmp_path, "package-lock.json", PACKAGE_LOCK_V1)
    dependencies, errors = parse_file(path, "package-lock.json")
    assert rows(dependencies) == [
        ("accepts", "1.3.8", 7, None),
        ("mime-types", "2.1.35", 14, None),
        ("string-width", "4.2.3", 20, None),
    ]
    assert messages(errors) == ["package-lock.json:26: dependencies entry 'broken' without a version"]


PACKAGE_LOCK_V1_GIT = """\
{
  "name": "app",
  "version": "1.0.0",
  "lockfileVersion": 1,
  "requires": true,
  "dependencies": {
    "lodash": {
      "version": "4.17.15",
      "resolved": "https://registry.npmjs.org/lodash/-/lodash-4.17.15.tgz",
      "integrity": "sha512-8xOcRHvCjnocdS5cpwXQXVzmmh5e5+saE2QGoeQmbKmRS6J3VQppPOIt0MnmE+4xlZoumy0GPG0D0MVIQbNA1A=="
    },
    "my-fork": {
      "version": "github:me/lodash#0123456789abcdef0123456789abcdef01234567",
      "from": "github:me/lodash"
    },
    "via-https": {
      "version": "git+https://github.com/org/via-https.git#89abcdef0123456789abcdef0123456789abcdef",
      "from": "git+https://github.com/org/via-https.git#v2",
      "requires": {
        "ms": "^2.1.1"
      },
      "dependencies": {
        "ms": {
          "version": "2.1.3",
          "resolved": "https://registry.npmjs.org/ms/-/ms-2.1.3.tgz"
        }
      }
    },
    "via-ssh": {
      "version": "git+ssh://git@github.com/org/via-ssh.git#fedcba9876543210fedcba9876543210fedcba98",
      "from": "git+ssh://git@github.com/org/via-ssh.git"
    },
    "tarball": {
      "version": "https://example.com/tarball-1.0.0.tgz",
      "integrity": "sha512-AAAA"
    },
    "local": {
      "version": "file:../local"
    },
    "odd": {
      "version": "latest"
    }
  }
}
"""


def test_package_lock_v1_keeps_git_dependencies_unpinned_like_v2(tmp_path: Path) -> None:
    """npm 6 writes a git install's reference into `version`; v1 used to drop it silently (no SemVer), where a
    v2/v3 lock of the same install keeps it, unpinned, with the reason. A tarball URL is kept the same way, a
    local folder is the project's own, and a version that is none of these is an error rather than nothing."""
    path = write(tmp_path, "package-lock.json", PACKAGE_LOCK_V1_GIT)
    dependencies, errors = parse_file(path, "package-lock.json")
    assert [(d.name, d.version, d.line, d.direct, d.unpinned_reason) for d in dependencies] == [
        ("lodash", "4.17.15", 7, None, None),
        ("my-fork", None, 12, None, "direct URL (git): not a registry release"),
        ("via-https", None, 16, None, "direct URL (git): not a registry release"),
        ("ms", "2.1.3", 23, None, None),  # what a git install depends on is still walked
        ("via-ssh", None, 29, None, "direct URL (git): not a registry release"),
        ("tarball", None, 33, None, "direct URL: not a registry release"),
    ]
    assert messages(errors) == [
        "package-lock.json:40: dependencies entry 'odd' has version 'latest', not a registry version"
    ]
    v3 = write(
        tmp_path,
        "v3/package-lock.json",
        '{\n  "lockfileVersion": 3,\n  "packages": {\n    "": {"dependencies": {"my-fork": "github:me/lodash"}},\n'
        '    "node_modules/my-fork": {\n      "version": "4.17.21",\n'
        '      "resolved": "git+ssh://git@github.com/me/lodash.git#0123456789abcdef0123456789abcdef01234567"\n'
        "    }\n  }\n}\n",
    )
    same, _ = parse_file(v3, "v3/package-lock.json")
    assert [(d.name, d.version, d.unpinned_reason) for d in same] == [
        ("my-fork", None, "direct URL (git): not a registry release")
    ]


def nested_v1_lock(levels: int) -> str:
    """A v1 lock whose tree nests `levels` packages inside each other, one per line, `p1` the outermost."""
    opening = "".join(f'"p{n}": {{"version": "1.0.{n}", "dependencies": {{\n' for n in range(1, levels + 1))
    return '{"lockfileVersion": 1,\n"dependencies": {\n' + opening + "}}" * levels + "}}\n"


def test_package_lock_v1_tree_nested_to_the_json_limit(tmp_path: Path) -> None:
    """31 packages inside each other is 64 JSON levels, the most a lockfile may nest: every one is found at its
    line, with the error of a level that is not an object spelt out by its path."""
    path = write(tmp_path, "package-lock.json", nested_v1_lock(31))
    dependencies, errors = parse_file(path, "package-lock.json")
    assert rows(dependencies) == [(f"p{n}", f"1.0.{n}", n + 2, None) for n in range(1, 32)]
    assert errors == []
    odd = nested_v1_lock(3).replace(
        '"p3": {"version": "1.0.3", "dependencies": {', '"p3": {"version": "1.0.3", "dependencies": ['
    )
    odd = odd.replace("}}}}}}}}", "]}}}}}}}")
    dependencies, errors = parse_file(write(tmp_path, "b/package-lock.json", odd), "b/package-lock.json")
    assert [d.name for d in dependencies] == ["p1", "p2", "p3"]
    assert messages(errors) == [
        "b/package-lock.json:5: dependencies.p1.dependencies.p2.dependencies.p3.dependencies is not an object"
    ]


def test_package_lock_nested_past_the_json_limit_is_refused_at_its_line(tmp_path: Path) -> None:
    """One more package is 66 levels. Nesting is refused past 64, as for YAML: key lines cost memory per level
    (before, a 3 MB lock nested 900 deep took 2.2 GB)."""
    path = write(tmp_path, "package-lock.json", nested_v1_lock(32))
    assert parse_file(path, "package-lock.json") == (
        [],
        [ExtractionError("package-lock.json", 34, "invalid JSON: nested deeper than 64 levels")],  # p32 opens level 65
    )


def test_package_lock_errors(tmp_path: Path) -> None:
    shape = write(tmp_path, "a/package-lock.json", '{\n  "lockfileVersion": 3,\n  "packages": []\n}\n')
    assert parse_file(shape, "a/package-lock.json") == (
        [],
        [ExtractionError("a/package-lock.json", 3, "`packages` is not an object")],
    )
    entries = write(
        tmp_path,
        "b/package-lock.json",
        '{\n  "lockfileVersion": 3,\n  "packages": {\n    "": {},\n'
        '    "node_modules/nover": {\n      "resolved": "https://registry.npmjs.org/nover/-/nover-1.0.0.tgz"\n    },\n'
        '    "node_modules/odd": 3,\n    "node_modules/ok": {"version": "1.0.0"}\n  }\n}\n',
    )
    dependencies, errors = parse_file(entries, "b/package-lock.json")
    assert rows(dependencies) == [("ok", "1.0.0", 9, False)]
    assert messages(errors) == [
        "b/package-lock.json: packages['node_modules/odd'] is not an object",  # a scalar value: its line is unknown
        "b/package-lock.json:5: packages['node_modules/nover'] without a version",
    ]
    invalid = write(tmp_path, "c/package-lock.json", '{\n  "packages": {\n    "node_modules/a": {,\n  }\n}\n')
    dependencies, errors = parse_file(invalid, "c/package-lock.json")
    assert dependencies == []
    assert [(e.line, e.message.startswith("invalid JSON")) for e in errors] == [(3, True)]


# --- yarn.lock ----------------------------------------------------------------------------------------------------

YARN_CLASSIC = """\
# THIS IS AN AUTOGENERATED FILE. DO NOT EDIT THIS FILE DIRECTLY.
# yarn lockfile v1


"@babel/code-frame@^7.0.0", "@babel/code-frame@^7.22.13":
  version "7.22.13"
  resolved "https://registry.yarnpkg.com/@babel/code-frame/-/code-frame-7.22.13.tgz#e3c1c099402598483b7a8c46a721d1038803755e"
  integrity sha512-XktuhWlJ5g+3TJXc5upd9Ks1==
  dependencies:
    "@babel/highlight" "^7.22.13"
    chalk "^2.4.2"

lodash@^4.17.20, lodash@^4.17.21:
  version "4.17.21"
  resolved "https://registry.yarnpkg.com/lodash/-/lodash-4.17.21.tgz#679591c564c3bffaae8454cf0b3df370c3d6911c"

"strip-ansi-cjs@npm:strip-ansi@^6.0.1":
  version "6.0.1"
  resolved "https://registry.yarnpkg.com/strip-ansi/-/strip-ansi-6.0.1.tgz#9e26c63d30f53443e9489495b2105d37b67a85d9"

"mylib@git+https://github.com/org/mylib.git#v1":
  version "1.0.0"
  resolved "git+https://github.com/org/mylib.git#abc"

"local@file:../local":
  version "0.0.1"

broken@^1.0.0:
  resolved "https://registry.yarnpkg.com/broken/-/broken-1.0.0.tgz"
"""


def test_yarn_classic(tmp_path: Path) -> None:
    path = write(tmp_path, "yarn.lock", YARN_CLASSIC)
    dependencies, errors = parse_file(path, "yarn.lock")
    assert rows(dependencies) == [
        ("@babel/code-frame", "7.22.13", 5, None),
        ("lodash", "4.17.21", 13, None),
        ("strip-ansi", "6.0.1", 17, None),
        ("mylib", None, 21, None),  # a git dependency: kept unpinned, with the reason; `file:` is the project's
    ]
    assert dependencies[-1].unpinned_reason == "direct URL (git): not a registry release"
    assert messages(errors) == ["yarn.lock:28: entry 'broken@^1.0.0' without a version"]


YARN_BERRY = """\
# This file is generated by running "yarn install" inside your project.
# Manual changes might be lost - proceed with caution!

__metadata:
  version: 8
  cacheKey: 10c0

"@types/node@npm:^20.0.0":
  version: 20.12.7
  resolution: "@types/node@npm:20.12.7"
  dependencies:
    undici-types: "npm:~5.26.4"
  checksum: 10c0/dc9ab2ad4e1d8a3c0e2f9fc0
  languageName: node
  linkType: hard

"lodash@npm:^4.17.20, lodash@npm:^4.17.21":
  version: 4.17.21
  resolution: "lodash@npm:4.17.21"
  checksum: 10c0/d8cbea072bb08655bb4c989d
  languageName: node
  linkType: hard

"resolve@patch:resolve@npm%3A^1.22.8#optional!builtin<compat/resolve>":
  version: 1.22.8
  resolution: "resolve@patch:resolve@npm%3A1.22.8#optional!builtin<compat/resolve>::version=1.22.8&hash=c3c19d"
  languageName: node
  linkType: hard

"resolve@npm:^1.22.8":
  version: 1.22.8
  resolution: "resolve@npm:1.22.8"
  languageName: node
  linkType: hard

"web@workspace:.":
  version: 0.0.0-use.local
  resolution: "web@workspace:."
  languageName: unknown
  linkType: soft

"string-width-cjs@npm:string-width@^4.2.0":
  version: 4.2.3
  resolution: "string-width@npm:4.2.3"
  languageName: node
  linkType: hard

"nover@npm:^1.0.0":
  resolution: "nover@npm:1.0.0"
  languageName: node
  linkType: hard
"""


def test_yarn_berry(tmp_path: Path) -> None:
    path = write(tmp_path, "yarn.lock", YARN_BERRY)
    dependencies, errors = parse_file(path, "yarn.lock")
    assert rows(dependencies) == [
        ("@types/node", "20.12.7", 8, None),
        ("lodash", "4.17.21", 17, None),
        ("resolve", "1.22.8", 30, None),
        ("string-width", "4.2.3", 42, None),
    ]
    assert messages(errors) == ["yarn.lock:48: entry 'nover@npm:^1.0.0' without a version"]


def test_yarn_berry_invalid_yaml_and_classic_garbage(tmp_path: Path) -> None:
    berry = write(tmp_path, "a/yarn.lock", '__metadata:\n  version: 8\n\n"a@npm:^1":\n  version: [1\n')
    dependencies, errors = parse_file(berry, "a/yarn.lock")
    assert dependencies == [] and len(errors) == 1
    assert errors[0].message.startswith("invalid YAML") and errors[0].line is not None

    classic = write(tmp_path, "b/yarn.lock", 'a@^1:\n  version "1.0.0"\nthis is not yarn\nb@^2:\n  version "2.0.0"\n')
    dependencies, errors = parse_file(classic, "b/yarn.lock")
    assert rows(dependencies) == [("a", "1.0.0", 1, None), ("b", "2.0.0", 4, None)]
    assert messages(errors) == ["b/yarn.lock:3: unexpected line 'this is not yarn'"]


# --- pnpm-lock.yaml -----------------------------------------------------------------------------------------------

PNPM_V9 = """\
lockfileVersion: '9.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

importers:

  .:
    dependencies:
      react-dom:
        specifier: ^18.2.0
        version: 18.2.0(react@18.2.0)
      string-width-cjs:
        specifier: npm:string-width@^4.2.0
        version: string-width@4.2.3
    devDependencies:
      '@types/react':
        specifier: ^18.2.0
        version: 18.2.79

packages:

  '@types/prop-types@15.7.12':
    resolution: {integrity: sha512-5zvhXYtRNRluoE/jAp4GVsSd==}

  '@types/react@18.2.79':
    resolution: {integrity: sha512-RwGAGXPl9kSXwdNTafkOEuFr==}

  js-tokens@4.0.0:
    resolution: {integrity: sha512-RdJUflcE3cUzKiMqQgsCu06F==}

  loose-envify@1.4.0:
    resolution: {integrity: sha512-lyuxPGr/Wfhrlem2CL/UcnUc==}
    hasBin: true

  react-dom@18.2.0:
    resolution: {integrity: sha512-6IMTriUmvsjHUjNtEDudZfuD==}
    peerDependencies:
      react: ^18.2.0

  react@18.2.0:
    resolution: {integrity: sha512-/3IjMdb2L9QbBdWiW5e3P2/n==}
    engines: {node: '>=0.10.0'}

  string-width@4.2.3:
    resolution: {integrity: sha512-wKyQRQpjJ0sIp62ErSZdGsjM==}

  mylib@https://codeload.github.com/org/mylib/tar.gz/abc123:
    resolution: {tarball: https://codeload.github.com/org/mylib/tar.gz/abc123}
    version: 1.0.0

snapshots:

  '@types/prop-types@15.7.12': {}

  react-dom@18.2.0(react@18.2.0):
    dependencies:
      loose-envify: 1.4.0
      react: 18.2.0
"""


def test_pnpm_v9(tmp_path: Path) -> None:
    path = write(tmp_path, "pnpm-lock.yaml", PNPM_V9)
    dependencies, errors = parse_file(path, "pnpm-lock.yaml")
    assert errors == []
    assert rows(dependencies) == [
        ("@types/prop-types", "15.7.12", 24, False),
        ("@types/react", "18.2.79", 27, True),
        ("js-tokens", "4.0.0", 30, False),
        ("loose-envify", "1.4.0", 33, False),
        ("react-dom", "18.2.0", 37, True),
        ("react", "18.2.0", 42, False),
        ("string-width", "4.2.3", 46, True),
        ("mylib", None, 49, None),  # a tarball URL: kept unpinned, with the reason
    ]
    assert dependencies[-1].unpinned_reason == "direct URL: not a registry release"


PNPM_V6 = """\
lockfileVersion: '6.0'

settings:
  autoInstallPeers: true
  excludeLinksFromLockfile: false

dependencies:
  react-dom:
    specifier: ^18.2.0
    version: 18.2.0(react@18.2.0)

packages:

  /@babel/runtime@7.24.4:
    resolution: {integrity: sha512-dkxf7+hn8mFBwKjs9bvBlArz==}
    engines: {node: '>=6.9.0'}
    dependencies:
      regenerator-runtime: 0.14.1
    dev: false

  /react-dom@18.2.0(react@18.2.0):
    resolution: {integrity: sha512-6IMTriUmvsjHUjNtEDudZfuD==}
    peerDependencies:
      react: ^18.2.0
    dependencies:
      loose-envify: 1.4.0
      react: 18.2.0
      scheduler: 0.23.0
    dev: false

  /react@18.2.0:
    resolution: {integrity: sha512-/3IjMdb2L9QbBdWiW5e3P2/n==}
    dev: false
"""


def test_pnpm_v6(tmp_path: Path) -> None:
    path = write(tmp_path, "pnpm-lock.yaml", PNPM_V6)
    dependencies, errors = parse_file(path, "pnpm-lock.yaml")
    assert errors == []
    assert rows(dependencies) == [
        ("@babel/runtime", "7.24.4", 14, False),
        ("react-dom", "18.2.0", 21, True),
        ("react", "18.2.0", 31, False),
    ]


PNPM_V5 = """\
lockfileVersion: 5.4

specifiers:
  '@emotion/react': ^11.11.0
  react: ^18.2.0

dependencies:
  '@emotion/react': 11.11.4_react@18.2.0
  react: 18.2.0

packages:

  /@emotion/react/11.11.4_react@18.2.0:
    resolution: {integrity: sha512-a==}
    peerDependencies:
      react: '>=16.8.0'
    dev: false

  /@emotion/react/11.11.4_@types+react@18.2.79+react@18.2.0:
    resolution: {integrity: sha512-a==}
    dev: false

  /react/18.2.0:
    resolution: {integrity: sha512-c==}
    dev: false

  /scheduler/0.23.0:
    resolution: {integrity: sha512-d==}
    dev: true
"""


def test_pnpm_v5_peer_suffixes_collapse(tmp_path: Path) -> None:
    path = write(tmp_path, "pnpm-lock.yaml", PNPM_V5)
    dependencies, errors = parse_file(path, "pnpm-lock.yaml")
    assert errors == []
    assert rows(dependencies) == [
        ("@emotion/react", "11.11.4", 13, True),
        ("react", "18.2.0", 23, True),
        ("scheduler", "0.23.0", 27, False),
    ]


def test_pnpm_errors(tmp_path: Path) -> None:
    invalid = write(tmp_path, "a/pnpm-lock.yaml", "lockfileVersion: '9.0'\npackages:\n  a@1.0.0: [\n")
    dependencies, errors = parse_file(invalid, "a/pnpm-lock.yaml")
    assert dependencies == [] and len(errors) == 1 and errors[0].message.startswith("invalid YAML")

    shape = write(tmp_path, "b/pnpm-lock.yaml", "lockfileVersion: '9.0'\n\npackages:\n  - a@1.0.0\n")
    assert parse_file(shape, "b/pnpm-lock.yaml") == (
        [],
        [ExtractionError("b/pnpm-lock.yaml", 4, "`packages` is not a mapping")],
    )

    keys = write(
        tmp_path,
        "c/pnpm-lock.yaml",
        "lockfileVersion: '6.0'\n\npackages:\n\n  /nover:\n    resolution: {integrity: x}\n\n"
        "  /ok@1.0.0:\n    resolution: {integrity: y}\n",
    )
    dependencies, errors = parse_file(keys, "c/pnpm-lock.yaml")
    assert rows(dependencies) == [("ok", "1.0.0", 8, None)]
    assert messages(errors) == ["c/pnpm-lock.yaml:5: package key '/nover' without a version"]


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("react@18.2.0", ("react", "18.2.0")),
        ("@babel/core@7.24.0", ("@babel/core", "7.24.0")),
        ("/react-dom@18.2.0(react@18.2.0)", ("react-dom", "18.2.0")),
        ("/@emotion/react@11.11.4(@types/react@18.2.79)(react@18.2.0)", ("@emotion/react", "11.11.4")),
        ("/react-dom/18.2.0_react@18.2.0", ("react-dom", "18.2.0")),
        ("/@babel/plugin-x/7.0.0_@babel+core@7.24.0", ("@babel/plugin-x", "7.0.0")),
        ("/@babel/core/7.24.0", ("@babel/core", "7.24.0")),
        ("typescript@5.5.0-beta", ("typescript", "5.5.0-beta")),
        ("foo@file:../foo", None),
        ("foo@https://codeload.github.com/org/foo/tar.gz/abc", None),
        ("github.com/org/foo/abc123", None),
    ],
)
def test_pnpm_package_keys(key: str, expected: tuple[str, str] | None) -> None:
    if expected is None:
        with pytest.raises(NotRegistryKey):
            split_key(key)
    else:
        assert split_key(key) == expected
