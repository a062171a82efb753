//! The `--web.config.file` over real connections: TLS handshakes with real clients and
//! certificates made in the test, client certificates, basic auth, and the file re-read
//! while the server runs.

mod http_common;
mod tls_common;

use std::sync::Arc;
use std::time::Duration;

use dingtalk_exporter::http::{ServerLimits, WebConfigWatch, serve_with_web_config};
use dingtalk_exporter::secret::Secret;
use http_common::{eventually, exporter, test_config};
use tls_common::{TestCa, WebConfigDir, bcrypt_hash, https_client};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(20);

/// The real server on a loopback port, with a web config.
struct SecuredServer {
    address: std::net::SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl SecuredServer {
    async fn start(web_config: &std::path::Path) -> SecuredServer {
        Self::start_with(test_config(), web_config).await
    }

    async fn start_with(
        config: dingtalk_exporter::config::Config,
        web_config: &std::path::Path,
    ) -> SecuredServer {
        let watch = WebConfigWatch::open(web_config).expect("the web config is valid");
        let (exporter, _store) = exporter(config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve_with_web_config(
            listener,
            exporter,
            ServerLimits::default(),
            Some(Arc::new(watch)),
            async move {
                let _ = stopped.await;
            },
        ));
        SecuredServer {
            address,
            _stop: stop,
        }
    }

    fn https(&self, path: &str) -> String {
        format!("https://{}{path}", self.address)
    }

    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

const TLS_ONLY: &str = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n";

/// A client trusting the operator's CA scrapes over HTTPS; plain HTTP gets no answer.
#[tokio::test]
async fn scrapes_over_https_with_the_operators_ca() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let server = SecuredServer::start(&files.write_config(TLS_ONLY)).await;

    let response = https_client(&ca)
        .build()
        .unwrap()
        .get(server.https("/metrics"))
        .send()
        .await
        .expect("the TLS handshake succeeds");
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("dingtalk_exporter_build_info")
    );

    let plain = reqwest::Client::new()
        .get(server.http("/metrics"))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");
    let stranger = https_client(&TestCa::new("someone else"))
        .build()
        .unwrap()
        .get(server.https("/metrics"))
        .send()
        .await;
    assert!(stranger.is_err(), "a client not trusting the CA must fail");
}

