//! The cloud's request parsers that run before authentication: path percent-decoding, and form, JSON and multipart
//! bodies under any content type. The first byte picks the content type (a multipart one takes its boundary from
//! the next bytes). No panic; a multipart body's parts lie inside it.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cloud::encoding::percent_decode;
use spark_cloud::fuzzing::request_body;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    if let Ok(text) = core::str::from_utf8(rest) {
        let _ = percent_decode(text);
    }
    let (content_type, body) = match pick % 5 {
        0 => ("application/x-www-form-urlencoded".to_owned(), rest),
        1 => ("application/json".to_owned(), rest),
        2 => {
            let n = rest.len().min(usize::from(pick >> 3) + 1);
            let (boundary, body) = rest.split_at(n);
            let boundary = String::from_utf8_lossy(boundary);
            (format!("multipart/form-data; boundary={boundary}"), body)
        }
        3 => ("multipart/form-data; boundary=XyZ".to_owned(), rest),
        _ => (String::from_utf8_lossy(rest).into_owned(), &rest[..0]),
    };
    if let Ok((_, parts)) = request_body(&content_type, body) {
        let total: usize = parts.iter().map(|p| p.data.len()).sum();
        assert!(total <= body.len());
    }
});
