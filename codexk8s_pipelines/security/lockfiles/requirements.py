"""pip requirements files (`requirements*.txt`), including their `-r` includes.

Parsed the way pip reads them: `\\` continuations joined, comments dropped, options skipped. Only the
requirement itself goes to `packaging`, so per-requirement options (`--hash=...`) never reach it. A pin is a
single `==`/`===` without a wildcard; anything else is kept unpinned with its spec, for freshness and reports.

Direct or not: pip-compile (and `uv pip compile`) annotate each pin with `# via ...`; an entry only reached
through other packages is transitive. An entry without such an annotation was written by hand, so it is direct.
"""

from __future__ import annotations

import re
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import PYPI, url_reason
from codexk8s_pipelines.security.lockfiles._common import Sink

_COMMENT = re.compile(r"(^|\s)#.*$")
_INCLUDE = re.compile(r"^(?:--requirement|-r)\s*=?\s*(?P<target>\S+)")
_PER_REQUIREMENT_OPTION = re.compile(r"\s--[A-Za-z]")
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_EGG = re.compile(r"[#&]egg=([A-Za-z0-9][A-Za-z0-9._-]*)")
_ARCHIVE = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
_DIRECT_SOURCES = ("(pyproject.toml)", "(setup.py)", "(setup.cfg)")


def parse(text: str, sink: Sink) -> None:
    visited = {sink.path.resolve()}
    _parse(text, sink, sink.path, sink.relative, visited)


def pinned_version(specifier: SpecifierSet) -> str | None:
    """The exact version a specifier set allows, as written; None unless it is a single exact pin."""
    specs = list(specifier)
    if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
        return specs[0].version
    return None


def _name_of_url(url: str) -> str | None:
    """The project name a bare URL requirement installs: its `#egg=` fragment, else the archive's file name
    (`pkg-1.0-py3-none-any.whl`, `pkg-1.0.tar.gz`); None when neither says."""
    egg = _EGG.search(url)
    if egg:
        return egg.group(1)
    filename = url.split("#", 1)[0].split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    if filename.endswith(".whl"):
        return filename.split("-", 1)[0] or None
    for suffix in _ARCHIVE:
        if filename.endswith(suffix) and "-" in filename:
            return filename[: -len(suffix)].rsplit("-", 1)[0] or None
    return None


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line, joined text) per logical line; blank lines are kept so `# via` blocks end there."""
    result: list[tuple[int, str]] = []
    parts: list[str] = []
    start = 0
    for number, line in numbered_lines(text, "unicode"):
        if not parts:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\") and not _COMMENT.search(stripped):
            parts.append(stripped[:-1])
            continue
        parts.append(line)
        result.append((start, " ".join(part.strip() for part in parts)))
        parts = []
    if parts:
        result.append((start, " ".join(part.strip() for part in parts)))
    return result


def _split_comment(line: str) -> tuple[str, str]:
    match = _COMMENT.search(line)
    if match is None:
        return line.strip(), ""
    return line[: match.start()].strip(), match.group().strip().lstrip("#").strip()


def _via_sources(comment: str, following: list[tuple[int, str]]) -> list[str] | None:
    """The `# via` annotation of an entry, inline (`--annotation-style=line`) or on the lines after it."""
    if comment.startswith("via "):
        return [source.strip() for source in comment[4:].split(",")]
    if not following:
        return None
    head = following[0][1].strip().lstrip("#").strip()
    if head.startswith("via "):
        return [head[4:].strip()]
    if head != "via":
        return None
    sources = []
    for _number, line in following[1:]:
        stripped = line.strip()
        if not stripped.startswith("#"):
            break
        sources.append(stripped.lstrip("#").strip())
    return sources


def _is_direct(sources: list[str] | None) -> bool:
    if sources is None:
        return True
    return any(source.startswith("-r") or source.endswith(_DIRECT_SOURCES) for source in sources)


def _parse(text: str, sink: Sink, path: Path, relative: str, visited: set[Path]) -> None:
    lines = _logical_lines(text)
    for index, (number, raw) in enumerate(lines):
        content, comment = _split_comment(raw)
        if not content:
            continue
        if content.startswith("-"):
            include = _INCLUDE.match(content)
            if include:
                _include(include.group("target"), number, sink, path, relative, visited)
            # -c constraints only bound versions of what is required elsewhere; -e, -i, -f, --hash... install
            # nothing from an index by name. None of them is a dependency.
            continue
        if _URL.match(content):  # a bare URL or VCS reference: counted by its `#egg=` name, else reported
            url = content.split()[0]
            name = _name_of_url(url)
            if name:
                reason = url_reason(url)
                sink.add(PYPI, name, None, number, spec=content, direct=True, file=relative, unpinned_reason=reason)
            else:
                sink.error(number, f"{url_reason(url)} and without a package name, not matched: {url}", file=relative)
            continue
        if content.startswith((".", "/", "~")) or (content.endswith(_ARCHIVE) and "@" not in content):
            continue  # a local path: the project's own code, not a dependency
        option = _PER_REQUIREMENT_OPTION.search(content)
        requirement_text = content[: option.start()].strip() if option else content
        try:
            requirement = Requirement(requirement_text)
        except InvalidRequirement as exc:
            sink.error(number, f"cannot parse requirement {requirement_text!r}: {exc}", file=relative)
            continue
        end = index + 1
        while end < len(lines) and lines[end][1].strip().startswith("#"):
            end += 1
        following = lines[index + 1 : end]
        sink.add(
            PYPI,
            requirement.name,
            None if requirement.url else pinned_version(requirement.specifier),
            number,
            spec=requirement_text,
            direct=_is_direct(_via_sources(comment, following)),
            file=relative,
            unpinned_reason=url_reason(requirement.url) if requirement.url else None,
        )


def _include(target: str, line: int, sink: Sink, path: Path, relative: str, visited: set[Path]) -> None:
    """Follow `-r target` once: inside the scanned tree only (a requirements file must not make the scan read
    arbitrary files), and never the same file twice (cycles)."""
    if _URL.match(target):
        sink.error(line, f"include of a URL is not fetched: {target}", file=relative)
        return
    root = sink.root.resolve()
    try:
        resolved = (path.parent / target).resolve()
    except RuntimeError:  # Python 3.11 raises it for a symlink loop
        sink.error(line, f"include is a symlink loop, not read: {target}", file=relative)
        return
    if not resolved.is_relative_to(root):
        sink.error(line, f"include outside the scanned tree is not read: {target}", file=relative)
        return
    if resolved in visited:
        return
    visited.add(resolved)
    included = resolved.relative_to(root).as_posix()
    if not resolved.exists():
        sink.error(line, f"included file not found: {target}", file=relative)
        return  # anything else that is not a regular file (a FIFO, a directory) is refused by `read` by name
    text = sink.read(resolved, included)
    if text is not None:
        _parse(text, sink, resolved, included, visited)
