// Everything a user may want to change without touching the rules or the dashboard.
// Override in your own jsonnet:
//   (import 'mixin/mixin.libsonnet') + { _config+:: { deliveryStalledAfterSeconds: 30 * 60 } }
{
  _config+:: {
    // Matchers every alert and recording rule adds to its selectors, e.g. 'job="dingtalk"'.
    // Empty: exporter targets are recognised by their metric names, whatever the job.
    dingtalkExporterSelector: '',

    // Labels that tell replicas of one exporter apart. Task series and the monthly call
    // count come from the shared store and are the same on every replica: these labels are
    // aggregated away for them, and kept for what each process does on its own (calls,
    // tokens, poll lag, reloads).
    replicaLabels: ['instance'],

    // Labels of dingtalk_task_info copied onto task alerts and panels.
    taskInfoLabels: ['app', 'name'],

    // DingTalkDeliveryStalled: an in-progress task whose progress has not changed across
    // this many seconds of answers from DingTalk.
    deliveryStalledAfterSeconds: 15 * 60,
    deliveryStalledFor: '0s',
    // DingTalkDeliveryNotStarted: DingTalk still says "not started" this long after
    // registration.
    deliveryNotStartedAfterSeconds: 15 * 60,
    deliveryNotStartedFor: '0s',
    taskInvalidFor: '0s',

    // DingTalkApiErrorRatioHigh: share of failed calls over the window, per exporter.
    // Errcodes listed here are not API faults: 40035 says a registered task does not
    // exist (DingTalkTaskInvalid reports it per task).
    apiErrorRatioThreshold: 0.1,
    apiErrorRatioWindow: '5m',
    apiErrorRatioIgnoredErrcodes: ['40035'],
    apiErrorRatioFor: '15m',

    tokenRefreshFailingWindow: '10m',
    tokenRefreshFailingFor: '15m',

    monthlyBudgetNearlyUsedRatio: 0.8,
    monthlyBudgetNearlyUsedFor: '5m',
    monthlyBudgetSpentFor: '5m',

    quotaExhaustedLookback: '1h',
    quotaExhaustedFor: '0s',

    pollingBehindSeconds: 120,
    pollingBehindFor: '10m',

    unreachableFor: '10m',

    exporterDownFor: '5m',
    // A target counts as a dingtalk-exporter if it exported build_info within this window.
    exporterKnownWithin: '1d',
    exporterAbsentFor: '10m',

    configReloadFailedFor: '5m',

    // Each alert's runbook_url is this plus '#' and the alert's name in lowercase.
    runbookBaseUrl: 'https://github.com/dingtalk-exporter/dingtalk-exporter/blob/main/README.md',

    // Dashboard.
    dashboardUid: 'dingtalk-exporter',
    dashboardTitle: 'DingTalk deliveries',
    dashboardTags: ['dingtalk', 'dingtalk-exporter'],
    // Name of the data source the dashboard's "Data source" drop-down starts with.
    datasourceName: 'prometheus',
    dashboardRefresh: '30s',
    dashboardTimeFrom: 'now-3h',

    // Grafana-managed alert rules (alerts/grafana/dingtalk-exporter.yaml).
    grafanaAlertFolder: 'DingTalk',
    grafanaAlertGroup: 'dingtalk-exporter',
    grafanaAlertInterval: '1m',
    grafanaAlertOrgId: 1,
    // Grafana expands environment variables in provisioning files: set this one to the
    // uid of your Prometheus data source before Grafana starts.
    grafanaDatasourceUid: '${DINGTALK_EXPORTER_PROMETHEUS_UID}',
    // Seconds of data a Grafana rule's query looks at.
    grafanaQueryRangeSeconds: 600,
  },
}
