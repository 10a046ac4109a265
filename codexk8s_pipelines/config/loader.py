"""Read and validate `codexk8s.yaml`; every error names the file, the key path and what was expected."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .. import settings
from ..file_cache import ReadWhenChanged
from ..file_lines import not_utf8
from ..security.measured_yaml import MeasuredLoader, YamlRefused, load_measured
from .models import LISTED_TWICE_ERROR, PlatformConfig
from .repository_keys import listed_twice_text

# The places `key_lines` records at most (a file that fails validation is read again for them; MAX_DOCUMENT_NODES
# bounds the text, this the map).
MAX_KEY_LINES = 100_000
_SECRET_HINTS = ("token", "password", "secret", "private_key", "privatekey", "api_key")


class ConfigError(ValueError):
    """The configuration file cannot be used; `problems` holds one line per problem."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__("\n".join(f"{self.path}: {p}" for p in problems))


def _model_at(loc: tuple[Any, ...], root_model: type[BaseModel] = PlatformConfig) -> type[BaseModel] | None:
    """The pydantic model that owns the last key of `loc`, to list the keys it allows."""
    model: Any = root_model
    for part in loc:
        if isinstance(part, int) or (
            isinstance(model, type) and issubclass(model, BaseModel) and part not in model.model_fields
        ):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        annotation = model.model_fields[part].annotation
        model = _unwrap(annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


# Errors raised with this type carry a secret-looking input: the message names the key, never the value.
SECRET_INPUT_ERROR = "secret_value"


def _describe(
    error: Any,
    root_model: type[BaseModel] = PlatformConfig,
    unknown_key_hint: str = "see the sample codexk8s.yaml",
    key_lines: Mapping[tuple[Any, ...], int] | None = None,
) -> str:
    loc = tuple(p for p in error["loc"] if p != "[key]")
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        owner = _model_at(loc[:-1], root_model)
        allowed = ", ".join(owner.model_fields) if owner else unknown_key_hint
        hint = ""
        if any(h in key.lower() for h in _SECRET_HINTS):
            hint = "; secrets are read from the environment only (see README), never from this file"
        line = (key_lines or {}).get(loc)
        where = "" if line is None else f"line {line}: "
        return f"{where}{path}: unknown key {key!r}; expected one of: {allowed}{hint}"
    msg = error["msg"].removeprefix("Value error, ")
    if kind == LISTED_TWICE_ERROR:  # both items, each at its line
        return f"{path}: {listed_twice_text(error['ctx']['listed_twice'], key_lines)}"
    if kind in {"missing"}:
        return f"{path}: required key is missing"
    got = error.get("input")
    secret = kind == SECRET_INPUT_ERROR
    shown = "" if secret or isinstance(got, dict | list) or got is None else f" (got {got!r})"
    return f"{path}: {msg}{shown}"


def format_validation_error(
    exc: ValidationError,
    source: Path | str,
    root_model: type[BaseModel],
    *,
    unknown_key_hint: str | None = None,
    key_lines: Mapping[tuple[Any, ...], int] | None = None,
) -> list[str]:
    """One line per problem, `<key.path>: <what was expected>`, for any strict model read from a YAML file.

    Shared by every file the platform validates (this config, the agent catalog) so that all of them report
    mistakes the same way. `source` is the file the data came from: an unknown key under a mapping whose
    model cannot be resolved points the reader at it unless `unknown_key_hint` says better. An error of type
    `SECRET_INPUT_ERROR` never echoes its input, so a refused token does not end up in a log. `key_lines`
    (key path -> line, from `key_lines()`) puts `line N: ` in front of an unknown key, where the file has it.
    """
    hint = unknown_key_hint or f"see the documented keys of {Path(str(source)).name}"
    return [_describe(e, root_model, hint, key_lines) for e in exc.errors()]


def key_lines(text: str) -> dict[tuple[Any, ...], int]:
    """The 1-based line of every mapping key and list item of a YAML text that `yaml_mapping` accepted, by its path
    as pydantic reports it (`("stages", "dev", "who")`, `("repositories", 0)`); what cannot be placed is left out.
    Composed again with the measured loader, on the error path only."""
    loader = MeasuredLoader(text)
    lines: dict[tuple[Any, ...], int] = {}
    try:
        root = loader.get_single_node()
    except (yaml.YAMLError, YamlRefused, RecursionError):
        return lines
    finally:
        loader.dispose()
    pending: list[tuple[tuple[Any, ...], Any]] = [((), root)]
    while pending and len(lines) < MAX_KEY_LINES:
        path, node = pending.pop()
        if isinstance(node, yaml.MappingNode):
            children = [(k.value, k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode)]
        elif isinstance(node, yaml.SequenceNode):
            children = [(i, v, v) for i, v in enumerate(node.value)]
        else:
            continue
        for part, where, value in children:
            lines.setdefault((*path, part), where.start_mark.line + 1)
            pending.append(((*path, part), value))
    return lines


def yaml_mapping(text: str, source: Path | str, expected: str = "a mapping of settings") -> dict[str, Any]:
    """The YAML text as a mapping; a syntax error names the line and column, an empty file is an empty mapping.

    Loaded measured (`load_measured`): a file nested a few hundred levels deep raised RecursionError out of
    `yaml.safe_load`, which named neither the file nor the place, and a "billion laughs" of aliases would be walked
    whole by validation."""
    try:
        raw = load_measured(text, alias_ratio=False)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}not valid YAML: {problem}"]) from None
    except YamlRefused as exc:
        raise ConfigError(source, [f"{exc.where}{exc}"]) from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"(top level): expected {expected}, got {type(raw).__name__}"])
    return raw


def read_text(path: Path | str) -> str:
    """The file's text; not UTF-8 is a problem at its line ("line 9: not UTF-8 (byte 0xe9)"), as a missing file is."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(p, ["file not found"]) from None
    except OSError as exc:
        raise ConfigError(p, [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:  # a ValueError, not an OSError: it was a traceback everywhere
        raise ConfigError(p, [f"{not_utf8(exc)}; save the file as UTF-8"]) from None


def parse_config(text: str, source: Path | str) -> PlatformConfig:
    raw = yaml_mapping(text, source)
    try:
        return PlatformConfig.model_validate(raw)
    except ValidationError as exc:
        problems = format_validation_error(
            exc, source, PlatformConfig, unknown_key_hint="see the sample codexk8s.yaml", key_lines=key_lines(text)
        )
        raise ConfigError(source, problems) from None


def load_config(path: Path | str) -> PlatformConfig:
    return parse_config(read_text(path), Path(path))


def _environment_config_file() -> Path | None:
    """`$CODEXK8S_CONFIG`, else `./codexk8s.yaml` when there is one; None: the built-in defaults."""
    where = settings.config_location()
    return where.path if where.explicit or where.path.exists() else None


def _read_environment_config(path: Path | None) -> PlatformConfig:
    return PlatformConfig() if path is None else load_config(path)


load_config_from_environment = ReadWhenChanged(_environment_config_file, _read_environment_config)
"""The configuration of this process: `$CODEXK8S_CONFIG`, else `./codexk8s.yaml`, else the defaults; read again
when the file changes (`file_cache`), so the sensors' next tick sees an edit, as the next run does."""
