// The Grafana dashboard: deliveries, the DingTalk API, the exporter. Task panels aggregate
// the replicas of an exporter away (every replica serves every task); exporter panels keep
// `instance`, one line per process. Every selector filters the `job` and `instance` variables.
local manifest = import '../lib/manifest.libsonnet';
local promql = import '../lib/promql.libsonnet';

{
  local config = $._config,
  local queries = $.dingtalkQueries,
  local matchers = ['job=~"$job"', 'instance=~"$instance"'],
  local sel(metric, extra=[]) = promql.selector(metric, matchers + extra),
  local task(metric, extra=[]) = queries.task(metric, matchers, extra),
  local replicas = promql.labels(config.replicaLabels),
  local infoLabels = promql.labels(config.taskInfoLabels),
  local datasource = { type: 'prometheus', uid: '${datasource}' },
  local humanSeconds = manifest.secondsText,
  local percent(ratio) = '%s%%' % manifest.number(ratio * 100),

  local target(refId, expr, format, instant, legend) = {
    datasource: datasource,
    refId: refId,
    expr: expr,
    editorMode: 'code',
    instant: instant,
    range: !instant,
    format: format,
  } + (if legend == null then {} else { legendFormat: legend }),
  local instantTarget(refId, expr, legend=null) = target(refId, expr, 'time_series', true, legend),
  local rangeTarget(refId, expr, legend=null) = target(refId, expr, 'time_series', false, legend),
  local tableTarget(refId, expr, legend=null) = target(refId, expr, 'table', true, legend),

  // The exporters the job and instance lists offer: those that export build_info.
  local buildInfo(extra=[]) =
    promql.selector('dingtalk_exporter_build_info', [config.dingtalkExporterSelector] + extra),
  local queryVariable(name, label, query) = {
    type: 'query',
    name: name,
    label: label,
    datasource: datasource,
    query: query,
    definition: query,
    multi: true,
    includeAll: true,
    allValue: '.+',
    refresh: 2,
    sort: 1,
    hide: 0,
    regex: '',
    options: [],
    skipUrlSync: false,
  },

  grafanaDashboards+:: {
    'dingtalk-exporter.json': {
      uid: config.dashboardUid,
      title: config.dashboardTitle,
      description: "Work-notification deliveries tracked by dingtalk-exporter: progress, stalls, DingTalk API health, monthly call budget. Alerts and runbooks: see the README.",
      tags: config.dashboardTags,
      timezone: 'browser',
      editable: false,
      graphTooltip: 1,
      fiscalYearStartMonth: 0,
      liveNow: false,
      refresh: config.dashboardRefresh,
      schemaVersion: 41,
      time: { from: config.dashboardTimeFrom, to: 'now' },
      timepicker: {},
      links: [
        {
          title: 'Runbooks',
          type: 'link',
          icon: 'doc',
          tooltip: 'What each alert means and what to do',
          url: config.runbookBaseUrl + '#runbooks',
          tags: [],
          asDropdown: false,
          targetBlank: true,
          includeVars: false,
          keepTime: false,
        },
      ],
      annotations: {
        "list": [
          {
            "builtIn": 1,
            "datasource": {
              "type": "grafana",
              "uid": "-- Grafana --"
            },
            "enable": true,
            "hide": true,
            "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts",
            "type": "dashboard"
          }
        ]
      },
      templating: {
        list: [
          {
            type: 'datasource',
            name: 'datasource',
            label: 'Data source',
            query: 'prometheus',
            current: { text: config.datasourceName, value: config.datasourceName },
            hide: 0,
            refresh: 1,
            regex: '',
            options: [],
            skipUrlSync: false,
          },
          queryVariable('job', 'Job', 'label_values(%s, job)' % buildInfo()),
          queryVariable('instance', 'Instance', 'label_values(%s, instance)' % buildInfo(['job=~"$job"'])),
          // The corps of third-party apps; internal apps' series have no corp, so "All" is
          // ".*" here and the per-corp panels add corp!="".
          queryVariable('corp', 'Corp', 'label_values(%s, corp)' % sel('dingtalk_up')) + { allValue: '.*' },
        ],
      },
      panels: [
      {
        "type": "row",
        "id": 1,
        "title": "Deliveries",
        "collapsed": false,
        "gridPos": {
          "h": 1,
          "w": 24,
          "x": 0,
          "y": 0
        },
        panels: [],
      },
      {
        "type": "stat",
        "id": 2,
        "title": "In progress",
        "description": "Tracked tasks DingTalk reports as sending right now. Nothing to do by itself; if Stalled rises with it, open the task table below to see which deliveries stopped moving.",
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 0,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "blue",
                  "value": null
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'count(%s == 1) or vector(0)' % task('dingtalk_task_status', ['status="in_progress"'])),
        ],
      },
      {
        "type": "stat",
        "id": 3,
        "title": "Stalled",
        "description": "Tasks in progress whose progress has not changed in DingTalk's answers for more than %s (the DingTalkDeliveryStalled alert). Above 0: find the task in the table, check the sending application's logs and DingTalk's flow-control limits; see the runbook." % humanSeconds(config.deliveryStalledAfterSeconds),
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 3,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                },
                {
                  "color": "red",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "background",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'count(%s) or vector(0)' % $.dingtalkAlertExpr('DingTalkDeliveryStalled', matchers)),
        ],
      },
      {
        "type": "stat",
        "id": 4,
        "title": "Not started",
        "description": "Tasks DingTalk has not started sending yet (status 0). A task usually starts within seconds; one that stays here for more than %s raises DingTalkDeliveryNotStarted." % humanSeconds(config.deliveryNotStartedAfterSeconds),
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 6,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                },
                {
                  "color": "orange",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'count(%s == 1) or vector(0)' % task('dingtalk_task_status', ['status="not_started"'])),
        ],
      },
      {
        "type": "stat",
        "id": 5,
        "title": "Finished in range",
        "description": "Tasks that DingTalk reported finished within the dashboard's time range (only tasks still on /metrics, i.e. within --task.retention of finishing). Compare with what was sent; the table shows who read them.",
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 9,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'count(max without (%s) (max_over_time(%s[$__range])) == 1 and ignoring (status) max without (%s) (max_over_time(%s[$__range])) >= time() - $__range_s) or vector(0)' % [replicas, sel('dingtalk_task_status', ['status="completed"']), replicas, sel('dingtalk_task_last_progress_change_timestamp_seconds')]),
        ],
      },
      {
        "type": "stat",
        "id": 6,
        "title": "API error ratio",
        "description": "Share of each exporter's DingTalk API calls that failed, computed as the DingTalkApiErrorRatioHigh alert computes it: answers about a task rather than faults of the API (errcode %s) are not counted. Above %s for %s the alert fires: open the DingTalk API row to see which errcode; the runbook of DingTalkApiErrorRatioHigh explains each." % [std.join(', ', config.apiErrorRatioIgnoredErrcodes), percent(config.apiErrorRatioThreshold), manifest.durationText(config.apiErrorRatioFor)],
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 12,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "percentunit",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                },
                {
                  "color": "orange",
                  "value": config.apiErrorRatioThreshold / 2
                },
                {
                  "color": "red",
                  "value": config.apiErrorRatioThreshold
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": [
              {
                "type": "special",
                "options": {
                  "match": "nan",
                  "result": {
                    "index": 0,
                    "text": "no calls"
                  }
                }
              }
            ]
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', queries.apiErrorRatio(matchers, '$__rate_interval'), legend="{{instance}}"),
        ],
      },
      {
        "type": "stat",
        "id": 7,
        "title": "Monthly calls",
        "description": "Metered DingTalk calls (getsendprogress, getsendresult) the exporter made this calendar month (Asia/Shanghai). The free edition allows 5,000 per month for the whole organisation, sending included: keep the exporter's share small with --dingtalk.monthly-call-budget.",
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 15,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "blue",
                  "value": null
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'sum(%s)' % queries.monthCalls(matchers)),
        ],
      },
      {
        "type": "stat",
        "id": 8,
        "title": "Monthly budget used",
        "description": "Monthly calls against --dingtalk.monthly-call-budget. Past %s the exporter polls less often; at 100%% it stops until the month ends. Raise the budget if the organisation's quota allows, or track fewer tasks." % percent(config.monthlyBudgetNearlyUsedRatio),
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 18,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "percentunit",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                },
                {
                  "color": "orange",
                  "value": config.monthlyBudgetNearlyUsedRatio
                },
                {
                  "color": "red",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": [],
            "noValue": "no budget set"
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "value",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'max(%s)' % queries.monthBudgetUsedRatio(matchers)),
        ],
      },
      {
        "type": "stat",
        "id": 9,
        "title": "Exporter up",
        "description": "Whether Prometheus can scrape every selected exporter. Down: check the process and its logs (DingTalkExporterDown runbook); the rest of this dashboard is stale meanwhile.",
        "gridPos": {
          "h": 4,
          "w": 3,
          "x": 21,
          "y": 1
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "red",
                  "value": null
                },
                {
                  "color": "green",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": [
              {
                "type": "value",
                "options": {
                  "0": {
                    "index": 0,
                    "color": "red",
                    "text": "Down"
                  },
                  "1": {
                    "index": 1,
                    "color": "green",
                    "text": "Up"
                  }
                }
              }
            ]
          },
          "overrides": []
        },
        "options": {
          "graphMode": "none",
          "colorMode": "background",
          "justifyMode": "center",
          "textMode": "value",
          "wideLayout": true,
          "showPercentChange": false,
          "percentChangeColorMode": "standard",
          "orientation": "auto",
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'min(%s and on (job, instance) max_over_time(%s[1d]))' % [sel('up'), sel('dingtalk_exporter_build_info')]),
        ],
      },
      {
        "type": "table",
        "id": 10,
        "title": "Tasks",
        "description": "Every tracked task: DingTalk's status (blue not started, orange sending, green completed; blank before the first answer), progress, when the exporter expects it to finish (\"in 4 minutes\"; blank without an estimate), when progress last changed, the errcode of the last poll, once finished who read it, and when it was registered. A task sending whose last change is long ago is stalled: see the DingTalkDeliveryStalled runbook. Errcode 40035 means DingTalk knows no such task for that agent: check the ids that were registered.",
        "gridPos": {
          "h": 10,
          "w": 24,
          "x": 0,
          "y": 5
        },
        "transformations": [
          {
            "id": "merge",
            "options": {}
          },
          {
            "id": "organize",
            "options": {
              "excludeByName": {
                "Time": true,
                "job": true,
                "Value #A": true,
                "Value #B": true
              },
              "indexByName": {
                "name": 0,
                "task_id": 1,
                "agent_id": 2,
                "app": 3,
                "status": 4,
                "Value #C": 5,
                "Value #J": 6,
                "Value #D": 7,
                "Value #E": 8,
                "Value #F": 9,
                "Value #G": 10,
                "Value #H": 11,
                "Value #I": 12
              },
              "renameByName": {
                "name": "Name",
                "task_id": "Task ID",
                "agent_id": "Agent ID",
                "app": "App",
                "status": "Status",
                "Value #C": "Progress",
                "Value #J": "Expected end",
                "Value #D": "Last progress change",
                "Value #E": "Last errcode",
                "Value #F": "Read",
                "Value #G": "Unread",
                "Value #H": "Not delivered",
                "Value #I": "Registered"
              }
            }
          }
        ],
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "custom": {
              "align": "auto",
              "inspect": false,
              "cellOptions": {
                "type": "auto"
              }
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": [
            {
              "matcher": {
                "id": "byName",
                "options": "Status"
              },
              "properties": [
                {
                  "id": "mappings",
                  "value": [
                    {
                      "type": "value",
                      "options": {
                        "not_started": {
                          "index": 0,
                          "color": "blue",
                          "text": "not started"
                        },
                        "in_progress": {
                          "index": 1,
                          "color": "orange",
                          "text": "sending"
                        },
                        "completed": {
                          "index": 2,
                          "color": "green",
                          "text": "completed"
                        }
                      }
                    }
                  ]
                },
                {
                  "id": "custom.cellOptions",
                  "value": {
                    "type": "color-text"
                  }
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Progress"
              },
              "properties": [
                {
                  "id": "unit",
                  "value": "percentunit"
                },
                {
                  "id": "min",
                  "value": 0
                },
                {
                  "id": "max",
                  "value": 1
                },
                {
                  "id": "color",
                  "value": {
                    "mode": "continuous-BlPu"
                  }
                },
                {
                  "id": "custom.cellOptions",
                  "value": {
                    "type": "gauge",
                    "mode": "basic",
                    "valueDisplayMode": "text"
                  }
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Expected end"
              },
              "properties": [
                {
                  "id": "unit",
                  "value": "dateTimeFromNow"
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Last progress change"
              },
              "properties": [
                {
                  "id": "unit",
                  "value": "dateTimeFromNow"
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Registered"
              },
              "properties": [
                {
                  "id": "unit",
                  "value": "dateTimeFromNow"
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Last errcode"
              },
              "properties": [
                {
                  "id": "mappings",
                  "value": [
                    {
                      "type": "value",
                      "options": {
                        "0": {
                          "index": 0,
                          "color": "green",
                          "text": "ok"
                        },
                        "40035": {
                          "index": 1,
                          "color": "red",
                          "text": "40035 no such task"
                        },
                        "90020": {
                          "index": 2,
                          "color": "red",
                          "text": "90020 quota used up"
                        }
                      }
                    },
                    {
                      "type": "range",
                      "options": {
                        "from": null,
                        "to": -0.5,
                        "result": {
                          "index": 3,
                          "color": "orange"
                        }
                      }
                    },
                    {
                      "type": "range",
                      "options": {
                        "from": 0.5,
                        "to": null,
                        "result": {
                          "index": 4,
                          "color": "orange"
                        }
                      }
                    }
                  ]
                },
                {
                  "id": "custom.cellOptions",
                  "value": {
                    "type": "color-text"
                  }
                }
              ]
            },
            {
              "matcher": {
                "id": "byName",
                "options": "Not delivered"
              },
              "properties": [
                {
                  "id": "thresholds",
                  "value": {
                    "mode": "absolute",
                    "steps": [
                      {
                        "color": "green",
                        "value": null
                      },
                      {
                        "color": "red",
                        "value": 1
                      }
                    ]
                  }
                },
                {
                  "id": "custom.cellOptions",
                  "value": {
                    "type": "color-text"
                  }
                }
              ]
            }
          ]
        },
        "options": {
          "showHeader": true,
          "frameIndex": 0,
          "cellHeight": "sm",
          "sortBy": [
            {
              "displayName": "Status",
              "desc": true
            }
          ],
          "footer": {
            "show": false,
            "reducer": [
              "sum"
            ],
            "countRows": false,
            "fields": []
          }
        },
        datasource: datasource,
        targets: [
          tableTarget('A', 'max by (job, agent_id, task_id, %s) (%s)' % [infoLabels, sel('dingtalk_task_info')]),
          tableTarget('B', 'max by (job, agent_id, task_id, status) (%s == 1)' % sel('dingtalk_task_status')),
          tableTarget('C', 'max by (job, agent_id, task_id) (%s)' % sel('dingtalk_task_progress_ratio')),
          tableTarget('J', 'max by (job, agent_id, task_id) (%s) * 1000' % sel('dingtalk_task_expected_completion_timestamp_seconds')),
          tableTarget('D', 'max by (job, agent_id, task_id) (%s) * 1000' % sel('dingtalk_task_last_progress_change_timestamp_seconds')),
          tableTarget('E', 'max by (job, agent_id, task_id) (%s)' % sel('dingtalk_task_last_errcode')),
          tableTarget('I', 'max by (job, agent_id, task_id) (%s) * 1000' % sel('dingtalk_task_created_timestamp_seconds')),
          tableTarget('F', 'sum by (job, agent_id, task_id) (%s)' % task('dingtalk_task_recipients', ['result="read"'])),
          tableTarget('G', 'sum by (job, agent_id, task_id) (%s)' % task('dingtalk_task_recipients', ['result="unread"'])),
          tableTarget('H', 'sum by (job, agent_id, task_id) (%s)' % task('dingtalk_task_recipients', ['result=~"failed|forbidden|invalid"'])),
        ],
      },
      {
        "type": "bargauge",
        "id": 11,
        "title": "Progress of unfinished tasks",
        "description": "DingTalk's progress of every task not finished yet (the 30 least advanced). A bar that stays short while others grow is a stalled delivery; a task at 0% has not started. Hover for agent and task ids; the table has the details.",
        "gridPos": {
          "h": 9,
          "w": 12,
          "x": 0,
          "y": 15
        },
        "fieldConfig": {
          "defaults": {
            "unit": "percentunit",
            "min": 0,
            "max": 1,
            "decimals": 0,
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "blue",
                  "value": null
                },
                {
                  "color": "green",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "displayMode": "gradient",
          "valueMode": "color",
          "namePlacement": "left",
          "showUnfilled": true,
          "sizing": "auto",
          "minVizWidth": 8,
          "minVizHeight": 16,
          "maxVizHeight": 300,
          "orientation": "horizontal",
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": false,
            "calcs": []
          },
          "reduceOptions": {
            "calcs": [
              "lastNotNull"
            ],
            "fields": "",
            "values": false
          }
        },
        datasource: datasource,
        targets: [
          instantTarget('A', 'bottomk(30, max by (job, agent_id, task_id) (%s) and ignoring (status) %s == 1) * ignoring (name) group_left (name) max by (job, agent_id, task_id, name) (%s)' % [sel('dingtalk_task_progress_ratio'), task('dingtalk_task_status', ['status=~"not_started|in_progress"']), sel('dingtalk_task_info')], legend="{{name}} ({{task_id}})"),
        ],
      },
      {
        "type": "state-timeline",
        "id": 12,
        "title": "Task status over time",
        "description": "Each task's status in DingTalk's answers over time: not started, sending, completed. A long orange band is a long delivery; compare with the stall count above. Tasks never answered yet are not shown.",
        "gridPos": {
          "h": 9,
          "w": 12,
          "x": 12,
          "y": 15
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "custom": {
              "lineWidth": 0,
              "fillOpacity": 80
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "blue",
                  "value": null
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": [
              {
                "type": "value",
                "options": {
                  "0": {
                    "index": 0,
                    "color": "blue",
                    "text": "not started"
                  },
                  "1": {
                    "index": 1,
                    "color": "orange",
                    "text": "sending"
                  },
                  "2": {
                    "index": 2,
                    "color": "green",
                    "text": "completed"
                  }
                }
              }
            ]
          },
          "overrides": []
        },
        "options": {
          "showValue": "never",
          "rowHeight": 0.8,
          "mergeValues": true,
          "alignValue": "left",
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "single",
            "sort": "none"
          },
          "perPage": 20
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', '(max by (job, agent_id, task_id) (%s) + 2 * max by (job, agent_id, task_id) (%s) and max by (job, agent_id, task_id) (%s) == 1) * ignoring (name) group_left (name) max by (job, agent_id, task_id, name) (%s)' % [sel('dingtalk_task_status', ['status="in_progress"']), sel('dingtalk_task_status', ['status="completed"']), sel('dingtalk_task_status'), sel('dingtalk_task_info')], legend="{{name}} ({{task_id}})"),
        ],
      },
      {
        "type": "timeseries",
        "id": 13,
        "title": "Tracked tasks by state",
        "description": "How many tasks the exporter tracks, by its own state: active (being polled), completed, invalid (DingTalk answered 40035), expired (older than --task.max-age). Finished, invalid and expired tasks leave after --task.retention. Near --tasks.max new registrations are refused.",
        "gridPos": {
          "h": 8,
          "w": 12,
          "x": 0,
          "y": 24
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (state) (%s)' % task('dingtalk_tasks'), legend="{{state}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 14,
        "title": "Recipients of finished tasks",
        "description": "Recipients of the finished tasks still on /metrics, by getsendresult's lists (only tasks with at most 100 recipients). Many failed or forbidden: DingTalk's flow control dropped messages (same content to a user twice a day, 500 messages per user per day); many invalid: the user or department ids sent were wrong.",
        "gridPos": {
          "h": 8,
          "w": 12,
          "x": 12,
          "y": 24
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "bars",
              "lineWidth": 1,
              "fillOpacity": 80,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "normal",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (result) (%s)' % task('dingtalk_task_recipients'), legend="{{result}}"),
        ],
      },
      {
        "type": "row",
        "id": 15,
        "title": "DingTalk API",
        "collapsed": false,
        "gridPos": {
          "h": 1,
          "w": 24,
          "x": 0,
          "y": 32
        },
        panels: [],
      },
      {
        "type": "timeseries",
        "id": 16,
        "title": "API calls",
        "description": "Calls per second the exporter makes to DingTalk, by API. Every getsendprogress and getsendresult call counts against the organisation's monthly quota; gettoken does not. Calls never exceed --dingtalk.max-qps per API and app.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 0,
          "y": 33
        },
        "fieldConfig": {
          "defaults": {
            "unit": "reqps",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (instance, api) (rate(%s[$__rate_interval]))' % sel('dingtalk_api_requests_total'), legend="{{instance}} {{api}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 17,
        "title": "API errors by errcode",
        "description": "Failed calls per second by API and errcode: DingTalk's code (the sub_code for 88), other, or transport, http, decode, ip_banned for failures outside DingTalk's answers. 90018/90002: throttled, lower --dingtalk.max-qps. 90020: monthly quota used up. 40014/42001: token refreshed automatically. See the runbook of DingTalkApiErrorRatioHigh.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 8,
          "y": 33
        },
        "fieldConfig": {
          "defaults": {
            "unit": "reqps",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (instance, api, errcode) (rate(%s[$__rate_interval]))' % sel('dingtalk_api_errors_total'), legend="{{instance}} {{api}} {{errcode}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 18,
        "title": "API latency",
        "description": "How long DingTalk takes to answer, by API (50th, 90th and 99th percentile). Latency near --dingtalk.timeout turns into transport errors; a slow DingTalk delays polls and raises the poll lag.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 16,
          "y": 33
        },
        "fieldConfig": {
          "defaults": {
            "unit": "s",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'histogram_quantile(0.5, sum by (instance, le, api) (rate(%s[$__rate_interval])))' % sel('dingtalk_api_request_duration_seconds_bucket'), legend="p50 {{instance}} {{api}}"),
          rangeTarget('B', 'histogram_quantile(0.9, sum by (instance, le, api) (rate(%s[$__rate_interval])))' % sel('dingtalk_api_request_duration_seconds_bucket'), legend="p90 {{instance}} {{api}}"),
          rangeTarget('C', 'histogram_quantile(0.99, sum by (instance, le, api) (rate(%s[$__rate_interval])))' % sel('dingtalk_api_request_duration_seconds_bucket'), legend="p99 {{instance}} {{api}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 19,
        "title": "Monthly calls against budget",
        "description": "Metered calls this calendar month (Asia/Shanghai) and the configured --dingtalk.monthly-call-budget (dashed). The exporter paces its polls to stay under the budget; the count resets at the start of each month.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 0,
          "y": 41
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": [
            {
              "matcher": {
                "id": "byName",
                "options": "budget"
              },
              "properties": [
                {
                  "id": "custom.lineStyle",
                  "value": {
                    "fill": "dash",
                    "dash": [
                      10,
                      10
                    ]
                  }
                },
                {
                  "id": "custom.fillOpacity",
                  "value": 0
                },
                {
                  "id": "color",
                  "value": {
                    "mode": "fixed",
                    "fixedColor": "red"
                  }
                }
              ]
            }
          ]
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum(%s)' % queries.monthCalls(matchers), legend="calls this month"),
          rangeTarget('B', 'sum(%s)' % queries.monthCallBudget(matchers), legend="budget"),
        ],
      },
      {
        "type": "timeseries",
        "id": 20,
        "title": "Access token fetches",
        "description": "gettoken calls by app, and how many failed. A token lives two hours and is refreshed a few minutes early, so a handful per day is normal. Failures that repeat: check the app key and secret (40089/40096) and the app's IP whitelist (60020); see the DingTalkTokenRefreshFailing runbook.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 8,
          "y": 41
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "bars",
              "lineWidth": 1,
              "fillOpacity": 80,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (instance, app) (increase(%s[$__rate_interval]))' % sel('dingtalk_token_refreshes_total'), legend="{{instance}} {{app}} fetched"),
          rangeTarget('B', 'sum by (instance, app) (increase(%s[$__rate_interval])) or sum by (instance, app) (increase(%s[$__rate_interval])) * 0' % [sel('dingtalk_token_refresh_failures_total'), sel('dingtalk_token_refreshes_total')], legend="{{instance}} {{app}} failed"),
        ],
      },
      {
        "type": "state-timeline",
        "id": 21,
        "title": "DingTalk reachable",
        "description": "Per app: whether its last DingTalk call got an authenticated answer. Red for more than a few minutes raises DingTalkUnreachable: check network and proxy to the API URL, DingTalk's status, and the app's credentials.",
        "gridPos": {
          "h": 8,
          "w": 8,
          "x": 16,
          "y": 41
        },
        "fieldConfig": {
          "defaults": {
            "unit": "none",
            "custom": {
              "lineWidth": 0,
              "fillOpacity": 80
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "red",
                  "value": null
                },
                {
                  "color": "green",
                  "value": 1
                }
              ]
            },
            "color": {
              "mode": "thresholds"
            },
            "mappings": [
              {
                "type": "value",
                "options": {
                  "0": {
                    "index": 0,
                    "color": "red",
                    "text": "unreachable"
                  },
                  "1": {
                    "index": 1,
                    "color": "green",
                    "text": "reachable"
                  }
                }
              }
            ]
          },
          "overrides": []
        },
        "options": {
          "showValue": "never",
          "rowHeight": 0.8,
          "mergeValues": true,
          "alignValue": "left",
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "single",
            "sort": "none"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'min by (instance, app) (%s)' % sel('dingtalk_up'), legend="{{instance}} {{app}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 31,
        "title": "Calls per finished task",
        "description": "Metered calls each delivery cost of the monthly quota, counted when the task ended (finished with its recipients asked, invalid or expired): the average and the 90th percentile over the tasks that ended. A finishing delivery takes two or three; a stalled or never-starting one costs more the longer it stays (see the README's 'How it polls, and what it costs'). Rising: more stuck deliveries, or --poll.* settings that poll more often.",
        "gridPos": {
          "h": 8,
          "w": 12,
          "x": 0,
          "y": 49
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum(rate(%s[$__rate_interval])) / sum(rate(%s[$__rate_interval]))' % [sel('dingtalk_task_calls_sum'), sel('dingtalk_task_calls_count')], legend="average"),
          rangeTarget('B', 'histogram_quantile(0.9, sum by (le) (rate(%s[$__rate_interval])))' % sel('dingtalk_task_calls_bucket'), legend="p90"),
        ],
      },
      {
        "type": "timeseries",
        "id": 37,
        "title": "Third-party corps: monthly calls",
        "description": "Metered calls this calendar month of each corp of a third-party (ISV) app against the corp's monthly_call_budget: every corp has its own DingTalk quota (5,000 a month on the free edition) and its own budget; one corp running out stops only that corp. Empty: no third-party app is configured (see the README's 'Third-party enterprise apps').",
        "gridPos": {
          "h": 8,
          "w": 12,
          "x": 12,
          "y": 49
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', task('dingtalk_api_month_calls', ['corp!=""', 'corp=~"$corp"']), legend="{{app}} / {{corp}}"),
          rangeTarget('B', task('dingtalk_api_month_call_budget', ['corp!=""', 'corp=~"$corp"']), legend="{{app}} / {{corp}} budget"),
        ],
      },
      {
        "type": "row",
        "id": 32,
        "title": "Tracking proxy",
        "collapsed": false,
        "gridPos": {
          "h": 1,
          "w": 24,
          "x": 0,
          "y": 57
        },
        "panels": []
      },
      {
        "type": "timeseries",
        "id": 33,
        "title": "Organisation quota this month",
        "description": "The organisation's metered calls this calendar month (Asia/Shanghai): the exporter's own polls and the calls of other applications that the tracking proxy relayed (every call but the token APIs). DingTalk's free edition allows 5,000 a month for the whole organisation; when the total nears it, DingTalk answers 90020 and both the senders and the exporter stop. Empty relayed line: no sender goes through the proxy (--proxy.listen-address).",
        "gridPos": {
          "h": 8,
          "w": 6,
          "x": 0,
          "y": 58
        },
        "fieldConfig": {
          "defaults": {
            "unit": "short",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum(%s)' % queries.monthCalls(matchers), legend="exporter's own"),
          rangeTarget('B', 'sum(%s)' % queries.proxyMonthCalls(matchers), legend="relayed by the proxy"),
          rangeTarget('C', 'sum(%s) + sum(%s)' % [queries.monthCalls(matchers), queries.proxyMonthCalls(matchers)], legend="organisation total"),
        ],
      },
      {
        "type": "timeseries",
        "id": 34,
        "title": "Relayed requests",
        "description": "Requests the tracking proxy relayed to DingTalk, by API and result: ok, dingtalk_error (a send DingTalk refused, or an HTTP error status), upstream_error (DingTalk unreachable: the sender got 502 or 504), refused (by the proxy itself: a foreign destination or CONNECT). upstream_error means senders are failing right now.",
        "gridPos": {
          "h": 8,
          "w": 6,
          "x": 6,
          "y": 58
        },
        "fieldConfig": {
          "defaults": {
            "unit": "reqps",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (instance, api, result) (rate(%s[$__rate_interval]))' % sel('dingtalk_proxy_requests_total'), legend="{{instance}} {{api}} {{result}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 35,
        "title": "Sends tracked by the proxy",
        "description": "Sends the proxy registered as tasks, and sends it relayed but could not register, by reason (tasks_max: --tasks.max reached; store: the store refused; queue_full; no_agent_id; shutdown). A relayed send is never held up by tracking; a failure here is a delivery nobody watches.",
        "gridPos": {
          "h": 8,
          "w": 6,
          "x": 12,
          "y": 58
        },
        "fieldConfig": {
          "defaults": {
            "unit": "reqps",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'sum by (instance) (rate(%s[$__rate_interval]))' % sel('dingtalk_proxy_tracked_total'), legend="{{instance}} tracked"),
          rangeTarget('B', 'sum by (instance, reason) (rate(%s[$__rate_interval]))' % sel('dingtalk_proxy_track_failures_total'), legend="{{instance}} not tracked: {{reason}}"),
        ],
      },
      {
        "type": "timeseries",
        "id": 36,
        "title": "Proxy latency",
        "description": "Time from a request reaching the proxy until DingTalk's answer goes back to the sender, by API (median and 99th percentile): DingTalk's own latency plus the proxy's, which adds tens of microseconds on loopback.",
        "gridPos": {
          "h": 8,
          "w": 6,
          "x": 18,
          "y": 58
        },
        "fieldConfig": {
          "defaults": {
            "unit": "s",
            "custom": {
              "drawStyle": "line",
              "lineWidth": 1,
              "fillOpacity": 10,
              "gradientMode": "none",
              "showPoints": "never",
              "spanNulls": false,
              "lineInterpolation": "linear",
              "axisPlacement": "auto",
              "stacking": {
                "mode": "none",
                "group": "A"
              },
              "thresholdsStyle": {
                "mode": "off"
              }
            },
            "color": {
              "mode": "palette-classic"
            },
            "thresholds": {
              "mode": "absolute",
              "steps": [
                {
                  "color": "green",
                  "value": null
                }
              ]
            },
            "mappings": []
          },
          "overrides": []
        },
        "options": {
          "legend": {
            "displayMode": "list",
            "placement": "bottom",
            "showLegend": true,
            "calcs": []
          },
          "tooltip": {
            "mode": "multi",
            "sort": "desc"
          }
        },
        datasource: datasource,
        targets: [
          rangeTarget('A', 'histogram_quantile(0.5, sum by (instance, le, api) (rate(%s[$__rate_interval])))' % sel('dingtalk_proxy_request_duration_seconds_bucket'), legend="p50 {{instance}} {{api}}"),
          rangeTarget('B', 'histogram_quantile(0.99, sum by (instance, le, api) (rate(%s[$__rate_interval])))' % sel('dingtalk_proxy_request_duration_seconds_bucket'), legend="p99 {{instance}} {{api}}"),
        ],
      },
      {
        "type": "row",
        "id": 30,
        "title": "Exporter",
        "collapsed": true,
        "gridPos": {
          "h": 1,
          "w": 24,
          "x": 0,
          "y": 66
        },
        panels: [
          {
            "type": "timeseries",
            "id": 22,
            "title": "Poll lag",
            "description": "How far behind its schedule the most overdue task poll is. Near zero is normal. Growing: more tasks than --dingtalk.max-qps can poll in time, DingTalk throttling, or a paused budget; above %s for %s raises DingTalkPollingBehind." % [humanSeconds(config.pollingBehindSeconds), manifest.durationText(config.pollingBehindFor)],
            "gridPos": {
              "h": 8,
              "w": 8,
              "x": 0,
              "y": 67
            },
            "fieldConfig": {
              "defaults": {
                "unit": "s",
                "custom": {
                  "drawStyle": "line",
                  "lineWidth": 1,
                  "fillOpacity": 10,
                  "gradientMode": "none",
                  "showPoints": "never",
                  "spanNulls": false,
                  "lineInterpolation": "linear",
                  "axisPlacement": "auto",
                  "stacking": {
                    "mode": "none",
                    "group": "A"
                  },
                  "thresholdsStyle": {
                    "mode": "dashed"
                  }
                },
                "color": {
                  "mode": "palette-classic"
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    },
                    {
                      "color": "red",
                      "value": config.pollingBehindSeconds
                    }
                  ]
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": true,
                "calcs": []
              },
              "tooltip": {
                "mode": "multi",
                "sort": "desc"
              }
            },
            datasource: datasource,
            targets: [
              rangeTarget('A', 'max by (instance) (%s)' % sel('dingtalk_poll_lag_seconds'), legend="{{instance}}"),
            ],
          },
          {
            "type": "timeseries",
            "id": 23,
            "title": "Time since last successful poll",
            "description": "Per app, how long ago a poll last got a successful answer. It grows while no task is being polled (nothing to track) or while DingTalk cannot be reached; compare with DingTalk reachable.",
            "gridPos": {
              "h": 8,
              "w": 8,
              "x": 8,
              "y": 67
            },
            "fieldConfig": {
              "defaults": {
                "unit": "s",
                "custom": {
                  "drawStyle": "line",
                  "lineWidth": 1,
                  "fillOpacity": 10,
                  "gradientMode": "none",
                  "showPoints": "never",
                  "spanNulls": false,
                  "lineInterpolation": "linear",
                  "axisPlacement": "auto",
                  "stacking": {
                    "mode": "none",
                    "group": "A"
                  },
                  "thresholdsStyle": {
                    "mode": "off"
                  }
                },
                "color": {
                  "mode": "palette-classic"
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    }
                  ]
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": true,
                "calcs": []
              },
              "tooltip": {
                "mode": "multi",
                "sort": "desc"
              }
            },
            datasource: datasource,
            targets: [
              rangeTarget('A', 'time() - max by (instance, app) (%s)' % sel('dingtalk_last_poll_success_timestamp_seconds'), legend="{{instance}} {{app}}"),
            ],
          },
          {
            "type": "timeseries",
            "id": 24,
            "title": "Access token valid for",
            "description": "Per app, how long the cached access token stays valid. It is refreshed a few minutes before it expires; a line that reaches zero means refreshes fail (see Access token fetches).",
            "gridPos": {
              "h": 8,
              "w": 8,
              "x": 16,
              "y": 67
            },
            "fieldConfig": {
              "defaults": {
                "unit": "s",
                "custom": {
                  "drawStyle": "line",
                  "lineWidth": 1,
                  "fillOpacity": 10,
                  "gradientMode": "none",
                  "showPoints": "never",
                  "spanNulls": false,
                  "lineInterpolation": "linear",
                  "axisPlacement": "auto",
                  "stacking": {
                    "mode": "none",
                    "group": "A"
                  },
                  "thresholdsStyle": {
                    "mode": "off"
                  }
                },
                "color": {
                  "mode": "palette-classic"
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    }
                  ]
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": true,
                "calcs": []
              },
              "tooltip": {
                "mode": "multi",
                "sort": "desc"
              }
            },
            datasource: datasource,
            targets: [
              rangeTarget('A', 'max by (instance, app) (%s) - time()' % sel('dingtalk_token_expiry_timestamp_seconds'), legend="{{instance}} {{app}}"),
            ],
          },
          {
            "type": "stat",
            "id": 25,
            "title": "Config reload",
            "description": "config: whether the last configuration reload (SIGHUP or POST /-/reload) succeeded. web config: whether the last change of the --web.config.file was put in force (failed while the file is broken, empty, or would weaken authentication: remove every user, stop requiring client certificates, switch TLS; such a change waits for a restart). Failed: the exporter keeps its previous configuration; run dingtalk-exporter --config.check with the same flags, and see its log, to find what is wrong.",
            "gridPos": {
              "h": 4,
              "w": 4,
              "x": 0,
              "y": 75
            },
            "fieldConfig": {
              "defaults": {
                "unit": "none",
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "red",
                      "value": null
                    },
                    {
                      "color": "green",
                      "value": 1
                    }
                  ]
                },
                "color": {
                  "mode": "thresholds"
                },
                "mappings": [
                  {
                    "type": "value",
                    "options": {
                      "0": {
                        "index": 0,
                        "color": "red",
                        "text": "failed"
                      },
                      "1": {
                        "index": 1,
                        "color": "green",
                        "text": "ok"
                      }
                    }
                  }
                ]
              },
              "overrides": []
            },
            "options": {
              "graphMode": "none",
              "colorMode": "background",
              "justifyMode": "center",
              "textMode": "value_and_name",
              "wideLayout": true,
              "showPercentChange": false,
              "percentChangeColorMode": "standard",
              "orientation": "auto",
              "reduceOptions": {
                "calcs": [
                  "lastNotNull"
                ],
                "fields": "",
                "values": false
              }
            },
            datasource: datasource,
            targets: [
              instantTarget('A', 'min(%s)' % sel('dingtalk_config_last_reload_successful'), legend="config"),
          instantTarget('B', 'min(%s)' % sel('dingtalk_web_config_last_reload_successful'), legend="web config"),
            ],
          },
          {
            "type": "stat",
            "id": 26,
            "title": "Config loaded",
            "description": "When the configuration in force was last loaded successfully. A reload that does not move this time failed (see Config reload).",
            "gridPos": {
              "h": 4,
              "w": 4,
              "x": 0,
              "y": 79
            },
            "fieldConfig": {
              "defaults": {
                "unit": "dateTimeFromNow",
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "blue",
                      "value": null
                    }
                  ]
                },
                "color": {
                  "mode": "thresholds"
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "graphMode": "none",
              "colorMode": "value",
              "justifyMode": "center",
              "textMode": "value",
              "wideLayout": true,
              "showPercentChange": false,
              "percentChangeColorMode": "standard",
              "orientation": "auto",
              "reduceOptions": {
                "calcs": [
                  "lastNotNull"
                ],
                "fields": "",
                "values": false
              }
            },
            datasource: datasource,
            targets: [
              instantTarget('A', 'max(%s) * 1000' % sel('dingtalk_config_last_reload_success_timestamp_seconds')),
            ],
          },
          {
            "type": "table",
            "id": 27,
            "title": "Build info",
            "description": "Version and git revision of each selected exporter. Different versions across replicas mean a rollout is in progress or stuck.",
            "gridPos": {
              "h": 8,
              "w": 8,
              "x": 4,
              "y": 75
            },
            "transformations": [
              {
                "id": "organize",
                "options": {
                  "excludeByName": {
                    "Time": true,
                    "Value": true
                  },
                  "indexByName": {
                    "instance": 0,
                    "job": 1,
                    "version": 2,
                    "revision": 3
                  },
                  "renameByName": {
                    "instance": "Instance",
                    "job": "Job",
                    "version": "Version",
                    "revision": "Revision"
                  }
                }
              }
            ],
            "fieldConfig": {
              "defaults": {
                "unit": "none",
                "custom": {
                  "align": "auto",
                  "inspect": false,
                  "cellOptions": {
                    "type": "auto"
                  }
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    }
                  ]
                },
                "color": {
                  "mode": "thresholds"
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "showHeader": true,
              "frameIndex": 0,
              "cellHeight": "sm",
              "footer": {
                "show": false,
                "reducer": [
                  "sum"
                ],
                "countRows": false,
                "fields": []
              }
            },
            datasource: datasource,
            targets: [
              tableTarget('A', 'max by (job, instance, version, revision) (%s)' % sel('dingtalk_exporter_build_info')),
            ],
          },
          {
            "type": "timeseries",
            "id": 28,
            "title": "Exporter memory",
            "description": "Resident memory of each exporter process. It grows with the number of tracked tasks; a steady climb at a constant task count is worth a bug report.",
            "gridPos": {
              "h": 8,
              "w": 6,
              "x": 12,
              "y": 75
            },
            "fieldConfig": {
              "defaults": {
                "unit": "bytes",
                "custom": {
                  "drawStyle": "line",
                  "lineWidth": 1,
                  "fillOpacity": 10,
                  "gradientMode": "none",
                  "showPoints": "never",
                  "spanNulls": false,
                  "lineInterpolation": "linear",
                  "axisPlacement": "auto",
                  "stacking": {
                    "mode": "none",
                    "group": "A"
                  },
                  "thresholdsStyle": {
                    "mode": "off"
                  }
                },
                "color": {
                  "mode": "palette-classic"
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    }
                  ]
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": true,
                "calcs": []
              },
              "tooltip": {
                "mode": "multi",
                "sort": "desc"
              }
            },
            datasource: datasource,
            targets: [
              rangeTarget('A', 'max by (instance) (%s)' % sel('process_resident_memory_bytes'), legend="{{instance}}"),
            ],
          },
          {
            "type": "timeseries",
            "id": 29,
            "title": "Exporter CPU",
            "description": "CPU used by each exporter process, as a share of one core. Polling and scrapes are cheap; sustained high use with few tasks is worth a bug report.",
            "gridPos": {
              "h": 8,
              "w": 6,
              "x": 18,
              "y": 75
            },
            "fieldConfig": {
              "defaults": {
                "unit": "percentunit",
                "custom": {
                  "drawStyle": "line",
                  "lineWidth": 1,
                  "fillOpacity": 10,
                  "gradientMode": "none",
                  "showPoints": "never",
                  "spanNulls": false,
                  "lineInterpolation": "linear",
                  "axisPlacement": "auto",
                  "stacking": {
                    "mode": "none",
                    "group": "A"
                  },
                  "thresholdsStyle": {
                    "mode": "off"
                  }
                },
                "color": {
                  "mode": "palette-classic"
                },
                "thresholds": {
                  "mode": "absolute",
                  "steps": [
                    {
                      "color": "green",
                      "value": null
                    }
                  ]
                },
                "mappings": []
              },
              "overrides": []
            },
            "options": {
              "legend": {
                "displayMode": "list",
                "placement": "bottom",
                "showLegend": true,
                "calcs": []
              },
              "tooltip": {
                "mode": "multi",
                "sort": "desc"
              }
            },
            datasource: datasource,
            targets: [
              rangeTarget('A', 'max by (instance) (rate(%s[$__rate_interval]))' % sel('process_cpu_seconds_total'), legend="{{instance}}"),
            ],
          }
        ],
      }
      ],
    },
  },
}
