{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "wiki-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name; the release name alone when it already contains the chart name. */}}
{{- define "wiki-service.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "wiki-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels for every object. Pass (dict "ctx" $ "component" "api"); component is optional. */}}
{{- define "wiki-service.labels" -}}
{{- $ctx := .ctx -}}
helm.sh/chart: {{ include "wiki-service.chart" $ctx }}
{{ include "wiki-service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wiki-service.imageTag" $ctx | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: {{ include "wiki-service.name" $ctx }}
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Immutable selector labels (Deployment/StatefulSet selectors, volumeClaimTemplates). */}}
{{- define "wiki-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wiki-service.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{/* ServiceAccount the pods run as: the chart's, or serviceAccount.name (default "default"). */}}
{{- define "wiki-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wiki-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* App image tag: image.tag, else the chart's appVersion. */}}
{{- define "wiki-service.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* repository@digest when a digest is set, else repository:tag. Pass (dict "image" values "tag" tag). */}}
{{- define "wiki-service.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository .tag }}
{{- end }}
{{- end }}

{{/* The app image reference (image.digest wins over the tag). */}}
{{- define "wiki-service.image" -}}
{{- include "wiki-service.imageRef" (dict "image" .Values.image "tag" (include "wiki-service.imageTag" .)) }}
{{- end }}

{{/* Name of the bundled PostgreSQL StatefulSet and of its client Service. */}}
{{- define "wiki-service.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the bundled PostgreSQL's headless (governing) Service. */}}
{{- define "wiki-service.postgresql.headless" -}}
{{- printf "%s-postgresql-hl" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Effective minimum replicas, for the PodDisruptionBudget. */}}
{{- define "wiki-service.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}
