"""One small client per package registry: every published release of a package, its date, and the latest one.

Each client makes the fewest requests its registry allows (one per package, except the Go proxy, which dates a
version only through a `.info` request per version) and turns every failure into a `RegistryError` that names
the registry and the reason, so one bad package never hides the answers for the others.

Choosing "latest" is the same everywhere: the highest version by the ecosystem's own ordering
(`security.versions`) that is neither a prerelease nor yanked. Registry-specific rules:

- PyPI: a version is yanked when every one of its files is (PEP 592 yanks files, the UI yanks a release); a
  version without files was never installable and is ignored. Its date is the first file's upload.
- npm: `deprecated` versions still count (deprecation is advice, the code is still served). `dist-tags.latest`
  is what `npm install` picks, but publishers can point it anywhere (a backport, an older line), so the highest
  stable version by SemVer order is authoritative; when the tag disagrees the package gets a note saying so.
- Go: the proxy's `@v/list` names tagged versions only; their dates need `.info`, fetched for the used versions
  and the latest one. `+incompatible` versions (a v2+ tag without a go.mod) are counted as "latest" only when the
  module has no compatible release or the used version is itself `+incompatible`: the go command likewise does
  not move a module that has a go.mod onto them. Retractions (in the latest go.mod) are not consulted. A module
  with no tagged version falls back to the proxy's `@latest` (then a pseudo-version: there is nothing else).
- crates.io: the `yanked` flag; the API refuses requests without a User-Agent, so every request names us.
- Maven Central: the search API's `gav` core lists every version with its upload time (ms since the epoch).
- RubyGems: `/api/v1/versions/<gem>.json`; yanked versions are not listed; one entry per platform, the earliest
  date kept.
- Packagist: `/p2/<vendor>/<name>.json` (Composer v2 metadata); branches (`dev-*`) are not releases.
- NuGet: the registration index (`<id>/index.json`) of the `registration5-gz-semver2` hive, the only one that
  lists SemVer 2.0.0 versions (dotted prereleases such as `9.0.0-preview.1.24080.9`, `+metadata`): the older
  `registration5-semver1` hive leaves them out, so a project on one would read as using an unpublished version.
  Pages that are not inlined are fetched; unlisted versions (`listed: false`, or the sentinel 1900-01-01
  publish date) count as yanked.
- pub.dev: `/api/packages/<name>`; `retracted` versions count as yanked.
- hex.pm: `/api/packages/<name>`; retired releases count as yanked.

Every answer is read against a size cap (`max_bytes`: a registry that sends hundreds of MB is refused, not
buffered) and every call against the check's total deadline (`Deadline`): a registry that trickles one byte a
second ends at the deadline, at most one per-request timeout late, instead of hanging the check.

Answers may be gzip-compressed (`Content-Encoding: gzip`; NuGet's semver2 hive always is, and we ask every
registry for it, since the large npm and PyPI documents shrink several times). They are inflated as they
arrive, and the cap holds for the inflated size too: a few hundred KB of gzip can inflate to gigabytes, and
checking only what crossed the wire would let such a bomb exhaust memory.
"""

from __future__ import annotations

import http.client
import re
import time
import zlib
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ..domain.untrusted_data import UntrustedDataError, loads_json
from ..security.dependencies import CRATES, GO, HEX, MAVEN, NPM, NUGET, PACKAGIST, PUB, PYPI, RUBYGEMS
from ..security.versions import InvalidVersion, UnsupportedEcosystem, compare, is_prerelease, sort_key

USER_AGENT = "codexk8s-pipelines (freshness check)"
DEFAULT_TIMEOUT = 10.0
DEFAULT_WORKERS = 8
DEFAULT_DEADLINE = 600.0  # seconds for the whole check
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # per answer; npm's largest package documents are tens of MB
_CHUNK = 64 * 1024

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_REGISTRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKERS",
    "USER_AGENT",
    "Deadline",
    "PackageInfo",
    "RegistryError",
    "RegistryUrls",
    "Release",
    "escape_go_path",
    "fetch_packages",
    "latest_version",
    "parse_time",
    "registry_name",
]


