{{/* Fails the render when the worst-case connections exceed the database's budget. */}}
{{- define "wiki-service.validate.connectionBudget" -}}
{{- /* Worst-case PostgreSQL connections must fit in max_connections minus the reserve of the
     server the app connects to; behind the CloudNativePG Pooler, the app's connections must fit
     in one PgBouncer (kube-proxy may send them all to one) and the poolers' server connections
     plus the migrations must fit in the Cluster. */}}
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

{{/* Fails the render, with the value to change, on settings that cannot work together. */}}
{{- define "wiki-service.validate" -}}
{{- $db := include "wiki-service.db" . | fromYaml }}
{{- if and .Values.postgresql.enabled .Values.cloudnativepg.enabled }}
{{- fail "cloudnativepg.enabled needs postgresql.enabled=false (the chart runs one database)" }}
{{- end }}
{{- if and (eq $db.mode "cnpg") .Values.backup.enabled }}
{{- fail "backup.enabled is for the bundled or an external PostgreSQL; with CloudNativePG use cloudnativepg.scheduledBackup" }}
{{- end }}
{{- if and $db.chartSecret (not $db.password) (not $db.generatePassword) }}
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
