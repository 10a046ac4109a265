{{/* The clean-up script of the CronJob (cleanup.yaml): Python standard library only, for any python image. */}}
{{- define "codexk8s.cleanup.script" -}}
# Usage: cleanup_agent_pods.py TTL_SECONDS LABEL_SELECTOR NAMESPACE... (standard library only).
import datetime, json, os, ssl, sys, urllib.parse, urllib.request

SA = "/var/run/secrets/kubernetes.io/serviceaccount"
ttl, selector, namespaces = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
with open(f"{SA}/token", encoding="utf-8") as f:
    token = f.read().strip()
tls = ssl.create_default_context(cafile=f"{SA}/ca.crt")
api = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"


def call(method, path):
    request = urllib.request.Request(api + path, method=method, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, context=tls, timeout=30) as response:
        return json.load(response)


now = datetime.datetime.now(datetime.timezone.utc)
deleted = 0
for ns in namespaces:
    query = urllib.parse.urlencode({"labelSelector": selector})
    for pod in call("GET", f"/api/v1/namespaces/{ns}/pods?{query}")["items"]:
        meta = pod["metadata"]
        created = datetime.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
        age = (now - created).total_seconds()
        if age > ttl:
            call("DELETE", f"/api/v1/namespaces/{ns}/pods/{meta['name']}")
            deleted += 1
            print(f"deleted {ns}/{meta['name']} (age {age:.0f}s, phase {pod.get('status', {}).get('phase')})")
print(f"{deleted} agent pod(s) older than {ttl}s deleted in {', '.join(namespaces)}")
{{- end -}}
