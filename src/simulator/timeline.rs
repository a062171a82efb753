//! The scripted life of one simulated task: how its progress moves with time and which list
//! each recipient ends up in.
//!
//! Everything here is a pure function of the script and the time elapsed since the task was
//! created, so benchmarks can replay a task in virtual time without a server.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::dingtalk::RecipientCounts;

/// `status` before delivery starts.
pub const STATUS_NOT_STARTED: i64 = 0;
/// `status` while delivery runs (also forever once a task stalls).
pub const STATUS_IN_PROGRESS: i64 = 1;
/// `status` once progress reaches 100 %.
pub const STATUS_FINISHED: i64 = 2;

/// The most recipients one scripted task may have. DingTalk sends to at most 5,000 users per
/// call; the cap keeps the per-task bookkeeping small whatever a script asks for.
pub const MAX_RECIPIENTS: u32 = 100_000;

/// `getsendresult` only answers for tasks with at most this many recipients.
pub const SEND_RESULT_MAX_RECIPIENTS: u32 = 100;

/// The `forbidden_list` code for "daily cap per user reached" and its threshold.
const FORBIDDEN_DAILY_CAP: (&str, i64) = ("143105", 500);
/// The `forbidden_list` code for "same content to the same user twice in a day".
const FORBIDDEN_DUPLICATE: (&str, i64) = ("143106", 1);

/// How a task's delivery unfolds. Progress is linear from `start_delay_ms` to
/// `start_delay_ms + duration_ms`, in whole percents, unless it stalls first.
///
/// The recipient counts say where recipients end up; the rest are `unread`. Which recipient
/// lands in which list, and in which order they are delivered, follows from `seed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeline {
    /// Time after creation before delivery starts; `status` is 0 until then. `i64::MAX`
    /// means never.
    pub start_delay_ms: i64,
    /// Time from the start to 100 %.
    pub duration_ms: i64,
    /// Progress stops here forever and `status` stays 1: a stalled task that never finishes.
    pub stall_at_percent: Option<f64>,
    /// How many users the task was sent to.
    pub recipients: u32,
    /// Recipients that read the message.
    pub read: u32,
    /// Recipients the message failed to reach.
    pub failed: u32,
    /// Recipients dropped by flow control. Half of them are listed in
    /// `forbidden_user_id_list`, the others in `forbidden_list` with a reason code.
    pub forbidden: u32,
    /// Recipients whose user id is invalid.
    pub invalid: u32,
    /// Invalid department ids, listed in `invalid_dept_id_list` from the start.
    pub invalid_depts: u32,
    /// Decides which recipient lands in which list.
    pub seed: u64,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline {
            start_delay_ms: 0,
            duration_ms: 5_000,
            stall_at_percent: None,
            recipients: 10,
            read: 6,
            failed: 1,
            forbidden: 1,
            invalid: 1,
            invalid_depts: 0,
            seed: 0,
        }
    }
}

/// Where one recipient ends up once delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Read,
    Unread,
    Failed,
    /// Listed in `forbidden_user_id_list`.
    Forbidden,
    /// Listed in `forbidden_list` with a code and threshold.
    ForbiddenWithReason(&'static str, i64),
    Invalid,
}

/// One entry of `forbidden_list`: a user dropped by flow control and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForbiddenEntry {
    /// `143105` (daily cap per user) or `143106` (duplicate content).
    pub code: String,
    /// The flow-control threshold that was hit.
    pub count: i64,
    pub userid: String,
}

/// The `send_result` object of `getsendresult`. Empty lists are left out of the answer, as
/// DingTalk's SDKs do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SendResult {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub read_user_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unread_user_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failed_user_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forbidden_user_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_user_id_list: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub invalid_dept_id_list: Vec<i64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub forbidden_list: Vec<ForbiddenEntry>,
}

impl SendResult {
    /// The counts a client should report for this answer.
    pub fn counts(&self) -> RecipientCounts {
        let len = |list: usize| list as u64;
        RecipientCounts {
            read: len(self.read_user_id_list.len()),
            unread: len(self.unread_user_id_list.len()),
            failed: len(self.failed_user_id_list.len()),
            forbidden: len(self.forbidden_user_id_list.len() + self.forbidden_list.len()),
            invalid: len(self.invalid_user_id_list.len() + self.invalid_dept_id_list.len()),
        }
    }
}

