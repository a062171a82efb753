//! What the exporter learns about an app's deliveries from the tasks of it that finished:
//! how many recipients a second it delivers to, and how soon its quick deliveries end.
//!
//! Both are kept in log space and updated so that one odd task (a send held up for an hour,
//! a retried delivery) moves them only a little: the first few samples are averaged, later
//! ones pull the estimate a bounded step towards them. The poller uses them to place a new
//! task's first poll where its delivery should end instead of probing from the start.

use serde::{Deserialize, Serialize};

/// Samples averaged before the estimate starts moving in bounded steps.
const WARM_UP_SAMPLES: u32 = 4;

/// How far (in natural log units) one sample may pull the pace after the warm-up: a quarter
/// of the way towards it, and never more than a factor of 2 away, so at most ~19%.
const PACE_STEP: f64 = 0.25;
const PACE_PULL_LIMIT: f64 = std::f64::consts::LN_2;

/// The share of deliveries that end sooner than [`LearnedPace::quick_completion_ms`].
const QUICK_QUANTILE: f64 = 0.1;
/// The step (natural log units) of the quantile estimate of quick completions.
const QUICK_STEP: f64 = 0.2;

/// What the exporter has learned about one app (one `agent_id`) from its finished tasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnedPace {
    /// Natural log of the recipients delivered to per second; meaningful once
    /// `pace_samples > 0`.
    pub pace_log: f64,
    /// Finished tasks with a known recipient count that taught the pace.
    pub pace_samples: u32,
    /// Natural log of the milliseconds from registration to the end of delivery that about
    /// one task in ten beats; meaningful once `completion_samples > 0`.
    pub quick_completion_log: f64,
    /// Finished tasks that taught it.
    pub completion_samples: u32,
}

impl LearnedPace {
    /// Recipients delivered to per second, once any finished task with a known recipient
    /// count taught it.
    pub fn recipients_per_second(&self) -> Option<f64> {
        (self.pace_samples > 0).then(|| self.pace_log.exp())
    }

    /// How long after registration the app's quicker deliveries (about the fastest tenth)
    /// end, once any task finished.
    pub fn quick_completion_ms(&self) -> Option<i64> {
        (self.completion_samples > 0).then(|| self.quick_completion_log.exp().round() as i64)
    }

    /// Learns from a task that delivered to `recipients` people in `run_ms` milliseconds.
    /// Nonsense samples (no recipients, no time) teach nothing.
    pub fn learn_pace(&mut self, recipients: u64, run_ms: i64) {
        if recipients == 0 || run_ms <= 0 {
            return;
        }
        let sample = (recipients as f64 / (run_ms as f64 / 1000.0)).ln();
        if !sample.is_finite() {
            return;
        }
        self.pace_log = if self.pace_samples < WARM_UP_SAMPLES {
            let seen = f64::from(self.pace_samples);
            (self.pace_log * seen + sample) / (seen + 1.0)
        } else {
            self.pace_log
                + PACE_STEP * (sample - self.pace_log).clamp(-PACE_PULL_LIMIT, PACE_PULL_LIMIT)
        };
        self.pace_samples = self.pace_samples.saturating_add(1);
    }

    /// Learns from a task whose delivery ended `completed_after_ms` after its registration.
    pub fn learn_completion(&mut self, completed_after_ms: i64) {
        if completed_after_ms <= 0 {
            return;
        }
        let sample = (completed_after_ms as f64).ln();
        self.quick_completion_log = if self.completion_samples == 0 {
            sample
        } else if self.completion_samples < WARM_UP_SAMPLES {
            // Until a few tasks are in, the quickest one seen stands for the quick ones.
            self.quick_completion_log.min(sample)
        } else if sample < self.quick_completion_log {
            // A quantile estimate: below it moves down by (1 - q), above it up by q, so it
            // settles where a share q of the samples lie below.
            self.quick_completion_log - QUICK_STEP * (1.0 - QUICK_QUANTILE)
        } else {
            self.quick_completion_log + QUICK_STEP * QUICK_QUANTILE
        };
        self.completion_samples = self.completion_samples.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An app that delivers at a steady pace is learned to within a few percent.
    #[test]
    fn a_steady_pace_is_learned() {
        let mut pace = LearnedPace::default();
        assert_eq!(pace.recipients_per_second(), None);
        for _ in 0..10 {
            pace.learn_pace(600, 60_000);
        }
        let learned = pace.recipients_per_second().unwrap();
        assert!((learned - 10.0).abs() < 0.01, "{learned}");
    }

    /// One delivery a hundred times slower than the others moves the pace by at most a
    /// fifth.
    #[test]
    fn one_odd_delivery_barely_moves_the_pace() {
        let mut pace = LearnedPace::default();
        for _ in 0..10 {
            pace.learn_pace(600, 60_000);
        }
        pace.learn_pace(600, 6_000_000);
        let learned = pace.recipients_per_second().unwrap();
        assert!((8.0..=10.0).contains(&learned), "{learned}");
    }

    /// The quick-completion estimate settles near the tenth percentile of what it saw.
    #[test]
    fn quick_completions_settle_near_the_tenth_percentile() {
        let mut pace = LearnedPace::default();
        // 10 s, 20 s, ... 100 s, over and over: a tenth end by 10 s, a fifth by 20 s.
        for round in 0..400 {
            pace.learn_completion(10_000 * (1 + round % 10));
        }
        let quick = pace.quick_completion_ms().unwrap();
        assert!((8_000..=22_000).contains(&quick), "{quick}");
    }

    /// Samples without recipients or without time teach nothing.
    #[test]
    fn nonsense_samples_are_ignored() {
        let mut pace = LearnedPace::default();
        pace.learn_pace(0, 1_000);
        pace.learn_pace(10, 0);
        pace.learn_completion(-5);
        assert_eq!(pace, LearnedPace::default());
    }
}
