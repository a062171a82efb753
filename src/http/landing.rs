//! The landing page at `/`: what this is, where its endpoints are, and the tracked tasks with
//! their progress, rendered on the server as one self-contained HTML page (inline CSS, a few
//! lines of inline script that refresh the tables in place; no external assets).
//!
//! Every string that comes from a task or the configuration is HTML-escaped. At most
//! [`MAX_ROWS`] tasks are listed, the most recently registered first, so the page stays light
//! however many tasks are tracked.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;

use super::site::ExporterPort;
use crate::clock::ms_to_seconds;
use crate::http::task_json::rfc3339;
use crate::telemetry::build_revision;
use crate::tracker::{ResultFetch, Task, TaskKey, TaskState};

/// The most task rows on the page.
pub const MAX_ROWS: usize = 500;

/// Seconds between the page's refreshes of its tables.
const REFRESH_SECONDS: u32 = 10;

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328;background:#fff}
h1{margin-bottom:.2rem}
.muted{color:#656d76}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:middle}
th{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums}
td.progress{white-space:nowrap}
.bar{display:inline-block;width:8rem;height:.7rem;background:#eaeef2;border-radius:.35rem;overflow:hidden;vertical-align:middle}
.bar>span{display:block;height:100%;background:#2da44e}
.state{padding:.05rem .4rem;border-radius:.6rem;font-size:.8rem}
.state-active{background:#ddf4ff}
.state-completed{background:#dafbe1}
.state-invalid{background:#ffebe9}
.state-expired{background:#fff8c5}
ul.links{padding-left:1.2rem}
";

/// Replaces the summary and the task table with fresh ones, keeping the scroll position; the
/// page works (without refresh) when scripts are off.
const SCRIPT: &str = "
setInterval(async()=>{try{const r=await fetch(location.href,{cache:'no-store'});if(!r.ok)return;
const d=new DOMParser().parseFromString(await r.text(),'text/html');
for(const id of['summary','tasks']){const n=d.getElementById(id),o=document.getElementById(id);if(n&&o)o.replaceWith(n);}
}catch(e){}},REFRESH_MS);
";

/// Renders the page at `now_ms`.
pub fn render(exporter: &dyn ExporterPort, now_ms: i64) -> String {
    let config = exporter.config();
    let tracker = exporter.tracker();

    // The newest MAX_ROWS tasks, chosen in one pass without copying the others.
    let mut newest: BinaryHeap<Reverse<(i64, TaskKey)>> = BinaryHeap::with_capacity(MAX_ROWS + 1);
    let mut by_state: HashMap<TaskState, usize> = HashMap::new();
    let mut total = 0usize;
    tracker.for_each(|task| {
        total += 1;
        *by_state.entry(task.state).or_default() += 1;
        newest.push(Reverse((task.created_at_ms, task.key)));
        if newest.len() > MAX_ROWS {
            newest.pop();
        }
    });
    let mut rows: Vec<Task> = newest
        .into_iter()
        .filter_map(|Reverse((_, key))| tracker.get(key))
        .collect();
    rows.sort_by_key(|task| Reverse((task.created_at_ms, task.key)));

    let mut page = String::with_capacity(4096 + rows.len() * 700);
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
    if total > rows.len() {
        let _ = write!(
            page,
            ". Showing the {} most recently registered; the <a href=\"/api/v1/tasks\">task API</a> lists them all.",
            rows.len()
        );
    }
    page.push_str("</p>");

    page.push_str(
        "<table id=\"tasks\"><thead><tr><th>Name</th><th>Agent</th><th>Task ID</th><th>App</th>\
         <th>State</th><th>Status</th><th>Progress</th><th>Expected end</th><th>Last poll</th><th>Last errcode</th>\
         <th>Recipients</th></tr></thead><tbody>",
    );
    let mut apps: HashMap<i64, String> = HashMap::new();
    for task in &rows {
        // A third-party app's tasks show their corp too: `isv-suite / acme`.
        let app = apps.entry(task.key.agent_id).or_insert_with(|| {
            let app = config.app_label(task.key.agent_id);
            match config.corp_label(task.key.agent_id) {
                Some(corp) => format!("{app} / {corp}"),
                None => app.to_string(),
            }
        });
        push_row(&mut page, task, app, now_ms);
    }
    if rows.is_empty() {
        page.push_str(
            "<tr><td colspan=\"11\" class=\"muted\">No tasks tracked yet. Register one with \
             <code>POST /api/v1/tasks</code> or <code>dingtalk-exporter track</code>.</td></tr>",
        );
    }
    page.push_str("</tbody></table>");
    let _ = writeln!(
        page,
        "<script>{}</script></body></html>",
        SCRIPT.replace("REFRESH_MS", &(REFRESH_SECONDS * 1000).to_string())
    );
    page
}

fn push_row(page: &mut String, task: &Task, app: &str, now_ms: i64) {
    let state = task.state.as_str();
    let status = task.status.map_or("–", |status| status.as_str());
    let _ = write!(
        page,
        "<tr><td>{name}</td><td class=\"num\">{agent}</td><td class=\"num\">{task_id}</td>\
         <td>{app}</td><td><span class=\"state state-{state}\">{state}</span></td><td>{status}</td><td class=\"progress\">",
        name = escape(&task.name),
        agent = task.key.agent_id,
        task_id = task.key.task_id,
        app = escape(app),
    );
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
    page.push_str("</td><td>");
    match task
        .expected_completion_at_ms
        .filter(|_| task.state == TaskState::Active)
        .and_then(|at| rfc3339(at).map(|text| (at, text)))
    {
        Some((at, text)) => {
            let _ = write!(
                page,
                "<time datetime=\"{text}\" title=\"{text}\">{}</time>",
                ends_in(now_ms, at)
            );
        }
        None => page.push('–'),
    }
    page.push_str("</td><td>");
    match task
        .last_poll_at_ms
        .and_then(|at| rfc3339(at).map(|text| (at, text)))
    {
        Some((at, text)) => {
            let _ = write!(
                page,
                "<time datetime=\"{text}\" title=\"{text}\">{}</time>",
                ago(now_ms, at)
            );
        }
        None => page.push_str("never"),
    }
    page.push_str("</td><td class=\"num\">");
    match task.last_errcode {
        Some(code) => {
            let _ = write!(page, "{code}");
        }
        None => page.push('–'),
    }
    page.push_str("</td><td>");
    match (task.recipients, task.result_fetch) {
        (Some(counts), _) => {
            let _ = write!(
                page,
                "read {} · unread {} · failed {} · forbidden {} · invalid {}",
                counts.read, counts.unread, counts.failed, counts.forbidden, counts.invalid
            );
        }
        (None, ResultFetch::Refused { errcode }) => {
            let _ = write!(page, "not available (errcode {errcode})");
        }
        (None, ResultFetch::TooManyRecipients) => {
            page.push_str("not available (more than 100 recipients)");
        }
        (None, _) => page.push('–'),
    }
    page.push_str("</td></tr>");
}

/// How long ago `at_ms` was, in the largest whole unit: `42s ago`, `5m ago`, `3h ago`.
fn ago(now_ms: i64, at_ms: i64) -> String {
    let seconds = ms_to_seconds(now_ms.saturating_sub(at_ms)).max(0.0) as u64;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86400),
    }
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

    /// Ages read in the largest whole unit.
    #[test]
    fn ages_use_the_largest_unit() {
        assert_eq!(ago(100_000, 58_000), "42s ago");
        assert_eq!(ago(10_000_000, 9_700_000), "5m ago");
        assert_eq!(ago(4 * 86_400_000, 0), "4d ago");
        assert_eq!(ago(0, 5_000), "0s ago");
    }
}
