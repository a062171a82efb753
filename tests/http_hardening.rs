//! Attacks on the HTTP server, each reproduced on loopback and bounded in time and count:
//! a flood of idle and slow connections from a few addresses, writes sent by web pages
//! (CSRF, DNS rebinding) and request heads past the 64 KiB limit.

mod http_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use dingtalk_exporter::http::ServerLimits;
use dingtalk_exporter::secret::Secret;
use http_common::{TestServer, client, exporter, raw_exchange, test_config};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Connections opened by the flood, spread over these many addresses.
const FLOOD_CONNECTIONS: usize = 2400;
const FLOOD_ADDRESSES: u8 = 6;

/// Raises this process's open-file limit as far as it may go (its hard limit, and past it
/// when running as root, as CI does): the flood needs two descriptors per connection (both
/// ends live in this process).
fn raise_open_file_limit(wanted: u64) -> u64 {
    // SAFETY: getrlimit and setrlimit only read and write the struct handed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.max(wanted),
            rlim_max: limit.rlim_max.max(wanted),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur
    }
}

/// A connection to `server` from the loopback address `127.0.0.{last}`.
async fn connect_from(last: u8, server: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)),
        0,
    ))?;
    socket.connect(server).await
}

/// One scrape from `127.0.0.{last}` on a fresh connection: its status and how long it took.
async fn scrape_from(last: u8, server: SocketAddr) -> (u16, Duration) {
    let client = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let started = Instant::now();
    let response = client
        .get(format!("http://{server}/metrics"))
        .send()
        .await
        .expect("the scrape is answered while the flood holds its connections");
    let status = response.status().as_u16();
    response.text().await.expect("the scrape's body arrives");
    (status, started.elapsed())
}

/// Thousands of idle connections and slow request heads from a few addresses (the
/// slot-filling attack) do not stall scrapes: a scraper on another address and one on a
/// flooding address are both answered, long before the flood's connections would time out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_are_answered_while_a_connection_flood_holds_the_slots() {
    let limit = raise_open_file_limit(2 * FLOOD_CONNECTIONS as u64 + 512);
    assert!(
        limit >= 2 * FLOOD_CONNECTIONS as u64 + 512,
        "the flood needs {} open files; the limit is {limit}",
        2 * FLOOD_CONNECTIONS + 512
    );
    let (exporter, store) = exporter(test_config());
    // Far longer than the test: the flood's connections hold their slots unless the server
    // takes them back.
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(120),
        ..ServerLimits::default()
    };
    let server = TestServer::start_exporter(exporter, store, limits).await;
    let (_, quiet) = scrape_from(1, server.address).await;

    // All at once, each given a few seconds: the flood is in place long before any of its
    // connections could time out.
    let mut opening = tokio::task::JoinSet::new();
    for index in 0..FLOOD_CONNECTIONS {
        let last = 2 + (index % usize::from(FLOOD_ADDRESSES)) as u8;
        let address = server.address;
        opening.spawn(async move {
            let connecting = connect_from(last, address);
            let mut stream = tokio::time::timeout(Duration::from_secs(3), connecting)
                .await
                .ok()?
                .ok()?;
            if index % 2 == 0 {
                // Slowloris: a request head that is never finished.
                let _ = stream
                    .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                    .await;
            }
            Some(stream)
        });
    }
    let mut flood = Vec::with_capacity(FLOOD_CONNECTIONS);
    while let Some(opened) = opening.join_next().await {
        flood.extend(opened.expect("opening a connection does not panic"));
    }
    // More than the server has slots, so without taking slots back it would be full.
    assert!(
        flood.len() > ServerLimits::default().max_connections,
        "the flood opened only {} connections",
        flood.len()
    );

    let (status_elsewhere, elsewhere) = scrape_from(1, server.address).await;
    let (status_flooding, flooding) = scrape_from(2, server.address).await;
    assert_eq!(status_elsewhere, 200);
    assert_eq!(status_flooding, 200);
    println!(
        "scrape latency: {quiet:?} without a flood; with {} flood connections from {FLOOD_ADDRESSES} addresses: {elsewhere:?} from another address, {flooding:?} from a flooding address",
        flood.len()
    );
    drop(flood);
}

/// Registers one task with the request `build` makes of a POST to the task API.
async fn register_with(
    server: &TestServer,
    build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
) -> reqwest::Response {
    build(client().post(server.tasks_url()))
        .send()
        .await
        .expect("the exporter answers")
}

