{{/*
The controller's name. Fixed, not prefixed with the release name, so that
`kubectl -n flux-system get deploy image-automation-controller` works like with Flux.
*/}}
{{- define "iac.name" -}}
image-automation-controller
{{- end -}}

{{/* Cluster-scoped objects carry the namespace, so installs in several namespaces coexist. */}}
{{- define "iac.clusterName" -}}
{{ include "iac.name" . }}-{{ .Release.Namespace }}
{{- end -}}

{{- define "iac.selectorLabels" -}}
app.kubernetes.io/name: {{ include "iac.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "iac.labels" -}}
{{ include "iac.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
app.kubernetes.io/part-of: image-automation-rs
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "iac.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ default (include "iac.name" .) .Values.serviceAccount.name }}
{{- else -}}
{{ default "default" .Values.serviceAccount.name }}
{{- end -}}
{{- end -}}

{{- define "iac.image" -}}
{{ .Values.image.repository }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{- define "iac.pvcName" -}}
{{ default (printf "%s-data" (include "iac.name" .)) .Values.storage.persistence.existingClaim }}
{{- end -}}

{{/* Subjects of both bindings: the ServiceAccount plus rbac.extraSubjects. */}}
{{- define "iac.subjects" -}}
- kind: ServiceAccount
  name: {{ include "iac.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- with .Values.rbac.extraSubjects }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "iac.args" -}}
{{- if .Values.args -}}
{{ toYaml .Values.args }}
{{- else -}}
- serve
- --http-addr=0.0.0.0:8080
- --storage-path=/data
- --concurrent={{ int .Values.concurrent }}
- {{ printf "--reflector-url=%s" (include "iac.reflectorUrl" .) | quote }}
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

{{- define "iac.reflectorUrl" -}}
{{ default (printf "http://image-reflector-controller.%s.svc.cluster.local:8080" .Release.Namespace) .Values.reflectorUrl }}
{{- end -}}

{{- define "iac.objectLevelWorkloadIdentity" -}}
{{- if and .Values.featureGates (index .Values.featureGates "ObjectLevelWorkloadIdentity") }}true{{- end }}
{{- end -}}
