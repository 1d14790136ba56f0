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

{{- define "wiki-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wiki-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "wiki-service.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "wiki-service.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "wiki-service.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "wiki-service.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wiki-service.postgresql.headless" -}}
{{- printf "%s-postgresql-hl" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ---- Database connection ---------------------------------------------------------- */}}

{{- define "wiki-service.db.host" -}}
{{- if .Values.postgresql.enabled }}
{{- include "wiki-service.postgresql.fullname" . }}
{{- else }}
{{- required "externalDatabase.host is required when postgresql.enabled=false" .Values.externalDatabase.host }}
{{- end }}
{{- end }}

{{- define "wiki-service.db.port" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.service.port }}{{ else }}{{ .Values.externalDatabase.port }}{{ end }}
{{- end }}

{{- define "wiki-service.db.name" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.database }}{{ else }}{{ .Values.externalDatabase.database }}{{ end }}
{{- end }}

{{- define "wiki-service.db.user" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.username }}{{ else }}{{ .Values.externalDatabase.user }}{{ end }}
{{- end }}

{{/* The user-managed Secret, if any. */}}
{{- define "wiki-service.db.existingSecret" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.existingSecret }}{{ else }}{{ .Values.externalDatabase.existingSecret }}{{ end }}
{{- end }}

{{/* Name of the Secret holding the database password (ours or existingSecret). */}}
{{- define "wiki-service.db.secretName" -}}
{{- include "wiki-service.db.existingSecret" . | default (include "wiki-service.fullname" .) }}
{{- end }}

{{- define "wiki-service.db.secretKey" -}}
{{- if include "wiki-service.db.existingSecret" . }}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.auth.existingSecretPasswordKey }}{{ else }}{{ .Values.externalDatabase.existingSecretPasswordKey }}{{ end }}
{{- else }}password{{ end }}
{{- end }}

{{/* Non-secret settings: the ConfigMap's data, and the hook Job's env (the Job runs before
     pre-upgrade changes are applied, so it cannot rely on the ConfigMap being current). */}}
{{- define "wiki-service.configData" -}}
DB_HOST: {{ include "wiki-service.db.host" . | quote }}
DB_PORT: {{ include "wiki-service.db.port" . | quote }}
DB_NAME: {{ include "wiki-service.db.name" . | quote }}
DB_USER: {{ include "wiki-service.db.user" . | quote }}
DB_POOL_SIZE: {{ .Values.config.db.poolSize | quote }}
DB_MAX_OVERFLOW: {{ .Values.config.db.maxOverflow | quote }}
DB_POOL_TIMEOUT: {{ .Values.config.db.poolTimeout | quote }}
DB_ECHO: {{ .Values.config.db.echo | quote }}
LOG_LEVEL: {{ .Values.config.logLevel | quote }}
WEB_CONCURRENCY: {{ .Values.config.workers | quote }}
{{- end }}

{{/* DB password for app containers: secretKeyRef, or DB_PASSWORD_FILE on a mounted Secret. */}}
{{- define "wiki-service.db.passwordEnv" -}}
{{- if .Values.database.passwordAsFile -}}
- name: DB_PASSWORD_FILE
  value: {{ printf "%s/%s" (trimSuffix "/" .Values.database.passwordMountPath) (include "wiki-service.db.secretKey" .) | quote }}
{{- else -}}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "wiki-service.db.secretName" . }}
      key: {{ include "wiki-service.db.secretKey" . }}
{{- end }}
{{- end }}

{{- define "wiki-service.db.passwordVolume" -}}
{{- if .Values.database.passwordAsFile -}}
- name: db-password
  secret:
    secretName: {{ include "wiki-service.db.secretName" . }}
    defaultMode: 0440
    items:
      - key: {{ include "wiki-service.db.secretKey" . }}
        path: {{ include "wiki-service.db.secretKey" . }}
{{- end }}
{{- end }}

{{- define "wiki-service.db.passwordVolumeMount" -}}
{{- if .Values.database.passwordAsFile -}}
- name: db-password
  mountPath: {{ .Values.database.passwordMountPath }}
  readOnly: true
{{- end }}
{{- end }}

