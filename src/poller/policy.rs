//! When to ask DingTalk about a task next: the adaptive polling policy.
//!
//! Every `getsendprogress` call is metered against a small monthly quota, so the policy
//! spends calls where they buy freshness and nowhere else:
//!
//! - a task is first asked about right after it is registered;
//! - while it runs, its rate of progress is estimated from DingTalk's answers (measured
//!   from the registration, or from the first sighting of it running), and the next poll is
//!   placed just after the moment it should reach 100%; an early guess is corrected by the
//!   next answer, so the polls close in on the completion;
//! - a task first seen running after a wait is looked at again within the time just
//!   waited, since one sighting cannot tell how long ago it started;
//! - while nothing changes the gap doubles, from `--poll.min-interval` up to
//!   `--poll.max-interval`, which bounds how late a stall, a start or a completion is seen;
//!   a task that has not started yet is looked at at least every quarter of the max
//!   interval for its first six max intervals (deliveries usually start within minutes,
//!   and a short one finishes soon after), then like any stall;
//! - a finished task's progress is never asked again.
//!
//! The policy is a pure function of the task's history and the current time, so the same
//! code runs in the exporter and in the call-economy benchmark's virtual time.

use crate::tracker::{PollMemory, SendStatus};

/// The bounds the policy works within.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PollBounds {
    pub min_interval_ms: i64,
    pub max_interval_ms: i64,
}

/// One answer of `getsendprogress` as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    pub at_ms: i64,
    pub ratio: f64,
    pub status: SendStatus,
    /// Whether ratio or status differ from the previous answer.
    pub changed: bool,
}

/// How many max intervals a task may wait to start before it is treated as stuck.
const NOT_STARTED_PATIENCE: i64 = 6;

/// Margin added past the estimated completion so that the poll lands after it, not just
/// before it: 5% of the remaining time, at least one second.
fn completion_margin_ms(remaining_ms: i64) -> i64 {
    (remaining_ms / 20).max(1000)
}

