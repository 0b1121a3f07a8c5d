{{/*
The member service (values memberService): every node exports its member files over NBD with
TLS to the engines of replicated volumes on other nodes, at the node's IP. Run by the engine
host (the plugin when engineHost.enabled is false), it and every engine of the node present the
one certificate of the Secret below (CN and DNS SAN llraid-member, signed by the release's CA):
engines verify the server by that name, not by the node IP, and the service accepts clients
signed by the same CA.
*/}}

{{- define "llraid.memberTlsSecret" -}}
{{- default (printf "%s-member-tls" (include "llraid.fullname" .)) .Values.memberService.tls.existingSecret -}}
{{- end -}}

{{/* Where the containers find ca.crt, tls.crt and tls.key (LLRAID_TLS_DIR). */}}
{{- define "llraid.memberTlsDir" -}}/etc/llraid/member-tls{{- end -}}

{{/* Env of a container that runs or talks to the member service. HOST_IP first: $(HOST_IP) expands only names defined before. */}}
{{- define "llraid.memberEnv" -}}
- name: HOST_IP
  valueFrom:
    fieldRef: {fieldPath: status.hostIP}
- name: LLRAID_MEMBER_SERVICE_LISTEN
  value: {{ printf "$(HOST_IP):%v" .Values.memberService.port | quote }}
- name: LLRAID_TLS_DIR
  value: {{ include "llraid.memberTlsDir" . | quote }}
{{- end -}}

{{- define "llraid.memberMount" -}}
- name: member-tls
  mountPath: {{ include "llraid.memberTlsDir" . }}
  readOnly: true
{{- end -}}

{{- define "llraid.memberVolume" -}}
- name: member-tls
  secret:
    secretName: {{ include "llraid.memberTlsSecret" . }}
    defaultMode: 0400
{{- end -}}

{{- define "llraid.memberPort" -}}
- name: member
  containerPort: {{ .Values.memberService.port }}
  protocol: TCP
{{- end -}}
