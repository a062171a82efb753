//! The `--web.config.file`: TLS, basic auth and a rate limit in the Prometheus
//! exporter-toolkit format, so the files operators already have for their other exporters
//! work here too.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: tls.crt            # relative to this file's directory
//!   key_file: tls.key
//!   min_version: TLS12            # TLS12 (default) or TLS13
//!   client_auth_type: RequireAndVerifyClientCert
//!   client_ca_file: clients-ca.crt
//! http_server_config:
//!   headers: {Strict-Transport-Security: max-age=31536000}
//! basic_auth_users:
//!   prometheus: $2y$10$...        # bcrypt hash
//! rate_limit: {interval: 1s, burst: 20}
//! ```
//!
//! Unknown keys, and keys of the format this exporter does not implement, are refused with
//! a message naming them: a setting that is silently ignored is a security setting that
//! does not hold. `tls_server_config` is in [`super::tls`], `basic_auth_users` in
//! [`super::basic_auth`], `rate_limit` in `super::rate_limit`. Of `http_server_config`,
//! `headers` is applied to every answer (the same few security headers exporter-toolkit
//! allows) and `http2` only matters to the cipher suite check exporter-toolkit makes (see
//! [`super::tls`]): the server speaks HTTP/1.1, which every scraper speaks too.
//!
//! # Re-reading
//!
//! [`WebConfigWatch`] re-reads the file when it, or a certificate, key or CA file it names,
//! has changed: it compares their size, modification time and inode whenever a connection
//! opens and whenever a request arrives. A few `stat` calls cost next to nothing beside a
//! TLS handshake, and so certificates rotated by cert-manager, certbot or a Kubernetes
//! secret update take effect on the next connection with no signal to send, as with
//! exporter-toolkit, while a file that did not change is never parsed again (re-reading it
//! on every connection, as exporter-toolkit does, would parse certificates at every
//! scrape). A SIGHUP or `POST /-/reload` validates the file again with the rest of the
//! configuration, but it is this watch that puts a changed file in force.
//!
//! A file that turns out broken on re-reading changes nothing: the last good configuration
//! stays and the problem is logged at error level once per change. The same goes for a
//! change that would weaken who may connect while the exporter runs, since an editor or a
//! deployment tool that rewrites the file in place shows the server an empty or half-written
//! file for a moment: an empty file, removing every basic auth user, no longer requiring
//! client certificates, dropping `client_allowed_sans`, and switching TLS on or off (the
//! listener's scheme is what clients were given) all wait for a restart. Fewer users, new
//! certificates and anything stricter are put in force at once.
//! `dingtalk_web_config_last_reload_successful` says whether the last change was put in
//! force.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use super::basic_auth::BasicAuth;
use super::problems::Problems;
pub use super::problems::{WebConfigErrors, WebConfigProblem};
use super::rate_limit::RateLimiter;
use super::tls::{ClientAuth, TlsSection, TlsSummary};
use crate::telemetry::Telemetry;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
struct WebConfigFile {
    tls_server_config: Option<TlsSection>,
    http_server_config: Option<HttpSection>,
    basic_auth_users: Option<BTreeMap<String, String>>,
    rate_limit: Option<RateLimitSection>,
}

/// `rate_limit`: Go's `interval` (a duration such as `1s`, or 0 for none) and `burst`.
#[derive(Debug, Default, Deserialize)]
struct RateLimitSection {
    interval: Option<serde_yaml_ng::Value>,
    burst: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct HttpSection {
    http2: Option<bool>,
    headers: Option<BTreeMap<String, String>>,
}

/// The answer headers `http_server_config.headers` may set, with the values allowed (any
/// when empty): exporter-toolkit's list, so that files stay portable.
const CONFIGURABLE_HEADERS: &[(&str, &[&str])] = &[
    ("Strict-Transport-Security", &[]),
    ("X-Content-Type-Options", &["nosniff"]),
    ("X-Frame-Options", &["deny", "sameorigin"]),
    ("X-XSS-Protection", &[]),
    ("Content-Security-Policy", &[]),
];

/// A valid web config.
pub struct WebConfig {
    tls: Option<(TlsAcceptor, TlsSummary)>,
    basic_auth: Option<BasicAuth>,
    headers: Vec<(HeaderName, HeaderValue)>,
    rate_limit: Option<RateLimiter>,
    /// What is allowed but deserves the operator's attention; logged at warn when loaded.
    warnings: Vec<String>,
    /// The file held nothing at all (or comments only).
    blank: bool,
}

impl fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}

