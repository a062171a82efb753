//! The two facts about a client certificate that rustls' verifier does not hand out: when
//! it is valid, and its subject alternative names (for `client_allowed_sans`).
//!
//! rustls-webpki, already linked, parses certificates but exposes neither the validity nor
//! the e-mail and IP names; a general X.509 crate would bring a parser framework for two
//! fields. So this reads just those fields of the DER, and any certificate it cannot read
//! counts as not valid and naming nothing: a refusal, never an admission.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One DER element: its tag, its content, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (length, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let length = rest[..count]
            .iter()
            .fold(0usize, |length, &byte| (length << 8) | usize::from(byte));
        (length, &rest[count..])
    };
    (rest.len() >= length).then(|| (tag, &rest[..length], &rest[length..]))
}

const SEQUENCE: u8 = 0x30;

/// The fields of the `tbsCertificate`, after the optional version.
fn tbs_fields(der: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut fields = Vec::new();
    while !tbs.is_empty() {
        let (tag, content, rest) = element(tbs)?;
        fields.push((tag, content));
        tbs = rest;
    }
    // The version ([0]) is optional; everything after it is in a fixed order.
    if fields.first().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.remove(0);
    }
    Some(fields)
}

/// `notBefore` and `notAfter`, in seconds since the Unix epoch.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    // serialNumber, signature, issuer, validity
    let (tag, validity) = *tbs_fields(der)?.get(3)?;
    if tag != SEQUENCE {
        return None;
    }
    let (before_tag, before, rest) = element(validity)?;
    let (after_tag, after, _) = element(rest)?;
    Some((time(before_tag, before)?, time(after_tag, after)?))
}

/// Whether the certificate is valid at `now` (seconds since the Unix epoch).
pub fn valid_at(der: &[u8], now: i64) -> bool {
    validity(der).is_some_and(|(not_before, not_after)| (not_before..=not_after).contains(&now))
}

/// A UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?.strip_suffix('Z')?;
    if !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, text.len()) {
        (0x17, 12) => {
            let year: i32 = text[..2].parse().ok()?;
            (
                if year >= 50 { 1900 + year } else { 2000 + year },
                &text[2..],
            )
        }
        (0x18, 14) => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let number = |range: std::ops::Range<usize>| rest[range].parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(year, number(0..2)?, number(2..4)?)?;
    let moment = date.and_hms_opt(number(4..6)?, number(6..8)?, number(8..10)?)?;
    Some(moment.and_utc().timestamp())
}

/// The subject alternative names as exporter-toolkit lists them: DNS names, e-mail
/// addresses, IP addresses (in Go's notation) and URIs.
pub fn subject_alt_names(der: &[u8]) -> Vec<String> {
    sans(der).unwrap_or_default()
}

fn sans(der: &[u8]) -> Option<Vec<String>> {
    // After validity come subject and subjectPublicKeyInfo, then optional unique ids ([1],
    // [2]) and the extensions ([3]).
    let fields = tbs_fields(der)?;
    let (_, extensions) = *fields.iter().skip(6).find(|(tag, _)| *tag == 0xa3)?;
    let (_, mut extensions, _) = element(extensions)?;
    while !extensions.is_empty() {
        let (_, extension, rest) = element(extensions)?;
        extensions = rest;
        let (_, oid, mut value) = element(extension)?;
        // 2.5.29.17, subjectAltName
        if oid != [0x55, 0x1d, 0x11] {
            continue;
        }
        // An optional `critical` BOOLEAN precedes the OCTET STRING.
        let (mut tag, mut content, _) = element(value)?;
        if tag == 0x01 {
            (_, _, value) = element(value)?;
            (tag, content, _) = element(value)?;
        }
        if tag != 0x04 {
            return None;
        }
        let (_, mut names, _) = element(content)?;
        let mut found = Vec::new();
        while !names.is_empty() {
            let (tag, name, rest) = element(names)?;
            names = rest;
            match tag {
                // rfc822Name, dNSName, uniformResourceIdentifier
                0x81 | 0x82 | 0x86 => {
                    if let Ok(name) = std::str::from_utf8(name) {
                        found.push(name.to_string());
                    }
                }
                // iPAddress
                0x87 => {
                    let address = match name.len() {
                        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(name).ok()?)),
                        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(name).ok()?)),
                        _ => continue,
                    };
                    found.push(address.to_string());
                }
                _ => {}
            }
        }
        return Some(found);
    }
    Some(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(
        names: Vec<rcgen::SanType>,
        not_before: (i32, u8, u8),
        not_after: (i32, u8, u8),
    ) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = names;
        params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
        params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    /// Every kind of name exporter-toolkit compares is read, IP addresses in Go's notation.
    #[test]
    fn reads_every_kind_of_subject_alt_name() {
        let der = certificate(
            vec![
                rcgen::SanType::DnsName("scraper.example".try_into().unwrap()),
                rcgen::SanType::Rfc822Name("ops@example.org".try_into().unwrap()),
                rcgen::SanType::IpAddress("10.0.0.7".parse().unwrap()),
                rcgen::SanType::IpAddress("2001:db8::1".parse().unwrap()),
                rcgen::SanType::URI("spiffe://cluster/prometheus".try_into().unwrap()),
            ],
            (2020, 1, 1),
            (2040, 1, 1),
        );
        assert_eq!(
            subject_alt_names(&der),
            [
                "scraper.example",
                "ops@example.org",
                "10.0.0.7",
                "2001:db8::1",
                "spiffe://cluster/prometheus"
            ]
        );
    }

    /// The validity period is read from both time encodings (UTCTime before 2050,
    /// GeneralizedTime after).
    #[test]
    fn reads_the_validity_period() {
        let der = certificate(Vec::new(), (2020, 1, 1), (2060, 6, 30));
        let (not_before, not_after) = validity(&der).unwrap();
        assert_eq!(not_before, 1_577_836_800);
        assert_eq!(not_after, 2_855_779_200);
        assert!(valid_at(&der, 2_000_000_000));
        assert!(!valid_at(&der, 1_000_000_000));
    }

    /// Bytes that are not a certificate name nothing and are never valid.
    #[test]
    fn garbage_is_never_valid() {
        for garbage in [
            &b""[..],
            b"\x30",
            b"\x30\x84\xff\xff\xff\xff",
            b"not DER at all",
        ] {
            assert!(subject_alt_names(garbage).is_empty());
            assert!(!valid_at(garbage, 0));
        }
    }
}
