# `make mixin` writes the dashboard and alert files from the jsonnet source in mixin/ with
# Debian's `jsonnet` (apt-get install jsonnet); `cargo test` fails while they differ.
JSONNET ?= jsonnet

.PHONY: mixin
mixin:
	mkdir -p alerts/grafana dashboards
	$(JSONNET) -J . -S -m . mixin/generate.jsonnet
