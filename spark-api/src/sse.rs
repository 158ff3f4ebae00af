//! A pure server-sent-events parser: bytes in, events out, no IO and no clock.
//!
//! The parser follows the WHATWG event-stream grammar: lines end in LF, CR or CRLF (a CRLF split across two chunks is
//! still one line end), `:` starts a comment, `field: value` drops one optional space after the colon, `data` lines
//! accumulate joined by `\n`, a blank line dispatches the event, a leading UTF-8 byte-order mark is skipped. Input may
//! arrive in chunks of any size, including one byte at a time; the events produced never depend on the chunking.
//!
//! The caller feeds bytes with [`SseParser::handle_input`] and drains results with [`SseParser::poll_event`]. A hostile
//! peer cannot make the parser grow without bound: a line or an event longer than the configured limit is dropped
//! whole and reported once as [`SseError::EventTooLarge`]; the following events are parsed normally.
//!
//! ```
//! use spark_api::sse::{SseItem, SseParser};
//!
//! let stream = b":ok\n\nevent: temperature\ndata: {\"data\":\"21.5\",\"ttl\":60}\r\n\r\nevent: door\ndata: open\n\n";
//! // However the bytes arrive (here three at a time), the same events come out.
//! let mut parser = SseParser::new();
//! let mut events = Vec::new();
//! for chunk in stream.chunks(3) {
//!     parser.handle_input(chunk);
//!     while let Some(item) = parser.poll_event() {
//!         let SseItem::Event(e) = item else { panic!("{item:?}") };
//!         events.push((e.event.unwrap_or_default(), e.data));
//!     }
//! }
//! assert_eq!(events, [
//!     ("temperature".to_owned(), r#"{"data":"21.5","ttl":60}"#.to_owned()),
//!     ("door".to_owned(), "open".to_owned()),
//! ]);
//! assert_eq!(parser.comments_seen(), 1); // the keep-alive
//! assert!(!parser.has_partial());
//! ```

use std::collections::VecDeque;

/// One dispatched server-sent event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, or `None` when the event had no such line (the spec calls that type `message`).
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
    /// The last `id:` field seen on this event, if any.
    pub id: Option<String>,
    /// The `retry:` field (milliseconds), if a valid one was seen.
    pub retry: Option<u64>,
}

/// A problem in the stream, reported in order with the events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SseError {
    /// An event (or one of its lines) exceeded the parser's size limit and was dropped.
    #[error("server-sent event larger than {limit} bytes dropped")]
    EventTooLarge {
        /// The configured limit in bytes.
        limit: usize,
    },
}

/// What [`SseParser::poll_event`] hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum SseItem {
    /// A complete event.
    Event(SseEvent),
    /// A dropped oversized event.
    Error(SseError),
}

/// The default limit on one event (all its lines together), in bytes.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 1 << 20;

/// The incremental parser. See the module documentation.
#[derive(Debug, Clone)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended in CR: an LF at the start of the next chunk belongs to that line end.
    after_cr: bool,
    /// The stream start has not yet been passed (a BOM may still be skipped).
    at_start: bool,
    /// How many bytes of a possible BOM have been matched at the start.
    bom_matched: u8,
    /// The current line is being discarded because it overflowed.
    discarding_line: bool,
    /// The current event overflowed: discard fields until the blank line.
    discarding_event: bool,
    event: Option<String>,
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
    /// Bytes accounted to the current event.
    event_size: usize,
    max_event_size: usize,
    ready: VecDeque<SseItem>,
    comments: u64,
}

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

impl Default for SseParser {
    fn default() -> Self {
        Self::new()
    }
}

