"""The Helm chart (helm/codex-k8s) and the official dagster chart's values (helm/dagster-values.yaml).

Everything goes through the real helm binary (`$CODEXK8S_HELM`, else `.tools/helm`, which `make test` fetches): a
missing binary fails these tests, it never skips them. Rendered objects are validated against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict), and what the chart ships is checked with the platform's own code:
the configuration and catalog loaders, the settings module, the agent runtime and the run-queue generator.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import kubernetes
import kubernetes_validate
import pytest
import yaml
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import DagsterK8sJobConfig, construct_dagster_k8s_job

from codexk8s_pipelines import settings
from codexk8s_pipelines.agents.catalog import AgentSpec, load_catalog, parse_catalog
from codexk8s_pipelines.agents.k8s_runtime import build_pod_meta, build_pod_spec, runtime_from_environment
from codexk8s_pipelines.agents.runner_spec import RunnerSpec
from codexk8s_pipelines.agents.transcript import AgentKind
from codexk8s_pipelines.config import PlatformConfig
from codexk8s_pipelines.config import models as config_models
from codexk8s_pipelines.config import periodic as periodic_models
from codexk8s_pipelines.config.loader import parse_config
from codexk8s_pipelines.domain.stages import Role, WriteScope
from codexk8s_pipelines.instance import kubernetes_instance, run_queue

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "codex-k8s"
DAGSTER_VALUES = REPO / "helm" / "dagster-values.yaml"
RELEASE = "codex-k8s"
NAMESPACE = "codexk8s"
K8S_VERSIONS = ("1.35.0", "1.37.0")
HELM_TIMEOUT_SECONDS = 60

SENTINELS = {
    "token": "ghp_" + "SENTINELsentinelSENTINELsentinel0001",
    "app_key": "-----BEGIN " + "RSA PRIVATE KEY-----SENTINEL-APP-KEY-----END RSA PRIVATE KEY-----",
    "db_url": "postgresql://codexk8s:SENTINEL-DB-PASSWORD@db:5432/codexk8s",
    "agent_token": "ghp_" + "SENTINELagentAGENTagentAGENTagent0002",
}

# Every optional feature on, every secret through existingSecret.
FULL_VALUES: dict[str, Any] = {
    "commonLabels": {"team": "platform"},
    "image": {"repository": "registry.example/codexk8s-pipelines", "tag": "1.2.3", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccount": {"create": True, "name": "codexk8s-platform", "annotations": {"example.com/role": "platform"}},
    "codeLocation": {
        "replicaCount": 2,
        "dagsterUrl": "https://dagster.example.com",
        "githubApiUrl": "https://github.example.com/api/v3",
        "podAnnotations": {"example.com/scrape": "false"},
        "podLabels": {"tier": "backend"},
        "service": {"type": "ClusterIP", "annotations": {"example.com/lb": "internal"}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "dagster", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
                    ]
                }
            }
        },
    },
    "runPods": {"containerContext": {"enabled": True}},
    "secrets": {
        "github": {"existingSecret": "gh-credentials"},
        "database": {"existingSecret": "platform-db"},
        "agentToken": {"existingSecret": "agent-push-token", "key": "push-token"},
        "dagsterPostgresql": {"enabled": True, "existingSecret": "dagster-pg", "key": "password"},
    },
    "platformConfig": {
        "repositories": [
            {"github": "acme/shop", "policy": {"fix_critical": True}},
            {
                "github": "acme/api",
                "default_branch": "trunk",
                "drift": {"helm_chart": "deploy/chart", "namespace": "api", "ignore": [{"pointer": "/spec/replicas"}]},
            },
        ],
        "periodic": {"security": {"cron": "0 3 * * *", "max_age_days": 3}, "self_improve": {"min_finished_runs": 10}},
    },
    "agents": {
        "namespaces": ["codexk8s-agents", "codexk8s-agents-batch"],
        "createNamespace": True,
        "extraLauncherSubjects": [{"kind": "ServiceAccount", "name": "dagster", "namespace": NAMESPACE}],
        "networkPolicy": {
            "enabled": True,
            "allowDns": True,
            "egressPorts": [443, 22],
            "egressCidr": "0.0.0.0/0",
            "extraEgress": [
                {
                    "to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "proxy"}}}],
                    "ports": [{"protocol": "TCP", "port": 3128}],
                }
            ],
        },
    },
    "cleanup": {"enabled": True, "ttl": "36h", "schedule": "*/30 * * * *"},
    "driftReader": {
        "enabled": True,
        "namespaces": ["api", "web"],
        "extraSubjects": [{"kind": "ServiceAccount", "name": "dagster", "namespace": NAMESPACE}],
    },
}

# Secrets given as values: the chart creates them.
VALUE_SECRETS: dict[str, Any] = {
    "secrets": {
        "github": {"token": SENTINELS["token"], "appId": "123456", "appPrivateKey": SENTINELS["app_key"]},
        "database": {"url": SENTINELS["db_url"]},
        "agentToken": {"token": SENTINELS["agent_token"]},
    },
    "agents": {"namespaces": ["codexk8s-agents", "codexk8s-agents-batch"]},
}

# existingSecret everywhere, plus values that must then be ignored.
EXISTING_WITH_VALUES: dict[str, Any] = {
    "secrets": {
        "github": {
            "existingSecret": "gh-credentials",
            "token": SENTINELS["token"],
            "appPrivateKey": SENTINELS["app_key"],
        },
        "database": {"existingSecret": "platform-db", "url": SENTINELS["db_url"]},
        "agentToken": {"existingSecret": "agent-push-token", "token": SENTINELS["agent_token"]},
    },
}

VARIANTS = {"default": None, "full": FULL_VALUES, "value-secrets": VALUE_SECRETS}


# --- helm -------------------------------------------------------------------------------------------------------


def _helm_path() -> Path:
    configured = os.environ.get("CODEXK8S_HELM")
    return Path(configured) if configured else REPO / ".tools" / "helm"


@pytest.fixture(scope="session")
def helm_bin() -> str:
    path = _helm_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"helm binary not found or not executable at {path}: run `make .tools/helm` (or `make test`, which "
            "fetches it), or point CODEXK8S_HELM at a helm v3/v4 binary",
            pytrace=False,
        )
    return str(path)


@pytest.fixture(scope="session")
def helm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("helm-home")


class Helm:
    def __init__(self, binary: str, home: Path) -> None:
        self.binary = binary
        self.home = home
        self.env = {
            **os.environ,
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_DATA_HOME": str(home / "data"),
        }

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, *args],
            capture_output=True,
            text=True,
            timeout=HELM_TIMEOUT_SECONDS,
            env=self.env,
            check=False,
        )

    def values_file(self, name: str, values: dict[str, Any] | str) -> Path:
        path = self.home / f"{name}.yaml"
        path.write_text(values if isinstance(values, str) else yaml.safe_dump(values), encoding="utf-8")
        return path

    def lint(
        self, values: dict[str, Any] | str | None = None, name: str = "values"
    ) -> subprocess.CompletedProcess[str]:
        args = ["lint", "--strict", str(CHART), "--namespace", NAMESPACE]
        if values is not None:
            args += ["-f", str(self.values_file(name, values))]
        return self.run(*args)

    def template(self, values: dict[str, Any] | None = None, name: str = "values") -> str:
        args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
        if values is not None:
            args += ["-f", str(self.values_file(name, values))]
        result = self.run(*args)
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return result.stdout


@pytest.fixture(scope="session")
def helm(helm_bin: str, helm_home: Path) -> Helm:
    return Helm(helm_bin, helm_home)


@pytest.fixture(scope="session")
def rendered(helm: Helm) -> dict[str, str]:
    """The output of `helm template` per values variant, rendered once per session."""
    return {name: helm.template(values, name=f"render-{name}") for name, values in VARIANTS.items()}


def _objects(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _pod_specs(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            yield name, obj["spec"]["template"]["spec"]
        elif obj["kind"] == "CronJob":
            yield name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif obj["kind"] == "Pod":
            yield name, obj["spec"]


def _deployment_env(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    container = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]
    return {entry["name"]: entry for entry in container["env"]}


def _container_context(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return json.loads(_deployment_env(objects)["DAGSTER_CONTAINER_CONTEXT"]["value"])


# --- lint and schema --------------------------------------------------------------------------------------------


def test_lint_strict_passes_with_default_values(helm: Helm) -> None:
    result = helm.lint()
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", ["full", "value-secrets"])
def test_lint_strict_passes_with_full_values(helm: Helm, variant: str) -> None:
    result = helm.lint(VARIANTS[variant], name=f"lint-{variant}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ("imagee:\n  tag: x\n", "imagee"),
        ("codeLocation:\n  resourses:\n    limits: {cpu: '1', memory: 1Gi}\n", "resourses"),
        ("agents:\n  networkPolicy:\n    egresPorts: [22]\n", "egresPorts"),
        ("secrets:\n  github:\n    existingSecrett: gh\n", "existingSecrett"),
        ("platformConfig:\n  triggers:\n    min_permision: admin\n", "min_permision"),
        ("agentCatalog:\n  agents:\n    dev:\n      memmory: 8Gi\n", "memmory"),
        # An agent kind the packaged catalog does not have: its endpoint alone would fail the catalog at run time.
        ("modelCredentials:\n  claude_code: {existingSecret: keys, key: ANTHROPIC_API_KEY}\n", "claude_code"),
        ("modelCredentials:\n  custom: {existingSecret: keys, key: OPENAI_API_KEY}\n", "custom"),
    ],
)
def test_a_values_typo_fails_lint_and_names_the_key(helm: Helm, values: str, key: str) -> None:
    result = helm.lint(values, name=f"typo-{key}")
    assert result.returncode != 0, f"lint accepted the typo {key!r}:\n{result.stdout}"
    assert key in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ("codeLocation:\n  securityContext:\n    runAsNonRoot: false\n", "/codeLocation/securityContext/runAsNonRoot"),
        ("cleanup:\n  podSecurityContext:\n    runAsNonRoot: false\n", "/cleanup/podSecurityContext/runAsNonRoot"),
        ("codeLocation:\n  resources:\n    limits: null\n", "missing property 'limits'"),
        ("runPods:\n  resources:\n    limits: {cpu: '1', memory: null}\n", "missing property 'memory'"),
        ("cleanup:\n  ttl: 24 hours\n", "/cleanup/ttl"),
        ("agents:\n  namespaces: []\n", "/agents/namespaces"),
        (
            "driftReader:\n  rules:\n    - {apiGroups: [apps], resources: [deployments], verbs: [get, patch]}\n",
            "/driftReader/rules/0/verbs/1",
        ),
    ],
)
def test_values_that_break_the_pod_rules_fail_lint(helm: Helm, values: str, where: str) -> None:
    result = helm.lint(values, name="rule")
    assert result.returncode != 0, f"lint accepted:\n{values}"
    assert where in result.stdout + result.stderr


# --- rendered objects -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_rendered_object_validates_against_kubernetes(
    rendered: dict[str, str], variant: str, version: str
) -> None:
    objects = _objects(rendered[variant])
    assert len(objects) >= 12
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{variant}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc}")


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_object_carries_the_standard_labels(rendered: dict[str, str], variant: str) -> None:
    for obj in _objects(rendered[variant]):
        labels = obj["metadata"].get("labels", {})
        for key in ("name", "instance", "version", "managed-by", "component", "part-of"):
            assert f"app.kubernetes.io/{key}" in labels, f"{obj['kind']}/{obj['metadata']['name']} lacks {key}"
        assert obj["metadata"].get("namespace") or obj["kind"] == "Namespace"


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_no_role_may_read_a_secret(rendered: dict[str, str], variant: str) -> None:
    """No get, list, watch, patch or delete on secrets anywhere. The one grant on them is the agent launcher's, in
    the agent namespaces: create, for the Secret that takes each run's MCP token to its agent container."""
    roles = [o for o in _objects(rendered[variant]) if o["kind"] in {"Role", "ClusterRole"}]
    assert roles
    for role in roles:
        name = role["metadata"]["name"]
        for rule in role["rules"]:
            resources = set(rule.get("resources", []))
            assert "*" not in resources and "*" not in rule["verbs"], name
            if "secrets" in resources:
                assert name == f"{RELEASE}-agent-launcher" and resources == {"secrets"}, name
                assert rule["verbs"] == ["create"], name
                assert role["metadata"]["namespace"] in _agent_namespaces(variant), name
    assert not [o for o in _objects(rendered[variant]) if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]


