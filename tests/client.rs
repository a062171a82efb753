//! The DingTalk client against scripted fake DingTalk servers on loopback: tokens, answer
//! classification, retries, throttles, the IP-ban pause, the call gate and the rate limit.

mod client_fake;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use client_fake::*;
use dingtalk_exporter::dingtalk::{
    Api, ApiFailure, Deferral, DeliveryApi, RecipientCounts, SendProgress, SendResult,
};

fn dingtalk_code<T: std::fmt::Debug>(outcome: Result<T, ApiFailure>) -> i64 {
    match outcome {
        Err(ApiFailure::DingTalk { code, .. }) => code,
        other => panic!("expected a DingTalk error, got {other:?}"),
    }
}

/// A successful poll sends the ids as JSON with the cached token and updates the app's gauges.
#[tokio::test]
async fn progress_is_polled_with_a_cached_token() {
    let fake = FakeDingTalk::with_token("tok-1", |_, _| progress_answer(40, 1)).await;
    let h = harness(&fake.url(), Options::default());

    for _ in 0..2 {
        let progress = h.client.send_progress(AGENT_ID, TASK_ID).await;
        assert_eq!(
            progress,
            Ok(SendProgress {
                percent: 40.0,
                status: 1
            })
        );
    }

    assert_eq!(fake.count(GETTOKEN), 1, "the token is cached");
    let token_request = &fake.requests(GETTOKEN)[0];
    assert_eq!(token_request.query.get("appkey").unwrap(), APP_KEY);
    assert_eq!(token_request.query.get("appsecret").unwrap(), APP_SECRET);
    let polls = fake.requests(PROGRESS);
    assert_eq!(polls.len(), 2);
    assert_eq!(polls[0].method, "POST");
    assert_eq!(polls[0].token(), Some("tok-1"));
    assert!(
        polls[0]
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(
        polls[0].json(),
        serde_json::json!({"agent_id": AGENT_ID, "task_id": TASK_ID})
    );

    assert_eq!(h.requests("getsendprogress"), 2);
    assert_eq!(h.requests("gettoken"), 1);
    assert_eq!(h.token_refreshes(), 1);
    assert_eq!(h.up(), 1);
    let now_s = dingtalk_exporter::clock::now_ms() as f64 / 1000.0;
    let expiry = h.value(
        "dingtalk_token_expiry_timestamp_seconds",
        &[("app", "hr-notices")],
    );
    assert!((expiry - (now_s + 7200.0)).abs() < 60.0, "expiry {expiry}");
    let last_success = h.value(
        "dingtalk_last_poll_success_timestamp_seconds",
        &[("app", "hr-notices")],
    );
    assert!(
        (now_s - last_success).abs() < 60.0,
        "last success {last_success}"
    );
    assert_eq!(h.gate.reserved(), 2, "every metered call is reserved");
}

/// Each token error style (40014, 42001, 88 with sub_code 40014) triggers one refresh and one retry.
#[tokio::test]
async fn rejected_token_is_refreshed_and_the_call_retried_once() {
    for rejection in [
        r#"{"errcode":40014,"errmsg":"invalid access_token"}"#,
        r#"{"errcode":42001,"errmsg":"access_token expired"}"#,
        r#"{"errcode":88,"sub_code":"40014","sub_msg":"invalid token","errmsg":"ding talk error[subcode=40014]"}"#,
    ] {
        let fake = FakeDingTalk::start(move |seen, n| match seen.path.as_str() {
            GETTOKEN => token_answer(if n == 0 { "tok-old" } else { "tok-new" }),
            _ if seen.token() == Some("tok-new") => progress_answer(100, 2),
            _ => json(rejection),
        })
        .await;
        let h = harness(&fake.url(), Options::default());

        let progress = h.client.send_progress(AGENT_ID, TASK_ID).await;

        assert_eq!(
            progress,
            Ok(SendProgress {
                percent: 100.0,
                status: 2
            }),
            "{rejection}"
        );
        assert_eq!(fake.count(GETTOKEN), 2, "{rejection}");
        let tokens: Vec<_> = fake
            .requests(PROGRESS)
            .iter()
            .map(|seen| seen.token().unwrap().to_string())
            .collect();
        assert_eq!(tokens, ["tok-old", "tok-new"], "{rejection}");
        assert_eq!(h.up(), 1);
    }
}

/// A token DingTalk keeps rejecting ends the call after one refresh, with dingtalk_up at 0.
#[tokio::test]
async fn persistent_token_rejection_gives_up_after_one_refresh() {
    let fake = FakeDingTalk::start(|seen, n| match seen.path.as_str() {
        GETTOKEN => token_answer(&format!("tok-{n}")),
        _ => error_answer(40001),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        40001
    );
    assert_eq!(fake.count(GETTOKEN), 2);
    assert_eq!(fake.count(PROGRESS), 2);
    assert_eq!(h.errors("getsendprogress", "40001"), 2);
    assert_eq!(h.up(), 0);
}

/// Wrong app credentials are a configuration error: no retry, no task call, dingtalk_up 0.
#[tokio::test]
async fn credential_errors_stop_at_gettoken() {
    let fake = FakeDingTalk::start(|seen, _| match seen.path.as_str() {
        GETTOKEN => error_answer(40096),
        _ => progress_answer(1, 1),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    let failure = h.client.send_progress(AGENT_ID, TASK_ID).await.unwrap_err();
    assert!(
        matches!(&failure, ApiFailure::NoToken(cause) if cause.dingtalk_code() == Some(40096)),
        "expected a gettoken failure, got {failure:?}"
    );
    assert_eq!(failure.failed_api(Api::GetSendProgress), Api::GetToken);
    assert_eq!(fake.count(GETTOKEN), 1);
    assert_eq!(fake.count(PROGRESS), 0);
    assert_eq!(h.token_refreshes(), 1);
    assert_eq!(h.token_refresh_failures(), 1);
    assert_eq!(h.errors("gettoken", "40096"), 1);
    assert_eq!(h.up(), 0);
    assert_eq!(h.gate.reserved(), 0);
}

/// `"errcode":"0"` and numbers sent as strings are a success.
#[tokio::test]
async fn string_errcode_and_string_numbers_are_accepted() {
    let fake = FakeDingTalk::with_token("tok", |_, _| {
        json(
            r#"{"errcode":"0","errmsg":"ok","progress":{"progress_in_percent":"55","status":"1"}}"#,
        )
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        h.client.send_progress(AGENT_ID, TASK_ID).await,
        Ok(SendProgress {
            percent: 55.0,
            status: 1
        })
    );
}

/// errcode 88 is counted and reported under its sub_code, or as 88 when that is not a number.
#[tokio::test]
async fn gateway_wrapper_is_classified_by_sub_code() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => json(r#"{"errcode":88,"sub_code":"40035","sub_msg":"invalid task","errmsg":"ding talk error"}"#),
        _ => json(r#"{"errcode":88,"sub_code":"isv.something","sub_msg":"x","errmsg":"y"}"#),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        40035
    );
    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        88
    );
    assert_eq!(h.errors("getsendprogress", "40035"), 1);
    assert_eq!(h.errors("getsendprogress", "88"), 1);
    assert_eq!(h.up(), 1, "DingTalk authenticated these calls");
}

/// An unknown DingTalk code is counted as `other`, keeping the label set bounded.
#[tokio::test]
async fn unknown_codes_are_counted_as_other() {
    let fake = FakeDingTalk::with_token("tok", |_, _| error_answer(71_234)).await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        71_234
    );
    assert_eq!(h.errors("getsendprogress", "other"), 1);
    assert!(!h.metrics_text().contains("71234"));
}

/// A task DingTalk does not know (40035) is reported at once, never retried.
#[tokio::test]
async fn invalid_task_is_not_retried() {
    let fake = FakeDingTalk::with_token("tok", |_, _| error_answer(40035)).await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        40035
    );
    assert_eq!(fake.count(PROGRESS), 1);
    assert_eq!(h.errors("getsendprogress", "40035"), 1);
    assert_eq!(h.up(), 1);
}

/// A QPS throttle answer (90018) pauses at least a second before the one retry.
#[tokio::test]
async fn throttle_pauses_at_least_a_second_then_retries() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => error_answer(90018),
        _ => progress_answer(10, 1),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert!(h.client.send_progress(AGENT_ID, TASK_ID).await.is_ok());
    let polls = fake.requests(PROGRESS);
    assert_eq!(polls.len(), 2);
    let pause = polls[1].at - polls[0].at;
    assert!(pause >= Duration::from_secs(1), "retried after {pause:?}");
    assert_eq!(h.errors("getsendprogress", "90018"), 1);
    assert_eq!(h.gate.reserved(), 2, "the retry was reserved too");
}

/// A throttle that persists is not hammered: one retry, then the failure is reported.
#[tokio::test]
async fn persistent_throttle_is_retried_only_once() {
    let fake = FakeDingTalk::with_token("tok", |_, _| error_answer(90002)).await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        90002
    );
    assert_eq!(fake.count(PROGRESS), 2);
}

