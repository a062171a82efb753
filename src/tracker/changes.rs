//! Keeps a replica's tasks in memory in step with the shared database: every change another
//! replica commits arrives as a notification and is read back at once, so a registration
//! through any replica is on every replica's `/metrics` and task API within a second.
//!
//! Notifications are not queued for a replica that is not listening, so after every
//! (re)connection, and every [`RESYNC_EVERY`] besides, the whole table is read again.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::postgres::{PostgresTarget, TASK_CHANNEL};
use super::registry::Tracker;
use super::task::TaskKey;

/// A full read of the tasks at this interval, in case a notification went missing.
const RESYNC_EVERY: Duration = Duration::from_secs(60);

/// How long to wait before listening again after the connection broke.
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// A notification's payload: the replica whose connection made the change, and the task.
fn parse(payload: &str) -> Option<(&str, TaskKey)> {
    let mut parts = payload.rsplitn(3, ' ');
    let task_id = parts.next()?.parse().ok()?;
    let agent_id = parts.next()?.parse().ok()?;
    let replica = parts.next()?;
    Some((replica, TaskKey { agent_id, task_id }))
}

/// Follows the other replicas' changes until `shutdown`.
pub async fn follow(
    tracker: Arc<Tracker>,
    target: PostgresTarget,
    replica: String,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut warned = false;
    while !*shutdown.borrow() {
        let mut listening = match target.listen(TASK_CHANNEL).await {
            Ok(listening) => listening,
            Err(err) => {
                if !warned {
                    tracing::warn!(error = %err, "cannot listen for other replicas' registrations; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_AFTER) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        if warned {
            tracing::info!("listening for other replicas' registrations again");
            warned = false;
        }
        // Whatever changed while nobody listened.
        if let Err(err) = tracker.resync().await {
            tracing::warn!(error = %err, "cannot read the shared tasks again");
        }
        let mut resync = tokio::time::interval(RESYNC_EVERY);
        resync.tick().await;
        loop {
            tokio::select! {
                note = listening.notes.recv() => {
                    let Some(note) = note else {
                        tracing::warn!("the connection listening for other replicas' registrations ended; reconnecting");
                        break;
                    };
                    let Some((from, key)) = parse(note.payload()) else {
                        continue;
                    };
                    if from == replica {
                        continue;
                    }
                    if let Err(err) = tracker.absorb(key).await {
                        tracing::warn!(error = %err, agent_id = key.agent_id, task_id = key.task_id, "cannot read a task another replica changed");
                    }
                }
                _ = resync.tick() => {
                    if let Err(err) = tracker.resync().await {
                        tracing::warn!(error = %err, "cannot read the shared tasks again");
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload names the replica (which may hold spaces) and the task; anything else is
    /// ignored rather than misread.
    #[test]
    fn payloads_name_the_replica_and_the_task() {
        assert_eq!(
            parse("pod a-12 2839445214 256271667526"),
            Some((
                "pod a-12",
                TaskKey {
                    agent_id: 2_839_445_214,
                    task_id: 256_271_667_526
                }
            ))
        );
        assert_eq!(parse("replica 7 x"), None);
        assert_eq!(parse("7"), None);
    }
}
