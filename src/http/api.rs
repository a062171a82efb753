//! The task API under `/api/v1/tasks`: register, list, read and stop tracking tasks.
//!
//! Every error is JSON `{"error": "..."}` worded so the caller knows what to change.
//! Registration status codes: 201 when at least one task is new, 200 when all were already
//! tracked, 400 for an invalid body (nothing registered), 409 when `--tasks.max` would be
//! exceeded (the tracker is full: the caller must delete tasks or the operator raise the
//! limit), 413 for a body over 1 MiB, 503 when the store could not commit.

use std::collections::HashMap;
use std::net::IpAddr;

use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, StatusCode};
use serde::Serialize;

use super::auth::guard_write;
use super::registration::{parse_decimal_id, parse_registrations};
use super::reply::{self, Answer};
use super::request_guard;
use super::site::Site;
use super::task_json::TaskJson;
use crate::clock::now_ms;
use crate::config::Config;
use crate::tracker::{RegisterError, Task, TaskKey};

/// The largest registration body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

const COLLECTION: &str = "/api/v1/tasks";

pub(super) async fn route(parts: &Parts, body: &mut Incoming, site: &Site, peer: IpAddr) -> Answer {
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix(COLLECTION) else {
        return unknown_endpoint(path);
    };
    if rest.is_empty() {
        return match parts.method {
            Method::POST => register(parts, body, site, peer).await,
            Method::GET | Method::HEAD => list(site).await,
            _ => reply::method_not_allowed("GET, HEAD, POST", true),
        };
    }
    // `/{agent_id}/{task_id}`, exactly two segments.
    let Some((agent_id, task_id)) = rest
        .strip_prefix('/')
        .and_then(|ids| ids.split_once('/'))
        .filter(|(_, task_id)| !task_id.contains('/'))
    else {
        return unknown_endpoint(path);
    };
    let key = match (
        parse_path_id("agent_id", agent_id),
        parse_path_id("task_id", task_id),
    ) {
        (Ok(agent_id), Ok(task_id)) => TaskKey { agent_id, task_id },
        (Err(message), _) | (_, Err(message)) => {
            return reply::error(StatusCode::BAD_REQUEST, message);
        }
    };
    match parts.method {
        Method::GET | Method::HEAD => get_one(site, key),
        Method::DELETE => delete(parts, site, peer, key).await,
        _ => reply::method_not_allowed("GET, HEAD, DELETE", true),
    }
}

fn unknown_endpoint(path: &str) -> Answer {
    let shown: String = path.chars().take(100).collect();
    reply::error(
        StatusCode::NOT_FOUND,
        format!(
            "no API endpoint at {shown}; the task API is {COLLECTION} (GET, POST) and {COLLECTION}/{{agent_id}}/{{task_id}} (GET, DELETE)"
        ),
    )
}

fn parse_path_id(field: &str, text: &str) -> Result<i64, String> {
    parse_decimal_id(text).ok_or_else(|| {
        let shown: String = text.chars().take(40).collect();
        format!(
            "{field} in the path must be an integer from 1 to {}; got {shown:?}",
            i64::MAX
        )
    })
}

