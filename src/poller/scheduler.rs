//! The poller: asks DingTalk about due tasks, earliest first, and records what it learns.
//!
//! Tasks wait in a due-time heap (see [`Tracker::take_due`]), so picking the next task costs
//! the same with ten thousand tasks as with ten. At most a bounded number of polls run at
//! once; each app's client paces its calls to `--dingtalk.max-qps`. When the monthly budget
//! or DingTalk's quota holds calls back, the tasks of that quota's scope (the internal apps'
//! organisation, or one corp of a third-party app) pause and keep their order, so the tasks
//! whose information is oldest are asked first when calls resume; other scopes go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Semaphore, watch};

use super::Ports;
pub use super::policy::PollBounds;
use super::policy::{self, Observation, Outlook};
use crate::clock::{ms_to_seconds, now_ms};
use crate::config::PollSettings;
use crate::dingtalk::{
    ApiFailure, Deferral, DeliveryApi, SendProgress, THROTTLE_PAUSE, is_throttle_code,
    is_transient_code,
};
use crate::tracker::{LearnedPace, ResultFetch, SendStatus, Task, TaskKey, TaskState};

/// A quota scope held back by its budget or quota: until when, and its tasks that came due
/// meanwhile, with the due time that gives them back their place in line.
#[derive(Default)]
struct Pause {
    until_ms: i64,
    held: Vec<(TaskKey, i64)>,
}

/// A task whose call was held back: its scope, its place in line and until when to wait.
struct HeldBack {
    scope: String,
    key: TaskKey,
    due_at: i64,
    until_ms: i64,
}

/// Most polls in flight at once; the clients' rate limiters do the real pacing, this only
/// bounds how many tasks wait on them (and so how far `dingtalk_poll_lag_seconds` can hide).
const MAX_IN_FLIGHT: usize = 64;

/// How often ended tasks past their retention are forgotten.
const HOUSEKEEPING_EVERY_MS: i64 = 5_000;

/// A `getsendresult` that failed for a passing reason (network, throttle) is retried this
/// many times before the task is left without recipient counts.
const RESULT_FETCH_ATTEMPTS: u32 = 3;

/// `getsendresult` answers only for tasks sent to at most this many people.
const SEND_RESULT_MAX_RECIPIENTS: u64 = 100;

/// DingTalk's throttles ask callers to wait at least a second.
const THROTTLE_PAUSE_MS: i64 = THROTTLE_PAUSE.as_millis() as i64;

