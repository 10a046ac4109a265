"""A local fake of four package registries, for the freshness client to talk to over real HTTP.

One `http.server` on 127.0.0.1 in a daemon thread serves, under one prefix each, PyPI's JSON API, npm registry
documents, the Go module proxy (`@v/list`, `.info`, `@latest`) and the crates.io API. Tests publish packages
with the `publish_*` methods, which write documents shaped like the real ones (with the extra fields a real
registry sends, so the client is shown to ignore them), and break single paths on purpose: a status (`fail`), a
delay longer than the client's timeout (`hang`), a body that is not JSON (`garble`). Every request is recorded
with its raw path and headers, to assert one request per package, the crates.io User-Agent, Go's `!`-escaping.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from codexk8s_pipelines.freshness.registries import RegistryUrls, escape_go_path
from tests.helpers import free_port

PYPI_PREFIX = "/pypi"
NPM_PREFIX = "/npm"
GO_PREFIX = "/goproxy"
CRATES_PREFIX = "/crates"


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    delay: float = 0.0
    trickle: float = 0.0  # seconds between single bytes of the body: a registry that never quite stops
    headers: dict[str, str] = field(default_factory=dict)  # extra response headers (`Content-Encoding: gzip`)


@dataclass(frozen=True)
class Recorded:
    path: str  # raw, as sent: `%2f` and `!` stay visible
    headers: dict[str, str]


@dataclass
class PyPIFile:
    """One distribution file of a release; the sdist and wheel of a release usually upload minutes apart."""

    uploaded: str
    yanked: bool = False
    packagetype: str = "sdist"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _shift(iso: str, minutes: int) -> str:
    moment = datetime.fromisoformat(iso) + timedelta(minutes=minutes)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pypi_document(name: str, releases: Mapping[str, Sequence[PyPIFile]]) -> dict[str, Any]:
    """`GET /pypi/<name>/json` as PyPI answers it (trimmed `info`, full file entries)."""

    def file_entry(version: str, f: PyPIFile) -> dict[str, Any]:
        filename = f"{name}-{version}.tar.gz" if f.packagetype == "sdist" else f"{name}-{version}-py3-none-any.whl"
        return {
            "comment_text": "",
            "digests": {
                "blake2b_256": _digest(filename)[:64],
                "md5": _digest(filename)[:32],
                "sha256": _digest(filename),
            },
            "downloads": -1,
            "filename": filename,
            "has_sig": False,
            "md5_digest": _digest(filename)[:32],
            "packagetype": f.packagetype,
            "python_version": "source" if f.packagetype == "sdist" else "py3",
            "requires_python": ">=3.8",
            "size": 81234,
            "upload_time": f.uploaded.replace("Z", "").split(".")[0],
            "upload_time_iso_8601": f.uploaded,
            "url": f"https://files.pythonhosted.org/packages/ab/cd/{filename}",
            "yanked": f.yanked,
            "yanked_reason": "broken build" if f.yanked else None,
        }

    listed = {v: [file_entry(v, f) for f in files] for v, files in releases.items()}
    newest = next(reversed(listed), None)
    return {
        "info": {
            "author": "Example Author",
            "classifiers": ["Programming Language :: Python :: 3"],
            "description": f"# {name}\n\nA package.",
            "description_content_type": "text/markdown",
            "home_page": f"https://example.org/{name}",
            "license": "MIT",
            "name": name,
            "package_url": f"https://pypi.org/project/{name}/",
            "project_urls": {"Source": f"https://github.com/example/{name}"},
            "requires_dist": None,
            "requires_python": ">=3.8",
            "summary": "A package",
            "version": newest,
            "yanked": False,
            "yanked_reason": None,
        },
        "last_serial": 24680135,
        "releases": listed,
        "urls": listed.get(newest, []) if newest else [],
        "vulnerabilities": [],
    }


def npm_document(
    name: str, versions: Mapping[str, str], *, latest_tag: str | None = None, deprecated: Sequence[str] = ()
) -> dict[str, Any]:
    """`GET /<name>` (the full "packument"): `versions` manifests, `time` per version plus created/modified."""
    dates = sorted(versions.values())
    return {
        "_id": name,
        "_rev": "42-0123456789abcdef0123456789abcdef",
        "name": name,
        "description": "a package",
        "dist-tags": {"latest": latest_tag or next(reversed(list(versions))), "next": "99.0.0-rc.1"},
        "versions": {
            v: {
                "name": name,
                "version": v,
                "license": "MIT",
                "main": "index.js",
                "_id": f"{name}@{v}",
                "_nodeVersion": "20.11.0",
                "_npmVersion": "10.2.4",
                "dist": {
                    "integrity": f"sha512-{_digest(name + v)}",
                    "shasum": _digest(name + v)[:40],
                    "tarball": f"https://registry.npmjs.org/{name}/-/{name.split('/')[-1]}-{v}.tgz",
                    "fileCount": 4,
                    "unpackedSize": 12345,
                },
                "maintainers": [{"name": "someone", "email": "someone@example.org"}],
                **({"deprecated": "use something else"} if v in deprecated else {}),
            }
            for v in versions
        },
        "time": {"created": dates[0] if dates else None, "modified": dates[-1] if dates else None, **versions},
        "maintainers": [{"name": "someone", "email": "someone@example.org"}],
        "license": "MIT",
        "readme": "# a package",
        "readmeFilename": "README.md",
        "users": {"fan": True},
    }


def crates_document(name: str, versions: Mapping[str, tuple[str, bool]]) -> dict[str, Any]:
    """`GET /api/v1/crates/<name>`: the crate, then its versions newest first, each with `num`, `created_at`,
    `yanked` among many other fields."""
    entries = [
        {
            "id": 900000 + i,
            "crate": name,
            "num": num,
            "dl_path": f"/api/v1/crates/{name}/{num}/download",
            "readme_path": f"/api/v1/crates/{name}/{num}/readme",
            "updated_at": created,
            "created_at": created,
            "downloads": 1000 * (i + 1),
            "features": {"default": ["std"], "std": []},
            "yanked": yanked,
            "yank_message": "security" if yanked else None,
            "lib_links": None,
            "license": "MIT OR Apache-2.0",
            "links": {"dependencies": f"/api/v1/crates/{name}/{num}/dependencies"},
            "crate_size": 45678,
            "published_by": {"id": 1, "login": "someone", "name": None, "avatar": None, "url": ""},
            "audit_actions": [],
            "checksum": _digest(name + num),
            "rust_version": "1.63",
            "has_lib": True,
            "bin_names": [],
            "edition": "2021",
        }
        for i, (num, (created, yanked)) in enumerate(reversed(list(versions.items())))
    ]
    return {
        "crate": {
            "id": name,
            "name": name,
            "updated_at": entries[0]["created_at"] if entries else None,
            "versions": [e["id"] for e in entries],
            "keywords": [],
            "categories": [],
            "badges": [],
            "created_at": entries[-1]["created_at"] if entries else None,
            "downloads": 123456,
            "recent_downloads": 2345,
            "default_version": entries[0]["num"] if entries else None,
            "num_versions": len(entries),
            "yanked": False,
            "max_version": entries[0]["num"] if entries else "0.0.0",
            "newest_version": entries[0]["num"] if entries else "0.0.0",
            "max_stable_version": None,
            "description": "a crate",
            "homepage": None,
            "documentation": None,
            "repository": f"https://github.com/example/{name}",
            "links": {"owners": f"/api/v1/crates/{name}/owners"},
            "exact_match": False,
        },
        "versions": entries,
        "keywords": [],
        "categories": [],
    }


def go_info(version: str, published: str) -> dict[str, Any]:
    return {
        "Version": version,
        "Time": published,
        "Origin": {
            "VCS": "git",
            "URL": "https://github.com/example/mod",
            "Ref": f"refs/tags/{version}",
            "Hash": _digest(version)[:40],
        },
    }


@dataclass
class FakeRegistry:
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    # lifecycle
    def start(self) -> FakeRegistry:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with registry._lock:
                    registry.requests.append(Recorded(self.path, dict(self.headers.items())))
                    route = registry.routes.get(self.path)
                if route is None:
                    route = Route(404, b'{"message": "Not Found"}')
                if route.delay:
                    time.sleep(route.delay)
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(route.body)))
                    for name, value in route.headers.items():
                        self.send_header(name, value)
                    self.end_headers()
                    if route.trickle:
                        for index in range(len(route.body)):
                            self.wfile.write(route.body[index : index + 1])
                            self.wfile.flush()
                            time.sleep(route.trickle)
                    else:
                        self.wfile.write(route.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (a timeout test): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.port = free_port()
        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-registry", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def urls(self) -> RegistryUrls:
        return RegistryUrls(
            pypi=self.base + PYPI_PREFIX,
            npm=self.base + NPM_PREFIX,
            go=self.base + GO_PREFIX,
            crates=self.base + CRATES_PREFIX,
        )

    # raw routes
    def serve(
        self,
        path: str,
        body: Any,
        *,
        status: int = 200,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """`body` as given when bytes (already gzipped, say: then pass `Content-Encoding` in `headers`)."""
        data = (
            body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        )
        with self._lock:
            self.routes[path] = Route(status, data, content_type, headers=dict(headers or {}))

    def fail(self, path: str, status: int = 500) -> None:
        self.serve(
            path, f"<html><body><h1>{status} Server Error</h1></body></html>", status=status, content_type="text/html"
        )

    def hang(self, path: str, seconds: float) -> None:
        """Answer normally, but only after `seconds` (longer than the client's timeout)."""
        with self._lock:
            route = self.routes.setdefault(path, Route(body=b"{}"))
            route.delay = seconds

    def trickle(self, path: str, body: bytes, seconds_per_byte: float) -> None:
        with self._lock:
            self.routes[path] = Route(200, body, trickle=seconds_per_byte)

    def garble(self, path: str) -> None:
        self.serve(path, b'{"info": {"name": "truncated', content_type="application/json")

    def paths(self, prefix: str = "") -> list[str]:
        with self._lock:
            return [r.path for r in self.requests if r.path.startswith(prefix)]

    # registry paths
    @staticmethod
    def pypi_path(name: str) -> str:
        return f"{PYPI_PREFIX}/pypi/{name}/json"

    @staticmethod
    def npm_path(name: str) -> str:
        return f"{NPM_PREFIX}/{name.replace('/', '%2f')}"

    @staticmethod
    def go_path(module: str, tail: str) -> str:
        return f"{GO_PREFIX}/{escape_go_path(module)}/{tail}"

    @staticmethod
    def crates_path(name: str) -> str:
        return f"{CRATES_PREFIX}/api/v1/crates/{name}"

    # publishing
    def publish_pypi(self, name: str, releases: Mapping[str, str | Sequence[PyPIFile]]) -> None:
        """`releases` maps a version to its upload date (an sdist, and a wheel 3 minutes later) or to its files;
        an empty list is a release without files."""
        files = {
            v: [PyPIFile(spec), PyPIFile(_shift(spec, 3), packagetype="bdist_wheel")] if isinstance(spec, str) else spec
            for v, spec in releases.items()
        }
        self.serve(self.pypi_path(name), pypi_document(name, files))

    def publish_npm(
        self, name: str, versions: Mapping[str, str], *, latest_tag: str | None = None, deprecated: Sequence[str] = ()
    ) -> None:
        self.serve(self.npm_path(name), npm_document(name, versions, latest_tag=latest_tag, deprecated=deprecated))

    def publish_go(
        self, module: str, versions: Mapping[str, str], *, unlisted: Mapping[str, str] | None = None
    ) -> None:
        """Tagged `versions` appear in `@v/list`; `unlisted` ones (pseudo-versions) only answer `.info`."""
        self.serve(self.go_path(module, "@v/list"), "".join(f"{v}\n" for v in versions), content_type="text/plain")
        for version, published in {**versions, **(unlisted or {})}.items():
            self.serve(self.go_path(module, f"@v/{escape_go_path(version)}.info"), go_info(version, published))

    def publish_crate(self, name: str, versions: Mapping[str, str | tuple[str, bool]]) -> None:
        """`versions` maps a version to its date, or to (date, yanked)."""
        entries = {v: (spec, False) if isinstance(spec, str) else spec for v, spec in versions.items()}
        self.serve(self.crates_path(name), crates_document(name, entries))
