"""Ignore rules: JSON pointers (RFC 6901) into an object, optionally scoped to a kind, name or namespace.

A rule ignores the field it points to and everything under it. Pointers address the desired manifest, so a
list item is addressed by its index in the desired list (`/spec/template/spec/containers/0/image`); the token
`*` matches any one key or index (an extension of RFC 6901, which has no wildcard), e.g.
`/spec/template/spec/containers/*/image`. The empty pointer `""` addresses the whole object: such a rule also
silences the object being missing or extra.

In YAML (see `parse_ignore_rules`)::

    - pointer: /spec/replicas        # the HorizontalPodAutoscaler owns the count
      kind: Deployment
      reason: scaled by the HPA
    - pointer: /metadata/annotations/checksum~1config
      kind: Deployment
      name: web
    - /metadata/labels/helm.sh~1chart  # a bare string: every object
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..file_lines import not_utf8
from ..security.measured_yaml import YamlRefused, load_measured
from .model import DriftError, ObjectKey

WILDCARD = "*"
_BAD_ESCAPE = re.compile(r"~(?![01])")
_RULE_FIELDS = frozenset({"pointer", "kind", "name", "namespace", "reason"})

# Fields the API server owns or rewrites on every write: drift there is noise, whatever the manifest says.
ALWAYS_IGNORED: tuple[str, ...] = (
    "/status",
    "/metadata/managedFields",
    "/metadata/uid",
    "/metadata/resourceVersion",
    "/metadata/generation",
    "/metadata/creationTimestamp",
    "/metadata/selfLink",
    # The identity was matched already (the server answers in the apiVersion it was asked in), and
    # cluster-scoped objects drop a namespace the manifest gave them.
    "/apiVersion",
    "/kind",
    "/metadata/name",
    "/metadata/namespace",
    "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration",
    "/metadata/annotations/deployment.kubernetes.io~1revision",
)


class PointerError(DriftError, ValueError):
    """A JSON pointer that RFC 6901 does not allow; raised when the rule is made, not when it is used."""


def parse_pointer(pointer: str) -> tuple[str, ...]:
    """The reference tokens of `pointer`, unescaped (`~1` → `/`, then `~0` → `~`, as RFC 6901 orders it)."""
    if not isinstance(pointer, str):
        raise PointerError(f"malformed JSON pointer {pointer!r}: not a string")
    if pointer == "":
        return ()
    if not pointer.startswith("/"):
        raise PointerError(f"malformed JSON pointer {pointer!r}: it must be empty or start with '/' (RFC 6901)")
    tokens = []
    for token in pointer[1:].split("/"):
        if _BAD_ESCAPE.search(token):
            raise PointerError(
                f"malformed JSON pointer {pointer!r}: '~' must be followed by 0 or 1 ('~0' is '~', '~1' is '/')"
            )
        tokens.append(token.replace("~1", "/").replace("~0", "~"))
    return tuple(tokens)


def format_pointer(tokens: Iterable[str | int]) -> str:
    """The RFC 6901 pointer for `tokens`; the inverse of `parse_pointer`."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


@dataclass(frozen=True)
class IgnoreRule:
    """Ignore `pointer` (and what is under it) in objects matching every scope that is set."""

    pointer: str
    kind: str | None = None
    name: str | None = None
    namespace: str | None = None
    reason: str | None = None
    tokens: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tokens", parse_pointer(self.pointer))

    def applies_to(self, key: ObjectKey) -> bool:
        return (
            (self.kind is None or self.kind == key.kind)
            and (self.name is None or self.name == key.name)
            and (self.namespace is None or self.namespace == key.namespace)
        )

    def covers(self, key: ObjectKey, tokens: Sequence[str]) -> bool:
        """Whether the field at `tokens` of object `key` is this rule's field or lies under it."""
        return self.applies_to(key) and pointer_covers(self.tokens, tokens)

    def to_dict(self) -> dict[str, Any]:
        found = {"pointer": self.pointer, "kind": self.kind, "name": self.name, "namespace": self.namespace}
        if self.reason:
            found["reason"] = self.reason
        return {k: v for k, v in found.items() if v is not None}


def pointer_covers(prefix: Sequence[str], tokens: Sequence[str]) -> bool:
    if len(prefix) > len(tokens):
        return False
    return all(p in (WILDCARD, t) for p, t in zip(prefix, tokens, strict=False))


BUILTIN_RULES: tuple[IgnoreRule, ...] = tuple(IgnoreRule(p, reason="owned by the API server") for p in ALWAYS_IGNORED)


def parse_ignore_rules(data: Iterable[Mapping[str, Any] | str | IgnoreRule]) -> list[IgnoreRule]:
    """Rules from plain data (a YAML/JSON list): mappings with `pointer` and optional scope, or bare pointers."""
    rules: list[IgnoreRule] = []
    for index, entry in enumerate(data):
        if isinstance(entry, IgnoreRule):
            rules.append(entry)
        elif isinstance(entry, str):
            rules.append(IgnoreRule(entry))
        elif isinstance(entry, Mapping):
            unknown = sorted(set(entry) - _RULE_FIELDS)
            if unknown:
                raise DriftError(f"ignore rule {index}: unknown field(s) {', '.join(map(str, unknown))}")
            if "pointer" not in entry:
                raise DriftError(f"ignore rule {index}: no `pointer`")
            scope = {k: entry.get(k) for k in ("kind", "name", "namespace", "reason")}
            for name, value in scope.items():
                if value is not None and not isinstance(value, str):
                    raise DriftError(f"ignore rule {index}: `{name}` must be a string")
            rules.append(IgnoreRule(entry["pointer"], **scope))
        else:
            raise DriftError(f"ignore rule {index}: expected a mapping or a pointer string, got {entry!r}")
    return rules


def load_ignore_rules(path: Path) -> list[IgnoreRule]:
    """Rules from a YAML file holding a list of rules, or a mapping with the list under `ignore`."""
    try:
        data = load_measured(path.read_text(encoding="utf-8"), alias_ratio=False)
    except (OSError, yaml.YAMLError) as exc:
        raise DriftError(f"ignore rules {path}: {exc}") from exc
    except UnicodeDecodeError as exc:  # a ValueError: it escaped the check as a traceback naming no file
        raise DriftError(f"ignore rules {path}: {not_utf8(exc)}; save the file as UTF-8") from None
    except YamlRefused as exc:  # RecursionError escaped yaml.safe_load here, naming neither the file nor the place
        raise DriftError(f"ignore rules {path}: {exc.where}{exc}") from None
    if isinstance(data, Mapping):
        data = data.get("ignore")
    if data is None:
        return []
    if not isinstance(data, list):
        raise DriftError(f"ignore rules {path}: expected a list of rules")
    return parse_ignore_rules(data)
