"""Version orderings of Maven, RubyGems, Packagist, NuGet, Pub, Hex and CRAN, as OSV evaluates them.

Each is checked against the shared vectors (osv-scalibr's `semantic/testdata`, in `tests/security`). Before
writing any, `univers` (a maintained library of version schemes) was measured on the same vectors:

| ecosystem | univers                         | here                                                      |
|-----------|---------------------------------|-----------------------------------------------------------|
| NuGet     | 35/35 exact                     | univers `NugetVersion`, adopted as is                     |
| Maven     | 97/102 (`1.0-release` != `1.0`) | univers' port of Maven's ComparableVersion, wrapped: the  |
|           | and `hash` disagrees with `==`  | `release` qualifier normalised, hashed on its canonical   |
|           |                                 | form so that equal versions meet in sets                  |
| RubyGems  | 23/25, `1beta` rejected         | Gem::Version's algorithm, written here                    |
| Packagist | 64/95                           | PHP `version_compare` (what Composer uses), written here  |
| Pub       | 86/100 (build metadata ignored) | pub_semver's ordering (build metadata orders), here       |
| Hex       | (SemVer 2.0)                    | the SemVer ordering of `versions.py`                      |
| CRAN      | no scheme                       | numeric components, written here                          |

Orderings whose equality is not a plain tuple comparison (Packagist's `#` equals every number, RubyGems pads
with zeros) return a `CmpKey`: comparable with its own kind, hashable consistently with its equality.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

__all__ = ["CmpKey", "ParsedVersion", "parse"]

ParsedVersion = tuple[Any, bool, tuple[int, int, int]]  # (sort key, is prerelease, release triple)


class CmpKey:
    """A sort key defined by a three-way comparison; `hash_key` must be equal for versions that compare equal."""

    __slots__ = ("cmp", "hash_key", "value")

    def __init__(self, value: Any, cmp: Callable[[Any, Any], int], hash_key: Any) -> None:
        self.value, self.cmp, self.hash_key = value, cmp, hash_key

    def _compare(self, other: object) -> int:
        if not isinstance(other, CmpKey) or other.cmp is not self.cmp:
            return NotImplemented
        return self.cmp(self.value, other.value)

    def __eq__(self, other: object) -> bool:
        result = self._compare(other)
        return result == 0 if result is not NotImplemented else NotImplemented

    def __lt__(self, other: object) -> bool:
        return self._compare(other) < 0

    def __le__(self, other: object) -> bool:
        return self._compare(other) <= 0

    def __gt__(self, other: object) -> bool:
        return self._compare(other) > 0

    def __ge__(self, other: object) -> bool:
        return self._compare(other) >= 0

    def __hash__(self) -> int:
        return hash(self.hash_key)

    def __repr__(self) -> str:
        return f"CmpKey({self.value!r})"


def _sign(value: int) -> int:
    return (value > 0) - (value < 0)


def triple(*parts: str | int | None) -> tuple[int, int, int]:
    """(major, minor, patch) from the leading parts (ints or digit strings); a missing or None part is 0."""
    padded = [*(int(part or 0) for part in parts[:3]), 0, 0, 0]
    return padded[0], padded[1], padded[2]


def identifiers(text: str) -> tuple[tuple[int, int, str], ...]:
    """Dot-separated identifiers (SemVer §11): numeric ones by value, before alphanumeric ones in ASCII order."""
    return tuple((0, int(i), "") if i.isdigit() else (1, 0, i) for i in text.split("."))


def prerelease_key(pre: str | None) -> tuple[Any, ...]:
    """SemVer §11: a release outranks its prereleases; identifiers compare numerically when all digits, else in
    ASCII order, numeric before alphanumeric, and a longer list wins when it extends a shorter one."""
    return (1,) if pre is None else (0, identifiers(pre))


_LEADING_NUMBERS = re.compile(r"v?(\d+)(?:[.](\d+))?(?:[.](\d+))?", re.IGNORECASE)


def _leading_triple(version: str) -> tuple[int, int, int]:
    match = _LEADING_NUMBERS.match(version)
    return triple(*match.groups()) if match else (0, 0, 0)


# --- Maven ------------------------------------------------------------------------------------------------------

_MAVEN_TEXT = re.compile(r"[A-Za-z0-9._+-]+")
_MAVEN_RELEASE = re.compile(r"(?i)(?:[.-]|(?<=\d))(?:release|ga|final)(?=$|[.-])")
_MAVEN_PRE = re.compile(r"(?i)(alpha|beta|milestone|snapshot|preview|(?<![a-z])(?:rc|cr)|(?<![a-z])[abm](?=\d))")


def _maven_cmp(a: Any, b: Any) -> int:
    return _sign(a.__cmp__(b))


def _maven(version: str) -> ParsedVersion:
    from univers import maven

    if not _MAVEN_TEXT.fullmatch(version):
        raise ValueError(version)
    # `ga`, `final` and (since Maven 3.9) `release` mean "no qualifier": univers misses `release`, and keeps
    # `ga` in the middle of a version (`1-ga-1` != `1-1`); dropping them first gives Maven's own result.
    parsed = maven.Version(_MAVEN_RELEASE.sub("", version) or "0")
    key = CmpKey(parsed, _maven_cmp, str(parsed._parsed))
    return key, bool(_MAVEN_PRE.search(version)), _leading_triple(version)


# --- NuGet ------------------------------------------------------------------------------------------------------


def _nuget(version: str) -> ParsedVersion:
    from univers.versions import NugetVersion

    try:
        # univers declares its attrs fields as `string = attr.ib(type=str)`, without an annotation, so a checker
        # reading attrs' dataclass_transform sees no field and no `__init__` parameter.
        parsed = NugetVersion(version)  # pyright: ignore[reportCallIssue]
    except Exception:  # univers raises its own error types, not all of them ValueErrors
        raise ValueError(version) from None
    release = version.split("+", 1)[0]
    return parsed, "-" in release, _leading_triple(version)


# --- RubyGems ---------------------------------------------------------------------------------------------------

_GEM_TEXT = re.compile(r"[0-9][0-9A-Za-z.-]*")
_GEM_SEGMENT = re.compile(r"[0-9]+|[A-Za-z]+")


def _gem_canonical(version: str) -> tuple[int | str, ...]:
    """Gem::Version#canonical_segments: `-` reads as `.pre.`; trailing zeros of the release part and of the
    prerelease part are dropped."""
    segments: list[int | str] = [
        int(s) if s.isdigit() else s for s in _GEM_SEGMENT.findall(version.replace("-", ".pre."))
    ]
    first_string = next((i for i, s in enumerate(segments) if isinstance(s, str)), len(segments))
    parts = [segments[:first_string], segments[first_string:]]
    out: list[int | str] = []
    for part in parts:
        while part and part[-1] == 0:
            part.pop()
        out.extend(part)
    return tuple(out)


def _gem_cmp(a: tuple[int | str, ...], b: tuple[int | str, ...]) -> int:
    for i in range(max(len(a), len(b))):
        left = a[i] if i < len(a) else 0
        right = b[i] if i < len(b) else 0
        if left == right:
            continue
        if isinstance(left, str) and isinstance(right, int):
            return -1
        if isinstance(left, int) and isinstance(right, str):
            return 1
        return -1 if left < right else 1  # type: ignore[operator]
    return 0


def _rubygems(version: str) -> ParsedVersion:
    if not _GEM_TEXT.fullmatch(version):
        raise ValueError(version)
    canonical = _gem_canonical(version)
    prerelease = any(c.isalpha() for c in version)
    return CmpKey(canonical, _gem_cmp, canonical), prerelease, _leading_triple(version)


# --- Packagist (PHP version_compare) ----------------------------------------------------------------------------

_COMPOSER_TEXT = re.compile(r"[A-Za-z0-9._+#-]+")
_SPECIAL_FORMS = (("dev", 0), ("alpha", 1), ("a", 1), ("beta", 2), ("b", 2), ("RC", 3), ("rc", 3), ("#", 4))
_SPECIAL_FORMS += (("pl", 5), ("p", 5))
_NUMBER_FORM = "#N#"


def _php_canonical(version: str) -> tuple[str, ...]:
    """php_canonicalize_version: `-_+` become `.`, a `.` goes between digits and non-digits, other
    non-alphanumerics become `.`."""
    out: list[str] = [version[0]]
    previous = version[0]
    for char in version[1:]:
        if char in "-_+":
            if out[-1] != ".":
                out.append(".")
        elif (previous.isdigit() and not char.isdigit() and char != ".") or (
            not previous.isdigit() and previous != "." and char.isdigit()
        ):
            if out[-1] != ".":
                out.append(".")
            out.append(char)
        elif not char.isalnum() and char != "#":
            if out[-1] != ".":
                out.append(".")
        else:
            out.append(char)
        previous = char
    return tuple("".join(out).split("."))


def _special(form: str) -> int:
    for name, order in _SPECIAL_FORMS:
        if form.startswith(name):
            return order
    return -6


def _php_token_cmp(a: str, b: str) -> int:
    if a.isdigit() and b.isdigit():
        return _sign(int(a) - int(b))
    if not a.isdigit() and not b.isdigit():
        return _sign(_special(a) - _special(b))
    if a.isdigit():
        return _sign(_special(_NUMBER_FORM) - _special(b))
    return _sign(_special(a) - _special(_NUMBER_FORM))


def _php_cmp(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    for left, right in zip(a, b, strict=False):
        result = _php_token_cmp(left, right)
        if result:
            return result
    if len(a) > len(b):
        rest = a[len(b)]
        return 1 if rest.isdigit() else _php_cmp(a[len(b) :], (_NUMBER_FORM,))
    if len(b) > len(a):
        rest = b[len(a)]
        return -1 if rest.isdigit() else _php_cmp((_NUMBER_FORM,), b[len(a) :])
    return 0


def _packagist(version: str) -> ParsedVersion:
    text = version[1:] if version[:1] in "vV" and version[1:2].isdigit() else version
    if not _COMPOSER_TEXT.fullmatch(text):
        raise ValueError(version)
    tokens = _php_canonical(text)
    # `#` equals every number, so no finer hash is consistent with equality; sets of Packagist keys are small.
    prerelease = any(_special(t) in (0, 1, 2, 3) for t in tokens if not t.isdigit())
    return CmpKey(tokens, _php_cmp, "Packagist"), prerelease, _leading_triple(text)


# --- Pub (pub_semver) -------------------------------------------------------------------------------------------

_PUB = re.compile(
    r"v?(?P<major>\d+)(?:\.(?P<minor>\d+))?(?:\.(?P<patch>\d+))?(?P<more>(?:\.\d+)*)"
    r"(?:-(?P<pre>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)


def _pub(version: str) -> ParsedVersion:
    match = _PUB.fullmatch(version)
    if match is None:
        raise ValueError(version)
    release = triple(match["major"], match["minor"], match["patch"])
    more = tuple(int(n) for n in match["more"].split(".")[1:])
    pre = prerelease_key(match["pre"])
    build = (0,) if match["build"] is None else (1, identifiers(match["build"]))  # a build sorts after none
    return (*release, more, pre, build), match["pre"] is not None, release


# --- CRAN -------------------------------------------------------------------------------------------------------

_CRAN = re.compile(r"\d+(?:[.-]\d+)*")


def _cran(version: str) -> ParsedVersion:
    if not _CRAN.fullmatch(version):
        raise ValueError(version)
    numbers = [int(n) for n in re.split(r"[.-]", version)]
    return tuple(numbers), False, triple(*numbers)


PARSERS: dict[str, Callable[[str], ParsedVersion]] = {
    "Maven": _maven,
    "NuGet": _nuget,
    "RubyGems": _rubygems,
    "Packagist": _packagist,
    "Pub": _pub,
    "CRAN": _cran,
}


def parse(ecosystem: str, version: str) -> ParsedVersion:
    """(key, prerelease, triple) for one of `PARSERS`; ValueError when the version is not one of its kind.
    Not cached here: its caller, `versions._parse`, is."""
    return PARSERS[ecosystem](version)
