//! Call economy: how many metered `getsendprogress` calls the exporter's scheduler spends per
//! task, and how late it sees completions and stalls, next to a fixed-interval poller tuned
//! to the same p95 completion latency, on the same seeded workload in the same run.
//!
//! Runs the scheduler's own decision functions ([`place_first_poll`] and
//! [`record_progress_answer`], which hold the adaptive policy, and [`learn_from_run`], which
//! teaches each app's pace) against the simulator's task timelines in virtual time, so a day
//! of workload takes well under a second. The exporter runs twice: without recipient counts
//! in the registrations, and with them.
//!
//! `cargo bench --bench call_economy` (add `-- --tasks N --seed S` to vary the workload).

use dingtalk_exporter::dingtalk::SendProgress;
use dingtalk_exporter::poller::{
    PollBounds, learn_from_run, place_first_poll, record_progress_answer,
};
use dingtalk_exporter::simulator::Timeline;
use dingtalk_exporter::tracker::{LearnedPace, Task, TaskKey, TaskState};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

const MIN_INTERVAL_MS: i64 = 5_000;
const MAX_INTERVAL_MS: i64 = 300_000;
const STALL_AFTER_MS: i64 = 3_600_000;
const STALLED_INTERVAL_MS: i64 = 1_800_000;
const MAX_AGE_MS: i64 = 24 * 3600 * 1000;

/// The exporter's defaults.
const BOUNDS: PollBounds = PollBounds {
    min_interval_ms: MIN_INTERVAL_MS,
    max_interval_ms: MAX_INTERVAL_MS,
    stall_after_ms: STALL_AFTER_MS,
    stalled_interval_ms: STALLED_INTERVAL_MS,
};

/// The apps of the workload and the recipients a second each delivers to.
const APP_PACES: [f64; 4] = [0.5, 1.0, 2.0, 4.0];

