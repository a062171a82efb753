//! Call economy: how many metered `getsendprogress` calls the exporter's scheduler spends per
//! task, and how late it sees completions and stalls, next to a fixed-interval poller tuned
//! to the same p95 completion latency, on the same seeded workload in the same run.
//!
//! Runs the scheduler's own decision function ([`record_progress_answer`], which holds the
//! adaptive policy) against the simulator's task timelines in virtual time, so a day of
//! workload takes well under a second.
//!
//! `cargo bench --bench call_economy` (add `-- --tasks N --seed S` to vary the workload).

use dingtalk_exporter::dingtalk::SendProgress;
use dingtalk_exporter::poller::{PollBounds, record_progress_answer};
use dingtalk_exporter::simulator::Timeline;
use dingtalk_exporter::tracker::{Task, TaskKey, TaskState};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MIN_INTERVAL_MS: i64 = 5_000;
const MAX_INTERVAL_MS: i64 = 300_000;
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// One task of the workload: its script and what kind of task it is.
struct Scripted {
    timeline: Timeline,
    kind: &'static str,
}

/// What one poller saw of one task.
#[derive(Default, Clone, Copy)]
struct Seen {
    calls: u64,
    /// From the moment it reached 100% to the poll that saw it.
    completion_latency_ms: Option<i64>,
    /// From the moment its progress stopped to the poll that saw the final value (from
    /// then on, `dingtalk_task_last_progress_change_timestamp_seconds` stands still).
    stall_latency_ms: Option<i64>,
    /// The longest gap between two polls while the task was running.
    longest_gap_ms: i64,
}

fn workload(tasks: usize, seed: u64) -> Vec<Scripted> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..tasks)
        .map(|_| {
            // Durations log-uniform from 5 seconds to an hour.
            let duration_ms = (5_000f64 * (720f64).powf(rng.random::<f64>())) as i64;
            let roll: f64 = rng.random();
            let (kind, start_delay_ms, stall_at_percent) = if roll < 0.02 {
                ("never started", i64::MAX, None)
            } else if roll < 0.10 {
                let stall = rng.random_range(5..95) as f64;
                ("stalled", 0, Some(stall))
            } else if roll < 0.40 {
                ("delayed start", rng.random_range(0..15 * 60_000), None)
            } else {
                ("steady", 0, None)
            };
            Scripted {
                timeline: Timeline {
                    start_delay_ms,
                    duration_ms,
                    stall_at_percent,
                    ..Timeline::default()
                },
                kind,
            }
        })
        .collect()
}

/// When, after creation, a stalled task's progress stops moving.
fn stall_onset_ms(timeline: &Timeline) -> Option<i64> {
    let stall = timeline.stall_at_percent?;
    let (mut low, mut high) = (0i64, timeline.start_delay_ms + timeline.duration_ms);
    while low < high {
        let mid = low + (high - low) / 2;
        if timeline.progress_at(mid).0 >= stall {
            high = mid;
        } else {
            low = mid + 1;
        }
    }
    Some(low)
}

/// The exporter: each next poll is whatever the scheduler decides from the answer.
fn adaptive(script: &Timeline) -> Seen {
    let bounds = PollBounds {
        min_interval_ms: MIN_INTERVAL_MS,
        max_interval_ms: MAX_INTERVAL_MS,
    };
    let key = TaskKey {
        agent_id: 1,
        task_id: 1,
    };
    let mut task = Task::registered(key, String::new(), 0);
    let mut seen = Seen::default();
    let mut previous_poll = None;
    while let Some(at) = task.next_poll_at_ms {
        if at >= MAX_AGE_MS || task.state != TaskState::Active {
            break;
        }
        let (percent, status) = script.progress_at(at);
        record_progress_answer(
            &mut task,
            Ok(SendProgress { percent, status }),
            at,
            bounds,
            MAX_AGE_MS,
        )
        .expect("no budget in this benchmark");
        observe(&mut seen, script, at, &mut previous_poll, status);
    }
    seen.calls = task.metered_calls;
    seen
}

