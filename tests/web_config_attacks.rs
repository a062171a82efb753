//! Attacks on the web config's authentication, against the exporter's binary on loopback:
//! rewriting the file in place while it runs, and a flood of wrong passwords.

mod common;

use std::io::Write;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{ExporterProcess, eventually, sample};

const WAIT: Duration = Duration::from_secs(20);

/// The binary with `web_config`, and the directory holding its store.
fn start(web_config: &Path) -> (ExporterProcess, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let db = store.path().join("tasks.db");
    let exporter = ExporterProcess::start(
        &[
            "--storage.path",
            db.to_str().unwrap(),
            "--web.config.file",
            web_config.to_str().unwrap(),
        ],
        &[],
    );
    (exporter, store)
}

/// `dingtalk_web_config_last_reload_successful`, read with the user's credentials.
async fn reload_gauge(exporter: &ExporterProcess, user: &str, password: &str) -> f64 {
    let exposition = reqwest::Client::new()
        .get(exporter.url("/metrics"))
        .basic_auth(user, Some(password))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    sample(
        &exposition,
        "dingtalk_web_config_last_reload_successful",
        &[],
    )
    .expect("the gauge is exposed")
}

/// Rewriting the web config in place (truncate, then write in pieces, as editors and
/// `cat > file` do) never lets an unauthenticated request through: the empty file and the
/// file cut before `basic_auth_users` are refused while the exporter runs, logged at error
/// level and shown by `dingtalk_web_config_last_reload_successful` 0; the complete file is
/// put in force again and the gauge returns to 1.
#[tokio::test]
async fn an_in_place_rewrite_never_opens_the_door() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    let head = "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n";
    let users = format!(
        "basic_auth_users:\n  prometheus: {}\n",
        bcrypt::hash("scrape-secret", 4).unwrap()
    );
    let whole = format!("{head}{users}");
    std::fs::write(&path, &whole).unwrap();
    let (exporter, _store) = start(&path);
    assert_eq!(
        reload_gauge(&exporter, "prometheus", "scrape-secret").await,
        1.0
    );

    // Unauthenticated requests as fast as they come, while the file is rewritten.
    let stop = Arc::new(AtomicBool::new(false));
    let url = exporter.url("/metrics");
    let prober = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut statuses = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let status = client.get(&url).send().await.unwrap().status().as_u16();
                statuses.push(status);
            }
            statuses
        })
    };
    let writer_path = path.clone();
    let (writer_head, writer_users) = (head.to_string(), users.clone());
    let writer = tokio::task::spawn_blocking(move || {
        for _ in 0..300 {
            let mut file = std::fs::File::create(&writer_path).unwrap(); // truncates
            file.write_all(writer_head.as_bytes()).unwrap();
            file.flush().unwrap();
            file.write_all(writer_users.as_bytes()).unwrap();
            file.flush().unwrap();
        }
    });
    writer.await.unwrap();
    stop.store(true, Ordering::Relaxed);
    let statuses = prober.await.unwrap();
    assert!(statuses.len() > 10, "the prober ran: {}", statuses.len());
    assert!(
        statuses.iter().all(|&status| status == 401),
        "every unauthenticated request is refused: {} of {} got another answer",
        statuses.iter().filter(|&&status| status != 401).count(),
        statuses.len()
    );

    // Left empty, and left cut before the users: refused, the users still hold.
    for (left, reason) in [
        (String::new(), "the file is empty"),
        (
            head.to_string(),
            "it removes every user of basic_auth_users",
        ),
    ] {
        std::fs::write(&path, &left).unwrap();
        let anonymous = reqwest::get(exporter.url("/metrics")).await.unwrap();
        assert_eq!(anonymous.status(), 401, "{reason}");
        assert_eq!(
            reload_gauge(&exporter, "prometheus", "scrape-secret").await,
            0.0,
            "{reason}"
        );
        let logs = exporter.logs();
        assert!(
            logs.lines()
                .any(|line| line.contains("level=error") && line.contains(reason)),
            "{reason}: {logs}"
        );
        std::fs::write(&path, &whole).unwrap();
        eventually("the whole file in force again", WAIT, || async {
            (reload_gauge(&exporter, "prometheus", "scrape-secret").await == 1.0).then_some(())
        })
        .await;
    }
}

