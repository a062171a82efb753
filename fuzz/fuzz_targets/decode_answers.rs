//! DingTalk's answers, or whatever a gateway or anyone on the path sends instead: no status
//! and body make a decoder panic, and what the decoders accept keeps their promises.
#![no_main]

use dingtalk_exporter::dingtalk::ApiFailure;
use dingtalk_exporter::dingtalk::answer::{
    decode_envelope, decode_progress, decode_result, decode_token, lenient_f64, lenient_i64,
};
use libfuzzer_sys::fuzz_target;

/// A decode error quotes at most a short piece of the answer, so a hostile answer cannot
/// flood the logs.
const DECODE_MESSAGE_LIMIT: usize = 512;

fn check_failure(failure: &ApiFailure) {
    if let ApiFailure::Decode(message) = failure {
        assert!(
            message.len() <= DECODE_MESSAGE_LIMIT,
            "a decode error of {} bytes",
            message.len()
        );
    }
    let _ = failure.to_string();
}

fuzz_target!(|input: &[u8]| {
    // The first two bytes choose the HTTP status (100..=599), the rest is the body.
    let (status, body) = match input {
        [high, low, body @ ..] => (100 + u16::from_be_bytes([*high, *low]) % 500, body),
        _ => (200, input),
    };
    let success = (200..300).contains(&status);

    match decode_progress(status, body) {
        Ok(progress) => {
            assert!(success, "progress accepted on HTTP {status}");
            assert!(
                (0.0..=100.0).contains(&progress.percent),
                "percent {} outside 0..=100",
                progress.percent
            );
        }
        Err(failure) => check_failure(&failure),
    }
    match decode_token(status, body) {
        Ok(token) => {
            assert!(success, "token accepted on HTTP {status}");
            assert!(!token.access_token.expose().trim().is_empty());
            assert!(token.expires_in_s > 0);
        }
        Err(failure) => check_failure(&failure),
    }
    match decode_result(status, body) {
        Ok(_) => assert!(success, "result accepted on HTTP {status}"),
        Err(failure) => check_failure(&failure),
    }
    match decode_envelope(status, body) {
        Ok(_) => assert!(success, "envelope accepted on HTTP {status}"),
        Err(failure) => check_failure(&failure),
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(float) = lenient_f64(&value) {
            assert!(float.is_finite());
        }
        let _ = lenient_i64(&value);
    }
});
