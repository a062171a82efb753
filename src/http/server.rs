//! Accepting connections: HTTP/1.1 with hyper, a cap on open connections, a deadline for
//! request headers (which also closes idle keep-alive connections), and graceful shutdown.
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
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

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
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8 * 1024));
    let connections = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let site = Arc::new(Site {
        exporter,
        limits: limits.clone(),
        web_config,
        scrapes: Default::default(),
    });
    tokio::pin!(shutdown);

    loop {
        // Take a connection slot before accepting: at the cap, clients wait in the backlog
        // instead of being accepted and starved.
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // the semaphore is never closed
            },
        };
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
        // Scrapes and API answers are small request/answer exchanges: send them at once.
        let _ = stream.set_nodelay(true);
        spawn_connection(stream, peer, &http, graceful.watcher(), &site, permit);
    }

    drop(listener);
    if tokio::time::timeout(limits.shutdown_grace, graceful.shutdown())
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
/// `permit` frees its slot when it closes.
fn spawn_connection(
    stream: TcpStream,
    peer: SocketAddr,
    http: &http1::Builder,
    watcher: Watcher,
    site: &Arc<Site>,
    permit: OwnedSemaphorePermit,
) {
    let http = http.clone();
    let site = site.clone();
    tokio::spawn(async move {
        let tls = site
            .web_config
            .as_ref()
            .and_then(|web_config| web_config.current().tls_acceptor().cloned());
        match tls {
            None => serve_connection(stream, peer, &http, watcher, site).await,
            Some(acceptor) => {
                // A client that never finishes its handshake must not hold a slot forever.
                let handshake =
                    tokio::time::timeout(site.limits.header_read_timeout, acceptor.accept(stream));
                match handshake.await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, &http, watcher, site).await,
                    // Scanners, clients without the right certificate, clients that give up:
                    // the client learns why from the TLS alert; nothing for the operator.
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
        drop(permit);
    });
}

/// Serves the requests of one connection until it closes.
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    http: &http1::Builder,
    watcher: Watcher,
    site: Arc<Site>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let site = site.clone();
        async move { Ok::<_, Infallible>(handle(request, &site, peer).await) }
    });
    let connection = watcher.watch(http.serve_connection(TokioIo::new(stream), service));
    if let Err(err) = connection.await {
        // Clients that vanish or time out are routine; nothing to act on.
        tracing::debug!(%peer, error = %err, "connection ended with an error");
    }
}
