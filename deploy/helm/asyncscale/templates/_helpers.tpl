{{/*
The chart's own labels, and the extra ones a value adds (a Prometheus selector's, the Grafana
sidecar's). The chart's own win: an extra label of the same name cannot duplicate the key.
*/}}
{{- define "asyncscale.labels" -}}
{{- $own := dict "app.kubernetes.io/name" "asyncscale" "app.kubernetes.io/instance" .root.Release.Name -}}
{{- toYaml (merge $own (.extra | default dict)) -}}
{{- end -}}
