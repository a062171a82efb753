// The generated files, by path from the top of the repository:
//   jsonnet -J . -S -m . mixin/generate.jsonnet   (what `make mixin` runs)
// `--tla-code config='{...}'` overrides settings of config.libsonnet for one run (the tests
// use it; to keep your own settings, see "Customising the mixin" in the README).
local manifest = import 'lib/manifest.libsonnet';

function(config={})
local mixin = (import 'mixin.libsonnet') + { _config+:: config };

local header = |||
  # Generated from mixin/ by `make mixin`; change the jsonnet source (thresholds in
  # mixin/config.libsonnet) and regenerate instead of editing this file.
|||;

{
  'dashboards/dingtalk-exporter.json': manifest.json(mixin.grafanaDashboards['dingtalk-exporter.json']),
  'alerts/dingtalk-exporter.rules.yml':
    header + manifest.yaml({ groups: mixin.prometheusRules.groups + mixin.prometheusAlerts.groups }),
  'alerts/grafana/dingtalk-exporter.yaml':
    header
    + '# Grafana alert-rule provisioning: set DINGTALK_EXPORTER_PROMETHEUS_UID to the uid of\n'
    + '# your Prometheus data source in the environment of grafana-server.\n'
    + manifest.yaml(mixin.grafanaAlerts),
}
