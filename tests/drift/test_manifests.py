"""The desired state from files: discovery of files, documents, keys, namespaces, and what cannot be loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from codexk8s_pipelines.drift import DriftError, ObjectKey, load_manifests

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_directory_is_read_recursively_with_multi_documents_lists_and_empty_documents(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", "# the web tier\n---\n" + DEPLOYMENT + "---\n---\n# nothing here\n")
    write(
        tmp_path / "nested" / "deeper" / "b.yml",
        """apiVersion: v1
kind: List
items:
  - apiVersion: v1
    kind: ConfigMap
    metadata: {name: one, namespace: other}
  - apiVersion: v1
    kind: ServiceList
    items: []
---
apiVersion: v1
kind: ConfigMapList
items:
  - {apiVersion: v1, kind: ConfigMap, metadata: {name: two}}
""",
    )
    write(tmp_path / "README.md", "kind: NotAManifest\n")
    write(tmp_path / "values.json", "{}")

    state = load_manifests(tmp_path, namespace="shop")

    assert state.problems == []
    assert sorted(state.objects) == [
        ObjectKey("", "ConfigMap", "other", "one"),
        ObjectKey("", "ConfigMap", "shop", "two"),
        ObjectKey("apps", "Deployment", "shop", "web"),
    ]
    assert state.namespaces == ["other", "shop"]
    web = state.objects[ObjectKey("apps", "Deployment", "shop", "web")]
    assert web.api_version == "apps/v1"
    assert web.source == f"{tmp_path / 'a.yaml'}, document 1"
    assert "namespace" not in web.manifest["metadata"]  # the manifest is kept as written


def test_cluster_scoped_kinds_have_no_namespace(tmp_path: Path) -> None:
    docs = [
        ("v1", "Namespace"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
        ("v1", "PersistentVolume"),
        ("storage.k8s.io/v1", "StorageClass"),
        ("rbac.authorization.k8s.io/v1", "Role"),
    ]
    text = "\n---\n".join(
        f"apiVersion: {v}\nkind: {k}\nmetadata:\n  name: x\n  namespace: ignored-for-cluster-kinds" for v, k in docs
    )
    state = load_manifests(write(tmp_path / "all.yaml", text), namespace="shop")
    scopes = {key.kind: key.namespace for key in state.objects}
    assert scopes == {
        "Namespace": None,
        "ClusterRole": None,
        "ClusterRoleBinding": None,
        "CustomResourceDefinition": None,
        "PersistentVolume": None,
        "StorageClass": None,
        "Role": "ignored-for-cluster-kinds",
    }
    assert ObjectKey("apiextensions.k8s.io", "CustomResourceDefinition", None, "x") in state.objects


def test_bad_documents_are_problems_naming_file_and_document_and_the_rest_still_loads(tmp_path: Path) -> None:
    path = write(
        tmp_path / "mixed.yaml",
        DEPLOYMENT
        + "---\nkind: ConfigMap\nmetadata: {name: [unclosed\n"
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n"
        + "---\napiVersion: v1\nkind: Pod\nmetadata: {generateName: job-}\n"
        + "---\napiVersion: v1\nmetadata: {name: kindless}\n"
        + "---\n- just\n- a list\n"
        + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: last}\n",
    )

    state = load_manifests(path)

    assert sorted(k.name for k in state.objects) == ["last", "web"]
    by_source = {p.source: p.message for p in state.problems}
    assert by_source[f"{path}, document 2"].startswith("invalid YAML:")
    assert by_source[f"{path}, document 3"] == "ConfigMap without `metadata.name`"
    assert "generateName" in by_source[f"{path}, document 4"]
    assert by_source[f"{path}, document 5"] == "no `kind`: not a Kubernetes object"
    assert by_source[f"{path}, document 6"] == "a list, not a Kubernetes object"
    assert len(state.problems) == 5


def test_duplicates_are_reported_and_the_first_declaration_wins(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", DEPLOYMENT)
    write(tmp_path / "b.yaml", DEPLOYMENT.replace("replicas: 1", "replicas: 9"))
    write(tmp_path / "c.yaml", DEPLOYMENT.replace("name: web", "name: web\n  namespace: elsewhere"))

    state = load_manifests(tmp_path)

    key = ObjectKey("apps", "Deployment", "default", "web")
    assert state.objects[key].manifest["spec"]["replicas"] == 1
    assert len(state.objects) == 2  # the one in `elsewhere` is another object
    [problem] = state.problems
    assert problem.key == key
    assert problem.source == f"{tmp_path / 'b.yaml'}, document 1"
    assert problem.message == f"duplicate object, already declared in {tmp_path / 'a.yaml'}, document 1"


def test_a_single_file_and_a_missing_path(tmp_path: Path) -> None:
    state = load_manifests(write(tmp_path / "one.yml", DEPLOYMENT), namespace="shop", release="shop")
    assert list(state.objects) == [ObjectKey("apps", "Deployment", "shop", "web")]
    assert state.release == "shop"
    with pytest.raises(DriftError, match="no manifests at"):
        load_manifests(tmp_path / "absent")


def test_undecodable_files_are_problems(tmp_path: Path) -> None:
    write(tmp_path / "ok.yaml", DEPLOYMENT)
    (tmp_path / "latin1.yaml").write_bytes(b"kind: ConfigMap\nmetadata: {name: caf\xe9}\n")
    state = load_manifests(tmp_path)
    assert len(state.objects) == 1
    assert [p.source for p in state.problems] == [str(tmp_path / "latin1.yaml")]


def test_a_manifest_linked_out_of_the_folder_is_a_problem_and_never_read(tmp_path: Path) -> None:
    """A `.yaml` linked to a host file would put that file into the desired state, and so into the drift report."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.yaml").write_text("apiVersion: v1\nkind: Secret\nmetadata: {name: host-only}\n")
    manifests = tmp_path / "deploy"
    manifests.mkdir()
    (manifests / "app.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app}\n")
    (manifests / "leak.yaml").symlink_to(host / "secret.yaml")
    (manifests / "alias.yaml").symlink_to("app.yaml")  # inside: fine
    state = load_manifests(manifests)
    assert sorted(key.name for key in state.objects) == ["app"]  # alias.yaml declares the same object again
    (problem,) = [p for p in state.problems if "leak.yaml" in p.source]
    assert "symlink to outside the scanned tree" in problem.message
