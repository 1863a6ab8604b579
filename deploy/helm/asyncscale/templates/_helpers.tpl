{{/*
A map of labels or annotations with every value a string: `--set key=1` or `key=true` passes a
number or a boolean, which the API server refuses in metadata.
*/}}
{{- define "asyncscale.strings" -}}
{{- $out := dict -}}
{{- range $key, $value := . -}}
{{- $_ := set $out $key (toString $value) -}}
{{- end -}}
{{- toYaml $out -}}
{{- end -}}

{{/*
The chart's own labels, and the extra ones a value adds (a Prometheus selector's, the Grafana
sidecar's). The chart's own win: an extra label of the same name cannot duplicate the key.
*/}}
{{- define "asyncscale.labels" -}}
{{- $own := dict "app.kubernetes.io/name" "asyncscale" "app.kubernetes.io/instance" .root.Release.Name -}}
{{- include "asyncscale.strings" (merge $own (.extra | default dict)) -}}
{{- end -}}
