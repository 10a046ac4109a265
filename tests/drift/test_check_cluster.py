"""`check_drift` against kmock's API server: objects made through the real client, read back by the real client."""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import kmock
import kubernetes
import pytest
import yaml

from codexk8s_pipelines.drift import (
    DesiredState,
    DriftError,
    DriftReport,
    IgnoreRule,
    ObjectKey,
    PointerError,
    check_drift,
    load_manifests,
    manifests,
    render_helm,
)
from codexk8s_pipelines.security.safe_files import MAX_DEPTH, TOO_DEEP, remove_tree
from tests.helpers import folder_chain

from .conftest import Cluster

RELEASE = "shop"
NS = "shop"
OWNED = {"app.kubernetes.io/managed-by": "Helm", "app.kubernetes.io/instance": RELEASE}
WEB = ObjectKey("apps", "Deployment", NS, "web")
SETTINGS = ObjectKey("", "ConfigMap", NS, "settings")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": NS, "labels": {**OWNED, "app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "nginx:1.27",
                            "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "MODE", "value": "prod"}],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {"requests": {"cpu": "0.5", "memory": "1Gi"}, "limits": {"cpu": 1}},
                        },
                        {"name": "sidecar", "image": "busybox:1.36", "args": ["sleep", "infinity"]},
                    ]
                },
            },
        },
    }


def config_map(name: str = "settings", labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS, "labels": OWNED if labels is None else labels},
        "data": data or {"greeting": "hello"},
    }


def service() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web", "labels": OWNED},  # no namespace: the release's
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }


def cluster_role(verbs: list[str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": "shop-reader", "labels": OWNED},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": verbs or ["get", "list"]}],
    }


