"""The Pod Security Standard "restricted" (Kubernetes 1.33-1.35), as the admission controller checks a pod spec.

One function, `restricted_violations`, returns what a pod spec breaks, each naming the container and the field,
so a test can assert an empty list and show every problem at once. Covers the baseline controls (host namespaces,
privileged, capabilities, hostPath, host ports, AppArmor, SELinux, /proc mount, seccomp, sysctls) and the restricted
ones (volume types, privilege escalation, running as non-root, non-root user, seccomp, capabilities).
"""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret", "image",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}


def _containers(spec: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{kind}/{c.get('name', '?')}", c)
        for kind in ("initContainers", "containers", "ephemeralContainers")
        for c in spec.get(kind) or []
    ]


def restricted_violations(spec: dict[str, Any]) -> list[str]:
    found: list[str] = []
    pod_sc = spec.get("securityContext") or {}
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            found.append(f"pod: {key} is true")
    for volume in spec.get("volumes") or []:
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUMES:
            found.append(f"volume {volume.get('name')}: type {sorted(kinds - RESTRICTED_VOLUMES)} is not allowed")
    for sysctl in pod_sc.get("sysctls") or []:
        if sysctl.get("name") not in SAFE_SYSCTLS:
            found.append(f"pod: sysctl {sysctl.get('name')} is not safe")
    if (pod_sc.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES:
        found.append("pod: seLinuxOptions.type")
    if pod_sc.get("runAsUser") == 0:
        found.append("pod: runAsUser 0")
    pod_seccomp = (pod_sc.get("seccompProfile") or {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"pod: seccompProfile {pod_seccomp}")
    if (pod_sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
        found.append("pod: appArmorProfile")
    for name, c in _containers(spec):
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            found.append(f"{name}: privileged")
        for port in c.get("ports") or []:
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
        caps = sc.get("capabilities") or {}
        if set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: capabilities.add {caps.get('add')}")
        if "ALL" not in (caps.get("drop") or []):
            found.append(f"{name}: capabilities.drop must contain ALL")
        if sc.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation must be false")
        if not (sc.get("runAsNonRoot") is True or (pod_sc.get("runAsNonRoot") is True and "runAsNonRoot" not in sc)):
            found.append(f"{name}: runAsNonRoot must be true (pod or container)")
        if sc.get("runAsUser") == 0:
            found.append(f"{name}: runAsUser 0")
        seccomp = (sc.get("seccompProfile") or {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: seccompProfile must be RuntimeDefault or Localhost (pod or container)")
        if sc.get("procMount") not in (None, "Default"):
            found.append(f"{name}: procMount")
        if (sc.get("seLinuxOptions") or {}).get("type", "") not in SELINUX_TYPES:
            found.append(f"{name}: seLinuxOptions.type")
        if (sc.get("appArmorProfile") or {}).get("type") not in (None, "RuntimeDefault", "Localhost"):
            found.append(f"{name}: appArmorProfile")
    return found


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every pod template of the rendered objects, named kind/name."""
    specs = []
    for obj in objects:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}:
            specs.append((name, obj["spec"]["template"]["spec"]))
        elif obj["kind"] == "CronJob":
            specs.append((name, obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]))
        elif obj["kind"] == "Pod":
            specs.append((name, obj["spec"]))
    return specs
