//! Text format 0.0.4 written by hand: label values escaped as the format requires, and
//! sample values formatted exactly as Prometheus' Go client formats them, integers and
//! millisecond times without going through floating point.

/// Escapes a label value as text format 0.0.4 requires: backslash, double quote and line
/// feed; everything else (any UTF-8) goes in as it is.
pub fn push_escaped_label_value(out: &mut String, value: &str) {
    if !value
        .bytes()
        .any(|byte| matches!(byte, b'\\' | b'"' | b'\n'))
    {
        out.push_str(value);
        return;
    }
    for ch in value.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            other => out.push(other),
        }
    }
}

pub fn push_int(out: &mut String, value: i64) {
    if value < 0 {
        out.push('-');
    }
    out.push_str(Digits::of(value.unsigned_abs()).as_str());
}

/// The decimal digits of a number, most significant first, written on the stack: the
/// `core::fmt` machinery costs a fifth of a large scrape otherwise.
struct Digits {
    bytes: [u8; 20],
    start: usize,
}

impl Digits {
    fn of(mut value: u64) -> Digits {
        let mut digits = Digits {
            bytes: [b'0'; 20],
            start: 20,
        };
        loop {
            digits.start -= 1;
            digits.bytes[digits.start] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                return digits;
            }
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits are ever written.
        std::str::from_utf8(&self.bytes[self.start..]).unwrap_or("0")
    }
}

/// Appends a sample value formatted as Prometheus' Go client does (`strconv.FormatFloat(v,
/// 'g', -1, 64)`): the shortest digits that read back exactly, in exponent form when the
/// decimal exponent is below -4 or at least 6 (`1.7462304e+09`, `0.25`, `40035`), and
/// `NaN`, `+Inf`, `-Inf`.
pub fn push_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if value == 0.0 {
        out.push('0');
        return;
    }
    // Rust's `{:e}` gives the same shortest round-trip digits: "1.7462304e9", "-2.5e-1".
    let mut scientific = StackText::new();
    {
        use std::fmt::Write;
        // 40 bytes hold any f64 in `{:e}` form (at most 24 characters).
        let _ = write!(scientific, "{value:e}");
    }
    let text = scientific.as_str();
    let (mantissa, exponent) = text.split_once('e').unwrap_or((text, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, mantissa),
    };
    let mut digits = StackText::new();
    for byte in mantissa.bytes().filter(u8::is_ascii_digit) {
        digits.push_byte(byte);
    }
    push_decimal(out, negative, digits.as_str(), exponent);
}

/// Appends a ratio as [`push_value`] would. Progress is a whole percent divided by 100 in
/// practice, and the shortest digits of `p / 100.0` are those of `p` (no other decimal as
/// short rounds to the same number), so it is written from the percent without float
/// formatting.
pub fn push_ratio(out: &mut String, ratio: f64) {
    let percent = (ratio * 100.0).round();
    if (0.0..=100.0).contains(&percent) && percent / 100.0 == ratio {
        push_scaled_integer(out, percent as i64, 2);
    } else {
        push_value(out, ratio);
    }
}

/// Any decimal of at most 15 significant digits reads back from an f64 unchanged (DBL_DIG),
/// so for integers below this bound their own digits are the shortest round-trip digits.
const EXACT_DIGITS_BOUND: u64 = 1_000_000_000_000_000;

/// Appends `count` as [`push_value`] would, without going through floating point.
pub fn push_integer_value(out: &mut String, count: i64) {
    push_scaled_integer(out, count, 0);
}

/// Appends a Unix-milliseconds time as seconds, as [`push_value`] would format
/// `ms / 1000.0`: the digits of `ms` with the decimal point moved, no float formatting.
pub fn push_timestamp_ms(out: &mut String, ms: i64) {
    push_scaled_integer(out, ms, 3);
}

/// Appends `value / 10^scale` in the Go client's format.
fn push_scaled_integer(out: &mut String, value: i64, scale: i32) {
    let magnitude = value.unsigned_abs();
    if magnitude >= EXACT_DIGITS_BOUND {
        push_value(out, value as f64 / 10f64.powi(scale));
        return;
    }
    if magnitude == 0 {
        out.push('0');
        return;
    }
    let digits = Digits::of(magnitude);
    let digits = digits.as_str();
    let significant = digits.trim_end_matches('0');
    let exponent = digits.len() as i32 - 1 - scale;
    push_decimal(out, value < 0, significant, exponent);
}

