//! The DingTalk simulator over real HTTP: what a client of DingTalk's API sees from it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use dingtalk_exporter::clock::quota_month_end_ms;
use dingtalk_exporter::simulator::{
    Behaviour, DEMO_APP_KEY, DEMO_APP_SECRET, ExpiryStyle, FaultConfig, FaultKind, SimApp,
    SimClock, SimConfig, SimStats, Simulator, TaskSpec, Timeline,
};
use serde_json::{Value, json};

const AGENT: i64 = 2_839_445_214;
/// 2026-03-10T00:00:00Z: any fixed moment will do for the manual clock.
const T0: i64 = 1_773_100_800_000;

/// A clock the test moves by hand.
#[derive(Clone)]
struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    fn new() -> Self {
        ManualClock(Arc::new(AtomicI64::new(T0)))
    }

    fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }

    fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    fn sim_clock(&self) -> SimClock {
        let now = self.0.clone();
        SimClock::from_fn(move || now.load(Ordering::SeqCst))
    }
}

/// A DingTalk API client as plain as possible, so the tests see the wire format.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    fn new(sim: &Simulator) -> Self {
        Client {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base: sim.url().to_string(),
        }
    }

    async fn get_token_with(&self, key: &str, secret: &str) -> Value {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("appkey", key)
            .append_pair("appsecret", secret)
            .finish();
        let url = format!("{}/gettoken?{query}", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A fresh token of the demo app.
    async fn token(&self) -> String {
        let answer = self.get_token_with(DEMO_APP_KEY, DEMO_APP_SECRET).await;
        assert_eq!(answer["errcode"], 0, "{answer}");
        answer["access_token"].as_str().unwrap().to_string()
    }

    fn api_url(&self, api: &str, token: &str) -> String {
        format!(
            "{}/topapi/message/corpconversation/{api}?access_token={token}",
            self.base
        )
    }

    async fn send(
        &self,
        api: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.api_url(api, token))
            .json(body)
            .send()
            .await
    }

    async fn call(&self, api: &str, token: &str, body: Value) -> Value {
        let response = self.send(api, token, &body).await.unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    async fn progress(&self, token: &str, agent_id: i64, task_id: i64) -> Value {
        self.call(
            "getsendprogress",
            token,
            json!({"agent_id": agent_id, "task_id": task_id}),
        )
        .await
    }

    async fn result(&self, token: &str, agent_id: i64, task_id: i64) -> Value {
        self.call(
            "getsendresult",
            token,
            json!({"agent_id": agent_id, "task_id": task_id}),
        )
        .await
    }

    async fn control(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/_sim/{route}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }
}

async fn start(config: SimConfig) -> (Simulator, Client) {
    let sim = Simulator::start(config).await.unwrap();
    let client = Client::new(&sim);
    (sim, client)
}

/// A simulator on a manual clock, with the given rules.
async fn start_at(clock: &ManualClock, behaviour: Behaviour) -> (Simulator, Client) {
    start(SimConfig {
        clock: clock.sim_clock(),
        behaviour,
        ..SimConfig::default()
    })
    .await
}

fn progress_of(answer: &Value) -> (f64, i64) {
    let progress = &answer["progress"];
    (
        progress["progress_in_percent"].as_f64().unwrap(),
        progress["status"].as_i64().unwrap(),
    )
}

fn list_len(result: &Value, list: &str) -> usize {
    result["send_result"][list].as_array().map_or(0, Vec::len)
}

/// gettoken hands out one token per app, the same one again while valid, and refuses bad credentials.
#[tokio::test]
async fn tokens_are_reused_while_valid() {
    let (sim, client) = start(SimConfig {
        apps: vec![SimApp::demo(), SimApp::new("other", "other-secret")],
        ..SimConfig::default()
    })
    .await;
    let first = client.get_token_with(DEMO_APP_KEY, DEMO_APP_SECRET).await;
    assert_eq!(first["errcode"], 0);
    assert_eq!(first["errmsg"], "ok");
    assert_eq!(first["expires_in"], 7200);
    let again = client.get_token_with(DEMO_APP_KEY, DEMO_APP_SECRET).await;
    assert_eq!(again["access_token"], first["access_token"]);
    let other = client.get_token_with("other", "other-secret").await;
    assert_ne!(other["access_token"], first["access_token"]);

    let wrong = client.get_token_with(DEMO_APP_KEY, "not-the-secret").await;
    assert_eq!(wrong["errcode"], 40096);
    assert!(wrong.get("access_token").is_none());
    let wrong_app = client.get_token_with("other", DEMO_APP_SECRET).await;
    assert_eq!(wrong_app["errcode"], 40096);

    let issued = sim.issued_tokens();
    assert_eq!(issued.len(), 2);
    assert!(issued.contains(&first["access_token"].as_str().unwrap().to_string()));
    assert_eq!(sim.stats().tokens_issued, 2);
    assert_eq!(sim.stats().calls.gettoken, 5);
}

/// In the flat style an expired token gets 42001, an unknown one 40014, and a new token works.
#[tokio::test]
async fn expired_tokens_get_flat_errcodes() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(
        &clock,
        Behaviour {
            token_lifetime_ms: 60_000,
            expiry_style: ExpiryStyle::Flat,
            ..Behaviour::default()
        },
    )
    .await;
    let task_id = sim.add_task(AGENT, Timeline::slow());
    let token = client.token().await;
    clock.advance(50_000);
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    // Asking again extends the same token for another full lifetime.
    assert_eq!(client.token().await, token);
    clock.advance(59_999);
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    clock.advance(1);
    assert_eq!(
        client.progress(&token, AGENT, task_id).await["errcode"],
        42001
    );
    let unknown = client.progress("0123456789abcdef", AGENT, task_id).await;
    assert_eq!(unknown["errcode"], 40014);

    let fresh = client.token().await;
    assert_ne!(fresh, token);
    assert_eq!(client.progress(&fresh, AGENT, task_id).await["errcode"], 0);
    assert_eq!(sim.stats().token_rejections, 2);
}