@dataclass(frozen=True, slots=True)
class RegistryUrls:
    """Base URLs, without a trailing slash, so tests and mirrors (a private PyPI, a GOPROXY) can stand in."""

    pypi: str = "https://pypi.org"
    npm: str = "https://registry.npmjs.org"
    go: str = "https://proxy.golang.org"
    crates: str = "https://crates.io"
    maven: str = "https://search.maven.org"
    rubygems: str = "https://rubygems.org"
    packagist: str = "https://repo.packagist.org"
    nuget: str = "https://api.nuget.org/v3/registration5-gz-semver2"  # the hive that lists SemVer 2.0.0 versions
    pub: str = "https://pub.dev"
    hex: str = "https://hex.pm"


DEFAULT_REGISTRIES = RegistryUrls()


class RegistryError(Exception):
    """A registry could not answer for one package: reported with that package, never fatal to the check."""

    def __init__(self, registry: str, reason: str) -> None:
        super().__init__(reason)
        self.registry = registry
        self.reason = reason


class _NotFound(RegistryError):
    """HTTP 404/410: the Go client tells "this version does not exist" apart from a failing registry."""


@dataclass(frozen=True, slots=True)
class Release:
    version: str
    published: datetime | None  # None when the registry does not date it (npm `time` missing, Go undated)
    yanked: bool = False


@dataclass(frozen=True, slots=True)
class PackageInfo:
    """What a registry knows about one package: every release it answered about, yanked ones included, so a
    dependency pinned to a yanked version is still dated rather than called unpublished."""

    ecosystem: str
    name: str
    registry: str
    latest: str | None
    releases: Mapping[str, Release] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def find(self, version: str) -> Release | None:
        """The release of `version`, also when spelled differently but equal in the ecosystem's ordering
        (`1.0` and `1.0.0` on PyPI, `1.2.3` and `v1.2.3` in Go)."""
        found = self.releases.get(version)
        if found is not None:
            return found
        for candidate, release in self.releases.items():
            try:
                if compare(self.ecosystem, candidate, version) == 0 and _same_build(candidate, version):
                    return release
            except (InvalidVersion, UnsupportedEcosystem):
                continue
        return None


def _same_build(a: str, b: str) -> bool:
    """SemVer ignores build metadata in ordering, but `v2.0.0+incompatible` and `v2.0.0` are distinct Go versions."""
    return a.partition("+")[2] == b.partition("+")[2]


_NAMES = {
    PYPI: "PyPI",
    NPM: "npm",
    GO: "the Go module proxy",
    CRATES: "crates.io",
    MAVEN: "Maven Central",
    RUBYGEMS: "RubyGems.org",
    PACKAGIST: "Packagist",
    NUGET: "NuGet",
    PUB: "pub.dev",
    HEX: "hex.pm",
}


def registry_name(ecosystem: str) -> str:
    """The registry's name as people say it, for error messages."""
    return _NAMES.get(ecosystem, ecosystem)


