"""The diff: which fields the repository sets that the cluster holds differently, plus missing and extra objects.

Only what the desired manifest sets is compared: the API server fills in defaults (`strategy`,
`revisionHistoryLimit`, `imagePullPolicy`, …) and those are not drift. Lists of named things (containers,
env, ports, volumes, mounts) are matched by their merge key, as Kubernetes merges them, so a reordered list is
not drift; other lists are compared as a whole. Values are compared the way the API server stores them:
resource quantities by amount (`500m` is `0.5`, `1Gi` is `1024Mi`), a number and its decimal string alike,
an empty desired value like an absent live one (the server drops empty fields), Secret `stringData` as the
base64 `data` it becomes. Secret values never reach the report, only the fact that they differ.

Every item carries a fingerprint: sha256 over "drift", the object's key, the kind of drift and the pointer,
never the values, so a dashboard keeps tracking one drifted field while its live value keeps changing.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..kube import quantity
from .ignore import BUILTIN_RULES, IgnoreRule, format_pointer, parse_ignore_rules, parse_pointer, pointer_covers
from .live import LiveState
from .manifests import DesiredState
from .model import ObjectKey, Problem

DriftKind = Literal["changed", "missing", "extra"]
REDACTED = "<redacted>"

# Merge keys of the lists Kubernetes merges by key rather than position, tried in this order.
_MERGE_KEYS: tuple[str, ...] = ("name", "containerPort", "port", "mountPath", "devicePath", "ip", "type")
# A value whose parent is one of these (or whose own key is `sizeLimit`) is a resource quantity.
_QUANTITY_PARENTS = frozenset(
    {"limits", "requests", "hard", "capacity", "allocatable", "overhead", "max", "min", "default", "defaultRequest"}
)
_QUANTITY_KEYS = frozenset({"sizeLimit", "storage"})


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


ABSENT: Any = _Absent()


def fingerprint(key: ObjectKey, drift: DriftKind, pointer: str | None) -> str:
    """The stable identity of one drift finding; values are deliberately left out."""
    text = "\n".join(("drift", key.identity(), drift, pointer or ""))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class DriftItem:
    """One finding. For `changed`: `pointer` (RFC 6901, into the desired manifest), `path` (readable, list items
    by merge key), and both values; a live value that is not set at all is None."""

    key: ObjectKey
    drift: DriftKind
    pointer: str | None = None
    path: str | None = None
    desired: Any = None
    live: Any = None
    fingerprint: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fingerprint", fingerprint(self.key, self.drift, self.pointer))

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "key": self.key.to_dict(),
            "object": str(self.key),
            "drift": self.drift,
            "pointer": self.pointer,
            "path": self.path,
            "desired": self.desired,
            "live": self.live,
        }


@dataclass
class DriftReport:
    """Everything one check found; `errors` are the parts it could not check (bad documents, refused requests).

    `checked` counts desired objects compared with a live one, `unchecked` lists those the cluster could not
    be asked about (an error says why: their earlier findings are not resolved by this run), `ignored` counts
    the findings user rules silenced, `selector` is the ownership marker extra objects were looked for with
    (None: not looked for).
    """

    items: list[DriftItem] = field(default_factory=list)
    errors: list[Problem] = field(default_factory=list)
    unchecked: list[ObjectKey] = field(default_factory=list)
    desired: int = 0
    checked: int = 0
    ignored: int = 0
    selector: str | None = None

    @property
    def counts(self) -> dict[str, int]:
        counts = {"changed": 0, "missing": 0, "extra": 0}
        for item in self.items:
            counts[item.drift] += 1
        return {
            **counts,
            "errors": len(self.errors),
            "desired": self.desired,
            "checked": self.checked,
            "unchecked": len(self.unchecked),
            "ignored": self.ignored,
        }

    @property
    def has_drift(self) -> bool:
        return bool(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {
            "counts": self.counts,
            "selector": self.selector,
            "items": [item.to_dict() for item in self.items],
            "errors": [error.to_dict() for error in self.errors],
            "unchecked": [key.to_dict() for key in self.unchecked],
        }


def compare(
    desired: DesiredState,
    live: LiveState,
    *,
    ignore: Sequence[IgnoreRule | Mapping[str, Any] | str] = (),
) -> DriftReport:
    """Diff `desired` against `live`; `ignore` rules (see `ignore.py`) silence fields or whole objects."""
    rules = parse_ignore_rules(ignore)
    report = DriftReport(
        errors=[*desired.problems, *live.problems],
        unchecked=sorted(live.unchecked),
        desired=len(desired.objects),
        selector=live.selector,
    )
    for key in sorted(desired.objects):
        if key in live.objects:
            report.checked += 1
            for item in _changes(key, desired.objects[key].manifest, live.objects[key]):
                if any(rule.covers(key, _tokens(item.pointer)) for rule in rules):
                    report.ignored += 1
                else:
                    report.items.append(item)
        elif key in live.missing:
            _add_whole(report, rules, DriftItem(key, "missing"))
    for key in sorted(live.extra):
        _add_whole(report, rules, DriftItem(key, "extra"))
    report.items.sort(key=lambda item: item.key)  # stable: an object's fields stay in manifest order
    return report


def _add_whole(report: DriftReport, rules: Sequence[IgnoreRule], item: DriftItem) -> None:
    if any(rule.covers(item.key, ()) for rule in rules):
        report.ignored += 1
    else:
        report.items.append(item)


def _tokens(pointer: str | None) -> tuple[str, ...]:
    return parse_pointer(pointer or "")


# -- the walk ---------------------------------------------------------------------------------------------
def _changes(key: ObjectKey, desired: Mapping[str, Any], live: Mapping[str, Any]) -> Iterator[DriftItem]:
    secret = key.kind == "Secret" and key.group == ""
    if secret:
        desired = _secret_as_stored(desired)
    for tokens, labels, want, have in _walk(desired, live, (), ()):
        if secret and tokens and tokens[0] in ("data", "stringData"):
            want = REDACTED if want is not None else None
            have = REDACTED if have is not None else None
        yield DriftItem(key, "changed", format_pointer(tokens), _readable(labels), want, have)


def _secret_as_stored(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The API server merges `stringData` into `data`, base64-encoded; compare against that."""
    string_data = manifest.get("stringData")
    if not isinstance(string_data, Mapping):
        return dict(manifest)
    data = dict(manifest.get("data") or {})
    for name, value in string_data.items():
        data[name] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
    result = {k: v for k, v in manifest.items() if k != "stringData"}
    result["data"] = data
    return result


