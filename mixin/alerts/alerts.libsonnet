// The alerts, each written once as a query, a comparison and a threshold: the Prometheus
// rule is `query comparison threshold`, the Grafana rule the same query reduced to its last
// value and compared by a threshold expression, so both fire for the same series.
local manifest = import '../lib/manifest.libsonnet';
local promql = import '../lib/promql.libsonnet';

{
  // Each alert: name, severity, query (per series; `grafanaQuery` where the Prometheus rule
  // reads a recorded series Grafana cannot rely on), comparison ('>' or '<', the two Grafana
  // thresholds share with PromQL), threshold, for, summary and a description that refers to
  // the compared value as $value.
  dingtalkAlertSpecs:: [
    {
      name: 'DingTalkDeliveryStalled',
      severity: 'critical',
      query: $.dingtalkQueries.stalledSeconds(self.matchers),
      comparison: '>',
      threshold: $._config.deliveryStalledAfterSeconds,
      'for': $._config.deliveryStalledFor,
      summary: 'A DingTalk work notification has stopped making progress.',
      description: |||
        Task {{ if $labels.name }}"{{ $labels.name }}" {{ end }}(agent_id {{ $labels.agent_id }},
        task_id {{ $labels.task_id }}) of job {{ $labels.job }} is in progress, but its progress
        has not changed for {{ $value | humanizeDuration }} of answers from DingTalk.
      |||,
    },
    {
      name: 'DingTalkDeliveryNotStarted',
      severity: 'warning',
      query: $.dingtalkQueries.notStartedSeconds(self.matchers),
      comparison: '>',
      threshold: $._config.deliveryNotStartedAfterSeconds,
      'for': $._config.deliveryNotStartedFor,
      summary: 'A DingTalk work notification has not started sending.',
      description: |||
        Task {{ if $labels.name }}"{{ $labels.name }}" {{ end }}(agent_id {{ $labels.agent_id }},
        task_id {{ $labels.task_id }}) of job {{ $labels.job }} has not started: DingTalk still
        said so {{ $value | humanizeDuration }} after the task was registered.
      |||,
    },
    {
      name: 'DingTalkTaskInvalid',
      severity: 'info',
      // The invalid tasks themselves, valued 40035.
      query: $.dingtalkQueries.withTaskInfo(
        '(%s == 40035)' % $.dingtalkQueries.task('dingtalk_task_last_errcode', self.matchers),
        self.matchers,
      ),
      comparison: '>',
      threshold: 0,
      'for': $._config.taskInvalidFor,
      summary: 'DingTalk does not know a tracked task.',
      description: |||
        DingTalk answered 40035 (invalid parameter) for task
        {{ if $labels.name }}"{{ $labels.name }}" {{ end }}(agent_id {{ $labels.agent_id }},
        task_id {{ $labels.task_id }}) of job {{ $labels.job }}: no such task for this agent.
        The exporter stopped polling it.
      |||,
    },
    {
      name: 'DingTalkApiErrorRatioHigh',
      severity: 'warning',
      query: 'instance:dingtalk_api_error_ratio:rate%s' % $._config.apiErrorRatioWindow,
      grafanaQuery: $.dingtalkQueries.apiErrorRatio(self.matchers, $._config.apiErrorRatioWindow),
      comparison: '>',
      threshold: $._config.apiErrorRatioThreshold,
      'for': $._config.apiErrorRatioFor,
      summary: 'Many DingTalk API calls fail.',
      description: |||
        {{ $value | humanizePercentage }} of the DingTalk API calls made by {{ $labels.instance }}
        failed over the last %s (answers about invalid tasks, errcode %s, not counted).
      ||| % [manifest.durationText($._config.apiErrorRatioWindow), std.join(', ', $._config.apiErrorRatioIgnoredErrcodes)],
    },
    {
      name: 'DingTalkTokenRefreshFailing',
      severity: 'warning',
      // The failure counter of an app is created by its first failure, so a single failure
      // is never seen by increase(); a refresh failing again and again is.
      query: 'increase(%s[%s])' % [
        promql.selector('dingtalk_token_refresh_failures_total', self.matchers),
        $._config.tokenRefreshFailingWindow,
      ],
      comparison: '>',
      threshold: 0,
      'for': $._config.tokenRefreshFailingFor,
      summary: 'The exporter cannot get a DingTalk access token.',
      description: |||
        Access token fetches (gettoken) for app {{ $labels.app }} on {{ $labels.instance }} have
        been failing for at least %s ({{ printf "%%.0f" $value }} failures in the last %s).
      ||| % [manifest.durationText($._config.tokenRefreshFailingFor), manifest.durationText($._config.tokenRefreshFailingWindow)],
    },
    {
      name: 'DingTalkMonthlyBudgetNearlyUsed',
      severity: 'warning',
      query: $.dingtalkQueries.monthBudgetUsedRatio(self.matchers),
      comparison: '>',
      threshold: $._config.monthlyBudgetNearlyUsedRatio,
      'for': $._config.monthlyBudgetNearlyUsedFor,
      summary: 'The exporter has used most of its monthly DingTalk call budget.',
      description: |||
        The exporters of job {{ $labels.job }} have made {{ $value | humanizePercentage }} of the
        metered calls their --dingtalk.monthly-call-budget allows this month; they poll less and
        less often as the rest runs out.
      |||,
    },
    {
      name: 'DingTalkMonthlyBudgetSpent',
      severity: 'critical',
      query: $.dingtalkQueries.monthBudgetSpentCalls(self.matchers),
      comparison: '>',
      threshold: 0,
      'for': $._config.monthlyBudgetSpentFor,
      summary: 'The exporter has spent its monthly DingTalk call budget and stopped polling.',
      description: |||
        The exporters of job {{ $labels.job }} have made {{ $value }} metered calls this month, all
        that their --dingtalk.monthly-call-budget allows. They poll no task until the month ends
        (Asia/Shanghai), so progress, stalls and completions go unseen until then.
      |||,
    },
    {
      name: 'DingTalkQuotaExhausted',
      severity: 'critical',
      // Two signals: a task whose last poll was refused with 90020 (it stays so until a poll
      // succeeds again, because the exporter makes no metered call until the next month), or
      // a 90020 on any call within the lookback (also calls that are not task polls). The
      // error series of 90020 is created by the first one, which increase() cannot see: a
      // series that did not exist at the start of the lookback counts as fresh too. The
      // quota is the organisation's, so replicas are summed away.
      local errors = promql.selector('dingtalk_api_errors_total', self.matchers + ['errcode="90020"']),
      local without = 'sum without (%s, api, errcode)' % promql.labels($._config.replicaLabels),
      query: std.join('\n', [
        'count without (agent_id, task_id) (%s == 90020)' % $.dingtalkQueries.task('dingtalk_task_last_errcode', self.matchers),
        'or',
        '%s (increase(%s[%s])) > 0' % [without, errors, $._config.quotaExhaustedLookback],
        'or',
        '(',
        '  %s (%s) > 0' % [without, errors],
        '  unless',
        '  %s (%s offset %s)' % [without, errors, $._config.quotaExhaustedLookback],
        ')',
      ]),
      comparison: '>',
      threshold: 0,
      'for': $._config.quotaExhaustedFor,
      summary: "DingTalk's monthly API quota of the organisation is used up.",
      description: |||
        DingTalk answered 90020 (monthly API call quota used up) to the exporters of job
        {{ $labels.job }}. Every app of the organisation is refused metered calls, including
        sending notifications; the exporter makes no metered call until the next calendar month.
      |||,
    },
    {
      name: 'DingTalkPollingBehind',
      severity: 'warning',
      query: promql.selector('dingtalk_poll_lag_seconds', self.matchers),
      comparison: '>',
      threshold: $._config.pollingBehindSeconds,
      'for': $._config.pollingBehindFor,
      summary: 'The exporter polls DingTalk later than planned.',
      description: |||
        The most overdue task poll of {{ $labels.instance }} is {{ $value | humanizeDuration }}
        behind its schedule, so progress and stalls are seen late.
      |||,
    },
    {
      name: 'DingTalkUnreachable',
      severity: 'critical',
      query: promql.selector('dingtalk_up', self.matchers),
      comparison: '<',
      threshold: 1,
      'for': $._config.unreachableFor,
      summary: 'The exporter cannot reach DingTalk or is not authenticated.',
      description: |||
        The last DingTalk calls of app {{ $labels.app }} on {{ $labels.instance }} did not reach
        DingTalk or were not authenticated for at least %s; task progress is not updated.
      ||| % manifest.durationText($._config.unreachableFor),
    },
    {
      name: 'DingTalkExporterDown',
      severity: 'critical',
      // A target is a dingtalk-exporter if it exported build_info lately, whatever its job.
      query: std.join('\n', [
        promql.selector('up', self.matchers),
        'and on (job, instance)',
        '  max_over_time(%s[%s])' % [promql.selector('dingtalk_exporter_build_info', self.matchers), $._config.exporterKnownWithin],
      ]),
      comparison: '<',
      threshold: 1,
      'for': $._config.exporterDownFor,
      summary: 'Prometheus cannot scrape dingtalk-exporter.',
      description: |||
        Prometheus has failed to scrape {{ $labels.instance }} (job {{ $labels.job }}) for
        %s: no delivery is being watched through it.
      ||| % manifest.durationText($._config.exporterDownFor),
    },
    {
      name: 'DingTalkExporterAbsent',
      severity: 'critical',
      // No exporter reports at all, and none is known to be down (DingTalkExporterDown covers
      // that case with the target's labels): removed from service discovery, a broken scrape
      // config, never deployed, or down for longer than exporterKnownWithin.
      query: std.join('\n', [
        'absent(%s)' % promql.selector('dingtalk_exporter_build_info', self.matchers),
        'unless on ()',
        '(',
        '  %s == 0' % promql.selector('up', self.matchers),
        '  and on (job, instance)',
        '    max_over_time(%s[%s])' % [promql.selector('dingtalk_exporter_build_info', self.matchers), $._config.exporterKnownWithin],
        ')',
      ]),
      comparison: '>',
      threshold: 0,
      'for': $._config.exporterAbsentFor,
      summary: 'No dingtalk-exporter is being scraped.',
      description: |||
        No target scraped by this Prometheus has exported dingtalk_exporter_build_info for
        %s: DingTalk deliveries are not being watched.
      ||| % manifest.durationText($._config.exporterAbsentFor),
    },
    {
      name: 'DingTalkConfigReloadFailed',
      severity: 'warning',
      query: promql.selector('dingtalk_config_last_reload_successful', self.matchers),
      comparison: '<',
      threshold: 1,
      'for': $._config.configReloadFailedFor,
      summary: 'dingtalk-exporter could not reload its configuration.',
      description: |||
        The last configuration reload of {{ $labels.instance }} failed; it keeps running with
        the configuration it had before.
      |||,
    },
  ],

  // `query comparison threshold`, with a query of several lines in parentheses (a
  // single-line query is one term: a selector, a function or an aggregation).
  dingtalkCompared(spec, query)::
    local threshold = manifest.number(spec.threshold);
    local lines = std.split(query, '\n');
    if std.length(lines) > 1 then
      '(\n%s\n) %s %s' % [std.join('\n', ['  ' + line for line in lines]), spec.comparison, threshold]
    else '%s %s %s' % [query, spec.comparison, threshold],

  local descriptionText(text) = std.strReplace(std.stripChars(text, '\n'), '\n', ' '),

  dingtalkAlertAnnotations(spec):: {
    summary: spec.summary,
    description: descriptionText(spec.description),
    runbook_url: '%s#%s' % [$._config.runbookBaseUrl, std.asciiLower(spec.name)],
  },

  // An alert's expression with other matchers, for the dashboard's panels that count what
  // an alert reports.
  dingtalkAlertExpr(name, matchers)::
    local spec = [candidate for candidate in $.dingtalkAlertSpecs if candidate.name == name][0];
    $.dingtalkCompared(spec { matchers:: matchers }, (spec { matchers:: matchers }).query),

  // The specs with their selectors filled in.
  dingtalkAlerts:: [
    spec { matchers:: [$._config.dingtalkExporterSelector] }
    for spec in $.dingtalkAlertSpecs
  ],

  prometheusAlerts+:: {
    groups+: [
      {
        name: 'dingtalk-exporter',
        rules: [
          {
            alert: spec.name,
            expr: $.dingtalkCompared(spec, spec.query),
            labels: { severity: spec.severity },
            annotations: $.dingtalkAlertAnnotations(spec),
          } + (if spec['for'] == '0s' then {} else { 'for': spec['for'] })
          for spec in $.dingtalkAlerts
        ],
      },
    ],
  },
}
