//! `--config.check`: validates the flags and the config file and says, in words, what the
//! exporter would run with. The report names secrets' sources, never their values.

use std::fmt::Write;

use super::flags::ExporterFlags;
use super::resolve::{CommandFlags, Origin, Resolved, resolve};
use super::{WebConfigCheck, warnings};

/// The outcome of `--config.check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckReport {
    /// Whether the exporter would start with this configuration (exit 0), or not (exit 1).
    pub valid: bool,
    /// The report for the operator, lines ending in `\n`.
    pub text: String,
}

/// Validates the exporter's flags and config file, and the web config file with
/// `web_config_check`, and describes the result.
pub fn check(flags: &ExporterFlags, web_config_check: &WebConfigCheck) -> CheckReport {
    let source = match &flags.config_file {
        Some(path) => format!("config file {}", path.display()),
        None => "flags (no --config.file)".to_string(),
    };
    match resolve(&CommandFlags::exporter(flags, Some(web_config_check))) {
        Ok(resolved) => CheckReport {
            valid: true,
            text: describe(&source, &resolved),
        },
        Err(errors) => {
            let mut text = format!(
                "configuration from {source} is INVALID ({} problem{}):\n",
                errors.0.len(),
                if errors.0.len() == 1 { "" } else { "s" }
            );
            for error in &errors.0 {
                let _ = writeln!(text, "  {error}");
            }
            CheckReport { valid: false, text }
        }
    }
}

fn describe(source: &str, resolved: &Resolved) -> String {
    let config = &resolved.config;
    let mut text = format!("configuration from {source} is valid\n");

    let _ = writeln!(text, "apps: {}", config.apps.len());
    for (app, secret_source) in config.apps.iter().zip(&resolved.secret_sources) {
        let agent = match app.agent_id {
            Some(agent_id) => format!("agent_id {agent_id}"),
            None => "every agent no other app claims".to_string(),
        };
        match &app.corp {
            None => {
                let tokens = match (&app.token_api, &app.corp_id) {
                    (crate::config::TokenApi::Unified, Some(corp_id)) => {
                        format!(", tokens from the unified API for corp {corp_id}")
                    }
                    _ => String::new(),
                };
                let _ = writeln!(
                    text,
                    "  {}: {agent}, app_key {}, api_url {}{tokens}, secret {secret_source}",
                    app.name, app.app_key, app.api_url
                );
            }
            Some(corp) => {
                let budget = match corp.monthly_call_budget {
                    0 => "no monthly budget".to_string(),
                    budget => format!("monthly budget {budget}"),
                };
                let ticket = corp
                    .suite_ticket_file
                    .as_ref()
                    .map(|path| format!(", suite ticket from {}", path.display()))
                    .unwrap_or_default();
                let _ = writeln!(
                    text,
                    "  {} (third-party) corp {} ({}): {agent}, suite_key {}, token_api {}{ticket}, {budget}, suite secret {secret_source}",
                    app.name,
                    corp.name,
                    app.corp_id.as_deref().unwrap_or_default(),
                    app.app_key,
                    app.token_api.as_str()
                );
            }
        }
    }

    let _ = writeln!(text, "static tasks: {}", config.static_tasks.len());

    let _ = writeln!(text, "settings:");
    let width = resolved
        .settings
        .iter()
        .map(|setting| setting.key.len())
        .max()
        .unwrap_or(0);
    for setting in &resolved.settings {
        let origin = match setting.origin {
            Origin::Flag => "flag",
            Origin::File => "config file",
            Origin::Default => "default",
        };
        let _ = writeln!(
            text,
            "  {:width$} = {} ({origin})",
            setting.key, setting.value
        );
    }
    let _ = writeln!(
        text,
        "  web api token: {}",
        if config.web.api_token.is_some() {
            "set (task API writes need it)"
        } else {
            "none (task API writes only from loopback clients)"
        }
    );

    let warnings = warnings(config);
    if !warnings.is_empty() {
        let _ = writeln!(text, "warnings:");
        for warning in warnings {
            let _ = writeln!(text, "  {warning}");
        }
    }
    text
}