/// The usual alternative: ask about every task every `interval_ms` until it finishes.
fn fixed(script: &Timeline, interval_ms: i64) -> Seen {
    let mut seen = Seen::default();
    let mut previous_poll = None;
    let mut at = 0;
    while at < MAX_AGE_MS {
        let (_, status) = script.progress_at(at);
        seen.calls += 1;
        observe(&mut seen, script, at, &mut previous_poll, status);
        if status == 2 {
            break;
        }
        at += interval_ms;
    }
    seen
}

fn observe(seen: &mut Seen, script: &Timeline, at: i64, previous: &mut Option<i64>, status: i64) {
    if let Some(previous) = *previous
        && script.progress_at(previous).1 == 1
    {
        seen.longest_gap_ms = seen.longest_gap_ms.max(at - previous);
    }
    *previous = Some(at);
    if status == 2 && seen.completion_latency_ms.is_none() {
        let finished = script
            .finished_after_ms()
            .expect("finished tasks have an end");
        seen.completion_latency_ms = Some(at - finished);
    }
    if let Some(onset) = stall_onset_ms(script)
        && at >= onset
        && seen.stall_latency_ms.is_none()
    {
        seen.stall_latency_ms = Some(at - onset);
    }
}

fn percentile(values: &mut [i64], p: f64) -> i64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * (values.len() - 1) as f64).round() as usize;
    values[rank]
}

struct Summary {
    total_calls: i64,
    calls_median: i64,
    calls_p95: i64,
    completion_p50_ms: i64,
    completion_p95_ms: i64,
    stall_p50_ms: i64,
    stall_p95_ms: i64,
    longest_gap_ms: i64,
}

fn summarise(seen: &[Seen]) -> Summary {
    let mut calls: Vec<i64> = seen.iter().map(|s| s.calls as i64).collect();
    let mut completion: Vec<i64> = seen
        .iter()
        .filter_map(|s| s.completion_latency_ms)
        .collect();
    let mut stall: Vec<i64> = seen.iter().filter_map(|s| s.stall_latency_ms).collect();
    Summary {
        total_calls: calls.iter().sum(),
        calls_median: percentile(&mut calls, 50.0),
        calls_p95: percentile(&mut calls, 95.0),
        completion_p50_ms: percentile(&mut completion, 50.0),
        completion_p95_ms: percentile(&mut completion, 95.0),
        stall_p50_ms: percentile(&mut stall, 50.0),
        stall_p95_ms: percentile(&mut stall, 95.0),
        longest_gap_ms: seen.iter().map(|s| s.longest_gap_ms).max().unwrap_or(0),
    }
}

