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
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.parse import quote
from urllib.request import Request, urlopen

from ..security.dependencies import CRATES, GO, NPM, PYPI
from ..security.versions import InvalidVersion, UnsupportedEcosystem, compare, is_prerelease, sort_key

USER_AGENT = "codexk8s-pipelines (freshness check)"
DEFAULT_TIMEOUT = 10.0
DEFAULT_WORKERS = 8

__all__ = [
    "DEFAULT_REGISTRIES",
    "DEFAULT_TIMEOUT",
    "DEFAULT_WORKERS",
    "USER_AGENT",
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


_NAMES = {PYPI: "PyPI", NPM: "npm", GO: "the Go module proxy", CRATES: "crates.io"}


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


class _Http:
    """GET with our User-Agent and timeout; every failure mode becomes a `RegistryError` in plain words."""

    def __init__(self, registry: str, timeout: float) -> None:
        self.registry = registry
        self.timeout = timeout

    def get(self, url: str, accept: str = "application/json") -> bytes:
        request = Request(url, headers={"User-Agent": USER_AGENT, "Accept": accept})
        try:
            with urlopen(request, timeout=self.timeout) as response:
                return bytes(response.read())
        except HTTPError as exc:
            if exc.code in (404, 410):
                raise _NotFound(self.registry, f"not found on {self.registry}") from None
            raise RegistryError(self.registry, f"HTTP {exc.code} from {self.registry}") from None
        except TimeoutError:
            raise RegistryError(self.registry, self._timed_out()) from None
        except URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                raise RegistryError(self.registry, self._timed_out()) from None
            raise RegistryError(self.registry, f"cannot reach {self.registry}: {exc.reason}") from None
        except (http.client.HTTPException, OSError) as exc:
            raise RegistryError(self.registry, f"connection to {self.registry} failed: {exc}") from None

    def get_json(self, url: str) -> Any:
        body = self.get(url)
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RegistryError(self.registry, f"invalid JSON from {self.registry}") from None

    def _timed_out(self) -> str:
        return f"no answer from {self.registry} within {self.timeout:g} s"

    def unexpected(self, what: str) -> RegistryError:
        return RegistryError(self.registry, f"unexpected response from {self.registry}: {what}")


def _mapping(http: _Http, value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise http.unexpected(f"{what} is not an object")
    return value


class _PyPI:
    ecosystem = PYPI

    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.http = _Http(registry_name(PYPI), timeout)

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
        latest = latest_version(PYPI, (v for v, r in releases.items() if not r.yanked))
        return PackageInfo(PYPI, name, self.http.registry, latest, releases)


def _npm_path(name: str) -> str:
    """`@scope/name` travels as one path segment, `@scope%2fname`, as the npm client sends it."""
    if name.startswith("@") and "/" in name:
        scope, _, rest = name[1:].partition("/")
        return f"@{quote(scope, safe='')}%2f{quote(rest, safe='')}"
    return quote(name, safe="")


class _Npm:
    ecosystem = NPM

    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.http = _Http(registry_name(NPM), timeout)

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
        latest = latest_version(NPM, releases)
        notes: tuple[str, ...] = ()
        tags = document.get("dist-tags")
        tagged = tags.get("latest") if isinstance(tags, Mapping) else None
        if isinstance(tagged, str) and latest is not None and tagged != latest:
            notes = (f"dist-tags.latest is {tagged}",)
        return PackageInfo(NPM, name, self.http.registry, latest, releases, notes)


_UPPER = re.compile(r"[A-Z]")


def escape_go_path(path: str) -> str:
    """The module proxy's case encoding (`!` + lowercase for each capital), so case-insensitive file systems
    behind proxies keep `github.com/Azure/x` and `github.com/azure/x` apart; versions are escaped the same way."""
    return _UPPER.sub(lambda m: "!" + m.group(0).lower(), path)


def _go_version(version: str) -> str:
    return version if version.startswith("v") else f"v{version}"


class _GoProxy:
    ecosystem = GO

    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.http = _Http(registry_name(GO), timeout)

    def _info(self, module: str, version: str) -> Release:
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
                releases[version] = self._info(module, version)
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


class _Crates:
    ecosystem = CRATES

    def __init__(self, base: str, timeout: float) -> None:
        self.base = base.rstrip("/")
        self.http = _Http(registry_name(CRATES), timeout)

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
        latest = latest_version(CRATES, (v for v, r in releases.items() if not r.yanked))
        return PackageInfo(CRATES, name, self.http.registry, latest, releases)


_Client = _PyPI | _Npm | _GoProxy | _Crates


def _client(ecosystem: str, urls: RegistryUrls, timeout: float) -> _Client:
    if ecosystem == PYPI:
        return _PyPI(urls.pypi, timeout)
    if ecosystem == NPM:
        return _Npm(urls.npm, timeout)
    if ecosystem == GO:
        return _GoProxy(urls.go, timeout)
    if ecosystem == CRATES:
        return _Crates(urls.crates, timeout)
    raise RegistryError(ecosystem, f"no registry client for ecosystem {ecosystem!r}")


def _fetch_one(ecosystem: str, name: str, used: Collection[str], urls: RegistryUrls, timeout: float) -> PackageInfo:
    client = _client(ecosystem, urls, timeout)
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
) -> dict[tuple[str, str], PackageInfo | RegistryError]:
    """Ask the registries about each (ecosystem, name) once, `workers` at a time; the used versions go along
    because the Go proxy dates only the versions it is asked about. Each answer is a `PackageInfo` or the
    `RegistryError` that explains why there is none."""

    def run(key: tuple[str, str]) -> PackageInfo | RegistryError:
        try:
            return _fetch_one(key[0], key[1], packages[key], urls, timeout)
        except RegistryError as exc:
            return exc

    keys = list(packages)
    if not keys:
        return {}
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(keys))), thread_name_prefix="freshness") as pool:
        return dict(zip(keys, pool.map(run, keys), strict=True))
