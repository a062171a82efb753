//! Helpers shared by the integration tests: the real binary as a child process, waiting for
//! conditions with a deadline (never sleeping as synchronisation), and reading `/metrics`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The exporter binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_dingtalk-exporter")
}

/// Polls `check` every 20 ms until it returns `Some`, or panics naming `what` after
/// `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A running exporter process whose log lines are captured.
pub struct ExporterProcess {
    pub child: Child,
    pub address: SocketAddr,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl ExporterProcess {
    /// Starts the binary with `args` (plus `--web.listen-address 127.0.0.1:0`) and waits for
    /// it to say where it listens.
    pub fn start(args: &[&str], envs: &[(&str, &str)]) -> ExporterProcess {
        let mut command = Command::new(binary());
        command
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .env_remove("DINGTALK_APP_SECRET")
            .env_remove("DINGTALK_APP_KEY")
            .env_remove("DINGTALK_API_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("the exporter binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().expect("stderr is piped"))
                as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().expect("stdout is piped")),
        ] {
            let logs = logs.clone();
            let address_tx = address_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let address = line
                        .contains("listening")
                        .then(|| parse_address(&line))
                        .flatten();
                    // Logged before the address is announced, so whoever waits for the
                    // address finds the line in the logs.
                    logs.lock().unwrap().push(line);
                    if let Some(address) = address {
                        let _ = address_tx.send(address);
                    }
                }
            });
        }
        let address = match address_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(address) => address,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the exporter did not start listening; its output:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        ExporterProcess {
            child,
            address,
            logs,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.address, path)
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Whether a log line holding `needle` arrives within 10 s: the exporter writes a line
    /// before it answers, but the line reaches this process through a pipe and a reader
    /// thread, possibly after the answer.
    pub fn logged_soon(&self, needle: &str) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            if self.logs().contains(needle) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::park_timeout(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().expect("the exporter exits")
    }
}

impl Drop for ExporterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `address=` value of a log line.
fn parse_address(line: &str) -> Option<SocketAddr> {
    let start = line.find("address=")? + "address=".len();
    let value: String = line[start..]
        .trim_start_matches('"')
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"' && *c != ',')
        .collect();
    value.parse().ok()
}

/// The value of the sample `name{labels}` in an exposition, labels given as
/// `agent_id="1",task_id="2"` in any order-insensitive subset form.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition.lines().find_map(|line| {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let (metric, label_text) = match series.split_once('{') {
            Some((metric, rest)) => (metric, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if metric != name {
            return None;
        }
        let all_match = labels
            .iter()
            .all(|(label, wanted)| label_text.contains(&format!("{label}=\"{wanted}\"")));
        if !all_match {
            return None;
        }
        value.parse().ok()
    })
}

pub async fn get_text(url: &str) -> Option<String> {
    let answer = reqwest::get(url).await.ok()?;
    if !answer.status().is_success() {
        return None;
    }
    answer.text().await.ok()
}

/// A path inside a temporary directory that lives as long as the returned guard.
pub fn temp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("exporter.db");
    let path = path.to_str().expect("utf-8 temp path").to_string();
    (dir, path)
}

pub fn exists(path: &str) -> bool {
    Path::new(path).exists()
}

/// A simulator that knows one app, `app_key` with `app_secret`.
pub async fn start_simulator(
    app_key: &str,
    app_secret: &str,
    behaviour: dingtalk_exporter::simulator::Behaviour,
) -> dingtalk_exporter::simulator::Simulator {
    use dingtalk_exporter::simulator::{SimApp, SimConfig, Simulator};
    Simulator::start(SimConfig {
        apps: vec![SimApp::new(app_key, app_secret)],
        behaviour,
        ..SimConfig::default()
    })
    .await
    .expect("the simulator starts")
}

/// The exporter polling `sim` with `app_key` (its secret through `DINGTALK_APP_SECRET`),
/// storing into `db`, with `flags` (pairs of flag and value; a flag given in `extra` wins).
pub fn exporter_against(
    sim: &dingtalk_exporter::simulator::Simulator,
    (app_key, app_secret): (&str, &str),
    db: &str,
    flags: &[(&str, &str)],
    extra: &[&str],
) -> ExporterProcess {
    let mut args = vec![
        "--dingtalk.api-url",
        sim.url(),
        "--dingtalk.app-key",
        app_key,
        "--storage.path",
        db,
    ];
    for (flag, value) in flags {
        if !extra.contains(flag) {
            args.extend_from_slice(&[flag, value]);
        }
    }
    args.extend_from_slice(extra);
    ExporterProcess::start(&args, &[("DINGTALK_APP_SECRET", app_secret)])
}

/// One task as the task API answers it, if tracked.
pub async fn task_json(
    exporter: &ExporterProcess,
    agent_id: i64,
    task_id: i64,
) -> Option<serde_json::Value> {
    let text = get_text(&exporter.url(&format!("/api/v1/tasks/{agent_id}/{task_id}"))).await?;
    serde_json::from_str(&text).ok()
}

/// One sample of the exporter's `/metrics`.
pub async fn metric(
    exporter: &ExporterProcess,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    sample(&get_text(&exporter.url("/metrics")).await?, name, labels)
}
