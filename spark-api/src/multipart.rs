//! A `multipart/form-data` body encoder for flashing and compiling (RFC 7578), in memory and deterministic.

/// One part of the form.
pub(crate) struct Part<'a> {
    pub(crate) name: String,
    pub(crate) file_name: Option<&'a str>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) data: &'a [u8],
}

impl<'a> Part<'a> {
    pub(crate) fn text(name: &str, value: &'a str) -> Part<'a> {
        Part {
            name: name.to_owned(),
            file_name: None,
            content_type: None,
            data: value.as_bytes(),
        }
    }
    pub(crate) fn file(name: String, file_name: &'a str, data: &'a [u8]) -> Part<'a> {
        Part {
            name,
            file_name: Some(file_name),
            content_type: Some("application/octet-stream"),
            data,
        }
    }
}

/// Encode the parts; returns the boundary and the body. The boundary is chosen so that it occurs in no part.
pub(crate) fn encode(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let mut counter: u64 = 0;
    let boundary = loop {
        let candidate = format!("spark-api-boundary-{counter:016x}");
        let clash = parts.iter().any(|p| {
            memchr::memmem::find(p.data, candidate.as_bytes()).is_some()
                || p.name.contains(&candidate)
                || p.file_name.is_some_and(|f| f.contains(&candidate))
        });
        if !clash {
            break candidate;
        }
        counter += 1;
    };
    let mut body = Vec::with_capacity(parts.iter().map(|p| p.data.len() + 160).sum());
    for part in parts {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(escape(&part.name).as_bytes());
        body.push(b'"');
        if let Some(file_name) = part.file_name {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(escape(file_name).as_bytes());
            body.push(b'"');
        }
        body.extend_from_slice(b"\r\n");
        if let Some(content_type) = part.content_type {
            body.extend_from_slice(b"Content-Type: ");
            body.extend_from_slice(content_type.as_bytes());
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(part.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    (boundary, body)
}

/// Escape a name for a quoted header parameter the way browsers do (`"` and line breaks percent-encoded).
fn escape(name: &str) -> String {
    name.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let (boundary, body) = encode(&[
            Part::file("file".into(), "app.bin", b"\x00\x01"),
            Part::text("file_type", "binary"),
        ]);
        let expected = format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"app.bin\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\
             --{b}\r\nContent-Disposition: form-data; name=\"file_type\"\r\n\r\nbinary\r\n--{b}--\r\n",
            b = boundary
        );
        assert_eq!(body, expected.as_bytes());
    }

    #[test]
    fn boundary_avoids_contents() {
        let data =
            b"spark-api-boundary-0000000000000000 and spark-api-boundary-0000000000000001".to_vec();
        let (boundary, _) = encode(&[Part::file("file".into(), "x\"y", &data)]);
        assert_eq!(boundary, "spark-api-boundary-0000000000000002");
        assert_eq!(escape("a\"b\r\n"), "a%22b%0D%0A");
    }
}
