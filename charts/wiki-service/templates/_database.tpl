{{/* Name of the CloudNativePG Cluster (Services <name>-rw/-ro/-r, owner Secret <name>-app). */}}
{{- define "wiki-service.cnpg.clusterName" -}}
{{- .Values.cloudnativepg.clusterName | default (printf "%s-db" (include "wiki-service.fullname" .)) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Name of the CloudNativePG Pooler, which is also the name of its Service. */}}
{{- define "wiki-service.cnpg.poolerName" -}}
{{- printf "%s-pooler-rw" (include "wiki-service.cnpg.clusterName" .) }}
{{- end }}

{{/* How the app reaches its database in every mode, as YAML: `include "wiki-service.db" . | fromYaml`. */}}
{{- define "wiki-service.db" -}}
{{- /* The only place that branches on bundled / cnpg / external. Keys: mode; host, port (what
     the app connects to); pooled (a PgBouncer in transaction mode in between: no prepared
     statements) and then directHost (migrations and backups go straight to the primary:
     session advisory locks and CREATE INDEX CONCURRENTLY need a session); database, user;
     secretName, secretKey; chartSecret (secret.yaml renders that Secret) with password (from
     values, may be empty) and generatePassword (empty means generate one); budget (the server
     the connection budget guards, and its values key). */ -}}
{{- $v := .Values -}}
{{- if $v.postgresql.enabled -}}
{{- $auth := $v.postgresql.auth -}}
mode: bundled
host: {{ include "wiki-service.postgresql.fullname" . }}
port: {{ int $v.postgresql.service.port }}
database: {{ $auth.database | quote }}
user: {{ $auth.username | quote }}
secretName: {{ $auth.existingSecret | default (include "wiki-service.fullname" .) }}
secretKey: {{ ternary $auth.existingSecretPasswordKey "password" (ne $auth.existingSecret "") | quote }}
chartSecret: {{ eq $auth.existingSecret "" }}
password: {{ $auth.password | toString | toJson }}
generatePassword: true
budget: {key: postgresql, maxConnections: {{ int $v.postgresql.maxConnections }}, reservedConnections: {{ int $v.postgresql.reservedConnections }}}
{{- else if $v.cloudnativepg.enabled -}}
{{- $cnpg := $v.cloudnativepg -}}
{{- $cluster := include "wiki-service.cnpg.clusterName" . -}}
mode: cnpg
{{- if $cnpg.pooler.enabled }}
host: {{ include "wiki-service.cnpg.poolerName" . }}
pooled: true
directHost: {{ printf "%s-rw" $cluster }}
{{- else }}
host: {{ printf "%s-rw" $cluster }}
{{- end }}
port: 5432
database: {{ $cnpg.database | quote }}
user: {{ $cnpg.owner | quote }}
{{- /* The operator creates <cluster>-app (basic-auth) for the owner unless initdb gets a Secret. */}}
secretName: {{ $cnpg.existingSecret | default (printf "%s-app" $cluster) }}
secretKey: password
chartSecret: false
budget: {key: cloudnativepg, maxConnections: {{ int $cnpg.maxConnections }}, reservedConnections: {{ int $cnpg.reservedConnections }}}
{{- else -}}
{{- $ext := $v.externalDatabase -}}
mode: external
host: {{ required "externalDatabase.host is required when postgresql.enabled=false" $ext.host | quote }}
port: {{ int $ext.port }}
database: {{ $ext.database | quote }}
user: {{ $ext.user | quote }}
secretName: {{ $ext.existingSecret | default (include "wiki-service.fullname" .) }}
secretKey: {{ ternary $ext.existingSecretPasswordKey "password" (ne $ext.existingSecret "") | quote }}
chartSecret: {{ eq $ext.existingSecret "" }}
password: {{ $ext.password | toString | toJson }}
generatePassword: false
budget: {key: externalDatabase, maxConnections: {{ int $ext.maxConnections }}, reservedConnections: {{ int $ext.reservedConnections }}}
{{- end }}
{{- end }}

{{/* Name of the Secret that holds the database password (the chart's, yours or the operator's). */}}
{{- define "wiki-service.db.secretName" -}}
{{- (include "wiki-service.db" . | fromYaml).secretName }}
{{- end }}

{{/* Key of the password in that Secret. */}}
{{- define "wiki-service.db.secretKey" -}}
{{- (include "wiki-service.db" . | fromYaml).secretKey }}
{{- end }}

{{/* checksum/secret pod annotation: the chart's Secret content, else the name of the one it uses. */}}
{{- define "wiki-service.db.secretChecksum" -}}
{{- $db := include "wiki-service.db" . | fromYaml -}}
{{- if $db.chartSecret }}
{{- include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- else }}
{{- $db.secretName | sha256sum }}
{{- end }}
{{- end }}

{{/* Non-secret settings: the ConfigMap's data, and (through migrationEnv) the migration's env. */}}
{{- define "wiki-service.configData" -}}
{{- $db := include "wiki-service.db" . | fromYaml -}}
DB_HOST: {{ $db.host | quote }}
DB_PORT: {{ $db.port | quote }}
DB_NAME: {{ $db.database | quote }}
DB_USER: {{ $db.user | quote }}
{{- if $db.pooled }}
DB_PREPARED_STATEMENTS: "false"
{{- end }}
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

{{/* The Secret volume behind DB_PASSWORD_FILE (nothing when the password is an env var). */}}
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

{{/* Its read-only mount (nothing when the password is an env var). */}}
{{- define "wiki-service.db.passwordVolumeMount" -}}
{{- if .Values.database.passwordAsFile -}}
- name: db-password
  mountPath: {{ .Values.database.passwordMountPath }}
  readOnly: true
{{- end }}
{{- end }}
