"""Dependencies from the manifests and lockfiles of a source tree, with the line each one is declared on.

One module per format family; this module walks the tree, picks the format by file name (`KNOWN_FILES`) and
collects what the parsers find. Nothing raises out of `extract_dependencies`: an unreadable, oversized or
malformed file, or one bad entry in it, becomes an `ExtractionError` and the scan goes on.

Within one lockfile, a package version listed several times (nested `node_modules`, pnpm peer variants) is
reported once, at its first line. Across files nothing is merged except Go: a module that a directory's
`go.mod` requires is reported only from `go.mod`, at the version `go.mod` names, never from the `go.sum` beside
it, whatever versions that lists (`go.sum` keeps stale checksums; `go.mod` says what is built and whether it is
direct). `go.sum` adds only the modules `go.mod` does not name (before Go 1.17, `go.mod` may omit indirect ones).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath

from codexk8s_pipelines.security.dependencies import (
    CRAN,
    CRATES,
    GO,
    HEX,
    MAVEN,
    NPM,
    NUGET,
    PACKAGIST,
    PUB,
    PYPI,
    RUBYGEMS,
    Dependency,
    Extraction,
    ExtractionError,
)
from codexk8s_pipelines.security.lockfiles import (
    cargo,
    dart,
    dotnet,
    elixir,
    go,
    jvm,
    npm,
    php,
    pnpm,
    pylocks,
    pyproject,
    r,
    requirements,
    ruby,
    yarn,
)
from codexk8s_pipelines.security.lockfiles._common import MAX_FILE_BYTES, Parser, Sink, dedupe
from codexk8s_pipelines.security.safe_files import MAX_DEPTH, TOO_DEEP, UnsafeFile, resolve_inside, walk_tree

__all__ = [
    "DEFAULT_EXCLUDES",
    "KNOWN_FILES",
    "MAX_DEPTH",
    "MAX_FILE_BYTES",
    "KnownFile",
    "extract_dependencies",
    "known_file",
    "parse_file",
]


DEFAULT_EXCLUDES: frozenset[str] = frozenset(
    {
        # version control
        ".git",
        ".hg",
        ".svn",
        # installed dependencies: their own manifests are not this project's
        "node_modules",
        "bower_components",
        ".venv",
        "venv",
        "site-packages",
        "vendor",
        ".yarn",
        ".pnpm-store",
        # tool caches and build output
        "__pycache__",
        ".tox",
        ".nox",
        ".eggs",
        ".mypy_cache",
        ".pytest_cache",
        ".ruff_cache",
        ".cache",
        "target",
        "dist",
        "build",
    }
)


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A recognised file: `pattern` is matched (case-sensitively, as the tools name them) against the last as
    many path components as it has, so `requirements/*.txt` matches `a/requirements/dev.txt`."""

    pattern: str
    ecosystem: str
    lockfile: bool  # True: resolved versions, transitive entries included; False: a manifest of declarations
    parser: Parser

    def matches(self, relative: str) -> bool:
        return self.matches_parts(PurePosixPath(relative).parts)

    def matches_parts(self, parts: tuple[str, ...]) -> bool:
        """`matches` for a path already split into its components."""
        depth = self.pattern.count("/") + 1
        return fnmatchcase("/".join(parts[-depth:]), self.pattern)


KNOWN_FILES: tuple[KnownFile, ...] = (
    KnownFile("requirements*.txt", PYPI, False, requirements.parse),
    KnownFile("*-requirements.txt", PYPI, False, requirements.parse),
    KnownFile("*_requirements.txt", PYPI, False, requirements.parse),
    KnownFile("requirements/*.txt", PYPI, False, requirements.parse),
    KnownFile("pyproject.toml", PYPI, False, pyproject.parse),
    KnownFile("poetry.lock", PYPI, True, pylocks.parse_poetry_lock),
    KnownFile("uv.lock", PYPI, True, pylocks.parse_uv_lock),
    KnownFile("Pipfile.lock", PYPI, True, pylocks.parse_pipfile_lock),
    KnownFile("package-lock.json", NPM, True, npm.parse_package_lock),
    KnownFile("npm-shrinkwrap.json", NPM, True, npm.parse_package_lock),
    KnownFile("yarn.lock", NPM, True, yarn.parse_yarn_lock),
    KnownFile("pnpm-lock.yaml", NPM, True, pnpm.parse_pnpm_lock),
    KnownFile("go.mod", GO, False, go.parse_go_mod),
    KnownFile("go.sum", GO, True, go.parse_go_sum),
    KnownFile("Cargo.lock", CRATES, True, cargo.parse_cargo_lock),
    KnownFile("pom.xml", MAVEN, False, jvm.parse_pom),
    KnownFile("gradle.lockfile", MAVEN, True, jvm.parse_gradle_lockfile),
    KnownFile("buildscript-gradle.lockfile", MAVEN, True, jvm.parse_gradle_lockfile),
    KnownFile("Gemfile.lock", RUBYGEMS, True, ruby.parse_gemfile_lock),
    KnownFile("composer.lock", PACKAGIST, True, php.parse_composer_lock),
    KnownFile("packages.lock.json", NUGET, True, dotnet.parse_packages_lock),
    KnownFile("pubspec.lock", PUB, True, dart.parse_pubspec_lock),
    KnownFile("mix.lock", HEX, True, elixir.parse_mix_lock),
    KnownFile("renv.lock", CRAN, True, r.parse_renv_lock),
)