def _agent_namespaces(variant: str) -> set[str]:
    values = VARIANTS[variant] or {}
    return set(values.get("agents", {}).get("namespaces", ["codexk8s-agents"]))


def _grants(role: dict[str, Any]) -> dict[str, set[str]]:
    grants: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""]
        for resource in rule["resources"]:
            grants.setdefault(resource, set()).update(rule["verbs"])
    return grants


def test_agent_namespaces_get_rbac_quota_limits_and_network_policy(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["full"])
    namespaces = FULL_VALUES["agents"]["namespaces"]
    assert {o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"} == set(namespaces)
    platform_sa = FULL_VALUES["serviceAccount"]["name"]
    for ns in namespaces:
        in_ns = [o for o in objects if o["metadata"].get("namespace") == ns]
        kinds = sorted(o["kind"] for o in in_ns)
        assert kinds == sorted(
            [
                "ServiceAccount",
                "Role",
                "Role",
                "RoleBinding",
                "RoleBinding",
                "ResourceQuota",
                "LimitRange",
                "NetworkPolicy",
            ]
        ), kinds
        agent_sa = _one(in_ns, "ServiceAccount")
        assert agent_sa["metadata"]["name"] == "codexk8s-agent"
        assert agent_sa["automountServiceAccountToken"] is False

        launcher = _one(in_ns, "Role", f"{RELEASE}-agent-launcher")
        assert _grants(launcher) == {
            "pods": {"create", "get", "list", "watch", "delete"},
            "pods/log": {"get"},
            "secrets": {"create"},  # the run's MCP token Secret, owned by its pod; nothing else of secrets
        }
        binding = _one(in_ns, "RoleBinding", f"{RELEASE}-agent-launcher")
        assert binding["roleRef"]["name"] == launcher["metadata"]["name"]
        subjects = {(s["kind"], s["name"], s.get("namespace")) for s in binding["subjects"]}
        assert subjects == {("ServiceAccount", platform_sa, NAMESPACE), ("ServiceAccount", "dagster", NAMESPACE)}

        cleanup = _one(in_ns, "Role", f"{RELEASE}-agent-cleanup")
        assert _grants(cleanup) == {"pods": {"list", "delete"}}
        cleanup_binding = _one(in_ns, "RoleBinding", f"{RELEASE}-agent-cleanup")
        assert cleanup_binding["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{RELEASE}-agent-cleanup", "namespace": NAMESPACE}
        ]

        policy = _one(in_ns, "NetworkPolicy", f"{RELEASE}-agents")["spec"]
        assert policy["policyTypes"] == ["Ingress", "Egress"]
        assert policy["ingress"] == []
        ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule.get("ports", [])}
        assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 22), ("TCP", 3128), ("TCP", 8765)}

        assert _one(in_ns, "ResourceQuota")["spec"]["hard"]["pods"] == "20"
        assert _one(in_ns, "LimitRange")["spec"]["limits"][0]["type"] == "Container"


