{{/* Name of the backup CronJob and its PVC (52 characters: the controller appends 11 to Job names). */}}
{{- define "wiki-service.backup.fullname" -}}
{{- printf "%s-backup" (include "wiki-service.fullname" .) | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* Shell lines both backup scripts start with: fail fast, the password into PGPASSWORD. */}}
{{- define "wiki-service.backup.preamble" -}}
{{- /* The password comes from the Secret (env or mounted file) and stays inside the process. */ -}}
set -eu
PGPASSWORD="${DB_PASSWORD:-$(cat "$DB_PASSWORD_FILE")}"
export PGPASSWORD
# dumps are <database>-<UTC time>.dump: names sort by age
dumps() { ls -1 "$BACKUP_DIR" | grep -E "^${PGDATABASE}-[0-9]{8}T[0-9]{6}Z\.dump$" | sort; }
{{- end }}

{{/* The CronJob's script: a pg_dump under a temporary name, renamed when complete; retention. */}}
{{- define "wiki-service.backup.dumpScript" -}}
{{- /* All but the newest BACKUP_RETENTION dumps are deleted after each successful dump. */ -}}
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

{{/* The restore Job's script: RESTORE_FILE (default the newest dump) in one transaction. */}}
{{- define "wiki-service.backup.restoreScript" -}}
{{- /* Existing objects are dropped first, ownership goes to the connecting user. */ -}}
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

{{/* Pod spec of the backup CronJob and the restore Job. Pass (dict "ctx" $ "name" container "script" script). */}}
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
