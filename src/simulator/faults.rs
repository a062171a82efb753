//! Fault injection: the ways the road to DingTalk breaks, drawn per request from a seeded RNG.
//!
//! Faults stand for the gateway and the network, not for DingTalk's API logic, so a faulted
//! request is not checked against the token, the QPS limit or the quota and does not count
//! toward them. The exceptions are `slow` and `truncated`: those requests are answered by
//! the API as usual (and count), only late or cut short.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// One way a request can fail.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// HTTP 502 with a gateway's HTML page.
    Html502,
    /// The per-IP throttle's JSON ban answer (HTTP 200, no errcode).
    Punish,
    /// The per-IP throttle's HTML ban page (HTTP 405, as Alibaba Cloud's firewall answers).
    PunishHtml,
    /// `errcode` -1, system busy.
    Busy,
    /// The API's answer cut off halfway through its JSON.
    Truncated,
    /// The API's answer, after `slow_delay_ms`.
    Slow,
    /// The connection closes without an answer.
    Drop,
}

impl FaultKind {
    pub const ALL: [FaultKind; 7] = [
        FaultKind::Html502,
        FaultKind::Punish,
        FaultKind::PunishHtml,
        FaultKind::Busy,
        FaultKind::Truncated,
        FaultKind::Slow,
        FaultKind::Drop,
    ];
}

/// Which faults to inject and how often. Can be changed while the simulator runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Chance, from 0 to 1, that a request to the DingTalk API gets a fault.
    pub probability: f64,
    /// The kinds to pick from, uniformly; empty means all of them.
    pub kinds: Vec<FaultKind>,
    /// How long a `slow` answer waits (longer than the client's timeout, by default).
    pub slow_delay_ms: u64,
    /// Inject at most this many more faults, then stop (handy for "the next call fails").
    pub limit: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            probability: 0.0,
            kinds: Vec::new(),
            slow_delay_ms: 15_000,
            limit: None,
        }
    }
}

impl FaultConfig {
    /// No faults at all.
    pub fn off() -> Self {
        FaultConfig::default()
    }

    /// Every request gets a fault of `kind` (until switched off, or `limit` is reached).
    pub fn always(kind: FaultKind) -> Self {
        FaultConfig {
            probability: 1.0,
            kinds: vec![kind],
            ..FaultConfig::default()
        }
    }

    /// Checks that the settings make sense.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.0..=1.0).contains(&self.probability) {
            return Err("fault probability must be a number from 0 to 1".to_string());
        }
        Ok(())
    }

    /// The kinds faults are drawn from.
    pub fn candidates(&self) -> &[FaultKind] {
        if self.kinds.is_empty() {
            &FaultKind::ALL
        } else {
            &self.kinds
        }
    }

    pub fn slow_delay(&self) -> Duration {
        Duration::from_millis(self.slow_delay_ms)
    }
}

/// A gateway's 502 page, as nginx/Tengine render it.
pub const HTML_502_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n\
</body>\r\n</html>\r\n";

/// The per-IP throttle's HTML ban page.
pub const PUNISH_HTML_PAGE: &str = "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">\
<title>访问被拒绝</title></head>\n<body><h1>访问被拒绝 (Access denied)</h1>\n\
<p>您的访问过于频繁，请稍后再试。Too many requests from your IP address, try again later.</p>\n\
<p>punish: deny, source: x5, wait: 5</p>\n</body></html>\n";

/// The per-IP throttle's JSON ban answer; `uuid` identifies the incident.
pub fn punish_json(uuid: &str) -> serde_json::Value {
    serde_json::json!({
        "status": 1111,
        "wait": 5,
        "source": "x5",
        "punish": "deny",
        "uuid": uuid,
    })
}

/// An answer cut off halfway, so it is no longer valid JSON.
pub fn truncate(body: &[u8]) -> &[u8] {
    &body[..body.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fault kinds have the names the CLI and the control API document.
    #[test]
    fn kinds_have_documented_names() {
        let names: Vec<String> = FaultKind::ALL
            .iter()
            .map(|kind| {
                serde_json::to_value(kind)
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "html502",
                "punish",
                "punish-html",
                "busy",
                "truncated",
                "slow",
                "drop"
            ]
        );
    }

    /// A cut answer no longer parses as JSON.
    #[test]
    fn truncated_answers_do_not_parse() {
        let body =
            br#"{"errcode":0,"errmsg":"ok","progress":{"progress_in_percent":100,"status":2}}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(truncate(body)).is_err());
    }

    /// Probabilities outside 0..=1 are refused.
    #[test]
    fn probability_must_be_a_chance() {
        for bad in [-0.1, 1.5, f64::NAN] {
            let config = FaultConfig {
                probability: bad,
                ..FaultConfig::default()
            };
            assert!(config.validate().is_err());
        }
        assert!(FaultConfig::always(FaultKind::Drop).validate().is_ok());
    }
}