def parse_time(value: Any) -> datetime | None:
    """Registry timestamps are ISO 8601 in UTC; one without an offset (PyPI's legacy `upload_time`) is UTC too."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def latest_version(ecosystem: str, versions: Iterable[str]) -> str | None:
    """The highest version that is not a prerelease; versions the ordering cannot parse are skipped, not fatal
    (PyPI and npm histories hold a few)."""
    best: str | None = None
    best_key: Any = None
    for version in versions:
        try:
            if is_prerelease(ecosystem, version):
                continue
            key = sort_key(ecosystem, version)
        except InvalidVersion:
            continue
        if best_key is None or key > best_key:
            best, best_key = version, key
    return best


class Deadline:
    """The end of the whole check, shared by every request of it (monotonic clock)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else self.end - time.monotonic()

    def passed(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= 0

    def message(self, registry: str) -> str:
        return f"no complete answer from {registry} within the check's total deadline of {self.seconds:g} s"


_NO_DEADLINE = Deadline(None)


_GZIP = frozenset({"gzip", "x-gzip"})


class _Inflated(Exception):
    """The inflated answer went past the cap."""


class _Gunzip:
    """Inflates a gzip body chunk by chunk, never holding more than `limit` inflated bytes (plus one, to know the
    limit was passed): `zlib`'s `max_length` stops each step at the room left, so a bomb is refused after
    `limit` bytes of output instead of after all of them. Several gzip members in a row are one body (RFC 1952)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self.started = False
        self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)

    def feed(self, data: bytes) -> bytes:
        """The bytes `data` inflates to; `zlib.error` on a corrupt stream, `_Inflated` past the limit."""
        out: list[bytes] = []
        while data:
            self.started = True
            if self._inflater.eof:  # the previous member ended: what follows is the next one
                self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
            piece = self._inflater.decompress(data, self.limit - self.size + 1)
            self.size += len(piece)
            if self.size > self.limit:
                raise _Inflated
            out.append(piece)
            data = self._inflater.unused_data if self._inflater.eof else self._inflater.unconsumed_tail
        return b"".join(out)

    def complete(self) -> bool:
        """Whether the body ended where a gzip member ends (an empty body is an empty answer, not a cut one)."""
        return not self.started or self._inflater.eof


class _Http:
    """GET with our User-Agent and timeout, read against the size cap and the total deadline; every failure
    mode becomes a `RegistryError` in plain words."""

    def __init__(
        self, registry: str, timeout: float, deadline: Deadline = _NO_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.registry = registry
        self.timeout = timeout
        self.deadline = deadline
        self.max_bytes = max_bytes

    def _too_big(self, inflated: bool = False) -> RegistryError:
        what = "inflates to more than" if inflated else "is over"
        return RegistryError(
            self.registry, f"answer from {self.registry} {what} the {self.max_bytes / 1024 / 1024:g} MB cap: not read"
        )

    def _gunzip(self, response: Any) -> _Gunzip | None:
        """The decoder the answer's `Content-Encoding` calls for, None for none; an encoding we did not ask for
        is refused by name rather than parsed as garbled JSON."""
        codings = [c.strip().lower() for c in (response.headers.get("Content-Encoding") or "").split(",")]
        codings = [c for c in codings if c and c != "identity"]
        if not codings:
            return None
        if len(codings) == 1 and codings[0] in _GZIP:
            return _Gunzip(self.max_bytes)
        raise RegistryError(
            self.registry, f"answer from {self.registry} is encoded as {', '.join(codings)!r}, which is not read"
        )

    def _read(self, response: Any) -> bytes:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > self.max_bytes:
            raise self._too_big()
        gunzip = self._gunzip(response)
        chunks: list[bytes] = []
        total = 0
        while True:
            if self.deadline.passed():
                raise RegistryError(self.registry, self.deadline.message(self.registry))
            chunk = response.read1(_CHUNK)
            if not chunk:
                if gunzip is not None and not gunzip.complete():
                    raise RegistryError(self.registry, f"gzip answer from {self.registry} is cut short")
                return b"".join(chunks)
            total += len(chunk)
            if total > self.max_bytes:
                raise self._too_big()
            if gunzip is not None:
                try:
                    chunk = gunzip.feed(chunk)
                except _Inflated:
                    raise self._too_big(inflated=True) from None
                except zlib.error as exc:
                    raise RegistryError(self.registry, f"corrupt gzip answer from {self.registry}: {exc}") from None
            chunks.append(chunk)

    def get(self, url: str, accept: str = "application/json") -> bytes:
        if self.deadline.passed():
            raise RegistryError(self.registry, self.deadline.message(self.registry))
        remaining = self.deadline.remaining()
        timeout = self.timeout if remaining is None else max(0.05, min(self.timeout, remaining))
        request = Request(url, headers={"User-Agent": USER_AGENT, "Accept": accept, "Accept-Encoding": "gzip"})
        try:
            with urlopen(request, timeout=timeout) as response:
                return self._read(response)
        except RegistryError:
            raise
        except HTTPError as exc:
            if exc.code in (404, 410):
                raise _NotFound(self.registry, f"not found on {self.registry}") from None
            raise RegistryError(self.registry, f"HTTP {exc.code} from {self.registry}") from None
        except TimeoutError:
            raise RegistryError(self.registry, self._timed_out(timeout)) from None
        except URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise RegistryError(self.registry, self._timed_out(timeout)) from None
            raise RegistryError(self.registry, f"cannot reach {self.registry}: {exc.reason}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise RegistryError(self.registry, f"connection to {self.registry} failed: {exc}") from None

    def get_json(self, url: str) -> Any:
        body = self.get(url)
        try:
            return loads_json(body, f"the answer from {self.registry}")
        except UntrustedDataError as exc:
            why = f": {exc.reason}" if exc.too_deep else ""
            raise RegistryError(self.registry, f"invalid JSON from {self.registry}{why}") from None

    def _timed_out(self, timeout: float) -> str:
        if timeout < self.timeout:  # cut short by the total deadline
            return self.deadline.message(self.registry)
        return f"no answer from {self.registry} within {self.timeout:g} s"

    def unexpected(self, what: str) -> RegistryError:
        return RegistryError(self.registry, f"unexpected response from {self.registry}: {what}")


def _mapping(http: _Http, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise http.unexpected(f"{what} is not an object")
    return value


class _Base:
    """What every registry client shares: its base URL, its HTTP session, and the answer from its releases."""

    ecosystem = ""

    def __init__(
        self, base: str, timeout: float, deadline: Deadline = _NO_DEADLINE, max_bytes: int = DEFAULT_MAX_BYTES
    ) -> None:
        self.base = base.rstrip("/")
        self.http = _Http(registry_name(self.ecosystem), timeout, deadline, max_bytes)

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        """What the registry knows about `name`; `used` are the versions the project uses."""
        raise NotImplementedError

    def _info(self, name: str, releases: dict[str, Release], notes: tuple[str, ...] = ()) -> PackageInfo:
        """The package's answer: the latest release not yanked, and every release."""
        latest = latest_version(self.ecosystem, (v for v, r in releases.items() if not r.yanked))
        return PackageInfo(self.ecosystem, name, self.http.registry, latest, releases, notes)


class _PyPI(_Base):
    ecosystem = PYPI

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        document = _mapping(self.http, self.http.get_json(f"{self.base}/pypi/{quote(name, safe='')}/json"), "body")
        releases: dict[str, Release] = {}
        for version, files in _mapping(self.http, document.get("releases"), "`releases`").items():
            if not isinstance(files, list):
                raise self.http.unexpected(f"`releases[{version!r}]` is not a list")
            if not files:
                continue
            if not all(isinstance(f, Mapping) for f in files):
                raise self.http.unexpected(f"`releases[{version!r}]` holds a non-object")
            dates = [d for d in (parse_time(f.get("upload_time_iso_8601") or f.get("upload_time")) for f in files) if d]
            releases[version] = Release(
                version, min(dates) if dates else None, yanked=all(bool(f.get("yanked")) for f in files)
            )
        return self._info(name, releases)


def _npm_path(name: str) -> str:
    """`@scope/name` travels as one path segment, `@scope%2fname`, as the npm client sends it."""
    if name.startswith("@") and "/" in name:
        scope, _, rest = name[1:].partition("/")
        return f"@{quote(scope, safe='')}%2f{quote(rest, safe='')}"
    return quote(name, safe="")


class _Npm(_Base):
    ecosystem = NPM

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        document = _mapping(self.http, self.http.get_json(f"{self.base}/{_npm_path(name)}"), "body")
        times = document.get("time") or {}
        if not isinstance(times, Mapping):
            raise self.http.unexpected("`time` is not an object")
        versions = document.get("versions")
        if versions is None and "unpublished" in times:
            raise RegistryError(self.http.registry, f"unpublished from {self.http.registry}")
        versions = _mapping(self.http, versions, "`versions`")
        releases = {v: Release(v, parse_time(times.get(v))) for v in versions}
        info = self._info(name, releases)  # npm has no yanked release: the latest of all of them
        tags = document.get("dist-tags")
        tagged = tags.get("latest") if isinstance(tags, Mapping) else None
        if isinstance(tagged, str) and info.latest is not None and tagged != info.latest:
            return replace(info, notes=(f"dist-tags.latest is {tagged}",))
        return info


_UPPER = re.compile(r"[A-Z]")


def escape_go_path(path: str) -> str:
    """The module proxy's case encoding (`!` + lowercase for each capital), so case-insensitive file systems
    behind proxies keep `github.com/Azure/x` and `github.com/azure/x` apart; versions are escaped the same way."""
    return _UPPER.sub(lambda m: "!" + m.group(0).lower(), path)


def _go_version(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


class _GoProxy(_Base):
    ecosystem = GO

    def _release(self, module: str, version: str) -> Release:
        info = self.http.get_json(f"{self.base}/{module}/@v/{escape_go_path(version)}.info")
        info = _mapping(self.http, info, f"{version}.info")
        if not isinstance(info.get("Version"), str):
            raise self.http.unexpected(f"{version}.info has no `Version`")
        return Release(version, parse_time(info.get("Time")))

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        module = escape_go_path(name)
        listing = self.http.get(f"{self.base}/{module}/@v/list", accept="text/plain")
        try:
            listed = [line.split()[0] for line in listing.decode("utf-8").splitlines() if line.strip()]
        except UnicodeDecodeError:
            raise self.http.unexpected("`@v/list` is not text") from None
        used_versions = {_go_version(v) for v in used}
        latest = self._latest(listed, used_versions)
        releases: dict[str, Release] = {v: Release(v, None) for v in listed}
        if latest is None and not listed:
            try:
                fallback = self._latest_endpoint(module)
            except _NotFound:
                fallback = None
            if fallback is not None:  # the proxy's own pick, maybe a pseudo-version: there is nothing else
                latest = fallback.version
                releases[latest] = fallback
        for version in sorted(used_versions | ({latest} if latest else set())):
            if releases.get(version) is not None and releases[version].published is not None:
                continue
            try:
                releases[version] = self._release(module, version)
            except _NotFound:
                releases.pop(version, None)  # listed but gone, or a pseudo-version that never existed
        return PackageInfo(GO, name, self.http.registry, latest, releases)

    def _latest_endpoint(self, module: str) -> Release | None:
        info = _mapping(self.http, self.http.get_json(f"{self.base}/{module}/@latest"), "@latest")
        version = info.get("Version")
        return Release(version, parse_time(info.get("Time"))) if isinstance(version, str) else None

    @staticmethod
    def _latest(listed: list[str], used: set[str]) -> str | None:
        compatible = [v for v in listed if not v.endswith("+incompatible")]
        best = latest_version(GO, compatible)
        if best is None or any(v.endswith("+incompatible") for v in used):
            best = latest_version(GO, listed)
        return best


class _Crates(_Base):
    ecosystem = CRATES

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        document = _mapping(self.http, self.http.get_json(f"{self.base}/api/v1/crates/{quote(name, safe='')}"), "body")
        entries = document.get("versions")
        if not isinstance(entries, list):
            raise self.http.unexpected("`versions` is not a list")
        releases: dict[str, Release] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("num"), str):
                raise self.http.unexpected("a `versions` entry has no `num`")
            num = entry["num"]
            releases[num] = Release(num, parse_time(entry.get("created_at")), yanked=bool(entry.get("yanked")))
        return self._info(name, releases)


def _epoch_ms(value: Any) -> datetime | None:
    if isinstance(value, int | float) and value > 0:
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


class _MavenCentral(_Base):
    ecosystem = MAVEN

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        group, sep, artifact = name.partition(":")
        if not sep or not group or not artifact:
            raise RegistryError(self.http.registry, f"not a Maven `group:artifact` name: {name!r}")
        query = f'g:"{group}" AND a:"{artifact}"'
        url = f"{self.base}/solrsearch/select?q={quote(query)}&core=gav&rows=1000&wt=json"
        document = _mapping(self.http, self.http.get_json(url), "body")
        response = _mapping(self.http, document.get("response"), "`response`")
        docs = response.get("docs")
        if not isinstance(docs, list):
            raise self.http.unexpected("`response.docs` is not a list")
        if not docs:
            raise _NotFound(self.http.registry, f"not found on {self.http.registry}")
        releases: dict[str, Release] = {}
        for doc in docs:
            if not isinstance(doc, Mapping) or not isinstance(doc.get("v"), str):
                raise self.http.unexpected("a `docs` entry has no `v`")
            releases[doc["v"]] = Release(doc["v"], _epoch_ms(doc.get("timestamp")))
        return self._info(name, releases)


class _RubyGems(_Base):
    ecosystem = RUBYGEMS

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        entries = self.http.get_json(f"{self.base}/api/v1/versions/{quote(name, safe='')}.json")
        if not isinstance(entries, list):
            raise self.http.unexpected("the versions answer is not a list")
        releases: dict[str, Release] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("number"), str):
                raise self.http.unexpected("a version entry has no `number`")
            number, published = entry["number"], parse_time(entry.get("created_at"))
            known = releases.get(number)  # one entry per platform: the earliest is the release
            if known is None or (published and (known.published is None or published < known.published)):
                releases[number] = Release(number, published)
        return self._info(name, releases)


