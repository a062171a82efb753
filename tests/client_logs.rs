//! What the DingTalk client writes (logs at debug level, error texts, metrics) never holds the
//! app secret or an access token, even when calls fail in every way and answers echo them.
//!
//! Its own test binary, because it installs the process-wide log subscriber.

mod client_fake;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_fake::*;
use dingtalk_exporter::dingtalk::DeliveryApi;

/// Every log line of the process, as written.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ISSUED_TOKENS: &[&str] = &[
    "tokAAA111issued",
    "tokBBB222issued",
    "tokCCC333issued",
    "tokDDD444issued",
    "tokEEE555issued",
    SPLIT_TOKEN,
];

/// A token of DingTalk's usual length, echoed by an answer where the excerpt's cut splits it.
const SPLIT_TOKEN: &str = "tokFFF666issuedAbCdEfGhIjKl";

/// Debug logs, error texts and metrics name neither the app secret nor any issued token.
#[tokio::test]
async fn secrets_and_tokens_stay_out_of_logs_errors_and_metrics() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let mut error_texts = Vec::new();
    let mut metrics = Vec::new();

    // A token rejected by an answer that echoes it, a refresh, then an errmsg quoting the secret.
    let fake = FakeDingTalk::start(|seen, n| match (seen.path.as_str(), n) {
        (GETTOKEN, 0) => token_answer(ISSUED_TOKENS[0]),
        (GETTOKEN, _) => token_answer(ISSUED_TOKENS[1]),
        (_, 0) => json(&format!(
            r#"{{"errcode":88,"sub_code":"40014","sub_msg":"invalid token {0}","errmsg":"ding talk error access_token={0}"}}"#,
            ISSUED_TOKENS[0]
        )),
        (_, 1) => progress_answer(30, 1),
        _ => json(&format!(
            r#"{{"errcode":40035,"errmsg":"bad request appsecret {APP_SECRET} token {}"}}"#,
            ISSUED_TOKENS[1]
        )),
    })
    .await;
    let h = harness(&fake.url(), Options::default());
    assert!(h.client.send_progress(AGENT_ID, TASK_ID).await.is_ok());
    let failure = h.client.send_progress(AGENT_ID, TASK_ID).await.unwrap_err();
    error_texts.push(failure.to_string());
    error_texts.push(format!("{failure:?}"));
    metrics.push(h.metrics_text());

    // A truncated gettoken answer that holds a token; then one whose connection drops.
    let fake = FakeDingTalk::start(|seen, n| match (seen.path.as_str(), n) {
        (GETTOKEN, 0) => json(&format!(
            r#"{{"errcode":0,"access_token":"{}","expi"#,
            ISSUED_TOKENS[2]
        )),
        (GETTOKEN, _) => token_answer(ISSUED_TOKENS[3]),
        _ => Reply::Drop,
    })
    .await;
    let h = harness(&fake.url(), Options::default());
    for _ in 0..2 {
        let failure = h.client.send_progress(AGENT_ID, TASK_ID).await.unwrap_err();
        error_texts.push(failure.to_string());
        error_texts.push(format!("{failure:?}"));
    }
    metrics.push(h.metrics_text());

    // A server that never answers, then one that refuses connections.
    let fake = FakeDingTalk::start(|seen, _| match seen.path.as_str() {
        GETTOKEN => token_answer(ISSUED_TOKENS[4]),
        _ => Reply::Hang,
    })
    .await;
    let h = harness(
        &fake.url(),
        Options {
            timeout: Duration::from_millis(200),
            ..Options::default()
        },
    );
    let failure = h.client.send_result(AGENT_ID, TASK_ID).await.unwrap_err();
    error_texts.push(failure.to_string());
    let refused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let refused_url = format!("http://{}", refused.local_addr().unwrap());
    drop(refused);
    let h = harness(&refused_url, Options::default());
    let failure = h.client.send_progress(AGENT_ID, TASK_ID).await.unwrap_err();
    error_texts.push(failure.to_string());
    metrics.push(h.metrics_text());

    // A gateway page echoing the token across the point where the quoted excerpt is cut:
    // 100 bytes before it, so a cut before redaction would leave 20 of its 27 characters.
    let fake = FakeDingTalk::start(|seen, _| match seen.path.as_str() {
        GETTOKEN => token_answer(SPLIT_TOKEN),
        _ => Reply::Raw(
            200,
            "text/html",
            format!("<html>{}{SPLIT_TOKEN} denied</html>", ". ".repeat(47)).into_bytes(),
        ),
    })
    .await;
    let h = harness(&fake.url(), Options::default());
    let failure = h.client.send_progress(AGENT_ID, TASK_ID).await.unwrap_err();
    error_texts.push(failure.to_string());
    assert!(
        failure.to_string().contains("not a JSON object"),
        "{failure}"
    );

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The capture works and saw the failures, so the absence below means something.
    assert!(logs.contains("DEBUG"), "{logs}");
    assert!(logs.contains("getsendprogress") && logs.contains("gettoken"));
    assert!(logs.contains("DingTalk call failed"), "{logs}");
    assert!(logs.contains("transport") && logs.contains("decode"));
    for (what, text) in [
        ("logs", logs.as_str()),
        ("errors", &error_texts.join("\n")),
        ("metrics", &metrics.join("\n")),
    ] {
        assert!(
            !text.contains(APP_SECRET),
            "the app secret is in the {what}:\n{text}"
        );
        for token in ISSUED_TOKENS {
            assert!(
                !text.contains(token),
                "token {token} is in the {what}:\n{text}"
            );
        }
        // Not even a piece of the split token.
        for piece in SPLIT_TOKEN.as_bytes().windows(8) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(
                !text.contains(piece),
                "{piece:?} of the split token is in the {what}:\n{text}"
            );
        }
    }
}
