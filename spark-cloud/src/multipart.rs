//! `multipart/form-data` bodies (RFC 7578): the boundary of a content type, and a body split into its parts, as
//! firmware uploads arrive.

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The form field name (`name=` of `Content-Disposition`).
    pub name: String,
    /// The file name, when the part is a file.
    pub file_name: Option<String>,
    /// The part's bytes.
    pub data: Vec<u8>,
}

/// Why a multipart body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultipartError {
    /// The `Content-Type` carries no `boundary=` parameter.
    #[error("no multipart boundary in the content type")]
    NoBoundary,
    /// The body does not follow the multipart framing.
    #[error("malformed multipart body")]
    Malformed,
}

/// Extracts the boundary of a `multipart/form-data; boundary=...` content type.
pub fn multipart_boundary(content_type: &str) -> Option<&str> {
    let (mime, params) = content_type.split_once(';')?;
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim().trim_matches('"');
        (!v.is_empty() && v.len() <= 70).then_some(v)
    })
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut pos = find(body, delimiter, 0).ok_or(MultipartError::Malformed)?;
    let mut parts = Vec::new();
    loop {
        pos += delimiter.len();
        let rest = body.get(pos..).ok_or(MultipartError::Malformed)?;
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        if !rest.starts_with(b"\r\n") {
            return Err(MultipartError::Malformed);
        }
        pos += 2;
        let headers_end = find(body, b"\r\n\r\n", pos).ok_or(MultipartError::Malformed)?;
        let headers =
            std::str::from_utf8(&body[pos..headers_end]).map_err(|_| MultipartError::Malformed)?;
        let data_start = headers_end + 4;
        let mut closing = Vec::with_capacity(delimiter.len() + 2);
        closing.extend_from_slice(b"\r\n");
        closing.extend_from_slice(delimiter);
        let data_end = find(body, &closing, data_start).ok_or(MultipartError::Malformed)?;
        let (name, file_name) = disposition(headers).ok_or(MultipartError::Malformed)?;
        parts.push(Part {
            name,
            file_name,
            data: body[data_start..data_end].to_vec(),
        });
        pos = data_end + 2;
    }
}

fn disposition(headers: &str) -> Option<(String, Option<String>)> {
    let line = headers.split("\r\n").find(|l| {
        l.split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("content-disposition"))
    })?;
    let (_, value) = line.split_once(':')?;
    let mut name = None;
    let mut file_name = None;
    for param in value.split(';').skip(1) {
        let Some((k, v)) = param.trim().split_once('=') else {
            continue;
        };
        let v = v.trim().trim_matches('"').to_owned();
        match k.trim() {
            "name" => name = Some(v),
            "filename" => file_name = Some(v),
            _ => {}
        }
    }
    Some((name?, file_name))
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_round_trip() {
        let body =
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"file_type\"\r\n\r\nbinary\r\n--XyZ--\r\n";
        let boundary = multipart_boundary("multipart/form-data; boundary=XyZ").unwrap();
        let parts = parse_multipart(body, boundary).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "file");
        assert_eq!(parts[0].file_name.as_deref(), Some("a.bin"));
        assert_eq!(parts[0].data, b"\x00\x01\r\n\x02");
        assert_eq!(parts[1].name, "file_type");
        assert_eq!(parts[1].data, b"binary");
        // Every truncation is an error, never a panic.
        for cut in 0..body.len() - 4 {
            assert!(
                parse_multipart(&body[..cut], boundary).is_err(),
                "cut {cut}"
            );
        }
        assert_eq!(multipart_boundary("text/plain; boundary=x"), None);
        assert_eq!(multipart_boundary("multipart/form-data"), None);
    }
}
