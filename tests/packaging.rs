//! The shipped examples and packaging files, checked by the tools that will read them:
//! `promtool` for the web config and the Prometheus config, `systemd-analyze` for the unit,
//! and the Kubernetes manifests against one another.

mod prometheus_tools;
mod tls_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use dingtalk_exporter::http::WebConfig;
use prometheus_tools::{find_in_path, prometheus_binary};
use tls_common::TestCa;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// promtool from PATH; `None` (with a note) when missing, unless CI requires it through
/// DINGTALK_EXPORTER_REQUIRE_PROMETHEUS, which turns the skip into a failure.
fn promtool() -> Option<PathBuf> {
    prometheus_binary("promtool")
}

/// (success, stdout and stderr together).
fn run(program: &Path, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("{} runs: {err}", program.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// examples/web-config.yml copied beside a certificate and key made for the test (the
/// example names them relatively).
fn example_web_config() -> (tempfile::TempDir, PathBuf) {
    let server = TestCa::new("example CA").server();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.crt"), &server.cert).unwrap();
    std::fs::write(dir.path().join("tls.key"), &server.key).unwrap();
    let path = dir.path().join("web-config.yml");
    std::fs::copy(repo("examples/web-config.yml"), &path).unwrap();
    (dir, path)
}

/// promtool accepts examples/web-config.yml, and refuses it with a misspelt key (so the
/// check does check).
#[test]
fn example_web_config_passes_promtool() {
    let Some(promtool) = promtool() else { return };
    let (_dir, path) = example_web_config();
    let (valid, text) = run(
        &promtool,
        &["check".as_ref(), "web-config".as_ref(), path.as_ref()],
    );
    assert!(valid, "promtool check web-config:\n{text}");

    let broken = std::fs::read_to_string(&path)
        .unwrap()
        .replace("min_version:", "min_versoin:");
    std::fs::write(&path, broken).unwrap();
    let (valid, text) = run(
        &promtool,
        &["check".as_ref(), "web-config".as_ref(), path.as_ref()],
    );
    assert!(!valid, "promtool must refuse an unknown key:\n{text}");
}

/// The exporter's own check accepts examples/web-config.yml as TLS with one basic-auth user.
#[test]
fn example_web_config_passes_the_exporters_check() {
    let (_dir, path) = example_web_config();
    let config = WebConfig::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    assert_eq!(
        config.summary(),
        "TLS 1.2 to 1.3, no client certificates; basic auth for 1 user"
    );
    assert_eq!(config.extra_headers().len(), 3);
}

/// promtool accepts examples/prometheus.yml and the rule file it names (a stand-in empty
/// rule file when alerts/ is not in this tree).
#[test]
fn example_prometheus_config_passes_promtool() {
    let Some(promtool) = promtool() else { return };
    // The same layout as the repository: examples/ and alerts/ side by side.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    std::fs::create_dir_all(dir.path().join("alerts")).unwrap();
    let config = dir.path().join("examples/prometheus.yml");
    std::fs::copy(repo("examples/prometheus.yml"), &config).unwrap();
    let rules = repo("alerts/dingtalk-exporter.rules.yml");
    let copied_rules = dir.path().join("alerts/dingtalk-exporter.rules.yml");
    if rules.exists() {
        std::fs::copy(&rules, &copied_rules).unwrap();
    } else {
        eprintln!(
            "alerts/dingtalk-exporter.rules.yml not in this tree; checking against an empty one"
        );
        std::fs::write(&copied_rules, "groups: []\n").unwrap();
    }
    let (valid, text) = run(
        &promtool,
        &["check".as_ref(), "config".as_ref(), config.as_ref()],
    );
    assert!(valid, "promtool check config:\n{text}");
    assert!(text.contains("1 rule files found"), "{text}");
}

/// The systemd unit verifies without a warning and keeps its exposure score low (when
/// systemd-analyze is installed).
#[test]
fn systemd_unit_verifies_cleanly() {
    let Some(analyze) = find_in_path("systemd-analyze") else {
        eprintln!("systemd-analyze not in PATH; skipping");
        return;
    };
    // verify also checks that ExecStart's program exists: point it at the test binary.
    let unit = std::fs::read_to_string(repo("packaging/systemd/dingtalk-exporter.service"))
        .unwrap()
        .replace(
            "/usr/bin/dingtalk-exporter",
            env!("CARGO_BIN_EXE_dingtalk-exporter"),
        );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dingtalk-exporter.service");
    std::fs::write(&path, unit).unwrap();
    let (valid, text) = run(&analyze, &["verify".as_ref(), path.as_ref()]);
    assert!(
        valid && text.trim().is_empty(),
        "systemd-analyze verify:\n{text}"
    );

    let (valid, text) = run(
        &analyze,
        &[
            "security".as_ref(),
            "--offline=true".as_ref(),
            // In tenths: the 2.0 of the printed scale.
            "--threshold=20".as_ref(),
            path.as_ref(),
        ],
    );
    assert!(
        valid,
        "systemd-analyze security (exposure above 2.0):\n{text}"
    );
}

/// Every YAML document of a directory of manifests (`packaging/kubernetes`, ...).
fn manifests_in(dir: &str) -> Vec<serde_yaml_ng::Value> {
    let mut documents = Vec::new();
    for entry in std::fs::read_dir(repo(dir)).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = <serde_yaml_ng::Value as serde::Deserialize>::deserialize(document)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            documents.push(value);
        }
    }
    documents
}

