"""Group `kubernetes`: the API, the agent namespace, the RBAC the run pods need there, the agent service account,
the token Secret (metadata only) and the agent images.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, cast

from .. import settings
from ..domain.untrusted_data import loads_json
from ..kube import KubeClient, load_kube
from .agent_checks import check_mcp, check_model_keys
from .base import Check, Context, cause, fail, ok, one_line, skip, warn

K8S_TIMEOUT_SECONDS = 5
# What a run pod needs in the agent namespace (dagster-k8s PipesK8sClient: create, follow, read the log, delete;
# and the Secret that takes each run's MCP token to its agent container, owned by the pod: create only).
POD_VERBS: tuple[tuple[str, str, str], ...] = (
    ("create", "pods", ""),
    ("get", "pods", ""),
    ("list", "pods", ""),
    ("delete", "pods", ""),
    ("get", "pods", "log"),
    ("create", "secrets", ""),
)


def _api_error(exc: BaseException) -> tuple[int | None, str]:
    import kubernetes

    if isinstance(exc, kubernetes.client.ApiException):
        message = ""
        with contextlib.suppress(ValueError, AttributeError):  # UntrustedDataError is a ValueError
            message = loads_json(exc.body or "{}", "the Kubernetes API's error answer").get("message", "")
        return exc.status, one_line(message or exc.reason or "", 200)
    return None, cause(exc)


def check_kubernetes(ctx: Context, kubeconfig: str | None) -> list[Check]:
    from ..agents.k8s_runtime import runtime_from_environment

    runtime = runtime_from_environment(os.environ)
    checks: list[Check] = []
    kube: KubeClient | None = None
    try:
        kube = load_kube(kubeconfig)
    except Exception as exc:
        checks.append(
            fail(
                "kubernetes.api",
                f"no usable Kubernetes configuration: {cause(exc)}",
                f"run inside the cluster, or set {settings.KUBECONFIG_VAR} / pass --kubeconfig",
            )
        )
    if kube is not None:
        checks.extend(_check_cluster(kube, runtime))
        if not any(c.name == "kubernetes.namespace" and c.failed for c in checks):
            checks.extend(check_model_keys(ctx, kube, runtime.namespace))
        kube.api.close()
    checks.extend(check_images(ctx))
    checks.append(check_mcp(dict(os.environ)))
    return checks


def _check_cluster(kube: KubeClient, runtime: Any) -> list[Check]:
    import kubernetes

    ns = runtime.namespace
    try:
        # The generated client's methods return an inferred union of every deserialised type: name the model.
        version = cast(
            "kubernetes.client.VersionInfo",
            kubernetes.client.VersionApi(kube.api).get_code(_request_timeout=K8S_TIMEOUT_SECONDS),
        )
    except Exception as exc:
        status, cause = _api_error(exc)
        if status in (401, 403):
            fix = "the credentials of the kubeconfig / service account were refused: renew them"
        else:
            fix = "check the API server address in the kubeconfig and that this host can reach it"
        return [
            fail("kubernetes.api", f"cannot reach {kube.host} via {kube.source}: {cause}", fix),
            skip("kubernetes.namespace", "the Kubernetes API is not reachable"),
        ]
    checks = [
        ok(
            "kubernetes.api",
            f"{kube.host} ({version.git_version}) via {kube.source}; RBAC below is that identity's",
        )
    ]
    core = kubernetes.client.CoreV1Api(kube.api)
    namespace_missing = False
    try:
        found = cast("kubernetes.client.V1Namespace", core.read_namespace(ns, _request_timeout=K8S_TIMEOUT_SECONDS))
        phase = getattr(found.status, "phase", None) or "phase unknown"
        checks.append(ok("kubernetes.namespace", f"{ns} exists ({phase})"))
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            namespace_missing = True
            checks.append(
                fail(
                    "kubernetes.namespace",
                    f"namespace {ns} does not exist",
                    f"create it (kubectl create namespace {ns}), or set {settings.K8S_NAMESPACE_VAR} to the "
                    "agent namespace",
                )
            )
        elif status == 403:
            checks.append(
                skip("kubernetes.namespace", f"could not be checked: may not get namespace {ns} (403); not needed")
            )
        else:
            checks.append(fail("kubernetes.namespace", f"cannot read namespace {ns}: {cause}", "retry; check the API"))
    checks.extend(_check_rbac(kube, ns))
    if namespace_missing:
        why = f"namespace {ns} does not exist"
        checks.append(skip("kubernetes.service_account", why))
        checks.append(skip("kubernetes.secret", why))
        return checks
    checks.append(_check_service_account(core, ns, runtime.service_account))
    checks.append(_check_secret(kube, ns, runtime.token_secret_name, runtime.token_secret_key))
    return checks


def _check_rbac(kube: KubeClient, ns: str) -> list[Check]:
    import kubernetes

    authz = kubernetes.client.AuthorizationV1Api(kube.api)
    allowed: list[str] = []
    checks: list[Check] = []
    for verb, resource, subresource in POD_VERBS:
        what = f"{verb} {resource}/{subresource}" if subresource else f"{verb} {resource}"
        review = kubernetes.client.V1SelfSubjectAccessReview(
            spec=kubernetes.client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=kubernetes.client.V1ResourceAttributes(
                    namespace=ns, verb=verb, resource=resource, subresource=subresource or None
                )
            )
        )
        try:
            answer = cast(
                "kubernetes.client.V1SelfSubjectAccessReview",
                authz.create_self_subject_access_review(review, _request_timeout=K8S_TIMEOUT_SECONDS),
            )
        except Exception as exc:
            _status, cause = _api_error(exc)
            checks.append(
                fail(
                    "kubernetes.rbac",
                    f"cannot ask whether it may {what} in namespace {ns} (SelfSubjectAccessReview: {cause})",
                    "check that the API server serves authorization.k8s.io/v1",
                )
            )
            continue
        if answer.status is not None and answer.status.allowed:
            allowed.append(what)
            continue
        reason = getattr(answer.status, "reason", None) or getattr(answer.status, "evaluation_error", None)
        checks.append(
            fail(
                "kubernetes.rbac",
                f"may not {what} in namespace {ns}" + (f" ({one_line(reason, 150)})" if reason else ""),
                f'add verb "{verb}" on "{resource + ("/" + subresource if subresource else "")}" to the '
                f"platform's Role in {ns} (kubectl auth can-i {verb} {resource}"
                f"{' --subresource=' + subresource if subresource else ''} -n {ns})",
            )
        )
    if not checks:
        checks.append(ok("kubernetes.rbac", f"may {', '.join(allowed)} in namespace {ns}"))
    return checks


def _check_service_account(core: Any, ns: str, name: str) -> Check:
    check = "kubernetes.service_account"
    try:
        core.read_namespaced_service_account(name, ns, _request_timeout=K8S_TIMEOUT_SECONDS)
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            return fail(
                check,
                f"service account {name} (the agent pods' identity) does not exist in {ns}",
                f"create it (kubectl -n {ns} create serviceaccount {name}), or set "
                f"{settings.K8S_SERVICE_ACCOUNT_VAR} to an existing one",
            )
        if status == 403:
            return skip(check, f"could not be checked: may not get serviceaccounts in {ns} (403)")
        return fail(check, f"cannot read service account {name} in {ns}: {cause}", "retry; check the API")
    return ok(check, f"{name} exists in {ns}")


def secret_metadata(kube: KubeClient, ns: str, name: str) -> dict[str, Any]:
    """A Secret's metadata only (PartialObjectMetadata): its values are never fetched. Raises the API's error."""
    response = kube.api.call_api(
        "/api/v1/namespaces/{namespace}/secrets/{name}",
        "GET",
        path_params={"namespace": ns, "name": name},
        header_params={"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"},
        auth_settings=["BearerToken"],
        _preload_content=False,
        _request_timeout=K8S_TIMEOUT_SECONDS,
    )
    raw = response[0] if isinstance(response, tuple) else response
    answer = loads_json(raw.data or b"{}", f"the Kubernetes API's answer to GET secret {ns}/{name}")
    return answer.get("metadata") or {}  # nothing but the metadata is kept


def _check_secret(kube: KubeClient, ns: str, name: str, key: str) -> Check:
    """The token Secret's existence, reading its metadata only (PartialObjectMetadata): no value is fetched."""
    check = "kubernetes.secret"
    try:
        metadata = secret_metadata(kube, ns, name)
    except Exception as exc:
        status, cause = _api_error(exc)
        if status == 404:
            return fail(
                check,
                f"secret {name} (the GitHub token of the agent pods) does not exist in {ns}",
                f"create it: kubectl -n {ns} create secret generic {name} --from-literal={key}=<token> "
                f"(or set {settings.K8S_TOKEN_SECRET_VAR} to the existing one)",
            )
        if status == 403:
            return skip(
                check,
                f"could not be checked: the platform may not read secrets in {ns} (403), which it does not need; "
                f"check by hand: kubectl -n {ns} get secret {name}",
            )
        return fail(check, f"cannot read secret {name} in {ns}: {cause}", "retry; check the API")
    return ok(check, f"{metadata.get('name', name)} exists in {ns} (metadata only; its keys are not read)")