impl WebConfig {
    /// Reads and validates a web config file, certificates included.
    pub fn load(path: &Path) -> Result<WebConfig, WebConfigErrors> {
        Self::read(path).1
    }

    /// Checks the file for `--config.check`: what it sets (and its warnings), or every
    /// problem as (key, problem). Fits [`crate::config::WebConfigCheck`].
    pub fn check_file(path: &Path) -> Result<String, Vec<(String, String)>> {
        WebConfig::load(path)
            .map(|web_config| {
                let mut summary = web_config.summary();
                for warning in &web_config.warnings {
                    summary.push_str("; WARNING: ");
                    summary.push_str(warning);
                }
                summary
            })
            .map_err(|errors| {
                errors
                    .0
                    .into_iter()
                    .map(|problem| (problem.key, problem.problem))
                    .collect()
            })
    }

    /// The TLS acceptor, when the file configures TLS.
    pub fn tls_acceptor(&self) -> Option<&TlsAcceptor> {
        self.tls.as_ref().map(|(acceptor, _)| acceptor)
    }

    pub fn tls(&self) -> Option<TlsSummary> {
        self.tls.as_ref().map(|(_, summary)| *summary)
    }

    /// The users of `basic_auth_users`, when there are any.
    pub fn basic_auth(&self) -> Option<&BasicAuth> {
        self.basic_auth.as_ref()
    }

    /// Headers to add to every answer.
    pub fn extra_headers(&self) -> &[(HeaderName, HeaderValue)] {
        &self.headers
    }

    /// The `rate_limit` bucket, when one is set.
    pub fn rate_limit(&self) -> Option<&RateLimiter> {
        self.rate_limit.as_ref()
    }

    /// What the file allows but the operator should know about.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// What the file sets, in a few words for the log and `--config.check`.
    pub fn summary(&self) -> String {
        let tls = match self.tls() {
            Some(tls) => tls.to_string(),
            None => "no TLS".to_string(),
        };
        let auth = match &self.basic_auth {
            Some(users) => format!(
                "basic auth for {} user{}",
                users.user_count(),
                if users.user_count() == 1 { "" } else { "s" }
            ),
            None => "no basic auth".to_string(),
        };
        match &self.rate_limit {
            Some(limit) => format!(
                "{tls}; {auth}; rate limit of one request per {:?} with bursts of {}",
                limit.interval(),
                limit.burst()
            ),
            None => format!("{tls}; {auth}"),
        }
    }

    /// Why putting `self` in force in place of `running` would weaken authentication while
    /// the exporter runs, if it would: such a change waits for a restart.
    fn weakens(&self, running: &WebConfig) -> Option<String> {
        if self.blank {
            return Some("the file is empty (perhaps caught halfway through a rewrite)".into());
        }
        match (running.tls(), self.tls()) {
            (Some(_), None) => return Some("it turns TLS off".into()),
            (None, Some(_)) => return Some("it turns TLS on".into()),
            (Some(before), Some(after)) => {
                if before.client_auth == ClientAuth::Required
                    && after.client_auth != ClientAuth::Required
                {
                    return Some("it stops requiring client certificates".into());
                }
                if before.client_sans_restricted && !after.client_sans_restricted {
                    return Some("it drops client_allowed_sans".into());
                }
            }
            (None, None) => {}
        }
        if running.basic_auth.is_some() && self.basic_auth.is_none() {
            return Some("it removes every user of basic_auth_users".into());
        }
        None
    }

    /// Reads the file; returns the files it names (whose changes also call for a re-read)
    /// along with the outcome, so that a watch notices a missing certificate appearing.
    fn read(path: &Path) -> (Vec<PathBuf>, Result<WebConfig, WebConfigErrors>) {
        let fail = |problem: String| {
            WebConfigErrors(vec![WebConfigProblem {
                key: String::new(),
                problem,
            }])
        };
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => {
                return (
                    Vec::new(),
                    Err(fail(format!("cannot read {}: {err}", path.display()))),
                );
            }
        };
        let mut problems = Problems::default();
        let mut unknown_keys = Vec::new();
        let parsed: Result<Option<WebConfigFile>, _> =
            serde_ignored::deserialize(serde_yaml_ng::Deserializer::from_str(&text), |key| {
                unknown_keys.push(dotted(&key))
            });
        let (mut file, blank) = match parsed {
            // An empty file (or comments only) sets nothing, as in exporter-toolkit.
            Ok(Some(file)) => (file, false),
            Ok(None) => (WebConfigFile::default(), true),
            Err(err) => return (Vec::new(), Err(fail(err.to_string()))),
        };
        for key in unknown_keys {
            let problem = format!("unknown key; known here: {}", known_keys(&key).join(", "));
            problems.add(key, problem);
        }
        let mut warnings = Vec::new();
        let rate_limit = file
            .rate_limit
            .take()
            .and_then(|section| rate_limiter(section, &mut problems, &mut warnings));
        let http2 = file
            .http_server_config
            .as_ref()
            .and_then(|section| section.http2)
            .unwrap_or(true);

