// The questions the alerts ask and the dashboard shows, written once. `matchers` are added to
// every selector: the config's selector for the rules, `job=~"$job", instance=~"$instance"`
// for the dashboard.
local promql = import 'promql.libsonnet';

function(config) {
  local replicas = promql.labels(config.replicaLabels),
  local infoLabels = promql.labels(config.taskInfoLabels),

  // A series every replica serves alike (from the shared store), once per task.
  task(metric, matchers, extra=[])::
    'max without (%s) (%s)' % [replicas, promql.selector(metric, matchers + extra)],

  // Copies the task's app and name onto a per-task expression.
  withTaskInfo(expr, matchers)::
    '%s\n* ignoring (%s) group_left (%s)\n  %s' % [expr, infoLabels, infoLabels, self.task('dingtalk_task_info', matchers)],

  // Seconds of DingTalk answers (last poll minus `since`) over which an unfinished task of
  // `status` kept the same progress, with the task's app and name.
  local unchangedFor(since, status, matchers) =
    self.withTaskInfo(
      std.join('\n', [
        '(',
        '  (',
        '    %s',
        '    - %s',
        '  )',
        '  and ignoring (status)',
        '    %s == 1',
        ')',
      ]) % [
        self.task('dingtalk_task_last_poll_timestamp_seconds', matchers),
        self.task(since, matchers),
        self.task('dingtalk_task_status', matchers, ['status="%s"' % status]),
      ],
      matchers,
    ),
  stalledSeconds(matchers)::
    unchangedFor('dingtalk_task_last_progress_change_timestamp_seconds', 'in_progress', matchers),
  notStartedSeconds(matchers)::
    unchangedFor('dingtalk_task_created_timestamp_seconds', 'not_started', matchers),

  // The calls of the month: counted in the store, so every replica reports the same number.
  monthCalls(matchers):: self.task('dingtalk_api_month_calls', matchers),
  monthCallBudget(matchers):: self.task('dingtalk_api_month_call_budget', matchers),
  // The calls other applications sent through the tracking proxy this month: the rest of
  // the organisation's quota use.
  proxyMonthCalls(matchers):: self.task('dingtalk_proxy_month_calls', matchers),
  // Computed per process before the replicas are aggregated away, so that an exporter
  // without a budget never divides by another one's.
  monthBudgetUsedRatio(matchers)::
    'max without (%s) (%s / %s)' % [
      replicas,
      promql.selector('dingtalk_api_month_calls', matchers),
      promql.selector('dingtalk_api_month_call_budget', matchers),
    ],
  // The month's calls where they reached the budget.
  monthBudgetSpentCalls(matchers)::
    'max without (%s) (%s >= %s)' % [
      replicas,
      promql.selector('dingtalk_api_month_calls', matchers),
      promql.selector('dingtalk_api_month_call_budget', matchers),
    ],

  apiErrorRatio(matchers, window)::
    promql.apiErrorRatio(matchers, window, config.apiErrorRatioIgnoredErrcodes),
}
