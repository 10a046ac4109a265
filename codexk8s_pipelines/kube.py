"""The Kubernetes API client the platform's cluster readers share (`codexk8s doctor`, the ops drift check, and the
clean-up of a run's agent pods when the run ended outside its ops).

Which cluster: `--kubeconfig` when given, else `$KUBECONFIG`, else the in-cluster service account, else
`~/.kube/config`; a caller that must reach the cluster its agent pods run in (the agent runtime's
`load_incluster_config`) asks for the in-cluster service account alone. The client never retries: a caller against
a dead API server fails fast and says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from . import settings


def quantity(value: object) -> Decimal | None:
    """A Kubernetes resource quantity ('2Gi', '500m', 3) as a number, read by the client's own parser; None for
    anything that is not one. The ops drift check compares quantities with it, and the agent runtime sizes an agent's
    memory cap."""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    from kubernetes.utils import parse_quantity  # the client is heavy: imported when a quantity is first read

    try:
        parsed = parse_quantity(value)
    except (ValueError, ArithmeticError):
        return None
    return parsed if parsed.is_finite() else None  # the parser takes 'inf' and 'NaN'; Kubernetes does not


@dataclass
class KubeClient:
    """An `ApiClient`, where its configuration came from (for messages) and the API server it talks to."""

    api: Any
    source: str
    host: str


def load_kube(kubeconfig: str | None = None, *, context: str | None = None, in_cluster: bool = False) -> KubeClient:
    """`in_cluster`: the pod's service account and nothing else (kubernetes.config.ConfigException when the process
    is not in a cluster or has no token); `context`: the kubeconfig context to use (default: its current one)."""
    import kubernetes

    configuration = kubernetes.client.Configuration()
    env_kubeconfig = os.environ.get(settings.KUBECONFIG_VAR)
    if in_cluster:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        source = "in-cluster service account"
    elif kubeconfig:
        path = os.path.expanduser(kubeconfig)
        kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        source = f"kubeconfig {path} (--kubeconfig)"
    elif env_kubeconfig:
        kubernetes.config.load_kube_config(
            config_file=env_kubeconfig, context=context, client_configuration=configuration
        )
        source = f"kubeconfig {env_kubeconfig} ({settings.KUBECONFIG_VAR})"
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
        source = "in-cluster service account"
    else:
        path = os.path.expanduser("~/.kube/config")
        if not os.path.exists(path):
            raise FileNotFoundError(
                f"not in a cluster, {settings.KUBECONFIG_VAR} is unset and there is no ~/.kube/config"
            )
        kubernetes.config.load_kube_config(config_file=path, context=context, client_configuration=configuration)
        source = f"kubeconfig {path}"
    # kubernetes' Configuration declares `retries` only by `self.retries = None` (no annotation); it takes an int.
    configuration.retries = 0  # pyright: ignore[reportAttributeAccessIssue]
    return KubeClient(kubernetes.client.ApiClient(configuration), source, configuration.host)