impl Timeline {
    /// Finishes two seconds after creation.
    pub fn fast() -> Self {
        Timeline {
            duration_ms: 2_000,
            ..Timeline::default()
        }
    }

    /// Takes ten minutes to reach 100 %.
    pub fn slow() -> Self {
        Timeline {
            duration_ms: 600_000,
            ..Timeline::default()
        }
    }

    /// Sits at `status` 0 for `start_delay_ms`, then runs for the default duration.
    pub fn delayed_start(start_delay_ms: i64) -> Self {
        Timeline {
            start_delay_ms,
            ..Timeline::default()
        }
    }

    /// Runs normally until `percent`, then stays there with `status` 1 forever.
    pub fn stalled_at(percent: f64) -> Self {
        Timeline {
            stall_at_percent: Some(percent),
            ..Timeline::default()
        }
    }

    /// Never starts: `status` 0 and 0 % forever.
    pub fn never_starting() -> Self {
        Timeline {
            start_delay_ms: i64::MAX,
            ..Timeline::default()
        }
    }

    /// The same script for `recipients` users, with each list scaled in proportion (rounded
    /// down; the remainder stays unread).
    pub fn with_recipients(&self, recipients: u32) -> Self {
        let scale = |count: u32| {
            if self.recipients == 0 {
                0
            } else {
                (u64::from(count) * u64::from(recipients) / u64::from(self.recipients)) as u32
            }
        };
        Timeline {
            recipients,
            read: scale(self.read),
            failed: scale(self.failed),
            forbidden: scale(self.forbidden),
            invalid: scale(self.invalid),
            ..self.clone()
        }
    }

    /// Checks that the script describes a possible task.
    pub fn validate(&self) -> Result<(), String> {
        if self.start_delay_ms < 0 || self.duration_ms < 0 {
            return Err("start_delay_ms and duration_ms must not be negative".to_string());
        }
        if let Some(stall) = self.stall_at_percent
            && !(0.0..=100.0).contains(&stall)
        {
            return Err("stall_at_percent must be a number from 0 to 100".to_string());
        }
        if self.recipients > MAX_RECIPIENTS {
            return Err(format!("recipients must be at most {MAX_RECIPIENTS}"));
        }
        let placed = u64::from(self.read)
            + u64::from(self.failed)
            + u64::from(self.forbidden)
            + u64::from(self.invalid);
        if placed > u64::from(self.recipients) {
            return Err(format!(
                "read + failed + forbidden + invalid ({placed}) exceeds recipients ({})",
                self.recipients
            ));
        }
        if self.invalid_depts > MAX_RECIPIENTS {
            return Err(format!("invalid_depts must be at most {MAX_RECIPIENTS}"));
        }
        Ok(())
    }

    /// `(progress_in_percent, status)` at `elapsed_ms` after the task was created.
    pub fn progress_at(&self, elapsed_ms: i64) -> (f64, i64) {
        if elapsed_ms < self.start_delay_ms {
            return (0.0, STATUS_NOT_STARTED);
        }
        let running_ms = elapsed_ms - self.start_delay_ms;
        let linear = if running_ms >= self.duration_ms {
            100.0
        } else {
            (running_ms as f64 * 100.0 / self.duration_ms as f64).floor()
        };
        match self.stall_at_percent {
            Some(stall) if linear >= stall => (stall, STATUS_IN_PROGRESS),
            _ if linear >= 100.0 => (100.0, STATUS_FINISHED),
            _ => (linear, STATUS_IN_PROGRESS),
        }
    }

    /// When the task reaches `status` 2, in milliseconds after creation; `None` if it never
    /// does.
    pub fn finished_after_ms(&self) -> Option<i64> {
        let never = self.start_delay_ms == i64::MAX || self.stall_at_percent.is_some();
        (!never).then(|| self.start_delay_ms.saturating_add(self.duration_ms))
    }

    /// How many recipients have been delivered to (and so appear in a result list) at
    /// `elapsed_ms`: in proportion to the progress, all of them once finished.
    pub fn delivered_at(&self, elapsed_ms: i64) -> u32 {
        match self.progress_at(elapsed_ms) {
            (_, STATUS_FINISHED) => self.recipients,
            (percent, _) => (f64::from(self.recipients) * percent / 100.0).floor() as u32,
        }
    }

