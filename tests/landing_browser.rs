//! The landing page as on-call sees it: rendered by headless Chromium (Debian's `chromium`)
//! at a desktop width (1400 px) and a phone width (420 px), with tasks in every state.
//!
//! Without `chromium` in PATH the test is skipped with a note, unless
//! DINGTALK_EXPORTER_REQUIRE_CHROMIUM=1 (set by CI), which makes it fail.

mod http_common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dingtalk_exporter::clock::now_ms;
use dingtalk_exporter::dingtalk::RecipientCounts;
use dingtalk_exporter::tracker::{
    NewTask, ResultFetch, SendStatus, TaskKey, TaskSource, TaskState,
};
use http_common::TestServer;
use http_common::test_config;

/// Chromium in PATH, or `None` (and a note) when it may be skipped.
fn chromium() -> Option<PathBuf> {
    let found = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .filter_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
            })
        })
        .next();
    if found.is_none() {
        assert!(
            std::env::var("DINGTALK_EXPORTER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "chromium is required (DINGTALK_EXPORTER_REQUIRE_CHROMIUM=1) but not in PATH"
        );
        eprintln!("note: chromium not in PATH; the landing page's browser check is skipped");
    }
    found
}

/// Runs headless Chromium on `url` at `width`x`height` with `output` (`--screenshot=...` or
/// `--dump-dom`) and returns its standard output.
fn run_chromium(binary: &Path, url: &str, width: u32, height: u32, output: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--virtual-time-budget=2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--window-size={width},{height}"))
        .arg(output)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("chromium starts");
    // Bounded: a browser that hangs fails the test instead of holding it forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s on {url}");
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
    let result = child.wait_with_output().unwrap();
    assert!(
        result.status.success(),
        "chromium failed on {url}: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    String::from_utf8_lossy(&result.stdout).into_owned()
}

/// A screenshot's pixels as RGB rows.
fn read_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(path).expect("the screenshot exists"),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let channels = info.color_type.samples();
    let rgb = pixels[..info.buffer_size()]
        .chunks(channels)
        .flat_map(|pixel| [pixel[0], pixel[1], pixel[2]])
        .collect();
    (info.width, info.height, rgb)
}

/// Tasks in every state the page distinguishes: stalled, not started for long, invalid,
/// failing, moving, completed with recipients, and a long name.
async fn populate(server: &TestServer) {
    let tracker = server.exporter.tracker();
    let now = now_ms();
    let hour = 3_600_000;
    let names = [
        "stalled payroll notice",
        "holiday schedule that never started",
        "typo in the task id",
        "throttled reminder",
        "security training reminder for every employee of the northern region, second wave",
        "finished survey",
    ];
    let new_tasks = names
        .iter()
        .enumerate()
        .map(|(index, name)| NewTask {
            key: TaskKey {
                agent_id: 2_839_445_214,
                task_id: 256_271_667_526 + index as i64,
            },
            name: name.to_string(),
            recipients: Some(150),
            source: TaskSource::Api,
        })
        .collect();
    tracker.register(new_tasks, now - 2 * hour).await.unwrap();
    let mut changed = Vec::new();
    for (index, mut task) in tracker.list().into_iter().enumerate() {
        task.last_poll_at_ms = Some(now - 30_000);
        task.last_errcode = Some(0);
        match task.name.as_str() {
            "stalled payroll notice" => {
                task.status = Some(SendStatus::InProgress);
                task.progress_ratio = Some(0.42);
                task.last_progress_change_at_ms = now - hour;
            }
            "holiday schedule that never started" => {
                task.status = Some(SendStatus::NotStarted);
                task.progress_ratio = Some(0.0);
            }
            "typo in the task id" => {
                task.state = TaskState::Invalid;
                task.last_poll_at_ms = None;
                task.last_errcode = Some(40035);
                task.ended_at_ms = Some(now - hour);
            }
            "throttled reminder" => {
                task.status = Some(SendStatus::InProgress);
                task.progress_ratio = Some(0.7);
                task.last_progress_change_at_ms = now - 60_000;
                task.last_errcode = Some(90018);
            }
            "finished survey" => {
                task.state = TaskState::Completed;
                task.status = Some(SendStatus::Completed);
                task.progress_ratio = Some(1.0);
                task.ended_at_ms = Some(now - hour);
                task.recipients = Some(RecipientCounts {
                    read: 120,
                    unread: 20,
                    failed: 5,
                    forbidden: 3,
                    invalid: 2,
                });
                task.result_fetch = ResultFetch::Fetched;
            }
            _ => {
                task.status = Some(SendStatus::InProgress);
                task.progress_ratio = Some(0.1 * index as f64);
                task.last_progress_change_at_ms = now - 60_000;
            }
        }
        changed.push(task);
    }
    tracker.update(changed).await.unwrap();
}

