{{/* Names, labels and the service configuration shared by the templates. */}}

{{- define "port-router.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "port-router.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "port-router.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "port-router.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "port-router.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "port-router.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels; call with (dict "root" $ "component" "router"). */}}
{{- define "port-router.selectorLabels" -}}
app.kubernetes.io/name: {{ include "port-router.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "port-router.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "port-router.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "port-router.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* A DNS-1123 label for a model: its `id` if set, else its name lowercased with other characters as '-'. */}}
{{- define "port-router.modelId" -}}
{{- default (regexReplaceAll "[^a-z0-9-]+" (lower .name) "-") .id | trunc 40 | trimAll "-" -}}
{{- end -}}

{{/* The service configuration (streams/config.py) as YAML. Credentials are not in it: they come from
     Secrets as PORT_ROUTER__KAFKA__SASL_USERNAME / _PASSWORD environment variables. */}}
{{- define "port-router.config" -}}
{{- $v := .Values -}}
{{- $kafka := dict "bootstrap_servers" $v.kafka.bootstrapServers "security_protocol" $v.kafka.securityProtocol -}}
{{- if $v.kafka.sasl.mechanism -}}{{- $_ := set $kafka "sasl_mechanism" $v.kafka.sasl.mechanism -}}{{- end -}}
{{- if $v.kafka.tls.caSecret -}}{{- $_ := set $kafka "ssl_cafile" "/etc/port-router-kafka-ca/ca.crt" -}}{{- end -}}
{{- $topics := dict "prefix" $v.topics.prefix "query_partitions" $v.topics.queryPartitions "routed_partitions" $v.topics.routedPartitions "replication_factor" $v.topics.replicationFactor -}}
{{- $router := merge (dict "app_id" $v.router.appId "web_host" "0.0.0.0" "web_port" 6066 "data_dir" "/var/lib/port-router/faust") $v.router.settings -}}
{{- $models := list -}}
{{- range $v.models -}}
{{- $m := dict "name" .name "budget" .budget -}}
{{- if .topic -}}{{- $_ := set $m "topic" .topic -}}{{- end -}}
{{- if .apiModel -}}{{- $_ := set $m "api_model" .apiModel -}}{{- end -}}
{{- if .priceInputPerToken -}}{{- $_ := set $m "price_input_per_token" .priceInputPerToken -}}{{- end -}}
{{- if .priceOutputPerToken -}}{{- $_ := set $m "price_output_per_token" .priceOutputPerToken -}}{{- end -}}
{{- $models = append $models $m -}}
{{- end -}}
{{- $config := dict "kafka" $kafka "topics" $topics "router" $router "models" $models "history" $v.history.paths "index_dir" "/var/lib/port-router/index" -}}
{{- if $v.history.rows -}}{{- $_ := set $config "history_rows" $v.history.rows -}}{{- end -}}
{{- range $section, $body := $v.config -}}{{- $_ := set $config $section $body -}}{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Environment shared by every container that talks to Kafka: SASL credentials from a Secret. */}}
{{- define "port-router.kafkaEnv" -}}
{{- with .Values.kafka.sasl.existingSecret }}
- name: PORT_ROUTER__KAFKA__SASL_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $.Values.kafka.sasl.usernameKey | quote }}}
- name: PORT_ROUTER__KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ . | quote }}, key: {{ $.Values.kafka.sasl.passwordKey | quote }}}
{{- end }}
{{- end -}}

{{/* Volumes and mounts for the configuration and the optional Kafka CA; call with (dict "root" $ "configMap" NAME). */}}
{{- define "port-router.configVolumes" -}}
- name: config
  configMap: {name: {{ .configMap | quote }}}
- name: tmp
  emptyDir: {}
{{- with .root.Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ . | quote }}
    items: [{key: {{ $.root.Values.kafka.tls.caKey | quote }}, path: ca.crt}]
{{- end }}
{{- end -}}

{{- define "port-router.configMounts" -}}
- {name: config, mountPath: /etc/port-router, readOnly: true}
- {name: tmp, mountPath: /tmp}
{{- if .Values.kafka.tls.caSecret }}
- {name: kafka-ca, mountPath: /etc/port-router-kafka-ca, readOnly: true}
{{- end }}
{{- end -}}

{{- define "port-router.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "port-router.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}
