//! When to ask DingTalk about a task next: the adaptive polling policy.
//!
//! Every `getsendprogress` call is metered against a small monthly quota, so the policy
//! spends calls where they buy freshness and nowhere else:
//!
//! - a new task is first asked about where its delivery should end: from its recipient
//!   count and its app's learned pace, just before the predicted end; from the count alone,
//!   not before DingTalk could have delivered to that many; without one, when the app's
//!   quicker deliveries end; right away when nothing is known; never later than
//!   `--poll.max-interval`;
//! - while it runs, its rate of progress is estimated from DingTalk's answers (measured
//!   from the registration, or from the first sighting of it running), and the next poll is
//!   placed just after the moment it should reach 100% (its expected completion); an early
//!   guess is corrected by the next answer, so the polls close in on the completion;
//! - a task first seen running after a wait is looked at again within the time just
//!   waited, since one sighting cannot tell how long ago it started;
//! - while nothing changes the gap doubles, from `--poll.min-interval` up to
//!   `--poll.max-interval`, which bounds how late a stall, a start or a completion is seen;
//!   after three max intervals without a change up to twice that; a task that has not
//!   started yet is looked at at least every quarter of the max interval for its first
//!   three max intervals (deliveries usually start within minutes, and a short one
//!   finishes soon after);
//! - a task unchanged for `--poll.stall-after` is polled every `--poll.stalled-interval`,
//!   the first of those polls landing on the threshold; any change returns it to the above;
//! - a finished task's progress is never asked again.
//!
//! The policy is a pure function of the task's history and the current time, so the same
//! code runs in the exporter and in the call-economy benchmark's virtual time.

use crate::tracker::{LearnedPace, PollMemory, SendStatus, Task, TaskState};

/// The bounds the policy works within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollBounds {
    pub min_interval_ms: i64,
    pub max_interval_ms: i64,
    /// Progress unchanged this long marks a task stalled (`--poll.stall-after`).
    pub stall_after_ms: i64,
    /// The gap between polls of a stalled task (`--poll.stalled-interval`); never shorter
    /// than the max interval.
    pub stalled_interval_ms: i64,
}

impl PollBounds {
    fn stalled_gap_ms(&self) -> i64 {
        self.stalled_interval_ms.max(self.max_interval_ms)
    }
}

/// One answer of `getsendprogress` as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub at_ms: i64,
    pub ratio: f64,
    pub status: SendStatus,
    /// Whether ratio or status differ from the previous answer.
    pub changed: bool,
    /// When the progress last changed (the registration until it first moves), this answer
    /// included.
    pub unchanged_since_ms: i64,
}

/// What is known of a task apart from its answers.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Outlook {
    pub created_at_ms: i64,
    /// How long its delivery should run, from its recipients and its app's learned pace.
    pub expected_run_ms: Option<i64>,
}

/// What the policy decided after an answer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decision {
    /// The gap until the next progress poll; `None` when the task is finished.
    pub next_gap_ms: Option<i64>,
    /// When the delivery should reach 100%, if there is an estimate.
    pub expected_completion_at_ms: Option<i64>,
    pub memory: PollMemory,
}

/// How many max intervals a task may wait to start while it is watched closely.
const NOT_STARTED_PATIENCE: i64 = 3;

/// How many max intervals without a change make a task quiet: polled at twice the max
/// interval until it counts as stalled.
const QUIET_AFTER_MAX_INTERVALS: i64 = 3;

/// DingTalk delivers to at most 5,000 recipients a minute: no delivery runs faster.
const FASTEST_RECIPIENTS_PER_MINUTE: i64 = 5_000;

/// The share of a predicted run after which a task is first looked at: early enough that
/// a pace a little slower than learned is not overshot, late enough that the answer shows
/// how far it got, which places the next poll at the end.
const FIRST_LOOK_SHARE: f64 = 0.85;

/// Margin added past the estimated completion so that the poll lands after it, not just
/// before it: 5% of the remaining time, at least one second.
fn completion_margin_ms(remaining_ms: i64) -> i64 {
    (remaining_ms / 20).max(1000)
}