fn argument(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|arg| arg == name)
        .and_then(|at| args.get(at + 1))
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tasks = argument("--tasks", 2000) as usize;
    let seed = argument("--seed", 7);
    let scripts = workload(tasks, seed);

    let exporter: Vec<Seen> = scripts.iter().map(|s| adaptive(&s.timeline)).collect();
    let exporter_summary = summarise(&exporter);

    // The slowest fixed interval whose p95 completion latency is no worse than the
    // exporter's: the fairest fixed-interval rival.
    let target = exporter_summary.completion_p95_ms;
    let (mut low, mut high) = (1_000i64, MAX_INTERVAL_MS);
    while high - low > 100 {
        let mid = (low + high) / 2;
        let seen: Vec<Seen> = scripts.iter().map(|s| fixed(&s.timeline, mid)).collect();
        if summarise(&seen).completion_p95_ms <= target {
            low = mid;
        } else {
            high = mid;
        }
    }
    let interval = low;
    let fixed_seen: Vec<Seen> = scripts
        .iter()
        .map(|s| fixed(&s.timeline, interval))
        .collect();
    let fixed_summary = summarise(&fixed_seen);

    let kinds = ["steady", "delayed start", "stalled", "never started"];
    println!("# Call economy (seed {seed}, {tasks} tasks)");
    println!();
    print!("Workload: ");
    for kind in kinds {
        let count = scripts.iter().filter(|s| s.kind == kind).count();
        print!("{count} {kind}, ");
    }
    println!(
        "durations log-uniform 5 s to 1 h; polled until finished or {} h old.",
        MAX_AGE_MS / 3_600_000
    );
    println!(
        "Exporter bounds: --poll.min-interval {}s, --poll.max-interval {}s. Fixed poller: every {:.1} s (tuned to the same p95 completion latency).",
        MIN_INTERVAL_MS / 1000,
        MAX_INTERVAL_MS / 1000,
        interval as f64 / 1000.0
    );
    println!();
    println!("| measure | exporter (adaptive) | fixed interval | fixed / exporter |");
    println!("|---|---|---|---|");
    let secs = |ms: i64| format!("{:.1} s", ms as f64 / 1000.0);
    let ratio = |fixed: i64, ours: i64| {
        if ours == 0 {
            "-".to_string()
        } else {
            format!("{:.2}x", fixed as f64 / ours as f64)
        }
    };
    let rows: [(&str, i64, i64, bool); 8] = [
        (
            "metered calls, total",
            exporter_summary.total_calls,
            fixed_summary.total_calls,
            false,
        ),
        (
            "calls per task, median",
            exporter_summary.calls_median,
            fixed_summary.calls_median,
            false,
        ),
        (
            "calls per task, p95",
            exporter_summary.calls_p95,
            fixed_summary.calls_p95,
            false,
        ),
        (
            "completion seen after, p50",
            exporter_summary.completion_p50_ms,
            fixed_summary.completion_p50_ms,
            true,
        ),
        (
            "completion seen after, p95",
            exporter_summary.completion_p95_ms,
            fixed_summary.completion_p95_ms,
            true,
        ),
        (
            "stall seen after, p50",
            exporter_summary.stall_p50_ms,
            fixed_summary.stall_p50_ms,
            true,
        ),
        (
            "stall seen after, p95",
            exporter_summary.stall_p95_ms,
            fixed_summary.stall_p95_ms,
            true,
        ),
        (
            "longest gap while running",
            exporter_summary.longest_gap_ms,
            fixed_summary.longest_gap_ms,
            true,
        ),
    ];
    for (name, ours, theirs, is_time) in rows {
        let show = |value: i64| {
            if is_time {
                secs(value)
            } else {
                value.to_string()
            }
        };
        println!(
            "| {name} | {} | {} | {} |",
            show(ours),
            show(theirs),
            ratio(theirs, ours)
        );
    }
    println!();
    println!(
        "| kind | tasks | exporter calls/task (median) | fixed calls/task (median) | exporter completion p95 | fixed completion p95 |"
    );
    println!("|---|---|---|---|---|---|");
    for kind in kinds {
        let pick = |seen: &[Seen]| -> Vec<Seen> {
            scripts
                .iter()
                .zip(seen)
                .filter(|(script, _)| script.kind == kind)
                .map(|(_, s)| Seen { ..*s })
                .collect()
        };
        let ours = summarise(&pick(&exporter));
        let theirs = summarise(&pick(&fixed_seen));
        let count = scripts.iter().filter(|s| s.kind == kind).count();
        println!(
            "| {kind} | {count} | {} | {} | {} | {} |",
            ours.calls_median,
            theirs.calls_median,
            secs(ours.completion_p95_ms),
            secs(theirs.completion_p95_ms)
        );
    }
    println!();
    let savings = fixed_summary.total_calls as f64 / exporter_summary.total_calls.max(1) as f64;
    println!(
        "Result: the exporter spends {savings:.2}x fewer metered calls (target >= 3x); its p95 completion latency {} is within --poll.max-interval ({}): {}.",
        secs(exporter_summary.completion_p95_ms),
        secs(MAX_INTERVAL_MS),
        if exporter_summary.completion_p95_ms <= MAX_INTERVAL_MS
            && exporter_summary.longest_gap_ms <= MAX_INTERVAL_MS
        {
            "yes"
        } else {
            "NO"
        }
    );
}
