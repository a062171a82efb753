// dingtalk-exporter's monitoring mixin: the Grafana dashboard, the Prometheus recording and
// alerting rules, and the same alerts as Grafana-managed rules, from one `_config`
// (config.libsonnet). `make mixin` at the top of the repository writes the generated files.
(import 'config.libsonnet') +
(import 'rules/rules.libsonnet') +
(import 'alerts/alerts.libsonnet') +
(import 'alerts/grafana.libsonnet') +
(import 'dashboards/dashboards.libsonnet') +
{
  dingtalkQueries:: (import 'lib/queries.libsonnet')($._config),
}