/// In the wrapped style expired and unknown tokens get 88 with sub_code 40014; a blank one 88/40000.
#[tokio::test]
async fn expired_tokens_get_wrapped_errcodes() {
    let (sim, client) = start(SimConfig::default()).await;
    let task_id = sim.add_task(AGENT, Timeline::slow());
    let token = client.token().await;
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    assert_eq!(sim.expire_tokens(), 1);

    for stale in [token.as_str(), "never-issued"] {
        let answer = client.progress(stale, AGENT, task_id).await;
        assert_eq!(answer["errcode"], 88, "{answer}");
        assert_eq!(answer["sub_code"], "40014");
        assert!(answer["sub_msg"].as_str().is_some());
        let errmsg = answer["errmsg"].as_str().unwrap();
        assert!(
            errmsg.starts_with("ding talk error[subcode=40014,"),
            "{errmsg}"
        );
        assert!(answer["request_id"].as_str().is_some());
    }
    let blank = client.progress("", AGENT, task_id).await;
    assert_eq!(
        (blank["errcode"].clone(), blank["sub_code"].clone()),
        (json!(88), json!("40000"))
    );

    let fresh = client.token().await;
    assert_ne!(fresh, token, "expired tokens are not handed out again");
    assert_eq!(client.progress(&fresh, AGENT, task_id).await["errcode"], 0);
    assert_eq!(sim.stats().errcodes.get(&88), Some(&3));
}

/// A task that does not exist, belongs to another agent or is past the query window gets 40035.
#[tokio::test]
async fn unknown_and_old_tasks_get_40035() {
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());
    let old_task = sim
        .add_task_spec(TaskSpec {
            agent_id: AGENT,
            task_id: Some(77),
            timeline: Timeline::fast(),
            age_ms: 24 * 3_600_000 + 1,
        })
        .unwrap();
    assert_eq!(old_task, 77);

    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    for (agent_id, task_id) in [
        (AGENT, task_id + 1),
        (AGENT + 1, task_id),
        (AGENT, old_task),
    ] {
        let answer = client.progress(&token, agent_id, task_id).await;
        assert_eq!(answer["errcode"], 40035, "{agent_id}/{task_id}: {answer}");
        let result = client.result(&token, agent_id, task_id).await;
        assert_eq!(result["errcode"], 40035);
    }
    let missing_ids = client.call("getsendprogress", &token, json!({})).await;
    assert_eq!(missing_ids["errcode"], 40035);
}