        let base_dir = path.parent().unwrap_or(Path::new(""));
        let mut files = Vec::new();
        if let Some(section) = &mut file.tls_server_config {
            section.forget_empty_values();
        }
        let tls = match &mut file.tls_server_config {
            Some(section) if section.is_enabled() => {
                section.resolve_paths(base_dir);
                files = section.files();
                section
                    .server_config(http2, &mut problems, &mut warnings)
                    .map(|(config, summary)| (TlsAcceptor::from(config), summary))
            }
            _ => None,
        };
        let basic_auth = match file.basic_auth_users {
            Some(users) if !users.is_empty() => match BasicAuth::new(users) {
                Ok(users) => Some(users),
                Err(user_problems) => {
                    for (user, problem) in user_problems {
                        problems.add(format!("basic_auth_users.{user}"), problem);
                    }
                    None
                }
            },
            _ => None,
        };
        let headers = file
            .http_server_config
            .map(|section| http_headers(section, &mut problems))
            .unwrap_or_default();

        if problems.len() > 0 {
            return (files, Err(WebConfigErrors(problems.0)));
        }
        (
            files,
            Ok(WebConfig {
                tls,
                basic_auth,
                headers,
                rate_limit,
                warnings,
                blank,
            }),
        )
    }
}

/// The bucket of a `rate_limit` section; `None` when `interval` is 0 (or not given), as in
/// exporter-toolkit.
fn rate_limiter(
    section: RateLimitSection,
    problems: &mut Problems,
    warnings: &mut Vec<String>,
) -> Option<RateLimiter> {
    use serde_yaml_ng::Value;
    let key = "rate_limit.interval";
    let interval = match section.interval {
        None | Some(Value::Null) => Duration::ZERO,
        // A bare number is nanoseconds, as Go reads a duration given as a number.
        Some(Value::Number(number)) => match number.as_u64() {
            Some(nanoseconds) => Duration::from_nanos(nanoseconds),
            None => {
                problems.add(key, "must be a duration such as 1s or 100ms, or 0");
                return None;
            }
        },
        Some(Value::String(text)) => match go_duration(&text) {
            Some(interval) => interval,
            None => {
                problems.add(
                    key,
                    format!("{text:?} is not a duration; write it as 1s, 100ms, 1m30s, or 0"),
                );
                return None;
            }
        },
        Some(_) => {
            problems.add(key, "must be a duration such as 1s or 100ms, or 0");
            return None;
        }
    };
    if interval.is_zero() {
        return None;
    }
    let burst = section.burst.unwrap_or(0);
    if burst == 0 {
        warnings.push(
            "rate_limit.burst is 0, so every request is refused with 429 Too Many Requests (as exporter-toolkit does); set burst to the requests allowed at once".to_string(),
        );
    }
    Some(RateLimiter::new(interval, burst))
}

/// A Go duration: a sequence of decimal numbers with units `h`, `m`, `s`, `ms`, `us`, `µs`,
/// `ns` (`1h30m`, `1.5s`), or a bare `0`.
fn go_duration(text: &str) -> Option<Duration> {
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&end| end > 0)?;
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Duration::try_from_secs_f64(total).ok()
}

fn http_headers(section: HttpSection, problems: &mut Problems) -> Vec<(HeaderName, HeaderValue)> {
    // `http2` was read for the cipher suite check already: see the module documentation.
    let _ = section.http2;
    let mut headers = Vec::new();
    for (name, value) in section.headers.unwrap_or_default() {
        let key = format!("http_server_config.headers.{name}");
        let Some((_, allowed)) = CONFIGURABLE_HEADERS
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(&name))
        else {
            let names: Vec<&str> = CONFIGURABLE_HEADERS.iter().map(|(name, _)| *name).collect();
            problems.add(
                key,
                format!(
                    "this header cannot be configured; these can: {}",
                    names.join(", ")
                ),
            );
            continue;
        };
        if !allowed.is_empty() && !allowed.contains(&value.as_str()) {
            problems.add(key, format!("must be one of: {}", allowed.join(", ")));
            continue;
        }
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => headers.push((name, value)),
            _ => problems.add(key, "is not a valid HTTP header value"),
        }
    }
    headers
}