/// The gap until the next progress poll after an answer, and the updated memory. `None`
/// when the task is finished and its progress needs no more polls.
pub fn next_interval(
    memory: PollMemory,
    created_at_ms: i64,
    observation: Observation,
    bounds: PollBounds,
) -> (Option<i64>, PollMemory) {
    let PollBounds {
        min_interval_ms: min,
        max_interval_ms: max,
    } = bounds;
    let mut memory = memory;
    let backoff = |memory: &PollMemory| {
        if memory.last_interval_ms <= 0 {
            min
        } else {
            memory.last_interval_ms.saturating_mul(2).clamp(min, max)
        }
    };

    let interval = match observation.status {
        SendStatus::Completed => return (None, memory),
        SendStatus::NotStarted => {
            memory.anchor_ms = Some(observation.at_ms);
            memory.anchor_ratio = 0.0;
            memory.anchored_running = false;
            // A delivery usually starts within minutes, and a short one finishes soon
            // after: while the task is young, look for its start at least every quarter
            // of the max interval. One that has waited far longer is stuck, and is polled
            // like any stall.
            let age_ms = observation.at_ms - created_at_ms;
            let cap = if age_ms < NOT_STARTED_PATIENCE * max {
                (max / 4).max(min)
            } else {
                max
            };
            backoff(&memory).min(cap)
        }
        SendStatus::InProgress => {
            // Without an earlier answer, measure from the registration: the send was
            // (nearly always) made just before it. After a wait, the start lies somewhere
            // between the last "not started" and now: take the middle.
            let (anchor_ms, anchor_ratio) = match memory.anchor_ms {
                None => (created_at_ms, 0.0),
                Some(at) if !memory.anchored_running => (at + (observation.at_ms - at) / 2, 0.0),
                Some(at) => (at, memory.anchor_ratio),
            };
            // A rate guessed from one sighting right after a wait can be far off (the
            // start may have been a moment ago): look again within the time just waited,
            // and estimate from two sightings of it running.
            let first_sighting_after_wait = memory.anchor_ms.is_some() && !memory.anchored_running;
            let evidence_cap = if first_sighting_after_wait {
                (observation.at_ms - memory.anchor_ms.unwrap_or(observation.at_ms)).max(min)
            } else {
                max
            };
            if !memory.anchored_running {
                memory.anchor_ms = Some(observation.at_ms);
                memory.anchor_ratio = observation.ratio;
                memory.anchored_running = true;
            }
            let elapsed_ms = observation.at_ms - anchor_ms;
            let progressed = observation.ratio - anchor_ratio;
            if !observation.changed && memory.last_interval_ms > 0 {
                // No progress since the last answer: it may have stalled. Back off, but
                // never beyond max, so a stall is seen within one max interval.
                backoff(&memory)
            } else if progressed > 0.0 && elapsed_ms > 0 {
                let remaining_ratio = (1.0 - observation.ratio).max(0.0);
                let remaining_ms = (remaining_ratio / progressed * elapsed_ms as f64) as i64;
                (remaining_ms + completion_margin_ms(remaining_ms))
                    .min(evidence_cap)
                    .clamp(min, max)
            } else {
                backoff(&memory)
            }
        }
    };
    memory.last_interval_ms = interval;
    (Some(interval), memory)
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
    };

    fn observe(at_ms: i64, ratio: f64, status: SendStatus, changed: bool) -> Observation {
        Observation {
            at_ms,
            ratio,
            status,
            changed,
        }
    }

    /// A finished task is never polled for progress again.
    #[test]
    fn completed_tasks_are_not_polled_again() {
        let (next, _) = next_interval(
            PollMemory::default(),
            0,
            observe(10_000, 1.0, SendStatus::Completed, true),
            BOUNDS,
        );
        assert_eq!(next, None);
    }

    /// A task running at a steady pace is next polled just after its expected completion.
    #[test]
    fn steady_progress_is_polled_near_completion() {
        // Registered at 0, 25% after 60 s: 180 s to go.
        let (next, memory) = next_interval(
            PollMemory::default(),
            0,
            observe(60_000, 0.25, SendStatus::InProgress, true),
            BOUNDS,
        );
        let next = next.unwrap();
        assert!(
            (180_000..=200_000).contains(&next),
            "next poll in {next} ms"
        );
        assert_eq!(memory.anchor_ms, Some(60_000));
    }

    /// A task that makes no progress is polled less and less often, but at least every
    /// max interval, so a stall is always seen in time.
    #[test]
    fn stalled_tasks_back_off_up_to_the_max_interval() {
        let mut memory = PollMemory::default();
        let mut at = 0;
        let mut gaps = Vec::new();
        for round in 0..12 {
            let (next, updated) = next_interval(
                memory,
                0,
                observe(at, 0.4, SendStatus::InProgress, round == 0),
                BOUNDS,
            );
            memory = updated;
            let gap = next.unwrap();
            gaps.push(gap);
            at += gap;
        }
        assert!(gaps.windows(2).all(|pair| pair[1] >= pair[0]), "{gaps:?}");
        assert_eq!(*gaps.last().unwrap(), BOUNDS.max_interval_ms);
        assert!(gaps.iter().all(|gap| *gap <= BOUNDS.max_interval_ms));
    }

    /// A task that has not started backs off from the min interval.
    #[test]
    fn not_started_tasks_back_off_from_the_min_interval() {
        let (first, memory) = next_interval(
            PollMemory::default(),
            0,
            observe(0, 0.0, SendStatus::NotStarted, true),
            BOUNDS,
        );
        assert_eq!(first, Some(BOUNDS.min_interval_ms));
        let (second, _) = next_interval(
            memory,
            0,
            observe(5_000, 0.0, SendStatus::NotStarted, false),
            BOUNDS,
        );
        assert_eq!(second, Some(2 * BOUNDS.min_interval_ms));
    }

    /// A task that starts late is looked at again soon after it is first seen running,
    /// instead of trusting a rate guessed from one sighting.
    #[test]
    fn delayed_starts_are_checked_again_soon() {
        // Seen waiting at 600 s, running at 10% at 620 s: look again within 20 s.
        let (_, memory) = next_interval(
            PollMemory::default(),
            0,
            observe(600_000, 0.0, SendStatus::NotStarted, true),
            BOUNDS,
        );
        let (next, memory) = next_interval(
            memory,
            0,
            observe(620_000, 0.1, SendStatus::InProgress, true),
            BOUNDS,
        );
        assert_eq!(next, Some(20_000));
        // Two sightings later, 20% at 640 s: the rate is known, 160 s to go.
        let (next, _) = next_interval(
            memory,
            0,
            observe(640_000, 0.2, SendStatus::InProgress, true),
            BOUNDS,
        );
        let next = next.unwrap();
        assert!(
            (160_000..=175_000).contains(&next),
            "next poll in {next} ms"
        );
    }

    /// A task still waiting to start is looked at every quarter of the max interval while
    /// young, and only every max interval once it is clearly stuck.
    #[test]
    fn young_waiting_tasks_are_watched_closer_than_stuck_ones() {
        let mut memory = PollMemory {
            last_interval_ms: BOUNDS.max_interval_ms,
            ..PollMemory::default()
        };
        let (young, updated) = next_interval(
            memory,
            0,
            observe(600_000, 0.0, SendStatus::NotStarted, false),
            BOUNDS,
        );
        assert_eq!(young, Some(BOUNDS.max_interval_ms / 4));
        memory = updated;
        let (stuck, _) = next_interval(
            memory,
            0,
            observe(3 * 3_600_000, 0.0, SendStatus::NotStarted, false),
            BOUNDS,
        );
        assert_eq!(stuck, Some(BOUNDS.max_interval_ms / 2));
    }

    /// Very fast or very slow estimates stay within the configured bounds.
    #[test]
    fn estimates_are_clamped_to_the_bounds() {
        let (fast, _) = next_interval(
            PollMemory::default(),
            0,
            observe(1_000, 0.99, SendStatus::InProgress, true),
            BOUNDS,
        );
        assert_eq!(fast, Some(BOUNDS.min_interval_ms));
        let (slow, _) = next_interval(
            PollMemory::default(),
            0,
            observe(3_600_000, 0.01, SendStatus::InProgress, true),
            BOUNDS,
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
        };
        let mut memory = PollMemory::default();
        assert_eq!(retry_interval(&mut memory, tight, 1_000), 1_000);
    }
}