/// getsendprogress answers the scripted timeline: delayed start, linear progress, status 2 at 100.
#[tokio::test]
async fn progress_follows_the_timeline() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(&clock, Behaviour::default()).await;
    let token = client.token().await;
    let delayed = sim.add_task(
        AGENT,
        Timeline {
            start_delay_ms: 1_000,
            duration_ms: 4_000,
            ..Timeline::default()
        },
    );
    let stalled = sim.add_task(AGENT, Timeline::stalled_at(30.0));
    let never = sim.add_task(AGENT, Timeline::never_starting());

    let mut seen = Vec::new();
    for step_ms in [0, 999, 1, 1_000, 1_999, 1, 1_000_000] {
        clock.advance(step_ms);
        seen.push(progress_of(&client.progress(&token, AGENT, delayed).await));
    }
    assert_eq!(
        seen,
        [
            (0.0, 0),
            (0.0, 0),
            (0.0, 1),
            (25.0, 1),
            (74.0, 1),
            (75.0, 1),
            (100.0, 2)
        ]
    );
    assert_eq!(
        progress_of(&client.progress(&token, AGENT, stalled).await),
        (30.0, 1)
    );
    assert_eq!(
        progress_of(&client.progress(&token, AGENT, never).await),
        (0.0, 0)
    );
    let answer = client.progress(&token, AGENT, delayed).await;
    assert_eq!(
        answer["progress"]["progress_in_percent"],
        json!(100),
        "a whole number"
    );
    assert_eq!(answer["errmsg"], "ok");
    assert!(
        answer["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
}

/// On the wall clock a fast task reaches status 2 by itself.
#[tokio::test]
async fn fast_task_finishes_on_the_wall_clock() {
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;
    let task_id = sim.add_task(
        AGENT,
        Timeline {
            duration_ms: 300,
            ..Timeline::default()
        },
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut last = (0.0, 0);
    while last != (100.0, 2) {
        assert!(tokio::time::Instant::now() < deadline, "still {last:?}");
        let now = progress_of(&client.progress(&token, AGENT, task_id).await);
        assert!(
            now.0 >= last.0 && now.1 >= last.1,
            "went back from {last:?} to {now:?}"
        );
        last = now;
        // Pacing, to stay under the QPS limit; the loop ends on the condition.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    assert_eq!(sim.stats().qps_rejections, 0);
}

/// Past the QPS limit calls get 90018, are counted, and spend nothing of the quota; each API has its own window.
#[tokio::test]
async fn qps_limit_answers_90018() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(
        &clock,
        Behaviour {
            qps_limit: 3,
            ..Behaviour::default()
        },
    )
    .await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());
    let mut errcodes = Vec::new();
    for _ in 0..5 {
        errcodes.push(client.progress(&token, AGENT, task_id).await["errcode"].clone());
    }
    assert_eq!(
        errcodes,
        [json!(0), json!(0), json!(0), json!(90018), json!(90018)]
    );
    assert_eq!(client.result(&token, AGENT, task_id).await["errcode"], 0);

    clock.advance(999);
    assert_eq!(
        client.progress(&token, AGENT, task_id).await["errcode"],
        90018
    );
    clock.advance(1);
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);

    let stats = sim.stats();
    assert_eq!(stats.qps_rejections, 3);
    assert_eq!(stats.metered_calls, 5);
    assert_eq!(stats.calls.getsendprogress, 7);
    assert_eq!(stats.errcodes.get(&90018), Some(&3));
}