def test_default_network_policy_allows_only_dns_and_https(rendered: dict[str, str]) -> None:
    policy = _one(_objects(rendered["default"]), "NetworkPolicy", f"{RELEASE}-agents")["spec"]
    ports = {(p["protocol"], p["port"]) for rule in policy["egress"] for p in rule.get("ports", [])}
    assert ports == {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 8765)}
    assert policy["ingress"] == []
    # The MCP port only towards the MCP server's pods in the release namespace, not anywhere.
    (mcp_rule,) = [r for r in policy["egress"] if any(p["port"] == 8765 for p in r.get("ports", []))]
    (peer,) = mcp_rule["to"]
    assert peer["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NAMESPACE}}
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "mcp"
    # HTTPS anywhere public, but not the cluster's own addresses: its API server, internal services, the metadata IP.
    (https_rule,) = [r for r in policy["egress"] if any(p["port"] == 443 for p in r.get("ports", []))]
    (block,) = https_rule["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert set(block["ipBlock"]["except"]) == {
        "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16"
    }  # fmt: skip


def test_a_narrowed_egress_cidr_renders_no_except_outside_it(helm: Helm) -> None:
    """Kubernetes refuses an `except` range that is not inside `cidr`: an operator who narrowed the agents' HTTPS to
    GitHub's range must get a NetworkPolicy the API server takes, not a failed upgrade."""
    narrowed = {"agents": {"networkPolicy": {"egressCidr": "140.82.112.0/20"}}}
    objects = _objects(helm.template(narrowed, name="narrow-egress"))
    policy = _one(objects, "NetworkPolicy", f"{RELEASE}-agents")["spec"]
    (https_rule,) = [r for r in policy["egress"] if any(p["port"] == 443 for p in r.get("ports", []))]
    assert https_rule["to"] == [{"ipBlock": {"cidr": "140.82.112.0/20"}}]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_pod_is_non_root_with_resource_limits(rendered: dict[str, str], variant: str) -> None:
    pods = list(_pod_specs(_objects(rendered[variant])))
    assert {name.split("/")[0] for name, _ in pods} == {"Deployment", "CronJob", "Job"}
    for name, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"].get("runAsUser", 1) > 0, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), name


@pytest.mark.parametrize("variant", ["default", "full"])
def test_run_pods_get_config_identity_non_root_and_limits_through_the_container_context(
    rendered: dict[str, str], variant: str
) -> None:
    objects = _objects(rendered[variant])
    raw = _container_context(objects)
    context = K8sContainerContext.create_from_config(raw)
    run = context.run_k8s_config
    platform_sa = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["serviceAccountName"]
    assert run.pod_spec_config["service_account_name"] == platform_sa
    assert run.pod_spec_config["security_context"]["run_as_non_root"] is True
    assert run.container_config["security_context"]["run_as_non_root"] is True
    assert {"cpu", "memory"} <= set(run.container_config["resources"]["limits"])
    configmap = _one(objects, "ConfigMap", f"{RELEASE}-config")["metadata"]["name"]
    assert run.pod_spec_config["volumes"][0]["config_map"]["name"] == configmap
    assert run.container_config["volume_mounts"][0]["mount_path"] == "/etc/codexk8s"
    # The run pods see the same platform environment as the code server.
    deployment_env = _deployment_env(objects)
    for entry in raw["k8s"]["env"]:
        assert deployment_env[entry["name"]] == entry


def _run_pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec of a run's Job as dagster-k8s's K8sRunLauncher builds it from the code location's container
    context (what test_emulated_install.py sends to an API server)."""
    env = _deployment_env(objects)
    context = K8sContainerContext.create_from_config(_container_context(objects))
    job = construct_dagster_k8s_job(
        job_config=DagsterK8sJobConfig(job_image=env["DAGSTER_CURRENT_IMAGE"]["value"], dagster_home="/opt/dagster"),
        args=["dagster", "api", "execute_run", "{}"],
        job_name="dagster-run-42",
        user_defined_k8s_config=context.run_k8s_config,
    )
    return kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]["template"]["spec"]


def _state_dir_is_a_writable_volume(name: str, pod: dict[str, Any]) -> None:
    """Every container of the platform image is told where its state goes (CODEXK8S_HOME; unset, it would be
    ./.codexk8s under the image's working directory) and that directory is an emptyDir of the pod, writable
    whatever the pod's uid and with a read-only root filesystem."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        home = env.get(settings.HOME_VAR)
        assert home and home.startswith("/"), f"{name}: {container['name']} has no absolute {settings.HOME_VAR}"
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        assert home in mounts, f"{name}: nothing is mounted at {home}"
        assert not mounts[home].get("readOnly"), name
        assert "emptyDir" in volumes[mounts[home]["name"]], f"{name}: {home} is not an emptyDir"


STATE_VALUES: dict[str, Any] = {
    **FULL_VALUES,
    "webhook": {"enabled": True},
    "codeLocation": {**FULL_VALUES["codeLocation"], "securityContext": {"readOnlyRootFilesystem": True}},
    "runPods": {"containerContext": {"enabled": True}, "securityContext": {"readOnlyRootFilesystem": True}},
}


@pytest.mark.parametrize("variant", ["default", "state"])
def test_every_platform_pod_and_run_pod_keeps_its_state_in_a_writable_volume(
    rendered: dict[str, str], helm: Helm, variant: str
) -> None:
    text = rendered["default"] if variant == "default" else helm.template(STATE_VALUES, name="state")
    objects = _objects(text)
    image = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]["image"]
    platform = {
        name: spec for name, spec in _pod_specs(objects) if any(c["image"] == image for c in spec["containers"])
    }
    expected = {f"Deployment/{RELEASE}", f"Deployment/{RELEASE}-mcp", f"Job/{RELEASE}-migrate"}
    if variant == "state":
        expected.add(f"Deployment/{RELEASE}-webhook")
    assert set(platform) == expected
    for name, spec in platform.items():
        _state_dir_is_a_writable_volume(name, spec)
    run_pod = _run_pod(objects)
    _state_dir_is_a_writable_volume("run pod", run_pod)
    if variant == "state":
        assert run_pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True


def test_code_location_deployment_and_service(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["default"])
    deployment = _one(objects, "Deployment", RELEASE)
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert "command" not in container  # the image's entrypoint (tini, PID 1) stays: SIGTERM reaches dagster
    assert container["args"] == [
        "python",
        "-m",
        "codexk8s_pipelines.code_server",
        "-h",
        "0.0.0.0",
        "-p",
        "3030",
        "-m",
        "codexk8s_pipelines.definitions",
    ]
    assert container["ports"] == [{"name": "grpc", "containerPort": 3030, "protocol": "TCP"}]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"] == ["dagster", "api", "grpc-health-check", "-p", "3030"]
    env = _deployment_env(objects)
    assert env["CODEXK8S_ENV"]["value"] == "kubernetes"
    # The token is mounted: the run status sensors delete the agent pods of a run whose run pod died (their only
    # use of it; tests/agents_k8s/test_orphan_agent_pods.py checks that the code server has no other).
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert env["CODEXK8S_K8S_AGENT_NAMESPACES"]["value"] == "codexk8s-agents"
    assert env["CODEXK8S_CONFIG"]["value"] == "/etc/codexk8s/codexk8s.yaml"
    assert env["CODEXK8S_AGENT_CATALOG"]["value"] == "/etc/codexk8s/agents.yaml"
    assert env["DAGSTER_CURRENT_IMAGE"]["value"] == container["image"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes[mounts["/etc/codexk8s"]]["configMap"]["name"] == f"{RELEASE}-config"

    service = _one(objects, "Service", RELEASE)
    assert service["metadata"]["name"] == RELEASE
    assert service["spec"]["ports"] == [{"name": "grpc", "port": 3030, "targetPort": "grpc", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= template_labels.items()


def _known_env_names() -> set[str]:
    return {value for name, value in vars(settings).items() if name.endswith("_VAR") and isinstance(value, str)}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deployment_env_names_are_known_to_settings(rendered: dict[str, str], variant: str) -> None:
    known = _known_env_names()
    assert "CODEXK8S_K8S_NAMESPACE" in known  # the collection itself works
    objects = _objects(rendered[variant])
    names = list(_deployment_env(objects))
    names += [entry["name"] for entry in _container_context(objects)["k8s"]["env"]]
    unknown = sorted(n for n in names if n not in known and not n.startswith("DAGSTER_"))
    assert not unknown, f"environment variables that no settings.*_VAR names: {unknown}"
    container = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]["containers"][0]
    assert len(container["env"]) == len(_deployment_env(objects)), "an environment variable is set twice"


# --- secrets ----------------------------------------------------------------------------------------------------


def test_defaults_create_no_secret_and_reference_none_but_the_dagster_password(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["default"])
    assert not [o for o in objects if o["kind"] == "Secret"]
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in _deployment_env(objects).items() if "valueFrom" in e}
    assert refs == {
        "DAGSTER_PG_PASSWORD": {"name": "codexk8s-dagster-postgresql", "key": "postgresql-password"},
        "CODEXK8S_MCP_SECRET": {"name": "codexk8s-mcp", "key": "CODEXK8S_MCP_SECRET"},
    }


def test_existing_secrets_are_referenced_and_no_secret_is_rendered(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["full"])
    assert not [o for o in objects if o["kind"] == "Secret"]
    env = _deployment_env(objects)
    refs = {name: e["valueFrom"]["secretKeyRef"] for name, e in env.items() if "valueFrom" in e}
    assert refs == {
        "CODEXK8S_GITHUB_TOKEN": {"name": "gh-credentials", "key": "CODEXK8S_GITHUB_TOKEN", "optional": True},
        "CODEXK8S_GITHUB_APP_ID": {"name": "gh-credentials", "key": "CODEXK8S_GITHUB_APP_ID", "optional": True},
        "CODEXK8S_GITHUB_APP_PRIVATE_KEY": {
            "name": "gh-credentials",
            "key": "CODEXK8S_GITHUB_APP_PRIVATE_KEY",
            "optional": True,
        },
        "CODEXK8S_DATABASE_URL": {"name": "platform-db", "key": "CODEXK8S_DATABASE_URL"},
        "DAGSTER_PG_PASSWORD": {"name": "dagster-pg", "key": "password"},
        "CODEXK8S_MCP_SECRET": {"name": "codexk8s-mcp", "key": "CODEXK8S_MCP_SECRET"},
    }
    assert env["CODEXK8S_K8S_TOKEN_SECRET"]["value"] == "agent-push-token"
    assert env["CODEXK8S_K8S_TOKEN_SECRET_KEY"]["value"] == "push-token"


def test_no_secret_value_is_rendered_when_existing_secrets_are_used(helm: Helm) -> None:
    text = helm.template(EXISTING_WITH_VALUES, name="existing-with-values")
    objects = _objects(text)
    assert not [o for o in objects if o["kind"] == "Secret"]
    for sentinel in SENTINELS.values():
        assert sentinel not in text
        assert base64.b64encode(sentinel.encode()).decode() not in text
    assert "SENTINEL" not in text


def test_secret_values_become_chart_secrets_referenced_by_key(rendered: dict[str, str]) -> None:
    text = rendered["value-secrets"]
    objects = _objects(text)
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects if o["kind"] == "Secret"}
    assert set(secrets) == {
        (NAMESPACE, "codexk8s-github"),
        (NAMESPACE, "codexk8s-database"),
        ("codexk8s-agents", "codexk8s-github"),
        ("codexk8s-agents-batch", "codexk8s-github"),
    }
    assert set(secrets[(NAMESPACE, "codexk8s-github")]["data"]) == {
        "CODEXK8S_GITHUB_TOKEN",
        "CODEXK8S_GITHUB_APP_ID",
        "CODEXK8S_GITHUB_APP_PRIVATE_KEY",
    }
    assert set(secrets[("codexk8s-agents", "codexk8s-github")]["data"]) == {"token"}
    # Values are only in Secret data (base64), never in clear text and never in a pod spec.
    assert "SENTINEL" not in text
    for name, entry in _deployment_env(objects).items():
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            if name not in ("DAGSTER_PG_PASSWORD", "CODEXK8S_MCP_SECRET"):  # always an existingSecret
                assert ref["key"] in secrets[(NAMESPACE, ref["name"])]["data"], name
                assert "optional" not in ref
    env = _deployment_env(objects)
    assert env["CODEXK8S_K8S_TOKEN_SECRET"]["value"] == "codexk8s-github"
    assert env["CODEXK8S_K8S_TOKEN_SECRET_KEY"]["value"] == "token"


def test_a_github_app_id_given_as_a_number_reaches_the_secret_as_written(helm: Helm) -> None:
    """GitHub App ids pass a million; a number in a values file is a float64 to helm, which writes 1.234567e+06."""
    values = {"secrets": {"github": {"appId": 1234567, "appPrivateKey": SENTINELS["app_key"]}}}
    objects = _objects(helm.template(values, name="app-id-number"))
    secret = _one(objects, "Secret", "codexk8s-github")
    assert base64.b64decode(secret["data"]["CODEXK8S_GITHUB_APP_ID"]).decode() == "1234567"


# --- what the chart ships, checked by the platform's own code ---------------------------------------------------


def _config_data(objects: list[dict[str, Any]]) -> dict[str, str]:
    return _one(objects, "ConfigMap", f"{RELEASE}-config")["data"]


@pytest.mark.parametrize("variant", ["default", "full"])
def test_configmap_platform_config_parses(rendered: dict[str, str], variant: str) -> None:
    config = parse_config(_config_data(_objects(rendered[variant]))["codexk8s.yaml"], f"{variant}: codexk8s.yaml")
    if variant == "full":
        assert [r.github for r in config.repositories] == ["acme/shop", "acme/api"]
    else:
        assert config.repositories == []
        sample = parse_config((REPO / "codexk8s.yaml").read_text(encoding="utf-8"), "codexk8s.yaml")
        # Mirrors the sample, except the sample's local checkout (`path: .`), which a pod does not have.
        assert config.model_copy(update={"repositories": sample.repositories}) == sample


@pytest.mark.parametrize("variant", ["default", "full"])
def test_configmap_agent_catalog_parses(rendered: dict[str, str], variant: str, tmp_path: Path) -> None:
    text = _config_data(_objects(rendered[variant]))["agents.yaml"]
    override = yaml.safe_load(text)
    catalog = parse_catalog({"agents": override["agents"]}, f"{variant}: agents.yaml")
    assert {a.role for a in catalog.agents.values()} == set(Role)
    # As the platform loads it: merged over the packaged catalog; the defaults change nothing but the model keys,
    # which every agent now takes from the Secret of modelCredentials (the key variable of its kind).
    path = tmp_path / "agents.yaml"
    path.write_text(text, encoding="utf-8")
    merged, packaged = load_catalog(path), load_catalog()
    assert set(merged.agents) == set(packaged.agents)
    for name, agent in merged.agents.items():
        base = packaged.agents[name]
        assert agent.endpoint.key_secret == f"codexk8s-model-keys/{agent.endpoint.key_env}", name
        assert agent.env_from_secrets[agent.endpoint.key_env] == agent.endpoint.key_secret, name
        assert agent.image == "ghcr.io/codex-k8s/agent-runner:0.1.0" or variant == "full", name  # the release's tag
        same = {"endpoint": base.endpoint, "env_from_secrets": base.env_from_secrets, "image": base.image}
        assert agent.model_copy(update=same) == base


def _schema_properties(schema: dict[str, Any], *path: str) -> set[str]:
    node = schema
    for key in path:
        node = node["properties"][key] if key != "*" else node["additionalProperties"]
    return set(node["properties"])


def test_values_schema_follows_the_platform_models() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    platform = schema["properties"]["platformConfig"]
    assert set(platform["properties"]) == set(PlatformConfig.model_fields)
    nested = {
        "triggers": config_models.TriggerConfig,
        "models": config_models.ModelsConfig,
        "labels": config_models.LabelsConfig,
        "concurrency": config_models.ConcurrencyConfig,
        "slo": config_models.SloConfig,
    }
    for key, model in nested.items():
        assert _schema_properties(platform, key) == set(model.model_fields), key
    assert set(platform["properties"]["repositories"]["items"]["properties"]) == set(
        config_models.RepositoryConfig.model_fields
    )
    repository = platform["properties"]["repositories"]["items"]
    assert _schema_properties(repository, "drift") == set(periodic_models.RepositoryDriftConfig.model_fields)
    assert _schema_properties(repository, "policy") == set(periodic_models.RepositoryPolicyConfig.model_fields)
    assert set(repository["properties"]["drift"]["properties"]["ignore"]["items"]["properties"]) == set(
        periodic_models.DriftIgnoreRule.model_fields
    )
    assert _schema_properties(platform, "periodic") == set(periodic_models.PeriodicConfig.model_fields)
    for key, model in {
        "security": periodic_models.SecurityScanConfig,
        "freshness": periodic_models.FreshnessConfig,
        "drift": periodic_models.DriftConfig,
        "self_improve": periodic_models.SelfImproveConfig,
    }.items():
        assert _schema_properties(platform, "periodic", key) == set(model.model_fields), key
    stage = platform["properties"]["stages"]["additionalProperties"]
    assert set(stage["properties"]) == set(config_models.StageOverride.model_fields)
    assert set(stage["properties"]["approval"]["properties"]) == set(config_models.ApprovalConfig.model_fields)
    agent = schema["properties"]["agentCatalog"]["properties"]["agents"]["additionalProperties"]
    assert set(agent["properties"]) == set(AgentSpec.model_fields)

    def closed(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                assert node.get("additionalProperties") is False, where
            for key, value in node.items():
                closed(value, f"{where}.{key}")
        elif isinstance(node, list):
            for n, value in enumerate(node):
                closed(value, f"{where}[{n}]")

    closed(schema, "$")
    assert schema["additionalProperties"] is False


def test_model_credentials_take_exactly_the_kinds_of_the_packaged_catalog() -> None:
    """modelCredentials.<kind> becomes the catalog's `kinds.<kind>.endpoint`, merged over the packaged presets: a kind
    without a preset (a typo, or `custom`, a user's own command) fails the catalog loader at run time, so the schema
    takes the preset kinds and nothing else."""
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    credentials = schema["properties"]["modelCredentials"]
    assert credentials["additionalProperties"] is False
    kinds = set(credentials["properties"])
    assert kinds == set(load_catalog().kinds)
    assert kinds == set(get_args(AgentKind)) - {"custom"}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))["modelCredentials"]
    assert set(defaults) <= kinds


