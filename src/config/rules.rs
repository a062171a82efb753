//! The rules single values must follow, shared by the flags and the config file.

use std::path::Path;

use super::{DEFAULT_APP, MAX_TASK_NAME_CHARS, UNCONFIGURED_APP, file};

/// Whether a task name is acceptable (as for registrations through the API): at most
/// [`MAX_TASK_NAME_CHARS`] characters, no control characters and no invisible ones (see
/// [`invisible_char`]). The error reads after the name's key: `tasks[1].name: holds control
/// characters ...`.
pub fn check_task_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if chars > MAX_TASK_NAME_CHARS {
        return Err(format!(
            "{chars} characters long; at most {MAX_TASK_NAME_CHARS} are allowed"
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("holds control characters (newlines, tabs, ...)".to_string());
    }
    check_visible(name)
}

/// The first character of `text` (its position in characters, and the character) that
/// changes how the text around it is shown without being seen itself: bidirectional
/// controls (which can make `payroll` read as another name on a dashboard), zero-width
/// characters and joiners, invisible operators, the byte order mark.
pub fn invisible_char(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| {
        matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
    })
}

/// `Err` naming the first invisible character of a name shown on dashboards.
pub fn check_visible(name: &str) -> Result<(), String> {
    match invisible_char(name) {
        None => Ok(()),
        Some((at, c)) => Err(format!(
            "holds the invisible character U+{:04X} at character {at} (a bidirectional control or a zero-width character, which can make a name look like another on dashboards); write the name without it",
            u32::from(c)
        )),
    }
}

/// Whether an `agent_id` or `task_id` is in DingTalk's range, 1 to 2^63-1.
pub(super) fn check_id(id: i64) -> Result<(), String> {
    if id >= 1 {
        Ok(())
    } else {
        Err(format!(
            "{id} is not an id: ids are integers from 1 to 2^63-1"
        ))
    }
}

/// An id as the file wrote it, checked.
pub(super) fn raw_id(raw: file::RawId) -> Result<i64, String> {
    match raw {
        file::RawId::Number(id) => check_id(id).map(|()| id),
        file::RawId::OutOfRange(text) => Err(format!(
            "{text} is not an id: ids are integers from 1 to 2^63-1"
        )),
    }
}

/// An app's name is its `app` label value: printable, trimmed, and not one the exporter
/// gives itself.
pub(super) fn check_app_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err("holds control characters".to_string());
    }
    check_visible(name)?;
    if name != name.trim() {
        return Err(format!("{name:?} has leading or trailing spaces"));
    }
    if name == DEFAULT_APP || name == UNCONFIGURED_APP {
        return Err(format!(
            "{name:?} is reserved (`default` is the app of the --dingtalk.* flags, \
             `unconfigured` labels tasks no app serves)"
        ));
    }
    Ok(())
}

/// AppKeys are opaque tokens without spaces; a stray space is a copy-and-paste accident.
pub(super) fn check_app_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("missing: the app's AppKey (Client ID)".to_string());
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("holds spaces or control characters; an AppKey has none".to_string());
    }
    Ok(())
}

/// A corp id is DingTalk's opaque organisation id (`ding...`): no spaces, no slashes (it
/// goes into a URL path).
pub(super) fn check_corp_id(corp_id: &str) -> Result<(), String> {
    if corp_id.is_empty() {
        return Err("missing: the corp's id (ding...)".to_string());
    }
    if !corp_id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!(
            "{corp_id:?} is not a corp id: letters, digits, `_`, `-` and `.` only"
        ));
    }
    Ok(())
}

/// A corp's name is its `corp` label value: printable and trimmed.
pub(super) fn check_corp_name(name: &str) -> Result<(), String> {
    if name.chars().any(char::is_control) {
        return Err("holds control characters".to_string());
    }
    if name != name.trim() {
        return Err(format!("{name:?} has leading or trailing spaces"));
    }
    Ok(())
}

/// Checks an API base URL and drops trailing slashes, so that `{api_url}/gettoken` is right.
pub(super) fn normalize_api_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|err| format!("{text:?} is not a URL: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{text:?} must not have a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(
            "must not hold credentials: they would show wherever the URL is logged".to_string(),
        );
    }
    Ok(text.trim_end_matches('/').to_string())
}

/// The metrics path must be a path of its own, not the landing page nor an API route.
pub(super) fn check_telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("{path:?} must start with /"));
    }
    if path == "/" {
        return Err("\"/\" is the landing page; use a path like /metrics".to_string());
    }
    if path.starts_with("/-/") || path.starts_with("/api/") {
        return Err(format!(
            "{path:?} is taken by the exporter's own endpoints (/-/..., /api/...)"
        ));
    }
    if path
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!("{path:?} must not hold spaces, ? or #"));
    }
    Ok(())
}

/// The store's file must be creatable: its directory exists. (The store creates the file.)
pub(super) fn check_storage_path(path: &Path) -> Result<(), String> {
    if path.as_os_str().is_empty() {
        return Err("must not be empty".to_string());
    }
    if path.is_dir() {
        return Err(format!("{} is a directory; name a file", path.display()));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("the directory {} does not exist", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// API URLs must be plain http(s) base URLs; a trailing slash is dropped.
    #[test]
    fn api_urls_are_checked_and_normalized() {
        assert_eq!(
            normalize_api_url("https://oapi.dingtalk.com/").unwrap(),
            "https://oapi.dingtalk.com"
        );
        assert_eq!(
            normalize_api_url("http://127.0.0.1:8080/proxy").unwrap(),
            "http://127.0.0.1:8080/proxy"
        );
        for bad in [
            "oapi.dingtalk.com",
            "ftp://oapi.dingtalk.com",
            "https://oapi.dingtalk.com/?x=1",
            "https://user:pw@oapi.dingtalk.com",
        ] {
            assert!(normalize_api_url(bad).is_err(), "{bad}");
        }
    }

    /// The metrics path must be a real path of its own.
    #[test]
    fn telemetry_path_rules() {
        assert!(check_telemetry_path("/metrics").is_ok());
        assert!(check_telemetry_path("/x/metrics").is_ok());
        for bad in [
            "metrics",
            "/",
            "/-/metrics",
            "/api/v1/tasks",
            "/me trics",
            "/m?x",
        ] {
            assert!(check_telemetry_path(bad).is_err(), "{bad}");
        }
    }

    /// Task names follow the task API's rules.
    #[test]
    fn task_name_rules() {
        assert!(check_task_name("").is_ok());
        assert!(check_task_name(&"名".repeat(256)).is_ok());
        assert!(check_task_name(&"a".repeat(257)).is_err());
        assert!(check_task_name("line\nbreak").is_err());
    }
}
