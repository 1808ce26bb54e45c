//! Just enough DER to read a certificate's validity period.
//!
//! The `tls.expiry` check warns when a server certificate runs out within days, and rustls only
//! says "expired" once it has. A general X.509 library would be a large dependency for two
//! timestamps, so this walks the fixed start of the structure (RFC 5280 §4.1):
//!
//! ```text
//! Certificate ::= SEQUENCE { tbsCertificate SEQUENCE {
//!     [0] EXPLICIT version OPTIONAL, serialNumber INTEGER, signature AlgorithmIdentifier,
//!     issuer Name, validity SEQUENCE { notBefore Time, notAfter Time }, … }, … }
//! ```
//!
//! The input comes from the network, so every length is checked against what is left, and a
//! malformed certificate is `None`, never a panic.

use chrono::{DateTime, NaiveDate, Utc};

/// When a DER certificate stops being valid (`notAfter`), or `None` if it cannot be read.
pub fn not_after(der: &[u8]) -> Option<DateTime<Utc>> {
    let (certificate, _) = element(der, 0x30)?;
    let (tbs, _) = element(certificate, 0x30)?;
    let mut rest = tbs;
    // The version is optional: context tag [0], constructed.
    if rest.first() == Some(&0xA0) {
        rest = element(rest, 0xA0)?.1;
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    rest = element(rest, 0x30)?.1; // signature algorithm
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30)?;
    let after_not_before = skip_time(validity)?;
    let (tag, value) = (
        after_not_before.first().copied()?,
        element_any(after_not_before)?.0,
    );
    time(tag, value)
}

/// The content of the element at the start of `input` if it has tag `tag`, and what follows it.
fn element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if input.first() != Some(&tag) {
        return None;
    }
    element_any(input)
}

/// The content of the element at the start of `input`, whatever its tag, and what follows it.
fn element_any(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let bytes = (first & 0x7f) as usize;
        // Indefinite lengths are not DER; four bytes cover any certificate.
        if bytes == 0 || bytes > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..bytes {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + bytes)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((&input[header..end], &input[end..]))
}

fn skip_time(input: &[u8]) -> Option<&[u8]> {
    match input.first()? {
        0x17 | 0x18 => element_any(input).map(|(_, rest)| rest),
        _ => None,
    }
}

/// `UTCTime` (`YYMMDDHHMMSSZ`, years 1950–2049) or `GeneralizedTime` (`YYYYMMDDHHMMSSZ`).
fn time(tag: u8, value: &[u8]) -> Option<DateTime<Utc>> {
    let text = std::str::from_utf8(value).ok()?;
    let digits = text.strip_suffix('Z')?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (year, rest) = match (tag, digits.len()) {
        (0x17, 12) => {
            let yy: i32 = digits[..2].parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        (0x18, 14) => (digits[..4].parse().ok()?, &digits[4..]),
        _ => return None,
    };
    let field = |i: usize| rest[i..i + 2].parse::<u32>().ok();
    let date = NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?;
    let at = date.and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some(at.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DER element with a short or long length.
    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn certificate(not_after: (u8, &str), with_version: bool) -> Vec<u8> {
        let mut tbs = Vec::new();
        if with_version {
            tbs.extend(der(0xA0, &der(0x02, &[2])));
        }
        tbs.extend(der(0x02, &[0x01, 0x02]));
        tbs.extend(der(0x30, &der(0x06, &[0x2a, 0x86])));
        // A long issuer, so the long length form is exercised.
        tbs.extend(der(0x30, &[0x31; 200]));
        let mut validity = der(0x17, b"240101000000Z");
        validity.extend(der(not_after.0, not_after.1.as_bytes()));
        tbs.extend(der(0x30, &validity));
        tbs.extend(der(0x30, &[]));
        let mut cert = der(0x30, &tbs);
        cert.extend(der(0x30, &[]));
        der(0x30, &cert)
    }

    #[test]
    fn reads_utc_and_generalized_times() {
        let utc = not_after(&certificate((0x17, "491231235959Z"), true)).unwrap();
        assert_eq!(utc.to_rfc3339(), "2049-12-31T23:59:59+00:00");
        let old = not_after(&certificate((0x17, "500101000000Z"), false)).unwrap();
        assert_eq!(old.to_rfc3339(), "1950-01-01T00:00:00+00:00");
        let generalized = not_after(&certificate((0x18, "20610203040506Z"), true)).unwrap();
        assert_eq!(generalized.to_rfc3339(), "2061-02-03T04:05:06+00:00");
    }

    #[test]
    fn malformed_input_is_none_never_a_panic() {
        let good = certificate((0x17, "491231235959Z"), true);
        for cut in 0..good.len() {
            assert!(not_after(&good[..cut]).is_none(), "cut at {cut}");
        }
        assert!(not_after(&certificate((0x17, "4912312359Z"), true)).is_none());
        assert!(not_after(&certificate((0x17, "491331235959Z"), true)).is_none());
        assert!(not_after(&certificate((0x04, "491231235959Z"), true)).is_none());
        assert!(not_after(&[0x30, 0x85, 1, 1, 1, 1, 1]).is_none());
        assert!(not_after(&[]).is_none());
    }
}