def known_file(relative: str) -> KnownFile | None:
    """The format of a file by its path, or None if it is not one this package reads."""
    parts = PurePosixPath(relative).parts
    for known in KNOWN_FILES:
        if known.matches_parts(parts):
            return known
    return None


def parse_file(path: Path, relative: str) -> tuple[list[Dependency], list[ExtractionError]]:
    """Dependencies and errors of one file, its format chosen by name. `relative` is the path reported for it;
    the scanned root is taken to be `path` minus `relative`, and `-r` includes may not leave it."""
    parts = PurePosixPath(relative).parts
    root = path.parents[len(parts) - 1] if 0 < len(parts) <= len(path.parents) else path.parent
    sink = _parse(path, relative, root)
    return _sorted_dependencies(sink.dependencies), _sorted_errors(sink.errors)


def extract_dependencies(root: Path, *, exclude_dirs: frozenset[str] = DEFAULT_EXCLUDES) -> Extraction:
    """Every recognised file under `root`, parsed; directories named in `exclude_dirs` are not entered and
    symlinks are not followed out of the tree."""
    result = Extraction()
    try:
        base = root.resolve(strict=True)
    except RuntimeError:  # Python 3.11's word for a symlink loop
        result.errors.append(ExtractionError(".", None, "cannot read the scan root: symlink loop"))
        return result
    except OSError as exc:
        result.errors.append(ExtractionError(".", None, f"cannot read the scan root: {exc.strerror or exc}"))
        return result
    if not base.is_dir():
        result.errors.append(ExtractionError(".", None, "the scan root is not a directory"))
        return result

    dependencies: set[Dependency] = set()
    errors: set[ExtractionError] = set()
    files: set[str] = set()

    def unlistable(exc: OSError) -> None:
        where = _relative(Path(exc.filename), base) if exc.filename else "."
        errors.add(ExtractionError(where, None, f"cannot list directory: {exc.strerror or exc}"))

    def too_deep(folder: Path) -> None:
        errors.add(ExtractionError(_relative(folder, base), None, TOO_DEEP))

    for directory, filenames in walk_tree(base, too_deep=too_deep, unlistable=unlistable, exclude=exclude_dirs):
        for filename in filenames:
            path = Path(directory, filename)
            relative = _relative(path, base)
            known = known_file(relative)
            if known is None:
                continue
            if path.is_symlink():
                try:
                    path = resolve_inside(path, base)
                except UnsafeFile as exc:
                    errors.add(ExtractionError(relative, None, str(exc)))
                    continue
            sink = _parse(path, relative, base, known)
            dependencies.update(sink.dependencies)
            errors.update(sink.errors)
            files.update(sink.files)

    result.dependencies = _sorted_dependencies(_drop_go_sum_duplicates(dependencies))
    result.errors = _sorted_errors(errors)
    result.files = sorted(files)
    return result


def _parse(path: Path, relative: str, root: Path, known: KnownFile | None = None) -> Sink:
    sink = Sink(path=path, relative=relative, root=root)
    known = known or known_file(relative)
    if known is None:
        sink.error(None, "not a recognised manifest or lockfile name")
        return sink
    text = sink.read(path, relative)
    if text is None:
        return sink
    try:
        known.parser(text, sink)
    except Exception as exc:  # a parser bug on odd input must not end the scan of every other file
        sink.error(None, f"could not be parsed ({type(exc).__name__}: {exc})")
    if known.lockfile:
        sink.dependencies = dedupe(sink.dependencies)
    return sink


def _drop_go_sum_duplicates(dependencies: set[Dependency]) -> list[Dependency]:
    """Drop every `go.sum` entry of a module that the `go.mod` in the same directory settles (`go_mod_settles`),
    at any version: the same version is a duplicate, another one is a stale checksum the build does not use
    (reported, it would be findings for code that is not built, fixed by the version already in use)."""
    settled: set[tuple[str, str]] = {
        (posixpath.dirname(dep.file), module)
        for dep in dependencies
        if dep.ecosystem == GO and posixpath.basename(dep.file) == "go.mod"
        for module in go.go_mod_settles(dep)
    }
    return [
        dep
        for dep in dependencies
        if not (
            dep.ecosystem == GO
            and posixpath.basename(dep.file) == "go.sum"
            and (posixpath.dirname(dep.file), dep.name) in settled
        )
    ]


def _relative(path: Path, base: Path) -> str:
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return path.as_posix()


def _sorted_dependencies(dependencies: list[Dependency] | set[Dependency]) -> list[Dependency]:
    return sorted(dependencies, key=lambda d: (d.file, d.line or 0, d.name, d.version or "", d.spec or ""))


def _sorted_errors(errors: list[ExtractionError] | set[ExtractionError]) -> list[ExtractionError]:
    return sorted(errors, key=lambda e: (e.file, e.line or 0, e.message))
