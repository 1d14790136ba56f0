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

{{/* repository@digest when a digest is set, else repository:tag. Pass (dict "image" values "tag" tag). */}}
{{- define "wiki-service.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository .tag }}
{{- end }}
{{- end }}

{{- define "wiki-service.image" -}}
{{- include "wiki-service.imageRef" (dict "image" .Values.image "tag" (include "wiki-service.imageTag" .)) }}
{{- end }}

{{- define "wiki-service.postgresql.fullname" -}}
{{- printf "%s-postgresql" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wiki-service.postgresql.headless" -}}
{{- printf "%s-postgresql-hl" (include "wiki-service.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ---- Database connection ---------------------------------------------------------- */}}

{{/* Name of the CloudNativePG Cluster (its Services are <name>-rw/-ro/-r, its owner Secret <name>-app). */}}
{{- define "wiki-service.cnpg.clusterName" -}}
{{- .Values.cloudnativepg.clusterName | default (printf "%s-db" (include "wiki-service.fullname" .)) | trunc 50 | trimSuffix "-" }}
{{- end }}

{{/* Name of the CloudNativePG Pooler, which is also the name of its Service. */}}
{{- define "wiki-service.cnpg.poolerName" -}}
{{- printf "%s-pooler-rw" (include "wiki-service.cnpg.clusterName" .) }}
{{- end }}

{{/* The one place that decides how the app reaches its database, for every mode
     (bundled / external / cnpg / cnpg+pooler). YAML; read it with
     `include "wiki-service.db" . | fromYaml`. Keys: mode; host, port (what the app connects to);
     pooled (a PgBouncer in transaction mode in between: no prepared statements) and then
     directHost (migrations go straight to the primary: session advisory locks and
     CREATE INDEX CONCURRENTLY need a session); database, user; secretName, secretKey;
     chartSecret (the chart renders that Secret); budget (the server the connection budget guards). */}}
{{- define "wiki-service.db" -}}
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
budget: {key: externalDatabase, maxConnections: {{ int $ext.maxConnections }}, reservedConnections: {{ int $ext.reservedConnections }}}
{{- end }}
{{- end }}

{{- define "wiki-service.db.secretName" -}}
{{- (include "wiki-service.db" . | fromYaml).secretName }}
{{- end }}

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

{{/* configData for migrations: straight to the primary when the app goes through a pooler. */}}
{{- define "wiki-service.migrationConfigData" -}}
{{- $data := include "wiki-service.configData" . | fromYaml }}
{{- $db := include "wiki-service.db" . | fromYaml -}}
{{- if $db.pooled }}
{{- $_ := set $data "DB_HOST" $db.directHost }}
{{- $_ := unset $data "DB_PREPARED_STATEMENTS" }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{/* Non-secret settings: the ConfigMap's data, and the hook Job's env (the Job runs before
     pre-upgrade changes are applied, so it cannot rely on the ConfigMap being current). */}}
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

{{/* Env of the migration init container and hook Job: values inline, since in pre-upgrade
     the ConfigMap still holds the previous revision's values. */}}
{{- define "wiki-service.migrationEnv" -}}
{{- range $k, $v := (include "wiki-service.migrationConfigData" . | fromYaml) }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end }}
{{ include "wiki-service.db.passwordEnv" . }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
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

{{/* Worst-case PostgreSQL connections must fit in max_connections minus the reserve of the server
     the app connects to; behind the CloudNativePG Pooler, the app's connections must fit in one
     PgBouncer (kube-proxy may send them all to one) and the poolers' server connections plus the
     migrations must fit in the Cluster. */}}
{{- define "wiki-service.validate.connectionBudget" -}}
{{- $db := include "wiki-service.db" . | fromYaml -}}
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
{{- /* 1 per init container (counted although it exits before the app opens its pool) + 1 for the Job + 1 for a backup */}}
{{- $migrations := 0 }}
{{- if .Values.migrations.initContainer.enabled }}{{ $migrations = add $migrations $peak }}{{ end }}
{{- if .Values.migrations.job.enabled }}{{ $migrations = add $migrations 1 }}{{ end }}
{{- if .Values.backup.enabled }}{{ $migrations = add $migrations 1 }}{{ end }}
{{- $key := $db.budget.key }}
{{- $max := int $db.budget.maxConnections }}
{{- $reserved := int $db.budget.reservedConnections }}
{{- $budget := sub $max $reserved }}
{{- $appText := printf "%d pods (incl. %d surge) x (poolSize %d + maxOverflow %d) x %d workers" $peak $surge (int .Values.config.db.poolSize) (int .Values.config.db.maxOverflow) $workers }}
{{- if $db.pooled }}
{{- $pooler := .Values.cloudnativepg.pooler }}
{{- if gt $app (int $pooler.maxClientConnections) }}
{{- fail (printf "connection budget exceeded: %s = %d client connections, but cloudnativepg.pooler.maxClientConnections allows %d per PgBouncer. Lower replicaCount/autoscaling.maxReplicas, config.db.poolSize/maxOverflow or config.workers, or raise cloudnativepg.pooler.maxClientConnections." $appText $app (int $pooler.maxClientConnections)) }}
{{- end }}
{{- $server := mul (int $pooler.instances) (add $pooler.defaultPoolSize $pooler.reservePoolSize) }}
{{- $total := add $server $migrations }}
{{- if gt $total $budget }}
{{- fail (printf "connection budget exceeded: %d PgBouncers x (defaultPoolSize %d + reservePoolSize %d) + %d migration/backup connections = %d, but cloudnativepg.maxConnections %d - reservedConnections %d allows %d. Lower cloudnativepg.pooler.instances or its pool sizes, or raise cloudnativepg.maxConnections." (int $pooler.instances) (int $pooler.defaultPoolSize) (int $pooler.reservePoolSize) $migrations $total $max $reserved $budget) }}
{{- end }}
{{- else }}
{{- $total := add $app $migrations }}
{{- if gt $total $budget }}
{{- fail (printf "connection budget exceeded: %s + %d migration/backup connections = %d, but %s.maxConnections %d - reservedConnections %d allows %d. Lower replicaCount/autoscaling.maxReplicas, config.db.poolSize/maxOverflow or config.workers, or raise %s.maxConnections." $appText $migrations $total $key $max $reserved $budget $key) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "wiki-service.validate" -}}
{{- $mode := (include "wiki-service.db" . | fromYaml).mode }}
{{- if and .Values.postgresql.enabled .Values.cloudnativepg.enabled }}
{{- fail "cloudnativepg.enabled needs postgresql.enabled=false (the chart runs one database)" }}
{{- end }}
{{- if and (eq $mode "cnpg") .Values.backup.enabled }}
{{- fail "backup.enabled is for the bundled or an external PostgreSQL; with CloudNativePG use cloudnativepg.scheduledBackup" }}
{{- end }}
{{- if and (eq $mode "external") (not .Values.externalDatabase.existingSecret) (not .Values.externalDatabase.password) }}
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

{{/* ---- Backups (pg_dump) ------------------------------------------------------------------ */}}

{{- define "wiki-service.backup.fullname" -}}
{{- printf "%s-backup" (include "wiki-service.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* Shell lines both backup scripts start with: fail fast, and the password from the Secret
     (env or mounted file) into libpq's PGPASSWORD inside the process only. */}}
{{- define "wiki-service.backup.preamble" -}}
set -eu
PGPASSWORD="${DB_PASSWORD:-$(cat "$DB_PASSWORD_FILE")}"
export PGPASSWORD
# dumps are <database>-<UTC time>.dump: names sort by age
dumps() { ls -1 "$BACKUP_DIR" | grep -E "^${PGDATABASE}-[0-9]{8}T[0-9]{6}Z\.dump$" | sort; }
{{- end }}

{{/* The CronJob's script: a custom-format dump written under a temporary name and renamed when
     complete, then all but the newest BACKUP_RETENTION dumps deleted. */}}
{{- define "wiki-service.backup.dumpScript" -}}
{{ include "wiki-service.backup.preamble" . }}
rm -f "$BACKUP_DIR"/.*.partial
name="${PGDATABASE}-$(date -u +%Y%m%dT%H%M%SZ).dump"
pg_dump --format=custom --no-password --file="$BACKUP_DIR/.$name.partial"
mv "$BACKUP_DIR/.$name.partial" "$BACKUP_DIR/$name"
echo "wrote $name ($(wc -c < "$BACKUP_DIR/$name") bytes)"
dumps | sort -r | tail -n "+$((BACKUP_RETENTION + 1))" | while read -r old; do
  rm -f -- "$BACKUP_DIR/$old"
  echo "deleted $old (retention $BACKUP_RETENTION)"
done
{{- end }}

{{/* The restore Job's script: RESTORE_FILE (default the newest dump) into the database, in one
     transaction; existing objects are dropped first, ownership goes to the connecting user. */}}
{{- define "wiki-service.backup.restoreScript" -}}
{{ include "wiki-service.backup.preamble" . }}
file="${RESTORE_FILE:-$(dumps | tail -n 1)}"
if [ -z "$file" ] || [ ! -f "$BACKUP_DIR/$file" ]; then
  echo "no dump ${file:-found} in $BACKUP_DIR" >&2
  exit 1
fi
echo "restoring $file into $PGDATABASE at $PGHOST:$PGPORT"
pg_restore --no-password --exit-on-error --single-transaction --clean --if-exists --no-owner \
  --role="$PGUSER" --dbname="$PGDATABASE" "$BACKUP_DIR/$file"
echo "restored $file"
{{- end }}

{{/* Pod spec of the backup CronJob and the restore Job. Pass (dict "ctx" $ "name" container-name
     "script" shell-script). */}}
{{- define "wiki-service.backup.podSpec" -}}
{{- $ctx := .ctx -}}
{{- $v := $ctx.Values -}}
{{- $db := include "wiki-service.db" $ctx | fromYaml -}}
restartPolicy: Never
serviceAccountName: {{ include "wiki-service.serviceAccountName" $ctx }}
automountServiceAccountToken: false
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml $v.postgresql.podSecurityContext | nindent 2 }}
containers:
  - name: {{ .name }}
    image: {{ include "wiki-service.imageRef" (dict "image" $v.backup.image "tag" $v.backup.image.tag) }}
    imagePullPolicy: {{ $v.backup.image.pullPolicy }}
    command:
      - /bin/sh
      - -c
      - |
        {{- .script | nindent 8 }}
    env:
      - name: PGHOST
        value: {{ $db.directHost | default $db.host | quote }}
      - name: PGPORT
        value: {{ $db.port | quote }}
      - name: PGDATABASE
        value: {{ $db.database | quote }}
      - name: PGUSER
        value: {{ $db.user | quote }}
      - name: BACKUP_DIR
        value: /backups
      - name: BACKUP_RETENTION
        value: {{ $v.backup.retention | quote }}
      {{- if eq .name "pg-restore" }}
      - name: RESTORE_FILE
        value: {{ $v.backup.restore.file | quote }}
      {{- end }}
      {{- include "wiki-service.db.passwordEnv" $ctx | nindent 6 }}
    securityContext:
      {{- toYaml $v.postgresql.securityContext | nindent 6 }}
    resources:
      {{- toYaml $v.backup.resources | nindent 6 }}
    volumeMounts:
      - name: backups
        mountPath: /backups
      - name: tmp
        mountPath: /tmp
      {{- with include "wiki-service.db.passwordVolumeMount" $ctx }}
      {{- . | nindent 6 }}
      {{- end }}
volumes:
  - name: backups
    persistentVolumeClaim:
      claimName: {{ include "wiki-service.backup.fullname" $ctx }}
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
  {{- with include "wiki-service.db.passwordVolume" $ctx }}
  {{- . | nindent 2 }}
  {{- end }}
{{- end }}