/// Past the monthly quota metered calls get 90020 until the month turns; gettoken stays exempt.
#[tokio::test]
async fn monthly_quota_answers_90020() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(
        &clock,
        Behaviour {
            monthly_quota: 2,
            qps_limit: 1,
            query_window_ms: 40 * 24 * 3_600_000,
            ..Behaviour::default()
        },
    )
    .await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    // Refused by the QPS limit: not counted toward the quota.
    assert_eq!(
        client.progress(&token, AGENT, task_id).await["errcode"],
        90018
    );
    clock.advance(1_000);
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    clock.advance(1_000);
    let over = client.progress(&token, AGENT, task_id).await;
    assert_eq!(over["errcode"], 90020, "{over}");
    let send = client
        .call(
            "asyncsend_v2",
            &token,
            json!({"agent_id": AGENT, "userid_list": "a", "msg": {"msgtype": "text"}}),
        )
        .await;
    assert_eq!(send["errcode"], 90020);
    assert_eq!(client.token().await, token, "gettoken is not metered");

    let stats = sim.stats();
    assert_eq!((stats.metered_calls, stats.month_calls), (2, 2));
    assert_eq!(stats.quota_rejections, 2);

    clock.set(quota_month_end_ms(T0));
    let token = client.token().await;
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    assert_eq!(sim.stats().month_calls, 1);
}

