//! Every app's credentials checked at start and again whenever the app has been idle for a
//! while: without it, wrong credentials or an unreachable DingTalk would go unnoticed (no
//! `dingtalk_up`, no alert) until the first task is registered. `gettoken` is not metered,
//! so the check costs nothing of the monthly quota.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Ports;

/// How often an idle app's credentials are checked again. Apps that polled a task more
/// recently are skipped: their calls already keep `dingtalk_up` current.
pub const CREDENTIALS_RECHECK: Duration = Duration::from_secs(60);

/// Checks every app's credentials now, then every [`CREDENTIALS_RECHECK`] until `shutdown`.
pub async fn watch_credentials(ports: Arc<Ports>, mut shutdown: watch::Receiver<bool>) {
    let mut first = true;
    loop {
        let idle_for = if first {
            Duration::ZERO
        } else {
            CREDENTIALS_RECHECK
        };
        first = false;
        let checks =
            ports.apps.all_clients().into_iter().map(|client| {
                tokio::spawn(async move { client.check_credentials(idle_for).await })
            });
        for check in checks {
            // The client logs and counts a failure; here it only has to be waited for.
            let _ = check.await;
        }
        tokio::select! {
            _ = tokio::time::sleep(CREDENTIALS_RECHECK) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}
