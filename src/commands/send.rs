//! `dingtalk-exporter send`: sends a work notification through `asyncsend_v2` with an
//! app's credentials, then registers its task with a running exporter (`source: send`, its
//! name and recipient count), for shell scripts and cron jobs that would otherwise need
//! both a DingTalk client and a `track` call.
//!
//! A send that DingTalk accepted is never repeated: when only the registration fails, the
//! task_id is still printed and the command exits 3, so a script can tell "sent but not
//! tracked" (register it later with `track`) from "not sent" (exit 1, safe to retry).
//! The app secret and the access token appear in nothing printed, `--dry-run` included.

use std::io::Read;
use std::time::Duration;

use serde_json::{Value, json};

use super::Outcome;
use super::cli::SendArgs;
use crate::config::{self, AppConfig, flags::ExporterFlags};
use crate::dingtalk::message::{ASYNC_SEND_PATH, clean_name, message_name, send_outcome};

/// How long each call to DingTalk may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends, prints the task_id, registers.
pub async fn run(args: &SendArgs) -> Result<Outcome, String> {
    let msg = message(args)?;
    let flags = ExporterFlags {
        config_file: args.config_file.clone(),
        app: args.app.clone(),
        ..ExporterFlags::default()
    };
    let config = config::load(&flags)
        .map_err(|errors| format!("invalid configuration (nothing was sent):\n{errors}"))?;
    let app = config.app_for_agent(args.agent_id).ok_or_else(|| {
        format!(
            "no credentials for agent {}: give --dingtalk.app-key and --dingtalk.app-secret-file (or DINGTALK_APP_KEY and DINGTALK_APP_SECRET), or an app with this agent_id in --config.file",
            args.agent_id
        )
    })?;
    let (body, recipients) = request_body(args, msg)?;
    let name = args
        .name
        .as_deref()
        .map(clean_name)
        .unwrap_or_else(|| clean_name(&message_name(&body["msg"])));

    if args.dry_run {
        println!(
            "POST {}{ASYNC_SEND_PATH}?access_token=<token of app {:?}>",
            app.api_url, app.name
        );
        println!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return Ok(Outcome::Success);
    }

    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|err| format!("cannot set up the HTTP client: {err}"))?;
    let token = access_token(&client, app).await?;
    let task_id = send(&client, app, &token, &body).await?;
    println!("{task_id}");

    let mut registration = json!({
        "agent_id": args.agent_id,
        "task_id": task_id,
        "name": name,
        "source": "send",
    });
    if let Some(recipients) = recipients {
        registration["recipients"] = json!(recipients);
    }
    match super::track::register(
        &args.exporter_url,
        args.api_token_file.as_deref(),
        &registration,
    )
    .await
    {
        Ok(summary) => {
            eprintln!("{summary}");
            Ok(Outcome::Success)
        }
        Err(err) => {
            eprintln!(
                "dingtalk-exporter: the message was sent (task_id {task_id}) but not registered with the exporter: {err}\n\
                 do not send it again; register it with: dingtalk-exporter track --agent-id {} --task-id {task_id}",
                args.agent_id
            );
            Ok(Outcome::SentNotTracked)
        }
    }
}

/// The `msg` object: from `--msg-file`, or a text message from `--text` or standard input.
fn message(args: &SendArgs) -> Result<Value, String> {
    if let Some(path) = &args.msg_file {
        let text = if path.as_os_str() == "-" {
            read_stdin()?
        } else {
            std::fs::read_to_string(path)
                .map_err(|err| format!("cannot read --msg-file {}: {err}", path.display()))?
        };
        let msg: Value = serde_json::from_str(&text)
            .map_err(|err| format!("--msg-file {} is not JSON: {err}", path.display()))?;
        if !msg.get("msgtype").is_some_and(Value::is_string) {
            return Err(format!(
                "--msg-file {} must hold a msg object with a msgtype, e.g. {{\"msgtype\":\"text\",\"text\":{{\"content\":\"...\"}}}}",
                path.display()
            ));
        }
        return Ok(msg);
    }
    let text = match &args.text {
        Some(text) => text.clone(),
        None => read_stdin()?,
    };
    if text.trim().is_empty() {
        return Err(
            "the message is empty: give --text, --msg-file or text on standard input".to_string(),
        );
    }
    Ok(json!({"msgtype": "text", "text": {"content": text}}))
}