class _Packagist(_Base):
    ecosystem = PACKAGIST

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        vendor, sep, package = name.partition("/")
        if not sep:
            raise RegistryError(self.http.registry, f"not a `vendor/name` Composer package: {name!r}")
        url = f"{self.base}/p2/{quote(vendor, safe='')}/{quote(package, safe='')}.json"
        document = _mapping(self.http, self.http.get_json(url), "body")
        packages = _mapping(self.http, document.get("packages"), "`packages`")
        entries = packages.get(name) or packages.get(name.lower())
        if not isinstance(entries, list):
            raise self.http.unexpected(f"`packages[{name!r}]` is not a list")
        releases: dict[str, Release] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
                raise self.http.unexpected("a package entry has no `version`")
            version = entry["version"]
            if version.startswith("dev-") or version.endswith("-dev"):
                continue
            releases[version] = Release(version, parse_time(entry.get("time")))
        return self._info(name, releases)


_NUGET_UNLISTED = datetime(1900, 1, 1, tzinfo=UTC)


class _NuGet(_Base):
    ecosystem = NUGET

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        index = _mapping(
            self.http, self.http.get_json(f"{self.base}/{quote(name.lower(), safe='')}/index.json"), "body"
        )
        pages = index.get("items")
        if not isinstance(pages, list):
            raise self.http.unexpected("`items` is not a list")
        releases: dict[str, Release] = {}
        for page in pages:
            page = _mapping(self.http, page, "a registration page")
            leaves = page.get("items")
            if leaves is None and isinstance(page.get("@id"), str):  # large packages: pages are not inlined
                page = _mapping(self.http, self.http.get_json(page["@id"]), "a registration page")
                leaves = page.get("items")
            if not isinstance(leaves, list):
                raise self.http.unexpected("a page's `items` is not a list")
            for leaf in leaves:
                entry = leaf.get("catalogEntry") if isinstance(leaf, Mapping) else None
                if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
                    raise self.http.unexpected("a leaf has no `catalogEntry.version`")
                version = entry["version"].split("+", 1)[0]
                published = parse_time(entry.get("published"))
                unlisted = entry.get("listed") is False or (published is not None and published <= _NUGET_UNLISTED)
                releases[version] = Release(version, None if unlisted else published, yanked=unlisted)
        return self._info(name, releases)


