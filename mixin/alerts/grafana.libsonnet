// The alerts as Grafana-managed alert rules, in Grafana's file-provisioning format
// (apiVersion 1). Each rule queries the Prometheus data source (A), keeps the last value of
// each series (B) and compares it with the threshold (C), the comparison the Prometheus rule
// of the same name makes. Labels stay static, because Grafana expands environment variables
// in them; the templates are in the annotations.
{
  local config = $._config,
  local expressionDatasource = { type: '__expr__', uid: '__expr__' },

  // Grafana's threshold evaluators for the two comparisons the alerts use.
  local evaluators = { '>': 'gt', '<': 'lt' },

  // Grafana's template for the compared value.
  local grafanaDescription(text) = std.strReplace(text, '$value', '$values.B.Value'),

  grafanaAlerts+:: {
    apiVersion: 1,
    groups+: [
      {
        orgId: config.grafanaAlertOrgId,
        name: config.grafanaAlertGroup,
        folder: config.grafanaAlertFolder,
        interval: config.grafanaAlertInterval,
        rules: [
          {
            local annotations = $.dingtalkAlertAnnotations(spec),
            uid: std.asciiLower(spec.name),
            title: spec.name,
            condition: 'C',
            data: [
              {
                refId: 'A',
                relativeTimeRange: { from: config.grafanaQueryRangeSeconds, to: 0 },
                datasourceUid: config.grafanaDatasourceUid,
                model: {
                  refId: 'A',
                  datasource: { type: 'prometheus', uid: config.grafanaDatasourceUid },
                  expr: if std.objectHasAll(spec, 'grafanaQuery') then spec.grafanaQuery else spec.query,
                  instant: true,
                  range: false,
                  intervalMs: 1000,
                  maxDataPoints: 43200,
                },
              },
              {
                refId: 'B',
                relativeTimeRange: { from: 0, to: 0 },
                datasourceUid: '__expr__',
                model: {
                  refId: 'B',
                  datasource: expressionDatasource,
                  type: 'reduce',
                  expression: 'A',
                  reducer: 'last',
                  settings: { mode: 'strict' },
                },
              },
              {
                refId: 'C',
                relativeTimeRange: { from: 0, to: 0 },
                datasourceUid: '__expr__',
                model: {
                  refId: 'C',
                  datasource: expressionDatasource,
                  type: 'threshold',
                  expression: 'B',
                  conditions: [
                    { evaluator: { type: evaluators[spec.comparison], params: [spec.threshold] } },
                  ],
                },
              },
            ],
            // An empty answer means no series breaks the rule, as for Prometheus.
            noDataState: 'OK',
            execErrState: 'Error',
            'for': spec['for'],
            annotations: annotations { description: grafanaDescription(annotations.description) },
            labels: { severity: spec.severity },
            isPaused: false,
          }
          for spec in $.dingtalkAlerts
        ],
      },
    ],
  },
}
