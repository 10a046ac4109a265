"""Download OSV's per-ecosystem `all.zip` exports so that scans can run offline.

Every download goes to a temporary file next to its destination and replaces the old zip only once it is
complete and reads as a zip: a scan started during a refresh, or after a refresh that failed half-way, still
sees a whole (if older) database. Network and HTTP failures are reported per ecosystem, never raised, because
the caller is a nightly job that should scan with yesterday's data rather than not at all. The marker file
records when each ecosystem was last fetched; `OsvDatabase.load` reads it to tell the database's age.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from codexk8s_pipelines.security.osv import MARKER_NAME, read_marker

__all__ = [
    "DEFAULT_BASE_URL",
    "EcosystemRefresh",
    "OsvSourceError",
    "RefreshResult",
    "import_osv_source",
    "refresh_osv_database",
]

DEFAULT_BASE_URL = "https://osv-vulnerabilities.storage.googleapis.com"
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class EcosystemRefresh:
    ecosystem: str
    ok: bool
    path: Path | None = None  # the zip in place after the refresh (the old one when the download failed)
    bytes: int = 0
    records: int = 0  # JSON members of the new zip
    sha256: str | None = None
    error: str | None = None


@dataclass(slots=True)
class RefreshResult:
    dest: Path
    fetched_at: datetime
    ecosystems: list[EcosystemRefresh] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e.ok for e in self.ecosystems)

    @property
    def failed(self) -> list[EcosystemRefresh]:
        return [e for e in self.ecosystems if not e.ok]


def _valid_name(ecosystem: str) -> bool:
    """An ecosystem becomes a directory name: refuse anything that could leave `dest`."""
    return bool(ecosystem.strip()) and "/" not in ecosystem and "\\" not in ecosystem and ecosystem not in {".", ".."}


def _download(url: str, target: Path, timeout: float) -> tuple[int, str]:
    """Stream `url` into `target`; (bytes, sha256). A short body against Content-Length is an error."""
    digest = hashlib.sha256()
    size = 0
    request = urllib.request.Request(url, headers={"User-Agent": "codexk8s-osv-refresh"})
    with urllib.request.urlopen(request, timeout=timeout) as response, target.open("wb") as out:
        expected = response.headers.get("Content-Length")
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            digest.update(chunk)
            size += len(chunk)
    if expected is not None and expected.isdigit() and int(expected) != size:
        raise http.client.IncompleteRead(b"", int(expected) - size)
    return size, digest.hexdigest()


def _count_records(path: Path) -> int:
    """Members of a complete zip; raises BadZipFile for a truncated or corrupt one (CRCs are checked)."""
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
        if bad is not None:
            raise zipfile.BadZipFile(f"corrupt member {bad}")
        return sum(1 for info in archive.infolist() if info.filename.endswith(".json"))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    if isinstance(exc, http.client.IncompleteRead):
        return f"download cut short ({exc.expected} bytes missing)"
    if isinstance(exc, zipfile.BadZipFile):
        return f"not a valid zip: {exc}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}"


def _fetch(ecosystem: str, dest: Path, base_url: str, timeout: float) -> EcosystemRefresh:
    final = dest / ecosystem / "all.zip"
    old = final if final.is_file() else None
    if not _valid_name(ecosystem):
        return EcosystemRefresh(ecosystem, False, old, error="not a valid ecosystem name")
    url = f"{base_url.rstrip('/')}/{urllib.parse.quote(ecosystem)}/all.zip"
    created = not final.parent.exists()
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=".all.zip.", suffix=".part", dir=final.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        size, sha256 = _download(url, temp, timeout)
        records = _count_records(temp)
        os.replace(temp, final)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, ValueError) as exc:
        temp.unlink(missing_ok=True)
        if created:
            final.parent.rmdir()  # a failed first download leaves no empty directory that looks like a database
        return EcosystemRefresh(ecosystem, False, old, error=f"{url}: {_describe(exc)}")
    return EcosystemRefresh(ecosystem, True, final, size, records, sha256)


def _write_marker(dest: Path, result: RefreshResult) -> None:
    """Merge this refresh into the marker: ecosystems that failed keep their previous fetch time, so the
    database's age (the oldest ecosystem's) stays honest. Called only when at least one download succeeded."""
    marker: dict[str, Any] = read_marker(dest) or {}
    ecosystems = marker.get("ecosystems")
    if not isinstance(ecosystems, dict):
        ecosystems = {}
    stamp = result.fetched_at.isoformat()
    for entry in result.ecosystems:
        if entry.ok:
            ecosystems[entry.ecosystem] = {
                "fetched_at": stamp,
                "bytes": entry.bytes,
                "records": entry.records,
                "sha256": entry.sha256,
            }
    marker.update({"fetched_at": stamp, "ecosystems": ecosystems})
    fd, temp_name = tempfile.mkstemp(prefix=MARKER_NAME + ".", suffix=".part", dir=dest)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(marker, out, indent=2, sort_keys=True)
    os.replace(temp_name, dest / MARKER_NAME)


def refresh_osv_database(
    dest: Path,
    ecosystems: Sequence[str],
    *,
    base_url: str = DEFAULT_BASE_URL,
    timeout: float = 30,
    now: datetime | None = None,
) -> RefreshResult:
    """Fetch `<base_url>/<ecosystem>/all.zip` into `dest/<ecosystem>/all.zip` for each ecosystem, then update
    the marker. Never raises for network, HTTP or archive problems: see `RefreshResult.failed`."""
    dest = Path(dest)
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    result = RefreshResult(dest=dest, fetched_at=now or datetime.now(UTC))
    for ecosystem in dict.fromkeys(ecosystems):
        result.ecosystems.append(_fetch(ecosystem, dest, base_url, timeout))
    if any(entry.ok for entry in result.ecosystems):
        _write_marker(dest, result)
    elif created and not any(dest.iterdir()):
        dest.rmdir()
    return result


class OsvSourceError(ValueError):
    """A configured local OSV source that cannot be used: missing, or holding no record file or zip."""


def _record_files(source: Path) -> list[Path]:
    from codexk8s_pipelines.security.osv import _walk

    return [source] if source.is_file() else list(_walk(source))


def import_osv_source(source: Path, dest: Path, *, now: datetime | None = None) -> RefreshResult:
    """Make `dest` a copy of a local OSV export (a directory of records or `<Ecosystem>/all.zip`, or one zip):
    the offline way to get a database. The copy is built next to `dest` and swapped in whole, so a scan never
    sees half of it; the marker records where it came from but no fetch time, so the database's age is that of
    its newest record (importing an old export does not make it fresh)."""
    source, dest = Path(source).expanduser().resolve(), Path(dest)
    if not source.exists():
        raise OsvSourceError(f"periodic.security.osv_source: {source} does not exist")
    files = _record_files(source)
    if source.is_file():
        if source.suffix != ".zip":
            raise OsvSourceError(f"periodic.security.osv_source: {source} is a file but not a zip of OSV records")
    elif not files:
        raise OsvSourceError(f"periodic.security.osv_source: {source} holds no OSV record (.json/.yaml) or zip")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.import.", dir=dest.parent))
    result = RefreshResult(dest=dest, fetched_at=now or datetime.now(UTC))
    try:
        for file in files:
            relative = Path(file.name) if source.is_file() else file.relative_to(source)
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
        counts: dict[str, int] = {}
        for file in _record_files(staging):
            label = file.relative_to(staging).parts[0] if file.parent != staging else file.name
            try:
                records = _count_records(file) if file.suffix == ".zip" else 1
            except (OSError, zipfile.BadZipFile) as exc:
                if source.is_file():  # a truncated zip is refused here, not half-read by every scan
                    raise OsvSourceError(f"periodic.security.osv_source: {source} is {_describe(exc)}") from None
                raise
            counts[label] = counts.get(label, 0) + records
        for label, records in sorted(counts.items()):
            result.ecosystems.append(EcosystemRefresh(label, True, staging / label, records=records))
        marker = {"source": str(source), "imported_at": result.fetched_at.isoformat()}
        (staging / MARKER_NAME).write_text(json.dumps(marker, indent=2, sort_keys=True), encoding="utf-8")
        old = dest.with_name(f".{dest.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if dest.exists():
            os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old, ignore_errors=True)
    except (OSError, zipfile.BadZipFile) as exc:
        raise OsvSourceError(f"periodic.security.osv_source: cannot import {source}: {_describe(exc)}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # nothing left after a success: it became `dest`
    return result
