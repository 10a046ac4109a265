"""The one shape of a dependency, shared by the security scan and the freshness check.

Ecosystem names are OSV's spelling (`PyPI`, `npm`, `Go`, `crates.io`) so a dependency is looked up in the advisory
database and a registry without translation. Names are normalised once, here, so every consumer compares alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

PYPI = "PyPI"
NPM = "npm"
GO = "Go"
CRATES = "crates.io"
ECOSYSTEMS: tuple[str, ...] = (PYPI, NPM, GO, CRATES)

_PEP503 = re.compile(r"[-_.]+")


def normalise_name(ecosystem: str, name: str) -> str:
    """PyPI names per PEP 503 (case and `-_.` runs are not significant); npm, Go and crates names are exact
    (npm and crates.io already require lowercase names; Go module paths are case-sensitive)."""
    name = name.strip()
    if ecosystem == PYPI:
        return _PEP503.sub("-", name).lower()
    return name


def location(file: str, line: int | None) -> str:
    """`file:line` as reports write a place, or only `file` when the line is unknown."""
    return f"{file}:{line}" if line else file


@dataclass(frozen=True, slots=True)
class Dependency:
    """One resolved (or declared) dependency where it was found.

    `version` is the exact version in use; it is None for a manifest entry without a pin (`requests>=2`), which
    is kept (so freshness and reports can name it) but cannot be matched against advisories. `spec` keeps the
    declared requirement text when there is one.
    """

    ecosystem: str
    name: str
    version: str | None
    file: str  # path relative to the scanned root, with forward slashes
    line: int | None = None  # 1-based line of the entry in `file`, when the format has lines
    spec: str | None = None
    direct: bool | None = None  # True for manifest entries, False for transitive lock entries, None if unknown


@dataclass(frozen=True, slots=True)
class ExtractionError:
    """A file (or one entry of it) that could not be read: reported, never fatal to the rest of the scan."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"{location(self.file, self.line)}: {self.message}"


@dataclass(slots=True)
class Extraction:
    dependencies: list[Dependency] = field(default_factory=list)
    errors: list[ExtractionError] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # every manifest/lockfile that was read, relative paths