def _image_tag(image: str) -> str | None:
    """The tag of an image reference; None when it is pinned by digest."""
    if "@" in image:
        return None
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def check_images(ctx: Context) -> list[Check]:
    name = "kubernetes.images"
    try:
        catalog = ctx.catalog()
    except Exception:
        return [skip(name, "the agent catalog did not load (see catalog)")]
    by_image: dict[str, list[str]] = {}
    checks: list[Check] = []
    for agent in catalog.agents.values():
        image = (agent.image or "").strip()
        if not image:
            checks.append(fail(name, f"agent {agent.name} has no image", "set `image:` for it in the agent catalog"))
            continue
        by_image.setdefault(image, []).append(agent.name)
    for image, agents in by_image.items():
        tag = _image_tag(image)
        if tag == "latest":
            found = "uses the tag latest" if ":" in image.rsplit("/", 1)[-1] else "has no tag, so latest"
            checks.append(
                warn(
                    name,
                    f"{image} {found} (agents: {', '.join(agents)}); runs may differ as the tag moves",
                    "pin a version tag or a digest in the agent catalog ($CODEXK8S_AGENT_CATALOG)",
                )
            )
    if not checks:
        listing = "; ".join(f"{image} ({', '.join(agents)})" for image, agents in by_image.items())
        checks.append(ok(name, f"{sum(map(len, by_image.values()))} agents, images pinned: {listing}"))
    return checks