/// Runs the poller until `shutdown` turns true; polls in flight are finished and saved
/// before it returns.
pub async fn run(ports: Arc<Ports>, mut shutdown: watch::Receiver<bool>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Told when a poll gives its slot back, so that a full house waits for that rather
    // than spinning on tasks already due.
    let slot_freed = Arc::new(tokio::sync::Notify::new());
    let tracker = ports.tracker.clone();
    let mut next_housekeeping = 0;
    // The quota scopes whose monthly budget or DingTalk quota holds their calls back.
    let mut paused: HashMap<String, Pause> = HashMap::new();
    let (deferrals_tx, mut deferrals) = tokio::sync::mpsc::unbounded_channel::<HeldBack>();
    // Until when calls are scarce (a budget or a quota held one back lately): due tasks are
    // then served by value rather than by due time.
    let mut scarce_until: Option<i64> = None;

    loop {
        if *shutdown.borrow() {
            break;
        }
        let now = now_ms();
        while let Ok(held) = deferrals.try_recv() {
            let max = ports.apps.poll_settings().max_interval.as_millis() as i64;
            let scarce = held.until_ms.saturating_add(max);
            scarce_until = Some(scarce_until.map_or(scarce, |current| current.max(scarce)));
            let pause = paused.entry(held.scope).or_default();
            pause.until_ms = pause.until_ms.max(held.until_ms);
            pause.held.push((held.key, held.due_at));
        }
        if scarce_until.is_some_and(|until| until <= now) {
            scarce_until = None;
        }
        paused.retain(|_, pause| {
            if pause.until_ms > now {
                return true;
            }
            // Calls resume: the held tasks are due at their old times, oldest first.
            for (key, due_at) in pause.held.drain(..) {
                tracker.requeue(key, due_at);
            }
            false
        });

        if now >= next_housekeeping {
            next_housekeeping = now + HOUSEKEEPING_EVERY_MS;
            let retention = ports.apps.poll_settings().task_retention.as_millis() as i64;
            if let Err(err) = tracker.forget_ended(now, retention).await {
                tracing::warn!(error = %err, "could not forget tasks past their retention");
            }
        }

        let next_due = tracker.next_due_ms();
        let lag_ms = next_due.map_or(0, |due| (now - due).max(0));
        ports.telemetry.record_poll_lag(ms_to_seconds(lag_ms));

        if slots.available_permits() > 0 {
            let due = if scarce_until.is_some() {
                let bounds = poll_bounds(&ports.apps.poll_settings());
                tracker.take_due_ranked(now, slots.available_permits(), |task| {
                    policy::poll_value_rank(task, now, bounds)
                })
            } else {
                tracker.take_due(now, slots.available_permits())
            };
            for task in due {
                if !paused.is_empty() {
                    let scope = ports.apps.quota_scope(task.key.agent_id);
                    if let Some(pause) = paused.get_mut(&scope) {
                        let due_at = task.next_poll_at_ms.unwrap_or(now);
                        pause.held.push((task.key, due_at));
                        continue;
                    }
                }
                let permit = slots.clone().acquire_owned().await.expect("never closed");
                let ports = ports.clone();
                let deferrals = deferrals_tx.clone();
                let slot_freed = slot_freed.clone();
                tokio::spawn(async move {
                    let key = task.key;
                    let due_at = task.next_poll_at_ms.unwrap_or_else(now_ms);
                    let outcome = tokio::spawn(poll_task(ports.clone(), task)).await;
                    match outcome {
                        Ok(PollOutcome::Done(task, finished)) => {
                            let agent_id = task.key.agent_id;
                            let created_at_ms = task.created_at_ms;
                            let recipients = task.recipients_expected;
                            if let Err(err) = ports.tracker.update(vec![*task]).await {
                                tracing::error!(error = %err, "could not save a poll's result; the task will be polled again");
                            } else if let Some(run) = finished {
                                let lesson = |pace: &mut LearnedPace| {
                                    learn_from_run(pace, created_at_ms, recipients, run)
                                };
                                if let Err(err) = ports.tracker.learn_pace(agent_id, lesson).await {
                                    tracing::warn!(error = %err, agent_id, "could not save the pace learned from a finished task");
                                }
                            }
                        }
                        Ok(PollOutcome::HeldBack { until_ms }) => {
                            // Keep its place in line: it is due when its scope's calls resume.
                            let scope = ports.apps.quota_scope(key.agent_id);
                            let held = HeldBack {
                                scope,
                                key,
                                due_at,
                                until_ms,
                            };
                            if let Err(unsent) = deferrals.send(held) {
                                ports.tracker.requeue(key, unsent.0.due_at);
                            }
                        }
                        Err(panic) => {
                            tracing::error!(agent_id = key.agent_id, task_id = key.task_id, error = %panic, "a poll failed unexpectedly; retrying later");
                            let max = ports.apps.poll_settings().max_interval.as_millis() as i64;
                            ports.tracker.requeue(key, now_ms() + max);
                        }
                    }
                    drop(permit);
                    slot_freed.notify_one();
                });
            }
        }

        // Sleep until the next task is due (or, with every slot taken, a slot is freed), a
        // registration wakes us, the pause ends, housekeeping is due, or shutdown.
        let mut wake_at = next_housekeeping;
        if let Some(until) = paused.values().map(|pause| pause.until_ms).min() {
            wake_at = wake_at.min(until);
        }
        if slots.available_permits() > 0
            && let Some(due) = tracker.next_due_ms()
        {
            wake_at = wake_at.min(due.max(now + 1));
        }
        let sleep_ms = (wake_at - now_ms()).clamp(1, HOUSEKEEPING_EVERY_MS) as u64;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(sleep_ms)) => {}
            _ = tracker.wake.notified() => {}
            _ = slot_freed.notified() => {}
            _ = shutdown.changed() => {}
        }
    }

    // Let the polls in flight finish and save their results.
    let _all = slots.acquire_many(MAX_IN_FLIGHT as u32).await;
    // Held tasks go back in line, as the store already has them.
    while let Ok(held) = deferrals.try_recv() {
        tracker.requeue(held.key, held.due_at);
    }
    for (key, due_at) in paused.into_values().flat_map(|pause| pause.held) {
        tracker.requeue(key, due_at);
    }
}