/// How long a delivery to `recipients` people should run for an app delivering at
/// `learned`'s pace.
pub fn expected_run_ms(recipients: Option<u64>, learned: Option<&LearnedPace>) -> Option<i64> {
    let per_second = learned?.recipients_per_second()?;
    let recipients = recipients? as f64;
    (per_second > 0.0).then(|| (recipients / per_second * 1000.0).round() as i64)
}

/// Where a newly registered task is first looked at, counted from its registration, and
/// when its delivery should end (`None`: no estimate).
///
/// With a recipient count and a learned pace, just before the predicted end; with a
/// recipient count alone, not before DingTalk could have delivered to that many; without
/// one, when the app's quicker deliveries end. Never later than the max interval, and at
/// once when nothing is known.
pub fn first_poll_delay(
    recipients: Option<u64>,
    learned: Option<&LearnedPace>,
    bounds: PollBounds,
) -> (i64, Option<i64>) {
    let expected_run = expected_run_ms(recipients, learned);
    let delay = match (recipients, expected_run) {
        (_, Some(run)) => (run as f64 * FIRST_LOOK_SHARE).round() as i64,
        (Some(recipients), None) => {
            let recipients = i64::try_from(recipients).unwrap_or(i64::MAX);
            recipients.saturating_mul(60_000) / FASTEST_RECIPIENTS_PER_MINUTE
        }
        (None, None) => learned
            .and_then(LearnedPace::quick_completion_ms)
            .unwrap_or(0),
    };
    (delay.clamp(0, bounds.max_interval_ms), expected_run)
}