def _agent_spec() -> RunnerSpec:
    return RunnerSpec(
        remote_url="https://github.com/acme/shop.git",
        branch="codex/issue-7",
        workdir="/work/acme-shop",
        command=["codex", "exec", "-"],
        prompt_file="/work/prompt.md",
        write_scope=WriteScope.ANY_FILE,
        commit_message="dev: #7",
        author_name="codex-k8s agent",
        author_email="codexk8s-agent@users.noreply.github.com",
    )


@pytest.mark.parametrize("variant", ["default", "full"])
def test_agent_pods_built_from_the_chart_env_fit_the_agent_namespace(
    rendered: dict[str, str], variant: str, tmp_path: Path
) -> None:
    objects = _objects(rendered[variant])
    env = {name: e["value"] for name, e in _deployment_env(objects).items() if "value" in e}
    runtime = runtime_from_environment(env)
    agent_namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert runtime.namespace == agent_namespaces[0]
    # A run that ended outside its ops has its agent pods deleted in every agent namespace, each with the
    # agent-launcher Role that allows it, and in no other.
    assert runtime.cleanup_namespaces() == tuple(agent_namespaces)
    for ns in agent_namespaces:
        in_ns = [o for o in objects if o["metadata"].get("namespace") == ns]
        assert "delete" in _grants(_one(in_ns, "Role", f"{RELEASE}-agent-launcher"))["pods"]
    agent_sa = [o for o in objects if o["kind"] == "ServiceAccount" and o["metadata"]["namespace"] == runtime.namespace]
    assert runtime.service_account in {sa["metadata"]["name"] for sa in agent_sa}

    (tmp_path / "agents.yaml").write_text(_config_data(objects)["agents.yaml"], encoding="utf-8")
    catalog = load_catalog(tmp_path / "agents.yaml")  # as the platform loads it: over the packaged catalog
    # As stage_jobs hands the run's MCP access to the runtime: the URL from the run pod's environment (the chart's).
    mcp_url = env[settings.MCP_URL_VAR]
    assert mcp_url == f"http://{RELEASE}-mcp.{NAMESPACE}.svc:8765/mcp"
    spec = _agent_spec().model_copy(update={"env": {settings.MCP_URL_VAR: mcp_url}})
    pod_spec = build_pod_spec(spec, catalog.for_role(Role.DEV), runtime, prompt="do it")
    meta = build_pod_meta(_agent_spec(), catalog.for_role(Role.DEV), invocation_id="abc")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "agent", **meta}, "spec": pod_spec}
    kubernetes_validate.validate(pod, K8S_VERSIONS[-1], strict=True)
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    assert {"cpu", "memory"} <= set(pod_spec["containers"][0]["resources"]["limits"])
    token_ref = next(e for e in pod_spec["containers"][0]["env"] if e["name"] == settings.GITHUB_TOKEN_VAR)
    assert token_ref["valueFrom"]["secretKeyRef"] == {
        "name": env["CODEXK8S_K8S_TOKEN_SECRET"],
        "key": env["CODEXK8S_K8S_TOKEN_SECRET_KEY"],
    }
    # The model key (modelCredentials) reaches one container only, the agent's, as a reference to its Secret.
    containers = pod_spec.get("initContainers", []) + pod_spec["containers"]
    model_refs = [
        (c["name"], e["valueFrom"]["secretKeyRef"])
        for c in containers
        for e in c["env"]
        if e["name"] == "OPENAI_API_KEY"
    ]
    assert len(model_refs) == 1 and model_refs[0][1] == {"name": "codexk8s-model-keys", "key": "OPENAI_API_KEY"}
    # The agent's container gets the MCP URL (in the runner spec it runs with), the one the agent NetworkPolicy allows.
    agent_container = next(c for c in containers if c["name"] == model_refs[0][0])
    runner_spec = next(e["value"] for e in agent_container["env"] if e["name"] == "CODEXK8S_RUNNER_SPEC")
    assert RunnerSpec.model_validate_json(runner_spec).env[settings.MCP_URL_VAR] == mcp_url
    # The NetworkPolicy and the clean-up select exactly the pods the runtime labels.
    for ns in agent_namespaces:
        policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == ns)
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= meta["labels"].items()
    command = _one(objects, "CronJob")["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    key, _, value = command[4].partition("=")
    assert meta["labels"][key] == value


PRIVATE_REGISTRY: dict[str, Any] = {
    "imagePullSecrets": [{"name": "corp-registry"}],
    "image": {"repository": "registry.corp.example/platform/codexk8s-pipelines", "tag": "1.2.3"},
    "agentImage": {"repository": "registry.corp.example/platform/agent-runner", "tag": "1.2.3"},
    "agents": {"namespaces": ["ai-agents", "ai-agents-b"]},
}


@pytest.mark.parametrize(
    ("agent_pull_secrets", "expected"),
    [
        (None, [{"name": "corp-registry"}]),  # unset: the platform's, as the two images share a registry
        ([{"name": "agent-registry"}], [{"name": "agent-registry"}]),
        ([], None),
    ],
)
def test_agent_pods_from_a_private_registry_get_the_pull_secrets(
    helm: Helm, agent_pull_secrets: list[dict[str, str]] | None, expected: list[dict[str, str]] | None, tmp_path: Path
) -> None:
    """The agent pod the run pod builds names no pull secret itself: the API server gives it its ServiceAccount's
    (the ServiceAccount admission plugin), in each agent namespace it may be launched into."""
    values = json.loads(json.dumps(PRIVATE_REGISTRY))
    if agent_pull_secrets is not None:
        values["agents"]["imagePullSecrets"] = agent_pull_secrets
    objects = _objects(helm.template(values, name="private-registry"))
    env = {name: e["value"] for name, e in _deployment_env(objects).items() if "value" in e}
    runtime = runtime_from_environment(env)
    (tmp_path / "agents.yaml").write_text(_config_data(objects)["agents.yaml"], encoding="utf-8")
    agent = load_catalog(tmp_path / "agents.yaml").for_role(Role.DEV)
    assert agent.image == "registry.corp.example/platform/agent-runner:1.2.3"
    pod_spec = build_pod_spec(_agent_spec(), agent, runtime, prompt="do it")
    assert "imagePullSecrets" not in pod_spec  # else the ServiceAccount's are not added
    for namespace in values["agents"]["namespaces"]:
        account = next(
            o
            for o in objects
            if o["kind"] == "ServiceAccount"
            and o["metadata"]["namespace"] == namespace
            and o["metadata"]["name"] == pod_spec["serviceAccountName"]
        )
        kubernetes_validate.validate(account, K8S_VERSIONS[-1], strict=True)
        assert account.get("imagePullSecrets") == expected, namespace


@pytest.mark.parametrize(("variant", "ttl_seconds"), [("default", 86400), ("full", 36 * 3600)])
def test_cleanup_cronjob_deletes_old_agent_pods_in_every_agent_namespace(
    rendered: dict[str, str], variant: str, ttl_seconds: int
) -> None:
    objects = _objects(rendered[variant])
    cronjob = _one(objects, "CronJob")
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{RELEASE}-agent-cleanup"
    command = pod["containers"][0]["command"]
    assert command[:3] == ["python3", "-B", "/scripts/cleanup_agent_pods.py"]
    assert int(command[3]) == ttl_seconds
    namespaces = [o["metadata"]["name"] for o in objects if o["kind"] == "Namespace"]
    assert command[5:] == namespaces
    script = _one(objects, "ConfigMap", f"{RELEASE}-agent-cleanup")["data"]["cleanup_agent_pods.py"]
    compile(script, "cleanup_agent_pods.py", "exec")


def _resource(obj: dict[str, Any]) -> tuple[str, str]:
    """(API group, resource) of an object, the way an RBAC rule names it."""
    group = obj["apiVersion"].rpartition("/")[0]
    kind = obj["kind"].lower()
    return group, (kind[:-1] + "ies" if kind.endswith("y") else kind + "s")


def _drift_reader(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        o["metadata"]["namespace"]: o
        for o in objects
        if o["kind"] == kind and o["metadata"]["name"] == f"{RELEASE}-drift-reader"
    }


def test_ops_drift_may_read_but_not_write_the_namespaces_drift_sections_name(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["full"])
    roles = _drift_reader(objects, "Role")
    assert sorted(roles) == ["api", "web"], "acme/api's drift namespace and driftReader.namespaces, each once"
    bindings = _drift_reader(objects, "RoleBinding")
    assert sorted(bindings) == ["api", "web"]
    for namespace, binding in bindings.items():
        assert binding["roleRef"]["name"] == roles[namespace]["metadata"]["name"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "codexk8s-platform", "namespace": NAMESPACE},
            {"kind": "ServiceAccount", "name": "dagster", "namespace": NAMESPACE},
        ]
    grants = {
        (group, resource): set(rule["verbs"])
        for rule in roles["api"]["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert all(verbs <= {"get", "list"} for verbs in grants.values()), grants
    # ops_drift pointed at this chart's own release could read every namespaced kind it renders but Secrets.
    namespaced = {_resource(o) for o in objects if o["metadata"].get("namespace") and o["kind"] != "Secret"}
    assert namespaced and not namespaced - set(grants), namespaced - set(grants)
    assert not _drift_reader(_objects(rendered["default"]), "Role"), "no drift section, no reader"


def test_a_drift_section_without_a_namespace_is_read_in_default(helm: Helm) -> None:
    values = {"platformConfig": {"repositories": [{"github": "acme/web", "drift": {"manifests": "deploy"}}]}}
    objects = _objects(helm.template(values, name="drift-default-namespace"))
    assert sorted(_drift_reader(objects, "Role")) == sorted(_drift_reader(objects, "RoleBinding")) == ["default"]
    off = _objects(helm.template({**values, "driftReader": {"enabled": False}}, name="drift-reader-off"))
    assert not _drift_reader(off, "Role")


# --- the official dagster chart's values ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dagster_values() -> dict[str, Any]:
    return yaml.safe_load(DAGSTER_VALUES.read_text(encoding="utf-8"))


def test_dagster_values_tag_limits_equal_the_platform_run_queue(dagster_values: dict[str, Any]) -> None:
    coordinator = dagster_values["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] is True
    # The platform's coordinator (Dagster's queue that first tags hand-launched runs), as kubernetes_instance().
    assert coordinator["type"] == "CustomRunCoordinator"
    custom = coordinator["config"]["customRunCoordinator"]
    expected = kubernetes_instance(PlatformConfig())["run_coordinator"]
    platform_coordinator = ("codexk8s_pipelines.run_tags", "PlatformRunCoordinator")
    assert (custom["module"], custom["class"]) == (expected["module"], expected["class"]) == platform_coordinator
    assert custom["config"]["max_concurrent_runs"] == expected["config"]["max_concurrent_runs"]
    assert custom["config"]["tag_concurrency_limits"] == expected["config"]["tag_concurrency_limits"]
    assert expected["config"] == run_queue(PlatformConfig())["config"]
    # The coordinator is imported where runs are submitted: the webserver and the daemon run the platform image.
    platform_image = dagster_values["dagster-user-deployments"]["deployments"][0]["image"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        image = dagster_values[component]["image"]
        assert (image["repository"], image["tag"]) == (platform_image["repository"], platform_image["tag"]), component


def test_dagster_values_keep_half_the_run_slots_from_periodic_runs(dagster_values: dict[str, Any]) -> None:
    """A schedule tick queues one periodic run per repository (300 on a large installation): they may hold half of
    the slots at most, so that a label's stage run (first in the queue by its priority) finds one free."""
    queued = dagster_values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]["config"]
    (periodic,) = [x for x in queued["tag_concurrency_limits"] if x["key"] == "codexk8s/kind"]
    assert periodic == {"key": "codexk8s/kind", "value": "periodic", "limit": queued["max_concurrent_runs"] // 2}


def test_dagster_values_run_queue_equals_the_charts_platform_config(
    dagster_values: dict[str, Any], rendered: dict[str, str]
) -> None:
    config = parse_config(_config_data(_objects(rendered["default"]))["codexk8s.yaml"], "codexk8s.yaml")
    queued = dagster_values["dagsterDaemon"]["runCoordinator"]["config"]["customRunCoordinator"]["config"]
    expected = run_queue(config)["config"]
    assert queued["max_concurrent_runs"] == expected["max_concurrent_runs"]
    assert queued["tag_concurrency_limits"] == expected["tag_concurrency_limits"]


def test_dagster_values_match_the_kubernetes_instance(dagster_values: dict[str, Any]) -> None:
    instance = kubernetes_instance(PlatformConfig())
    launcher = dagster_values["runLauncher"]
    assert launcher["type"] == instance["run_launcher"]["class"] == "K8sRunLauncher"
    env_secrets = [s["name"] for s in launcher["config"]["k8sRunLauncher"]["envSecrets"]]
    assert env_secrets == instance["run_launcher"]["config"]["env_secrets"]
    monitoring = dagster_values["dagsterDaemon"]["runMonitoring"]
    expected = instance["run_monitoring"]
    assert monitoring["enabled"] is expected["enabled"] is True
    assert monitoring["startTimeoutSeconds"] == expected["start_timeout_seconds"]
    assert monitoring["maxResumeRunAttempts"] == expected["max_resume_run_attempts"]
    assert monitoring["pollIntervalSeconds"] == expected["poll_interval_seconds"]
    assert dagster_values["computeLogManager"]["type"] == instance["compute_logs"]["class"]
    daemon = dagster_values["dagsterDaemon"]
    assert daemon["sensors"]["useThreads"] is True and daemon["schedules"]["useThreads"] is True

    postgresql = dagster_values["postgresql"]
    assert postgresql["enabled"] is False
    assert postgresql["postgresqlScheme"] == "postgresql+psycopg2"
    assert postgresql["postgresqlHost"] and postgresql["postgresqlUsername"] and postgresql["postgresqlDatabase"]
    assert dagster_values["generatePostgresqlPasswordSecret"] is False


def test_dagster_values_point_at_the_charts_code_location(
    dagster_values: dict[str, Any], rendered: dict[str, str]
) -> None:
    objects = _objects(rendered["default"])
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    user = dagster_values["dagster-user-deployments"]
    assert user["enabled"] is True and user["enableSubchart"] is False
    assert dagster_values["dagsterWebserver"]["workspace"]["enabled"] is False  # host = deployment name
    (deployment,) = user["deployments"]
    service = _one(objects, "Service", RELEASE)
    assert deployment["name"] == service["metadata"]["name"]
    assert deployment["port"] == service["spec"]["ports"][0]["port"] == chart_values["codeLocation"]["port"]
    assert deployment["codeServerArgs"] == ["-m", chart_values["codeLocation"]["module"]]
    assert deployment["image"]["repository"] == chart_values["image"]["repository"]
    chart_yaml = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert deployment["image"]["tag"] == chart_yaml["appVersion"]
    # The code server opens the instance with the same password Secret the dagster chart uses.
    password = _deployment_env(objects)["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert password == {"name": dagster_values["global"]["postgresqlSecretName"], "key": "postgresql-password"}
    # The run launcher's envSecrets are the chart's default Secret names, whose keys are env var names.
    env_secrets = {s["name"] for s in dagster_values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]}
    assert env_secrets == {
        chart_values["secrets"]["github"]["name"],
        chart_values["secrets"]["database"]["name"],
        "codexk8s-compute-logs",  # the compute-log bucket's AWS_* credentials (helm/README.md)
    }
    assert (
        set(chart_values["secrets"]["github"]["keys"].values()) | {chart_values["secrets"]["database"]["keys"]["url"]}
        <= _known_env_names()
    )


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert str(chart["appVersion"]) == "0.1.0"


# --- migrations, MCP server, platform network policies -----------------------------------------------------------


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook_with_the_migrator(rendered: dict[str, str]) -> None:
    job = _one(_objects(rendered["default"]), "Job", f"{RELEASE}-migrate")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod  # a pre-install hook runs before the chart's service account exists
    (container,) = pod["containers"]
    assert "command" not in container  # tini stays PID 1
    assert container["args"] == ["codexk8s", "db", "migrate", "--wait", "300"]
    env = {e["name"]: e for e in container["env"]}
    assert env["CODEXK8S_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "codexk8s-database-migrator",
        "key": "CODEXK8S_DATABASE_URL",
    }
    assert env["CODEXK8S_DATABASE_APP_ROLE"]["value"] == "codexk8s_app"
    assert set(env) <= _known_env_names()
    # The platform itself never gets the migrator's Secret.
    assert "codexk8s-database-migrator" not in json.dumps(_one(_objects(rendered["default"]), "Deployment", RELEASE))


def test_the_mcp_server_is_deployed_with_its_secret_by_reference(rendered: dict[str, str]) -> None:
    objects = _objects(rendered["default"])
    deployment = _one(objects, "Deployment", f"{RELEASE}-mcp")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][:5] == ["codexk8s", "mcp", "serve", "--transport", "http"]
    assert container["args"][-2:] == ["--port", "8765"] and "command" not in container
    env = {e["name"]: e for e in container["env"]}
    assert env["CODEXK8S_MCP_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "codexk8s-mcp",
        "key": "CODEXK8S_MCP_SECRET",
    }
    assert "value" not in env["CODEXK8S_MCP_SECRET"]
    service = _one(objects, "Service", f"{RELEASE}-mcp")
    assert service["spec"]["ports"][0]["port"] == 8765
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # The code location and the run pods sign tokens with the same Secret and hand agents the Service's address.
    code_env = _deployment_env(objects)
    assert code_env["CODEXK8S_MCP_URL"]["value"] == f"http://{RELEASE}-mcp.{NAMESPACE}.svc:8765/mcp"
    assert code_env["CODEXK8S_MCP_SECRET"] == env["CODEXK8S_MCP_SECRET"]
    run_env = {e["name"]: e for e in _container_context(objects)["k8s"]["env"]}
    assert run_env["CODEXK8S_MCP_URL"] == code_env["CODEXK8S_MCP_URL"]


def test_platform_namespace_admits_the_code_server_and_mcp_clients_only(rendered: dict[str, str]) -> None:
    objects = [o for o in _objects(rendered["full"]) if o["metadata"].get("namespace") == NAMESPACE]
    code = _one(objects, "NetworkPolicy", f"{RELEASE}-code-location")["spec"]
    assert code["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "code-location"
    assert code["policyTypes"] == ["Ingress"]
    (rule,) = code["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dagster"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 3030}]
    mcp = _one(objects, "NetworkPolicy", f"{RELEASE}-mcp")["spec"]
    (rule,) = mcp["ingress"]
    (peer,) = rule["from"]
    agent_namespaces = [o["metadata"]["name"] for o in _objects(rendered["full"]) if o["kind"] == "Namespace"]
    assert peer["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": agent_namespaces}
    ]
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "codexk8s-agent"}}


