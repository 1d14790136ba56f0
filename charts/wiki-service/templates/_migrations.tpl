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

{{/* Migration env, values inline: in pre-upgrade the ConfigMap still holds the previous revision's. */}}
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

{{/* The `migrate` container: the Deployment's init container and the hook Job's only container. */}}
{{- define "wiki-service.migrationContainer" -}}
- name: migrate
  image: {{ include "wiki-service.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command:
    {{- include "wiki-service.migrationCommand" . | nindent 4 }}
  env:
    {{- include "wiki-service.migrationEnv" . | trim | nindent 4 }}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.migrations.resources | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- with include "wiki-service.db.passwordVolumeMount" . }}
    {{- . | nindent 4 }}
    {{- end }}
{{- end }}