_BUILTIN_TOKENS = tuple(rule.tokens for rule in BUILTIN_RULES)
Change = tuple[tuple[str, ...], tuple[str, ...], Any, Any]


def _walk(want: Any, have: Any, tokens: tuple[str, ...], labels: tuple[str, ...]) -> Iterator[Change]:
    """(pointer tokens, readable labels, desired, live) of every desired field the live object differs in."""
    if want is None or any(pointer_covers(prefix, tokens) for prefix in _BUILTIN_TOKENS):
        return
    if (have is ABSENT or have is None) and not isinstance(want, Mapping):
        if not _is_empty(want):
            yield tokens, labels, want, None
        return
    if isinstance(want, Mapping):
        if have is ABSENT or have is None:
            have = {}  # report each field, so a rule on one of them still applies
        if not isinstance(have, Mapping):
            yield tokens, labels, want, have
            return
        for name, value in want.items():
            child = str(name)  # YAML may load `1:` as an int key; JSON from the server has only strings
            found = have.get(name, ABSENT) if name in have else have.get(child, ABSENT)
            yield from _walk(value, found, (*tokens, child), (*labels, child))
    elif isinstance(want, list):
        if not isinstance(have, list):
            yield tokens, labels, want, have
        elif (merge_key := _merge_key(want)) is not None:
            # Keyed by text: a port written "8080" in the manifest is the live 8080.
            by_key = {str(i[merge_key]): i for i in have if isinstance(i, Mapping) and merge_key in i}
            for index, item in enumerate(want):
                place, label = (*tokens, str(index)), (*labels, f"[{merge_key}={item[merge_key]}]")
                match = by_key.get(str(item[merge_key]))
                if match is None:
                    yield place, label, item, None  # the whole item (a container, a port) is not there
                else:
                    yield from _walk(item, match, place, label)
        elif len(want) == len(have) and all(isinstance(w, Mapping | list) for w in want):
            for index, (w, h) in enumerate(zip(want, have, strict=True)):
                yield from _walk(w, h, (*tokens, str(index)), (*labels, f"[{index}]"))
        elif len(want) != len(have) or not all(_same(w, h, tokens) for w, h in zip(want, have, strict=True)):
            yield tokens, labels, want, have  # a list of plain values (args, hosts) differs as a whole
    elif not _same(want, have, tokens):
        yield tokens, labels, want, have


def _same(want: Any, have: Any, tokens: Sequence[str]) -> bool:
    """Scalar equality as the API server sees it; containers (in whole-list comparisons) must match fully."""
    if isinstance(want, Mapping | list) or isinstance(have, Mapping | list):
        return not any(True for _ in _walk(want, have, tuple(tokens), ()))
    if isinstance(want, bool) or isinstance(have, bool):
        return type(want) is type(have) and want == have
    if want == have:
        return True
    if _is_quantity_field(tokens):
        amount_want, amount_have = quantity(want), quantity(have)
        if amount_want is not None and amount_want == amount_have:
            return True
    if isinstance(want, str) != isinstance(have, str) and all(isinstance(v, str | int | float) for v in (want, have)):
        return str(want) == str(have)  # a port or count written as a string
    return False


def _is_quantity_field(tokens: Sequence[str]) -> bool:
    return bool(tokens) and (tokens[-1] in _QUANTITY_KEYS or (len(tokens) > 1 and tokens[-2] in _QUANTITY_PARENTS))


def _is_empty(value: Any) -> bool:
    """Zero values the API server omits when it stores an object: desired-empty and live-absent agree."""
    if isinstance(value, bool):
        return value is False
    if isinstance(value, int | float):
        return value == 0
    return isinstance(value, str | list | Mapping) and not value


def _merge_key(want: list[Any]) -> str | None:
    """The key that names this list's items, when every desired item has it and no two share a value."""
    if not want or not all(isinstance(item, Mapping) for item in want):
        return None
    for key in _MERGE_KEYS:
        values = [item.get(key) for item in want]
        hashable = all(isinstance(v, str | int) and not isinstance(v, bool) for v in values)
        if hashable and len({str(v) for v in values}) == len(values):
            return key
    return None


def _readable(labels: Sequence[str]) -> str:
    text = ""
    for label in labels:
        text += label if label.startswith("[") else (f".{label}" if text else label)
    return text