{{/* Migration command; waits for the database first so pods and the Job survive a cold start. */}}
{{- define "wiki-service.migrationCommand" -}}
- /bin/sh
- -c
- |
  deadline=$(( $(date +%s) + {{ int .Values.migrations.waitForDatabaseSeconds }} ))
  until wiki-service check-db; do
    if [ "$(date +%s)" -ge "$deadline" ]; then echo "database not reachable" >&2; exit 1; fi
    sleep 2
  done
  exec wiki-service db upgrade
{{- end }}

{{/* ---- Guards --------------------------------------------------------------------------- */}}

{{/* Worst-case PostgreSQL connections must fit in max_connections minus the reserve. */}}
{{- define "wiki-service.validate.connectionBudget" -}}
{{- $pods := int .Values.replicaCount }}
{{- if .Values.autoscaling.enabled }}{{ $pods = int .Values.autoscaling.maxReplicas }}{{ end }}
{{- $surge := 0 }}
{{- $ms := .Values.strategy.maxSurge }}
{{- if kindIs "string" $ms }}
{{- $pct := trimSuffix "%" $ms | atoi }}
{{- $surge = divf (mul $pods $pct) 100 | ceil | int }}
{{- else }}
{{- $surge = int $ms }}
{{- end }}
{{- $peak := add $pods $surge }}
{{- $workers := int .Values.config.workers }}
{{- $perWorker := add .Values.config.db.poolSize .Values.config.db.maxOverflow }}
{{- $app := mul $peak $perWorker $workers }}
{{- /* 1 per init container (counted although it exits before the app opens its pool) + 1 for the Job */}}
{{- $migrations := 0 }}
{{- if .Values.migrations.initContainer.enabled }}{{ $migrations = add $migrations $peak }}{{ end }}
{{- if .Values.migrations.job.enabled }}{{ $migrations = add $migrations 1 }}{{ end }}
{{- $max := 0 }}{{ $reserved := 0 }}{{ $key := "" }}
{{- if .Values.postgresql.enabled }}
{{- $max = int .Values.postgresql.maxConnections }}{{ $reserved = int .Values.postgresql.reservedConnections }}{{ $key = "postgresql" }}
{{- else }}
{{- $max = int .Values.externalDatabase.maxConnections }}{{ $reserved = int .Values.externalDatabase.reservedConnections }}{{ $key = "externalDatabase" }}
{{- end }}
{{- $budget := sub $max $reserved }}
{{- $total := add $app $migrations }}
{{- if gt $total $budget }}
{{- fail (printf "connection budget exceeded: %d pods (incl. %d surge) x (poolSize %d + maxOverflow %d) x %d workers + %d migration connections = %d, but %s.maxConnections %d - reservedConnections %d allows %d. Lower replicaCount/autoscaling.maxReplicas, config.db.poolSize/maxOverflow or config.workers, or raise %s.maxConnections." $peak $surge (int .Values.config.db.poolSize) (int .Values.config.db.maxOverflow) $workers $migrations $total $key $max $reserved $budget $key) }}
{{- end }}
{{- end }}

{{- define "wiki-service.validate" -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.existingSecret) (not .Values.externalDatabase.password) }}
{{- fail "externalDatabase.password or externalDatabase.existingSecret is required when postgresql.enabled=false" }}
{{- end }}
{{- if and .Values.postgresql.enabled (eq (toString .Values.postgresql.auth.password) "postgres") }}
{{- fail "postgresql.auth.password must not be \"postgres\"; leave it empty to generate one" }}
{{- end }}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSleepSeconds) }}
{{- fail "terminationGracePeriodSeconds must be larger than preStopSleepSeconds" }}
{{- end }}
{{- include "wiki-service.validate.connectionBudget" . }}
{{- end }}

{{/* Effective minimum replicas, for the PodDisruptionBudget. */}}
{{- define "wiki-service.minReplicas" -}}
{{- if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}