/// `tls_server_config.cert_fil`: a key's path the way the messages name keys.
fn dotted(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", dotted(parent)),
        Path::Map { parent, key } => match dotted(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => dotted(parent),
    }
}

/// The keys allowed beside an unknown one (given as its dotted path), for the message.
fn known_keys(unknown: &str) -> &'static [&'static str] {
    match unknown.rsplit_once('.').map_or("", |(section, _)| section) {
        "tls_server_config" => &[
            "cert_file",
            "key_file",
            "cert",
            "key",
            "client_ca_file",
            "client_ca",
            "client_auth_type",
            "client_allowed_sans",
            "min_version",
            "max_version",
            "cipher_suites",
            "curve_preferences",
            "prefer_server_cipher_suites",
        ],
        "http_server_config" => &["headers", "http2"],
        "rate_limit" => &["interval", "burst"],
        _ => &[
            "tls_server_config",
            "http_server_config",
            "basic_auth_users",
            "rate_limit",
        ],
    }
}

/// What identifies a version of a file: any rewrite or replacement changes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
    /// Device and inode: a file replaced by a rename (how Kubernetes updates a mounted
    /// secret) is a new file even if size and time happen to match.
    identity: (u64, u64),
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let identity = {
        use std::os::unix::fs::MetadataExt;
        (metadata.dev(), metadata.ino())
    };
    #[cfg(not(unix))]
    let identity = (0, 0);
    Some(FileStamp {
        len: metadata.len(),
        modified: metadata.modified().ok(),
        identity,
    })
}

/// The web config in force, re-read when its files change (see the module documentation).
pub struct WebConfigWatch {
    path: PathBuf,
    state: Mutex<WatchState>,
    /// Where `dingtalk_web_config_last_reload_successful` is kept, when the exporter runs.
    telemetry: Option<Arc<Telemetry>>,
}

struct WatchState {
    current: Arc<WebConfig>,
    /// The web config file and the files its last reading named.
    watched: Vec<PathBuf>,
    /// Their stamps when they were last read, whatever came of it.
    seen: Vec<Option<FileStamp>>,
}

impl WebConfigWatch {
    /// Reads the file; fails when it is not valid. Its warnings are logged.
    pub fn open(path: &Path) -> Result<WebConfigWatch, WebConfigErrors> {
        let before = stamp(path);
        let (files, outcome) = WebConfig::read(path);
        let config = outcome?;
        for warning in config.warnings() {
            tracing::warn!(path = %path.display(), "web config: {warning}");
        }
        let watched: Vec<PathBuf> = std::iter::once(path.to_path_buf()).chain(files).collect();
        let mut seen: Vec<Option<FileStamp>> = watched.iter().map(|file| stamp(file)).collect();
        // The stamp taken before reading: a change made while reading is seen next time.
        seen[0] = before;
        Ok(WebConfigWatch {
            path: path.to_path_buf(),
            state: Mutex::new(WatchState {
                current: Arc::new(config),
                watched,
                seen,
            }),
            telemetry: None,
        })
    }

