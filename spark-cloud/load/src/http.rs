//! A minimal HTTP/1.1 client for measuring the REST API: one keep-alive connection, requests written in one piece,
//! responses read by `Content-Length` or chunked encoding, and an event-stream reader that counts SSE frames.
//!
//! The load tool times requests with it rather than with a full client so that the measured round trip is the
//! server's, not the client library's.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The connection failed.
    #[error("HTTP connection: {0}")]
    Io(#[from] std::io::Error),
    /// The server's answer was not HTTP/1.1 as expected.
    #[error("malformed HTTP response: {0}")]
    Malformed(&'static str),
}

/// Where the head of a response ends (just past `\r\n\r\n`).
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
}

/// The status code and body framing of a response head.
fn parse_head(head: &[u8]) -> Result<(u16, Framing), HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut words = status_line.split(' ');
    if !words.next().is_some_and(|v| v.starts_with("HTTP/1.")) {
        return Err(HttpError::Malformed("status line"));
    }
    let status = words
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Malformed("status code"))?;
    let mut framing = Framing::Length(0);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            framing = Framing::Length(
                value
                    .parse()
                    .map_err(|_| HttpError::Malformed("content-length"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && value.eq_ignore_ascii_case("chunked")
        {
            framing = Framing::Chunked;
        }
    }
    Ok((status, framing))
}

/// Decodes a complete chunked body from `buf`: `Some((body, consumed))` once the last chunk is in.
fn dechunk(buf: &[u8]) -> Result<Option<(Vec<u8>, usize)>, HttpError> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let Some(eol) = buf[at..].windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let size_text = std::str::from_utf8(&buf[at..at + eol])
            .map_err(|_| HttpError::Malformed("chunk size"))?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| HttpError::Malformed("chunk size"))?;
        let data = at + eol + 2;
        if size == 0 {
            // The last chunk; no trailers are expected from this server.
            return Ok((buf.len() >= data + 2).then(|| (body, data + 2)));
        }
        if buf.len() < data + size + 2 {
            return Ok(None);
        }
        body.extend_from_slice(&buf[data..data + size]);
        at = data + size + 2;
    }
}

/// One keep-alive connection to the API.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    host: String,
    buf: Vec<u8>,
    request: Vec<u8>,
}

