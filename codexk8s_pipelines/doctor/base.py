"""What every doctor check group shares: the `Check` line, its constructors, and the context loaded once per run.

A group module holds one group's checks; each takes the `Context` (configuration, catalog, secrets to scrub) and
returns `Check`s, never raising for an expected problem (the runner still guards against a check that raises).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .. import settings
from ..domain.redaction import redact_known

Status = Literal["ok", "fail", "skip", "warn"]
# Secrets shorter than this are left to `redact_text` (replacing a two-letter password everywhere would garble).
# Not the runner's `Scrubber.MIN_SECRET_CHARS` (12): these are secrets of a known kind (the database password, the
# GitHub credentials), replaced literally in the doctor's own lines and nowhere else, and a password of 6 to 11
# characters is common; the Scrubber's values are of unknown kind and also refuse every push that holds them.
MIN_SCRUBBED = 6
_LABELS: dict[str, str] = {"ok": "ok", "fail": "FAIL", "skip": "skip", "warn": "warn"}


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def line(self) -> str:
        text = f"{_LABELS[self.status]:<4} {self.name}: {self.message}"
        if self.fix and self.status in ("fail", "warn"):
            text += f" — fix: {self.fix}"
        return text


def ok(name: str, message: str) -> Check:
    return Check(name, "ok", message)


def fail(name: str, message: str, fix: str) -> Check:
    return Check(name, "fail", message, fix)


def skip(name: str, message: str) -> Check:
    return Check(name, "skip", message)


def warn(name: str, message: str, fix: str | None = None) -> Check:
    return Check(name, "warn", message, fix)


def one_line(text: object, limit: int = 300) -> str:
    """An error as one short line: whitespace collapsed, cut at `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def cause(exc: BaseException) -> str:
    text = one_line(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass
class Context:
    """What later checks need from earlier ones, loaded once: the configuration, the catalog, secrets to scrub."""

    secrets: set[str] = field(default_factory=set)
    _config: Any = None
    _config_error: BaseException | None = None
    _config_loaded: bool = False
    _catalog: Any = None
    _catalog_error: BaseException | None = None
    _catalog_loaded: bool = False

    def config_source(self) -> tuple[Path, bool]:
        where = settings.config_location()
        return where.path, where.explicit or where.path.exists()

    def config(self) -> Any:
        """The platform configuration (raises what loading raised, every time it is asked)."""
        if not self._config_loaded:
            from ..config import PlatformConfig, load_config

            self._config_loaded = True
            path, present = self.config_source()
            try:
                self._config = load_config(path) if present else PlatformConfig()
            except Exception as exc:
                self._config_error = exc
        if self._config_error is not None:
            raise self._config_error
        return self._config

    def catalog(self) -> Any:
        if not self._catalog_loaded:
            from ..agents.catalog import load_catalog

            self._catalog_loaded = True
            try:
                self._catalog = load_catalog()
            except Exception as exc:
                self._catalog_error = exc
        if self._catalog_error is not None:
            raise self._catalog_error
        return self._catalog

    def github_repositories(self) -> list[str]:
        return [r.github for r in self.config().repositories if r.github]

    def configured_default_branch(self, repository: str) -> str | None:
        """`default_branch` of a watched `github:` repository as codexk8s.yaml sets it; None: not set (GitHub's)."""
        for repo in self.config().repositories:
            if repo.github and repo.github.lower() == repository.lower():
                return repo.default_branch
        return None

    def scrub(self, text: str) -> str:
        return redact_known(text, (secret for secret in self.secrets if len(secret) >= MIN_SCRUBBED))


def config_error_checks(name: str, exc: BaseException, what: str) -> list[Check]:
    from ..config import ConfigError

    if isinstance(exc, ConfigError):
        fix = f"correct {what} in {exc.path} (the line names the key path)"
        return [fail(name, f"{exc.path}: {problem}", fix) for problem in exc.problems[:20]]
    return [fail(name, f"{what} could not be loaded: {cause(exc)}", "see the error above")]