/// getsendresult lists match the script at the end and the delivered share while running.
#[tokio::test]
async fn send_result_matches_the_script() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(&clock, Behaviour::default()).await;
    let token = client.token().await;
    let timeline = Timeline {
        duration_ms: 10_000,
        recipients: 20,
        read: 9,
        failed: 3,
        forbidden: 3,
        invalid: 2,
        invalid_depts: 1,
        seed: 5,
        ..Timeline::default()
    };
    let task_id = sim.add_task(AGENT, timeline.clone());
    let total = |result: &Value| {
        [
            "read_user_id_list",
            "unread_user_id_list",
            "failed_user_id_list",
            "forbidden_user_id_list",
            "invalid_user_id_list",
            "forbidden_list",
        ]
        .iter()
        .map(|list| list_len(result, list))
        .sum::<usize>()
    };

    let at_start = client.result(&token, AGENT, task_id).await;
    assert_eq!(at_start["errcode"], 0);
    assert_eq!(total(&at_start), 0);
    assert!(
        at_start["send_result"].get("read_user_id_list").is_none(),
        "empty lists are left out"
    );

    clock.advance(5_000);
    let halfway = client.result(&token, AGENT, task_id).await;
    assert_eq!(total(&halfway), 10);

    clock.advance(5_000);
    let done = client.result(&token, AGENT, task_id).await;
    assert_eq!(list_len(&done, "read_user_id_list"), 9);
    assert_eq!(list_len(&done, "unread_user_id_list"), 3);
    assert_eq!(list_len(&done, "failed_user_id_list"), 3);
    assert_eq!(list_len(&done, "invalid_user_id_list"), 2);
    assert_eq!(
        list_len(&done, "forbidden_user_id_list") + list_len(&done, "forbidden_list"),
        3
    );
    assert_eq!(
        done["send_result"]["invalid_dept_id_list"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert!(done["send_result"]["invalid_dept_id_list"][0].is_i64());
    let reason = &done["send_result"]["forbidden_list"][0];
    assert!(
        ["143105", "143106"].contains(&reason["code"].as_str().unwrap()),
        "{reason}"
    );
    assert!(reason["count"].is_i64() && reason["userid"].is_string());
    assert_eq!(total(&done), 20);

    let large = sim.add_task(AGENT, Timeline::fast().with_recipients(101));
    let refused = client.result(&token, AGENT, large).await;
    assert_eq!(refused["errcode"], 40035, "{refused}");
    let exactly_100 = sim.add_task(AGENT, Timeline::fast().with_recipients(100));
    assert_eq!(
        client.result(&token, AGENT, exactly_100).await["errcode"],
        0
    );
}

/// asyncsend_v2 creates a task with a large task_id whose results list the users it was sent to.
#[tokio::test]
async fn send_creates_a_task_for_its_recipients() {
    let clock = ManualClock::new();
    let (sim, client) = start_at(&clock, Behaviour::default()).await;
    let token = client.token().await;
    let sent = client
        .call(
            "asyncsend_v2",
            &token,
            json!({"agent_id": AGENT, "userid_list": "alice, bob,carol", "to_all_user": false,
                   "msg": {"msgtype": "text", "text": {"content": "hello"}}}),
        )
        .await;
    assert_eq!(sent["errcode"], 0, "{sent}");
    let task_id = sent["task_id"].as_i64().unwrap();
    assert!(
        task_id > i64::from(u32::MAX),
        "task ids exceed 32 bits like DingTalk's"
    );
    assert_eq!(
        progress_of(&client.progress(&token, AGENT, task_id).await).1,
        0
    );

    clock.advance(60_000);
    assert_eq!(
        progress_of(&client.progress(&token, AGENT, task_id).await),
        (100.0, 2)
    );
    let result = client.result(&token, AGENT, task_id).await;
    let mut users: Vec<String> = result["send_result"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| name.ends_with("user_id_list"))
        .flat_map(|(_, list)| list.as_array().unwrap().iter())
        .map(|user| user.as_str().unwrap().to_string())
        .collect();
    users.sort();
    assert_eq!(users, ["alice", "bob", "carol"]);

    let nobody = client
        .call(
            "asyncsend_v2",
            &token,
            json!({"agent_id": AGENT, "msg": {"msgtype": "text"}}),
        )
        .await;
    assert_eq!(nobody["errcode"], 40035);
    assert_eq!(sim.stats().calls.asyncsend_v2, 2);
}

/// Form-encoded bodies are read like JSON ones.
#[tokio::test]
async fn form_bodies_are_accepted() {
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());
    let answer: Value = client
        .http
        .post(client.api_url("getsendprogress", &token))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("agent_id={AGENT}&task_id={task_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["errcode"], 0, "{answer}");
}

/// A path DingTalk does not have gets errcode 22.
#[tokio::test]
async fn unknown_paths_get_errcode_22() {
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;
    let answer = client.call("nosuchapi", &token, json!({})).await;
    assert_eq!(answer["errcode"], 22);
    let root: Value = client
        .http
        .get(&client.base)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(root["errcode"], 22);
    assert_eq!(sim.stats().calls.unknown, 2);
}

/// With quirks on, success answers carry `"errcode":"0"`, numbers as strings and no request_id; errors stay numeric.
#[tokio::test]
async fn quirks_stringify_success_answers() {
    let (sim, client) = start(SimConfig {
        behaviour: Behaviour {
            quirks: 1.0,
            ..Behaviour::default()
        },
        ..SimConfig::default()
    })
    .await;
    let token = client.get_token_with(DEMO_APP_KEY, DEMO_APP_SECRET).await;
    assert_eq!(token["errcode"], "0");
    assert_eq!(token["expires_in"], "7200");
    let token = token["access_token"].as_str().unwrap();
    let task_id = sim.add_task(AGENT, Timeline::fast());
    let answer = client.progress(token, AGENT, task_id).await;
    assert_eq!(answer["errcode"], "0");
    assert!(
        answer["progress"]["progress_in_percent"].is_string(),
        "{answer}"
    );
    assert!(answer["progress"]["status"].is_string());
    assert!(answer.get("request_id").is_none());
    let error = client.progress(token, AGENT, task_id + 1).await;
    assert_eq!(error["errcode"], 40035);
}

/// Each fault kind reaches the client as described, is counted, and `limit` ends it.
#[tokio::test]
async fn each_fault_kind_shows_up_as_described() {
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());
    let body = json!({"agent_id": AGENT, "task_id": task_id});
    let once = |kind| FaultConfig {
        limit: Some(1),
        slow_delay_ms: 5_000,
        ..FaultConfig::always(kind)
    };

    sim.set_faults(once(FaultKind::Html502)).unwrap();
    let response = client.send("getsendprogress", &token, &body).await.unwrap();
    assert_eq!(response.status(), 502);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(response.text().await.unwrap().contains("502 Bad Gateway"));

    sim.set_faults(once(FaultKind::Punish)).unwrap();
    let punish: Value = client
        .send("getsendprogress", &token, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(punish["status"], 1111);
    assert_eq!(punish["punish"], "deny");
    assert_eq!(punish["source"], "x5");
    assert_eq!(punish["wait"], 5);
    assert!(punish.get("errcode").is_none());

    sim.set_faults(once(FaultKind::PunishHtml)).unwrap();
    let response = client.send("getsendprogress", &token, &body).await.unwrap();
    assert_eq!(response.status(), 405);
    assert!(response.text().await.unwrap().contains("punish"));

    sim.set_faults(once(FaultKind::Busy)).unwrap();
    let busy: Value = client
        .send("getsendprogress", &token, &body)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(busy["errcode"], -1);

    sim.set_faults(once(FaultKind::Truncated)).unwrap();
    let response = client.send("getsendprogress", &token, &body).await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with('{') && serde_json::from_str::<Value>(&text).is_err(),
        "{text}"
    );

    sim.set_faults(once(FaultKind::Drop)).unwrap();
    let dropped = client
        .send("getsendprogress", &token, &body)
        .await
        .unwrap_err();
    assert!(!dropped.is_timeout(), "{dropped}");

    sim.set_faults(once(FaultKind::Slow)).unwrap();
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let slow = impatient
        .post(client.api_url("getsendprogress", &token))
        .json(&body)
        .send()
        .await
        .unwrap_err();
    assert!(slow.is_timeout(), "{slow}");

    // Every fault was limited to one: the next call is answered normally.
    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
    let faults = sim.stats().faults;
    for kind in FaultKind::ALL {
        assert_eq!(faults.of(kind), 1, "{kind:?}");
    }
    assert_eq!(faults.total(), 7);
}

