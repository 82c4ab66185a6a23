{{/* Names and labels. */}}
{{- define "nl2sql.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "nl2sql.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "nl2sql.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The samplers' headless Service: every ready sampler pod is one A record, which the agents resolve. */}}
{{- define "nl2sql.samplerService" -}}
{{ include "nl2sql.fullname" . }}-sampler
{{- end -}}

{{- define "nl2sql.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{/* The container of a collector tier. dict: root, component, args, env, ports */}}
{{- define "nl2sql.collectorContainer" -}}
- name: otelcol
  image: {{ include "nl2sql.image" .root | quote }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  args:
    {{- toYaml .args | nindent 4 }}
  env:
    {{- toYaml .env | nindent 4 }}
  ports:
    {{- toYaml .ports | nindent 4 }}
  livenessProbe:
    httpGet: {path: /, port: health}
    periodSeconds: 10
  readinessProbe:
    httpGet: {path: /, port: health}
    periodSeconds: 5
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- toYaml .root.Values.securityContext | nindent 4 }}
  volumeMounts:
    - {name: config, mountPath: /etc/otelcol, readOnly: true}
    {{- if eq .component "agent" }}
    - {name: queue, mountPath: /var/lib/otelcol/queue}
    {{- end }}
{{- end -}}