fn read_stdin() -> Result<String, String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .map_err(|err| format!("cannot read the message from standard input: {err}"))?;
    Ok(text)
}

/// The `asyncsend_v2` body, and the recipient count when it is known (user ids only).
fn request_body(args: &SendArgs, msg: Value) -> Result<(Value, Option<u64>), String> {
    let list = |text: &Option<String>| -> Vec<String> {
        text.as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut users = list(&args.user_ids);
    users.sort();
    users.dedup();
    let depts = list(&args.dept_ids);
    if users.is_empty() && depts.is_empty() && !args.all_users {
        return Err("no recipients: give --user-ids, --dept-ids or --all-users".to_string());
    }
    if users.len() > 5_000 {
        return Err(format!(
            "--user-ids names {} users; DingTalk sends to at most 5000 per call",
            users.len()
        ));
    }
    let mut body = json!({"agent_id": args.agent_id, "msg": msg});
    if !users.is_empty() {
        body["userid_list"] = json!(users.join(","));
    }
    if !depts.is_empty() {
        body["dept_id_list"] = json!(depts.join(","));
    }
    if args.all_users {
        body["to_all_user"] = json!(true);
    }
    let recipients = (depts.is_empty() && !args.all_users).then_some(users.len() as u64);
    Ok((body, recipients))
}

/// DingTalk's error answer in words: errcode and errmsg (never the request).
fn dingtalk_error(answer: &Value) -> String {
    let errmsg = answer
        .get("sub_msg")
        .or_else(|| answer.get("errmsg"))
        .and_then(Value::as_str)
        .unwrap_or("");
    format!(
        "errcode {}: {errmsg}",
        answer.get("errcode").unwrap_or(&Value::Null)
    )
}

/// A request error with its causes, and without the URL (whose query holds the secret or
/// the token).
fn why(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// A URL with query parameters; the error never shows them (they hold secrets).
fn with_query(base: &str, params: &[(&str, &str)]) -> Result<reqwest::Url, String> {
    reqwest::Url::parse_with_params(base, params)
        .map_err(|err| format!("the API URL {base:?} is not valid: {err}"))
}

async fn access_token(client: &reqwest::Client, app: &AppConfig) -> Result<String, String> {
    let url = with_query(
        &format!("{}/gettoken", app.api_url),
        &[
            ("appkey", app.app_key.as_str()),
            ("appsecret", app.app_secret.expose()),
        ],
    )?;
    let answer: Value = client
        .get(url)
        .send()
        .await
        .map_err(|err| {
            format!(
                "cannot reach DingTalk at {} (nothing was sent): {}",
                app.api_url,
                why(err)
            )
        })?
        .json()
        .await
        .map_err(|err| {
            format!(
                "DingTalk's gettoken answer was not JSON (nothing was sent): {}",
                why(err)
            )
        })?;
    answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "DingTalk gave app {:?} no access token (nothing was sent): {}",
                app.name,
                dingtalk_error(&answer)
            )
        })
}

async fn send(
    client: &reqwest::Client,
    app: &AppConfig,
    token: &str,
    body: &Value,
) -> Result<i64, String> {
    let url = with_query(
        &format!("{}{ASYNC_SEND_PATH}", app.api_url),
        &[("access_token", token)],
    )?;
    let response = client.post(url).json(body).send().await.map_err(|err| {
        let when = if err.is_connect() {
            "nothing was sent"
        } else {
            "the message may have been sent; check before sending it again"
        };
        format!("asyncsend_v2 failed ({when}): {}", why(err))
    })?;
    let bytes = response.bytes().await.map_err(|err| {
        format!(
            "asyncsend_v2's answer broke off (the message may have been sent; check before sending it again): {}",
            why(err)
        )
    })?;
    match send_outcome(&bytes) {
        Ok(task_id) => Ok(task_id),
        Err(Some(_)) => {
            let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Err(format!("DingTalk refused the send: {}", dingtalk_error(&answer)))
        }
        Err(None) => Err(
            "asyncsend_v2 answered without a task_id (the message may have been sent; check before sending it again)"
                .to_string(),
        ),
    }
}