impl Client {
    /// Connects to `addr`.
    pub async fn connect(addr: SocketAddr) -> Result<Client, HttpError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Client {
            stream,
            host: addr.to_string(),
            buf: Vec::with_capacity(16 * 1024),
            request: Vec::with_capacity(1024),
        })
    }

    /// Creates the user `user` with `password` (`POST /v1/users`) and logs in as `client_id` (`POST /oauth/token`,
    /// the password grant): the access token. An error names the step and what the cloud answered.
    pub async fn sign_up(
        &mut self,
        user: &str,
        password: &str,
        client_id: &str,
    ) -> Result<String, String> {
        let form = serde_urlencoded::to_string([("username", user), ("password", password)])
            .map_err(|e| e.to_string())?;
        let r = self
            .request("POST", "/v1/users", &[], Some(&form))
            .await
            .map_err(|e| e.to_string())?;
        if r.status != 200 {
            return Err(format!(
                "creating the user: {} {}",
                r.status,
                String::from_utf8_lossy(&r.body)
            ));
        }
        let form = serde_urlencoded::to_string([
            ("grant_type", "password"),
            ("client_id", client_id),
            ("client_secret", client_id),
            ("username", user),
            ("password", password),
        ])
        .map_err(|e| e.to_string())?;
        let r = self
            .request("POST", "/oauth/token", &[], Some(&form))
            .await
            .map_err(|e| e.to_string())?;
        r.json()
            .and_then(|v| v["access_token"].as_str().map(str::to_owned))
            .ok_or_else(|| {
                format!(
                    "no token: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )
            })
    }

    /// Sends a request (`headers` as `name: value` lines without line ends; a body is sent form-encoded) and reads
    /// the response.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[&str],
        form: Option<&str>,
    ) -> Result<Response, HttpError> {
        use std::io::Write as _;
        self.request.clear();
        let r = &mut self.request;
        write!(r, "{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host)?;
        for h in headers {
            write!(r, "{h}\r\n")?;
        }
        if let Some(body) = form {
            write!(
                r,
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
        } else {
            r.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.request).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> Result<(), HttpError> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HttpError::Malformed("connection closed mid-response"));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    async fn read_response(&mut self) -> Result<Response, HttpError> {
        let end = loop {
            if let Some(end) = head_end(&self.buf) {
                break end;
            }
            self.fill().await?;
        };
        let (status, framing) = parse_head(&self.buf[..end])?;
        let body = match framing {
            Framing::Length(len) => {
                while self.buf.len() < end + len {
                    self.fill().await?;
                }
                let body = self.buf[end..end + len].to_vec();
                self.buf.drain(..end + len);
                body
            }
            Framing::Chunked => loop {
                if let Some((body, used)) = dechunk(&self.buf[end..])? {
                    self.buf.drain(..end + used);
                    break body;
                }
                self.fill().await?;
            },
        };
        Ok(Response { status, body })
    }
}

/// The SSE frame marker counted by [`FrameCounter`].
const EVENT_MARK: &[u8] = b"event: ";

/// Counts SSE frames (`event: ` lines) in a byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default, Clone)]
pub struct FrameCounter {
    /// The last bytes of the previous piece (fewer than a marker): a marker cut between two pieces is found by
    /// joining them to the next piece's first bytes.
    tail: Vec<u8>,
    /// Frames seen so far.
    pub frames: u64,
    /// Bytes seen so far.
    pub bytes: u64,
}

impl FrameCounter {
    /// Feeds the next piece of the stream. The piece is searched where it lies (a SIMD substring search), not
    /// copied: only the seam with the previous piece is joined, at most twice a marker's length.
    pub fn feed(&mut self, piece: &[u8]) {
        let keep = EVENT_MARK.len() - 1;
        self.bytes += piece.len() as u64;
        if !self.tail.is_empty() {
            // The seam: the kept tail (no whole marker) and the piece's first bytes (a marker wholly in the piece
            // is counted below, so only one that starts in the tail counts here).
            let head = &piece[..piece.len().min(keep)];
            let mut seam = std::mem::take(&mut self.tail);
            let tail_len = seam.len();
            seam.extend_from_slice(head);
            self.frames += memchr::memmem::find_iter(&seam, EVENT_MARK)
                .filter(|&at| at < tail_len)
                .count() as u64;
            if piece.len() < keep {
                // A short piece: the seam itself becomes the tail.
                let from = seam.len().saturating_sub(keep);
                seam.drain(..from);
                self.tail = seam;
                return;
            }
            seam.clear();
            self.tail = seam;
        }
        self.frames += memchr::memmem::find_iter(piece, EVENT_MARK).count() as u64;
        self.tail
            .extend_from_slice(&piece[piece.len().saturating_sub(keep)..]);
    }
}

/// An open event stream (`GET` of an SSE path): its connection, after the response head.
#[derive(Debug)]
pub struct EventStream {
    stream: TcpStream,
    /// What arrived with the response head.
    early: Vec<u8>,
    /// The frames counted so far.
    pub counter: FrameCounter,
}

impl EventStream {
    /// Opens `path` with the bearer `token` and waits for the response head (`200` expected).
    pub async fn open(addr: SocketAddr, path: &str, token: &str) -> Result<EventStream, HttpError> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(end) = head_end(&buf) {
                break end;
            }
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(HttpError::Malformed("event stream closed before its head"));
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let (status, _) = parse_head(&buf[..end])?;
        if status != 200 {
            return Err(HttpError::Malformed("event stream refused"));
        }
        let mut counter = FrameCounter::default();
        counter.feed(&buf[end..]);
        Ok(EventStream {
            stream,
            early: buf.split_off(end),
            counter,
        })
    }

    /// The connection and the body bytes that arrived with the head, for a reader of its own.
    pub fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.early)
    }

    /// Reads what has arrived (waiting for at least one byte) into the counter; `false` once the server closed it.
    pub async fn read_some(&mut self, buf: &mut [u8]) -> Result<bool, HttpError> {
        let n = self.stream.read(buf).await?;
        self.counter.feed(&buf[..n]);
        Ok(n > 0)
    }

    /// Counts on a thread of its own (blocking reads) until the server closes the stream or `stop` is set, storing
    /// the frame count in `frames` after every read. A subscriber measured for throughput must not wait for a turn
    /// on a runtime kept busy by the publishers, or the tool would measure itself.
    pub fn count_on_thread(
        self,
        frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) -> Result<std::thread::JoinHandle<()>, HttpError> {
        self.count_on_thread_timed(frames, stop, std::sync::Arc::default())
    }

    /// [`EventStream::count_on_thread`], telling the thread's own CPU time, in clock ticks, to `cpu_ticks` as it
    /// runs (every 20 ms) and when it ends.
    pub fn count_on_thread_timed(
        self,
        frames: std::sync::Arc<std::sync::atomic::AtomicU64>,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        cpu_ticks: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Result<std::thread::JoinHandle<()>, HttpError> {
        use std::io::Read as _;
        use std::sync::atomic::Ordering;
        let mut stream = self.stream.into_std()?;
        stream.set_nonblocking(false)?;
        stream.set_read_timeout(Some(std::time::Duration::from_millis(100)))?;
        let mut counter = self.counter;
        Ok(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            // The thread's own CPU time, published every 20 ms (a clock tick is 10 ms; reading it costs a file read,
            // so not after every read).
            let mut told = std::time::Instant::now();
            let tell = |cpu_ticks: &std::sync::atomic::AtomicU64| {
                if let Some(t) = crate::procfs::thread_cpu_ticks() {
                    cpu_ticks.store(t, Ordering::Relaxed);
                }
            };
            tell(&cpu_ticks);
            while !stop.load(Ordering::Relaxed) {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        counter.feed(&buf[..n]);
                        frames.store(counter.frames, Ordering::Relaxed);
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => break,
                }
                if told.elapsed() >= std::time::Duration::from_millis(20) {
                    told = std::time::Instant::now();
                    tell(&cpu_ticks);
                }
            }
            tell(&cpu_ticks);
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(head_end(head), Some(head.len()));
        assert_eq!(parse_head(head).unwrap(), (200, Framing::Length(12)));
        let head = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(head).unwrap(), (404, Framing::Chunked));
        assert!(parse_head(b"SPDY 200\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 abc\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200\r\ncontent-length: x\r\n\r\n").is_err());
    }

    #[test]
    fn chunked_bodies() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n";
        assert_eq!(
            dechunk(body).unwrap(),
            Some((b"hello world".to_vec(), body.len()))
        );
        for cut in 0..body.len() {
            assert_eq!(dechunk(&body[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(dechunk(b"zz\r\n").is_err());
    }

    #[test]
    fn frames_are_counted_across_any_cut() {
        let frame = b"event: temp\ndata: {\"data\":\"event: not\"}\n\n";
        let stream: Vec<u8> = frame
            .iter()
            .copied()
            .cycle()
            .take(frame.len() * 5)
            .collect();
        for cut in 1..stream.len() {
            let mut c = FrameCounter::default();
            for piece in stream.chunks(cut) {
                c.feed(piece);
            }
            // Two markers per frame: the name line and the marker inside the data.
            assert_eq!(
                (c.frames, c.bytes),
                (10, stream.len() as u64),
                "pieces of {cut}"
            );
        }
    }
}
