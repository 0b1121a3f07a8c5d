{{/*
The node plugin DaemonSet for one disk pool. Called with a dict:
  root     the chart context
  suffix   "" for the default pool, "-<pool name>" for a node pool
  disks    the pool's disks [{name, path}]
  include  the nodeLabel {key, value} the pool runs on (node pools), or nil
  exclude  the nodeLabels of all node pools (the default pool skips their nodes)
Only the llraid container is privileged: it mounts, attaches /dev/nbdX or loop devices and
reaches the pool directories; the sidecars run with no capabilities. The plugin's CSI socket
is mode 0600, owned by root: the sidecars reach it as root (their distroless images' user, and
no runAsUser is set here), so give them none.
*/}}
{{- define "llraid.sidecarSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{- define "llraid.daemonset" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := printf "%s-node%s" (include "llraid.fullname" $root) .suffix -}}
{{- $pluginDir := printf "%s/plugins/%s" $v.kubeletDir (include "llraid.driverName" $root) -}}
{{- $diskPaths := list -}}
{{- range .disks }}{{ $diskPaths = append $diskPaths (printf "/pool/%s" .name) }}{{ end -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "llraid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: node
spec:
  selector:
    matchLabels:
      {{- include "llraid.selectorLabels" $root | nindent 6 }}
      llraid.io/pool: {{ default "default" (trimPrefix "-" .suffix) }}
  updateStrategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 1
  template:
    metadata:
      labels:
        {{- include "llraid.selectorLabels" $root | nindent 8 }}
        llraid.io/pool: {{ default "default" (trimPrefix "-" .suffix) }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.podAnnotations }}
      annotations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
    spec:
      serviceAccountName: {{ include "llraid.serviceAccountName" $root }}
      priorityClassName: {{ $v.priorityClassName }}
      {{- if $v.memberService.enabled }}
      # The member service is reached at the node's IP: the pod shares the node's network.
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $v.nodeSelector .include }}
      nodeSelector:
        {{- with $v.nodeSelector }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .include }}
        {{ .key }}: {{ .value | quote }}
        {{- end }}
      {{- end }}
      {{- if .exclude }}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  {{- range .exclude }}
                  - key: {{ .key }}
                    operator: NotIn
                    values: [{{ .value | quote }}]
                  {{- end }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: llraid
          image: {{ include "llraid.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: [csi]
          env:
            - name: LLRAID_ENDPOINT
              value: unix:///csi/csi.sock
            - name: LLRAID_NODE_ID
              valueFrom:
                fieldRef: {fieldPath: spec.nodeName}
            - name: LLRAID_DISKS
              value: {{ join "," $diskPaths | quote }}
            - name: LLRAID_ATTACH
              value: {{ $v.attach | quote }}
            - name: LLRAID_RUN_DIR
              value: {{ $v.runDir | quote }}
            {{- if $v.engineHost.enabled }}
            - name: LLRAID_ENGINE_HOST
              value: {{ printf "%s/engine-host.sock" $v.runDir | quote }}
            {{- end }}
            - name: LLRAID_MAX_VOLUMES
              value: {{ $v.maxVolumes | quote }}
            - name: LLRAID_DEFAULT_CAPACITY
              value: {{ $v.defaultCapacity | quote }}
            # Node calls may only name paths below it (staging, publish targets, stats): the
            # kubelet dir is mounted at the same path in the container.
            - name: LLRAID_KUBELET_DIR
              value: {{ $v.kubeletDir | quote }}
            - name: LLRAID_SYNC_SPEED_MIN
              value: {{ $v.resync.minKiBps | quote }}
            - name: LLRAID_SYNC_SPEED_MAX
              value: {{ $v.resync.maxKiBps | quote }}
            - name: LLRAID_BITMAP_DAEMON_SLEEP
              value: {{ $v.bitmap.daemonSleepSeconds | quote }}
            - name: LLRAID_STATUS
              value: {{ ternary "on" "off" $v.status.enabled | quote }}
            - name: LLRAID_STATUS_MIN_INTERVAL
              value: {{ $v.status.minIntervalSeconds | quote }}
            # Replicated volumes: this node's Lease lives in the driver's namespace.
            - name: LLRAID_NAMESPACE
              valueFrom:
                fieldRef: {fieldPath: metadata.namespace}
            - name: LLRAID_NODE_LEASE_DURATION_SECONDS
              value: {{ include "llraid.nodeLeaseDuration" $root | quote }}
            - name: LLRAID_NODE_LEASE_RENEW_SECONDS
              value: {{ $v.nodeLease.renewSeconds | quote }}
            {{- if $v.metrics.enabled }}
            - name: LLRAID_METRICS_ADDRESS
              value: {{ printf ":%v" $v.metrics.port | quote }}
            {{- end }}
            {{- if $v.memberService.enabled }}
            {{- include "llraid.memberEnv" $root | nindent 12 }}
            {{- end }}
            {{- with include "llraid.snapshotMetadataPeerPort" $root }}
            # Changed-block tracking calls for this node's snapshots, forwarded by other nodes.
            - name: LLRAID_SNAPSHOT_METADATA_PEER_PORT
              value: {{ . | quote }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          securityContext:
            privileged: true
          ports:
            - name: healthz
              containerPort: {{ $v.sidecars.livenessProbe.port }}
              protocol: TCP
            {{- if $v.metrics.enabled }}
            - name: metrics
              containerPort: {{ $v.metrics.port }}
              protocol: TCP
            {{- end }}
            {{- if and $v.memberService.enabled (not $v.engineHost.enabled) }}
            {{- include "llraid.memberPort" $root | nindent 12 }}
            {{- end }}
            {{- with include "llraid.snapshotMetadataPeerPort" $root }}
            - name: snapshot-peer
              containerPort: {{ . }}
              protocol: TCP
            {{- end }}
          livenessProbe:
            httpGet:
              path: /healthz
              port: healthz
            initialDelaySeconds: 10
            periodSeconds: 10
            timeoutSeconds: 5
            failureThreshold: 5
          {{- with $v.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
            - name: kubelet-dir
              mountPath: {{ $v.kubeletDir }}
              mountPropagation: Bidirectional
            - name: dev
              mountPath: /dev
            - name: sys
              mountPath: /sys
            - name: run-dir
              mountPath: {{ $v.runDir }}
              mountPropagation: Bidirectional
            {{- range .disks }}
            - name: disk-{{ .name }}
              mountPath: /pool/{{ .name }}
            {{- end }}
            {{- if $v.memberService.enabled }}
            {{- include "llraid.memberMount" $root | nindent 12 }}
            {{- end }}
        - name: node-driver-registrar
          image: {{ $v.sidecars.nodeDriverRegistrar.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --v={{ $v.logVerbosity }}
            - --csi-address=/csi/csi.sock
            - --kubelet-registration-path={{ $pluginDir }}/csi.sock
            - --http-endpoint=:9809
          ports:
            - name: registrar
              containerPort: 9809
          livenessProbe:
            httpGet:
              path: /healthz
              port: registrar
            initialDelaySeconds: 5
            timeoutSeconds: 5
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $v.sidecars.nodeDriverRegistrar.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
            - name: registration-dir
              mountPath: /registration
        - name: csi-provisioner
          image: {{ $v.sidecars.provisioner.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --v={{ $v.logVerbosity }}
            - --csi-address=/csi/csi.sock
            - --node-deployment=true
            - --strict-topology=true
            - --immediate-topology=false
            - --extra-create-metadata=true
            - --enable-capacity=true
            - --capacity-ownerref-level=1
            - --capacity-poll-interval={{ $v.sidecars.provisioner.capacityPollInterval }}
            - --timeout={{ $v.sidecars.provisioner.timeout }}
            {{- range $v.sidecars.provisioner.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: NODE_NAME
              valueFrom:
                fieldRef: {fieldPath: spec.nodeName}
            - name: NAMESPACE
              valueFrom:
                fieldRef: {fieldPath: metadata.namespace}
            - name: POD_NAME
              valueFrom:
                fieldRef: {fieldPath: metadata.name}
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $v.sidecars.provisioner.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
        {{- if $v.sidecars.resizer.enabled }}
        - name: csi-resizer
          image: {{ $v.sidecars.resizer.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --v={{ $v.logVerbosity }}
            - --csi-address=/csi/csi.sock
            - --leader-election=false
            - --timeout={{ $v.sidecars.resizer.timeout }}
            {{- range $v.sidecars.resizer.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $v.sidecars.resizer.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
        {{- end }}
        {{- if include "llraid.snapshots" $root }}
        {{- $s := $v.snapshots.snapshotter }}
        # Snapshots of this node's volumes: with --node-deployment it takes only the
        # VolumeSnapshotContents the snapshot-controller labels with this node
        # (--enable-distributed-snapshotting), so no leader election.
        - name: csi-snapshotter
          image: {{ $s.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --v={{ $v.logVerbosity }}
            - --csi-address=/csi/csi.sock
            - --node-deployment=true
            - --leader-election=false
            - --extra-create-metadata=true
            - --timeout={{ required "snapshots.snapshotter.timeout: expected a duration (e.g. 120s), found none" $s.timeout }}
            {{- range $s.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          env:
            - name: NODE_NAME
              valueFrom:
                fieldRef: {fieldPath: spec.nodeName}
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $s.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
        {{- end }}
        {{- if include "llraid.snapshotMetadata" $root }}
        {{- $m := $v.snapshots.metadata }}
        # Changed-block tracking: serves SnapshotMetadata over gRPC with TLS, authenticates each
        # client's token (TokenReview, audience) and authorizes it (SubjectAccessReview) before
        # forwarding to the plugin's socket.
        - name: csi-snapshot-metadata
          image: {{ $m.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --v={{ $v.logVerbosity }}
            - --csi-address=/csi/csi.sock
            - --port={{ include "llraid.snapshotMetadataPort" $root }}
            - --tls-cert=/tls/tls.crt
            - --tls-key=/tls/tls.key
            - --audience={{ include "llraid.snapshotMetadataAudience" $root }}
            - --timeout={{ required "snapshots.metadata.timeout: expected a duration (e.g. 1m), found none" $m.timeout }}
            {{- range $m.extraArgs }}
            - {{ . | quote }}
            {{- end }}
          ports:
            - name: snapshot-meta
              containerPort: {{ include "llraid.snapshotMetadataPort" $root }}
              protocol: TCP
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $m.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
            - name: snapshot-metadata-tls
              mountPath: /tls
              readOnly: true
        {{- end }}
        - name: liveness-probe
          image: {{ $v.sidecars.livenessProbe.image }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args:
            - --csi-address=/csi/csi.sock
            - --health-port={{ $v.sidecars.livenessProbe.port }}
          securityContext:
            {{- include "llraid.sidecarSecurity" . | nindent 12 }}
          {{- with $v.sidecars.livenessProbe.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: plugin-dir
              mountPath: /csi
      volumes:
        - name: plugin-dir
          hostPath:
            path: {{ $pluginDir }}
            type: DirectoryOrCreate
        - name: registration-dir
          hostPath:
            path: {{ $v.kubeletDir }}/plugins_registry
            type: Directory
        - name: kubelet-dir
          hostPath:
            path: {{ $v.kubeletDir }}
            type: Directory
        - name: dev
          hostPath:
            path: /dev
            type: Directory
        - name: sys
          hostPath:
            path: /sys
            type: Directory
        - name: run-dir
          hostPath:
            path: {{ $v.runDir }}
            type: DirectoryOrCreate
        {{- range .disks }}
        - name: disk-{{ .name }}
          hostPath:
            path: {{ .path }}
            type: DirectoryOrCreate
        {{- end }}
        {{- if $v.memberService.enabled }}
        {{- include "llraid.memberVolume" $root | nindent 8 }}
        {{- end }}
        {{- if include "llraid.snapshotMetadata" $root }}
        - name: snapshot-metadata-tls
          secret:
            secretName: {{ default (printf "%s-tls" (include "llraid.snapshotMetadataName" $root)) $v.snapshots.metadata.tls.existingSecret }}
            defaultMode: 0400
        {{- end }}
{{- end -}}


{{/*
The engine host DaemonSet for one disk pool, on the same nodes as its node plugin. Called with
the same dict as llraid.daemonset. It mounts the pool's disks at the paths the plugin names them
by (/pool/<name>), the run directory (sockets, FUSE mount points) shared both ways, /dev and /sys.
*/}}
{{- define "llraid.engineDaemonset" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $name := printf "%s-engines%s" (include "llraid.fullname" $root) .suffix -}}
{{- $diskPaths := list -}}
{{- range .disks }}{{ $diskPaths = append $diskPaths (printf "/pool/%s" .name) }}{{ end -}}
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "llraid.labels" $root | nindent 4 }}
    app.kubernetes.io/component: engines
spec:
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ $root.Chart.Name }}
      app.kubernetes.io/instance: {{ $root.Release.Name }}
      app.kubernetes.io/component: engines
      llraid.io/pool: {{ default "default" (trimPrefix "-" .suffix) }}
  # Deleting an engine host takes its node's volumes down: it is replaced only when an operator
  # deletes its pod (after draining the node), never by a chart upgrade.
  updateStrategy:
    type: OnDelete
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ $root.Chart.Name }}
        app.kubernetes.io/instance: {{ $root.Release.Name }}
        app.kubernetes.io/component: engines
        llraid.io/pool: {{ default "default" (trimPrefix "-" .suffix) }}
    spec:
      priorityClassName: {{ $v.priorityClassName }}
      # Engines must outlive the plugin, not the node's shutdown: time to stop them cleanly.
      terminationGracePeriodSeconds: 120
      automountServiceAccountToken: false
      {{- if $v.memberService.enabled }}
      # The member service is reached at the node's IP: the pod shares the node's network.
      hostNetwork: true
      dnsPolicy: ClusterFirstWithHostNet
      {{- end }}
      {{- with $v.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- if or $v.nodeSelector .include }}
      nodeSelector:
        {{- with $v.nodeSelector }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
        {{- with .include }}
        {{ .key }}: {{ .value | quote }}
        {{- end }}
      {{- end }}
      {{- if .exclude }}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  {{- range .exclude }}
                  - key: {{ .key }}
                    operator: NotIn
                    values: [{{ .value | quote }}]
                  {{- end }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: engine-host
          image: {{ include "llraid.image" $root }}
          imagePullPolicy: {{ $v.image.pullPolicy }}
          args: [engine-host]
          env:
            - name: LLRAID_RUN_DIR
              value: {{ $v.runDir | quote }}
            - name: LLRAID_ATTACH
              value: {{ $v.attach | quote }}
            {{- if $v.memberService.enabled }}
            # The member service exports the member files of these (the plugin's LLRAID_DISKS).
            - name: LLRAID_DISKS
              value: {{ join "," $diskPaths | quote }}
            {{- include "llraid.memberEnv" $root | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          securityContext:
            # FUSE, loop and nbd devices, and PR_SET_IO_FLUSHER (CAP_SYS_RESOURCE) for engines.
            privileged: true
          {{- if $v.memberService.enabled }}
          ports:
            {{- include "llraid.memberPort" $root | nindent 12 }}
          {{- end }}
          {{- with $v.engineHost.resources }}
          resources:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          volumeMounts:
            - name: dev
              mountPath: /dev
            - name: sys
              mountPath: /sys
            - name: run-dir
              mountPath: {{ $v.runDir }}
              mountPropagation: Bidirectional
            {{- range .disks }}
            - name: disk-{{ .name }}
              mountPath: /pool/{{ .name }}
            {{- end }}
            {{- if $v.memberService.enabled }}
            {{- include "llraid.memberMount" $root | nindent 12 }}
            {{- end }}
      volumes:
        - name: dev
          hostPath:
            path: /dev
            type: Directory
        - name: sys
          hostPath:
            path: /sys
            type: Directory
        - name: run-dir
          hostPath:
            path: {{ $v.runDir }}
            type: DirectoryOrCreate
        {{- range .disks }}
        - name: disk-{{ .name }}
          hostPath:
            path: {{ .path }}
            type: DirectoryOrCreate
        {{- end }}
        {{- if $v.memberService.enabled }}
        {{- include "llraid.memberVolume" $root | nindent 8 }}
        {{- end }}
{{- end -}}