/// Faults drawn with the same seed repeat exactly; switched off, calls converge to success.
#[tokio::test]
async fn seeded_faults_repeat_and_switch_off() {
    async fn outcomes(seed: u64) -> (Vec<u16>, SimStats) {
        let (sim, client) = start(SimConfig {
            seed,
            behaviour: Behaviour {
                qps_limit: 0,
                ..Behaviour::default()
            },
            faults: FaultConfig {
                probability: 0.5,
                kinds: vec![FaultKind::Html502, FaultKind::PunishHtml, FaultKind::Busy],
                ..FaultConfig::default()
            },
            ..SimConfig::default()
        })
        .await;
        let mut statuses = Vec::new();
        for _ in 0..30 {
            let response = client
                .http
                .get(format!("{}/gettoken", client.base))
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
        }
        sim.set_faults(FaultConfig::off()).unwrap();
        for _ in 0..5 {
            assert!(client.get_token_with(DEMO_APP_KEY, DEMO_APP_SECRET).await["errcode"] == 0);
        }
        (statuses, sim.stats())
    }
    let (first, stats) = outcomes(42).await;
    let (again, _) = outcomes(42).await;
    assert_eq!(first, again);
    assert!(
        first.contains(&502) && first.contains(&405) && first.contains(&200),
        "{first:?}"
    );
    assert!(stats.faults.total() > 0 && stats.faults.total() < 30);
    assert_eq!(
        stats.faults.drop + stats.faults.slow + stats.faults.truncated,
        0
    );
}

