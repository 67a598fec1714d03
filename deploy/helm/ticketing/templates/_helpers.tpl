{{/*
Names are fixed per component (catalog, catalog-pods, ...), as in Online Boutique's chart: the
gateway's Envoy config (rendered by deploy/kubernetes.py from deploy/stack/envoy_config.py) reaches the
services by these names, so one release per namespace.
*/}}

{{- define "ticketing.chart" -}}
{{ .Chart.Name }}-{{ .Chart.Version | replace "+" "_" }}
{{- end }}

{{/* Labels of every object of one component. Call with (dict "root" $ "name" "catalog"). */}}
{{- define "ticketing.labels" -}}
helm.sh/chart: {{ include "ticketing.chart" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: ticketing
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
{{ include "ticketing.selectorLabels" . }}
{{- end }}

{{- define "ticketing.selectorLabels" -}}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{/* The Secret holding one component's certificate (tls.crt, tls.key, ca.crt). */}}
{{- define "ticketing.tlsSecret" -}}
{{ .root.Values.tls.secretPrefix }}{{ .name }}
{{- end }}

{{- define "ticketing.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The gRPC services of the mesh that this release runs: full service name -> component. */}}
{{- define "ticketing.peers" -}}
{{- $peers := list -}}
{{- range $component, $service := dict "catalog" "ticketing.catalog.v1.CatalogService" "search" "ticketing.search.v1.SearchService" "booking" "ticketing.booking.v1.BookingService" "queue" "ticketing.queue.v1.QueueService" -}}
{{- if (index $.Values $component).create -}}
{{- $peers = append $peers (printf "%s=%s:%d" $service $component (int $.Values.grpcPort)) -}}
{{- end -}}
{{- end -}}
{{- join "," $peers -}}
{{- end }}

{{/*
The database roles of migration 0008, by the values key of the service that uses each.
*/}}
{{- define "ticketing.dbRoleNames" -}}
catalog: ticketing_catalog
booking: ticketing_booking
cdcWorker: ticketing_cdc
{{- end }}

{{/* The basic-auth Secret of one CloudNativePG role (dict "root" $ "role" "catalog"). */}}
{{- define "ticketing.cnpgRoleSecret" -}}
{{- $pg := .root.Values.database.cloudNativePG -}}
{{- if $pg.roleSecrets.generate -}}
{{ $pg.name }}-{{ kebabcase .role }}
{{- else -}}
{{ required (printf "database.cloudNativePG.roleSecrets.%s is required when roleSecrets.generate is false (a kubernetes.io/basic-auth Secret with username and password)" .role) (get $pg.roleSecrets .role) }}
{{- end }}
{{- end }}

{{/* Where the CloudNativePG cluster's CA is mounted in the pods that connect to it. */}}
{{- define "ticketing.cnpgCaDir" -}}
/etc/ticketing/postgres
{{- end }}

{{/*
The search engine the services talk to, as YAML: url, engine, username (or usernameKey: read
from the password Secret), passwordSecret and caSecret ({name, key}; empty name: none). From
searchEngine, or from the cluster searchEngine.operator makes.
*/}}
{{- define "ticketing.searchEngine" -}}
{{- $s := .Values.searchEngine -}}
{{- $op := $s.operator -}}
{{- if and $op.enabled (eq $op.kind "Elasticsearch") -}}
url: {{ printf "https://%s-es-http:9200" $op.name }}
engine: elasticsearch
username: elastic
usernameKey: ""
passwordSecret: { name: {{ printf "%s-es-elastic-user" $op.name }}, key: elastic }
caSecret: { name: {{ printf "%s-es-http-certs-public" $op.name }}, key: ca.crt }
{{- else if $op.enabled -}}
url: {{ printf "https://%s:9200" $op.name }}
engine: opensearch
username: ""
usernameKey: username
passwordSecret: { name: {{ include "ticketing.opensearchCredentials" . }}, key: password }
caSecret: { name: {{ printf "%s-http-cert" $op.name }}, key: ca.crt }
{{- else -}}
url: {{ required "searchEngine.url is required" $s.url | quote }}
engine: {{ $s.engine | default "auto" }}
username: {{ $s.username | default "" | quote }}
usernameKey: ""
passwordSecret: { name: {{ $s.passwordSecret.name | default "" | quote }}, key: {{ $s.passwordSecret.key | default "password" | quote }} }
caSecret: { name: {{ $s.caSecret.name | default "" | quote }}, key: {{ $s.caSecret.key | default "ca.crt" | quote }} }
{{- end }}
{{- end }}

{{- define "ticketing.opensearchCredentials" -}}
{{ .Values.searchEngine.operator.credentialsSecret | default (printf "%s-admin-credentials" .Values.searchEngine.operator.name) }}
{{- end }}

{{/* Where the search engine's password and CA files are mounted. */}}
{{- define "ticketing.searchAuthDir" -}}
/etc/ticketing/search-auth
{{- end }}
{{- define "ticketing.searchCaDir" -}}
/etc/ticketing/search-ca
{{- end }}

{{/* The Redis the services reach: url, sentinels (a list) and masterName, as YAML. */}}
{{- define "ticketing.redis" -}}
{{- $r := .Values.redis -}}
{{- if $r.operator.enabled -}}
url: {{ printf "redis://%s:6379/0" $r.operator.name }}
sentinels: [{{ printf "%s-sentinel:26379" $r.operator.name }}]
masterName: {{ $r.masterName | quote }}
{{- else -}}
url: {{ required "redis.url is required" $r.url | quote }}
sentinels: {{ $r.sentinels | default list | toJson }}
masterName: {{ $r.masterName | quote }}
{{- end }}
{{- end }}

{{/*
Secret-backed variables: what a service may see, by the name it is known under in values.
Only references (secretKeyRef) are rendered, never a value.
*/}}
{{- define "ticketing.secretEnv" -}}
{{- $root := .root -}}
{{- $dbRole := .dbRole | default "" -}}
{{- $pg := $root.Values.database.cloudNativePG -}}
{{- range .secrets }}
{{- if and (eq . "database") $pg.enabled }}
{{- /* The operator's cluster: the role's name in the URL, its password from its Secret. */}}
{{- $user := "postgres" }}
{{- $secret := printf "%s-superuser" $pg.name }}
{{- if $dbRole }}
{{- $user = get (include "ticketing.dbRoleNames" $root | fromYaml) $dbRole }}
{{- $secret = include "ticketing.cnpgRoleSecret" (dict "root" $root "role" $dbRole) }}
{{- end }}
- name: TICKETING_DATABASE_URL
  value: {{ printf "postgresql://%s@%s-rw:5432/%s?sslmode=verify-full&sslrootcert=%s/ca.crt" $user $pg.name $pg.database (include "ticketing.cnpgCaDir" $root) | quote }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: password
{{- else if eq . "searchEngine" }}
{{- $search := include "ticketing.searchEngine" $root | fromYaml }}
- name: TICKETING_SEARCH_ENGINE
  value: {{ $search.engine | quote }}
{{- if $search.username }}
- name: TICKETING_SEARCH_USERNAME
  value: {{ $search.username | quote }}
{{- else if and $search.usernameKey $search.passwordSecret.name }}
- name: TICKETING_SEARCH_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $search.passwordSecret.name }}
      key: {{ $search.usernameKey }}
{{- end }}
{{- if $search.passwordSecret.name }}
- name: TICKETING_SEARCH_PASSWORD_FILE
  value: {{ printf "%s/password" (include "ticketing.searchAuthDir" $root) | quote }}
{{- end }}
{{- if $search.caSecret.name }}
- name: TICKETING_SEARCH_CA_FILE
  value: {{ printf "%s/ca.crt" (include "ticketing.searchCaDir" $root) | quote }}
{{- end }}
{{- else if eq . "database" }}
{{- if $dbRole }}
{{- $db := get ($root.Values.database.roles | default dict) $dbRole | default dict }}
- name: TICKETING_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "database.roles.%s.secretName is required" $dbRole) $db.secretName }}
      key: {{ required (printf "database.roles.%s.secretKey is required" $dbRole) $db.secretKey }}
{{- else }}
- name: TICKETING_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.secretName is required" $root.Values.database.secretName }}
      key: {{ required "database.secretKey is required" $root.Values.database.secretKey }}
{{- end }}
{{- else }}
{{- $envName := get (dict "admissionKey" "TICKETING_ADMISSION_KEY" "stripeApiKey" "TICKETING_STRIPE_API_KEY" "stripeWebhookSecret" "TICKETING_STRIPE_WEBHOOK_SECRET") . }}
- name: {{ $envName }}
  valueFrom:
    secretKeyRef:
      name: {{ required "secret.name is required" $root.Values.secret.name }}
      key: {{ required (printf "secret.keys.%s is required" .) (get $root.Values.secret.keys .) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
One Python service: Deployment, Service, headless Service (for the gateway), and a
PodDisruptionBudget when it runs more than one pod. Call with
(dict "root" $ "name" "catalog" "package" "catalog_svc" "values" .Values.catalog
      "secrets" (list "database") "singleWriter" false); "key" names the values key when it
differs from the component's name (cdcWorker).
*/}}
{{- define "ticketing.service" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $ctx := dict "root" $root "name" .name -}}
{{- $key := .key | default .name -}}
{{- $replicas := int $v.replicas -}}
{{- if lt $replicas 0 }}{{ fail (printf "%s.replicas must not be negative" $key) }}{{ end -}}
{{- if and .singleWriter (gt $replicas 2) }}{{ fail (printf "%s.replicas must be 0, 1 or 2: one replication slot, one active consumer and at most one standby" $key) }}{{ end -}}
{{- $autoscaling := and (not .singleWriter) $v.autoscaling $v.autoscaling.enabled -}}
{{- if $autoscaling -}}
{{- if or (lt (int $v.autoscaling.minReplicas) 1) (lt (int $v.autoscaling.maxReplicas) (int $v.autoscaling.minReplicas)) }}{{ fail (printf "%s.autoscaling needs 1 <= minReplicas <= maxReplicas" $key) }}{{ end -}}
{{- $replicas = int $v.autoscaling.minReplicas -}}
{{- end -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    {{- include "ticketing.labels" $ctx | nindent 4 }}
spec:
  {{- if not $autoscaling }}
  replicas: {{ $replicas }}
  {{- end }}
  {{- if .singleWriter }}
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" $ctx | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "ticketing.labels" $ctx | nindent 8 }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ $root.Values.metricsPort | quote }}
        prometheus.io/path: /metrics
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    spec:
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      automountServiceAccountToken: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      # SIGTERM: health NOT_SERVING, drain in-flight calls (TICKETING_SHUTDOWN_GRACE_SECONDS), exit.
      terminationGracePeriodSeconds: 30
      containers:
      - name: {{ .name }}
        image: {{ include "ticketing.image" $root }}
        imagePullPolicy: {{ $root.Values.image.pullPolicy }}
        command: ["python", "-m", {{ .package | quote }}]
        ports:
        - name: grpc
          containerPort: {{ $root.Values.grpcPort }}
          protocol: TCP
        - name: metrics
          containerPort: {{ $root.Values.metricsPort }}
          protocol: TCP
        - name: health
          containerPort: {{ $root.Values.tls.healthPort }}
          protocol: TCP
        envFrom:
        - configMapRef:
            name: ticketing-config
        env:
        - name: TICKETING_LISTEN
          value: "0.0.0.0:{{ $root.Values.grpcPort }}"
        - name: TICKETING_METRICS_LISTEN
          value: "0.0.0.0:{{ $root.Values.metricsPort }}"
        # The processes of one pod (TICKETING_WORKERS) sum their figures here.
        - name: PROMETHEUS_MULTIPROC_DIR
          value: /var/run/ticketing/metrics
        # Mutual TLS: the gRPC port requires a client certificate of the mesh's CA; only the
        # gateway's certificate may name the caller. Probes use the plaintext health port.
        - name: TICKETING_TLS_CERT
          value: /etc/ticketing/tls/tls.crt
        - name: TICKETING_TLS_KEY
          value: /etc/ticketing/tls/tls.key
        - name: TICKETING_TLS_CA
          value: /etc/ticketing/tls/ca.crt
        - name: TICKETING_TLS_GATEWAY_IDENTITY
          value: {{ printf "spiffe://%s/gateway" $root.Values.tls.trustDomain | quote }}
        - name: TICKETING_HEALTH_LISTEN
          value: "0.0.0.0:{{ $root.Values.tls.healthPort }}"
        {{- include "ticketing.secretEnv" (dict "root" $root "secrets" .secrets "dbRole" $key) | nindent 8 }}
        {{- range $name, $value := $v.env }}
        - name: {{ $name }}
          value: {{ $value | toString | quote }}
        {{- end }}
        readinessProbe:
          grpc:
            port: {{ $root.Values.tls.healthPort }}
          periodSeconds: 5
          failureThreshold: 2
        livenessProbe:
          {{- if .singleWriter }}
          # NOT_SERVING while the index is rebuilt or the engine is away: not a reason to restart.
          tcpSocket:
            port: {{ $root.Values.tls.healthPort }}
          {{- else }}
          grpc:
            port: {{ $root.Values.tls.healthPort }}
          {{- end }}
          initialDelaySeconds: 10
          periodSeconds: 10
          failureThreshold: 3
        resources:
          {{- toYaml $v.resources | nindent 10 }}
        securityContext:
          {{- toYaml $root.Values.securityContext | nindent 10 }}
        volumeMounts:
        - name: metrics
          mountPath: /var/run/ticketing/metrics
        - name: tmp
          mountPath: /tmp
        - name: tls
          mountPath: /etc/ticketing/tls
          readOnly: true
        {{- include "ticketing.dataStoreMounts" (dict "root" $root "secrets" .secrets) | nindent 8 }}
      volumes:
      - name: tls
        secret:
          secretName: {{ include "ticketing.tlsSecret" $ctx }}
          defaultMode: 0440
      {{- include "ticketing.dataStoreVolumes" (dict "root" $root "secrets" .secrets) | nindent 6 }}
      - name: metrics
        emptyDir:
          medium: Memory
          sizeLimit: 64Mi
      - name: tmp
        emptyDir:
          sizeLimit: 64Mi
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}
  labels:
    {{- include "ticketing.labels" $ctx | nindent 4 }}
spec:
  type: ClusterIP
  selector:
    {{- include "ticketing.selectorLabels" $ctx | nindent 4 }}
  ports:
  - name: grpc
    port: {{ $root.Values.grpcPort }}
    targetPort: grpc
    protocol: TCP
    # gRPC over mutual TLS (ticketing_common/tls.py).
  - name: metrics
    port: {{ $root.Values.metricsPort }}
    targetPort: metrics
    protocol: TCP
{{- if not .singleWriter }}
---
# One DNS record per ready pod: the gateway balances and health-checks every pod itself.
apiVersion: v1
kind: Service
metadata:
  name: {{ .name }}-pods
  labels:
    {{- include "ticketing.labels" $ctx | nindent 4 }}
spec:
  clusterIP: None
  selector:
    {{- include "ticketing.selectorLabels" $ctx | nindent 4 }}
  ports:
  - name: grpc
    port: {{ $root.Values.grpcPort }}
    targetPort: grpc
    protocol: TCP
    # gRPC over mutual TLS (ticketing_common/tls.py).
{{- end }}
{{- if $autoscaling }}
---
# Scales on CPU between minReplicas and maxReplicas; the Deployment leaves replicas to it.
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ .name }}
  labels:
    {{- include "ticketing.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ .name }}
  minReplicas: {{ int $v.autoscaling.minReplicas }}
  maxReplicas: {{ int $v.autoscaling.maxReplicas }}
  metrics:
  - type: Resource
    resource:
      name: cpu
      target:
        type: Utilization
        averageUtilization: {{ int $v.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if gt $replicas 1 }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "ticketing.labels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ (get ($v.pdb | default dict) "maxUnavailable") | default 1 }}
  selector:
    matchLabels:
      {{- include "ticketing.selectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- end }}

{{/*
The files a pod needs to reach the data stores the operators make or the values name: the
CloudNativePG cluster's CA (only its ca.crt), the search engine's password and CA. Call with
(dict "root" $ "secrets" (list "database" "searchEngine" ...)).
*/}}
{{- define "ticketing.dataStoreMounts" -}}
{{- $root := .root -}}
{{- if and (has "database" .secrets) $root.Values.database.cloudNativePG.enabled }}
- name: postgres-ca
  mountPath: {{ include "ticketing.cnpgCaDir" $root }}
  readOnly: true
{{- end }}
{{- if has "searchEngine" .secrets }}
{{- $search := include "ticketing.searchEngine" $root | fromYaml }}
{{- if $search.passwordSecret.name }}
- name: search-auth
  mountPath: {{ include "ticketing.searchAuthDir" $root }}
  readOnly: true
{{- end }}
{{- if $search.caSecret.name }}
- name: search-ca
  mountPath: {{ include "ticketing.searchCaDir" $root }}
  readOnly: true
{{- end }}
{{- end }}
{{- end }}

{{- define "ticketing.dataStoreVolumes" -}}
{{- $root := .root -}}
{{- if and (has "database" .secrets) $root.Values.database.cloudNativePG.enabled }}
- name: postgres-ca
  secret:
    secretName: {{ printf "%s-ca" $root.Values.database.cloudNativePG.name }}
    items:
    - key: ca.crt
      path: ca.crt
    defaultMode: 0440
{{- end }}
{{- if has "searchEngine" .secrets }}
{{- $search := include "ticketing.searchEngine" $root | fromYaml }}
{{- if $search.passwordSecret.name }}
- name: search-auth
  secret:
    secretName: {{ $search.passwordSecret.name }}
    items:
    - key: {{ $search.passwordSecret.key }}
      path: password
    defaultMode: 0440
{{- end }}
{{- if $search.caSecret.name }}
- name: search-ca
  secret:
    secretName: {{ $search.caSecret.name }}
    items:
    - key: {{ $search.caSecret.key }}
      path: ca.crt
    defaultMode: 0440
{{- end }}
{{- end }}
{{- end }}
