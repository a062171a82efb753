//! Records the git revision the binary is built from, for `dingtalk_exporter_build_info`.

use std::process::Command;

fn main() {
    // A revision given by the packager (a Docker build has no .git) wins.
    println!("cargo:rerun-if-env-changed=DINGTALK_EXPORTER_REVISION");
    if std::env::var_os("DINGTALK_EXPORTER_REVISION").is_some() {
        return;
    }
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs");
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty());
    if let Some(revision) = revision {
        println!("cargo:rustc-env=DINGTALK_EXPORTER_REVISION={revision}");
    }
}
