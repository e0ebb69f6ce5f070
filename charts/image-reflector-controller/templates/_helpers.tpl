{{/*
The controller's name. Fixed, not prefixed with the release name, so that
`kubectl -n flux-system get deploy image-reflector-controller` works like with Flux.
*/}}
{{- define "irc.name" -}}
image-reflector-controller
{{- end -}}

{{/* Cluster-scoped objects carry the namespace, so installs in several namespaces coexist. */}}
{{- define "irc.clusterName" -}}
{{ include "irc.name" . }}-{{ .Release.Namespace }}
{{- end -}}

{{- define "irc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "irc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "irc.labels" -}}
{{ include "irc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: image-automation-rs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "irc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "irc.name" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{- define "irc.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "irc.pvcName" -}}
{{ default (printf "%s-data" (include "irc.name" .)) .Values.storage.persistence.existingClaim }}
{{- end -}}

{{/* Subjects of both bindings: the ServiceAccount plus rbac.extraSubjects. */}}
{{- define "irc.subjects" -}}
- kind: ServiceAccount
  name: {{ include "irc.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- with .Values.rbac.extraSubjects }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "irc.args" -}}
{{- if .Values.args -}}
{{ toYaml .Values.args }}
{{- else -}}
- serve
- --http-addr=0.0.0.0:8080
- --storage-path=/data
- --concurrent={{ int .Values.concurrent }}
{{- if .Values.leaderElection.enabled }}
- --enable-leader-election
{{- else }}
{{- /* Explicit: image-automation's binary defaults to true. */}}
- --enable-leader-election=false
{{- end }}
- {{ printf "--log-level=%s" .Values.logLevel | quote }}
- {{ printf "--log-encoding=%s" .Values.logEncoding | quote }}
{{- with .Values.watchLabelSelector }}
- {{ printf "--watch-label-selector=%s" . | quote }}
{{- end }}
{{- if .Values.noCrossNamespaceRefs }}
- --no-cross-namespace-refs
{{- end }}
{{- $gates := list }}
{{- range $name, $on := .Values.featureGates }}
{{- $gates = append $gates (printf "%s=%t" $name $on) }}
{{- end }}
{{- with $gates }}
- {{ printf "--feature-gates=%s" (join "," .) | quote }}
{{- end }}
{{- with .Values.defaultServiceAccount }}
- {{ printf "--default-service-account=%s" . | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "irc.objectLevelWorkloadIdentity" -}}
{{- if and .Values.featureGates (index .Values.featureGates "ObjectLevelWorkloadIdentity") }}true{{- end }}
{{- end -}}