/// What came of one turn of a task.
enum PollOutcome {
    /// The task's new state, to be saved, and its run when this poll saw it finish.
    Done(Box<Task>, Option<FinishedRun>),
    /// The monthly budget or DingTalk's quota held the call back; nothing was sent.
    HeldBack { until_ms: i64 },
}

/// The bounds of the policy from the poll settings in force.
fn poll_bounds(settings: &PollSettings) -> PollBounds {
    PollBounds {
        min_interval_ms: settings.min_interval.as_millis() as i64,
        max_interval_ms: settings.max_interval.as_millis() as i64,
        stall_after_ms: settings.stall_after.as_millis() as i64,
        stalled_interval_ms: settings.stalled_interval.as_millis() as i64,
    }
}

async fn poll_task(ports: Arc<Ports>, mut task: Task) -> PollOutcome {
    let settings = ports.apps.poll_settings();
    let now = now_ms();
    let bounds = poll_bounds(&settings);
    let expires_at = task
        .created_at_ms
        .saturating_add(settings.task_max_age.as_millis() as i64);

    if now >= expires_at {
        // Outside DingTalk's query window: asking again would only spend calls.
        if task.state == TaskState::Active {
            task.state = TaskState::Expired;
            task.ended_at_ms = Some(now);
        }
        task.next_poll_at_ms = None;
        task.expected_completion_at_ms = None;
        return PollOutcome::Done(Box::new(task), None);
    }

    let learned = ports.tracker.learned_pace(task.key.agent_id);
    if place_first_poll(&mut task, learned.as_ref(), bounds, now, expires_at) {
        return PollOutcome::Done(Box::new(task), None);
    }

    let Some(client) = ports.apps.client_for(task.key.agent_id) else {
        tracing::warn!(
            agent_id = task.key.agent_id,
            task_id = task.key.task_id,
            "no app is configured for this agent; configure one (apps[].agent_id or --dingtalk.app-key) to poll it"
        );
        task.next_poll_at_ms = Some((now + bounds.max_interval_ms).min(expires_at));
        return PollOutcome::Done(Box::new(task), None);
    };

    let outcome = match task.state {
        TaskState::Active => {
            let answer = client
                .send_progress(task.key.agent_id, task.key.task_id)
                .await;
            record_progress_answer(
                &mut task,
                answer,
                now_ms(),
                bounds,
                expires_at,
                learned.as_ref(),
            )
        }
        TaskState::Completed => fetch_result(client.as_ref(), &mut task, bounds)
            .await
            .map(|()| None),
        TaskState::Invalid | TaskState::Expired => {
            task.next_poll_at_ms = None;
            Ok(None)
        }
    };
    match outcome {
        Ok(finished) => PollOutcome::Done(Box::new(task), finished),
        Err(until_ms) => PollOutcome::HeldBack { until_ms },
    }
}

/// Places a newly registered task's first poll where its delivery should end (see
/// [`policy::first_poll_delay`]), once, before any call. `true` when that is later than
/// `now`, so there is nothing to ask yet; the task is then due at that moment.
///
/// Pure (no I/O, no clock), like [`record_progress_answer`].
pub fn place_first_poll(
    task: &mut Task,
    learned: Option<&LearnedPace>,
    bounds: PollBounds,
    now: i64,
    expires_at: i64,
) -> bool {
    let never_asked = task.last_poll_at_ms.is_none() && task.metered_calls == 0;
    if task.state != TaskState::Active || task.poll_memory.first_poll_placed || !never_asked {
        return false;
    }
    task.poll_memory.first_poll_placed = true;
    let (delay, expected_run) = policy::first_poll_delay(task.recipients_expected, learned, bounds);
    task.expected_completion_at_ms = expected_run.map(|run| task.created_at_ms.saturating_add(run));
    let first_poll = task.created_at_ms.saturating_add(delay).min(expires_at);
    task.next_poll_at_ms = Some(first_poll.max(now));
    first_poll > now
}

