//! One rendering of `/metrics` shared by the scrapes that wait for it, and gzip when the
//! scraper asks for it.
//!
//! Forty scrapers arriving together (several Prometheus servers, federation, a dashboard's
//! direct queries) would otherwise render forty copies of an exposition of tens of megabytes,
//! one after the other on two cores, and hold a registration up behind them. Here a scrape
//! that arrives while another is being rendered waits for that rendering to finish and then
//! renders again only if nobody has started one since it arrived; so every scrape gets an
//! exposition at least as fresh as its own arrival, and a crowd costs about one rendering.
//! The shared text is dropped as soon as no scrape waits for it, so an idle exporter holds
//! no copy of its exposition between scrapes.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::HeaderMap;
use hyper::header::ACCEPT_ENCODING;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// The exposition as pieces of text, ready to send.
pub(super) type Pieces = Arc<Vec<Bytes>>;

/// Gzip level of the compressed exposition: Prometheus text is so repetitive that the
/// fastest level already shrinks it about twentyfold, and a higher level would cost a scrape
/// several times the CPU for a few percent fewer bytes.
const GZIP_LEVEL: u32 = 1;

/// Largest piece of compressed output handed to the connection at once, so the compressed
/// copy is written and sent in bounded pieces rather than one buffer.
const GZIP_PIECE_BYTES: usize = 256 * 1024;

/// A rendering and when it was started.
struct Rendering {
    started: Instant,
    plain: Pieces,
    gzip: Option<Pieces>,
}

/// The rendering shared among the scrapes of one server.
#[derive(Default)]
pub(super) struct SharedScrape {
    latest: Mutex<Option<Rendering>>,
    /// Scrapes between their arrival and their copy of the text: while none waits, the
    /// rendering is dropped.
    waiting: AtomicUsize,
}

impl SharedScrape {
    /// The exposition for a scrape arriving now: shared with the scrapes whose rendering
    /// started after this one arrived, else rendered afresh by `render` (on a blocking
    /// thread), and gzipped when `gzip` is set. `None` when rendering failed (panicked).
    pub(super) async fn get(
        &self,
        gzip: bool,
        render: impl FnOnce() -> Vec<Bytes> + Send + 'static,
    ) -> Option<Pieces> {
        let arrived = Instant::now();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let mut latest = self.latest.lock().await;
        let result = Self::fill(&mut latest, arrived, gzip, render).await;
        // The last waiter lets the text go; a scrape arriving later renders anew anyway.
        if self.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            *latest = None;
        }
        result
    }

    async fn fill(
        latest: &mut Option<Rendering>,
        arrived: Instant,
        gzip: bool,
        render: impl FnOnce() -> Vec<Bytes> + Send + 'static,
    ) -> Option<Pieces> {
        let fresh = latest
            .as_ref()
            .is_some_and(|rendering| rendering.started >= arrived);
        if !fresh {
            let started = Instant::now();
            let plain = tokio::task::spawn_blocking(render).await.ok()?;
            *latest = Some(Rendering {
                started,
                plain: Arc::new(plain),
                gzip: None,
            });
        }
        let rendering = latest.as_mut()?;
        if !gzip {
            return Some(rendering.plain.clone());
        }
        if rendering.gzip.is_none() {
            let plain = rendering.plain.clone();
            let compressed = tokio::task::spawn_blocking(move || gzip_pieces(&plain))
                .await
                .ok()?;
            rendering.gzip = Some(Arc::new(compressed));
        }
        rendering.gzip.clone()
    }
}

/// Whether the request's `Accept-Encoding` accepts gzip (`gzip`, `x-gzip` or `*` with a
/// quality above 0), as Prometheus' scrapes do.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|coding| {
            let mut fields = coding.split(';');
            let name = fields.next().unwrap_or_default().trim();
            let wanted = ["gzip", "x-gzip", "*"]
                .iter()
                .any(|accepted| name.eq_ignore_ascii_case(accepted));
            let quality = fields
                .filter_map(|field| {
                    let (key, value) = field.split_once('=')?;
                    key.trim()
                        .eq_ignore_ascii_case("q")
                        .then(|| value.trim().parse::<f32>().ok())?
                })
                .next()
                .unwrap_or(1.0);
            wanted && quality > 0.0
        })
}

