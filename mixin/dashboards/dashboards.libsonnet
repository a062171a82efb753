(import 'dingtalk-exporter.libsonnet')