/// A delivery the poller saw finish: when it is estimated to have started and ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FinishedRun {
    pub started_at_ms: i64,
    pub ended_at_ms: i64,
}

/// What a finished delivery teaches about its app: how soon after registration it ended,
/// and, when its recipients are known, how many it reached a second.
pub fn learn_from_run(
    pace: &mut LearnedPace,
    created_at_ms: i64,
    recipients: Option<u64>,
    run: FinishedRun,
) {
    pace.learn_completion(run.ended_at_ms - created_at_ms);
    if let Some(recipients) = recipients {
        pace.learn_pace(recipients, run.ended_at_ms - run.started_at_ms);
    }
}

/// Applies an answer of `getsendprogress` (or its failure) received at `now` to a task:
/// its state, its progress, its expected completion and when to ask next. `learned` is
/// what is known of the pace of its app. `Ok(Some(run))` when the answer shows the delivery
/// finished, to learn from; `Err(until)` when the call was held back by the budget or the
/// quota and the task keeps its place in line.
///
/// Pure (no I/O, no clock), so the call-economy benchmark runs the scheduler's very
/// decisions in virtual time.
pub fn record_progress_answer(
    task: &mut Task,
    answer: Result<SendProgress, ApiFailure>,
    now: i64,
    bounds: PollBounds,
    expires_at: i64,
    learned: Option<&LearnedPace>,
) -> Result<Option<FinishedRun>, i64> {
    let mut memory = task.poll_memory;
    if !matches!(answer, Err(ApiFailure::Deferred { .. })) {
        task.metered_calls += 1;
    }
    let mut finished = None;
    let next_gap = match answer {
        Ok(progress) => {
            let ratio = (progress.percent / 100.0).clamp(0.0, 1.0);
            let status = SendStatus::from_dingtalk(progress.status);
            let changed = task.progress_ratio != Some(ratio) || task.status != Some(status);
            // The registration time stands for "nothing yet" until a first answer shows
            // some progress.
            let first_answer_shows_nothing = task.last_poll_at_ms.is_none() && ratio == 0.0;
            if changed && !first_answer_shows_nothing {
                task.last_progress_change_at_ms = now;
            }
            if status == SendStatus::Completed {
                finished = Some(finished_run(task, now));
            }
            task.progress_ratio = Some(ratio);
            task.status = Some(status);
            task.last_poll_at_ms = Some(now);
            task.last_errcode = Some(0);
            let observation = Observation {
                at_ms: now,
                ratio,
                status,
                changed,
                unchanged_since_ms: task.last_progress_change_at_ms,
            };
            let outlook = Outlook {
                created_at_ms: task.created_at_ms,
                expected_run_ms: policy::expected_run_ms(task.recipients_expected, learned),
            };
            let decision = policy::next_interval(memory, outlook, observation, bounds);
            memory = decision.memory;
            task.expected_completion_at_ms = decision.expected_completion_at_ms;
            if status == SendStatus::Completed {
                task.state = TaskState::Completed;
                task.ended_at_ms = Some(now);
                if task
                    .recipients_expected
                    .is_some_and(|recipients| recipients > SEND_RESULT_MAX_RECIPIENTS)
                {
                    // DingTalk refuses getsendresult for such tasks: asking would only
                    // spend a metered call.
                    task.result_fetch = ResultFetch::TooManyRecipients;
                }
            }
            decision.next_gap_ms
        }
        Err(ApiFailure::Deferred {
            until_ms,
            reason: Deferral::MonthlyBudget | Deferral::QuotaExhausted,
        }) => return Err(until_ms),
        Err(ApiFailure::Deferred { until_ms, .. }) => Some((until_ms - now).max(0)),
        Err(ApiFailure::DingTalk { code: 40035, .. }) => {
            // No such task for this agent: it will never answer otherwise.
            task.state = TaskState::Invalid;
            task.ended_at_ms = Some(now);
            task.last_errcode = Some(40035);
            task.expected_completion_at_ms = None;
            None
        }
        Err(failure) => {
            if let Some(code) = failure.dingtalk_code() {
                task.last_errcode = Some(code);
            }
            let floor = if failure.is_throttle() {
                THROTTLE_PAUSE_MS
            } else {
                0
            };
            Some(policy::retry_interval(&mut memory, bounds, floor))
        }
    };
    task.poll_memory = memory;
    task.next_poll_at_ms = match (task.state, next_gap) {
        // A finished task's recipients are asked for once, right away.
        (TaskState::Completed, _) => (task.result_fetch == ResultFetch::Pending).then_some(now),
        (TaskState::Active, Some(gap)) => Some((now + gap).min(expires_at)),
        _ => None,
    };
    Ok(finished)
}