/// `plain` as one gzip stream, cut into pieces of at most [`GZIP_PIECE_BYTES`].
pub(super) fn gzip_pieces(plain: &[Bytes]) -> Vec<Bytes> {
    let mut pieces = Vec::new();
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(GZIP_PIECE_BYTES),
        Compression::new(GZIP_LEVEL),
    );
    for chunk in plain {
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(chunk);
        if encoder.get_ref().len() >= GZIP_PIECE_BYTES {
            let full = std::mem::replace(encoder.get_mut(), Vec::with_capacity(GZIP_PIECE_BYTES));
            pieces.push(Bytes::from(full));
        }
    }
    if let Ok(rest) = encoder.finish() {
        pieces.push(Bytes::from(rest));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Forty scrapes arriving during one rendering share it: at most two renderings happen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_crowd_of_scrapes_costs_about_one_rendering() {
        let shared = Arc::new(SharedScrape::default());
        let renders = Arc::new(AtomicUsize::new(0));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        // The first rendering blocks until all forty scrapes are waiting.
        let first = {
            let shared = shared.clone();
            let renders = renders.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                shared
                    .get(false, move || {
                        renders.fetch_add(1, Ordering::SeqCst);
                        let _ = gate.lock().unwrap().recv();
                        vec![Bytes::from_static(b"x 1\n")]
                    })
                    .await
            })
        };
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while renders.load(Ordering::SeqCst) == 0 {
            assert!(
                Instant::now() < deadline,
                "the first rendering never started"
            );
            tokio::task::yield_now().await;
        }
        let mut crowd = Vec::new();
        for _ in 0..39 {
            let shared = shared.clone();
            let renders = renders.clone();
            crowd.push(tokio::spawn(async move {
                shared
                    .get(true, move || {
                        renders.fetch_add(1, Ordering::SeqCst);
                        vec![Bytes::from_static(b"x 2\n")]
                    })
                    .await
            }));
        }
        while shared.waiting.load(Ordering::SeqCst) < 40 {
            assert!(Instant::now() < deadline, "the crowd never queued up");
            tokio::task::yield_now().await;
        }
        release.send(()).unwrap();
        assert_eq!(
            first.await.unwrap().unwrap()[0],
            Bytes::from_static(b"x 1\n")
        );
        for scrape in crowd {
            let gzip = scrape.await.unwrap().unwrap();
            let mut text = String::new();
            flate2::read::MultiGzDecoder::new(&gzip.concat()[..])
                .read_to_string(&mut text)
                .unwrap();
            assert_eq!(
                text, "x 2\n",
                "a waiting scrape got text older than its arrival"
            );
        }
        assert_eq!(renders.load(Ordering::SeqCst), 2);
        assert!(
            shared.latest.lock().await.is_none(),
            "the text outlived its scrapes"
        );
    }

    /// Scrapes one after the other each get a fresh rendering, never an old one.
    #[tokio::test]
    async fn a_scrape_after_another_renders_afresh() {
        let shared = SharedScrape::default();
        let first = shared.get(false, || vec![Bytes::from_static(b"a")]).await;
        let second = shared.get(false, || vec![Bytes::from_static(b"b")]).await;
        assert_eq!(first.unwrap()[0], Bytes::from_static(b"a"));
        assert_eq!(second.unwrap()[0], Bytes::from_static(b"b"));
    }

    /// Gzip is chosen for Prometheus' header and for `*`, not for q=0 or other codings.
    #[test]
    fn gzip_is_served_only_when_accepted() {
        let accepts = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT_ENCODING, value.parse().unwrap());
            accepts_gzip(&headers)
        };
        assert!(accepts("gzip"));
        assert!(accepts("identity, gzip;q=0.5"));
        assert!(accepts("*"));
        assert!(accepts("deflate, GZIP"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    /// A large exposition is compressed into bounded pieces that decode to the same text.
    #[test]
    fn gzip_pieces_decode_to_the_text() {
        let plain: Vec<Bytes> = (0..2000)
            .map(|i| {
                Bytes::from(
                    format!("dingtalk_task_progress_ratio{{task_id=\"{i}\"}} 0.{i}\n").repeat(50),
                )
            })
            .collect();
        let pieces = gzip_pieces(&plain);
        assert!(
            pieces
                .iter()
                .all(|piece| piece.len() <= 2 * GZIP_PIECE_BYTES)
        );
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&pieces.concat()[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, plain.concat());
    }
}
