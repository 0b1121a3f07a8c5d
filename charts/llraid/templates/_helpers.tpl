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

{{/*
"true" when the snapshot sidecar, the VolumeSnapshotClass and their RBAC are rendered, else "".
snapshots.enabled auto follows the API server's snapshot.storage.k8s.io/v1 (the CRDs the
cluster admin installs with the snapshot-controller); true without it fails the render.
*/}}
{{- define "llraid.snapshots" -}}
{{- $want := toString .Values.snapshots.enabled -}}
{{- $served := .Capabilities.APIVersions.Has "snapshot.storage.k8s.io/v1" -}}
{{- if eq $want "auto" -}}{{ ternary "true" "" $served }}
{{- else if eq $want "true" -}}
{{- if not $served -}}
{{- fail "snapshots.enabled: true, but the cluster does not serve snapshot.storage.k8s.io/v1: install the VolumeSnapshot CRDs and the snapshot-controller (kubernetes-csi/external-snapshotter) first, or set auto or false" -}}
{{- end -}}true
{{- else if ne $want "false" -}}
{{- fail (printf "snapshots.enabled: expected auto, true or false, found %q" $want) -}}
{{- end -}}
{{- end -}}

{{/* "true" when changed-block tracking (the csi-snapshot-metadata sidecar) is rendered, else "". */}}
{{- define "llraid.snapshotMetadata" -}}
{{- $want := toString .Values.snapshots.metadata.enabled -}}
{{- $served := .Capabilities.APIVersions.Has "cbt.storage.k8s.io/v1alpha1" -}}
{{- $snapshots := include "llraid.snapshots" . -}}
{{- if eq $want "auto" -}}{{ ternary "true" "" (and $served (eq $snapshots "true")) }}
{{- else if eq $want "true" -}}
{{- if not $snapshots -}}
{{- fail "snapshots.metadata.enabled: true needs snapshots (snapshots.enabled and the VolumeSnapshot CRDs)" -}}
{{- end -}}
{{- if not $served -}}
{{- fail "snapshots.metadata.enabled: true, but the cluster does not serve cbt.storage.k8s.io/v1alpha1: install the SnapshotMetadataService CRD (kubernetes-csi/external-snapshot-metadata client/config/crd) first, or set auto or false" -}}
{{- end -}}true
{{- else if ne $want "false" -}}
{{- fail (printf "snapshots.metadata.enabled: expected auto, true or false, found %q" $want) -}}
{{- end -}}
{{- end -}}

{{- define "llraid.snapshotMetadataName" -}}{{ include "llraid.fullname" . }}-snapshot-metadata{{- end -}}

{{/* The gRPC port of the metadata sidecar, checked. */}}
{{- define "llraid.snapshotMetadataPort" -}}
{{- $p := .Values.snapshots.metadata.port -}}
{{- if not (and (kindIs "float64" $p) (eq (float64 $p) (floor $p)) (ge (int $p) 1) (le (int $p) 65535)) -}}
{{- if not (and (kindIs "int64" $p) (ge (int $p) 1) (le (int $p) 65535)) -}}
{{- fail (printf "snapshots.metadata.port: expected a port number 1-65535, found %v" $p) -}}
{{- end -}}
{{- end -}}
{{- int $p -}}
{{- end -}}

{{/*
The port of the plugins' peer endpoint (forwarded changed-block tracking calls), checked; empty
when there is none: it needs the member service (its TLS Secret, the node's IP).
*/}}
{{- define "llraid.snapshotMetadataPeerPort" -}}
{{- if and (include "llraid.snapshotMetadata" .) .Values.memberService.enabled -}}
{{- $p := .Values.snapshots.metadata.peerPort -}}
{{- if not (and (or (kindIs "float64" $p) (kindIs "int64" $p)) (eq (float64 $p) (floor (float64 $p))) (ge (int $p) 1) (le (int $p) 65535)) -}}
{{- fail (printf "snapshots.metadata.peerPort: expected a port number 1-65535, found %v" $p) -}}
{{- end -}}
{{- if eq (int $p) (int .Values.memberService.port) -}}
{{- fail (printf "snapshots.metadata.peerPort: expected another port than memberService.port (%v), found %v" .Values.memberService.port $p) -}}
{{- end -}}
{{- int $p -}}
{{- end -}}
{{- end -}}

{{- define "llraid.snapshotMetadataAudience" -}}
{{- default (include "llraid.snapshotMetadataName" .) .Values.snapshots.metadata.audience -}}
{{- end -}}
