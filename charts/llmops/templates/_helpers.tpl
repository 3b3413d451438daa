{{/* The chart name, for the app.kubernetes.io/name label. */}}
{{- define "llmops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Base name of every object: <release>-operator unless overridden. */}}
{{- define "llmops.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "llmops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llmops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name must name an existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llmops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "llmops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llmops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: llmops
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llmops.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
RBAC rules the operator needs wherever it watches (namespaced objects): exactly what it calls, no
wildcards. tests/operator/test_operator_rbac.py checks every call the operator makes in the emulator
tests against these rules. No delete except for the children a spec change can remove (HPA, PDB):
deleting the rest is the garbage collector's job, through owner references.
*/}}
{{- define "llmops.rules.namespaced" -}}
# kopf: Events for what happened (created, updated, repaired, invalid)
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# our resources: watched; patched for kopf's annotations (llmops.dev/*)
- apiGroups: ["llmops.dev"]
  resources: ["trainingjobs", "inferenceendpoints"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["llmops.dev"]
  resources: ["trainingjobs/status", "inferenceendpoints/status"]
  verbs: ["patch"]
# children carry ownerReferences with blockOwnerDeletion: true, which the OwnerReferencesPermissionEnforcement
# admission plugin (OpenShift, hardened clusters) allows only to who may update the owner's finalizers
- apiGroups: ["llmops.dev"]
  resources: ["trainingjobs/finalizers", "inferenceendpoints/finalizers"]
  verbs: ["update"]
# TrainingJob children
- apiGroups: ["kubeflow.org"]
  resources: ["pytorchjobs"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
# not watched: a hand-deleted one comes back on the periodic pass
- apiGroups: [""]
  resources: ["serviceaccounts", "persistentvolumeclaims"]
  verbs: ["get", "create", "patch"]
# update is never called: RBAC lets the operator grant the trainer's Role (get/patch/update on its
# progress ConfigMap) only if it holds those verbs itself
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
- apiGroups: ["rbac.authorization.k8s.io"]
  resources: ["roles", "rolebindings"]
  verbs: ["get", "create", "patch"]
# training pods (our labels only): exit codes and the retry budget; read only
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch"]
# InferenceEndpoint children
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
{{- end }}

{{/* Cluster-scoped reads kopf makes in both modes. */}}
{{- define "llmops.rules.cluster" -}}
# kopf: discovery rescans when CRDs come and go (e.g. the PyTorchJob CRD installed later)
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
# kopf: the namespaces it watches, as they come and go. With exact names and without this, kopf
# retries the list with backoff for about a minute at every start before using the names as given.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