def test_replicated_deployments_spread_over_nodes_and_are_evicted_one_at_a_time(helm: Helm) -> None:
    """Two replicas of a Deployment could land on one node, and a drain or a cluster upgrade took both at once: no
    PodDisruptionBudget was rendered, and the MCP server and the webhook receiver took no placement values at all."""
    values = {
        **FULL_VALUES,
        "codeLocation": {**FULL_VALUES["codeLocation"], "replicaCount": 1},
        "mcp": {"replicaCount": 2, "nodeSelector": {"pool": "platform"}},
        "webhook": {"enabled": True, "replicaCount": 3, "tolerations": [{"key": "edge", "operator": "Exists"}]},
    }
    objects = _objects(helm.template(values, name="replicated"))
    budgets = {o["metadata"]["name"]: o for o in objects if o["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {f"{RELEASE}-mcp", f"{RELEASE}-webhook"}  # one replica: nothing to keep serving
    for name, budget in budgets.items():
        pod = _one(objects, "Deployment", name)["spec"]["template"]
        assert budget["spec"]["maxUnavailable"] == 1
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod["metadata"]["labels"].items(), name
        spread = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        assert [
            (t["podAffinityTerm"]["topologyKey"], t["podAffinityTerm"]["labelSelector"]["matchLabels"]) for t in spread
        ] == [("kubernetes.io/hostname", selector)]
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(budget, version, strict=True)
    mcp = _one(objects, "Deployment", f"{RELEASE}-mcp")["spec"]["template"]["spec"]
    webhook = _one(objects, "Deployment", f"{RELEASE}-webhook")["spec"]["template"]["spec"]
    assert mcp["nodeSelector"] == {"pool": "platform"}
    assert webhook["tolerations"] == [{"key": "edge", "operator": "Exists"}]
    single = _one(objects, "Deployment", RELEASE)["spec"]["template"]["spec"]
    assert single["affinity"] == FULL_VALUES["codeLocation"]["affinity"]  # given: kept as given, nothing added

    two = {**FULL_VALUES, "codeLocation": {**FULL_VALUES["codeLocation"], "replicaCount": 2, "affinity": {}}}
    spread = _one(_objects(helm.template(two, name="replicated-2")), "Deployment", RELEASE)["spec"]["template"]["spec"]
    assert "podAntiAffinity" in spread["affinity"]
