//! Accepting connections: HTTP/1.1 with hyper, a cap on open connections, a deadline for
//! request headers (which also closes idle keep-alive connections), and graceful shutdown.
//!
//! Slots are shared out by [`super::connections`]: one address holds at most its share, and
//! idle connections give up their slot when it is needed.
//!
//! A connection goes: accept → (TLS handshake, when `--web.config.file` asks for it, within
//! the header read timeout) → [`serve_connection`], which is generic over the byte stream
//! so an encrypted one can be handed in as it is → [`super::routes::handle`] for each
//! request. The web config in force is looked up afresh for each connection and request
//! ([`WebConfigWatch::current`]), so rotated certificates and changed users take effect
//! without a restart.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use super::connections::{Connections, Refusal, Slot};
use super::routes::handle;
use super::site::{ExporterPort, ServerLimits, Site};
use super::web_config::WebConfigWatch;

/// Serves the exporter's HTTP endpoints on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish (within [`ServerLimits::shutdown_grace`]) and
/// returns.
pub async fn serve_with_limits(
    listener: TcpListener,
    exporter: Arc<dyn ExporterPort>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_web_config(listener, exporter, limits, None, shutdown).await
}

/// [`serve_with_limits`] with the TLS and basic auth of a `--web.config.file`.
pub async fn serve_with_web_config(
    listener: TcpListener,
    exporter: Arc<dyn ExporterPort>,
    limits: ServerLimits,
    web_config: Option<Arc<WebConfigWatch>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = http1::Builder::new();
    // hyper bounds only the buffer it reads a head into; the exact limit is checked on the
    // head received (`request_guard::oversized_head`), so the buffer may be a little larger.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size((limits.max_header_bytes + 1024).max(8 * 1024));
    let connections = Connections::new(&limits);
    let site = Arc::new(Site {
        exporter,
        limits: limits.clone(),
        web_config,
    });
    tokio::pin!(shutdown);

    loop {
        // Accept only when a slot is free or an idle connection can give up its slot: when
        // every slot answers a request, clients wait in the backlog instead of being
        // accepted and starved.
        tokio::select! {
            () = &mut shutdown => break,
            () = connections.room() => {}
        }
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: the condition passes, and a busy
                    // loop would only make it worse.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = loop {
            match connections.admit(peer.ip()) {
                Ok(slot) => break Some(slot),
                // Every slot began answering a request since `room` said there was one:
                // this client waits, as those in the backlog do.
                Err(Refusal::AllBusy) => tokio::select! {
                    () = &mut shutdown => break None,
                    () = connections.room() => {}
                },
                Err(Refusal::AddressBusy) => {
                    tracing::debug!(%peer, "connection refused: the address holds its share of connections, all answering requests");
                    break None;
                }
                Err(Refusal::ShuttingDown) => break None,
            }
        };
        let Some(slot) = slot else {
            drop(stream);
            continue;
        };
        // Scrapes and API answers are small request/answer exchanges: send them at once.
        let _ = stream.set_nodelay(true);
        spawn_connection(stream, peer, &http, &site, slot);
    }

    drop(listener);
    connections.close_all();
    if tokio::time::timeout(limits.shutdown_grace, connections.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            grace = ?limits.shutdown_grace,
            "requests still in flight at shutdown were cut off"
        );
    }
    Ok(())
}

/// Serves one connection in its own task, after the TLS handshake when TLS is configured;
/// `slot` is given back when it closes.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    http: &http1::Builder,
    site: &Arc<Site>,
    slot: Slot,
) {
    let http = http.clone();
    let site = site.clone();
    tokio::spawn(async move {
        let tls = site
            .web_config
            .as_ref()
            .and_then(|web_config| web_config.current().tls_acceptor().cloned());
        match tls {
            None => serve_connection(stream, peer, &http, site, &slot).await,
            Some(acceptor) => {
                // A client that never finishes its handshake must not hold a slot forever,
                // and gives it up at once when the slot is needed.
                let handshake =
                    tokio::time::timeout(site.limits.header_read_timeout, acceptor.accept(stream));
                tokio::select! {
                    handshake = handshake => match handshake {
                        Ok(Ok(stream)) => serve_connection(stream, peer, &http, site, &slot).await,
                        // Scanners, clients without the right certificate, clients that give
                        // up: the client learns why from the TLS alert; nothing for the operator.
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    },
                    () = slot.told_to_close() => {
                        tracing::debug!(%peer, "connection closed before its TLS handshake to make room");
                    }
                }
            }
        }
        drop(slot);
    });
}

/// Serves the requests of one connection until it closes, or until it is told to close:
/// then the request in progress, if any, is answered first.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    http: &http1::Builder,
    site: Arc<Site>,
    slot: &Slot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let state = slot.state();
    let service = service_fn(move |request| {
        let site = site.clone();
        let busy = state.busy();
        async move {
            let answer = handle(request, &site, peer).await;
            drop(busy);
            Ok::<_, Infallible>(answer)
        }
    });
    let connection = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let outcome = tokio::select! {
        outcome = connection.as_mut() => outcome,
        () = slot.told_to_close() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = outcome {
        // Clients that vanish or time out are routine; nothing to act on.
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}