/// "System busy" (-1) is retried with backoff, three attempts in all, each one reserved.
#[tokio::test]
async fn busy_answers_are_retried_at_most_three_times() {
    let fake = FakeDingTalk::with_token("tok", |_, _| error_answer(-1)).await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        -1
    );
    let polls = fake.requests(PROGRESS);
    assert_eq!(polls.len(), 3);
    assert!(
        polls[1].at - polls[0].at >= Duration::from_millis(100),
        "no backoff"
    );
    assert_eq!(h.errors("getsendprogress", "-1"), 3);
    assert_eq!(h.gate.reserved(), 3);
}

/// A system error followed by a success gives the success.
#[tokio::test]
async fn system_error_then_success() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => error_answer(500),
        _ => progress_answer(70, 1),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert!(h.client.send_progress(AGENT_ID, TASK_ID).await.is_ok());
    assert_eq!(fake.count(PROGRESS), 2);
    assert_eq!(h.errors("getsendprogress", "500"), 1);
}

/// 90020 tells the gate that the monthly quota is used up, and is not retried.
#[tokio::test]
async fn quota_exhausted_tells_the_gate() {
    let fake = FakeDingTalk::with_token("tok", |_, _| error_answer(90020)).await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        dingtalk_code(h.client.send_progress(AGENT_ID, TASK_ID).await),
        90020
    );
    assert_eq!(fake.count(PROGRESS), 1);
    assert_eq!(h.gate.exhausted(), 1);
    assert_eq!(h.errors("getsendprogress", "90020"), 1);
}

