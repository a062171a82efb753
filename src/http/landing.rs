//! The landing page at `/`: what this is, where its endpoints are, and the tracked tasks
//! for on-call, rendered on the server as one self-contained HTML page (inline CSS, a few
//! lines of inline script that refresh the list in place; no external assets).
//!
//! Tasks that need attention come first, each with a badge saying why: stalled (in progress
//! but unchanged for [`ATTENTION_AFTER`] of answers), not started for that long, invalid,
//! failing polls; then the rest. The newest come first within each group. The list can be
//! filtered by state and by name (`?state=active&name=payroll`) and is paged
//! ([`PAGE_ROWS`] a page, `&page=2`), with the count of matching tasks. On a narrow screen
//! each task is a compact card instead of a table row, so nothing scrolls sideways.
//!
//! Every string that comes from a task, the configuration or the query is HTML-escaped.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::site::ExporterPort;
use crate::clock::ms_to_seconds;
use crate::http::task_json::rfc3339;
use crate::telemetry::build_revision;
use crate::tracker::{ResultFetch, SendStatus, Task, TaskKey, TaskState};

/// Task rows on one page of the list.
pub const PAGE_ROWS: usize = 100;

/// How long a delivery may go without progress, or without starting, before the page marks
/// it: the same 15 minutes after which `DingTalkDeliveryStalled` and
/// `DingTalkDeliveryNotStarted` fire.
pub const ATTENTION_AFTER_MS: i64 = 15 * 60 * 1000;

/// Seconds between the page's refreshes of its list.
const REFRESH_SECONDS: u32 = 10;