/// At 1400 px and at 420 px the page fits its width (nothing reaches past the right edge,
/// so nothing scrolls sideways), shows every task with its state and progress, and puts
/// the stalled, unstarted and invalid tasks first with their badges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_landing_page_fits_desktop_and_phone_in_chromium() {
    let Some(browser) = chromium() else { return };
    let server = TestServer::start(test_config()).await;
    populate(&server).await;
    let url = format!("{}/", server.url);
    let shots = tempfile::tempdir().unwrap();
    for (width, height) in [(1400, 1000), (420, 2400)] {
        let shot = shots.path().join(format!("landing-{width}.png"));
        let browser = browser.clone();
        let page_url = url.clone();
        let shot_arg = format!("--screenshot={}", shot.display());
        tokio::task::spawn_blocking(move || {
            run_chromium(&browser, &page_url, width, height, &shot_arg)
        })
        .await
        .unwrap();
        if let Ok(keep) = std::env::var("DINGTALK_EXPORTER_KEEP_SCREENSHOTS") {
            let _ = std::fs::copy(&shot, Path::new(&keep).join(format!("landing-{width}.png")));
        }
        let (shot_width, shot_height, rgb) = read_png(&shot);
        assert_eq!(shot_width, width);
        let row_bytes = shot_width as usize * 3;
        // The page's margin at the right edge stays the page's white: a table or card wider
        // than the window would run through it.
        let edge = 6usize;
        let mut touching = 0;
        for row in rgb.chunks(row_bytes).take(shot_height as usize) {
            if row[row_bytes - edge * 3..].iter().any(|&byte| byte != 255) {
                touching += 1;
            }
        }
        assert_eq!(
            touching, 0,
            "at {width} px, {touching} rows of pixels reach the right edge: the page is wider than the window"
        );
        let inked = rgb.iter().filter(|&&byte| byte < 128).count();
        assert!(inked > 10_000, "at {width} px the page looks empty");
    }

    let browser_for_dom = browser.clone();
    let dom_url = url.clone();
    let dom = tokio::task::spawn_blocking(move || {
        run_chromium(&browser_for_dom, &dom_url, 420, 2400, "--dump-dom")
    })
    .await
    .unwrap();
    let position = |text: &str| {
        dom.find(text)
            .unwrap_or_else(|| panic!("{text:?} is not on the page:\n{dom}"))
    };
    assert!(position("stalled payroll notice") < position("holiday schedule"));
    assert!(position("holiday schedule") < position("typo in the task id"));
    assert!(position("typo in the task id") < position("throttled reminder"));
    assert!(position("throttled reminder") < position("finished survey"));
    position("b-stalled\">stalled 59m");
    position("not started after 1h");
    position("invalid: DingTalk answered 40035");
    position("last poll failed: errcode 90018");
    position("42%");
    position("read 120");
    let invalid_row = &dom[position("typo in the task id")..];
    let invalid_row = &invalid_row[..invalid_row.find("</tr>").unwrap()];
    assert!(
        !invalid_row.contains("never"),
        "an invalid task says DingTalk never answered: {invalid_row}"
    );
}