/// A gate that refuses holds the call back unsent and its deferral comes back unchanged.
#[tokio::test]
async fn gate_refusal_sends_nothing() {
    let fake = FakeDingTalk::with_token("tok", |_, _| progress_answer(1, 1)).await;
    let h = harness(&fake.url(), Options::default());
    *h.gate.refuse_until_ms.lock().unwrap() = Some(4_102_444_800_000);

    assert_eq!(
        h.client.send_progress(AGENT_ID, TASK_ID).await,
        Err(ApiFailure::Deferred {
            until_ms: 4_102_444_800_000,
            reason: Deferral::MonthlyBudget
        })
    );
    assert_eq!(
        h.client.send_result(AGENT_ID, TASK_ID).await,
        Err(ApiFailure::Deferred {
            until_ms: 4_102_444_800_000,
            reason: Deferral::MonthlyBudget
        })
    );
    assert_eq!(fake.count(PROGRESS) + fake.count(RESULT), 0);
    assert_eq!(h.requests("getsendprogress"), 0);
    assert!(
        !h.metrics_text().contains("errcode=\""),
        "a deferral is no error"
    );
}

/// The punish answer pauses every call of the client for `wait` minutes, sending nothing.
#[tokio::test]
async fn punish_answer_pauses_all_calls() {
    let fake = FakeDingTalk::with_token("tok", |_, _| {
        json(r#"{"status":1111,"wait":2,"source":"x5","punish":"deny","uuid":"u-1"}"#)
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        h.client.send_progress(AGENT_ID, TASK_ID).await,
        Err(ApiFailure::IpBanned {
            retry_after_ms: 120_000
        })
    );
    let before_ms = dingtalk_exporter::clock::now_ms();
    for outcome in [
        h.client.send_progress(AGENT_ID, TASK_ID).await.map(|_| ()),
        h.client.send_result(AGENT_ID, TASK_ID).await.map(|_| ()),
    ] {
        match outcome {
            Err(ApiFailure::Deferred {
                until_ms,
                reason: Deferral::IpBan,
            }) => assert!(until_ms > before_ms + 115_000 && until_ms <= before_ms + 120_000),
            other => panic!("expected an IP-ban deferral, got {other:?}"),
        }
    }
    assert_eq!(fake.count(PROGRESS) + fake.count(RESULT), 1);
    assert_eq!(h.errors("getsendprogress", "ip_banned"), 1);
    assert_eq!(h.gate.reserved(), 1, "paused calls reserve nothing");
    assert_eq!(h.up(), 0);
}

/// The pause is capped (by --poll.max-interval), and calls go out again once it is over.
#[tokio::test]
async fn ip_ban_pause_is_capped_and_ends() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => Reply::Raw(
            200,
            "text/html",
            b"<html><body><script>window.location.href='/_____tmd_____/punish?x5secdata=abc'</script></body></html>".to_vec(),
        ),
        _ => progress_answer(20, 1),
    })
    .await;
    let h = harness(
        &fake.url(),
        Options {
            ip_ban_cap: Duration::from_millis(300),
            ..Options::default()
        },
    );

    assert_eq!(
        h.client.send_progress(AGENT_ID, TASK_ID).await,
        Err(ApiFailure::IpBanned {
            retry_after_ms: 300
        })
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let progress = loop {
        match h.client.send_progress(AGENT_ID, TASK_ID).await {
            Err(ApiFailure::Deferred {
                reason: Deferral::IpBan,
                ..
            }) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(10)).await,
            other => break other,
        }
    };
    assert!(progress.is_ok(), "{progress:?}");
    assert_eq!(fake.count(PROGRESS), 2);
}