class _PubDev(_Base):
    ecosystem = PUB

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        document = _mapping(self.http, self.http.get_json(f"{self.base}/api/packages/{quote(name, safe='')}"), "body")
        entries = document.get("versions")
        if not isinstance(entries, list):
            raise self.http.unexpected("`versions` is not a list")
        releases: dict[str, Release] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
                raise self.http.unexpected("a `versions` entry has no `version`")
            version = entry["version"]
            releases[version] = Release(
                version, parse_time(entry.get("published")), yanked=bool(entry.get("retracted"))
            )
        return self._info(name, releases)


class _HexPm(_Base):
    ecosystem = HEX

    def fetch(self, name: str, used: Collection[str]) -> PackageInfo:
        document = _mapping(self.http, self.http.get_json(f"{self.base}/api/packages/{quote(name, safe='')}"), "body")
        entries = document.get("releases")
        if not isinstance(entries, list):
            raise self.http.unexpected("`releases` is not a list")
        retired = document.get("retirements")
        retired = retired if isinstance(retired, Mapping) else {}
        releases: dict[str, Release] = {}
        for entry in entries:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("version"), str):
                raise self.http.unexpected("a `releases` entry has no `version`")
            version = entry["version"]
            releases[version] = Release(version, parse_time(entry.get("inserted_at")), yanked=version in retired)
        return self._info(name, releases)