/// The control API scripts tasks, faults, rules and tokens of a running simulator.
#[tokio::test]
async fn control_api_scripts_the_simulator() {
    use reqwest::Method;
    let (sim, client) = start(SimConfig::default()).await;
    let token = client.token().await;

    let (status, created) = client
        .control(
            Method::POST,
            "tasks",
            Some(json!({"agent_id": AGENT, "task_id": 555, "timeline": {"stall_at_percent": 0}})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created, json!({"agent_id": AGENT, "task_id": 555}));
    assert_eq!(
        progress_of(&client.progress(&token, AGENT, 555).await),
        (0.0, 1)
    );

    let (status, batch) = client
        .control(
            Method::POST,
            "tasks",
            Some(json!([{"agent_id": 1}, {"agent_id": 2, "timeline": {"duration_ms": 0}}])),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(batch.as_array().unwrap().len(), 2);
    let (status, refused) = client
        .control(
            Method::POST,
            "tasks",
            Some(
                json!([{"agent_id": 1}, {"agent_id": 1, "timeline": {"recipients": 1, "read": 2}}]),
            ),
        )
        .await;
    assert_eq!(status, 400);
    assert!(refused["error"].as_str().unwrap().contains("exceeds"));
    let (_, tasks) = client.control(Method::GET, "tasks", None).await;
    assert_eq!(
        tasks.as_array().unwrap().len(),
        3,
        "a refused batch adds nothing"
    );
    assert_eq!(sim.tasks().len(), 3);

    let (status, faults) = client
        .control(
            Method::PATCH,
            "faults",
            Some(json!({"probability": 1, "kinds": ["busy"], "limit": 1})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        faults["slow_delay_ms"], 15_000,
        "PATCH keeps unnamed fields"
    );
    assert_eq!(client.progress(&token, AGENT, 555).await["errcode"], -1);
    assert_eq!(client.progress(&token, AGENT, 555).await["errcode"], 0);
    let (status, _) = client
        .control(Method::PUT, "faults", Some(json!({"probability": 3})))
        .await;
    assert_eq!(status, 400);

    let (status, behaviour) = client
        .control(
            Method::PATCH,
            "behaviour",
            Some(json!({"expiry_style": "flat"})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(behaviour["qps_limit"], 20);
    let (_, expired) = client.control(Method::POST, "expire-tokens", None).await;
    assert_eq!(expired, json!({"expired": 1}));
    assert_eq!(client.progress(&token, AGENT, 555).await["errcode"], 42001);

    let (_, tokens) = client.control(Method::GET, "tokens", None).await;
    assert_eq!(tokens, json!([token]));
    let (_, stats) = client.control(Method::GET, "stats", None).await;
    let stats: SimStats = serde_json::from_value(stats).unwrap();
    assert_eq!(stats, sim.stats());
    assert_eq!(stats.faults.busy, 1);

    let (status, missing) = client.control(Method::GET, "nothing-here", None).await;
    assert_eq!(status, 404);
    assert!(missing["error"].is_string());
    let (status, _) = client.control(Method::DELETE, "stats", None).await;
    assert_eq!(status, 405);
    let (status, _) = client
        .control(Method::PATCH, "behaviour", Some(json!({"qps_limt": 1})))
        .await;
    assert_eq!(status, 400, "typos in settings are refused");
}

/// Oversized, malformed and non-HTTP input gets an answer or a closed connection, and the server keeps serving.
#[tokio::test]
async fn hostile_input_never_breaks_the_server() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (sim, client) = start(SimConfig {
        max_body_bytes: 1024,
        ..SimConfig::default()
    })
    .await;
    let token = client.token().await;
    let task_id = sim.add_task(AGENT, Timeline::fast());

    let huge = client
        .http
        .post(client.api_url("getsendprogress", &token))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);

    for garbage in [
        &b"{\"agent_id\": [1, 2], \"task_id\": {}}"[..],
        b"\xff\xfe\x00garbage",
        b"agent_id=%zz&task_id=99999999999999999999999",
        b"{\"agent_id\":",
    ] {
        let answer: Value = client
            .http
            .post(client.api_url("getsendprogress", &token))
            .body(garbage.to_vec())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["errcode"], 40035);
    }
    let (status, _) = client.control(reqwest::Method::POST, "tasks", None).await;
    assert_eq!(status, 400);

    let mut raw = tokio::net::TcpStream::connect(sim.local_addr())
        .await
        .unwrap();
    raw.write_all(b"\x16\x03\x01 not http at all\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    let _ = raw.read_to_end(&mut reply).await;

    assert_eq!(client.progress(&token, AGENT, task_id).await["errcode"], 0);
}

/// After shutdown the simulator no longer accepts connections.
#[tokio::test]
async fn shutdown_stops_serving() {
    let (sim, client) = start(SimConfig::default()).await;
    client.token().await;
    let addr = sim.local_addr();
    sim.shutdown().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