/// Every YAML document of packaging/kubernetes/.
fn manifests() -> Vec<serde_yaml_ng::Value> {
    manifests_in("packaging/kubernetes")
}

fn of_kind<'a>(documents: &'a [serde_yaml_ng::Value], kind: &str) -> &'a serde_yaml_ng::Value {
    let found: Vec<_> = documents
        .iter()
        .filter(|document| document["kind"].as_str() == Some(kind))
        .collect();
    assert_eq!(found.len(), 1, "one {kind}");
    found[0]
}

/// The Kubernetes manifests fit together and run the exporter the safe way: one replica
/// replaced by Recreate (SQLite has one writer), the store on the claim, secrets as files,
/// probes on /-/healthy and /-/ready, non-root with a read-only root file system, and a
/// Service and ServiceMonitor that find the pod.
#[test]
fn kubernetes_manifests_fit_together() {
    let documents = manifests();
    let deployment = of_kind(&documents, "Deployment");
    let service = of_kind(&documents, "Service");
    let monitor = of_kind(&documents, "ServiceMonitor");
    let claim = of_kind(&documents, "PersistentVolumeClaim");
    let secret = of_kind(&documents, "Secret");

    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"].as_i64(), Some(1));
    assert_eq!(spec["strategy"]["type"].as_str(), Some("Recreate"));
    let pod = &spec["template"]["spec"];
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&spec["selector"]["matchLabels"], pod_labels);
    assert_eq!(pod["securityContext"]["runAsNonRoot"].as_bool(), Some(true));
    let container = &pod["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(security["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(container["ports"][0]["containerPort"].as_i64(), Some(10050));
    assert_eq!(
        container["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/-/healthy")
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/-/ready")
    );

    // Volumes: the claim holds the store, the Secret is mounted where the flags look.
    let volumes = pod["volumes"].as_sequence().unwrap();
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|volume| volume["name"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("volume {name}"))
    };
    let mount = |name: &str| {
        container["volumeMounts"]
            .as_sequence()
            .unwrap()
            .iter()
            .find(|mount| mount["name"].as_str() == Some(name))
            .and_then(|mount| mount["mountPath"].as_str())
            .unwrap_or_else(|| panic!("mount of {name}"))
            .to_string()
    };
    assert_eq!(
        volume("data")["persistentVolumeClaim"]["claimName"],
        claim["metadata"]["name"]
    );
    assert_eq!(
        volume("secrets")["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    let data = mount("data");
    let secrets = mount("secrets");
    assert!(
        args.iter()
            .any(|arg| arg.starts_with(&format!("--storage.path={data}/"))),
        "{args:?}"
    );
    for (flag, key) in [
        ("--dingtalk.app-secret-file", "app-secret"),
        ("--web.api-token-file", "api-token"),
    ] {
        assert!(
            args.contains(&format!("{flag}={secrets}/{key}").as_str()),
            "{flag} in {args:?}"
        );
        assert!(!secret["stringData"][key].is_null(), "the Secret has {key}");
    }
    assert!(
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .all(|env| env["valueFrom"].is_null()),
        "secrets come as files, not environment variables"
    );

    // The Service selects the pod; the ServiceMonitor selects the Service and its port.
    let selector = service["spec"]["selector"].as_mapping().unwrap();
    for (key, value) in selector {
        assert_eq!(&pod_labels[key.as_str().unwrap()], value);
    }
    let port = &service["spec"]["ports"][0];
    assert_eq!(port["port"].as_i64(), Some(10050));
    assert_eq!(port["targetPort"], container["ports"][0]["name"]);
    for (key, value) in monitor["spec"]["selector"]["matchLabels"]
        .as_mapping()
        .unwrap()
    {
        assert_eq!(&service["metadata"]["labels"][key.as_str().unwrap()], value);
    }
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], port["name"]);

    // kustomization.yaml lists every other file.
    let kustomization: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("packaging/kubernetes/kustomization.yaml")).unwrap(),
    )
    .unwrap();
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|resource| resource.as_str().unwrap())
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(repo("packaging/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
}

/// The replicated variant runs several replicas on the shared database: no volume, a
/// disruption budget that keeps one replica up, the database URL and password from the
/// Secret (the password as a file, never in an argument), and the files all listed.
#[test]
fn replicated_kubernetes_manifests_fit_together() {
    let documents = manifests_in("packaging/kubernetes-replicated");
    let deployment = of_kind(&documents, "Deployment");
    let budget = of_kind(&documents, "PodDisruptionBudget");
    let secret = of_kind(&documents, "Secret");
    let service = of_kind(&documents, "Service");
    assert!(
        documents
            .iter()
            .all(|document| document["kind"].as_str() != Some("PersistentVolumeClaim")),
        "replicas share no volume"
    );
    let spec = &deployment["spec"];
    assert!(spec["replicas"].as_i64().unwrap() >= 2);
    assert_eq!(spec["strategy"]["type"].as_str(), Some("RollingUpdate"));
    let pod_labels = &spec["template"]["metadata"]["labels"];
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], pod_labels);
    assert_eq!(&service["spec"]["selector"], pod_labels);
    assert_eq!(budget["spec"]["minAvailable"].as_i64(), Some(1));

    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|arg| arg.as_str().unwrap())
        .collect();
    assert!(!args.iter().any(|arg| arg.starts_with("--storage.path")));
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert_eq!(
        spec["template"]["spec"]["volumes"][0]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    let password_arg = format!("--storage.password-file={mount}/database-password");
    assert!(args.contains(&password_arg.as_str()), "{args:?}");
    assert!(!secret["stringData"]["database-password"].is_null());
    let url_env = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|env| env["name"].as_str() == Some("DINGTALK_EXPORTER_STORAGE_URL"))
        .expect("the database URL in the environment");
    let reference = &url_env["valueFrom"]["secretKeyRef"];
    assert_eq!(reference["name"], secret["metadata"]["name"]);
    let url = secret["stringData"][reference["key"].as_str().unwrap()]
        .as_str()
        .unwrap();
    let user_info = url
        .strip_prefix("postgres://")
        .and_then(|rest| rest.split_once('@'))
        .map(|(user_info, _)| user_info)
        .expect("a postgres:// URL with a user");
    assert!(!user_info.contains(':'), "no password in the URL: {url}");

    let kustomization: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo("packaging/kubernetes-replicated/kustomization.yaml"))
            .unwrap(),
    )
    .unwrap();
    let mut listed: Vec<&str> = kustomization["resources"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|resource| resource.as_str().unwrap())
        .collect();
    listed.sort();
    let mut files: Vec<String> = std::fs::read_dir(repo("packaging/kubernetes-replicated"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name != "kustomization.yaml")
        .collect();
    files.sort();
    assert_eq!(listed, files);
}

/// The Dockerfile builds in one stage and runs in a minimal one, as an unprivileged user,
/// exposing the default port, with the store in a volume.
#[test]
fn dockerfile_runs_unprivileged_on_a_minimal_image() {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let stages: Vec<&str> = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .collect();
    assert_eq!(stages.len(), 2, "{stages:?}");
    assert!(stages[1].contains("distroless") && stages[1].ends_with(":nonroot"));
    let runtime = &dockerfile[dockerfile.rfind("\nFROM ").unwrap()..];
    for line in [
        "USER 65532:65532",
        "EXPOSE 10050",
        "VOLUME [\"/var/lib/dingtalk-exporter\"]",
        "ENTRYPOINT [\"/usr/bin/dingtalk-exporter\"]",
        "ENV DINGTALK_EXPORTER_STORAGE_PATH=/var/lib/dingtalk-exporter/",
    ] {
        assert!(runtime.contains(line), "{line}");
    }
    let ignored = std::fs::read_to_string(repo(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|line| line == "target/"));
}
