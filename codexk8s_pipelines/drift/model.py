"""The vocabulary shared by the desired side, the live side and the diff: object keys and problems.

An object is identified the way the API server identifies it: API group (not version — `apps/v1` and
`apps/v1beta2` address the same stored object), kind, namespace and name. Cluster-scoped objects have no
namespace, so the same name in two namespaces never collides with a cluster-scoped one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

# Kinds the API server stores without a namespace. A manifest cannot tell; discovery can, but the desired
# state is built offline (CI, a dry render), so the well-known cluster-scoped kinds are listed here.
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "APIService",
        "CertificateSigningRequest",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "ComponentStatus",
        "CSIDriver",
        "CSINode",
        "CustomResourceDefinition",
        "FlowSchema",
        "IngressClass",
        "MutatingAdmissionPolicy",
        "MutatingAdmissionPolicyBinding",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "PriorityLevelConfiguration",
        "RuntimeClass",
        "StorageClass",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ValidatingWebhookConfiguration",
        "VolumeAttachment",
    }
)


def api_group(api_version: str) -> str:
    """The group part of an apiVersion: `apps/v1` → `apps`, the core `v1` → ``""``."""
    return api_version.rpartition("/")[0]


@functools.total_ordering
@dataclass(frozen=True)
class ObjectKey:
    """One object's identity; ordered so reports list objects in a stable order."""

    group: str
    kind: str
    namespace: str | None
    name: str

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, ObjectKey):
            return NotImplemented
        return self._order() < other._order()

    def _order(self) -> tuple[str, str, str, str]:
        return (self.group, self.kind, self.namespace or "", self.name)  # None sorts first, never raises

    @property
    def group_kind(self) -> str:
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def __str__(self) -> str:
        where = f"{self.namespace}/" if self.namespace else ""
        return f"{self.group_kind} {where}{self.name}"

    def identity(self) -> str:
        """The unambiguous text form hashed into fingerprints (`str()` is for humans and may change)."""
        return f"{self.group}|{self.kind}|{self.namespace or ''}|{self.name}"

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "kind": self.kind, "namespace": self.namespace, "name": self.name}


@dataclass(frozen=True)
class Problem:
    """Something that kept part of the check from being made: a bad document, a refused or failed request.

    Problems are reported next to the drift rather than raised, so one unreadable file or one forbidden
    kind does not hide the drift of everything else.
    """

    source: str
    message: str
    key: ObjectKey | None = None
    status: int | None = None

    def __str__(self) -> str:
        what = f"{self.key}: " if self.key is not None else ""
        return f"{self.source}: {what}{self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "message": self.message,
            "key": self.key.to_dict() if self.key is not None else None,
            "status": self.status,
        }


class DriftError(Exception):
    """A failure that makes the whole check meaningless (no manifests, helm failing, a malformed rule)."""