def as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` as an API server returns it: its own metadata, status, and defaults the manifest never set."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update(
        {
            "uid": "0b6c4a4e-4b0e-4c39-9f43-6f1f3c0d9a10",
            "resourceVersion": "4711",
            "generation": 3,
            "creationTimestamp": "2026-01-02T03:04:05Z",
            "managedFields": [{"manager": "helm", "operation": "Update", "apiVersion": obj["apiVersion"]}],
        }
    )
    stored["metadata"].setdefault("annotations", {})["deployment.kubernetes.io/revision"] = "7"
    if obj["kind"] == "Deployment":
        spec = stored["spec"]
        spec.update({"revisionHistoryLimit": 10, "progressDeadlineSeconds": 600})
        spec["strategy"] = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}
        pod = spec["template"]["spec"]
        pod.update({"restartPolicy": "Always", "dnsPolicy": "ClusterFirst", "schedulerName": "default-scheduler"})
        for container in pod["containers"]:
            container.update({"imagePullPolicy": "IfNotPresent", "terminationMessagePath": "/dev/termination-log"})
            for port in container.get("ports", []):
                port["protocol"] = "TCP"
        web = pod["containers"][0]
        web["resources"] = {"requests": {"cpu": "500m", "memory": "1024Mi"}, "limits": {"cpu": "1"}}
        stored["status"] = {"replicas": 2, "readyReplicas": 2, "observedGeneration": 3}
    return stored


def desired_state(tmp_path: Path, *docs: dict[str, Any]) -> DesiredState:
    """The manifests written as one multi-document file and loaded as the repository's would be."""
    path = tmp_path / "manifests" / "all.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False), encoding="utf-8")
    state = load_manifests(path.parent, namespace=NS, release=RELEASE)
    assert state.problems == []
    return state


def changes(report: DriftReport) -> dict[tuple[ObjectKey, str | None], tuple[Any, Any]]:
    return {(i.key, i.pointer): (i.desired, i.live) for i in report.items if i.drift == "changed"}


def test_identical_object_with_server_fields_and_defaults_is_no_drift(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, deployment(), config_map())
    cluster.create(as_stored(deployment()), as_stored(config_map()), namespace=NS)

    report = check_drift(desired, cluster.api_client)

    assert report.items == [], report.items
    assert report.errors == []
    assert report.counts["checked"] == 2
    assert report.selector == "app.kubernetes.io/managed-by=Helm,app.kubernetes.io/instance=shop"


def test_changed_fields_are_reported_with_exact_pointers_and_values(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, deployment(), config_map())
    live = as_stored(deployment())
    live["spec"]["replicas"] = 3
    containers = live["spec"]["template"]["spec"]["containers"]
    containers.reverse()  # order differs: matched by name, not position
    web = containers[1]
    web["image"] = "nginx:1.25"
    web["env"] = [{"name": "MODE", "value": "prod"}, {"name": "LOG_LEVEL", "value": "debug"}]
    cluster.create(live, as_stored(config_map(greeting="hi")), namespace=NS)

    report = check_drift(desired, cluster.api_client)

    assert changes(report) == {
        (WEB, "/spec/replicas"): (2, 3),
        (WEB, "/spec/template/spec/containers/0/image"): ("nginx:1.27", "nginx:1.25"),
        (WEB, "/spec/template/spec/containers/0/env/0/value"): ("info", "debug"),
        (SETTINGS, "/data/greeting"): ("hello", "hi"),
    }
    paths = {i.pointer: i.path for i in report.items}
    assert paths["/spec/template/spec/containers/0/env/0/value"] == (
        "spec.template.spec.containers[name=web].env[name=LOG_LEVEL].value"
    )
    assert report.counts["changed"] == 4

    hpa = IgnoreRule("/spec/replicas", kind="Deployment", reason="scaled by the HPA")
    elsewhere = IgnoreRule("/spec/replicas", kind="StatefulSet")
    ignored = check_drift(desired, cluster.api_client, ignore=[hpa])
    assert (WEB, "/spec/replicas") not in changes(ignored)
    assert len(ignored.items) == 3 and ignored.ignored == 1
    assert (WEB, "/spec/replicas") in changes(check_drift(desired, cluster.api_client, ignore=[elsewhere]))
    as_data = check_drift(desired, cluster.api_client, ignore=[{"kind": "Deployment", "pointer": "/spec/replicas"}])
    assert [i.fingerprint for i in as_data.items] == [i.fingerprint for i in ignored.items]
    assert [i.fingerprint for i in check_drift(desired, cluster.api_client).items] == [
        i.fingerprint for i in report.items
    ]


def test_quantities_are_compared_by_amount(cluster: Cluster, tmp_path: Path) -> None:
    equal, smaller = deployment(), deployment()
    smaller["metadata"]["name"] = "smaller"
    desired = desired_state(tmp_path, equal, smaller)  # both ask for cpu 0.5, memory 1Gi, cpu limit 1
    for obj, cpu in ((equal, "500m"), (smaller, "250m")):
        live = as_stored(obj)
        requests = {"cpu": cpu, "memory": "1073741824"}
        live["spec"]["template"]["spec"]["containers"][0]["resources"] = {
            "requests": requests,
            "limits": {"cpu": "1000m"},
        }
        cluster.create(live, namespace=NS)

    report = check_drift(desired, cluster.api_client)

    key = ObjectKey("apps", "Deployment", NS, "smaller")
    assert changes(report) == {(key, "/spec/template/spec/containers/0/resources/requests/cpu"): ("0.5", "250m")}


def test_missing_and_extra_objects_only_count_objects_carrying_the_release_labels(
    cluster: Cluster, tmp_path: Path
) -> None:
    desired = desired_state(tmp_path, config_map(), service())
    cluster.create(
        as_stored(config_map()),
        config_map("leftover"),  # the release's labels, gone from the chart: extra
        config_map("unrelated", labels={"team": "someone-else"}),  # shares the namespace: not ours
        config_map("other-release", labels={**OWNED, "app.kubernetes.io/instance": "blog"}),
        namespace=NS,
    )
    cluster.create({**config_map("elsewhere"), "metadata": {"name": "elsewhere", "labels": OWNED}}, namespace="other")

    report = check_drift(desired, cluster.api_client)

    found = {(i.drift, i.key) for i in report.items}
    assert found == {
        ("missing", ObjectKey("", "Service", NS, "web")),
        ("extra", ObjectKey("", "ConfigMap", NS, "leftover")),
    }
    assert report.errors == []

    by_selector = check_drift(desired, cluster.api_client, managed_selector="team in (someone-else, nobody)")
    assert {(i.drift, i.key.name) for i in by_selector.items} == {("missing", "web"), ("extra", "unrelated")}

    whole = IgnoreRule("", kind="ConfigMap", name="leftover")
    assert {i.drift for i in check_drift(desired, cluster.api_client, ignore=[whole]).items} == {"missing"}


def test_cluster_scoped_objects_have_no_namespace(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, cluster_role())
    assert list(desired.objects) == [ObjectKey("rbac.authorization.k8s.io", "ClusterRole", None, "shop-reader")]
    extra_role = cluster_role()
    extra_role["metadata"]["name"] = "shop-old"
    cluster.create(as_stored(cluster_role(["get", "list", "watch"])), extra_role)

    report = check_drift(desired, cluster.api_client)

    key = ObjectKey("rbac.authorization.k8s.io", "ClusterRole", None, "shop-reader")
    assert changes(report) == {(key, "/rules/0/verbs"): (["get", "list"], ["get", "list", "watch"])}
    assert [(i.drift, str(i.key)) for i in report.items if i.drift != "changed"] == [
        ("extra", "ClusterRole.rbac.authorization.k8s.io shop-old")
    ]


def test_forbidden_and_unknown_kinds_are_errors_not_crashes(cluster: Cluster, tmp_path: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "x"}}
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
    desired = desired_state(tmp_path, config_map(), secret, widget)
    cluster.create(as_stored(config_map(greeting="hi")), namespace=NS)
    cluster.forbid("v1/secrets")

    report = check_drift(desired, cluster.api_client)

    assert changes(report) == {(SETTINGS, "/data/greeting"): ("hello", "hi")}
    forbidden = [e for e in report.errors if e.status == 403]
    assert [e.key for e in forbidden] == [ObjectKey("", "Secret", NS, "creds")]
    assert "forbidden" in forbidden[0].message.lower()
    assert any("example.com/v1" in e.source for e in report.errors)
    assert ("missing", ObjectKey("example.com", "Widget", NS, "w")) in {(i.drift, i.key) for i in report.items}


def test_an_unreadable_api_description_leaves_its_objects_unchecked(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, deployment(), config_map())
    cluster.create(as_stored(config_map()), namespace=NS)
    cluster.fail(
        kmock.KubernetesError(status=503, reason="ServiceUnavailable", message="etcd is sad"), "get /apis/apps/v1"
    )

    report = check_drift(desired, cluster.api_client)

    assert report.items == []
    assert report.unchecked == [WEB]
    assert report.counts["checked"] == 1 and report.counts["unchecked"] == 1
    [error] = report.errors
    assert (error.key, error.status, error.source) == (WEB, 503, "discovery apps/v1")
    assert "etcd is sad" in error.message


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (None, "the answer to GET /apis/apps/v1 is not JSON the platform can read: nested too deeply"),
        (503, "503 Service Unavailable"),
    ],
    ids=["200", "503"],
)
def test_an_api_answer_nested_too_deeply_leaves_its_objects_unchecked(
    cluster: Cluster, tmp_path: Path, status: int | None, message: str
) -> None:
    """The API describes apps/v1 with `[` 200,000 times, as a 200 or in a 503's body: json's decoder raised
    RecursionError, which the 200 reported as "failed: RecursionError: maximum recursion depth exceeded" and the 503
    let out of the whole drift check (raised while its message was read)."""
    desired = desired_state(tmp_path, deployment(), config_map())
    cluster.create(as_stored(config_map()), namespace=NS)
    cluster.call(lambda: cluster.emulator["get /apis/apps/v1"] << (status or 200) << b"[" * 200_000)

    report = check_drift(desired, cluster.api_client)

    assert report.items == []
    assert report.unchecked == [WEB]
    assert report.counts["checked"] == 1 and report.counts["unchecked"] == 1
    [error] = report.errors
    assert (error.key, error.status, error.source) == (WEB, status, "discovery apps/v1")
    assert error.message == f"not checked, the API's description cannot be read: {message}"


def test_a_custom_cluster_scoped_kind_is_not_its_own_extra(cluster: Cluster, tmp_path: Path) -> None:
    cluster.declare("example.com/v1/gizmos", "Gizmo", namespaced=False)
    gizmo = {
        "apiVersion": "example.com/v1",
        "kind": "Gizmo",
        "metadata": {"name": "g", "labels": OWNED},
        "spec": {"n": 1},
    }
    desired = desired_state(tmp_path, gizmo, config_map())
    assert ObjectKey("example.com", "Gizmo", NS, "g") in desired.objects  # offline, it could not know
    custom = kubernetes.client.CustomObjectsApi(cluster.api_client)
    custom.create_cluster_custom_object("example.com", "v1", "gizmos", {**gizmo, "spec": {"n": 2}})
    custom.create_cluster_custom_object(
        "example.com", "v1", "gizmos", {**gizmo, "metadata": {"name": "old", "labels": OWNED}}
    )
    cluster.create(as_stored(config_map()), namespace=NS)

    report = check_drift(desired, cluster.api_client)

    assert [(i.drift, i.key, i.pointer) for i in report.items] == [
        ("extra", ObjectKey("example.com", "Gizmo", None, "old"), None),
        ("changed", ObjectKey("example.com", "Gizmo", NS, "g"), "/spec/n"),
    ]


def test_secret_values_never_reach_the_report(cluster: Cluster, tmp_path: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
    desired = desired_state(tmp_path, secret)
    live = {**secret, "metadata": {"name": "creds", "namespace": NS}, "data": {"token": "b3RoZXI="}}
    del live["stringData"]
    cluster.create(live, namespace=NS)

    report = check_drift(desired, cluster.api_client)

    assert [(i.pointer, i.desired, i.live) for i in report.items] == [("/data/token", "<redacted>", "<redacted>")]
    same = {**live, "metadata": {"name": "creds2", "namespace": NS}, "data": {"token": "czNjcjN0"}}
    cluster.create(same, namespace=NS)
    twin = {**secret, "metadata": {"name": "creds2"}}
    assert check_drift(desired_state(tmp_path, twin), cluster.api_client).items == []


def test_a_drift_check_only_reads(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, deployment(), config_map(), service(), cluster_role())
    live = as_stored(deployment())
    live["spec"]["replicas"] = 5
    cluster.create(live, config_map("leftover"), namespace=NS)
    cluster.create(as_stored(cluster_role()))
    before = len(cluster.requests())

    report = check_drift(desired, cluster.api_client)

    assert report.has_drift
    seen = cluster.requests()[before:]
    assert seen, "the check made no request at all"
    assert {method for method, _, _ in seen} == {"GET"}, seen
    lists = [(path, query) for _, path, query in seen if path.endswith(("/configmaps", "/clusterroles"))]
    assert lists and all(q.get("labelSelector") == report.selector for _, q in lists)


def test_malformed_ignore_pointer_fails_before_any_request(cluster: Cluster, tmp_path: Path) -> None:
    desired = desired_state(tmp_path, config_map())
    before = len(cluster.requests())
    with pytest.raises(PointerError, match="must be empty or start with '/'"):
        check_drift(desired, cluster.api_client, ignore=[{"pointer": "spec/replicas", "kind": "Deployment"}])
    assert len(cluster.requests()) == before


def test_unreachable_cluster_is_an_error_in_the_report(tmp_path: Path) -> None:
    configuration = kubernetes.client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = 0
    desired = desired_state(tmp_path, config_map())
    with kubernetes.client.ApiClient(configuration) as api_client:
        report = check_drift(desired, api_client, timeout=2)
    assert report.items == []
    assert report.counts["checked"] == 0
    assert [e.source for e in report.errors] == ["discovery v1"]


CHART_YAML = """apiVersion: v2
name: tiny
version: 0.1.0
"""
VALUES_YAML = """greeting: hello
image: nginx:1.27
"""
TEMPLATE = """{{- define "tiny.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-settings
  labels:
    {{- include "tiny.labels" . | nindent 4 }}
data:
  greeting: {{ .Values.greeting | quote }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: {{ .Release.Name }}-reader
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "tiny.labels" . | nindent 4 }}
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["get"]
---
apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-test
  annotations:
    helm.sh/hook: test
spec:
  containers:
    - name: test
      image: {{ .Values.image }}
"""


def write_chart(root: Path, template: str = TEMPLATE) -> Path:
    chart = root / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(CHART_YAML, encoding="utf-8")
    (chart / "values.yaml").write_text(VALUES_YAML, encoding="utf-8")
    (chart / "templates" / "all.yaml").write_text(template, encoding="utf-8")
    return chart


def test_a_rendered_helm_chart_compared_with_the_cluster(cluster: Cluster, tmp_path: Path, helm_bin: str) -> None:
    chart = write_chart(tmp_path)
    overrides = tmp_path / "prod.yaml"
    overrides.write_text("greeting: bonjour\n", encoding="utf-8")

    desired = render_helm(chart, release=RELEASE, namespace=NS, values_files=[overrides], helm_bin=helm_bin)

    assert desired.problems == []
    assert desired.release == RELEASE
    assert sorted(desired.objects) == [
        ObjectKey("", "ConfigMap", NS, "shop-settings"),
        ObjectKey("rbac.authorization.k8s.io", "Role", NS, "shop-reader"),
    ]  # the test hook is not release state
    source = desired.objects[ObjectKey("", "ConfigMap", NS, "shop-settings")].source
    assert source.startswith("tiny/templates/all.yaml")

    for obj in desired.objects.values():
        live = as_stored(obj.manifest)
        live["metadata"]["namespace"] = NS
        if obj.key.kind == "ConfigMap":
            live["data"]["greeting"] = "hello"
        cluster.create(live, namespace=NS)

    report = check_drift(desired, cluster.api_client)

    key = ObjectKey("", "ConfigMap", NS, "shop-settings")
    assert changes(report) == {(key, "/data/greeting"): ("bonjour", "hello")}
    assert [i.drift for i in report.items] == ["changed"]


def test_a_failing_helm_render_raises_with_helms_stderr(tmp_path: Path, helm_bin: str) -> None:
    chart = write_chart(tmp_path, "kind: ConfigMap\n{{ .Values.nope.deeper }}\n")
    with pytest.raises(
        DriftError, match=r"helm template \S+ failed \(exit 1\): Error: tiny/templates/all.yaml"
    ) as caught:
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin)
    assert "nil pointer evaluating interface {}.deeper" in str(caught.value)
    with pytest.raises(DriftError, match="helm binary not found"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=str(tmp_path / "no-helm"))


def test_kmock_request_log_is_what_the_assertion_reads(cluster: Cluster) -> None:
    """Guards the GET-only assertion: a write through the client does show up as a non-GET request."""
    cluster.create(config_map("probe"), namespace=NS)
    methods = [m for m, path, _ in cluster.requests() if path.endswith("/configmaps")]
    assert methods == ["POST"]


def test_a_chart_linked_to_host_files_is_not_rendered_and_helm_never_sees_the_platforms_secrets(
    tmp_path: Path, helm_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """helm follows a chart's symlinks: a chart file linked to /proc/self/environ (or a service-account token) was
    rendered into the desired state, and a changed value is shown in the drift report on GitHub. Such a chart is
    refused before helm runs, and helm never gets the platform's variables to begin with."""
    token = "ghs_" + "driftLeak" * 4
    monkeypatch.setenv("CODEXK8S_GITHUB_TOKEN", token)
    template = (
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: env}\ndata: {env: {{ .Files.Get "files/env" | quote }}}\n'
    )
    chart = write_chart(tmp_path, template)
    (chart / "files").mkdir()
    (chart / "files" / "env").symlink_to("/proc/self/environ")
    with pytest.raises(DriftError, match=r"not run: symlinks lead out of .*files/env"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin)
    values = tmp_path / "prod.yaml"
    values.symlink_to("/etc/hostname")
    (chart / "files" / "env").unlink()
    with pytest.raises(DriftError, match=r"prod.yaml"):
        render_helm(chart, release=RELEASE, namespace=NS, values_files=[values], helm_bin=helm_bin, root=tmp_path)

    # Linked folders on the way out of the checkout: the chart itself, and a folder a values file is reached through.
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "vals").mkdir(parents=True)
    (outside / "vals" / "prod.yaml").write_text("nope: 1\n")
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "chart").symlink_to(chart)
    with pytest.raises(DriftError, match=r"chart \(symlink to outside the scanned tree"):
        render_helm(checkout / "chart", release=RELEASE, namespace=NS, helm_bin=helm_bin, root=checkout)
    (tmp_path / "vals").symlink_to(outside / "vals")
    with pytest.raises(DriftError, match=r"prod.yaml \(symlink to outside the scanned tree"):
        vals = [tmp_path / "vals" / "prod.yaml"]
        render_helm(chart, release=RELEASE, namespace=NS, values_files=vals, helm_bin=helm_bin, root=tmp_path)

    # A link inside the checkout is fine.
    (chart / "files" / "real").write_text("settings\n")
    (chart / "files" / "env").symlink_to("real")
    desired = render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, root=tmp_path)
    (rendered,) = [o for o in desired.objects.values() if o.key.name == "env"]
    assert rendered.manifest["data"]["env"] == "settings\n"
    # What helm itself is given: a stand-in binary that writes out its environment.
    seen = tmp_path / "helm-environ"
    spy = tmp_path / "helm-spy"
    spy.write_text(f'#!/bin/sh\nenv > {seen}\nexec {helm_bin} "$@"\n')
    spy.chmod(0o755)
    render_helm(chart, release=RELEASE, namespace=NS, helm_bin=str(spy), root=tmp_path)
    names = {line.split("=", 1)[0] for line in seen.read_text().splitlines() if "=" in line}
    assert token not in seen.read_text() and not any(n.startswith("CODEXK8S_") for n in names), names


def test_a_chart_nested_past_any_walk_or_with_a_linked_folder_is_not_rendered(tmp_path: Path, helm_bin: str) -> None:
    """The link check walked the chart with os.walk, which recursed once per level: a chart with a folder chain 1,200
    deep raised RecursionError out of the drift check, whatever lay at the bottom (a link to /proc/self/environ,
    there). A folder too deep to check is a refusal now, and so is a linked folder leading out."""
    chart = write_chart(tmp_path)
    (chart / "files").mkdir()
    (chart / "files" / "etc").symlink_to("/etc", target_is_directory=True)
    with pytest.raises(DriftError, match=r"not run: symlinks lead out of .*files/etc \(symlink to outside"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, root=tmp_path)
    (chart / "files" / "etc").unlink()
    folder_chain(chart / "files", 1200)
    (chart / "files" / Path(*["d"] * 1200) / "env").symlink_to("/proc/self/environ")  # 2,400 characters: no PATH_MAX
    try:
        cut = "/".join(["files", *["d"] * MAX_DEPTH])
        with pytest.raises(DriftError, match=rf"not run: {cut} cannot be checked for links \({TOO_DEEP}\)"):
            render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, root=tmp_path)
    finally:
        remove_tree(chart / "files")  # pytest's own clean-up of tmp_path recurses


def test_a_linked_folder_that_stays_in_the_checkout_is_checked_where_it_leads(tmp_path: Path, helm_bin: str) -> None:
    """helm reads through a chart's linked folder. The check judged such a link by where it points only: `files ->
    ../shared` (inside the checkout) passed, and `shared/leak -> /any/file` was rendered into the desired state
    (review of stop 36: a committed chart could read the runner's service-account token). A folder linked to itself
    or to an ancestor is checked once (the check ends; helm would then fail on the loop by itself)."""
    outside = tmp_path / "outside-secret"
    outside.write_text("SECRET-OUTSIDE")
    checkout = tmp_path / "checkout"
    template = (
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: s}\ndata: {s: {{ .Files.Get "files/leak" | quote }}}\n'
    )
    chart = write_chart(checkout, template)
    (checkout / "shared").mkdir()
    (checkout / "shared" / "leak").symlink_to(outside)
    (checkout / "shared" / "again").symlink_to("../shared", target_is_directory=True)  # a loop, followed once
    (chart / "files").symlink_to("../shared", target_is_directory=True)
    with pytest.raises(DriftError, match=r"not run: symlinks lead out of .*shared/leak \(symlink to outside"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, root=checkout)
    (checkout / "shared" / "again").unlink()  # helm itself follows the loop until it fails
    (checkout / "shared" / "leak").unlink()
    (checkout / "shared" / "leak").write_text("shared settings")
    desired = render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, root=checkout)
    (rendered,) = [o for o in desired.objects.values() if o.key.name == "s"]
    assert rendered.manifest["data"]["s"] == "shared settings"


def test_helm_does_not_outlive_an_interrupted_check(
    tmp_path: Path, helm_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run terminated while helm renders (Dagster interrupts the step): the check ends, and helm with it, instead of
    rendering on until its own end."""
    marker = tmp_path / "helm-pid"
    slow = tmp_path / "slow-helm"
    slow.write_text(f"#!/bin/sh\necho $$ > {marker}\nexec sleep 30\n")
    slow.chmod(0o755)
    chart = write_chart(tmp_path)

    def interrupted(self: object, timeout: float | None = None) -> list[object]:
        while not marker.exists() or not marker.read_text().strip():
            time.sleep(0.01)
        raise KeyboardInterrupt

    monkeypatch.setattr(manifests.selectors.DefaultSelector, "select", interrupted)
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=str(slow))
    assert time.monotonic() - started < 10
    pid = int(marker.read_text())
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()


def test_a_chart_that_prints_without_end_is_stopped_at_the_output_limit(
    tmp_path: Path, helm_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A chart is a program: `range until N` printed as much as it was told, all of it held in the drift check's memory
    and parsed (here 12 MB, against a limit of 1 MB). helm is stopped past the limit, and nothing is parsed."""
    monkeypatch.setattr(manifests, "HELM_OUTPUT_MAX_BYTES", 1024 * 1024)
    chart = write_chart(tmp_path, "{{ range until 250000 }}# line {{ . }} of a chart that goes on and on\n{{ end }}")
    started = time.monotonic()
    with pytest.raises(DriftError, match=r"helm template .* printed more than 1 MB: stopped, not read"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin)
    assert time.monotonic() - started < 60


def test_a_chart_that_renders_without_end_is_stopped_by_helms_memory_limit(tmp_path: Path, helm_bin: str) -> None:
    """helm renders every template in memory before it prints: `range until 100000000` grew helm to 17.8 GB resident
    (measured by hand), before any output limit could act and long before the timeout. helm runs with a memory limit
    and ends at it in seconds, and the error says so in one line (not Go's stack dump of every goroutine)."""
    chart = write_chart(tmp_path, "{{ range until 100000000 }}# line {{ . }} of a chart that never ends\n{{ end }}")
    started = time.monotonic()
    with pytest.raises(DriftError, match=r"helm template .* ran out of its 2 GiB of memory: does a template never end"):
        render_helm(chart, release=RELEASE, namespace=NS, helm_bin=helm_bin, timeout=60)
    assert time.monotonic() - started < 30