/// A flood of wrong passwords from one address does not lock valid users out: while 200
/// clients keep guessing, a user whose credentials were checked before the flood and one
/// checked for the first time during it both get their scrape well within Prometheus'
/// default 10 s scrape timeout; the flood gets 401 or, past its share of pending checks,
/// 429 at once, and never 200.
#[tokio::test]
async fn a_wrong_password_flood_does_not_block_valid_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("web.yml");
    // Cost 10: the usual cost, so each guess costs a real bcrypt run.
    std::fs::write(
        &path,
        format!(
            "basic_auth_users:\n  prometheus: {}\n  grafana: {}\n",
            bcrypt::hash("scrape-secret", 10).unwrap(),
            bcrypt::hash("dashboards", 10).unwrap()
        ),
    )
    .unwrap();
    let (exporter, _store) = start(&path);
    let scrape_timeout = Duration::from_secs(10);
    let valid = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 1]))
        .timeout(scrape_timeout)
        .build()
        .unwrap();
    let scrape = |user: &'static str, password: &'static str| {
        let request = valid
            .get(exporter.url("/metrics"))
            .basic_auth(user, Some(password));
        async move { request.send().await.map(|answer| answer.status().as_u16()) }
    };
    assert_eq!(scrape("prometheus", "scrape-secret").await.unwrap(), 200);

    let stop = Arc::new(AtomicBool::new(false));
    let attacker = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, 2]))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut flood = Vec::new();
    for guesser in 0..200 {
        let (stop, attacker, url) = (stop.clone(), attacker.clone(), exporter.url("/metrics"));
        flood.push(tokio::spawn(async move {
            let mut statuses = Vec::new();
            let mut guess = 0;
            while !stop.load(Ordering::Relaxed) && guess < 50 {
                let password = format!("guess-{guesser}-{guess}");
                let answer = attacker
                    .get(&url)
                    .basic_auth("prometheus", Some(password))
                    .send()
                    .await;
                statuses.push(answer.map(|answer| answer.status().as_u16()).ok());
                guess += 1;
            }
            statuses
        }));
    }
    // Let the flood fill its share of pending checks before the valid users arrive.
    // (Each probe is a new guess: a repeated one is answered from the cache.)
    let probes = std::sync::atomic::AtomicUsize::new(0);
    eventually("the flood being refused with 429", WAIT, || async {
        let probe = probes.fetch_add(1, Ordering::Relaxed);
        let answer = attacker
            .get(exporter.url("/metrics"))
            .basic_auth("prometheus", Some(format!("probe-{probe}")))
            .send()
            .await
            .ok()?;
        (answer.status() == 429).then_some(())
    })
    .await;
    let cached = scrape("prometheus", "scrape-secret").await;
    let first_time = scrape("grafana", "dashboards").await;
    stop.store(true, Ordering::Relaxed);
    let mut statuses = Vec::new();
    for guesser in flood {
        statuses.extend(guesser.await.unwrap());
    }
    assert_eq!(
        cached.expect("the cached user's scrape answers in time"),
        200
    );
    assert_eq!(
        first_time.expect("the new user's scrape answers in time"),
        200
    );
    assert!(
        statuses
            .iter()
            .all(|status| matches!(status, Some(401 | 429))),
        "the flood gets 401 or 429 only: {:?}",
        statuses
            .iter()
            .filter(|status| !matches!(status, Some(401 | 429)))
            .take(5)
            .collect::<Vec<_>>()
    );
    assert!(
        statuses.contains(&Some(429)),
        "past its share the flood is refused at once"
    );
}