impl SseParser {
    /// A parser with the default size limit ([`DEFAULT_MAX_EVENT_SIZE`]).
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A parser that drops any event larger than `max_event_size` bytes.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        SseParser {
            line: Vec::new(),
            after_cr: false,
            at_start: true,
            bom_matched: 0,
            discarding_line: false,
            discarding_event: false,
            event: None,
            data: String::new(),
            has_data: false,
            id: None,
            retry: None,
            event_size: 0,
            max_event_size: max_event_size.max(1),
            ready: VecDeque::new(),
            comments: 0,
        }
    }

    /// How many comment lines (keep-alives such as `:ok`) have been seen.
    pub fn comments_seen(&self) -> u64 {
        self.comments
    }

    /// Feed the next received bytes.
    pub fn handle_input(&mut self, mut input: &[u8]) {
        if self.at_start {
            input = self.skip_bom(input);
            if self.at_start {
                return;
            }
        }
        if self.after_cr && !input.is_empty() {
            self.after_cr = false;
            if input[0] == b'\n' {
                input = &input[1..];
            }
        }
        while !input.is_empty() {
            match memchr::memchr2(b'\n', b'\r', input) {
                Some(end) => {
                    let terminator = input[end];
                    if self.line.is_empty() && !self.discarding_line {
                        self.process_line_bytes(&input[..end]);
                    } else {
                        self.append_partial(&input[..end]);
                        let line = std::mem::take(&mut self.line);
                        if self.discarding_line {
                            self.discarding_line = false;
                        } else {
                            self.process_line_bytes(&line);
                        }
                        // Keep the allocation for the next partial line.
                        self.line = line;
                        self.line.clear();
                    }
                    input = &input[end + 1..];
                    if terminator == b'\r' {
                        match input.first() {
                            Some(b'\n') => input = &input[1..],
                            Some(_) => {}
                            None => self.after_cr = true,
                        }
                    }
                }
                None => {
                    self.append_partial(input);
                    input = &[];
                }
            }
        }
    }

    /// The next event or error, in stream order.
    pub fn poll_event(&mut self) -> Option<SseItem> {
        self.ready.pop_front()
    }

    /// Whether a partial line or a partial event is buffered (bytes that a closed connection would lose).
    pub fn has_partial(&self) -> bool {
        !self.line.is_empty() || self.has_data || self.event.is_some() || self.discarding_event
    }

    /// Forget any partial line or event, as when the connection is replaced by a new one.
    pub fn reset(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.at_start = true;
        self.bom_matched = 0;
        self.discarding_line = false;
        self.clear_event();
    }

    fn skip_bom<'a>(&mut self, input: &'a [u8]) -> &'a [u8] {
        let mut consumed = 0;
        while (self.bom_matched as usize) < BOM.len() {
            match input.get(consumed) {
                None => return &[],
                Some(&b) if b == BOM[self.bom_matched as usize] => {
                    self.bom_matched += 1;
                    consumed += 1;
                }
                Some(_) => {
                    // Not a BOM: the bytes matched in earlier chunks are ordinary input, and so is all of this one.
                    self.at_start = false;
                    let earlier = self.bom_matched as usize - consumed;
                    self.bom_matched = 0;
                    if earlier > 0 {
                        self.handle_input(&BOM[..earlier]);
                    }
                    return input;
                }
            }
        }
        self.at_start = false;
        &input[consumed..]
    }

    fn append_partial(&mut self, bytes: &[u8]) {
        if self.discarding_line {
            return;
        }
        if self.line.len() + bytes.len() > self.max_event_size {
            self.line.clear();
            self.discarding_line = true;
            self.overflow();
            return;
        }
        self.line.extend_from_slice(bytes);
    }

    fn overflow(&mut self) {
        if !self.discarding_event {
            self.ready
                .push_back(SseItem::Error(SseError::EventTooLarge {
                    limit: self.max_event_size,
                }));
        }
        self.discarding_event = true;
        self.event = None;
        self.data = String::new();
        self.has_data = false;
        self.id = None;
        self.retry = None;
        self.event_size = 0;
    }

    fn clear_event(&mut self) {
        self.discarding_event = false;
        self.event = None;
        self.data.clear();
        self.has_data = false;
        self.id = None;
        self.retry = None;
        self.event_size = 0;
    }

    fn process_line_bytes(&mut self, line: &[u8]) {
        if line.is_empty() {
            self.dispatch();
            return;
        }
        if line.len() > self.max_event_size {
            // The same verdict whether the line arrived whole or in pieces (see `append_partial`).
            self.overflow();
            return;
        }
        if line[0] == b':' {
            self.comments = self.comments.wrapping_add(1);
            return;
        }
        if self.discarding_event {
            return;
        }
        self.event_size += line.len() + 1;
        if self.event_size > self.max_event_size {
            self.overflow();
            return;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(colon) => {
                let value = &line[colon + 1..];
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (&line[..colon], value)
            }
            None => (line, &[][..]),
        };
        match name {
            b"event" => self.event = Some(lossy(value)),
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.has_data = true;
                match std::str::from_utf8(value) {
                    Ok(text) => self.data.push_str(text),
                    Err(_) => self.data.push_str(&String::from_utf8_lossy(value)),
                }
            }
            // The spec ignores an id containing NUL.
            b"id" if !value.contains(&0) => self.id = Some(lossy(value)),
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                self.retry = lossy(value).parse().ok();
            }
            _ => {}
        }
    }

    fn dispatch(&mut self) {
        if self.discarding_event {
            self.clear_event();
            return;
        }
        if !self.has_data {
            // The spec dispatches nothing for an event without data lines.
            self.clear_event();
            return;
        }
        let event = SseEvent {
            event: self.event.take(),
            data: std::mem::take(&mut self.data),
            id: self.id.take(),
            retry: self.retry.take(),
        };
        self.clear_event();
        self.ready.push_back(SseItem::Event(event));
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseItem> {
        let mut parser = SseParser::new();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.handle_input(chunk);
            while let Some(item) = parser.poll_event() {
                out.push(item);
            }
        }
        out
    }

    fn ev(name: Option<&str>, data: &str) -> SseItem {
        SseItem::Event(SseEvent {
            event: name.map(str::to_owned),
            data: data.to_owned(),
            id: None,
            retry: None,
        })
    }

    const SPARK: &[u8] = b":ok\n\nevent: motion-detected\ndata: {\"data\":\"23:23:44\",\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:20:34.638Z\",\"coreid\":\"0123456789abcdef\"}\n\n\n";

    #[test]
    fn spark_local_cloud_stream() {
        let items = parse_all(&[SPARK]);
        assert_eq!(
            items,
            vec![ev(
                Some("motion-detected"),
                "{\"data\":\"23:23:44\",\"ttl\":\"60\",\"published_at\":\"2014-05-28T19:20:34.638Z\",\"coreid\":\"0123456789abcdef\"}"
            )]
        );
    }

    #[test]
    fn one_byte_chunks_equal_whole() {
        let whole = parse_all(&[SPARK]);
        let chunks: Vec<&[u8]> = SPARK.chunks(1).collect();
        assert_eq!(parse_all(&chunks), whole);
    }

    #[test]
    fn crlf_and_cr_line_ends() {
        let items = parse_all(&[b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r"]);
        assert_eq!(items, vec![ev(Some("a"), "1"), ev(Some("b"), "2")]);
        // CRLF split between chunks is one line end, not two.
        let items = parse_all(&[b"event: a\r", b"\ndata: 1\r", b"\n\r", b"\n"]);
        assert_eq!(items, vec![ev(Some("a"), "1")]);
    }

    #[test]
    fn multi_line_data_and_no_space() {
        let items = parse_all(&[b"data:x\ndata:  y\ndata\n\n"]);
        assert_eq!(items, vec![ev(None, "x\n y\n")]);
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let items = parse_all(&[b"event: lonely\n\n\n\n:keepalive\n\n"]);
        assert!(items.is_empty());
    }

    #[test]
    fn comments_are_counted() {
        let mut parser = SseParser::new();
        parser.handle_input(b":ok\n\n:\n");
        assert_eq!(parser.comments_seen(), 2);
        assert!(parser.poll_event().is_none());
    }

    #[test]
    fn id_and_retry() {
        let items = parse_all(&[b"id: 7\nretry: 1500\nretry: x\ndata: d\n\n"]);
        assert_eq!(
            items,
            vec![SseItem::Event(SseEvent {
                event: None,
                data: "d".into(),
                id: Some("7".into()),
                retry: Some(1500),
            })]
        );
    }

    #[test]
    fn bom_is_skipped_even_split() {
        let items = parse_all(&[&[0xEF], &[0xBB, 0xBF], b"data: a\n\n"]);
        assert_eq!(items, vec![ev(None, "a")]);
        // A partial BOM followed by other bytes is replayed as data.
        let items = parse_all(&[&[0xEF], b"data: a\n\n"]);
        assert_eq!(items, vec![]);
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let items = parse_all(&[b"data: \xff\n\n"]);
        assert_eq!(items, vec![ev(None, "\u{fffd}")]);
    }

    #[test]
    fn oversized_event_is_dropped_and_reported_once() {
        let mut parser = SseParser::with_max_event_size(16);
        parser.handle_input(b"data: 0123456789abcdef0123456789\ndata: more\n\ndata: ok\n\n");
        assert_eq!(
            parser.poll_event(),
            Some(SseItem::Error(SseError::EventTooLarge { limit: 16 }))
        );
        assert_eq!(parser.poll_event(), Some(ev(None, "ok")));
        assert_eq!(parser.poll_event(), None);
    }

    #[test]
    fn oversized_partial_line_across_chunks() {
        let mut parser = SseParser::with_max_event_size(8);
        for _ in 0..100 {
            parser.handle_input(b"xxxxxxx");
        }
        parser.handle_input(b"\n\ndata: y\n\n");
        assert_eq!(
            parser.poll_event(),
            Some(SseItem::Error(SseError::EventTooLarge { limit: 8 }))
        );
        assert_eq!(parser.poll_event(), Some(ev(None, "y")));
        assert!(!parser.has_partial());
    }

    #[test]
    fn partial_state_and_reset() {
        let mut parser = SseParser::new();
        parser.handle_input(b"event: a\ndata: half");
        assert!(parser.has_partial());
        parser.reset();
        assert!(!parser.has_partial());
        parser.handle_input(b"\n\n");
        assert_eq!(parser.poll_event(), None);
    }
}