/// With `min_version: TLS13`, a client limited to TLS 1.2 cannot connect; a TLS 1.3 one can.
#[tokio::test]
async fn tls13_minimum_refuses_tls12_clients() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let server =
        SecuredServer::start(&files.write_config(&format!("{TLS_ONLY}  min_version: TLS13\n")))
            .await;
    let tls12_only = https_client(&ca)
        .tls_version_max(reqwest::tls::Version::TLS_1_2)
        .build()
        .unwrap();
    let refused = tls12_only.get(server.https("/-/healthy")).send().await;
    assert!(refused.is_err(), "a TLS 1.2 client must be refused");
    let modern = https_client(&ca).build().unwrap();
    let response = modern.get(server.https("/-/healthy")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // And the reverse: a TLS 1.2 maximum still serves TLS 1.2 clients.
    let files = WebConfigDir::new(&ca.server());
    let server =
        SecuredServer::start(&files.write_config(&format!("{TLS_ONLY}  max_version: TLS12\n")))
            .await;
    let response = tls12_only
        .get(server.https("/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// With `RequireAndVerifyClientCert`, the handshake fails without a client certificate or
/// with one from another CA, and succeeds with one the client CA signed.
#[tokio::test]
async fn client_certificates_are_required_and_verified() {
    let server_ca = TestCa::new("server CA");
    let client_ca = TestCa::new("client CA");
    let files = WebConfigDir::new(&server_ca.server());
    std::fs::write(files.path("clients.crt"), &client_ca.pem).unwrap();
    let server = SecuredServer::start(&files.write_config(&format!(
        "{TLS_ONLY}  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n"
    )))
    .await;

    let anonymous = https_client(&server_ca)
        .build()
        .unwrap()
        .get(server.https("/metrics"))
        .send()
        .await;
    assert!(anonymous.is_err(), "no client certificate: {anonymous:?}");
    let forged = https_client(&server_ca)
        .identity(TestCa::new("rogue CA").client("prometheus").identity())
        .build()
        .unwrap()
        .get(server.https("/metrics"))
        .send()
        .await;
    assert!(forged.is_err(), "a certificate of another CA: {forged:?}");
    let response = https_client(&server_ca)
        .identity(client_ca.client("prometheus").identity())
        .build()
        .unwrap()
        .get(server.https("/metrics"))
        .send()
        .await
        .expect("a certificate of the client CA is accepted");
    assert_eq!(response.status(), 200);
}

/// Basic auth: the right password passes everywhere; a wrong password, an unknown user or
/// no credentials get 401 with a `Basic` challenge; `/-/healthy` stays open; configured
/// security headers are on every answer.
#[tokio::test]
async fn basic_auth_guards_every_endpoint_but_healthy() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let server = SecuredServer::start(&files.write_config(&format!(
        "{TLS_ONLY}basic_auth_users:\n  prometheus: {}\nhttp_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n",
        bcrypt_hash("scrape-secret")
    )))
    .await;
    let client = https_client(&ca).build().unwrap();

    for path in ["/metrics", "/", "/-/ready", "/api/v1/tasks"] {
        let response = client
            .get(server.https(path))
            .basic_auth("prometheus", Some("scrape-secret"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    }
    for (user, password) in [
        (Some("prometheus"), "wrong"),
        (Some("grafana"), "scrape-secret"),
        (None, ""),
    ] {
        for path in ["/metrics", "/", "/api/v1/tasks"] {
            let mut request = client.get(server.https(path));
            if let Some(user) = user {
                request = request.basic_auth(user, Some(password));
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 401, "{user:?} on {path}");
            assert_eq!(
                response.headers()["www-authenticate"],
                "Basic realm=\"dingtalk-exporter\""
            );
            assert_eq!(response.headers()["x-content-type-options"], "nosniff");
            let body = response.text().await.unwrap();
            assert!(!body.contains("dingtalk_"), "no data in a refusal: {body}");
        }
    }
    let response = client.get(server.https("/-/healthy")).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// With basic auth and an API token, a write carrying the token passes (one request has one
/// `Authorization` header); a write with basic auth only needs the token; a read with the
/// token only needs basic auth.
#[tokio::test]
async fn api_token_writes_and_basic_auth_reads_coexist() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let mut config = test_config();
    config.web.api_token = Some(Secret::new("api-token-7c1e"));
    let server = SecuredServer::start_with(
        config,
        &files.write_config(&format!(
            "{TLS_ONLY}basic_auth_users:\n  prometheus: {}\n",
            bcrypt_hash("scrape-secret")
        )),
    )
    .await;
    let client = https_client(&ca).build().unwrap();
    let task = serde_json::json!({"agent_id": 1, "task_id": 2});

    let created = client
        .post(server.https("/api/v1/tasks"))
        .bearer_auth("api-token-7c1e")
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let wrong_token = client
        .post(server.https("/api/v1/tasks"))
        .bearer_auth("guess")
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_token.status(), 401);
    let basic_only = client
        .post(server.https("/api/v1/tasks"))
        .basic_auth("prometheus", Some("scrape-secret"))
        .json(&task)
        .send()
        .await
        .unwrap();
    assert_eq!(basic_only.status(), 401);
    assert!(
        basic_only.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let token_read = client
        .get(server.https("/api/v1/tasks"))
        .bearer_auth("api-token-7c1e")
        .send()
        .await
        .unwrap();
    assert_eq!(token_read.status(), 401);
    assert_eq!(
        token_read.headers()["www-authenticate"],
        "Basic realm=\"dingtalk-exporter\""
    );
}

/// A certificate replaced on disk is served to new connections without a restart.
#[tokio::test]
async fn rotated_certificates_are_served_without_restart() {
    let old_ca = TestCa::new("old CA");
    let new_ca = TestCa::new("new CA");
    let files = WebConfigDir::new(&old_ca.server());
    let server = SecuredServer::start(&files.write_config(TLS_ONLY)).await;
    let trusts_old = https_client(&old_ca).build().unwrap();
    let trusts_new = https_client(&new_ca).build().unwrap();
    assert!(
        trusts_old
            .get(server.https("/-/healthy"))
            .send()
            .await
            .is_ok()
    );
    assert!(
        trusts_new
            .get(server.https("/-/healthy"))
            .send()
            .await
            .is_err()
    );

    files.rotate(&new_ca.server());
    eventually("the new certificate in use", WAIT, || async {
        trusts_new
            .get(server.https("/-/healthy"))
            .send()
            .await
            .ok()
            .filter(|response| response.status() == 200)
    })
    .await;
    assert!(
        trusts_old
            .get(server.https("/-/healthy"))
            .send()
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
}

/// A web config broken on disk keeps the last good one in force; once fixed, its changes
/// (here a new user) take effect without a restart.
#[tokio::test]
async fn a_broken_rewrite_keeps_the_last_good_config() {
    let ca = TestCa::new("operator CA");
    let files = WebConfigDir::new(&ca.server());
    let good = format!(
        "{TLS_ONLY}basic_auth_users:\n  prometheus: {}\n",
        bcrypt_hash("scrape-secret")
    );
    let server = SecuredServer::start(&files.write_config(&good)).await;
    let client = https_client(&ca).build().unwrap();
    let status_for = |user: &'static str, password: &'static str| {
        let request = client
            .get(server.https("/metrics"))
            .basic_auth(user, Some(password));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_for("prometheus", "scrape-secret").await, 200);

    // Broken: an unknown key, and a user that must not come into force with it.
    files.write_config(&format!(
        "{good}  grafana: {}\nbasic_auth_userz: {{}}\n",
        bcrypt_hash("dashboards")
    ));
    // Every request looks at the file; both of these come after the rewrite.
    assert_eq!(status_for("prometheus", "scrape-secret").await, 200);
    assert_eq!(status_for("grafana", "dashboards").await, 401);

    files.write_config(&format!("{good}  grafana: {}\n", bcrypt_hash("dashboards")));
    eventually("the fixed file in force", WAIT, || async {
        (status_for("grafana", "dashboards").await == 200).then_some(())
    })
    .await;
    assert_eq!(status_for("prometheus", "scrape-secret").await, 200);
}