async fn register(parts: &Parts, body: &mut Incoming, site: &Site, peer: IpAddr) -> Answer {
    if let Some(refusal) = guard_write(parts, peer, &site.exporter.config(), true) {
        return refusal;
    }
    if let Some(refusal) = request_guard::json_body_refusal(parts, true, true) {
        return refusal;
    }
    let bytes = match reply::read_body(
        &parts.headers,
        body,
        MAX_BODY_BYTES,
        site.limits.body_read_timeout,
    )
    .await
    {
        Ok(bytes) => bytes,
        Err(err) => return err.into_answer(),
    };
    let registrations = match parse_registrations(&bytes) {
        Ok(registrations) => registrations,
        Err(err) => return reply::error(StatusCode::BAD_REQUEST, err.message()),
    };
    let batch = registrations.is_batch();
    let tracker = site.exporter.tracker();
    let registered = match tracker.register(registrations.into_tasks(), now_ms()).await {
        Ok(registered) => registered,
        Err(err @ RegisterError::TooManyTasks { .. }) => {
            return reply::error(StatusCode::CONFLICT, err.to_string());
        }
        Err(RegisterError::Store(err)) => {
            tracing::error!(error = %err, "registration not saved");
            return reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "nothing was registered: the exporter could not save the tasks ({err}); try again"
                ),
            );
        }
    };
    let created = registered.iter().filter(|(_, new)| *new).count();
    tracing::info!(
        created,
        already_tracked = registered.len() - created,
        "tasks registered"
    );
    let status = if created > 0 {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let apps = app_names(
        &site.exporter.config(),
        registered.iter().map(|(task, _)| task),
    );
    let answers: Vec<TaskJson> = registered
        .iter()
        .map(|(task, _)| {
            let (app, corp) = &apps[&task.key.agent_id];
            TaskJson::new(task, app, corp.as_deref())
        })
        .collect();
    match (batch, answers.first()) {
        (false, Some(only)) => reply::json(status, only),
        _ => reply::json(status, &answers),
    }
}

/// `{"tasks": [...]}`, ordered by agent and task id.
async fn list(site: &Site) -> Answer {
    #[derive(Serialize)]
    struct TaskList<'a> {
        tasks: Vec<TaskJson<'a>>,
    }
    let exporter = site.exporter.clone();
    // Copying and encoding 100,000 tasks takes a while: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let tasks = exporter.tracker().list();
        let apps = app_names(&exporter.config(), tasks.iter());
        let answer = TaskList {
            tasks: tasks
                .iter()
                .map(|task| {
                    let (app, corp) = &apps[&task.key.agent_id];
                    TaskJson::new(task, app, corp.as_deref())
                })
                .collect(),
        };
        reply::json(StatusCode::OK, &answer)
    })
    .await
    .unwrap_or_else(|err| {
        reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("listing the tasks failed: {err}"),
        )
    })
}

fn get_one(site: &Site, key: TaskKey) -> Answer {
    match site.exporter.tracker().get(key) {
        Some(task) => {
            let config = site.exporter.config();
            let app = config.app_label(key.agent_id);
            let corp = config.corp_label(key.agent_id);
            reply::json(StatusCode::OK, &TaskJson::new(&task, app, corp))
        }
        None => not_tracked(key),
    }
}

async fn delete(parts: &Parts, site: &Site, peer: IpAddr, key: TaskKey) -> Answer {
    if let Some(refusal) = guard_write(parts, peer, &site.exporter.config(), true) {
        return refusal;
    }
    match site.exporter.tracker().remove(key).await {
        Ok(true) => {
            tracing::info!(
                agent_id = key.agent_id,
                task_id = key.task_id,
                "task no longer tracked"
            );
            reply::empty(StatusCode::NO_CONTENT)
        }
        Ok(false) => not_tracked(key),
        Err(err) => {
            tracing::error!(error = %err, "task removal not saved");
            reply::error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "the task is still tracked: the exporter could not save its removal ({err}); try again"
                ),
            )
        }
    }
}

fn not_tracked(key: TaskKey) -> Answer {
    reply::error(
        StatusCode::NOT_FOUND,
        format!(
            "task {} of agent {} is not tracked; register it with POST {COLLECTION}",
            key.task_id, key.agent_id
        ),
    )
}

/// The `app` (and `corp`) of each agent among `tasks`, looked up once per agent.
fn app_names<'t>(
    config: &Config,
    tasks: impl Iterator<Item = &'t Task>,
) -> HashMap<i64, (String, Option<String>)> {
    let mut apps = HashMap::new();
    for task in tasks {
        apps.entry(task.key.agent_id).or_insert_with(|| {
            (
                config.app_label(task.key.agent_id).to_string(),
                config.corp_label(task.key.agent_id).map(str::to_string),
            )
        });
    }
    apps
}
