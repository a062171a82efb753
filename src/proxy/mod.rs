//! The tracking proxy (`--proxy.listen-address`): senders use it as their DingTalk base URL;
//! it relays every request to `--proxy.upstream-url` and every answer back unchanged, and
//! tracks the tasks that `asyncsend_v2` and `sendbytemplate` answers create.
//!
//! - `relay`: one request there and its answer back, and what a send tells;
//! - `tracking`: registering relayed sends off the send's path (fail-open);
//! - `meter`: the relayed metered calls of the month (`dingtalk_proxy_month_calls`).
//!
//! The listener has the main listener's limits (connections, header size and read
//! timeout) and its TLS from `--web.config.file`, but no basic auth: DingTalk's access
//! token authenticates the sender, and the proxy never reads it.

mod meter;
mod relay;
mod tracking;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

pub use meter::{RelayedCallMeter, SCOPE as MONTH_CALLS_SCOPE};
pub use relay::{
    MAX_SEND_ANSWER_BYTES, MAX_SEND_BODY_BYTES, NAME_HEADER, ProxyApi, RelayResult, is_metered,
};
pub use tracking::{QUEUE_CAPACITY, TrackFailure};

use crate::http::{ServerLimits, WebConfigWatch};
use crate::telemetry::Telemetry;
use crate::tracker::{TaskStore, Tracker};

/// What the proxy is built from.
pub struct ProxySetup {
    pub listener: TcpListener,
    pub upstream_url: String,
    pub tracker: Arc<Tracker>,
    pub store: Arc<dyn TaskStore>,
    pub telemetry: Arc<Telemetry>,
    pub limits: ServerLimits,
    pub web_config: Option<Arc<WebConfigWatch>>,
}

/// A running proxy.
pub struct TrackingProxy {
    /// Where it listens (the port the OS chose, for `:0`).
    pub address: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<()>,
    registrations: JoinHandle<()>,
    flusher: JoinHandle<()>,
    shutdown_grace: Duration,
}

impl TrackingProxy {
    /// Starts serving on the setup's listener.
    pub fn start(setup: ProxySetup) -> Result<TrackingProxy, String> {
        let ProxySetup {
            listener,
            upstream_url,
            tracker,
            store,
            telemetry,
            limits,
            web_config,
        } = setup;
        let address = listener
            .local_addr()
            .map_err(|err| format!("cannot read the proxy's listening address: {err}"))?;
        telemetry.start_proxy_series(
            &ProxyApi::ALL.map(ProxyApi::as_str),
            &RelayResult::ALL.map(RelayResult::as_str),
            &TrackFailure::ALL.map(TrackFailure::as_str),
        );
        let meter = Arc::new(RelayedCallMeter::open(store, telemetry.clone())?);
        let (queue, registrations) = tracking::start(tracker, telemetry.clone());
        let relay = Arc::new(relay::Relay::new(
            &upstream_url,
            telemetry,
            meter.clone(),
            queue,
            limits.body_read_timeout,
        )?);
        let (stop, stopping) = watch::channel(false);
        let flusher = meter.spawn_flusher(stopping.clone());
        let shutdown_grace = limits.shutdown_grace;
        let server = tokio::spawn(serve(listener, relay, limits, web_config, stopping));
        Ok(TrackingProxy {
            address,
            stop,
            server,
            registrations,
            flusher,
            shutdown_grace,
        })
    }

    /// Stops accepting, lets requests in flight finish, registers the sends still queued
    /// and saves the month's count.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(err) = self.server.await {
            tracing::warn!(error = %err, "tracking proxy task failed");
        }
        // The server held the relay, and with it the queue's only sender: the worker now
        // drains the queue and ends.
        tracking::drain(self.registrations, self.shutdown_grace).await;
        let _ = self.flusher.await;
    }
}

async fn serve(
    listener: TcpListener,
    relay: Arc<relay::Relay>,
    limits: ServerLimits,
    web_config: Option<Arc<WebConfigWatch>>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let stop_signal = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop_signal);
    loop {
        let permit = tokio::select! {
            () = &mut stop_signal => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut stop_signal => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(error = %err, "the proxy could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let tls = web_config
            .as_ref()
            .and_then(|web_config| web_config.current().tls_acceptor().cloned());
        let relay = relay.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        let handshake_timeout = limits.header_read_timeout;
        tokio::spawn(async move {
            let serve = |stream| serve_connection(stream, peer, http, watcher, relay);
            match tls {
                None => serve(Box::new(stream) as Box<dyn Stream>).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve(Box::new(stream)).await,
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "proxy TLS handshake failed")
                        }
                        Err(_) => tracing::debug!(%peer, "proxy TLS handshake timed out"),
                    }
                }
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("relayed requests still in flight at shutdown were cut off");
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn serve_connection(
    stream: Box<dyn Stream>,
    peer: SocketAddr,
    http: http1::Builder,
    watcher: hyper_util::server::graceful::Watcher,
    relay: Arc<relay::Relay>,
) {
    let service = service_fn(move |request| {
        let relay = relay.clone();
        async move { Ok::<_, Infallible>(relay.handle(request).await) }
    });
    let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
    if let Err(err) = connection.await {
        tracing::debug!(%peer, error = %err, "proxy connection ended with an error");
    }
}
