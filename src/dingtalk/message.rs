//! The work-notification send APIs (`asyncsend_v2`, `sendbytemplate`) as a tracker sees
//! them: what a send request says about the task it creates (agent, name, recipient count),
//! and the `task_id` of its answer. Shared by the tracking proxy, which reads sends it
//! relays, and the `send` command, which makes them.
//!
//! A name is taken from a message's *title* only (`markdown.title`, `link.title`,
//! `action_card.title`, `oa.head.text`, `oa.body.title`): a text message's content is the
//! message itself, which must never reach a metric label, a page or a log line, so text,
//! file, image and voice messages are named after their kind.

use serde_json::Value;

/// The path of `asyncsend_v2` under the API's base URL.
pub const ASYNC_SEND_PATH: &str = "/topapi/message/corpconversation/asyncsend_v2";
/// The path of `sendbytemplate` under the API's base URL.
pub const SEND_BY_TEMPLATE_PATH: &str = "/topapi/message/corpconversation/sendbytemplate";

/// The longest task name (as the task API allows).
const MAX_NAME_CHARS: usize = 256;

/// What a send request says about the task it creates.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SendFacts {
    /// `agent_id`, when present and a positive integer.
    pub agent_id: Option<i64>,
    /// A name for the task, from the message's title or kind (or the template's id).
    pub name: String,
    /// How many users it goes to: the distinct ids of `userid_list`, when the send names
    /// no departments and is not to all users (those counts are unknown).
    pub recipients: Option<u64>,
}

/// Reads a send request's body, JSON or form-encoded (where `msg` is a JSON string).
/// Unreadable bodies give empty facts: DingTalk will refuse them anyway.
pub fn send_facts(body: &[u8]) -> SendFacts {
    let fields = body_fields(body);
    let text = |name: &str| -> Option<String> {
        match fields.get(name)? {
            Value::String(text) => Some(text.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    };
    let agent_id = text("agent_id")
        .and_then(|id| id.trim().parse::<i64>().ok())
        .filter(|&id| id > 0);
    let list = |name: &str| -> Vec<String> {
        text(name)
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_string)
            .collect()
    };
    let mut users = list("userid_list");
    users.sort();
    users.dedup();
    let to_all = text("to_all_user").is_some_and(|flag| flag.trim() == "true");
    let recipients = (!users.is_empty() && list("dept_id_list").is_empty() && !to_all)
        .then_some(users.len() as u64);
    let name = match fields.get("msg") {
        Some(msg) => message_name(msg),
        None => match text("template_id") {
            Some(template) => format!("template {}", template.trim()),
            None => String::new(),
        },
    };
    SendFacts {
        agent_id,
        name: clean_name(&name),
        recipients,
    }
}

/// The `task_id` of a successful send answer (`errcode` 0, as a number or a string), or the
/// errcode of a failed one (`None` when the answer is not DingTalk's JSON at all).
pub fn send_outcome(answer: &[u8]) -> Result<i64, Option<i64>> {
    let value: Value = serde_json::from_slice(answer).map_err(|_| None)?;
    let number = |value: &Value| match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => text.trim().parse().ok(),
        _ => None,
    };
    let errcode = value.get("errcode").and_then(number).ok_or(None)?;
    if errcode != 0 {
        return Err(Some(errcode));
    }
    value
        .get("task_id")
        .and_then(number)
        .filter(|&task_id| task_id > 0)
        .ok_or(None)
}

/// A name from a `msg` object (or a JSON string holding one, as form bodies carry it).
pub fn message_name(msg: &Value) -> String {
    let parsed;
    let msg = match msg {
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                parsed = value;
                &parsed
            }
            Err(_) => return String::new(),
        },
        other => other,
    };
    let kind = msg.get("msgtype").and_then(Value::as_str).unwrap_or("");
    let at = |path: &[&str]| -> Option<String> {
        let mut value = msg;
        for key in path {
            value = value.get(*key)?;
        }
        value
            .as_str()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
    };
    let title = match kind {
        "markdown" => at(&["markdown", "title"]),
        "link" => at(&["link", "title"]),
        "action_card" => at(&["action_card", "title"]),
        "oa" => at(&["oa", "head", "text"]).or_else(|| at(&["oa", "body", "title"])),
        _ => None,
    };
    match (title, kind) {
        (Some(title), _) => title,
        (None, "") => String::new(),
        (None, kind) => format!("{kind} message"),
    }
}

/// A name the task API accepts: control characters become spaces, at most 256 characters.
pub fn clean_name(name: &str) -> String {
    name.trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_NAME_CHARS)
        .collect()
}

/// The fields of a JSON object body, or of a form body (values as strings).
fn body_fields(body: &[u8]) -> serde_json::Map<String, Value> {
    if body.trim_ascii_start().starts_with(b"{") {
        return match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => fields,
            _ => serde_json::Map::new(),
        };
    }
    form_urlencoded::parse(body)
        .map(|(name, value)| (name.into_owned(), Value::String(value.into_owned())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JSON send names its task after the markdown title and counts distinct users.
    #[test]
    fn json_send_gives_agent_title_and_recipients() {
        let facts = send_facts(
            br#"{"agent_id":2839445214,"userid_list":"u1,u2,u1","msg":{"msgtype":"markdown","markdown":{"title":"Payroll May","text":"secret body"}}}"#,
        );
        assert_eq!(facts.agent_id, Some(2839445214));
        assert_eq!(facts.name, "Payroll May");
        assert_eq!(facts.recipients, Some(2));
    }

    /// A form send carries `msg` as a JSON string; a text message is named after its kind,
    /// never its content.
    #[test]
    fn form_send_with_text_message_is_named_by_kind() {
        let facts = send_facts(
            b"agent_id=7&userid_list=u1&msg=%7B%22msgtype%22%3A%22text%22%2C%22text%22%3A%7B%22content%22%3A%22hello%22%7D%7D",
        );
        assert_eq!(facts.agent_id, Some(7));
        assert_eq!(facts.name, "text message");
        assert_eq!(facts.recipients, Some(1));
    }

    /// Department and all-user sends have no known recipient count.
    #[test]
    fn department_and_all_user_sends_have_no_count() {
        let dept = send_facts(br#"{"agent_id":1,"userid_list":"u1","dept_id_list":"3","msg":{"msgtype":"oa","oa":{"head":{"text":"Leave"}}}}"#);
        assert_eq!(dept.recipients, None);
        assert_eq!(dept.name, "Leave");
        let all = send_facts(br#"{"agent_id":1,"to_all_user":true,"msg":{}}"#);
        assert_eq!(all.recipients, None);
    }

    /// Answers give the task id, the errcode of a refusal, or nothing for non-JSON.
    #[test]
    fn answers_give_task_id_or_errcode() {
        assert_eq!(
            send_outcome(br#"{"errcode":0,"task_id":256271667526}"#),
            Ok(256271667526)
        );
        assert_eq!(send_outcome(br#"{"errcode":"0","task_id":"12"}"#), Ok(12));
        assert_eq!(send_outcome(br#"{"errcode":40035}"#), Err(Some(40035)));
        assert_eq!(send_outcome(b"<html>"), Err(None));
    }

    /// Names lose control characters and stop at 256 characters.
    #[test]
    fn names_are_cleaned() {
        assert_eq!(clean_name(" a\nb "), "a b");
        assert_eq!(clean_name(&"x".repeat(300)).chars().count(), 256);
    }
}