/// A gateway's HTML 502 is an `http` failure, not retried, and marks DingTalk down.
#[tokio::test]
async fn html_502_is_an_http_failure() {
    let fake = FakeDingTalk::with_token("tok", |_, _| {
        Reply::Raw(
            502,
            "text/html",
            b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>".to_vec(),
        )
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        h.client.send_progress(AGENT_ID, TASK_ID).await,
        Err(ApiFailure::Http(502))
    );
    assert_eq!(fake.count(PROGRESS), 1);
    assert_eq!(h.errors("getsendprogress", "http"), 1);
    assert_eq!(h.up(), 0);
}

/// Truncated JSON, an answer cut short mid-body and an oversized answer are `decode` failures.
#[tokio::test]
async fn broken_answers_are_decode_failures() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => json(r#"{"errcode":0,"errmsg":"ok","progress":{"progress_in"#),
        1 => Reply::CutShort {
            declared: 200,
            body: br#"{"errcode":0,"progress":"#.to_vec(),
        },
        _ => Reply::Raw(200, "application/json", vec![b' '; 2 * 1024 * 1024]),
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    for _ in 0..3 {
        let outcome = h.client.send_progress(AGENT_ID, TASK_ID).await;
        assert!(matches!(outcome, Err(ApiFailure::Decode(_))), "{outcome:?}");
    }
    assert_eq!(fake.count(PROGRESS), 3, "decode failures are not retried");
    assert_eq!(h.errors("getsendprogress", "decode"), 3);
    assert_eq!(h.up(), 0);
}

/// A dropped connection is a `transport` failure, retried up to three attempts.
#[tokio::test]
async fn dropped_connection_is_a_transport_failure() {
    let fake = FakeDingTalk::with_token("tok", |_, _| Reply::Drop).await;
    let h = harness(&fake.url(), Options::default());

    let outcome = h.client.send_progress(AGENT_ID, TASK_ID).await;
    assert!(
        matches!(outcome, Err(ApiFailure::Transport(_))),
        "{outcome:?}"
    );
    assert_eq!(fake.count(PROGRESS), 3);
    assert_eq!(h.errors("getsendprogress", "transport"), 3);
    assert_eq!(h.up(), 0);
}

/// A server slower than --dingtalk.timeout gives a `transport` failure that says it timed out.
#[tokio::test]
async fn slow_answer_times_out() {
    let fake = FakeDingTalk::with_token("tok", |_, n| match n {
        0 => Reply::Hang,
        _ => progress_answer(5, 1),
    })
    .await;
    let h = harness(
        &fake.url(),
        Options {
            timeout: Duration::from_millis(300),
            ..Options::default()
        },
    );

    // The first attempt times out; the retry succeeds.
    assert!(h.client.send_progress(AGENT_ID, TASK_ID).await.is_ok());
    assert_eq!(h.errors("getsendprogress", "transport"), 1);

    let fake = FakeDingTalk::with_token("tok", |_, _| Reply::Hang).await;
    let h = harness(
        &fake.url(),
        Options {
            timeout: Duration::from_millis(200),
            ..Options::default()
        },
    );
    match h.client.send_progress(AGENT_ID, TASK_ID).await {
        Err(ApiFailure::Transport(text)) => assert!(text.contains("timed out"), "{text}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
}

/// A refused connection is a `transport` failure whose text names neither token nor secret.
#[tokio::test]
async fn refused_connection_is_a_transport_failure() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let h = harness(&url, Options::default());

    match h.client.send_progress(AGENT_ID, TASK_ID).await {
        Err(ApiFailure::NoToken(cause)) if matches!(*cause, ApiFailure::Transport(_)) => {
            let text = cause.to_string();
            assert!(text.contains("Connection refused"), "{text}");
            assert!(!text.contains(APP_SECRET), "{text}");
            assert!(!text.contains("appsecret="), "{text}");
        }
        other => panic!("expected a transport failure of gettoken, got {other:?}"),
    }
    assert_eq!(h.errors("gettoken", "transport"), 3);
    assert_eq!(h.token_refresh_failures(), 1);
}

/// Many concurrent calls without a token cause exactly one gettoken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_share_one_token_fetch() {
    let fake = FakeDingTalk::start(|seen, _| match seen.path.as_str() {
        GETTOKEN => Reply::Delayed(Duration::from_millis(200), Box::new(token_answer("tok"))),
        _ => progress_answer(50, 1),
    })
    .await;
    let h = Arc::new(harness(&fake.url(), Options::default()));

    let calls: Vec<_> = (0..20)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.client.send_progress(AGENT_ID, TASK_ID + i).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(fake.count(GETTOKEN), 1);
    assert_eq!(fake.count(PROGRESS), 20);
}

/// A burst of concurrent calls never puts more than --dingtalk.max-qps calls in any 1 s window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_holds_in_every_second_under_a_burst() {
    let max_qps = 5;
    let fake = FakeDingTalk::with_token("tok", |_, _| progress_answer(50, 1)).await;
    let h = Arc::new(harness(
        &fake.url(),
        Options {
            max_qps,
            ..Options::default()
        },
    ));

    let calls: Vec<_> = (0..12)
        .map(|i| {
            let h = h.clone();
            tokio::spawn(async move { h.client.send_progress(AGENT_ID, TASK_ID + i).await })
        })
        .collect();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }

    let arrivals: Vec<Instant> = fake.requests(PROGRESS).iter().map(|s| s.at).collect();
    assert_eq!(arrivals.len(), 12);
    for first in &arrivals {
        let in_window = arrivals
            .iter()
            .filter(|at| **at >= *first && **at - *first <= Duration::from_secs(1))
            .count();
        assert!(
            in_window <= max_qps as usize,
            "{in_window} calls within one second"
        );
    }
}