/// When a delivery that an answer at `now` shows finished started and ended, from what the
/// task knew before that answer. The end is extrapolated from the rate of progress up to
/// the previous answer, within the gap between that answer and this one; the start is the
/// policy's estimate, or the registration.
fn finished_run(task: &Task, now: i64) -> FinishedRun {
    let memory = &task.poll_memory;
    let started_at_ms = memory.started_at_ms.unwrap_or(match memory.anchor_ms {
        // Seen waiting, then finished: it started (and ended) after the wait.
        Some(waiting) if !memory.anchored_running => waiting + (now - waiting) / 2,
        _ => task.created_at_ms,
    });
    let previous = task.last_poll_at_ms.zip(task.progress_ratio);
    let ended_at_ms = match (previous, memory.anchor_ms) {
        (Some((seen_at, seen_ratio)), Some(anchor_at))
            if memory.anchored_running
                && seen_at > anchor_at
                && seen_ratio > memory.anchor_ratio =>
        {
            let rate = (seen_ratio - memory.anchor_ratio) / (seen_at - anchor_at) as f64;
            let to_go = ((1.0 - seen_ratio) / rate) as i64;
            seen_at.saturating_add(to_go).clamp(seen_at, now)
        }
        (Some((seen_at, _)), _) => seen_at + (now - seen_at) / 2,
        (None, _) => started_at_ms + (now - started_at_ms) / 2,
    };
    FinishedRun {
        started_at_ms: started_at_ms.min(ended_at_ms),
        ended_at_ms,
    }
}

/// The one `getsendresult` call of a finished task. A refusal is recorded and not retried;
/// a passing failure is retried a few times.
async fn fetch_result(
    client: &dyn DeliveryApi,
    task: &mut Task,
    bounds: PollBounds,
) -> Result<(), i64> {
    let answer = client
        .send_result(task.key.agent_id, task.key.task_id)
        .await;
    let now = now_ms();
    if !matches!(answer, Err(ApiFailure::Deferred { .. })) {
        task.metered_calls += 1;
    }
    let mut memory = task.poll_memory;
    task.next_poll_at_ms = None;
    match answer {
        Ok(counts) => {
            task.recipients = Some(counts);
            task.result_fetch = ResultFetch::Fetched;
        }
        Err(ApiFailure::Deferred {
            until_ms,
            reason: Deferral::MonthlyBudget | Deferral::QuotaExhausted,
        }) => return Err(until_ms),
        Err(ApiFailure::Deferred { until_ms, .. }) => task.next_poll_at_ms = Some(until_ms),
        Err(failure) => {
            let passing = match &failure {
                ApiFailure::DingTalk { code, .. } => {
                    is_transient_code(*code) || is_throttle_code(*code)
                }
                _ => true,
            };
            memory.result_attempts += 1;
            if passing && memory.result_attempts < RESULT_FETCH_ATTEMPTS {
                let floor = if failure.is_throttle() {
                    THROTTLE_PAUSE_MS
                } else {
                    0
                };
                task.next_poll_at_ms =
                    Some(now + policy::retry_interval(&mut memory, bounds, floor));
            } else if let Some(errcode) = failure.dingtalk_code() {
                task.result_fetch = ResultFetch::Refused { errcode };
            } else {
                task.result_fetch = ResultFetch::Unavailable;
            }
        }
    }
    task.poll_memory = memory;
    Ok(())
}
