{{/* Names, labels and the operator's RBAC rules. */}}

{{- define "synapse-scim.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "synapse-scim.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "synapse-scim.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "synapse-scim.selectorLabels" -}}
app.kubernetes.io/name: {{ include "synapse-scim.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "synapse-scim.labels" -}}
helm.sh/chart: {{ include "synapse-scim.chart" . }}
{{ include "synapse-scim.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: synapse-scim
{{- end }}

{{- define "synapse-scim.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "synapse-scim.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "synapse-scim.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "synapse-scim.caBundlePath" -}}
/etc/synapse-scim/azure-ca/{{ .Values.azureCABundle.key }}
{{- end }}

{{/*
What the operator does with the Kubernetes API, and nothing more. Shared by the ClusterRole
(all namespaces) and by the Role of each watched namespace. tests/chart/test_chart.py asserts these
rules verbatim: widening them must fail a test.
*/}}
{{- define "synapse-scim.namespacedRules" -}}
# kopf lists and watches both kinds (its watch streams); it patches them to add and remove its
# finalizer and its progress/diff-base annotations (synapse-scim.io/...); the operator reads a
# SynapseWorkspace by name and lists the SynapseRoleBindings of a workspace's namespace.
- apiGroups: [synapse-scim.io]
  resources: [synapseworkspaces, synapserolebindings]
  verbs: [get, list, watch, patch]
# Status is a subresource of both kinds: kopf and the operator merge-patch it there.
- apiGroups: [synapse-scim.io]
  resources: [synapseworkspaces/status, synapserolebindings/status]
  verbs: [patch]
# The client secret or certificate a SynapseWorkspace names (spec.credential.*.secretRef), read by
# name on every sync: never list or watch (no cache of every Secret in the cluster). patch: a JSON
# patch of metadata.finalizers only (synapse-scim.io/credential-in-use), so that the Secret outlives
# a namespace's deletion until the revocations that need it are made (controller/deletion.py).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, patch]
# kopf posts core/v1 Events (kopf.info / kopf.warn) on the custom resources.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
# The grant ledger (controller/grant_ledger.py): one merge patch per touched ConfigMap
# <workspace>-grants-<hex> after a sync's writes, created when missing. No get, list or delete: the
# operator never reads it back, and the ownerReference to the workspace has Kubernetes delete it.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch]
{{- if .Values.scim.enabled }}
{{ include "synapse-scim.scimRules" . }}
{{- end }}
{{- end }}

{{/*
The SCIM endpoint's access (scim.enabled only; controller/scim.py, adapters/scim/): every replica lists
and watches the ScimProviders (watch.py) and merge-patches their status (Kube.patch_status); the store
(kube_store.py) lists and watches a provider's users, groups and member shards, creates, replaces
(update), reads by name (get, after a conflict) and deletes them. No patch on the storage kinds, no
deletecollection. A provider's token Secret is read by name (providers.py): the `get` on secrets above.
*/}}
{{- define "synapse-scim.scimRules" -}}
# SCIM: every replica watches the ScimProviders and writes their status.
- apiGroups: [synapse-scim.io]
  resources: [scimproviders]
  verbs: [list, watch]
- apiGroups: [synapse-scim.io]
  resources: [scimproviders/status]
  verbs: [patch]
# SCIM: the store of pushed users and groups (a watch-fed index; writes with resourceVersion).
- apiGroups: [synapse-scim.io]
  resources: [scimusers, scimgroups, scimgroupmembers]
  verbs: [get, list, watch, create, update, delete]
{{- end }}

{{- define "synapse-scim.scimServiceName" -}}
{{ include "synapse-scim.fullname" . }}-scim
{{- end }}

{{- define "synapse-scim.scimTLSSecret" -}}
{{- if .Values.scim.tls.secretName }}
{{- .Values.scim.tls.secretName }}
{{- else if .Values.scim.tls.certificate.enabled }}
{{- include "synapse-scim.fullname" . }}-scim-tls
{{- else }}
{{- fail "scim.enabled needs scim.tls.secretName (a kubernetes.io/tls Secret with tls.crt and tls.key) or scim.tls.certificate.enabled=true (cert-manager)" }}
{{- end }}
{{- end }}

{{/* The origin identity providers are given: scim.baseUrl, else the Ingress host, else the Service. */}}
{{- define "synapse-scim.scimBaseUrl" -}}
{{- if .Values.scim.baseUrl }}
{{- .Values.scim.baseUrl }}
{{- else if .Values.scim.ingress.enabled }}
{{- printf "https://%s" (required "scim.ingress.enabled needs scim.ingress.host (the public host name, e.g. scim.example.com)" .Values.scim.ingress.host) }}
{{- else }}
{{- $port := int .Values.scim.service.port }}
{{- printf "https://%s.%s.svc%s" (include "synapse-scim.scimServiceName" .) .Release.Namespace (ternary "" (printf ":%d" $port) (eq $port 443)) }}
{{- end }}
{{- end }}

{{/*
Cluster-scoped rules, only in all-namespaces mode. kopf watches CustomResourceDefinitions to notice
resources (re)appearing while it runs. In watchNamespaces mode there is no ClusterRole: kopf then
logs once that it may not watch CRDs (and namespaces) and falls back to the startup discovery scan
and the exact namespace names, which is all that mode needs.
*/}}
{{- define "synapse-scim.clusterRules" -}}
# kopf's resource observer: lists and watches CRDs to (re)discover the served resources.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [list, watch]
{{- end }}