    /// Reports the outcome of every re-reading to `telemetry`.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> WebConfigWatch {
        telemetry.record_web_config_reload(true);
        self.telemetry = Some(telemetry);
        self
    }

    /// The configuration in force, after re-reading the file if it or a file it names
    /// changed since it was last read.
    pub fn current(&self) -> Arc<WebConfig> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let before: Vec<Option<FileStamp>> = state.watched.iter().map(|file| stamp(file)).collect();
        if before == state.seen {
            return state.current.clone();
        }
        let (files, outcome) = WebConfig::read(&self.path);
        let watched: Vec<PathBuf> = std::iter::once(self.path.clone()).chain(files).collect();
        state.seen = if watched == state.watched {
            before
        } else {
            watched.iter().map(|file| stamp(file)).collect()
        };
        state.watched = watched;
        let put_in_force = match outcome {
            Ok(config) => match config.weakens(&state.current) {
                Some(reason) => {
                    tracing::error!(
                        path = %self.path.display(),
                        "the web config file was changed but is not put in force: {reason}, which could weaken who may connect while the exporter runs; the previous web config stays until the file is fixed or the exporter restarts"
                    );
                    false
                }
                None => {
                    tracing::info!(
                        path = %self.path.display(),
                        web_config = %config.summary(),
                        "web config file re-read"
                    );
                    for warning in config.warnings() {
                        tracing::warn!(path = %self.path.display(), "web config: {warning}");
                    }
                    state.current = Arc::new(config);
                    true
                }
            },
            Err(errors) => {
                tracing::error!(
                    path = %self.path.display(),
                    error = %errors.to_string().replace('\n', "; "),
                    "the web config file is not valid; the previous web config stays in force"
                );
                false
            }
        };
        if let Some(telemetry) = &self.telemetry {
            telemetry.record_web_config_reload(put_in_force);
        }
        state.current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<WebConfig, WebConfigErrors> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, text).unwrap();
        WebConfig::load(&path)
    }

    fn problem_keys(text: &str) -> Vec<String> {
        load(text)
            .unwrap_err()
            .0
            .into_iter()
            .map(|problem| problem.key)
            .collect()
    }

    /// An empty file, or empty sections, configure neither TLS nor basic auth.
    #[test]
    fn empty_files_configure_nothing() {
        for text in [
            "",
            "# nothing\n",
            "tls_server_config:\nbasic_auth_users:\n",
            "basic_auth_users: {}\n",
        ] {
            let config = load(text).unwrap();
            assert!(
                config.tls().is_none() && config.basic_auth().is_none(),
                "{text:?}"
            );
        }
    }

    /// Unknown keys, at the top and inside sections, are refused by their full path with
    /// the keys known there.
    #[test]
    fn unknown_keys_are_named() {
        let errors = load(
            "tls_server_config:\n  cert_fil: x\nhttp_server_config:\n  http3: true\nbasic_auth: {}\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.0.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "tls_server_config.cert_fil",
                "http_server_config.http3",
                "basic_auth"
            ]
        );
        let text = errors.to_string();
        assert!(text.contains("known here: cert_file, key_file"), "{text}");
        assert!(
            text.contains("basic_auth: unknown key; known here: tls_server_config"),
            "{text}"
        );
    }

    /// What this exporter refuses of exporter-toolkit's format is refused by name, not
    /// ignored; `rate_limit` and `client_allowed_sans` are accepted.
    #[test]
    fn unsupported_settings_are_refused_by_name() {
        let config = load("rate_limit: {interval: 1s, burst: 10}\n").unwrap();
        let limit = config.rate_limit().unwrap();
        assert_eq!(
            (limit.interval(), limit.burst()),
            (Duration::from_secs(1), 10)
        );
        assert!(
            load("rate_limit: {interval: 0, burst: 0}\n")
                .unwrap()
                .rate_limit()
                .is_none()
        );
        assert_eq!(
            problem_keys("rate_limit: {interval: soon}\n"),
            ["rate_limit.interval"]
        );
        let keys = problem_keys(
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n  min_version: TLS10\n  client_auth_type: RequireAnyClientCert\n  client_allowed_sans: [a]\n",
        );
        for key in [
            "tls_server_config.min_version",
            "tls_server_config.client_auth_type",
            "tls_server_config.cert_file",
            "tls_server_config.key_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
    }

    /// Go's durations are read as Go reads them.
    #[test]
    fn go_durations() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(go_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1", "s", "1d", "-1s", "1s2"] {
            assert_eq!(go_duration(bad), None, "{bad}");
        }
    }

    /// Empty settings are missing ones, worded as exporter-toolkit words it.
    #[test]
    fn empty_settings_are_missing() {
        let text =
            load("tls_server_config:\n  cert_file: \"\"\n  key: \"\"\n  client_auth_type: x\n")
                .unwrap_err()
                .to_string();
        assert!(text.contains("missing one of cert or cert_file"), "{text}");
        assert!(text.contains("missing one of key or key_file"), "{text}");
        assert!(!text.contains("directory"), "{text}");
    }

    /// A YAML syntax error is reported with its line.
    #[test]
    fn syntax_errors_name_the_line() {
        let text = load("basic_auth_users:\n  a: [\n").unwrap_err().to_string();
        assert!(text.contains("line"), "{text}");
    }

    /// Only exporter-toolkit's security headers may be set, with its allowed values.
    #[test]
    fn only_security_headers_may_be_set() {
        let config = load(
            "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n",
        )
        .unwrap();
        let names: Vec<&str> = config
            .extra_headers()
            .iter()
            .map(|(name, _)| name.as_str())
            .collect();
        assert_eq!(names, ["strict-transport-security", "x-frame-options"]);
        assert_eq!(
            problem_keys(
                "http_server_config:\n  headers:\n    Server: mine\n    X-Frame-Options: allow\n"
            ),
            [
                "http_server_config.headers.Server",
                "http_server_config.headers.X-Frame-Options"
            ]
        );
    }

    /// A bad hash is reported under its user's key.
    #[test]
    fn bad_hashes_name_their_user() {
        assert_eq!(
            problem_keys("basic_auth_users:\n  prometheus: hunter2\n"),
            ["basic_auth_users.prometheus"]
        );
    }

    /// Client CAs or allowed SANs without a client auth type asking for certificates are
    /// refused (a setting that silently does nothing is a security setting that does not
    /// hold).
    #[test]
    fn client_settings_need_a_client_auth_type() {
        let keys = problem_keys("tls_server_config:\n  cert: x\n  key: y\n  client_ca: z\n");
        assert!(
            keys.contains(&"tls_server_config.client_auth_type".to_string()),
            "{keys:?}"
        );
        let keys =
            problem_keys("tls_server_config:\n  cert: x\n  key: y\n  client_allowed_sans: [a]\n");
        assert!(
            keys.contains(&"tls_server_config.client_allowed_sans".to_string()),
            "{keys:?}"
        );
    }

    /// A re-read that removes some users is put in force; one that removes them all, or
    /// an empty file, is not (the users in force stay), and a valid file afterwards is.
    #[test]
    fn rewrites_may_narrow_but_not_drop_authentication() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        let hash = bcrypt::hash("x", 4).unwrap();
        let users = |names: &[&str]| -> String {
            let mut text = "basic_auth_users:\n".to_string();
            for name in names {
                text.push_str(&format!("  {name}: {hash}\n"));
            }
            text
        };
        std::fs::write(&path, users(&["a", "b"])).unwrap();
        let watch = WebConfigWatch::open(&path).unwrap();
        let user_count = || {
            watch
                .current()
                .basic_auth()
                .map_or(0, BasicAuth::user_count)
        };
        assert_eq!(user_count(), 2);
        for (index, (text, expected)) in [
            (users(&["a"]), 1),
            (String::new(), 1),
            ("# all gone\n".to_string(), 1),
            ("basic_auth_users: {}\n".to_string(), 1),
            ("http_server_config:\n  http2: false\n".to_string(), 1),
            (users(&["a", "b", "c"]), 3),
        ]
        .into_iter()
        .enumerate()
        {
            // Padded to a different length each time (every text is under 1000 bytes), so
            // the change is seen whatever the clock's resolution.
            std::fs::write(&path, format!("{text}#{}\n", "-".repeat(index * 1000))).unwrap();
            assert_eq!(user_count(), expected, "{text:?}");
        }
    }

    /// A client CA file whose every certificate has expired admits no client: refused when
    /// client certificates are required, loaded with a warning when they are optional.
    #[test]
    fn expired_client_cas_are_a_lock_out() {
        let dir = tempfile::tempdir().unwrap();
        let certificate = |name: &str, not_after: i32| {
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(not_after, 1, 1);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            std::fs::write(dir.path().join(format!("{name}.crt")), cert.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{name}.key")), key.serialize_pem()).unwrap();
        };
        certificate("localhost", 2099);
        certificate("expired", 2001);
        let path = dir.path().join("web.yml");
        let write = |client_auth: &str| {
            std::fs::write(
                &path,
                format!(
                    "tls_server_config:\n  cert_file: localhost.crt\n  key_file: localhost.key\n  client_auth_type: {client_auth}\n  client_ca_file: expired.crt\n"
                ),
            )
            .unwrap();
        };
        write("RequireAndVerifyClientCert");
        let text = WebConfig::load(&path).unwrap_err().to_string();
        assert!(
            text.contains("tls_server_config.client_ca_file: every certificate in")
                && text.contains("no client could connect"),
            "{text}"
        );
        write("VerifyClientCertIfGiven");
        let config = WebConfig::load(&path).unwrap();
        assert!(
            config
                .warnings()
                .iter()
                .any(|warning| warning.contains("has expired")),
            "{:?}",
            config.warnings()
        );
    }
}
