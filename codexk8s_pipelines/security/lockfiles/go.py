"""Go modules: `go.mod` (what the module requires, with `replace` applied) and `go.sum` (what was downloaded).

Versions are kept as Go writes them (`v1.2.3`, `v0.0.0-2023...-abcdef`, `+incompatible`); OSV's Go ranges
omit the `v`, which the matcher strips.

`replace` decides what is built: a versioned replacement (`a => b v1.2.0`, or `a v1.0.0 => a v1.0.1`) puts
`b v1.2.0` in place of the requirement, reported under the replacement's path since that is the code used; a
local-path replacement (`a => ../a`) is not a registry version, so the entry keeps its name and loses its
version. A `go.sum` module line without the `/go.mod` suffix means the module's source was downloaded;
versions only present as `/go.mod` lines were consulted for the module graph and are not built.

`go.sum` is not a list of what is built, though: it keeps a checksum for every version the module ever needed
and `go mod tidy` leaves old ones behind. Where a `go.mod` sits beside it, `go.mod` settles each module it
requires (`go_mod_settles`), and the walker drops `go.sum`'s other versions of those modules.
"""

from __future__ import annotations

from dataclasses import dataclass

from codexk8s_pipelines.file_lines import numbered_lines
from codexk8s_pipelines.security.dependencies import GO, Dependency
from codexk8s_pipelines.security.lockfiles._common import Sink


@dataclass(frozen=True, slots=True)
class _Replace:
    new: str
    version: str | None  # None: a local directory


def _tokens(code: str) -> list[str]:
    return [token.strip('"`') for token in code.replace("(", " ( ").replace(")", " ) ").split()]


def parse_go_mod(text: str, sink: Sink) -> None:
    requires: list[tuple[int, str, str, bool]] = []  # line, module, version, indirect
    replaces: dict[tuple[str, str | None], _Replace] = {}
    block: str | None = None
    block_line = 0
    for number, raw in numbered_lines(text):
        code, _, comment = raw.partition("//")
        tokens = _tokens(code)
        if not tokens:
            continue
        if block is None and len(tokens) >= 2 and tokens[1] == "(":
            block, block_line = tokens[0], number
            tokens = tokens[2:]
            if not tokens:
                continue
        if block is not None:
            if tokens == [")"]:
                block = None
                continue
            verb, arguments = block, tokens
        else:
            verb, arguments = tokens[0], tokens[1:]
        indirect = comment.strip().startswith("indirect")
        if verb == "require":
            if len(arguments) != 2:
                sink.error(number, f"malformed require: {code.strip()!r}")
                continue
            requires.append((number, arguments[0], arguments[1], indirect))
        elif verb == "replace":
            _replace(arguments, number, code, replaces, sink)
    if block is not None:
        sink.error(block_line, f"`{block} (` block is not closed")
    for number, module, version, indirect in requires:
        replacement = replaces.get((module, version)) or replaces.get((module, None))
        if replacement is None:
            sink.add(GO, module, version, number, direct=not indirect)
            continue
        target = f"{replacement.new} {replacement.version}" if replacement.version else replacement.new
        spec = f"{module} {version} => {target}"
        if replacement.version:
            sink.add(GO, replacement.new, replacement.version, number, spec=spec, direct=not indirect)
        else:
            sink.add(GO, module, None, number, spec=spec, direct=not indirect)


def go_mod_settles(dependency: Dependency) -> tuple[str, ...]:
    """The module paths whose built version a `go.mod` entry decides: the module it reports, and, when a
    `replace` reports another module (or a local folder) in its place, the module it requires (the path that
    opens its spec, `a v1.0.0 => b v1.2.0`).

    The build uses exactly one version of each of these, the one `go.mod` names (a tidy `go.mod` records the
    version minimal version selection picks; since Go 1.17 it lists indirect modules too), so any other version
    of them in `go.sum` is a leftover checksum, not code that is built: reported, it would be a finding telling
    the user to upgrade to the version they already use."""
    if dependency.spec and " => " in dependency.spec:
        required = dependency.spec.split(" ", 1)[0]
        return (dependency.name,) if required == dependency.name else (dependency.name, required)
    return (dependency.name,)


def _replace(
    arguments: list[str], number: int, code: str, replaces: dict[tuple[str, str | None], _Replace], sink: Sink
) -> None:
    if "=>" not in arguments:
        sink.error(number, f"malformed replace: {code.strip()!r}")
        return
    arrow = arguments.index("=>")
    old, new = arguments[:arrow], arguments[arrow + 1 :]
    if len(old) not in (1, 2) or len(new) not in (1, 2):
        sink.error(number, f"malformed replace: {code.strip()!r}")
        return
    replaces[(old[0], old[1] if len(old) == 2 else None)] = _Replace(new[0], new[1] if len(new) == 2 else None)


def parse_go_sum(text: str, sink: Sink) -> None:
    """A version on several lines is reported once, at its first: go.sum is a lockfile, so `dedupe` sees to it.
    Versions a `go.mod` beside this file settles otherwise are dropped later, by the walker, which sees both."""
    for number, raw in numbered_lines(text):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) != 3 or ":" not in fields[2]:  # module, version, `h1:<hash>`
            sink.error(number, f"malformed go.sum line: {raw.strip()!r}")
            continue
        module, version, _hash = fields
        if version.endswith("/go.mod"):
            continue
        sink.add(GO, module, version, number)
