//! The text forms the cloud reads and writes: ISO-8601 times (`published_at`), lower-case hex, and percent-decoded
//! URL path segments.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a time as ISO-8601 UTC with milliseconds (`2014-05-28T19:20:34.638Z`), the cloud's `published_at` form.
pub fn iso8601(time: SystemTime) -> String {
    let mut buf = [0u8; ISO8601_LEN];
    String::from_utf8_lossy(iso8601_into(time, &mut buf)).into_owned()
}

/// The most bytes [`iso8601_into`] writes (a year of up to 16 digits; a `SystemTime` reaches 12).
pub const ISO8601_LEN: usize = 36;

/// [`iso8601`] written into `buf`, without allocating: the bytes written.
pub fn iso8601_into(time: SystemTime, buf: &mut [u8; ISO8601_LEN]) -> &[u8] {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    // The year: at least four digits (days since 1970 from a `u64` of seconds keep it positive and short).
    let mut year = [b'0'; 16];
    let mut at = year.len();
    let mut y = y.unsigned_abs();
    while y > 0 && at > 0 {
        at -= 1;
        year[at] = b'0' + (y % 10) as u8;
        y /= 10;
    }
    let year = &year[at.min(year.len() - 4)..];
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    let millis = u64::from(since.subsec_millis());
    let mut len = 0;
    for part in [
        year,
        b"-",
        &two(u64::from(m)),
        b"-",
        &two(u64::from(d)),
        b"T",
        &two(rem / 3600),
        b":",
        &two((rem / 60) % 60),
        b":",
        &two(rem % 60),
        b".",
        &[b'0' + (millis / 100) as u8],
        &two(millis % 100),
        b"Z",
    ] {
        buf[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    &buf[..len]
}

/// Converts days since 1970-01-01 to a (year, month, day) civil date (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// Decodes lower- or upper-case hex; `None` on an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            Some((hi * 16 + lo) as u8)
        })
        .collect()
}

/// Percent-decodes one URL path segment; `None` when an escape is malformed or the result is not UTF-8.
pub fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes.get(i + 1..i + 3)?;
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn iso8601_known_instants() {
        let t = UNIX_EPOCH + Duration::from_millis(1_401_304_834_638);
        assert_eq!(iso8601(t), "2014-05-28T19:20:34.638Z");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00.000Z");
        // Past the fourth digit of the year the year grows (as `format!` with `{:04}` did).
        let far = UNIX_EPOCH + Duration::from_secs(253_402_300_800); // 10000-01-01
        assert_eq!(iso8601(far), "10000-01-01T00:00:00.000Z");
        let mut buf = [0u8; ISO8601_LEN];
        assert_eq!(
            iso8601_into(
                UNIX_EPOCH + Duration::from_millis(1_401_304_834_638),
                &mut buf
            ),
            b"2014-05-28T19:20:34.638Z"
        );
        let latest = UNIX_EPOCH + Duration::from_secs(1 << 60);
        assert!(iso8601(latest).ends_with(".000Z"));
    }

    #[test]
    fn hex_round_trip_and_bad_input() {
        assert_eq!(hex(&[0x00, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