/// The gap until the next progress poll after an answer, the updated memory and the
/// expected completion.
pub fn next_interval(
    memory: PollMemory,
    outlook: Outlook,
    observation: Observation,
    bounds: PollBounds,
) -> Decision {
    let PollBounds {
        min_interval_ms: min,
        max_interval_ms: max,
        ..
    } = bounds;
    let created_at_ms = outlook.created_at_ms;
    let at = observation.at_ms;
    let mut memory = memory;
    let unchanged_for = at - observation.unchanged_since_ms;
    // Quiet for a while: the first answer that showed no change saw the stall, and alerts
    // on a quarter of an hour without change have had an answer past their threshold. Until
    // --poll.stall-after, it is watched for a recovery at twice the max interval.
    let quiet = !observation.changed && unchanged_for >= QUIET_AFTER_MAX_INTERVALS * max;
    let backoff_cap = if quiet {
        max.saturating_mul(2).min(bounds.stalled_gap_ms())
    } else {
        max
    };
    let backoff = |memory: &PollMemory| {
        if memory.last_interval_ms <= 0 {
            min
        } else {
            memory
                .last_interval_ms
                .saturating_mul(2)
                .clamp(min, backoff_cap)
        }
    };
    // Unchanged for --poll.stall-after: stalled (or never started). Polled at the stalled
    // interval; one poll lands right at the threshold, so alerts on the age of the last
    // change see it on time.
    let stalled = !observation.changed && unchanged_for >= bounds.stall_after_ms;
    let before_threshold = |gap: i64| {
        let to_threshold = bounds.stall_after_ms - unchanged_for;
        if to_threshold > 0 {
            gap.min(to_threshold.max(min))
        } else {
            gap
        }
    };
    let mut expected_completion = None;

    let interval = match observation.status {
        SendStatus::Completed => {
            return Decision {
                next_gap_ms: None,
                expected_completion_at_ms: None,
                memory,
            };
        }
        SendStatus::NotStarted => {
            memory.anchor_ms = Some(at);
            memory.anchor_ratio = 0.0;
            memory.anchored_running = false;
            expected_completion = outlook.expected_run_ms.map(|run| at.saturating_add(run));
            if stalled {
                expected_completion = None;
                bounds.stalled_gap_ms()
            } else {
                // A delivery usually starts within minutes, and a short one finishes soon
                // after: while the task is young, look for its start at least every quarter
                // of the max interval. One that has waited longer is polled like any stall.
                let age_ms = at - created_at_ms;
                let cap = if age_ms < NOT_STARTED_PATIENCE * max {
                    (max / 4).max(min)
                } else {
                    backoff_cap
                };
                before_threshold(backoff(&memory).min(cap))
            }
        }
        SendStatus::InProgress => {
            // Without an earlier answer, measure from the registration: the send was
            // (nearly always) made just before it. After a wait, the start lies somewhere
            // between the last "not started" and now: take the middle.
            let (anchor_ms, anchor_ratio) = match memory.anchor_ms {
                None => (created_at_ms, 0.0),
                Some(seen) if !memory.anchored_running => (seen + (at - seen) / 2, 0.0),
                Some(seen) => (seen, memory.anchor_ratio),
            };
            // A rate guessed from one sighting right after a wait can be far off (the
            // start may have been a moment ago): look again within the time just waited,
            // and estimate from two sightings of it running.
            let first_sighting_after_wait = memory.anchor_ms.is_some() && !memory.anchored_running;
            let evidence_cap = if first_sighting_after_wait {
                (at - memory.anchor_ms.unwrap_or(at)).max(min)
            } else {
                max
            };
            if !memory.anchored_running {
                memory.started_at_ms = Some(anchor_ms);
                memory.anchor_ms = Some(at);
                memory.anchor_ratio = observation.ratio;
                memory.anchored_running = true;
            }
            let started = memory.started_at_ms.unwrap_or(created_at_ms);
            let elapsed_ms = at - anchor_ms;
            let progressed = observation.ratio - anchor_ratio;
            if stalled {
                bounds.stalled_gap_ms()
            } else if !observation.changed && memory.last_interval_ms > 0 {
                // No progress since the last answer: it may have stalled. Back off, but
                // never beyond max, so a stall is seen within one max interval.
                before_threshold(backoff(&memory))
            } else if progressed > 0.0 && elapsed_ms > 0 {
                let remaining_ratio = (1.0 - observation.ratio).max(0.0);
                let remaining_ms = (remaining_ratio / progressed * elapsed_ms as f64) as i64;
                expected_completion = Some(at.saturating_add(remaining_ms));
                (remaining_ms + completion_margin_ms(remaining_ms))
                    .min(evidence_cap)
                    .clamp(min, max)
            } else if let Some(run) = outlook.expected_run_ms {
                // Running, but no visible progress yet: the pace learned from the app's
                // other deliveries says when to look again.
                let end = started.saturating_add(run);
                expected_completion = Some(end.max(at));
                let first_look = started.saturating_add((run as f64 * FIRST_LOOK_SHARE) as i64);
                (first_look - at).max(backoff(&memory)).clamp(min, max)
            } else {
                backoff(&memory)
            }
        }
    };
    memory.last_interval_ms = interval;
    Decision {
        next_gap_ms: Some(interval),
        expected_completion_at_ms: expected_completion,
        memory,
    }
}

/// How much a poll of this task is worth when calls are scarce (lower is served first):
/// a delivery whose predicted end has passed, then running ones, then those waiting to
/// start, and tasks stalled for `--poll.stall-after` last.
pub fn poll_value_rank(task: &Task, now_ms: i64, bounds: PollBounds) -> u8 {
    if task.state != TaskState::Active {
        // A finished task's one result fetch: cheap to serve and final.
        return 1;
    }
    let unchanged_for = now_ms - task.last_progress_change_at_ms;
    if task.last_poll_at_ms.is_some() && unchanged_for >= bounds.stall_after_ms {
        return 3;
    }
    if task
        .expected_completion_at_ms
        .is_some_and(|end| end <= now_ms)
    {
        return 0;
    }
    match task.status {
        Some(SendStatus::NotStarted) => 2,
        _ => 1,
    }
}

