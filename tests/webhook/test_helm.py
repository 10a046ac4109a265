"""The receiver's Helm objects, rendered by the real helm binary and validated against Kubernetes' schemas."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from codexk8s_pipelines import settings
from codexk8s_pipelines.webhook.app import ReceiverSettings

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "codex-k8s"
HELM = Path(os.environ.get("CODEXK8S_HELM") or REPO / ".tools" / "helm")
ON = [
    "webhook.enabled=true",
    "webhook.ingress.enabled=true",
    "webhook.ingress.host=hooks.example.com",
    "webhook.ingress.className=nginx",
    "secrets.database.existingSecret=platform-db",
    "secrets.github.existingSecret=gh-credentials",
]


def _render(*sets: str, values: Path | None = None) -> subprocess.CompletedProcess[str]:
    if not os.access(HELM, os.X_OK):
        pytest.fail(f"helm binary not found at {HELM}: run `make .tools/helm` or set CODEXK8S_HELM")
    args = [str(HELM), "template", "rel", str(CHART), "--namespace", "codexk8s"]
    if values is not None:
        args += ["-f", str(values)]
    for s in sets:
        args += ["--set", s]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def _objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def _webhook(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in objects if o["metadata"]["name"] == "rel-codex-k8s-webhook"}


def test_enabled_receiver_renders_valid_objects_with_secrets_by_reference() -> None:
    result = _render(*ON)
    assert result.returncode == 0, result.stderr
    objects = _webhook(_objects(result.stdout))
    assert set(objects) == {"Deployment", "Service", "Ingress", "NetworkPolicy"}
    for obj in objects.values():
        kubernetes_validate.validate(obj, "1.35.0", strict=True)
    container = objects["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["codexk8s", "webhook", "serve", "--host", "0.0.0.0", "--port", "8090"]
    env = {e["name"]: e for e in container["env"]}
    assert env[settings.WEBHOOK_SECRET_VAR]["valueFrom"]["secretKeyRef"] == {
        "name": "codexk8s-webhook", "key": "CODEXK8S_WEBHOOK_SECRET",
    }  # fmt: skip
    assert env[settings.DATABASE_URL_VAR]["valueFrom"]["secretKeyRef"]["name"] == "platform-db"
    assert not any("GITHUB" in name for name in env)  # the receiver never talks to GitHub
    plain = {settings.WEBHOOK_MAX_BYTES_VAR, settings.HOME_VAR}  # the two settings that are no secret
    assert all("value" not in e for n, e in env.items() if n not in plain)
    rule = objects["Ingress"]["spec"]["rules"][0]
    assert rule["host"] == "hooks.example.com" and rule["http"]["paths"][0]["path"] == "/webhook"
    assert objects["Service"]["spec"]["ports"][0]["port"] == 8090


def test_receiver_is_off_by_default_and_an_ingress_needs_a_host() -> None:
    default = _render()
    assert default.returncode == 0, default.stderr
    assert _webhook(_objects(default.stdout)) == {}
    no_host = _render("webhook.enabled=true", "webhook.ingress.enabled=true")
    assert no_host.returncode != 0 and "webhook.ingress.host is required" in no_host.stderr


@pytest.mark.parametrize(("values", "max_body"), [("", 2097152), ("webhook:\n  maxBodyBytes: 26214400\n", 26214400)])
def test_the_receiver_accepts_the_environment_the_chart_gives_it(tmp_path: Path, values: str, max_body: int) -> None:
    """What `codexk8s webhook serve` reads at start, from the rendered pod: a number of a values file (the chart's
    own default included) is a float64 to helm, and 2097152 must not reach the receiver as 2.097152e+06."""
    (tmp_path / "values.yaml").write_text(values, encoding="utf-8")
    result = _render(*ON, values=tmp_path / "values.yaml")
    assert result.returncode == 0, result.stderr
    container = _webhook(_objects(result.stdout))["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    environ = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    environ[settings.WEBHOOK_SECRET_VAR] = "s" * 40  # the secretKeyRef's value
    assert ReceiverSettings.from_environment(environ).max_body == max_body