/// getsendresult is posted to its own endpoint and its lists become recipient counts.
#[tokio::test]
async fn send_result_counts_recipients() {
    let fake = FakeDingTalk::with_token("tok", |_, _| {
        json(
            r#"{"errcode":0,"errmsg":"ok","send_result":{
                "read_user_id_list":["u1","u2","u3"],
                "unread_user_id_list":["u4"],
                "failed_user_id_list":["u5"],
                "forbidden_user_id_list":["u6"],
                "forbidden_list":[{"code":"143106","count":1,"userid":"u7"}],
                "invalid_user_id_list":["u8"],
                "invalid_dept_id_list":[42]
            },"request_id":"r"}"#,
        )
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        h.client.send_result(AGENT_ID, TASK_ID).await,
        Ok(SendResult::Recipients(RecipientCounts {
            read: 3,
            unread: 1,
            failed: 1,
            forbidden: 2,
            invalid: 2
        }))
    );
    let requests = fake.requests(RESULT);
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].json()["task_id"], TASK_ID);
    assert_eq!(h.requests("getsendresult"), 1);
    assert_eq!(h.gate.reserved(), 1);
}

/// A getsendresult refusal of a task with more than 100 recipients is an outcome, sent
/// once and not counted as an API error.
#[tokio::test]
async fn send_result_refusal_is_too_many_recipients_not_an_error() {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let fake = FakeDingTalk::with_token("tok", move |_, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        json(r#"{"errcode":88,"sub_code":"40035","sub_msg":"too many receivers","errmsg":"x"}"#)
    })
    .await;
    let h = harness(&fake.url(), Options::default());

    assert_eq!(
        h.client.send_result(AGENT_ID, TASK_ID).await,
        Ok(SendResult::TooManyRecipients)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let metrics = h.metrics_text();
    assert!(
        metrics.contains("dingtalk_api_requests_total{api=\"getsendresult\"} 1"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("dingtalk_api_errors_total{api=\"getsendresult\""),
        "{metrics}"
    );
}

/// An API URL with a path prefix (a reverse proxy, say) keeps its prefix.
#[tokio::test]
async fn api_url_path_prefix_is_kept() {
    let fake = FakeDingTalk::start(|seen, _| match seen.path.as_str() {
        "/dingtalk/gettoken" => token_answer("tok"),
        "/dingtalk/topapi/message/corpconversation/getsendprogress" => progress_answer(3, 1),
        _ => Reply::Raw(404, "text/plain", b"not found".to_vec()),
    })
    .await;
    let h = harness(&format!("{}/dingtalk/", fake.url()), Options::default());

    assert!(h.client.send_progress(AGENT_ID, TASK_ID).await.is_ok());
}

/// Checking credentials at start fetches a token (unmetered) and sets dingtalk_up either way.
#[tokio::test]
async fn authenticate_checks_credentials_without_metered_calls() {
    let good = FakeDingTalk::with_token("tok", |_, _| progress_answer(1, 1)).await;
    let h = harness(&good.url(), Options::default());
    assert_eq!(h.token_refreshes(), 0);
    assert_eq!(h.client.authenticate().await, Ok(()));
    assert_eq!(h.up(), 1);
    assert_eq!(h.gate.reserved(), 0);
    assert_eq!(good.count(PROGRESS), 0);

    let bad = FakeDingTalk::start(|_, _| error_answer(40089)).await;
    let h = harness(&bad.url(), Options::default());
    assert_eq!(dingtalk_code(h.client.authenticate().await), 40089);
    assert_eq!(h.up(), 0);
    assert_eq!(h.token_refresh_failures(), 1);
}
