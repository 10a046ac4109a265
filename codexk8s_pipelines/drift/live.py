"""The live state: what the cluster holds for the desired objects, and the managed objects it holds beyond them.

Read-only by construction: every request goes through `_get`, which only issues GET (a fetch, a list or a
discovery document). The drift check warns; it never creates, patches or deletes anything.

Requests go through the generic `ApiClient.call_api` on resource paths rather than the typed APIs, so any kind
(CRDs included) can be read. Paths come from discovery (`/api/v1`, `/apis/<group>/<version>`), once per
apiVersion in the desired state: it gives each kind's plural and whether it is namespaced.

Extra objects: an object of a managed kind in a managed namespace that the desired state does not declare
counts as extra only when it carries the ownership marker — by default the labels Helm charts put on their
objects, `app.kubernetes.io/managed-by=Helm` and `app.kubernetes.io/instance=<release>`, or any label selector
the caller passes (`managed_selector`). Without a release or a selector, extra objects are not looked for:
in a shared namespace, everything else would be flagged. Objects with a controller owner reference are never
extra (a controller made them, not the release).

Errors are reported, never raised: 404 on a fetch means missing; 403 and every other failure becomes a
`Problem` of that object (or of that discovery/list request), and the rest of the check goes on.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..domain.untrusted_data import UntrustedDataError, loads_json
from .manifests import DesiredState
from .model import DriftError, ObjectKey, Problem

DEFAULT_TIMEOUT_SECONDS = 10.0
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
INSTANCE_LABEL = "app.kubernetes.io/instance"


def helm_selector(release: str) -> str:
    """The default ownership marker: the labels Helm charts conventionally set on every object of a release."""
    return f"{MANAGED_BY_LABEL}=Helm,{INSTANCE_LABEL}={release}"


def api_client_from_kubeconfig(kubeconfig: str | None = None) -> Any:
    """An ApiClient from `kubeconfig`, else `$KUBECONFIG`, in-cluster, or `~/.kube/config` (`kube.load_kube`)."""
    from ..kube import load_kube

    return load_kube(kubeconfig).api


@dataclass
class LiveState:
    """What the cluster answered: live objects for desired keys, missing keys, extra managed objects.

    `unchecked` holds desired objects the cluster could not be asked about (their problem says why);
    `selector` is the ownership marker extra objects were looked for with, None when they were not.
    """

    objects: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    missing: set[ObjectKey] = field(default_factory=set)
    extra: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    unchecked: set[ObjectKey] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    selector: str | None = None


# -- label selectors ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "=":
            return present and value in self.values
        if self.operator == "!=":
            return not present or value not in self.values
        if self.operator == "in":
            return present and value in self.values
        if self.operator == "notin":
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        return not present


_SET_REQUIREMENT = re.compile(r"^\s*([^\s=!(),]+)\s+(in|notin)\s*\(([^()]*)\)\s*$")
_EQ_REQUIREMENT = re.compile(r"^\s*([^\s=!(),]+)\s*(==|=|!=)\s*([^\s=!(),]*)\s*$")
_EXISTS_REQUIREMENT = re.compile(r"^\s*(!?)\s*([^\s=!(),]+)\s*$")


def parse_selector(selector: str) -> list[Requirement]:
    """The requirements of a Kubernetes label selector (`a=b,c!=d,e in (f,g),h,!i`).

    Parsed locally as well as sent to the server: a server (or test double) that ignores `labelSelector`
    must not turn every object of a namespace into an extra one.
    """
    parts: list[str] = []
    depth, current = 0, ""
    for char in selector:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    requirements = []
    for part in parts:
        if not part.strip():
            raise DriftError(f"malformed label selector {selector!r}: empty requirement")
        if match := _SET_REQUIREMENT.match(part):
            values = frozenset(v.strip() for v in match.group(3).split(",") if v.strip())
            requirements.append(Requirement(match.group(1), match.group(2), values))
        elif match := _EQ_REQUIREMENT.match(part):
            operator = "!=" if match.group(2) == "!=" else "="
            requirements.append(Requirement(match.group(1), operator, frozenset({match.group(3)})))
        elif match := _EXISTS_REQUIREMENT.match(part):
            requirements.append(Requirement(match.group(2), "!" if match.group(1) else "exists"))
        else:
            raise DriftError(f"malformed label selector {selector!r}: cannot read {part.strip()!r}")
    return requirements


def selector_matches(requirements: Sequence[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


# -- requests ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Resource:
    """A kind as discovery describes it: what its paths are made of."""

    api_version: str
    plural: str
    namespaced: bool

    def path(self, namespace: str | None, name: str | None = None) -> str:
        root = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        scope = f"/namespaces/{quote(namespace, safe='')}" if self.namespaced and namespace else ""
        tail = f"/{quote(name, safe='')}" if name is not None else ""
        return f"{root}{scope}/{self.plural}{tail}"


class _RequestFailed(Exception):
    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _get(api_client: Any, path: str, timeout: float, query: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET `path` and return its JSON; the only way this package talks to a cluster."""
    import kubernetes

    try:
        response = api_client.call_api(
            path,
            "GET",
            query_params=list((query or {}).items()),
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _preload_content=False,
            _request_timeout=timeout,
        )
        try:
            data = loads_json(response.data or b"{}", f"the answer to GET {path}")
        finally:
            response.release_conn()
    except kubernetes.client.ApiException as exc:
        raise _RequestFailed(exc.status, _api_message(exc)) from exc
    except UntrustedDataError as exc:
        raise _RequestFailed(None, str(exc)) from exc
    except Exception as exc:  # connection refused, TLS, timeouts: a problem to report, never a crash
        raise _RequestFailed(None, f"GET {path} failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict):
        raise _RequestFailed(None, f"the answer to GET {path} is not a JSON object")
    return data


def _api_message(exc: Any) -> str:
    message = ""
    try:
        message = loads_json(exc.body or "{}", "the API's error answer").get("message", "")
    except (ValueError, AttributeError):  # UntrustedDataError is a ValueError
        message = ""
    reason = exc.reason or ""
    text = f"{exc.status} {reason}".strip()
    return f"{text}: {message}" if message else text


def _discover(api_client: Any, api_version: str, timeout: float) -> dict[str, _Resource]:
    root = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    found: dict[str, _Resource] = {}
    for entry in _get(api_client, root, timeout).get("resources") or []:
        if not isinstance(entry, Mapping):
            continue
        name, kind = entry.get("name", ""), entry.get("kind")
        if not name or "/" in name or not kind or kind in found:
            continue  # subresources (pods/log) share their parent's kind
        found[kind] = _Resource(api_version, name, bool(entry.get("namespaced")))
    return found


def _is_controlled(obj: Mapping[str, Any]) -> bool:
    owners = (obj.get("metadata") or {}).get("ownerReferences") or []
    return any(isinstance(o, Mapping) and o.get("controller") for o in owners)


def read_live(
    desired: DesiredState,
    api_client: Any,
    *,
    managed_selector: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
) -> LiveState:
    """Fetch every desired object and list the managed kinds for extra ones; see the module docstring."""
    selector = managed_selector or (helm_selector(desired.release) if desired.release else None)
    requirements = parse_selector(selector) if selector else []
    live = LiveState(selector=selector)

    by_version: dict[str, list[ObjectKey]] = defaultdict(list)
    for key, obj in desired.objects.items():
        by_version[obj.api_version].append(key)
    resources: dict[tuple[str, str], _Resource] = {}  # (group, kind) → how to reach it
    for api_version, keys in sorted(by_version.items()):
        try:
            served = _discover(api_client, api_version, timeout)
        except _RequestFailed as exc:
            if exc.status == 404:  # the group is not installed: its objects cannot exist
                message = f"the API server does not serve it; {len(keys)} object(s) counted missing"
                live.problems.append(Problem(f"discovery {api_version}", message))
                live.missing.update(keys)
            else:  # one problem per object, so each object's earlier findings can be kept open
                message = f"not checked, the API's description cannot be read: {exc.message}"
                for key in keys:
                    live.problems.append(Problem(f"discovery {api_version}", message, key=key, status=exc.status))
                live.unchecked.update(keys)
            continue
        for key in keys:
            resource = served.get(key.kind)
            if resource is None:  # the CRD is not installed: the object cannot exist
                message = f"{api_version} serves no kind {key.kind}; {key} counted missing"
                live.problems.append(Problem(f"discovery {api_version}", message))
                live.missing.add(key)
                continue
            resources.setdefault((key.group, key.kind), resource)
            _fetch(api_client, resource, key, live, timeout)

    if requirements:
        for (group, kind), resource in sorted(resources.items()):
            namespaces: list[str | None] = list(desired.namespaces) if resource.namespaced else [None]
            for namespace in namespaces:
                _list_extra(api_client, resource, group, kind, namespace, desired, requirements, live, timeout)
    return live


def _fetch(api_client: Any, resource: _Resource, key: ObjectKey, live: LiveState, timeout: float) -> None:
    try:
        live.objects[key] = _get(api_client, resource.path(key.namespace, key.name), timeout)
    except _RequestFailed as exc:
        if exc.status == 404:
            live.missing.add(key)
        else:
            live.problems.append(Problem("fetch", exc.message, key=key, status=exc.status))
            live.unchecked.add(key)


def _list_extra(
    api_client: Any,
    resource: _Resource,
    group: str,
    kind: str,
    namespace: str | None,
    desired: DesiredState,
    requirements: Sequence[Requirement],
    live: LiveState,
    timeout: float,
) -> None:
    assert live.selector is not None
    where = f" in {namespace}" if namespace else ""
    try:
        listed = _get(api_client, resource.path(namespace), timeout, {"labelSelector": live.selector})
    except _RequestFailed as exc:
        live.problems.append(Problem(f"list {kind}{where}", exc.message, status=exc.status))
        return
    # A custom cluster-scoped kind the manifests could not know as such was keyed with a namespace.
    declared = {(k.group, k.kind, k.name) for k in desired.objects}
    for item in listed.get("items") or []:
        if not isinstance(item, dict):  # JSON: an object is a dict
            continue
        metadata = item.get("metadata") or {}
        name = metadata.get("name")
        if not name or not selector_matches(requirements, metadata.get("labels")) or _is_controlled(item):
            continue
        item_namespace = (metadata.get("namespace") or namespace) if resource.namespaced else None
        key = ObjectKey(group, kind, item_namespace, name)
        if key not in desired.objects and (resource.namespaced or (group, kind, name) not in declared):
            live.extra[key] = item