/// One task of the workload: its script and what kind of task it is.
struct Scripted {
    timeline: Timeline,
    kind: &'static str,
    /// Which of [`APP_PACES`] sent it.
    app: usize,
    /// How many people it was sent to: its duration at its app's pace, give or take 15%.
    recipients: u64,
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
    // A generator of its own for what the first workload did not have, so the timelines
    // stay those of earlier runs with the same seed.
    let mut senders = StdRng::seed_from_u64(seed ^ 0x005e_ed0f_a995);
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
            let app = senders.random_range(0..APP_PACES.len());
            let noise = senders.random_range(0.85..1.15);
            let recipients = ((duration_ms as f64 / 1000.0) * APP_PACES[app] * noise)
                .round()
                .max(1.0) as u64;
            Scripted {
                timeline: Timeline {
                    start_delay_ms,
                    duration_ms,
                    stall_at_percent,
                    ..Timeline::default()
                },
                kind,
                app,
                recipients,
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

/// The exporter: each next poll is whatever the scheduler decides from the answer, with
/// what it has learned of the task's app from the tasks before it. `recipients` is what the
/// registration said.
fn adaptive(
    script: &Timeline,
    recipients: Option<u64>,
    learned: &mut LearnedPace,
    bounds: PollBounds,
) -> Seen {
    let key = TaskKey {
        agent_id: 1,
        task_id: 1,
    };
    let mut task = Task::registered(key, String::new(), 0);
    task.recipients_expected = recipients;
    place_first_poll(&mut task, Some(learned), bounds, 0, MAX_AGE_MS);
    let mut seen = Seen::default();
    let mut previous_poll = None;
    while let Some(at) = task.next_poll_at_ms {
        if at >= MAX_AGE_MS || task.state != TaskState::Active {
            break;
        }
        let (percent, status) = script.progress_at(at);
        let finished = record_progress_answer(
            &mut task,
            Ok(SendProgress { percent, status }),
            at,
            bounds,
            MAX_AGE_MS,
            Some(learned),
        )
        .expect("no budget in this benchmark");
        if let Some(run) = finished {
            learn_from_run(learned, 0, recipients, run);
        }
        observe(&mut seen, script, at, &mut previous_poll, status);
    }
    seen.calls = task.metered_calls;
    seen
}

/// The exporter over the whole workload, tasks in order of registration, each app
/// learning from its tasks that finished before.
fn run_exporter(scripts: &[Scripted], with_recipients: bool, bounds: PollBounds) -> Vec<Seen> {
    let mut learned = [LearnedPace::default(); APP_PACES.len()];
    scripts
        .iter()
        .map(|script| {
            let recipients = with_recipients.then_some(script.recipients);
            adaptive(
                &script.timeline,
                recipients,
                &mut learned[script.app],
                bounds,
            )
        })
        .collect()
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
    // Running: in progress and still moving (a stalled task is in progress forever).
    let moving = |at: i64| stall_onset_ms(script).is_none_or(|onset| at < onset);
    if let Some(previous) = *previous
        && script.progress_at(previous).1 == 1
        && moving(previous)
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

/// A row of the main table: its name, the figure it shows, and whether that is a time.
type TableRow = (&'static str, fn(&Summary) -> i64, bool);

/// The slowest fixed interval whose p95 completion latency is no worse than `target_ms`:
/// the fairest fixed-interval rival.
fn tuned_fixed_interval(scripts: &[Scripted], target_ms: i64) -> i64 {
    let (mut low, mut high) = (1_000i64, MAX_INTERVAL_MS);
    while high - low > 100 {
        let mid = (low + high) / 2;
        let seen: Vec<Seen> = scripts.iter().map(|s| fixed(&s.timeline, mid)).collect();
        if summarise(&seen).completion_p95_ms <= target_ms {
            low = mid;
        } else {
            high = mid;
        }
    }
    low
}

fn secs(ms: i64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn ratio(fixed: i64, ours: i64) -> String {
    if ours == 0 {
        "-".to_string()
    } else {
        format!("{:.2}x", fixed as f64 / ours as f64)
    }
}

/// Calls the exporter spends at default settings on one task that never finishes, over its
/// 24 hours: one that stalls 4 minutes into a 10-minute delivery, and one that never starts.
fn stuck_task_calls() -> (u64, u64) {
    let stalled = Timeline {
        duration_ms: 600_000,
        stall_at_percent: Some(40.0),
        ..Timeline::default()
    };
    let never = Timeline {
        start_delay_ms: i64::MAX,
        ..Timeline::default()
    };
    let calls =
        |timeline: &Timeline| adaptive(timeline, None, &mut LearnedPace::default(), BOUNDS).calls;
    (calls(&stalled), calls(&never))
}

/// One month of an organisation on the free edition: 20 notices each working day (22 days),
/// each to 10 to 5,000 people (log-uniform), delivered at 20 recipients a second; one in ten
/// starts up to 5 minutes late, 2% stall halfway and 1% never start. Calls include the one
/// `getsendresult` of each finished task with at most 100 recipients (both pollers make it).
struct Month {
    tasks: usize,
    exporter_calls: u64,
    exporter_hinted_calls: u64,
    fixed_calls: u64,
}

fn month_on_the_free_quota(seed: u64, fixed_interval_ms: i64) -> Month {
    const NOTICES: usize = 20 * 22;
    const PACE: f64 = 20.0;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x0006_d017);
    let scripts: Vec<Scripted> = (0..NOTICES)
        .map(|_| {
            let recipients = (10.0 * 500f64.powf(rng.random::<f64>())).round() as u64;
            let duration_ms = (recipients as f64 / PACE * 1000.0) as i64;
            let roll: f64 = rng.random();
            let (kind, start_delay_ms, stall_at_percent) = if roll < 0.01 {
                ("never started", i64::MAX, None)
            } else if roll < 0.03 {
                ("stalled", 0, Some(50.0))
            } else if roll < 0.13 {
                ("delayed start", rng.random_range(0..5 * 60_000), None)
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
                app: 0,
                recipients,
            }
        })
        .collect();
    let result_calls = |script: &Scripted| {
        u64::from(script.timeline.finished_after_ms().is_some() && script.recipients <= 100)
    };
    let total = |seen: &[Seen]| -> u64 {
        seen.iter()
            .zip(&scripts)
            .map(|(seen, script)| seen.calls + result_calls(script))
            .sum()
    };
    let exporter = run_exporter(&scripts, false, BOUNDS);
    let hinted = run_exporter(&scripts, true, BOUNDS);
    let fixed_seen: Vec<Seen> = scripts
        .iter()
        .map(|s| fixed(&s.timeline, fixed_interval_ms))
        .collect();
    Month {
        tasks: scripts.len(),
        exporter_calls: total(&exporter),
        exporter_hinted_calls: total(&hinted),
        fixed_calls: total(&fixed_seen),
    }
}

fn main() {
    let tasks = argument("--tasks", 2000) as usize;
    let seed = argument("--seed", 7);
    let scripts = workload(tasks, seed);

    let exporter = run_exporter(&scripts, false, BOUNDS);
    let exporter_summary = summarise(&exporter);
    let hinted = run_exporter(&scripts, true, BOUNDS);
    let hinted_summary = summarise(&hinted);

    let interval = tuned_fixed_interval(&scripts, exporter_summary.completion_p95_ms);
    let fixed_seen: Vec<Seen> = scripts
        .iter()
        .map(|s| fixed(&s.timeline, interval))
        .collect();
    let fixed_summary = summarise(&fixed_seen);
    let hinted_interval = tuned_fixed_interval(&scripts, hinted_summary.completion_p95_ms);
    let hinted_fixed_summary = summarise(
        &scripts
            .iter()
            .map(|s| fixed(&s.timeline, hinted_interval))
            .collect::<Vec<_>>(),
    );

    let kinds = ["steady", "delayed start", "stalled", "never started"];
    println!("# Call economy (seed {seed}, {tasks} tasks)");
    println!();
    print!("Workload: ");
    for kind in kinds {
        let count = scripts.iter().filter(|s| s.kind == kind).count();
        print!("{count} {kind}, ");
    }
    println!(
        "durations log-uniform 5 s to 1 h; polled until finished or {} h old. Senders: {} apps delivering {:?} recipients/s; a task's recipients are its duration at its app's pace, give or take 15%.",
        MAX_AGE_MS / 3_600_000,
        APP_PACES.len(),
        APP_PACES
    );
    println!(
        "Exporter at its defaults: --poll.min-interval {}s, --poll.max-interval {}s, --poll.stall-after {}m, --poll.stalled-interval {}m; each app's pace learned from its tasks finished before. Fixed poller: every {:.1} s (tuned to the same p95 completion latency as the exporter without recipients), every {:.1} s (tuned to the exporter with recipients).",
        MIN_INTERVAL_MS / 1000,
        MAX_INTERVAL_MS / 1000,
        STALL_AFTER_MS / 60_000,
        STALLED_INTERVAL_MS / 60_000,
        interval as f64 / 1000.0,
        hinted_interval as f64 / 1000.0,
    );
    println!();
    println!(
        "| measure | exporter | fixed interval | fixed / exporter | exporter, recipients given | fixed, same p95 | fixed / exporter |"
    );
    println!("|---|---|---|---|---|---|---|");
    let rows: [TableRow; 8] = [
        ("metered calls, total", |s| s.total_calls, false),
        ("calls per task, median", |s| s.calls_median, false),
        ("calls per task, p95", |s| s.calls_p95, false),
        ("completion seen after, p50", |s| s.completion_p50_ms, true),
        ("completion seen after, p95", |s| s.completion_p95_ms, true),
        ("stall seen after, p50", |s| s.stall_p50_ms, true),
        ("stall seen after, p95", |s| s.stall_p95_ms, true),
        ("longest gap while running", |s| s.longest_gap_ms, true),
    ];
    for (name, pick, is_time) in rows {
        let show = |value: i64| {
            if is_time {
                secs(value)
            } else {
                value.to_string()
            }
        };
        let (ours, theirs) = (pick(&exporter_summary), pick(&fixed_summary));
        let (hinted_ours, hinted_theirs) = (pick(&hinted_summary), pick(&hinted_fixed_summary));
        println!(
            "| {name} | {} | {} | {} | {} | {} | {} |",
            show(ours),
            show(theirs),
            ratio(theirs, ours),
            show(hinted_ours),
            show(hinted_theirs),
            ratio(hinted_theirs, hinted_ours)
        );
    }
    println!();
    println!(
        "| kind | tasks | exporter calls/task (median) | with recipients | fixed calls/task (median) | exporter completion p95 | with recipients | fixed completion p95 |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let pick = |seen: &[Seen], wanted: &[&str]| -> Vec<Seen> {
        scripts
            .iter()
            .zip(seen)
            .filter(|(script, _)| wanted.contains(&script.kind))
            .map(|(_, s)| *s)
            .collect()
    };
    for kind in kinds {
        let ours = summarise(&pick(&exporter, &[kind]));
        let hinted_ours = summarise(&pick(&hinted, &[kind]));
        let theirs = summarise(&pick(&fixed_seen, &[kind]));
        let count = scripts.iter().filter(|s| s.kind == kind).count();
        println!(
            "| {kind} | {count} | {} | {} | {} | {} | {} | {} |",
            ours.calls_median,
            hinted_ours.calls_median,
            theirs.calls_median,
            secs(ours.completion_p95_ms),
            secs(hinted_ours.completion_p95_ms),
            secs(theirs.completion_p95_ms)
        );
    }
    let finishing = ["steady", "delayed start"];
    let finishing_median = summarise(&pick(&exporter, &finishing)).calls_median;
    let finishing_hinted_median = summarise(&pick(&hinted, &finishing)).calls_median;
    let steady_median = summarise(&pick(&exporter, &["steady"])).calls_median;
    let steady_hinted_median = summarise(&pick(&hinted, &["steady"])).calls_median;
    println!();
    let (stalled_calls, never_calls) = stuck_task_calls();
    println!(
        "One stuck task over 24 h at the defaults: {stalled_calls} calls when it stalls at 40% of a 10-minute delivery, {never_calls} when it never starts ({} at a fixed --poll.max-interval).",
        MAX_AGE_MS / MAX_INTERVAL_MS
    );
    let month = month_on_the_free_quota(seed, interval);
    let watched = |calls: u64| 5000.0 * month.tasks as f64 / calls.max(1) as f64;
    println!(
        "A month on the free quota (20 notices a working day for 22 days, 10 to 5,000 recipients log-uniform at 20 a second, 10% starting up to 5 min late, 2% stalled, 1% never starting; getsendresult included): {} tasks cost {} calls with the exporter ({:.0} tasks fit in 5,000 calls), {} with recipients given ({:.0} fit), {} with the fixed poller every {:.1} s ({:.0} fit).",
        month.tasks,
        month.exporter_calls,
        watched(month.exporter_calls),
        month.exporter_hinted_calls,
        watched(month.exporter_hinted_calls),
        month.fixed_calls,
        interval as f64 / 1000.0,
        watched(month.fixed_calls)
    );
    println!();
    let savings = fixed_summary.total_calls as f64 / exporter_summary.total_calls.max(1) as f64;
    let hinted_savings =
        hinted_fixed_summary.total_calls as f64 / hinted_summary.total_calls.max(1) as f64;
    let bounded =
        |s: &Summary| s.completion_p95_ms <= MAX_INTERVAL_MS && s.longest_gap_ms <= MAX_INTERVAL_MS;
    println!(
        "Result: the exporter spends {savings:.2}x fewer metered calls than the fixed poller at the same p95 completion latency ({hinted_savings:.2}x with recipients; target >= 8x); a steadily finishing task costs a median {steady_median} calls ({steady_hinted_median} with recipients; targets <= 3 and <= 2.5), every finishing task delayed starts included {finishing_median} ({finishing_hinted_median}); p95 completion seen after {} ({} with recipients; target <= 53.8 s); a stalled task {stalled_calls} calls a day (target <= 60); no running task left unpolled longer than --poll.max-interval ({}): {}.",
        secs(exporter_summary.completion_p95_ms),
        secs(hinted_summary.completion_p95_ms),
        secs(MAX_INTERVAL_MS),
        if bounded(&exporter_summary) && bounded(&hinted_summary) {
            "yes"
        } else {
            "NO"
        }
    );
}