_CLIENTS: dict[str, tuple[str, type[_Base]]] = {
    PYPI: ("pypi", _PyPI),
    NPM: ("npm", _Npm),
    GO: ("go", _GoProxy),
    CRATES: ("crates", _Crates),
    MAVEN: ("maven", _MavenCentral),
    RUBYGEMS: ("rubygems", _RubyGems),
    PACKAGIST: ("packagist", _Packagist),
    NUGET: ("nuget", _NuGet),
    PUB: ("pub", _PubDev),
    HEX: ("hex", _HexPm),
}


def _client(ecosystem: str, urls: RegistryUrls, timeout: float, deadline: Deadline, max_bytes: int) -> _Base:
    found = _CLIENTS.get(ecosystem)
    if found is None:
        raise RegistryError(ecosystem, f"no registry client for ecosystem {ecosystem!r}")
    field_name, cls = found
    return cls(getattr(urls, field_name), timeout, deadline, max_bytes)


def _fetch_one(
    ecosystem: str,
    name: str,
    used: Collection[str],
    urls: RegistryUrls,
    timeout: float,
    deadline: Deadline,
    max_bytes: int,
) -> PackageInfo:
    client = _client(ecosystem, urls, timeout, deadline, max_bytes)
    try:
        return client.fetch(name, used)
    except RegistryError:
        raise
    except Exception as exc:  # a document shaped unlike any we know must not end the whole check
        raise client.http.unexpected(f"{type(exc).__name__}: {exc}") from None


def fetch_packages(
    packages: Mapping[tuple[str, str], Collection[str]],
    *,
    urls: RegistryUrls = DEFAULT_REGISTRIES,
    workers: int = DEFAULT_WORKERS,
    timeout: float = DEFAULT_TIMEOUT,
    deadline: float | None = DEFAULT_DEADLINE,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> dict[tuple[str, str], PackageInfo | RegistryError]:
    """Ask the registries about each (ecosystem, name) once, `workers` at a time; the used versions go along
    because the Go proxy dates only the versions it is asked about. Each answer is a `PackageInfo` or the
    `RegistryError` that explains why there is none. `deadline` (seconds, None for none) bounds the whole
    call: packages not answered by then get an error saying so; `max_bytes` caps each answer."""
    limit = Deadline(deadline)

    def run(key: tuple[str, str]) -> PackageInfo | RegistryError:
        try:
            return _fetch_one(key[0], key[1], packages[key], urls, timeout, limit, max_bytes)
        except RegistryError as exc:
            return exc

    keys = list(packages)
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys))), thread_name_prefix="freshness") as pool:
        return dict(zip(keys, pool.map(run, keys), strict=True))
