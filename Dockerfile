# syntax=docker/dockerfile:1
#
# dingtalk-exporter in a minimal image: the binary on distroless (glibc, CA certificates,
# no shell, no package manager), running as the unprivileged `nonroot` user (65532).
#
#   docker build -t dingtalk-exporter .
#   docker run -d -p 10050:10050 -v dingtalk-data:/var/lib/dingtalk-exporter \
#     -e DINGTALK_APP_KEY=dingabc123 \
#     -v "$PWD/secrets:/run/secrets:ro" \
#     dingtalk-exporter \
#     --dingtalk.app-secret-file=/run/secrets/app-secret \
#     --web.api-token-file=/run/secrets/api-token
#
# The store lives in the volume (DINGTALK_EXPORTER_STORAGE_PATH below; a --storage.path
# argument overrides it). Without --web.api-token-file the task API refuses writes from
# outside the container, since they do not come from loopback.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin dingtalk-exporter \
    && install -D -m 0755 target/release/dingtalk-exporter /out/usr/bin/dingtalk-exporter \
    && install -d -m 0700 /out/var/lib/dingtalk-exporter

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="dingtalk-exporter" \
      org.opencontainers.image.description="Prometheus exporter for DingTalk work-notification deliveries"
COPY --from=builder /out/usr/bin/dingtalk-exporter /usr/bin/dingtalk-exporter
# The store's directory, owned by the user the exporter runs as.
COPY --from=builder --chown=65532:65532 /out/var/lib/dingtalk-exporter /var/lib/dingtalk-exporter
USER 65532:65532
WORKDIR /var/lib/dingtalk-exporter
ENV DINGTALK_EXPORTER_STORAGE_PATH=/var/lib/dingtalk-exporter/dingtalk-exporter.db
EXPOSE 10050
VOLUME ["/var/lib/dingtalk-exporter"]
ENTRYPOINT ["/usr/bin/dingtalk-exporter"]
