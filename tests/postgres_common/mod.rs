//! A private PostgreSQL cluster for a test: Debian's `postgresql` binaries, a data directory
//! in a temporary directory, a free loopback port, run as an unprivileged user (PostgreSQL
//! refuses to run as root; CI runs as root, so there it runs as `nobody`), password auth
//! over TCP. Missing binaries skip the test, unless `DINGTALK_EXPORTER_REQUIRE_POSTGRES=1`
//! (CI) makes that a failure.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The database superuser the exporter connects as, and its password.
pub const USER: &str = "dingtalk";
pub const PASSWORD: &str = "pg-Pa55-never-shown-4d1e";
pub const DATABASE: &str = "dingtalk";

pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
}

/// The newest installed PostgreSQL's binaries.
fn find_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path().join("bin")))
        .filter(|bin| bin.join("pg_ctl").exists() && bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("port")
        .port()
}

impl PgCluster {
    /// Starts a new cluster with the database [`DATABASE`]; `None` (after saying why) when
    /// PostgreSQL is not installed and not required.
    pub fn start() -> Option<PgCluster> {
        let Some(bin) = find_bin() else {
            if std::env::var("DINGTALK_EXPORTER_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!(
                    "PostgreSQL is required (DINGTALK_EXPORTER_REQUIRE_POSTGRES=1) but no /usr/lib/postgresql/*/bin/pg_ctl is installed: apt-get install postgresql"
                );
            }
            eprintln!("skipping: PostgreSQL is not installed (apt-get install postgresql)");
            return None;
        };
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))
            .expect("open the temp dir to the cluster's user");
        let password_file = dir.path().join("pwfile");
        std::fs::write(&password_file, PASSWORD).expect("password file");
        std::fs::set_permissions(&password_file, std::fs::Permissions::from_mode(0o644))
            .expect("password file readable");
        let cluster = PgCluster {
            dir,
            bin,
            port: free_port(),
        };
        let data = cluster.data_dir();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                USER,
                "--pwfile",
                password_file.to_str().unwrap(),
                "--auth-host=scram-sha-256",
                "--auth-local=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        cluster.pg_ctl_start();
        cluster.run(
            "createdb",
            &[
                "-h",
                cluster.socket_dir().to_str().unwrap(),
                "-p",
                &cluster.port.to_string(),
                "-U",
                USER,
                DATABASE,
            ],
        );
        Some(cluster)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn socket_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// The exporter's `--storage.url` (no password: it travels apart).
    pub fn url(&self) -> String {
        format!(
            "postgres://{USER}@127.0.0.1:{}/{DATABASE}?sslmode=disable",
            self.port
        )
    }

    /// Runs one PostgreSQL program as the cluster's user; panics with its output on failure.
    fn run(&self, program: &str, args: &[&str]) -> Output {
        let path = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let output = command
            .args(args)
            .current_dir(self.dir.path())
            .env("LC_ALL", "C")
            .output()
            .unwrap_or_else(|err| panic!("cannot run {}: {err}", path.display()));
        if !output.status.success() {
            panic!(
                "{program} failed: {}\n{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        output
    }

    fn pg_ctl_start(&self) {
        let data = self.data_dir();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=60",
            self.port,
            self.socket_dir().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.path().join("server.log").to_str().unwrap(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        );
    }

    /// Stops the server as a crash would (`-m immediate`: no checkpoint, connections cut).
    pub fn crash(&self) {
        let data = self.data_dir();
        self.run(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }

    /// Starts it again (on the same port), recovering from its log.
    pub fn start_again(&self) {
        self.pg_ctl_start();
    }

    /// Runs SQL in the test's database (for assertions on what is stored).
    pub fn psql(&self, sql: &str) -> String {
        let output = self.run(
            "psql",
            &[
                "-h",
                self.socket_dir().to_str().unwrap(),
                "-p",
                &self.port.to_string(),
                "-U",
                USER,
                "-d",
                DATABASE,
                "-At",
                "-c",
                sql,
            ],
        );
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let path = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "nobody", "--"]).arg(&path);
            command
        } else {
            Command::new(&path)
        };
        let _ = command
            .args([
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ])
            .output();
    }
}