/// Lays out the decimal `0.d1d2d3... × 10^(exponent+1)` (`digits` without leading or
/// trailing zeros, at least one) the way Go's `%g` with shortest precision does.
fn push_decimal(out: &mut String, negative: bool, digits: &str, exponent: i32) {
    if negative {
        out.push('-');
    }
    if !(-4..6).contains(&exponent) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(if exponent < 0 { "e-" } else { "e+" });
        let magnitude = exponent.unsigned_abs();
        if magnitude < 10 {
            out.push('0');
        }
        push_int(out, i64::from(magnitude));
        return;
    }
    // Plain form: the decimal point sits `exponent + 1` digits into `digits`.
    let point = exponent + 1;
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..-point {
            out.push('0');
        }
        out.push_str(digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(digits);
            for _ in digits.len()..point {
                out.push('0');
            }
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

/// A small text buffer on the stack, so formatting a sample value allocates nothing.
struct StackText {
    bytes: [u8; 40],
    len: usize,
}

impl StackText {
    fn new() -> StackText {
        StackText {
            bytes: [0; 40],
            len: 0,
        }
    }

    fn push_byte(&mut self, byte: u8) {
        if self.len < self.bytes.len() {
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    fn as_str(&self) -> &str {
        // Only whole ASCII characters are ever written.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackText {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        if self.len + text.len() > self.bytes.len() {
            return Err(std::fmt::Error);
        }
        self.bytes[self.len..self.len + text.len()].copy_from_slice(text.as_bytes());
        self.len += text.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(v: f64) -> String {
        let mut out = String::new();
        push_value(&mut out, v);
        out
    }

    /// Sample values read exactly like the Go client's (`strconv.FormatFloat(v, 'g', -1, 64)`).
    #[test]
    fn values_are_formatted_like_prometheus_go_client() {
        let cases = [
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (-1.0, "-1"),
            (0.25, "0.25"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (40035.0, "40035"),
            (100000.0, "100000"),
            (1000000.0, "1e+06"),
            (1_746_230_400.0, "1.7462304e+09"),
            (1_746_230_400.123, "1.746230400123e+09"),
            (-2.5e-7, "-2.5e-07"),
            (1e100, "1e+100"),
            (f64::MAX, "1.7976931348623157e+308"),
            (5e-324, "5e-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (input, expected) in cases {
            assert_eq!(value(input), expected, "formatting {input:?}");
        }
    }

    /// Integers and millisecond times format exactly as their float values would.
    #[test]
    fn integer_paths_match_float_formatting() {
        let mut numbers = vec![
            0i64, 1, -1, 7, 10, 40035, 99_999, 100_000, 999_999, 1_000_000,
        ];
        numbers.extend([
            1_234_567,
            10_000_000_000,
            999_999_999_999_999,
            1_000_000_000_000_000,
        ]);
        numbers.extend([
            1_777_000_000_000,
            1_777_000_000_123,
            1_777_000_060_500,
            -1_500,
            1,
        ]);
        numbers.extend([i64::MAX, i64::MIN, 5, 50, 4_000, 123_456_789_012]);
        for number in numbers {
            let mut integer = String::new();
            push_integer_value(&mut integer, number);
            assert_eq!(integer, value(number as f64), "count {number}");
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, number);
            assert_eq!(timestamp, value(number as f64 / 1000.0), "{number} ms");
        }
    }

    /// Every whole-percent progress reads exactly as float formatting would write it.
    #[test]
    fn whole_percent_ratios_match_float_formatting() {
        for percent in 0..=100 {
            let ratio = f64::from(percent) / 100.0;
            let mut fast = String::new();
            push_ratio(&mut fast, ratio);
            assert_eq!(fast, value(ratio), "{percent}%");
        }
    }

    proptest::proptest! {
        /// Any ratio, a whole percent or not, formats as float formatting would.
        #[test]
        fn ratios_agree_with_floats(ratio in 0.0f64..=1.0) {
            let mut fast = String::new();
            push_ratio(&mut fast, ratio);
            proptest::prop_assert_eq!(fast, value(ratio));
        }

        /// For any count or millisecond time, the integer paths agree with float formatting.
        #[test]
        fn integer_paths_agree_with_floats(number in proptest::num::i64::ANY) {
            let mut integer = String::new();
            push_integer_value(&mut integer, number);
            proptest::prop_assert_eq!(integer, value(number as f64));
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, number);
            proptest::prop_assert_eq!(timestamp, value(number as f64 / 1000.0));
        }

        /// The same for times in the range real timestamps take (before the year 2500).
        #[test]
        fn timestamps_agree_with_floats(ms in 0i64..16_725_225_600_000) {
            let mut timestamp = String::new();
            push_timestamp_ms(&mut timestamp, ms);
            proptest::prop_assert_eq!(timestamp, value(ms as f64 / 1000.0));
        }
    }

    /// Every formatted value parses back to the same number.
    #[test]
    fn formatted_values_round_trip() {
        for input in [0.37, 1.0 / 3.0, 12.5, 99.99, 1e21, 1e-300, 123456.789] {
            assert_eq!(value(input).parse::<f64>().unwrap(), input);
        }
    }

    /// Label values escape exactly backslash, double quote and line feed.
    #[test]
    fn label_values_are_escaped_per_text_format() {
        let mut out = String::new();
        push_escaped_label_value(&mut out, "a\\b\"c\nd\té");
        assert_eq!(out, "a\\\\b\\\"c\\nd\té");
    }
}
