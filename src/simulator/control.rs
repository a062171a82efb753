//! The control API under `/_sim/`: scripts a running simulator over HTTP (the routes are
//! listed in the module docs of [`crate::simulator`]). Answers are JSON; errors are
//! `{"error": "..."}` with a 4xx status.

use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::state::{Shared, TaskSpec};
use super::wire::{CloseConnection, HttpResponse, read_body, respond};

/// Every control route starts with this.
pub(crate) const PREFIX: &str = "/_sim/";

pub(crate) async fn handle(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<HttpResponse, CloseConnection> {
    let method = request.method().clone();
    let route = request.uri().path()[PREFIX.len()..]
        .trim_end_matches('/')
        .to_string();
    let Some(body) = read_body(request, shared.max_body_bytes).await? else {
        return Ok(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the body is too large",
        ));
    };
    Ok(match (&method, route.as_str()) {
        (&Method::GET, "stats") => ok(&shared.lock().stats),
        (&Method::GET, "tokens") => ok(&shared.lock().issued_tokens()),
        (&Method::POST, "expire-tokens") => ok(&json!({ "expired": shared.expire_tokens() })),
        (&Method::POST, "suite-ticket") => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct NewTicket {
                suite_key: String,
                ticket: String,
            }
            match serde_json::from_slice::<NewTicket>(&body) {
                Err(why) => error(
                    StatusCode::BAD_REQUEST,
                    &format!("expected {{\"suite_key\": \"...\", \"ticket\": \"...\"}}: {why}"),
                ),
                Ok(new) if shared.set_suite_ticket(&new.suite_key, &new.ticket) => {
                    ok(&json!({ "suite_key": new.suite_key }))
                }
                Ok(new) => error(
                    StatusCode::NOT_FOUND,
                    &format!("no suite {:?}", new.suite_key),
                ),
            }
        }
        (&Method::GET, "tasks") => ok(&shared.tasks()),
        (&Method::POST, "tasks") => add_tasks(shared, &body),
        (&Method::GET, "faults") => ok(&shared.lock().faults),
        (&Method::PUT | &Method::PATCH, "faults") => {
            let current = shared.lock().faults.clone();
            match updated(&method, &current, &body).and_then(|faults| {
                shared.set_faults(faults.clone())?;
                Ok(faults)
            }) {
                Ok(faults) => ok(&faults),
                Err(why) => error(StatusCode::BAD_REQUEST, &why),
            }
        }
        (&Method::GET, "behaviour") => ok(&shared.lock().behaviour),
        (&Method::PUT | &Method::PATCH, "behaviour") => {
            let current = shared.lock().behaviour.clone();
            match updated(&method, &current, &body).and_then(|behaviour| {
                shared.set_behaviour(behaviour.clone())?;
                Ok(behaviour)
            }) {
                Ok(behaviour) => ok(&behaviour),
                Err(why) => error(StatusCode::BAD_REQUEST, &why),
            }
        }
        (
            _,
            "stats" | "tokens" | "expire-tokens" | "suite-ticket" | "tasks" | "faults"
            | "behaviour",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} is not supported on {PREFIX}{route}"),
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            &format!(
                "no control route {PREFIX}{route}; there are stats, tokens, expire-tokens, suite-ticket, tasks, faults and behaviour"
            ),
        ),
    })
}

/// `POST /_sim/tasks`: one task spec or an array of them; all are added or none.
fn add_tasks(shared: &Shared, body: &[u8]) -> HttpResponse {
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(why) => return error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {why}")),
    };
    let batch = value.is_array();
    let specs: Result<Vec<TaskSpec>, _> = match value {
        Value::Array(items) => items.into_iter().map(serde_json::from_value).collect(),
        single => serde_json::from_value(single).map(|spec| vec![spec]),
    };
    let specs = match specs {
        Ok(specs) => specs,
        Err(why) => return error(StatusCode::BAD_REQUEST, &format!("not a task spec: {why}")),
    };
    let agent_ids: Vec<i64> = specs.iter().map(|spec| spec.agent_id).collect();
    let mut created: Vec<Value> = match shared.add_tasks(specs) {
        Ok(task_ids) => agent_ids
            .into_iter()
            .zip(task_ids)
            .map(|(agent_id, task_id)| json!({ "agent_id": agent_id, "task_id": task_id }))
            .collect(),
        Err(why) => return error(StatusCode::BAD_REQUEST, &why),
    };
    let answer = if batch {
        Value::Array(created)
    } else {
        created.pop().unwrap_or(Value::Null)
    };
    respond(StatusCode::CREATED, JSON, answer.to_string().into_bytes())
}

/// The settings after a `PUT` (the body replaces them; missing fields take their defaults)
/// or a `PATCH` (the body's fields are merged into the current settings).
fn updated<T: Serialize + DeserializeOwned>(
    method: &Method,
    current: &T,
    body: &[u8],
) -> Result<T, String> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|why| format!("body is not JSON: {why}"))?;
    let merged = if method == Method::PATCH {
        let mut merged = serde_json::to_value(current).map_err(|why| why.to_string())?;
        merge(&mut merged, patch);
        merged
    } else {
        patch
    };
    serde_json::from_value(merged).map_err(|why| why.to_string())
}

/// JSON merge patch (RFC 7386) without the deletion of `null` members, which the settings
/// use to mean "none".
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (name, value) in patch {
                merge(target.entry(name).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

const JSON: &str = "application/json;charset=utf-8";

fn ok(value: &impl Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => respond(StatusCode::OK, JSON, body),
        Err(why) => error(StatusCode::INTERNAL_SERVER_ERROR, &why.to_string()),
    }
}

fn error(status: StatusCode, why: &str) -> HttpResponse {
    respond(
        status,
        JSON,
        json!({ "error": why }).to_string().into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A patch changes only the fields it names, nested ones included.
    #[test]
    fn patches_merge_into_current_settings() {
        let mut current =
            json!({"qps_limit": 20, "send_timeline": {"duration_ms": 5000, "read": 6}});
        merge(
            &mut current,
            json!({"send_timeline": {"read": 2}, "quirks": 0.5}),
        );
        assert_eq!(
            current,
            json!({"qps_limit": 20, "quirks": 0.5, "send_timeline": {"duration_ms": 5000, "read": 2}})
        );
    }
}