/// The gap after a failed poll: double the last gap within the bounds, and at least
/// `floor_ms` (DingTalk's throttles ask for a pause of at least a second).
pub fn retry_interval(memory: &mut PollMemory, bounds: PollBounds, floor_ms: i64) -> i64 {
    let interval = if memory.last_interval_ms <= 0 {
        bounds.min_interval_ms
    } else {
        memory
            .last_interval_ms
            .saturating_mul(2)
            .clamp(bounds.min_interval_ms, bounds.max_interval_ms)
    }
    .max(floor_ms);
    memory.last_interval_ms = interval;
    interval
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: PollBounds = PollBounds {
        min_interval_ms: 5_000,
        max_interval_ms: 300_000,
        stall_after_ms: 3_600_000,
        stalled_interval_ms: 1_800_000,
    };

    /// An answer; a changed one counts as the last change.
    fn observe(at_ms: i64, ratio: f64, status: SendStatus, changed: bool) -> Observation {
        Observation {
            at_ms,
            ratio,
            status,
            changed,
            unchanged_since_ms: if changed { at_ms } else { 0 },
        }
    }

    fn outlook() -> Outlook {
        Outlook::default()
    }

    /// `next_interval` for a task registered at 0 with no recipient count, as the old
    /// `(gap, memory)` pair.
    fn answer(memory: PollMemory, observation: Observation) -> (Option<i64>, PollMemory) {
        let decision = next_interval(memory, outlook(), observation, BOUNDS);
        (decision.next_gap_ms, decision.memory)
    }

    /// A finished task is never polled for progress again.
    #[test]
    fn completed_tasks_are_not_polled_again() {
        let (next, _) = answer(
            PollMemory::default(),
            observe(10_000, 1.0, SendStatus::Completed, true),
        );
        assert_eq!(next, None);
    }

    /// A task running at a steady pace is next polled just after its expected completion.
    #[test]
    fn steady_progress_is_polled_near_completion() {
        // Registered at 0, 25% after 60 s: 180 s to go.
        let (next, memory) = answer(
            PollMemory::default(),
            observe(60_000, 0.25, SendStatus::InProgress, true),
        );
        let next = next.unwrap();
        assert!(
            (180_000..=200_000).contains(&next),
            "next poll in {next} ms"
        );
        assert_eq!(memory.anchor_ms, Some(60_000));
    }

    /// A task that makes no progress is polled less and less often, but at least every
    /// max interval for its first three max intervals without change (so a stall is seen
    /// in time), then at least every two until it counts as stalled.
    #[test]
    fn stalled_tasks_back_off_up_to_the_max_interval() {
        let mut memory = PollMemory::default();
        let mut at = 0;
        let mut gaps = Vec::new();
        while at < BOUNDS.stall_after_ms {
            let (next, updated) = answer(memory, observe(at, 0.4, SendStatus::InProgress, at == 0));
            memory = updated;
            let gap = next.unwrap();
            gaps.push((at, gap));
            at += gap;
        }
        let quiet_from = 3 * BOUNDS.max_interval_ms;
        for (start, gap) in &gaps {
            let cap = if *start < quiet_from { 1 } else { 2 } * BOUNDS.max_interval_ms;
            assert!(*gap <= cap, "{gaps:?}");
        }
        assert!(gaps.iter().any(|(_, gap)| *gap == BOUNDS.max_interval_ms));
        assert!(
            gaps.iter()
                .any(|(_, gap)| *gap == 2 * BOUNDS.max_interval_ms)
        );
        assert_eq!(at, BOUNDS.stall_after_ms, "a poll lands on the threshold");
    }

    /// A task that has not started backs off from the min interval.
    #[test]
    fn not_started_tasks_back_off_from_the_min_interval() {
        let (first, memory) = answer(
            PollMemory::default(),
            observe(0, 0.0, SendStatus::NotStarted, true),
        );
        assert_eq!(first, Some(BOUNDS.min_interval_ms));
        let (second, _) = answer(memory, observe(5_000, 0.0, SendStatus::NotStarted, false));
        assert_eq!(second, Some(2 * BOUNDS.min_interval_ms));
    }

    /// A task that starts late is looked at again soon after it is first seen running,
    /// instead of trusting a rate guessed from one sighting.
    #[test]
    fn delayed_starts_are_checked_again_soon() {
        // Seen waiting at 600 s, running at 10% at 620 s: look again within 20 s.
        let (_, memory) = answer(
            PollMemory::default(),
            observe(600_000, 0.0, SendStatus::NotStarted, true),
        );
        let (next, memory) = answer(memory, observe(620_000, 0.1, SendStatus::InProgress, true));
        assert_eq!(next, Some(20_000));
        // Two sightings later, 20% at 640 s: the rate is known, 160 s to go.
        let (next, _) = answer(memory, observe(640_000, 0.2, SendStatus::InProgress, true));
        let next = next.unwrap();
        assert!(
            (160_000..=175_000).contains(&next),
            "next poll in {next} ms"
        );
    }

    /// A task still waiting to start is looked at every quarter of the max interval while
    /// young, then at most every max interval, and at the stalled interval once nothing has
    /// changed for --poll.stall-after.
    #[test]
    fn young_waiting_tasks_are_watched_closer_than_stuck_ones() {
        let memory = PollMemory {
            last_interval_ms: BOUNDS.max_interval_ms / 4,
            ..PollMemory::default()
        };
        let (young, _) = answer(memory, observe(600_000, 0.0, SendStatus::NotStarted, false));
        assert_eq!(young, Some(BOUNDS.max_interval_ms / 4));
        let (waiting, _) = answer(
            memory,
            observe(20 * 60_000, 0.0, SendStatus::NotStarted, false),
        );
        assert_eq!(waiting, Some(BOUNDS.max_interval_ms / 2));
        let (stuck, _) = answer(
            memory,
            observe(3 * 3_600_000, 0.0, SendStatus::NotStarted, false),
        );
        assert_eq!(stuck, Some(BOUNDS.stalled_interval_ms));
    }

    /// A running task whose progress has not moved for --poll.stall-after is polled at the
    /// stalled interval, and at the max-interval pace again as soon as it moves.
    #[test]
    fn stalled_tasks_are_polled_at_the_stalled_interval_until_they_move() {
        let memory = PollMemory {
            anchor_ms: Some(60_000),
            anchor_ratio: 0.2,
            anchored_running: true,
            last_interval_ms: BOUNDS.max_interval_ms,
            ..PollMemory::default()
        };
        let stalled = Observation {
            at_ms: 60_000 + BOUNDS.stall_after_ms,
            ratio: 0.4,
            status: SendStatus::InProgress,
            changed: false,
            unchanged_since_ms: 60_000,
        };
        let decision = next_interval(memory, outlook(), stalled, BOUNDS);
        assert_eq!(decision.next_gap_ms, Some(BOUNDS.stalled_interval_ms));
        assert_eq!(decision.expected_completion_at_ms, None);

        let moved = Observation {
            at_ms: stalled.at_ms + BOUNDS.stalled_interval_ms,
            ratio: 0.5,
            changed: true,
            unchanged_since_ms: stalled.at_ms + BOUNDS.stalled_interval_ms,
            ..stalled
        };
        let decision = next_interval(decision.memory, outlook(), moved, BOUNDS);
        let gap = decision.next_gap_ms.unwrap();
        assert!(gap <= BOUNDS.max_interval_ms, "{gap}");
        assert!(decision.expected_completion_at_ms.is_some());
    }

    /// While nothing changes, one poll lands exactly when --poll.stall-after has passed, so
    /// alerts on the age of the last change see the stall on time.
    #[test]
    fn a_poll_lands_on_the_stall_threshold() {
        let memory = PollMemory {
            anchor_ms: Some(0),
            anchored_running: true,
            last_interval_ms: BOUNDS.max_interval_ms,
            ..PollMemory::default()
        };
        let observation = Observation {
            at_ms: BOUNDS.stall_after_ms - 120_000,
            ratio: 0.3,
            status: SendStatus::InProgress,
            changed: false,
            unchanged_since_ms: 0,
        };
        let decision = next_interval(memory, outlook(), observation, BOUNDS);
        assert_eq!(decision.next_gap_ms, Some(120_000));
    }

    /// With a recipient count and a learned pace the first poll goes just before the
    /// predicted end, with that end as the estimate; with a count alone not before DingTalk
    /// could have delivered; without one when the app's quick deliveries end; never later
    /// than the max interval; at once when nothing is known.
    #[test]
    fn the_first_poll_is_placed_from_what_is_known() {
        let mut learned = LearnedPace::default();
        learned.learn_pace(100, 10_000); // 10 recipients a second
        learned.learn_completion(20_000);

        let (delay, run) = first_poll_delay(Some(600), Some(&learned), BOUNDS);
        assert_eq!(run, Some(60_000));
        assert_eq!(delay, 51_000);

        let (delay, run) = first_poll_delay(Some(60_000), Some(&learned), BOUNDS);
        assert_eq!(run, Some(6_000_000));
        assert_eq!(delay, BOUNDS.max_interval_ms);

        assert_eq!(first_poll_delay(Some(2_500), None, BOUNDS), (30_000, None));
        assert_eq!(
            first_poll_delay(None, Some(&learned), BOUNDS),
            (20_000, None)
        );
        assert_eq!(first_poll_delay(None, None, BOUNDS), (0, None));
    }

    /// A running task's expected completion follows from its rate of progress.
    #[test]
    fn the_expected_completion_follows_the_rate_of_progress() {
        let decision = next_interval(
            PollMemory::default(),
            outlook(),
            observe(60_000, 0.25, SendStatus::InProgress, true),
            BOUNDS,
        );
        assert_eq!(decision.expected_completion_at_ms, Some(240_000));
    }

    /// A task running without visible progress yet is looked at again when the learned
    /// pace says it is nearly done, not by probing from the start.
    #[test]
    fn the_learned_pace_places_polls_before_progress_shows() {
        let outlook = Outlook {
            created_at_ms: 0,
            expected_run_ms: Some(200_000),
        };
        let decision = next_interval(
            PollMemory::default(),
            outlook,
            observe(1_000, 0.0, SendStatus::InProgress, true),
            BOUNDS,
        );
        assert_eq!(decision.next_gap_ms, Some(169_000));
        assert_eq!(decision.expected_completion_at_ms, Some(200_000));
    }

    /// When calls are scarce, overdue deliveries go first, then running ones, then waiting
    /// ones, and long-stalled ones last.
    #[test]
    fn scarce_calls_go_to_the_most_valuable_polls_first() {
        let now = 10 * 3_600_000;
        let key = crate::tracker::TaskKey {
            agent_id: 1,
            task_id: 1,
        };
        let mut running = Task::registered(key, String::new(), now - 600_000);
        running.status = Some(SendStatus::InProgress);
        running.last_poll_at_ms = Some(now - 60_000);
        running.last_progress_change_at_ms = now - 60_000;
        let mut overdue = running.clone();
        overdue.expected_completion_at_ms = Some(now - 1_000);
        let mut waiting = running.clone();
        waiting.status = Some(SendStatus::NotStarted);
        let mut stalled = running.clone();
        stalled.last_progress_change_at_ms = now - 2 * BOUNDS.stall_after_ms;
        let ranks: Vec<u8> = [&overdue, &running, &waiting, &stalled]
            .iter()
            .map(|task| poll_value_rank(task, now, BOUNDS))
            .collect();
        assert!(ranks.windows(2).all(|pair| pair[0] < pair[1]), "{ranks:?}");
    }

    /// Very fast or very slow estimates stay within the configured bounds.
    #[test]
    fn estimates_are_clamped_to_the_bounds() {
        let (fast, _) = answer(
            PollMemory::default(),
            observe(1_000, 0.99, SendStatus::InProgress, true),
        );
        assert_eq!(fast, Some(BOUNDS.min_interval_ms));
        let (slow, _) = answer(
            PollMemory::default(),
            observe(3_600_000, 0.01, SendStatus::InProgress, true),
        );
        assert_eq!(slow, Some(BOUNDS.max_interval_ms));
    }

    /// Failed polls back off but honour a throttle's minimum pause.
    #[test]
    fn retries_back_off_with_a_floor() {
        let mut memory = PollMemory::default();
        assert_eq!(retry_interval(&mut memory, BOUNDS, 0), 5_000);
        assert_eq!(retry_interval(&mut memory, BOUNDS, 0), 10_000);
        let tight = PollBounds {
            min_interval_ms: 100,
            max_interval_ms: 500,
            ..BOUNDS
        };
        let mut memory = PollMemory::default();
        assert_eq!(retry_interval(&mut memory, tight, 1_000), 1_000);
    }
}
