local promql = import '../lib/promql.libsonnet';

{
  prometheusRules+:: {
    local config = $._config,
    local matchers = [config.dingtalkExporterSelector],
    groups+: [
      {
        name: 'dingtalk-exporter.rules',
        rules: [
          {
            // Calls per second to DingTalk, per exporter.
            record: 'instance:dingtalk_api_requests:rate%s' % config.apiErrorRatioWindow,
            expr: promql.apiRequests(matchers, config.apiErrorRatioWindow),
          },
          {
            // Failed calls per second, per exporter, without the ignored errcodes.
            record: 'instance:dingtalk_api_errors:rate%s' % config.apiErrorRatioWindow,
            expr: promql.apiErrors(matchers, config.apiErrorRatioWindow, config.apiErrorRatioIgnoredErrcodes),
          },
          {
            // Share of calls that failed; the dashboard's "API error ratio" panel computes
            // the same from the counters (promql.apiErrorRatio).
            record: 'instance:dingtalk_api_error_ratio:rate%s' % config.apiErrorRatioWindow,
            expr: promql.ratioOf(
              'instance:dingtalk_api_errors:rate%s' % config.apiErrorRatioWindow,
              'instance:dingtalk_api_requests:rate%s' % config.apiErrorRatioWindow,
            ),
          },
        ],
      },
    ],
  },
}
