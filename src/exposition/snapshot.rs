//! What one scrape needs of the tracked tasks, copied out of the tracker under its lock,
//! and the pieces of text the task series are written into.

use std::ops::Range;
use std::time::Duration;

use crate::dingtalk::RecipientCounts;
use crate::tracker::{SendStatus, TaskKey, TaskState, Tracker};

/// What one scrape needs of one published task: copied out of the tracker under its lock,
/// so that the text, which takes a hundred times longer to write, is written after the lock
/// is released and polls and registrations are not held up by a scrape.
pub(super) struct TaskRow {
    pub(super) key: TaskKey,
    /// Where the task's name sits in [`TaskSnapshot::names`].
    pub(super) name: Range<usize>,
    pub(super) status: Option<SendStatus>,
    pub(super) progress_ratio: Option<f64>,
    pub(super) created_at_ms: i64,
    pub(super) last_poll_at_ms: Option<i64>,
    pub(super) last_progress_change_at_ms: i64,
    pub(super) last_errcode: Option<i64>,
    pub(super) recipients: Option<RecipientCounts>,
    /// The scheduler's estimate of when an unfinished task reaches 100%.
    pub(super) expected_completion_at_ms: Option<i64>,
}

/// The published tasks of one scrape, and how many tasks are tracked in each state.
pub struct TaskSnapshot {
    pub(super) rows: Vec<TaskRow>,
    /// Every name one after the other: one allocation instead of one per task.
    names: String,
    pub(super) by_state: [usize; 4],
}

impl TaskSnapshot {
    /// Average bytes of a task name, to size [`TaskSnapshot::names`] before the copy.
    const TYPICAL_NAME_BYTES: usize = 32;

    /// The tasks still published at `now_ms` (ended ones stay for `retention`), and the
    /// count of every tracked task by state.
    pub fn take(tracker: &Tracker, now_ms: i64, retention: Duration) -> TaskSnapshot {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let expected = tracker.len();
        let mut snapshot = TaskSnapshot {
            rows: Vec::with_capacity(expected),
            names: String::with_capacity(expected * Self::TYPICAL_NAME_BYTES),
            by_state: [0; 4],
        };
        tracker.for_each(|task| {
            snapshot.by_state[state_index(task.state)] += 1;
            if !task.is_published(now_ms, retention_ms) {
                return;
            }
            let start = snapshot.names.len();
            snapshot.names.push_str(&task.name);
            snapshot.rows.push(TaskRow {
                key: task.key,
                name: start..snapshot.names.len(),
                status: task.status,
                progress_ratio: task.progress_ratio,
                created_at_ms: task.created_at_ms,
                last_poll_at_ms: task.last_poll_at_ms,
                last_progress_change_at_ms: task.last_progress_change_at_ms,
                last_errcode: task.last_errcode,
                recipients: task.recipients,
                expected_completion_at_ms: task
                    .expected_completion_at_ms
                    .filter(|_| task.state == TaskState::Active),
            });
        });
        snapshot
    }

    pub(super) fn name(&self, row: &TaskRow) -> &str {
        &self.names[row.name.clone()]
    }
}

/// Text written in pieces that are never reallocated: the exposition is tens of megabytes
/// at 100,000 tasks, and one growing string would copy it over and over and hold up to twice
/// its size while doing so. Pieces start small (a family of a few tasks takes a few
/// kilobytes) and double up to [`ChunkedText::LARGEST`]; each ends at the end of a line.
pub(super) struct ChunkedText {
    full: Vec<String>,
    current: String,
}

impl ChunkedText {
    const FIRST: usize = 16 * 1024;
    pub(super) const LARGEST: usize = 256 * 1024;
    /// Room left for the next task's lines before a new piece is started: more than the
    /// lines of one task in one family take (the longest labels and a 256-character name,
    /// escaped), so pieces keep their capacity. A longer line would only grow its piece.
    const ROOM: usize = 4 * 1024;

    pub(super) fn new() -> ChunkedText {
        ChunkedText {
            full: Vec::new(),
            current: String::new(),
        }
    }

    /// The piece to append the next lines of one task to.
    pub(super) fn with_room(&mut self) -> &mut String {
        if self.current.capacity() - self.current.len() < Self::ROOM {
            let size = (2 * self.current.capacity()).clamp(Self::FIRST, Self::LARGEST);
            let done = std::mem::replace(&mut self.current, String::with_capacity(size));
            if !done.is_empty() {
                self.full.push(done);
            }
        }
        &mut self.current
    }

    pub(super) fn is_empty(&self) -> bool {
        self.full.is_empty() && self.current.is_empty()
    }

    pub(super) fn into_pieces(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.full.push(self.current);
        }
        self.full
    }
}

/// The position of a state in [`TaskState::ALL`] and in the counts by state.
pub(super) fn state_index(state: TaskState) -> usize {
    match state {
        TaskState::Active => 0,
        TaskState::Completed => 1,
        TaskState::Invalid => 2,
        TaskState::Expired => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text of a family comes out whole, in pieces that each end at the end of a line
    /// and never outgrow their capacity.
    #[test]
    fn chunked_text_keeps_lines_whole() {
        let mut text = ChunkedText::new();
        let mut expected = String::new();
        let mut capacities = Vec::new();
        for line in 0..40_000 {
            let piece = text.with_room();
            let before = piece.capacity();
            let content = format!("line {line} {}\n", "x".repeat(line % 300));
            piece.push_str(&content);
            assert_eq!(piece.capacity(), before, "a piece was reallocated");
            capacities.push(before);
            expected.push_str(&content);
        }
        let pieces = text.into_pieces();
        assert!(pieces.len() > 10);
        assert!(pieces.iter().all(|piece| piece.ends_with('\n')));
        assert!(
            capacities
                .iter()
                .all(|&capacity| capacity <= ChunkedText::LARGEST)
        );
        assert_eq!(pieces.concat(), expected);
    }
}
