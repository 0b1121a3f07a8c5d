{{/* Names and labels shared by every template of the llraid chart. */}}

{{- define "llraid.driverName" -}}csi.llraid.io{{- end -}}

{{- define "llraid.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "llraid.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "llraid.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end -}}

{{- define "llraid.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llraid.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llraid.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Fails the render with a clear message when a disk list is unusable. */}}
{{- define "llraid.checkDisks" -}}
{{- $names := dict -}}
{{- range .disks -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" (toString .name)) -}}
{{- fail (printf "%s: disk name %q: expected a DNS label (lowercase letters, digits, '-')" $.where (toString .name)) -}}
{{- end -}}
{{- if not (hasPrefix "/" (toString .path)) -}}
{{- fail (printf "%s: disk %s path %q: expected an absolute path" $.where .name (toString .path)) -}}
{{- end -}}
{{- if hasKey $names .name -}}
{{- fail (printf "%s: disk name %q appears twice" $.where .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- end -}}
{{- end -}}

{{/*
nodeLease.durationSeconds, checked with renewSeconds: a renewal must be able to land before the
deadline it extends (durationSeconds - max(2, durationSeconds/4) after it was sent, the rule of
src/k8s/node-lease.ts, which refuses the same values at start).
*/}}
{{- define "llraid.nodeLeaseDuration" -}}
{{- $d := float64 .Values.nodeLease.durationSeconds -}}
{{- $r := float64 .Values.nodeLease.renewSeconds -}}
{{- if or (lt $d 1.0) (ne $d (floor $d)) -}}
{{- fail (printf "nodeLease.durationSeconds: expected an integer ≥ 1, found %v" .Values.nodeLease.durationSeconds) -}}
{{- end -}}
{{- $valid := subf $d (maxf 2.0 (divf $d 4.0)) -}}
{{- if or (le $r 0.0) (ge $r $valid) -}}
{{- fail (printf "nodeLease.renewSeconds: expected more than 0 and less than durationSeconds - max(2, durationSeconds/4) = %v, found %v" $valid .Values.nodeLease.renewSeconds) -}}
{{- end -}}
{{- int $d -}}
{{- end -}}