    /// The final outcome of every recipient, by recipient index (which is also the order of
    /// delivery). A seeded shuffle, so the same script always gives the same lists.
    fn outcomes(&self) -> Vec<Outcome> {
        let forbidden_plain = self.forbidden.div_ceil(2);
        let forbidden_with_reason = self.forbidden - forbidden_plain;
        let placed = self.read + self.failed + self.forbidden + self.invalid;
        let mut outcomes = Vec::with_capacity(self.recipients as usize);
        let mut push = |outcome: Outcome, count: u32| {
            outcomes.extend(std::iter::repeat_n(outcome, count as usize));
        };
        push(Outcome::Read, self.read);
        push(Outcome::Failed, self.failed);
        push(Outcome::Forbidden, forbidden_plain);
        push(Outcome::Invalid, self.invalid);
        push(Outcome::Unread, self.recipients.saturating_sub(placed));
        for n in 0..forbidden_with_reason {
            let (code, count) = if n % 2 == 0 {
                FORBIDDEN_DAILY_CAP
            } else {
                FORBIDDEN_DUPLICATE
            };
            outcomes.push(Outcome::ForbiddenWithReason(code, count));
        }
        outcomes.shuffle(&mut StdRng::seed_from_u64(self.seed));
        outcomes
    }

    /// The `send_result` at `elapsed_ms`: every delivered recipient in its final list,
    /// recipients not yet delivered in none. `user_id` names recipient number `index`.
    pub fn send_result_at(&self, elapsed_ms: i64, user_id: impl Fn(usize) -> String) -> SendResult {
        let delivered = self.delivered_at(elapsed_ms) as usize;
        let mut result = SendResult {
            invalid_dept_id_list: (1..=i64::from(self.invalid_depts))
                .map(|n| 90_000 + n)
                .collect(),
            ..SendResult::default()
        };
        for (index, outcome) in self.outcomes().into_iter().enumerate().take(delivered) {
            let userid = user_id(index);
            match outcome {
                Outcome::Read => result.read_user_id_list.push(userid),
                Outcome::Unread => result.unread_user_id_list.push(userid),
                Outcome::Failed => result.failed_user_id_list.push(userid),
                Outcome::Forbidden => result.forbidden_user_id_list.push(userid),
                Outcome::Invalid => result.invalid_user_id_list.push(userid),
                Outcome::ForbiddenWithReason(code, count) => {
                    result.forbidden_list.push(ForbiddenEntry {
                        code: code.to_string(),
                        count,
                        userid,
                    })
                }
            }
        }
        result
    }

    /// The counts `getsendresult` implies at `elapsed_ms`, without building the lists.
    pub fn counts_at(&self, elapsed_ms: i64) -> RecipientCounts {
        let delivered = self.delivered_at(elapsed_ms) as usize;
        let mut counts = RecipientCounts {
            invalid: u64::from(self.invalid_depts),
            ..RecipientCounts::default()
        };
        for outcome in self.outcomes().into_iter().take(delivered) {
            match outcome {
                Outcome::Read => counts.read += 1,
                Outcome::Unread => counts.unread += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Forbidden | Outcome::ForbiddenWithReason(..) => counts.forbidden += 1,
                Outcome::Invalid => counts.invalid += 1,
            }
        }
        counts
    }
}

