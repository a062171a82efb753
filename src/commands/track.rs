//! `dingtalk-exporter track`: registers one task with a running exporter through its task
//! API, for shell scripts and cron jobs.
//!
//! The API token (read from `--web.api-token-file`) travels only in the `Authorization`
//! header; it is never part of an answer, an error or anything printed.

use std::time::Duration;

use serde::Deserialize;

use super::cli::TrackArgs;
use crate::dingtalk::client::error_chain;
use crate::secret::Secret;

/// How long the whole exchange with the exporter may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The parts of the exporter's task answer that the summary shows.
#[derive(Deserialize)]
struct TaskAnswer {
    agent_id: i64,
    task_id: i64,
    name: String,
    state: String,
    status: Option<String>,
    progress_ratio: Option<f64>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// Registers the task of `args`; `Ok` holds a one-line summary to print, `Err` what went
/// wrong (the exporter's own words when it refused).
pub async fn run(args: &TrackArgs) -> Result<String, String> {
    let mut body = serde_json::json!({"agent_id": args.agent_id, "task_id": args.task_id});
    if let Some(name) = &args.name {
        body["name"] = serde_json::Value::String(name.clone());
    }
    if let Some(recipients) = args.recipients {
        body["recipients"] = serde_json::Value::from(recipients);
    }
    register(&args.exporter_url, args.api_token_file.as_deref(), &body).await
}

/// Posts one registration (`body`, the task API's JSON) to the exporter at `exporter_url`;
/// `Ok` holds a one-line summary, `Err` what went wrong.
pub(super) async fn register(
    exporter_url: &str,
    api_token_file: Option<&std::path::Path>,
    body: &serde_json::Value,
) -> Result<String, String> {
    let token = match api_token_file {
        Some(path) => {
            let token = Secret::from_file(path).map_err(|err| {
                format!("cannot read the API token file {}: {err}", path.display())
            })?;
            if token.is_empty() {
                return Err(format!("the API token file {} is empty", path.display()));
            }
            Some(token)
        }
        None => None,
    };
    let url = tasks_url(exporter_url)?;

    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|err| format!("cannot set up the HTTP client: {err}"))?;
    let mut request = client.post(url.clone()).json(body);
    if let Some(token) = &token {
        request = request.bearer_auth(token.expose());
    }
    let shown_url = display_url(&url);
    let response = request.send().await.map_err(|err| {
        // reqwest's message names the URL; show it without any credentials it may hold.
        format!(
            "could not reach the exporter at {shown_url}: {}",
            error_chain(err)
        )
    })?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|err| format!("the exporter's answer broke off: {}", err.without_url()))?;

    if !status.is_success() {
        let reason = serde_json::from_str::<ErrorAnswer>(&text)
            .map(|answer| answer.error)
            .unwrap_or_else(|_| text.trim().chars().take(500).collect());
        let hint = match status {
            reqwest::StatusCode::UNAUTHORIZED if token.is_none() => {
                "; pass the file holding the exporter's API token with --web.api-token-file"
            }
            reqwest::StatusCode::UNAUTHORIZED => {
                "; the token in --web.api-token-file is not the one the exporter expects"
            }
            _ => "",
        };
        return Err(format!(
            "the exporter at {shown_url} refused the task (HTTP {status}): {reason}{hint}"
        ));
    }
    let task: TaskAnswer = serde_json::from_str(&text).map_err(|err| {
        format!("the exporter answered HTTP {status} but its answer was not a task ({err})")
    })?;
    let what = if status == reqwest::StatusCode::CREATED {
        "now tracking"
    } else {
        "already tracking"
    };
    let mut line = summary(what, &task);
    if let Some(name) = body["name"].as_str().filter(|name| *name != task.name) {
        // The exporter keeps the first name a task was registered with.
        line.push_str(&format!(
            "; it keeps the name it was first registered with, not {name:?}"
        ));
    }
    Ok(line)
}

/// The task API's collection URL under the exporter's base URL.
fn tasks_url(base: &str) -> Result<reqwest::Url, String> {
    let base = base.trim().trim_end_matches('/');
    let scheme_missing = || {
        format!(
            "--exporter.url {base:?} must start with http:// or https:// and name a host, like http://127.0.0.1:10050"
        )
    };
    if !base.contains("://") {
        return Err(scheme_missing());
    }
    let url = reqwest::Url::parse(&format!("{base}/api/v1/tasks")).map_err(|err| {
        format!(
            "--exporter.url {base:?} is not a valid URL ({err}); use e.g. http://127.0.0.1:10050"
        )
    })?;
    // `localhost:10050` parses as a URL of the scheme "localhost".
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(scheme_missing());
    }
    Ok(url)
}

/// A URL fit for printing: any user name and password removed.
fn display_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

fn summary(what: &str, task: &TaskAnswer) -> String {
    let mut line = format!("{what} task {} of agent {}", task.task_id, task.agent_id);
    if !task.name.is_empty() {
        line.push_str(&format!(" ({:?})", task.name));
    }
    line.push_str(&format!(": state {}", task.state));
    if let Some(status) = &task.status {
        line.push_str(&format!(", status {status}"));
    }
    if let Some(ratio) = task.progress_ratio {
        line.push_str(&format!(", {:.0}% delivered", ratio * 100.0));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exporter URL may come with or without a trailing slash.
    #[test]
    fn builds_the_collection_url() {
        assert_eq!(
            tasks_url("http://127.0.0.1:10050/").unwrap().as_str(),
            "http://127.0.0.1:10050/api/v1/tasks"
        );
        assert!(
            tasks_url("http://not a url")
                .unwrap_err()
                .contains("--exporter.url")
        );
    }

    /// A URL without a scheme is refused with a word about the scheme, not "builder error".
    #[test]
    fn a_url_without_scheme_is_explained() {
        for base in ["localhost:10050", "127.0.0.1:10050", "ftp://host:1"] {
            let err = tasks_url(base).unwrap_err();
            assert!(err.contains("must start with http://"), "{base}: {err}");
        }
    }

    /// Credentials in the exporter URL never reach a printed message.
    #[test]
    fn printed_urls_hold_no_credentials() {
        let url = tasks_url("http://user:hunter2@127.0.0.1:1").unwrap();
        assert_eq!(display_url(&url), "http://127.0.0.1:1/api/v1/tasks");
    }
}
