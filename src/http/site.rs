//! What every request of one server shares: the exporter behind its port, the limits and
//! the web config in force.

use std::sync::Arc;
use std::time::Duration;

use super::web_config::WebConfigWatch;
use crate::config::Config;
use crate::telemetry::Telemetry;
use crate::tracker::Tracker;

/// What the HTTP layer needs of the running exporter. The assembly implements it; the
/// server never sees how the exporter is put together.
#[async_trait::async_trait]
pub trait ExporterPort: Send + Sync + 'static {
    /// The configuration in force.
    fn config(&self) -> Arc<Config>;
    /// The tracked tasks.
    fn tracker(&self) -> &Arc<Tracker>;
    /// The exporter's own metrics.
    fn telemetry(&self) -> &Telemetry;
    /// `/-/ready`: the store is open and the configuration valid.
    fn is_ready(&self) -> bool;
    /// `POST /-/reload`: re-reads the configuration; the old one stays when the new one is
    /// refused, with the reason. On success, the flags of the changed settings that only a
    /// restart applies (their old values stay in force).
    async fn reload(&self) -> Result<Vec<&'static str>, String>;
}

/// What every request of one server shares.
pub(super) struct Site {
    pub exporter: Arc<dyn ExporterPort>,
    pub limits: ServerLimits,
    /// The `--web.config.file`, when one is given.
    pub web_config: Option<Arc<WebConfigWatch>>,
}

/// The server's protective limits.
#[derive(Clone, Debug)]
pub struct ServerLimits {
    /// Connections open at once. Past it, the oldest idle connection is closed to make room;
    /// only when every connection is answering a request do new clients wait in the listen
    /// backlog.
    pub max_connections: usize,
    /// Connections one client address may hold; past it, that address's own oldest idle
    /// connection is closed for the new one, so one client cannot take every slot.
    pub max_connections_per_address: usize,
    /// How long a client may take to send a request's headers, and how long an idle
    /// keep-alive connection is kept.
    pub header_read_timeout: Duration,
    /// How long a client may take to send a request body.
    pub body_read_timeout: Duration,
    /// The most bytes of request line and headers read for one request; past it the
    /// client gets 431. (hyper needs at least 8 KiB.)
    pub max_header_bytes: usize,
    /// How long shutdown waits for requests in flight before it gives up on them.
    pub shutdown_grace: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
            // Prometheus uses one connection per target, an HA pair two; scripts a few, a
            // load test or a burst of parallel requests (exporter-toolkit's own tests send
            // 300 at once) a few hundred. Half of the slots serves such a burst whole and
            // still leaves the other half to everyone else.
            max_connections_per_address: 512,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            // Scrapers and API clients send well under 1 KiB; 64 KiB leaves room for long
            // cookies or tokens a proxy adds, and keeps a flood of headers cheap to refuse.
            max_header_bytes: 64 * 1024,
            shutdown_grace: Duration::from_secs(10),
        }
    }
}