/// Longest name filter honoured; longer ones are cut (it is only a filter).
const MAX_FILTER_CHARS: usize = 256;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#1f2328;background:#fff}
h1{margin:0 0 .2rem}
.muted{color:#656d76}
small{color:#656d76}
ul.links{padding-left:1.2rem}
form.filter{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center;margin:.8rem 0}
form.filter input[type=search]{min-width:12rem;flex:1 1 12rem;max-width:24rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa}
td.progress{white-space:nowrap}
.bar{display:inline-block;width:7rem;height:.7rem;background:#eaeef2;border-radius:.35rem;overflow:hidden;vertical-align:middle}
.bar>span{display:block;height:100%;background:#2da44e}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:.6rem;font-size:.8rem;white-space:nowrap;margin:0 .2rem .1rem 0}
.b-active{background:#ddf4ff}
.b-completed{background:#dafbe1}
.b-expired{background:#fff8c5}
.b-invalid,.b-stalled{background:#cf222e;color:#fff}
.b-not-started,.b-failing{background:#fb8500;color:#111}
tr.attention{background:#fff5f5}
.pages{margin:.8rem 0;display:flex;gap:1rem;flex-wrap:wrap}
@media (max-width:640px){
body{margin:.7rem}
table,tbody,tr,td{display:block;width:100%;box-sizing:border-box}
thead{display:none}
tr{border:1px solid #d0d7de;border-radius:.5rem;margin:0 0 .6rem;padding:.3rem .5rem}
td{border:none;padding:.15rem 0}
td[data-label]::before{content:attr(data-label) \": \";color:#656d76}
td.task::before{content:none}
.bar{width:55%}
}
";

/// Replaces the summary and the task list with fresh ones, keeping the scroll position; the
/// page works (without refresh) when scripts are off.
const SCRIPT: &str = "
setInterval(async()=>{try{const r=await fetch(location.href,{cache:'no-store'});if(!r.ok)return;
const d=new DOMParser().parseFromString(await r.text(),'text/html');
for(const id of['summary','tasks','pages']){const n=d.getElementById(id),o=document.getElementById(id);if(n&&o)o.replaceWith(n);}
}catch(e){}},REFRESH_MS);
";

/// What the page's query asks for: a state, a piece of a name (or task id), a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageQuery {
    pub state: Option<TaskState>,
    pub name: String,
    /// Counted from 1.
    pub page: usize,
}

impl PageQuery {
    /// Reads `state`, `name` and `page` from a query string; anything else, or a value that
    /// is not understood, is ignored (it is only a view).
    pub fn parse(query: Option<&str>) -> PageQuery {
        let mut parsed = PageQuery {
            page: 1,
            ..PageQuery::default()
        };
        for (key, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "state" => {
                    parsed.state = TaskState::ALL
                        .into_iter()
                        .find(|state| state.as_str() == value);
                }
                "name" => parsed.name = value.trim().chars().take(MAX_FILTER_CHARS).collect(),
                "page" => parsed.page = value.parse().unwrap_or(1).max(1),
                _ => {}
            }
        }
        parsed
    }

    /// The query string of page `page` of this view, for a link.
    fn link(&self, page: usize) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        if let Some(state) = self.state {
            query.append_pair("state", state.as_str());
        }
        if !self.name.is_empty() {
            query.append_pair("name", &self.name);
        }
        query.append_pair("page", &page.to_string());
        format!("?{}", query.finish())
    }

    fn matches(&self, task: &Task, lowercase_name: &str) -> bool {
        if self.state.is_some_and(|state| state != task.state) {
            return false;
        }
        lowercase_name.is_empty()
            || task.name.to_lowercase().contains(lowercase_name)
            || task.key.task_id.to_string().contains(lowercase_name)
    }
}

/// Why a task is shown where it is, in the order of the list: the ones that need attention
/// first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Concern {
    /// In progress, but DingTalk's answers have shown no change for [`ATTENTION_AFTER_MS`].
    Stalled,
    /// Not started (or not answered) [`ATTENTION_AFTER_MS`] after registration.
    NotStarted,
    /// DingTalk does not know the task.
    Invalid,
    /// The last poll failed.
    Failing,
    Active,
    Completed,
    Expired,
}

impl Concern {
    fn of(task: &Task, now_ms: i64) -> Concern {
        match task.state {
            TaskState::Invalid => return Concern::Invalid,
            TaskState::Completed => return Concern::Completed,
            TaskState::Expired => return Concern::Expired,
            TaskState::Active => {}
        }
        let seen_at = task.last_poll_at_ms.unwrap_or(now_ms);
        match task.status {
            Some(SendStatus::InProgress)
                if seen_at - task.last_progress_change_at_ms >= ATTENTION_AFTER_MS =>
            {
                return Concern::Stalled;
            }
            Some(SendStatus::NotStarted) | None
                if seen_at - task.created_at_ms >= ATTENTION_AFTER_MS =>
            {
                return Concern::NotStarted;
            }
            _ => {}
        }
        if task.last_errcode.is_some_and(|code| code != 0) {
            Concern::Failing
        } else {
            Concern::Active
        }
    }

    fn needs_attention(self) -> bool {
        self <= Concern::Failing
    }
}

/// Renders the page at `now_ms` for `query`.
pub fn render(exporter: &dyn ExporterPort, now_ms: i64, query: &PageQuery) -> String {
    let config = exporter.config();
    let tracker = exporter.tracker();

    // One pass: counts by state, and the order key of every matching task (not the task).
    let lowercase_name = query.name.to_lowercase();
    let mut by_state: HashMap<TaskState, usize> = HashMap::new();
    let mut attention = 0usize;
    let mut total = 0usize;
    let mut matching: Vec<(Concern, std::cmp::Reverse<(i64, TaskKey)>)> = Vec::new();
    tracker.for_each(|task| {
        total += 1;
        *by_state.entry(task.state).or_default() += 1;
        let concern = Concern::of(task, now_ms);
        if concern.needs_attention() {
            attention += 1;
        }
        if query.matches(task, &lowercase_name) {
            matching.push((concern, std::cmp::Reverse((task.created_at_ms, task.key))));
        }
    });
    let pages = matching.len().div_ceil(PAGE_ROWS).max(1);
    let page_number = query.page.min(pages);
    let first = (page_number - 1) * PAGE_ROWS;
    let shown_end = (first + PAGE_ROWS).min(matching.len());
    // Only the rows of this page need ordering among themselves; the rest just need to be
    // on the right side of them.
    if first < matching.len() {
        matching.select_nth_unstable(first);
        let tail = &mut matching[first..];
        if tail.len() > PAGE_ROWS {
            tail.select_nth_unstable(PAGE_ROWS);
        }
        let shown = &mut matching[first..shown_end];
        shown.sort_unstable();
    }
    let rows: Vec<(Concern, Task)> = matching[first.min(matching.len())..shown_end]
        .iter()
        .filter_map(|(concern, std::cmp::Reverse((_, key)))| {
            tracker.get(*key).map(|task| (*concern, task))
        })
        .collect();

    let mut page = String::with_capacity(6144 + rows.len() * 900);
    let version = env!("CARGO_PKG_VERSION");
    let metrics_path = escape(&config.web.telemetry_path);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>DingTalk Exporter</title><style>{STYLE}</style></head><body>\
         <h1>DingTalk Exporter</h1>\
         <p class=\"muted\">Version {version} (revision {revision}). Tracks DingTalk \
         work-notification deliveries and polls their progress in the background; \
         scrapes never call DingTalk.</p>\
         <ul class=\"links\">\
         <li><a href=\"{metrics_path}\">Metrics</a> ({metrics_path})</li>\
         <li><a href=\"/-/healthy\">Health</a> and <a href=\"/-/ready\">readiness</a></li>\
         <li><a href=\"/api/v1/tasks\">Task API</a>: <code>POST /api/v1/tasks</code> with \
         <code>{{\"agent_id\":1,\"task_id\":2,\"name\":\"optional\"}}</code> to track a task</li>\
         </ul>",
        revision = escape(build_revision()),
    );

    page.push_str("<p id=\"summary\">");
    let _ = write!(page, "<strong>{total}</strong> tracked task(s)");
    for state in TaskState::ALL {
        let count = by_state.get(&state).copied().unwrap_or(0);
        let _ = write!(page, " · {count} {}", state.as_str());
    }
    if attention > 0 {
        let _ = write!(
            page,
            " · <span class=\"badge b-stalled\">{attention} need attention</span>"
        );
    }
    let _ = write!(
        page,
        ". {} match{}; showing {}–{}, those that need attention first, newest first within each group.",
        matching.len(),
        if query.state.is_some() || !query.name.is_empty() {
            " the filter"
        } else {
            ""
        },
        if rows.is_empty() { 0 } else { first + 1 },
        first + rows.len(),
    );
    page.push_str("</p>");

    push_filter(&mut page, query);

    page.push_str(
        "<table id=\"tasks\"><thead><tr><th>Task</th><th>State</th><th>Progress</th>\
         <th>Last change</th><th>Last answer</th><th>Recipients</th></tr></thead><tbody>",
    );
    let mut apps: HashMap<i64, String> = HashMap::new();
    for (concern, task) in &rows {
        // A third-party app's tasks show their corp too: `isv-suite / acme`.
        let app = apps.entry(task.key.agent_id).or_insert_with(|| {
            let app = config.app_label(task.key.agent_id);
            match config.corp_label(task.key.agent_id) {
                Some(corp) => format!("{app} / {corp}"),
                None => app.to_string(),
            }
        });
        push_row(&mut page, task, *concern, app, now_ms);
    }
    if rows.is_empty() {
        let message = if total == 0 {
            "No tasks tracked yet. Register one with <code>POST /api/v1/tasks</code> or \
             <code>dingtalk-exporter track</code>."
        } else {
            "No task matches the filter."
        };
        let _ = write!(
            page,
            "<tr><td colspan=\"6\" class=\"muted\">{message}</td></tr>"
        );
    }
    page.push_str("</tbody></table><nav id=\"pages\" class=\"pages\">");
    if page_number > 1 {
        let _ = write!(
            page,
            "<a href=\"{}\">‹ previous {PAGE_ROWS}</a>",
            escape(&query.link(page_number - 1))
        );
    }
    let _ = write!(
        page,
        "<span class=\"muted\">page {page_number} of {pages}</span>"
    );
    if page_number < pages {
        let _ = write!(
            page,
            "<a href=\"{}\">next {PAGE_ROWS} ›</a>",
            escape(&query.link(page_number + 1))
        );
    }
    page.push_str("</nav>");
    let _ = writeln!(
        page,
        "<script>{}</script></body></html>",
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string())
    );
    page
}

/// The filter form: a state and a piece of a name, sent as a GET of this page.
fn push_filter(page: &mut String, query: &PageQuery) {
    page.push_str(
        "<form class=\"filter\" method=\"get\" action=\"/\"><label>State \
         <select name=\"state\"><option value=\"\">any</option>",
    );
    for state in TaskState::ALL {
        let selected = if query.state == Some(state) {
            " selected"
        } else {
            ""
        };
        let _ = write!(
            page,
            "<option value=\"{0}\"{selected}>{0}</option>",
            state.as_str()
        );
    }
    let _ = write!(
        page,
        "</select></label><input type=\"search\" name=\"name\" value=\"{}\" \
         placeholder=\"name or task id\" aria-label=\"name or task id\">\
         <button type=\"submit\">Filter</button></form>",
        escape(&query.name)
    );
}

fn push_row(page: &mut String, task: &Task, concern: Concern, app: &str, now_ms: i64) {
    let state = task.state.as_str();
    let class = if concern.needs_attention() {
        " class=\"attention\""
    } else {
        ""
    };
    let name = if task.name.is_empty() {
        "<span class=\"muted\">(no name)</span>".to_string()
    } else {
        escape(&task.name)
    };
    let _ = write!(
        page,
        "<tr{class}><td class=\"task\"><strong>{name}</strong><br><small>task {task_id} · agent {agent} · app {app}</small></td>\
         <td data-label=\"State\">",
        task_id = task.key.task_id,
        agent = task.key.agent_id,
        app = escape(app),
    );
    match concern {
        Concern::Stalled => {
            let _ = write!(
                page,
                "<span class=\"badge b-stalled\">stalled {}</span>",
                span(task.last_poll_at_ms.unwrap_or(now_ms) - task.last_progress_change_at_ms)
            );
        }
        Concern::NotStarted => {
            let _ = write!(
                page,
                "<span class=\"badge b-not-started\">not started after {}</span>",
                span(task.last_poll_at_ms.unwrap_or(now_ms) - task.created_at_ms)
            );
        }
        Concern::Failing => {
            let _ = write!(
                page,
                "<span class=\"badge b-failing\">last poll failed: errcode {}</span>",
                task.last_errcode.unwrap_or_default()
            );
        }
        Concern::Invalid => {
            let _ = write!(
                page,
                "<span class=\"badge b-invalid\">invalid: DingTalk answered {}</span>",
                task.last_errcode.unwrap_or(40035)
            );
        }
        Concern::Active | Concern::Completed | Concern::Expired => {}
    }
    if concern != Concern::Invalid {
        let _ = write!(page, "<span class=\"badge b-{state}\">{state}</span>");
    }
    if let Some(status) = task.status {
        let _ = write!(page, " <small>{}</small>", status.as_str());
    }
    page.push_str("</td><td class=\"progress\" data-label=\"Progress\">");
    match task.progress_ratio {
        Some(ratio) => {
            let percent = (ratio.clamp(0.0, 1.0) * 100.0).round();
            let _ = write!(
                page,
                "<span class=\"bar\" title=\"{percent}%\"><span style=\"width:{percent}%\"></span></span> {percent}%"
            );
        }
        None => page.push('–'),
    }
    // The scheduler's estimate of the end, while the task runs.
    if let Some((at, text)) = task
        .expected_completion_at_ms
        .filter(|_| task.state == TaskState::Active)
        .and_then(|at| rfc3339(at).map(|text| (at, text)))
    {
        let _ = write!(
            page,
            " <small><time datetime=\"{text}\" title=\"expected end {text}\">{}</time></small>",
            ends_in(now_ms, at)
        );
    }
    page.push_str("</td><td data-label=\"Last change\">");
    push_time(page, now_ms, Some(task.last_progress_change_at_ms));
    page.push_str("</td><td data-label=\"Last answer\">");
    // An invalid task's last answer is the refusal that ended it.
    let last_answer = task.last_poll_at_ms.or(match task.state {
        TaskState::Invalid => task.ended_at_ms,
        _ => None,
    });
    push_time(page, now_ms, last_answer);
    page.push_str("</td><td data-label=\"Recipients\">");
    match (task.recipients, task.result_fetch) {
        (Some(counts), _) => {
            let _ = write!(
                page,
                "read {} · unread {} · failed {} · forbidden {} · invalid {}",
                counts.read, counts.unread, counts.failed, counts.forbidden, counts.invalid
            );
        }
        (None, ResultFetch::TooManyRecipients) => {
            page.push_str("not available: DingTalk reports recipients only up to 100");
        }
        (None, ResultFetch::Refused { errcode }) => {
            let _ = write!(page, "not available (errcode {errcode})");
        }
        (None, _) => page.push('–'),
    }
    page.push_str("</td></tr>");
}

/// `<time>` of `at_ms` as an age, or "never".
fn push_time(page: &mut String, now_ms: i64, at_ms: Option<i64>) {
    match at_ms.and_then(|at| rfc3339(at).map(|text| (at, text))) {
        Some((at, text)) => {
            let _ = write!(
                page,
                "<time datetime=\"{text}\" title=\"{text}\">{}</time>",
                ago(now_ms, at)
            );
        }
        None => page.push_str("never"),
    }
}

/// A duration in the largest whole unit: `42s`, `5m`, `3h`, `2d`.
fn span(ms: i64) -> String {
    let seconds = ms_to_seconds(ms).max(0.0) as u64;
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m", seconds / 60),
        3600..86400 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

/// How long ago `at_ms` was, in the largest whole unit: `42s ago`, `5m ago`, `3h ago`.
fn ago(now_ms: i64, at_ms: i64) -> String {
    format!("{} ago", span(now_ms.saturating_sub(at_ms)))
}

/// How soon the scheduler expects a delivery to end, roughly: `ends in ~40s`,
/// `ends in ~4 min`, `ends in ~2 h`, or `overdue` once the moment has passed.
fn ends_in(now_ms: i64, at_ms: i64) -> String {
    let remaining_ms = at_ms.saturating_sub(now_ms);
    if remaining_ms <= 0 {
        return "overdue".to_string();
    }
    let seconds = (remaining_ms + 999) / 1000;
    match seconds {
        0..60 => format!("ends in ~{seconds}s"),
        60..3600 => format!("ends in ~{} min", (seconds + 30) / 60),
        _ => format!("ends in ~{} h", (seconds + 1800) / 3600),
    }
}

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            other => escaped.push(other),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup characters in task names become entities.
    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    /// Expected ends read as a rough countdown, and as overdue once passed.
    #[test]
    fn expected_ends_read_as_a_countdown() {
        assert_eq!(ends_in(0, 40_000), "ends in ~40s");
        assert_eq!(ends_in(0, 4 * 60_000 + 10_000), "ends in ~4 min");
        assert_eq!(ends_in(0, 2 * 3_600_000), "ends in ~2 h");
        assert_eq!(ends_in(10_000, 10_000), "overdue");
    }

    fn task(status: Option<SendStatus>, created_at_ms: i64) -> Task {
        let mut task = Task::registered(
            TaskKey {
                agent_id: 1,
                task_id: 2,
            },
            "t".to_string(),
            created_at_ms,
        );
        task.status = status;
        task
    }

    /// Stalled, long-unstarted, invalid and failing tasks come before the rest, in that
    /// order, at the thresholds of the stall alerts.
    #[test]
    fn tasks_that_need_attention_come_first() {
        let now = 10 * ATTENTION_AFTER_MS;
        let mut stalled = task(Some(SendStatus::InProgress), 0);
        stalled.last_progress_change_at_ms = now - ATTENTION_AFTER_MS - 1;
        stalled.last_poll_at_ms = Some(now);
        let mut moving = stalled.clone();
        moving.last_progress_change_at_ms = now - ATTENTION_AFTER_MS + 1_000;
        let mut waiting = task(Some(SendStatus::NotStarted), now - ATTENTION_AFTER_MS);
        waiting.last_poll_at_ms = Some(now);
        let fresh = task(None, now - 1_000);
        let mut invalid = task(None, now);
        invalid.state = TaskState::Invalid;
        let mut failing = task(Some(SendStatus::InProgress), now - 1_000);
        failing.last_progress_change_at_ms = now - 1_000;
        failing.last_errcode = Some(90018);
        let mut done = task(Some(SendStatus::Completed), 0);
        done.state = TaskState::Completed;
        assert_eq!(Concern::of(&stalled, now), Concern::Stalled);
        assert_eq!(Concern::of(&moving, now), Concern::Active);
        assert_eq!(Concern::of(&waiting, now), Concern::NotStarted);
        assert_eq!(Concern::of(&fresh, now), Concern::Active);
        assert_eq!(Concern::of(&invalid, now), Concern::Invalid);
        assert_eq!(Concern::of(&failing, now), Concern::Failing);
        assert_eq!(Concern::of(&done, now), Concern::Completed);
        let mut order = [
            Concern::Completed,
            Concern::Active,
            Concern::Failing,
            Concern::Invalid,
            Concern::NotStarted,
            Concern::Stalled,
        ];
        order.sort();
        assert_eq!(
            order,
            [
                Concern::Stalled,
                Concern::NotStarted,
                Concern::Invalid,
                Concern::Failing,
                Concern::Active,
                Concern::Completed
            ]
        );
    }

    /// The query keeps known states, trims the name, and starts paging at 1.
    #[test]
    fn query_reads_state_name_and_page() {
        let query = PageQuery::parse(Some("state=invalid&name=+pay%20roll+&page=3&x=1"));
        assert_eq!(query.state, Some(TaskState::Invalid));
        assert_eq!(query.name, "pay roll");
        assert_eq!(query.page, 3);
        let odd = PageQuery::parse(Some("state=bogus&page=-2"));
        assert_eq!((odd.state, odd.page), (None, 1));
        assert_eq!(PageQuery::parse(None).page, 1);
    }

    /// Ages read in the largest whole unit.
    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(ago(100_000, 58_000), "42s ago");
        assert_eq!(ago(10_000_000, 9_700_000), "5m ago");
        assert_eq!(ago(4 * 86_400_000, 0), "4d ago");
        assert_eq!(ago(0, 5_000), "0s ago");
    }
}
