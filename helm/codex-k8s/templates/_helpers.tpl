{{/* The chart name, overridable. */}}
{{- define "codexk8s.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name: fullnameOverride, else the release name (+ the chart name unless it is in it). */}}
{{- define "codexk8s.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "codexk8s.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels; call with (dict "ctx" $ "component" "<component>"). */}}
{{- define "codexk8s.selectorLabels" -}}
app.kubernetes.io/name: {{ include "codexk8s.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Every object's labels; call with (dict "ctx" $ "component" "<component>"). */}}
{{- define "codexk8s.labels" -}}
{{ include "codexk8s.selectorLabels" . }}
helm.sh/chart: {{ include "codexk8s.chart" .ctx }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: codex-k8s
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "codexk8s.serviceAccountName" -}}
{{- default (include "codexk8s.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "codexk8s.configMapName" -}}
{{- printf "%s-config" (include "codexk8s.fullname" .) -}}
{{- end -}}

{{- define "codexk8s.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespace agent pods are launched into: the first of agents.namespaces. */}}
{{- define "codexk8s.agentNamespace" -}}
{{- first .Values.agents.namespaces -}}
{{- end -}}

{{/* "true" when the chart creates the GitHub Secret (no existingSecret, at least one value given). */}}
{{- define "codexk8s.github.create" -}}
{{- $gh := .Values.secrets.github -}}
{{- if and (not $gh.existingSecret) (or $gh.token $gh.appId $gh.appPrivateKey) -}}true{{- end -}}
{{- end -}}

{{- define "codexk8s.database.create" -}}
{{- $db := .Values.secrets.database -}}
{{- if and (not $db.existingSecret) $db.url -}}true{{- end -}}
{{- end -}}

{{/* The token the chart writes into each agent namespace ("" = none). */}}
{{- define "codexk8s.agentToken.value" -}}
{{- $at := .Values.secrets.agentToken -}}
{{- if not $at.existingSecret -}}{{- default .Values.secrets.github.token $at.token -}}{{- end -}}
{{- end -}}

{{- define "codexk8s.agentToken.secretName" -}}
{{- $at := .Values.secrets.agentToken -}}
{{- default $at.name $at.existingSecret -}}
{{- end -}}

{{- define "codexk8s.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end -}}

{{/* CODEXK8S_DATABASE_URL from the database Secret (existingSecret, else the chart's); "" when there is none. */}}
{{- define "codexk8s.databaseEnv" -}}
{{- $db := .Values.secrets.database -}}
{{- if or $db.existingSecret $db.url -}}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_DATABASE_URL" "secret" (default $db.name $db.existingSecret) "key" $db.keys.url) }}
{{- end -}}
{{- end -}}

{{/*
The platform's environment: the code location's, and through the container context the run pods'. Every name is
a settings.*_VAR of codexk8s_pipelines; secrets are secretKeyRefs only.
*/}}
{{- define "codexk8s.platformEnv" -}}
{{- $gh := .Values.secrets.github -}}
- name: CODEXK8S_ENV
  value: kubernetes
{{ include "codexk8s.stateEnv" . }}
- name: CODEXK8S_CONFIG
  value: /etc/codexk8s/codexk8s.yaml
- name: CODEXK8S_AGENT_CATALOG
  value: /etc/codexk8s/agents.yaml
- name: CODEXK8S_K8S_NAMESPACE
  value: {{ include "codexk8s.agentNamespace" . | quote }}
- name: CODEXK8S_K8S_AGENT_NAMESPACES
  value: {{ join "," .Values.agents.namespaces | quote }}
- name: CODEXK8S_K8S_SERVICE_ACCOUNT
  value: {{ .Values.agents.serviceAccountName | quote }}
- name: CODEXK8S_K8S_TOKEN_SECRET
  value: {{ include "codexk8s.agentToken.secretName" . | quote }}
- name: CODEXK8S_K8S_TOKEN_SECRET_KEY
  value: {{ .Values.secrets.agentToken.key | quote }}
- name: CODEXK8S_K8S_IMAGE_PULL_POLICY
  value: {{ .Values.agents.imagePullPolicy | quote }}
- name: CODEXK8S_K8S_WORKSPACE_SIZE
  value: {{ .Values.agents.workspaceSizeLimit | quote }}
- name: CODEXK8S_K8S_AGENT_EPHEMERAL_STORAGE
  value: {{ .Values.agents.agentEphemeralStorage | quote }}
- name: CODEXK8S_K8S_RUNNER_EPHEMERAL_STORAGE
  value: {{ .Values.agents.runnerEphemeralStorage | quote }}
{{- with .Values.agents.runnerImage }}
- name: CODEXK8S_K8S_RUNNER_IMAGE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.codeLocation.dagsterUrl }}
- name: CODEXK8S_DAGSTER_URL
  value: {{ . | quote }}
{{- end }}
{{- with .Values.codeLocation.githubApiUrl }}
- name: CODEXK8S_GITHUB_API_URL
  value: {{ . | quote }}
{{- end }}
{{- if $gh.existingSecret }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_TOKEN" "secret" $gh.existingSecret "key" $gh.keys.token "optional" true) }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_APP_ID" "secret" $gh.existingSecret "key" $gh.keys.appId "optional" true) }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_APP_PRIVATE_KEY" "secret" $gh.existingSecret "key" $gh.keys.appPrivateKey "optional" true) }}
{{- else }}
{{- if $gh.token }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_TOKEN" "secret" $gh.name "key" $gh.keys.token) }}
{{- end }}
{{- if $gh.appId }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_APP_ID" "secret" $gh.name "key" $gh.keys.appId) }}
{{- end }}
{{- if $gh.appPrivateKey }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_GITHUB_APP_PRIVATE_KEY" "secret" $gh.name "key" $gh.keys.appPrivateKey) }}
{{- end }}
{{- end }}
{{- with include "codexk8s.databaseEnv" . }}
{{ . }}
{{- end }}
{{- if .Values.mcp.enabled }}
- name: CODEXK8S_MCP_URL
  value: {{ include "codexk8s.mcp.url" . | quote }}
{{ include "codexk8s.secretEnv" (dict "env" "CODEXK8S_MCP_SECRET" "secret" .Values.mcp.secret.existingSecret "key" .Values.mcp.secret.key) }}
{{- end }}
{{- end -}}

{{/*
CODEXK8S_HOME, the platform's state (each run's prompt and workspace, checkouts, plots): an emptyDir in every pod of
the platform image (code location, run pods, MCP server, webhook receiver, migration Job), writable whatever the
pod's uid and with a read-only root filesystem. The image's own CODEXK8S_HOME names the same directory.
*/}}
{{- define "codexk8s.stateDir" -}}
/var/lib/codexk8s
{{- end -}}

{{- define "codexk8s.stateEnv" -}}
- name: CODEXK8S_HOME
  value: {{ include "codexk8s.stateDir" . | quote }}
{{- end -}}

{{- define "codexk8s.stateVolume" -}}
name: codexk8s-state
emptyDir: {}
{{- end -}}

{{- define "codexk8s.stateVolumeMount" -}}
name: codexk8s-state
mountPath: {{ include "codexk8s.stateDir" . }}
{{- end -}}

{{/* The configuration volume and its mount, shared by the code location and the run pods. */}}
{{- define "codexk8s.configVolume" -}}
name: codexk8s-config
configMap:
  name: {{ include "codexk8s.configMapName" . }}
{{- end -}}

{{- define "codexk8s.configVolumeMount" -}}
name: codexk8s-config
mountPath: /etc/codexk8s
readOnly: true
{{- end -}}

{{/*
DAGSTER_CONTAINER_CONTEXT of the code server: dagster-k8s applies it to every run pod launched for this code
location (the dagster chart's user-deployments subchart does the same for its own deployments).
*/}}
{{- define "codexk8s.containerContext" -}}
{{- $run := .Values.runPods -}}
{{- $k8s := dict
  "env" (include "codexk8s.platformEnv" . | fromYamlArray)
  "volumes" (list (include "codexk8s.configVolume" . | fromYaml) (include "codexk8s.stateVolume" . | fromYaml))
  "volume_mounts" (list (include "codexk8s.configVolumeMount" . | fromYaml) (include "codexk8s.stateVolumeMount" . | fromYaml))
  "service_account_name" (include "codexk8s.serviceAccountName" .)
  "image_pull_policy" .Values.image.pullPolicy
  "resources" $run.resources
  "security_context" (merge (dict "runAsNonRoot" true) (deepCopy $run.securityContext))
  "run_k8s_config" (dict "pod_spec_config" (dict "security_context" (merge (dict "runAsNonRoot" true) (deepCopy $run.podSecurityContext))))
-}}
{{- with .Values.imagePullSecrets }}
{{- $_ := set $k8s "image_pull_secrets" . }}
{{- end }}
{{- dict "k8s" $k8s | toJson -}}
{{- end -}}

{{/* The TTL of cleanup as seconds: "24h" -> 86400. */}}
{{- define "codexk8s.cleanup.ttlSeconds" -}}
{{- $ttl := toString .Values.cleanup.ttl -}}
{{- $n := regexFind "^[0-9]+" $ttl | int -}}
{{- $unit := trimPrefix (regexFind "^[0-9]+" $ttl) $ttl -}}
{{- $factor := get (dict "s" 1 "m" 60 "h" 3600 "d" 86400) $unit -}}
{{- mul $n $factor -}}
{{- end -}}

{{/* The MCP server's Deployment and Service name. */}}
{{- define "codexk8s.mcp.name" -}}
{{- printf "%s-mcp" (include "codexk8s.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The webhook receiver's Deployment, Service, NetworkPolicy and Ingress name. */}}
{{- define "codexk8s.webhook.name" -}}
{{- printf "%s-webhook" (include "codexk8s.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* CODEXK8S_MCP_URL: the MCP Service's in-cluster address (agent pods run in another namespace). */}}
{{- define "codexk8s.mcp.url" -}}
{{- printf "http://%s.%s.svc:%v/mcp" (include "codexk8s.mcp.name" .) .Release.Namespace .Values.mcp.port -}}
{{- end -}}

{{/* The catalog's `kinds:` endpoints from modelCredentials: the key Secret (name/key) and a gateway base URL. */}}
{{- define "codexk8s.modelKinds" -}}
{{- $kinds := dict -}}
{{- range $kind, $c := .Values.modelCredentials -}}
{{- $endpoint := dict -}}
{{- if $c.existingSecret -}}{{- $_ := set $endpoint "key_secret" (printf "%s/%s" $c.existingSecret $c.key) -}}{{- end -}}
{{- if $c.baseUrl -}}{{- $_ := set $endpoint "base_url" $c.baseUrl -}}{{- end -}}
{{- if $endpoint -}}{{- $_ := set $kinds $kind (dict "endpoint" $endpoint) -}}{{- end -}}
{{- end -}}
{{- toYaml $kinds -}}
{{- end -}}

{{/* Where a Deployment's pods go: its nodeSelector, tolerations and affinity as given; with more than one replica and
no affinity given, a preferred spread over nodes, so one node drained or lost does not take every replica at once.
Call with (dict "ctx" $ "component" "<component>" "values" <the component's values>). */}}
{{- define "codexk8s.placement" -}}
{{- $v := .values }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else if gt (int $v.replicaCount) 1 }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "codexk8s.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 14 }}
{{- end }}
{{- end -}}

{{/* With more than one replica, a PodDisruptionBudget: a node drain or a cluster upgrade evicts one replica at a
time, so the others keep serving. Call as codexk8s.placement. */}}
{{- define "codexk8s.disruptionBudget" -}}
{{- if gt (int .values.replicaCount) 1 }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  namespace: {{ .ctx.Release.Namespace }}
  labels:
    {{- include "codexk8s.labels" (dict "ctx" .ctx "component" .component) | nindent 4 }}
spec:
  maxUnavailable: 1
  selector:
    matchLabels:
      {{- include "codexk8s.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}
