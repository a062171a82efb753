//! Finding Prometheus' binaries for the tests that need them, and running
//! `promtool check metrics`: shared so that every such test skips, or fails under CI, the
//! same way.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The environment variable under which a missing `prometheus`/`promtool` fails a test
/// instead of skipping it (CI sets it after installing Debian's `prometheus`).
pub const REQUIRE_PROMETHEUS_ENV: &str = "DINGTALK_EXPORTER_REQUIRE_PROMETHEUS";

/// An executable of that name in `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// The binary from `PATH`; without it, `None` after a printed note, or a failure when
/// [`REQUIRE_PROMETHEUS_ENV`] is set.
pub fn prometheus_binary(name: &str) -> Option<PathBuf> {
    if let Some(path) = find_in_path(name) {
        return Some(path);
    }
    if std::env::var_os(REQUIRE_PROMETHEUS_ENV).is_some() {
        panic!(
            "`{name}` is not in PATH but {REQUIRE_PROMETHEUS_ENV} requires it \
             (Debian: apt-get install prometheus)"
        );
    }
    // Written to the process's stderr directly: the test harness captures eprintln!, and a
    // skip nobody sees looks like a pass.
    let note = format!(
        "note: skipping a test, `{name}` is not in PATH (Debian: apt-get install prometheus; \
         set {REQUIRE_PROMETHEUS_ENV}=1 to make this a failure)\n"
    );
    let _ = std::io::stderr().write_all(note.as_bytes());
    None
}

/// Runs `promtool check metrics` on an exposition. Passing means promtool succeeded and
/// said nothing (it prints its lint findings); otherwise the error holds what it said.
pub fn check_metrics(promtool: &Path, exposition: &str) -> Result<(), String> {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|err| format!("cannot run promtool: {err}"))?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .map_err(|err| err.to_string())?;
    let output = child.wait_with_output().map_err(|err| err.to_string())?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && said.is_empty() {
        Ok(())
    } else {
        Err(format!("promtool check metrics: {said}"))
    }
}