/// Request headers as name and value.
type Headers = Vec<(&'static str, String)>;

const TASK: &str = r#"{"agent_id":1,"task_id":7,"name":"quota burner"}"#;

/// What a web page can make a browser send to a loopback exporter is refused, with 415 for
/// bodies a form can send and 403 for a foreign Origin, a cross-site fetch or a rebound
/// Host; nothing is registered.
#[tokio::test]
async fn writes_from_web_pages_are_refused() {
    let server = TestServer::start(test_config()).await;
    let own = server.address.to_string();
    let refused: Vec<(&str, u16, Headers)> = vec![
        (
            "a form post",
            415,
            vec![("content-type", "application/x-www-form-urlencoded".into())],
        ),
        (
            "a text/plain post of JSON",
            415,
            vec![("content-type", "text/plain".into())],
        ),
        (
            "a multipart form",
            415,
            vec![("content-type", "multipart/form-data; boundary=x".into())],
        ),
        (
            "a fetch from another site",
            403,
            vec![
                ("content-type", "application/json".into()),
                ("origin", "http://evil.example".into()),
            ],
        ),
        (
            "a sandboxed page",
            403,
            vec![
                ("content-type", "application/json".into()),
                ("origin", "null".into()),
            ],
        ),
        (
            "another port of this host",
            403,
            vec![
                ("content-type", "application/json".into()),
                ("origin", "http://127.0.0.1:8080".into()),
            ],
        ),
        (
            "DNS rebinding",
            403,
            vec![
                ("content-type", "application/json".into()),
                (
                    "host",
                    format!("rebind.evil.example:{}", server.address.port()),
                ),
                (
                    "origin",
                    format!("http://rebind.evil.example:{}", server.address.port()),
                ),
            ],
        ),
        (
            "a rebound Host without Origin",
            403,
            vec![
                ("content-type", "application/json".into()),
                ("host", "rebind.evil.example".into()),
            ],
        ),
        (
            "Sec-Fetch-Site: cross-site",
            403,
            vec![
                ("content-type", "application/json".into()),
                ("sec-fetch-site", "cross-site".into()),
            ],
        ),
    ];
    for (what, status, headers) in refused {
        let response = register_with(&server, |mut request| {
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            request.body(TASK)
        })
        .await;
        assert_eq!(response.status().as_u16(), status, "{what}");
        let text = response.text().await.unwrap();
        assert!(
            text.contains("Content-Type") || text.contains("web page") || text.contains("browser"),
            "{what}: {text}"
        );
    }
    let delete = client()
        .delete(format!("{}/1/7", server.tasks_url()))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 403);
    assert_eq!(server.exporter.tracker().len(), 0, "nothing was registered");

    for (what, headers) in [
        (
            "a form post",
            vec![("content-type", "application/x-www-form-urlencoded")],
        ),
        ("a text/plain post", vec![("content-type", "text/plain")]),
        ("a foreign Origin", vec![("origin", "http://evil.example")]),
        ("a rebound Host", vec![("host", "rebind.evil.example")]),
    ] {
        let mut request = client().post(format!("{}/-/reload", server.url));
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let status = request.send().await.unwrap().status().as_u16();
        assert!(status == 403 || status == 415, "{what}: {status}");
    }

    // Scripts are unaffected: JSON without Origin, to the exporter's own names.
    for host in [own.clone(), format!("localhost:{}", server.address.port())] {
        let response = register_with(&server, |request| {
            request
                .header("host", host.clone())
                .header("content-type", "application/json; charset=utf-8")
                .body(TASK)
        })
        .await;
        assert!(
            response.status().is_success(),
            "{host}: {}",
            response.status()
        );
    }
    let same_page = register_with(&server, |request| {
        request
            .header("origin", format!("http://{own}"))
            .json(&serde_json::json!({"agent_id": 1, "task_id": 8}))
    })
    .await;
    assert_eq!(
        same_page.status(),
        201,
        "the exporter's own pages may write"
    );
    // `curl -X POST .../-/reload`: no body, no Content-Type.
    let reload = client()
        .post(format!("{}/-/reload", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status(), 200);
    assert_eq!(server.exporter.tracker().len(), 2);
}

/// With an API token, a script may name the exporter by any DNS name; a foreign Origin is
/// still refused, token or not.
#[tokio::test]
async fn with_a_token_any_host_name_but_no_foreign_origin() {
    let mut config = test_config();
    config.web.api_token = Some(Secret::new("correct-horse"));
    let server = TestServer::start(config).await;
    let accepted = register_with(&server, |request| {
        request
            .bearer_auth("correct-horse")
            .header("host", "exporter.corp.example:10050")
            .json(&serde_json::json!({"agent_id": 1, "task_id": 1}))
    })
    .await;
    assert_eq!(accepted.status(), 201);
    let refused = register_with(&server, |request| {
        request
            .bearer_auth("correct-horse")
            .header("origin", "http://evil.example")
            .json(&serde_json::json!({"agent_id": 1, "task_id": 2}))
    })
    .await;
    assert_eq!(refused.status(), 403);
    assert_eq!(server.exporter.tracker().len(), 1);
}

/// A request head over 64 KiB gets 431, as one long header or as many; one under it is
/// served.
#[tokio::test]
async fn request_heads_past_64_kib_get_431() {
    let server = TestServer::start(test_config()).await;
    let request = |headers: &str| {
        format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
    };
    let one_long = format!("X-Big: {}\r\n", "a".repeat(114 * 1000));
    let many: String = (0..90)
        .map(|index| format!("X-Part-{index}: {}\r\n", "b".repeat(1300)))
        .collect();
    for (what, headers) in [
        ("one 114 KB header", &one_long),
        ("90 headers of 1.3 KB", &many),
    ] {
        let answer = raw_exchange(server.address, request(headers).as_bytes()).await;
        assert!(
            answer.starts_with("HTTP/1.1 431 "),
            "{what}: {}",
            &answer[..answer.len().min(200)]
        );
    }
    let fits = format!("X-Big: {}\r\n", "c".repeat(60 * 1024));
    let answer = raw_exchange(server.address, request(&fits).as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 "),
        "{}",
        &answer[..answer.len().min(200)]
    );
}
