//! Keeps credentials out of every text the exporter writes.
//!
//! DingTalk takes the access token (and, for `gettoken`, the app secret) in the URL query, and
//! HTTP client errors print the URL. Every error string and log line about a DingTalk call is
//! passed through [`redact`] (by parameter name) and, where the client knows the values, through
//! [`redact_values`] as well, so that neither a URL nor an echoed value can leak them.
//!
//! Quoting part of a text (an excerpt of an unexpected answer) goes through [`excerpt`]:
//! redaction first, then the cut, so a credential split by the cut is still recognised. A
//! piece of a known value ([`MIN_FRAGMENT_CHARS`] characters or more) counts as the value,
//! and in an excerpt any long run of the characters tokens are made of counts as a token.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Parameter names whose values are credentials, compared case-insensitively. Both the query
/// style (`access_token=...`) and the JSON style (`"access_token":"..."`) are redacted.
const SECRET_PARAMETERS: &[&str] = &[
    "access_token",
    "accesstoken",
    "appsecret",
    "app_secret",
    "corpsecret",
    "suiteticket",
    "suite_ticket",
];

/// Replaces the value of every credential parameter in `text` with [`REDACTED`].
pub fn redact(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search_from = 0;
    while let Some((value_start, value_end)) = next_secret_value(&lower, search_from) {
        out.push_str(&text[copied..value_start]);
        out.push_str(REDACTED);
        copied = value_end;
        search_from = value_end;
    }
    out.push_str(&text[copied..]);
    out
}

/// A run of this many characters of a known credential is treated as the credential: a text
/// cut short (by an excerpt, a log line limit, a proxy) may carry only part of it, and 8
/// characters of a 32-character token are already too many to give away.
pub const MIN_FRAGMENT_CHARS: usize = 8;

/// In an excerpt, a run of this many token characters (letters, digits, `-`, `_`) is treated
/// as a token, known or not: DingTalk's tokens and secrets are such runs of 20 to 64
/// characters, while words, numbers and ids in error pages are shorter.
pub const MIN_TOKEN_LIKE_RUN: usize = 16;

/// Replaces every occurrence of the given values (a token, a secret), and every run of
/// [`MIN_FRAGMENT_CHARS`] or more characters of one of them, in `text`, for texts that could
/// echo a credential outside a recognisable parameter, such as a server's errmsg. Empty
/// values are ignored.
pub fn redact_values(text: &str, values: &[&str]) -> String {
    let mut out = redact(text);
    for value in values.iter().filter(|value| !value.is_empty()) {
        if out.contains(value) {
            out = out.replace(value, REDACTED);
        }
        out = redact_fragments(&out, value);
    }
    out
}

/// Quotes at most `max_chars` characters of `text`, redacted before it is cut (by parameter
/// name, by the known `values` and their fragments, and any long token-like run), with
/// control characters shown as spaces and `...` when something was cut.
pub fn excerpt(text: &str, values: &[&str], max_chars: usize) -> String {
    let redacted = redact_token_like_runs(&redact_values(text, values));
    let mut chars = redacted.chars();
    let mut quoted: String = chars
        .by_ref()
        .take(max_chars)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if chars.next().is_some() {
        quoted.push_str("...");
    }
    quoted
}

fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// Replaces every run of at least [`MIN_FRAGMENT_CHARS`] characters of `value` found in
/// `text` (longest first at each position).
fn redact_fragments(text: &str, value: &str) -> String {
    let value_chars: Vec<char> = value.chars().collect();
    if value_chars.len() < MIN_FRAGMENT_CHARS {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while at < chars.len() {
        let longest = longest_fragment_at(&chars[at..], &value_chars);
        if longest >= MIN_FRAGMENT_CHARS {
            out.push_str(REDACTED);
            at += longest;
        } else {
            out.push(chars[at]);
            at += 1;
        }
    }
    out
}

/// The length of the longest prefix of `text` that occurs somewhere in `value`.
fn longest_fragment_at(text: &[char], value: &[char]) -> usize {
    let mut longest = 0;
    for start in 0..value.len() {
        let matched = text
            .iter()
            .zip(&value[start..])
            .take_while(|(a, b)| a == b)
            .count();
        longest = longest.max(matched);
    }
    longest
}

/// Replaces every run of [`MIN_TOKEN_LIKE_RUN`] or more token characters.
fn redact_token_like_runs(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.chars().count() >= MIN_TOKEN_LIKE_RUN {
            out.push_str(REDACTED);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in text.chars() {
        if is_token_char(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// The byte range of the first credential value at or after `from` in the lowercased text.
fn next_secret_value(lower: &str, from: usize) -> Option<(usize, usize)> {
    let bytes = lower.as_bytes();
    let mut best: Option<(usize, usize)> = None;
    for name in SECRET_PARAMETERS {
        let mut at = from;
        while let Some(found) = lower[at..].find(name) {
            let name_start = at + found;
            let name_end = name_start + name.len();
            at = name_end;
            // `x_access_token=` is not our parameter, but `?access_token=`, `&access_token=`
            // and `"access_token"` are.
            if name_start > 0 && is_name_byte(bytes[name_start - 1]) {
                continue;
            }
            let Some(value_start) = value_start_after(bytes, name_end) else {
                continue;
            };
            let value_end = value_end_from(bytes, value_start);
            if value_end > value_start && best.is_none_or(|(start, _)| value_start < start) {
                best = Some((value_start, value_end));
            }
            break;
        }
    }
    best
}

fn is_name_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

/// Where the value begins after a parameter name: after `=` (query or form), or after
/// `":` and an optional opening quote (JSON).
fn value_start_after(bytes: &[u8], mut at: usize) -> Option<usize> {
    if bytes.get(at) == Some(&b'"') {
        at += 1;
    }
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    match bytes.get(at)? {
        b'=' | b':' => at += 1,
        _ => return None,
    }
    while bytes.get(at) == Some(&b' ') {
        at += 1;
    }
    if bytes.get(at) == Some(&b'"') {
        at += 1;
    }
    Some(at)
}

/// A value runs until a character that cannot be part of a token or a URL query value.
fn value_end_from(bytes: &[u8], start: usize) -> usize {
    let mut end = start;
    while let Some(&byte) = bytes.get(end) {
        if matches!(
            byte,
            b'&' | b'#' | b'"' | b'\'' | b'<' | b'>' | b')' | b'(' | b',' | b';' | b'\\'
        ) || byte.is_ascii_whitespace()
        {
            break;
        }
        end += 1;
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reqwest-style error text keeps its shape but loses the token from the URL.
    #[test]
    fn token_in_a_url_is_redacted() {
        let text = "error sending request for url (http://127.0.0.1:9/topapi/message/corpconversation/getsendprogress?access_token=abc123XYZ): connection refused";
        let redacted = redact(text);
        assert!(!redacted.contains("abc123XYZ"), "{redacted}");
        assert!(redacted.contains("access_token=<redacted>)"), "{redacted}");
        assert!(redacted.ends_with("connection refused"));
    }

    /// The app secret of a gettoken URL is redacted, whatever its position and case.
    #[test]
    fn app_secret_in_a_query_is_redacted() {
        let redacted = redact("GET /gettoken?AppSecret=s3cr3t&appkey=dingkey");
        assert_eq!(
            redacted,
            "GET /gettoken?AppSecret=<redacted>&appkey=dingkey"
        );
        let redacted = redact("/gettoken?appkey=k&appsecret=s3cr3t");
        assert_eq!(redacted, "/gettoken?appkey=k&appsecret=<redacted>");
    }

    /// JSON bodies that carry a token or a secret are redacted too.
    #[test]
    fn json_style_values_are_redacted() {
        let redacted = redact(r#"{"access_token": "tok-1","expires_in":7200,"appSecret":"x"}"#);
        assert_eq!(
            redacted,
            r#"{"access_token": "<redacted>","expires_in":7200,"appSecret":"<redacted>"}"#
        );
    }

    /// Several occurrences are all redacted; unrelated look-alike names are left alone.
    #[test]
    fn every_occurrence_and_only_real_parameters() {
        let redacted = redact("access_token=a&x=1 then ?access_token=b; my_access_token=c");
        assert_eq!(
            redacted,
            "access_token=<redacted>&x=1 then ?access_token=<redacted>; my_access_token=c"
        );
    }

    /// Known values are removed even where no parameter name announces them.
    #[test]
    fn known_values_are_redacted_anywhere() {
        let redacted = redact_values("token tok-42 rejected", &["tok-42", ""]);
        assert_eq!(redacted, "token <redacted> rejected");
    }

    /// A piece of a known token, as a cut text would carry it, is redacted like the whole;
    /// short coincidences (under 8 characters) are left alone.
    #[test]
    fn fragments_of_known_values_are_redacted() {
        let token = "9f3c1a77e2b84d0c9a6e5f1b2c3d4e5f";
        let redacted = redact_values("bad gateway, token 9f3c1a77e2b84d0c9a", &[token]);
        assert_eq!(redacted, "bad gateway, token <redacted>");
        let redacted = redact_values("ends with ...4e5f and starts 9f3c", &[token]);
        assert_eq!(redacted, "ends with ...4e5f and starts 9f3c");
    }

    /// An excerpt is redacted before it is cut: a token that straddles the cut leaves no
    /// character of itself behind, known or not, named by a parameter or not.
    #[test]
    fn excerpts_redact_before_cutting() {
        let token = "AbCdEfGhIjKlMnOpQrStUvWxYz0";
        let padding = "x ".repeat(50);
        for text in [
            format!("{padding}access_token={token} trailing"),
            format!("{padding}{token} trailing"),
        ] {
            for values in [&[token][..], &[][..]] {
                for cut in 100..text.len() {
                    let quoted = excerpt(&text, values, cut);
                    let fragment = (0..token.len() - 3)
                        .map(|start| &token[start..start + 4])
                        .find(|piece| quoted.contains(piece));
                    assert!(fragment.is_none(), "{quoted:?} leaks {fragment:?}");
                }
            }
        }
        assert_eq!(excerpt("short\nanswer", &[], 120), "short answer");
        assert_eq!(excerpt("abcdef", &[], 3), "abc...");
    }

    /// Text without credentials, including non-ASCII text, is unchanged.
    #[test]
    fn other_text_is_unchanged() {
        let text = "钉钉 errmsg: 不合法的access_token";
        assert_eq!(redact(text), text);
        assert_eq!(redact("access_token="), "access_token=");
    }
}