/// The user id of recipient `index` of a task scripted without explicit user ids.
pub fn numbered_user_id(index: usize) -> String {
    format!("user{:05}", index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Progress is 0 with status 0 before the start, linear while running, 100/2 at the end.
    #[test]
    fn progress_follows_the_script() {
        let timeline = Timeline {
            start_delay_ms: 1_000,
            duration_ms: 10_000,
            ..Timeline::default()
        };
        assert_eq!(timeline.progress_at(-5), (0.0, STATUS_NOT_STARTED));
        assert_eq!(timeline.progress_at(999), (0.0, STATUS_NOT_STARTED));
        assert_eq!(timeline.progress_at(1_000), (0.0, STATUS_IN_PROGRESS));
        assert_eq!(timeline.progress_at(6_000), (50.0, STATUS_IN_PROGRESS));
        assert_eq!(timeline.progress_at(6_099), (50.0, STATUS_IN_PROGRESS));
        assert_eq!(timeline.progress_at(10_999), (99.0, STATUS_IN_PROGRESS));
        assert_eq!(timeline.progress_at(11_000), (100.0, STATUS_FINISHED));
        assert_eq!(timeline.progress_at(i64::MAX), (100.0, STATUS_FINISHED));
        assert_eq!(timeline.finished_after_ms(), Some(11_000));
    }

    /// A stalled task keeps its percent and status 1 forever; a never-starting one stays at 0.
    #[test]
    fn stalled_and_never_starting_tasks_never_finish() {
        let stalled = Timeline::stalled_at(40.0);
        assert_eq!(stalled.progress_at(1_000), (20.0, STATUS_IN_PROGRESS));
        assert_eq!(stalled.progress_at(2_000), (40.0, STATUS_IN_PROGRESS));
        assert_eq!(stalled.progress_at(i64::MAX), (40.0, STATUS_IN_PROGRESS));
        assert_eq!(stalled.finished_after_ms(), None);

        let never = Timeline::never_starting();
        assert_eq!(never.progress_at(i64::MAX - 1), (0.0, STATUS_NOT_STARTED));
        assert_eq!(never.finished_after_ms(), None);
    }

    /// A zero-length delivery is finished the moment it starts.
    #[test]
    fn zero_duration_finishes_at_start() {
        let instant = Timeline {
            duration_ms: 0,
            ..Timeline::default()
        };
        assert_eq!(instant.progress_at(0), (100.0, STATUS_FINISHED));
    }

    /// The final lists hold exactly the scripted counts, and the same seed gives the same lists.
    #[test]
    fn final_lists_match_the_script() {
        let timeline = Timeline {
            recipients: 20,
            read: 9,
            failed: 3,
            forbidden: 3,
            invalid: 2,
            invalid_depts: 1,
            seed: 7,
            ..Timeline::default()
        };
        let result = timeline.send_result_at(i64::MAX, numbered_user_id);
        let expected = RecipientCounts {
            read: 9,
            unread: 3,
            failed: 3,
            forbidden: 3,
            invalid: 3,
        };
        assert_eq!(result.counts(), expected);
        assert_eq!(timeline.counts_at(i64::MAX), expected);
        assert_eq!(result.forbidden_user_id_list.len(), 2);
        assert_eq!(result.forbidden_list.len(), 1);
        assert_eq!(result.forbidden_list[0].code, "143105");
        assert_eq!(result, timeline.send_result_at(i64::MAX, numbered_user_id));

        let reseeded = Timeline {
            seed: 8,
            ..timeline
        };
        assert_ne!(result, reseeded.send_result_at(i64::MAX, numbered_user_id));
    }

    /// While running, only the delivered share of recipients appears in the lists.
    #[test]
    fn lists_grow_with_progress() {
        let timeline = Timeline {
            duration_ms: 1_000,
            ..Timeline::default()
        };
        let total = |counts: RecipientCounts| {
            counts.read + counts.unread + counts.failed + counts.forbidden + counts.invalid
        };
        assert_eq!(total(timeline.counts_at(0)), 0);
        assert_eq!(total(timeline.counts_at(500)), 5);
        assert_eq!(total(timeline.counts_at(1_000)), 10);
    }

    /// Scaling a script keeps its proportions and leaves the remainder unread.
    #[test]
    fn scaling_keeps_proportions() {
        let scaled = Timeline::default().with_recipients(25);
        assert_eq!(
            (scaled.read, scaled.failed, scaled.forbidden, scaled.invalid),
            (15, 2, 2, 2)
        );
        assert!(scaled.validate().is_ok());
    }

    /// Impossible scripts are refused with a reason.
    #[test]
    fn impossible_scripts_are_refused() {
        let too_many = Timeline {
            recipients: 3,
            read: 2,
            failed: 2,
            forbidden: 0,
            invalid: 0,
            ..Timeline::default()
        };
        assert!(too_many.validate().unwrap_err().contains("exceeds"));
        assert!(Timeline::stalled_at(101.0).validate().is_err());
        assert!(Timeline::stalled_at(f64::NAN).validate().is_err());
        assert!(Timeline::delayed_start(-1).validate().is_err());
    }
}
