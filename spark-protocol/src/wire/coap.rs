//! The CoAP (RFC 7252) message codec as the Spark dialect uses it: header, token, options and payload.
//!
//! Two ways in, smoltcp style:
//!
//! - [`Packet`] is a zero-copy view over a buffer, with getters (and setters for mutable buffers).
//!   [`Packet::new_checked`] validates the whole message once; after that no getter panics.
//! - [`Repr`] is the parsed, validated form. [`Repr::parse`] accepts any byte string and returns either a
//!   `Repr` or a typed [`Error`], never a panic; [`Repr::emit`] writes exactly [`Repr::buffer_len`] bytes.
//!
//! The option encoding is canonical (a delta or a length has exactly one encoding: 0..=12 in the nibble,
//! 13..=268 in the one-byte extended form, 269..=65804 in the two-byte form), so a message that parses
//! re-emits to the very same bytes.
//!
//! One leniency, because the Spark Core relies on it: a payload marker followed by nothing (RFC 7252
//! calls that a format error) is accepted. The Core's event encoder writes exactly that for an event
//! published with empty (non-null) data. [`Repr::payload`] is therefore an `Option`: `None` means no
//! marker, `Some(&[])` means a marker and no bytes.
//!
//! ```
//! use spark_protocol::wire::coap::{CoapOption, Code, MessageType, OptionNumber, Options, Packet, Repr, Token};
//!
//! // A Describe request, built as a `Repr` and emitted into a caller's buffer.
//! let path = [CoapOption::new(OptionNumber::UriPath, b"d")];
//! let repr = Repr {
//!     msg_type: MessageType::Confirmable,
//!     code: Code::Get,
//!     message_id: 0x1234,
//!     token: Token::from_byte(7),
//!     options: Options::new(&path)?,
//!     payload: None,
//! };
//! let mut buf = [0u8; 16];
//! let n = repr.emit(&mut buf)?;
//! assert_eq!(n, repr.buffer_len());
//! assert_eq!(&buf[..n], b"\x41\x01\x12\x34\x07\xb1d");
//!
//! // The same bytes as a checked view: getters, and setters on a mutable buffer.
//! let mut packet = Packet::new_checked(&mut buf[..n])?;
//! assert_eq!(packet.code(), Code::Get);
//! packet.set_message_id(0x1235);
//! let packet = Packet::new_checked(packet.into_inner() as &[u8])?;
//! assert_eq!(Repr::parse(&packet)?.message_id, 0x1235);
//! assert_eq!(Repr::parse_bytes(&[0x41]), Err(spark_protocol::wire::Error::Truncated));
//! # Ok::<(), spark_protocol::wire::Error>(())
//! ```

use core::fmt;

use super::Error;

/// The only CoAP version there is (RFC 7252 §3).
pub const VERSION: u8 = 1;
/// Length of the fixed header: version/type/token length, code, message id.
pub const HEADER_LEN: usize = 4;
/// Largest token RFC 7252 allows. The Spark dialect uses 0 or 1 byte.
pub const MAX_TOKEN_LEN: usize = 8;
/// The byte that separates options from the payload.
pub const PAYLOAD_MARKER: u8 = 0xFF;
/// Largest option delta or length the extended encoding can express (`269 + 0xFFFF`).
pub const MAX_OPTION_EXTENDED: usize = 269 + 0xFFFF;

/// Byte positions of the fixed header.
mod field {
    pub(super) const VER_TYPE_TKL: usize = 0;
    pub(super) const CODE: usize = 1;
    pub(super) const MESSAGE_ID: core::ops::Range<usize> = 2..4;
    pub(super) const TOKEN: usize = 4;
}

/// Declares a numeric code as an enum with an `Unknown` arm. Equality, ordering and hashing follow the
/// numeric value, so `Unknown(0x02)` built by hand equals `Post`.
macro_rules! enum_with_unknown {
    (
        $(#[$meta:meta])*
        pub enum $name:ident($ty:ty) {
            $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value this crate has no name for.
            Unknown($ty),
        }

        impl From<$ty> for $name {
            fn from(value: $ty) -> Self {
                match value {
                    $( $value => $name::$variant, )+
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for $ty {
            fn from(value: $name) -> $ty {
                match value {
                    $( $name::$variant => $value, )+
                    $name::Unknown(other) => other,
                }
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                <$ty>::from(*self) == <$ty>::from(*other)
            }
        }
        impl Eq for $name {}
        impl PartialOrd for $name {
            fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $name {
            fn cmp(&self, other: &Self) -> core::cmp::Ordering {
                <$ty>::from(*self).cmp(&<$ty>::from(*other))
            }
        }
        impl core::hash::Hash for $name {
            fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
                <$ty>::from(*self).hash(state)
            }
        }
    };
}

/// The message type, two bits of the first header byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    /// CON: the receiver must acknowledge.
    Confirmable,
    /// NON: no acknowledgement.
    NonConfirmable,
    /// ACK: acknowledges a CON with the same message id, possibly carrying the response.
    Acknowledgement,
    /// RST: the receiver could not process a message.
    Reset,
}

impl MessageType {
    /// The type encoded in the two low bits of `bits`.
    #[must_use]
    pub const fn from_bits(bits: u8) -> Self {
        match bits & 0b11 {
            0 => MessageType::Confirmable,
            1 => MessageType::NonConfirmable,
            2 => MessageType::Acknowledgement,
            _ => MessageType::Reset,
        }
    }

    /// The two-bit encoding.
    #[must_use]
    pub const fn bits(self) -> u8 {
        match self {
            MessageType::Confirmable => 0,
            MessageType::NonConfirmable => 1,
            MessageType::Acknowledgement => 2,
            MessageType::Reset => 3,
        }
    }
}

enum_with_unknown! {
    /// A request method or response code, `c.dd` packed as `c << 5 | dd`.
    pub enum Code(u8) {
        /// 0.00, an empty message (ping, empty ACK, RST).
        Empty = 0x00,
        /// 0.01 GET.
        Get = 0x01,
        /// 0.02 POST.
        Post = 0x02,
        /// 0.03 PUT.
        Put = 0x03,
        /// 0.04 DELETE.
        Delete = 0x04,
        /// 2.01 Created.
        Created = 0x41,
        /// 2.02 Deleted.
        Deleted = 0x42,
        /// 2.03 Valid.
        Valid = 0x43,
        /// 2.04 Changed: function returns, update ready, chunk received.
        Changed = 0x44,
        /// 2.05 Content: variable values, descriptions, time.
        Content = 0x45,
        /// 4.00 Bad Request: a bad chunk, an event slowdown.
        BadRequest = 0x80,
        /// 4.01 Unauthorized.
        Unauthorized = 0x81,
        /// 4.02 Bad Option.
        BadOption = 0x82,
        /// 4.03 Forbidden.
        Forbidden = 0x83,
        /// 4.04 Not Found.
        NotFound = 0x84,
        /// 4.05 Method Not Allowed.
        MethodNotAllowed = 0x85,
        /// 5.00 Internal Server Error.
        InternalServerError = 0xA0,
        /// 5.01 Not Implemented.
        NotImplemented = 0xA1,
        /// 5.03 Service Unavailable (Device OS refusing an update).
        ServiceUnavailable = 0xA3,
    }
}

impl Code {
    /// The class, the `c` of `c.dd` (0 request, 2 success, 4 client error, 5 server error).
    #[must_use]
    pub fn class(self) -> u8 {
        u8::from(self) >> 5
    }

    /// The detail, the `dd` of `c.dd`.
    #[must_use]
    pub fn detail(self) -> u8 {
        u8::from(self) & 0x1F
    }

    /// Whether this is 0.00, the code of an empty message.
    #[must_use]
    pub fn is_empty(self) -> bool {
        u8::from(self) == 0
    }

    /// Whether this is a request method (class 0, detail 1..=31).
    #[must_use]
    pub fn is_request(self) -> bool {
        self.class() == 0 && self.detail() != 0
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.class(), self.detail())
    }
}

enum_with_unknown! {
    /// An option number.
    pub enum OptionNumber(u16) {
        /// If-Match (1).
        IfMatch = 1,
        /// Uri-Host (3).
        UriHost = 3,
        /// ETag (4).
        ETag = 4,
        /// If-None-Match (5).
        IfNoneMatch = 5,
        /// Observe (6, RFC 7641).
        Observe = 6,
        /// Uri-Port (7).
        UriPort = 7,
        /// Location-Path (8).
        LocationPath = 8,
        /// Uri-Path (11): the resource letter, then names.
        UriPath = 11,
        /// Content-Format (12).
        ContentFormat = 12,
        /// Max-Age (14): an event's time to live.
        MaxAge = 14,
        /// Uri-Query (15): function arguments, chunk CRC and index, signal byte, subscription scope.
        UriQuery = 15,
        /// Accept (17).
        Accept = 17,
        /// Location-Query (20).
        LocationQuery = 20,
        /// Block2 (23, RFC 7959).
        Block2 = 23,
        /// Block1 (27, RFC 7959).
        Block1 = 27,
        /// Size2 (28).
        Size2 = 28,
        /// Proxy-Uri (35).
        ProxyUri = 35,
        /// Proxy-Scheme (39).
        ProxyScheme = 39,
        /// Size1 (60).
        Size1 = 60,
        /// No-Response (258, RFC 7967): Device OS marks a NON Goodbye with it.
        NoResponse = 258,
    }
}

/// A token of 0 to 8 bytes, stored inline.
#[derive(Clone, Copy)]
pub struct Token {
    len: u8,
    bytes: [u8; MAX_TOKEN_LEN],
}

impl Token {
    /// The empty token.
    pub const EMPTY: Token = Token {
        len: 0,
        bytes: [0; MAX_TOKEN_LEN],
    };

    /// A one-byte token, the form Spark requests carry.
    #[must_use]
    pub const fn from_byte(byte: u8) -> Token {
        let mut bytes = [0; MAX_TOKEN_LEN];
        bytes[0] = byte;
        Token { len: 1, bytes }
    }

    /// A token of `bytes`; [`Error::TokenLength`] when longer than 8 bytes.
    pub fn new(bytes: &[u8]) -> Result<Token, Error> {
        let mut token = Token::EMPTY;
        let dst = token
            .bytes
            .get_mut(..bytes.len())
            .ok_or(Error::TokenLength(bytes.len().min(u8::MAX as usize) as u8))?;
        dst.copy_from_slice(bytes);
        token.len = bytes.len() as u8;
        Ok(token)
    }

    /// The token bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// The token length (0..=8).
    #[must_use]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether the token is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte of a one-byte token, the way the Core reads it (`None` when empty).
    #[must_use]
    pub fn first(&self) -> Option<u8> {
        self.as_bytes().first().copied()
    }
}

impl Default for Token {
    fn default() -> Self {
        Token::EMPTY
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}
impl Eq for Token {}
impl core::hash::Hash for Token {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(")?;
        for b in self.as_bytes() {
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// One option: its number and its value bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CoapOption<'a> {
    /// The option number.
    pub number: OptionNumber,
    /// The option value, opaque bytes.
    pub value: &'a [u8],
}

impl<'a> CoapOption<'a> {
    /// An option of `number` with `value`.
    #[must_use]
    pub const fn new(number: OptionNumber, value: &'a [u8]) -> Self {
        CoapOption { number, value }
    }

    /// The value read as a CoAP uint (big-endian, no leading zeros required); `None` over 4 bytes.
    #[must_use]
    pub fn value_u32(&self) -> Option<u32> {
        read_uint(self.value)
    }
}

/// A big-endian unsigned integer of 0 to 4 bytes.
pub(crate) fn read_uint(bytes: &[u8]) -> Option<u32> {
    if bytes.len() > 4 {
        return None;
    }
    Some(bytes.iter().fold(0u32, |acc, &b| (acc << 8) | u32::from(b)))
}

/// The options of a message, in ascending number order.
///
/// Either a validated encoded region borrowed from a parsed message, or a caller's slice of
/// [`CoapOption`]s checked by [`Options::new`]. Both forms compare equal when they hold the same
/// options.
#[derive(Clone, Copy)]
pub struct Options<'a> {
    inner: OptionsInner<'a>,
}

#[derive(Clone, Copy)]
enum OptionsInner<'a> {
    Encoded(&'a [u8]),
    List(&'a [CoapOption<'a>]),
}

impl<'a> Options<'a> {
    /// No options.
    pub const EMPTY: Options<'static> = Options {
        inner: OptionsInner::List(&[]),
    };

    /// Options from a caller's list, which must be in ascending (non-decreasing) number order, with
    /// each value at most [`MAX_OPTION_EXTENDED`] bytes long.
    pub fn new(list: &'a [CoapOption<'a>]) -> Result<Self, Error> {
        let mut prev = 0u16;
        for option in list {
            let number = u16::from(option.number);
            if number < prev {
                return Err(Error::OptionOrder);
            }
            if option.value.len() > MAX_OPTION_EXTENDED {
                return Err(Error::OptionTooLong);
            }
            prev = number;
        }
        Ok(Options {
            inner: OptionsInner::List(list),
        })
    }

    /// Options from already-validated encoded bytes (no payload marker inside).
    pub(crate) const fn from_encoded(bytes: &'a [u8]) -> Self {
        Options {
            inner: OptionsInner::Encoded(bytes),
        }
    }

    /// The options in order.
    #[must_use]
    pub fn iter(&self) -> OptionsIter<'a> {
        OptionsIter {
            inner: match self.inner {
                OptionsInner::Encoded(bytes) => IterInner::Encoded {
                    bytes,
                    pos: 0,
                    prev: 0,
                },
                OptionsInner::List(list) => IterInner::List(list.iter()),
            },
        }
    }

    /// Whether there are no options.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        match self.inner {
            OptionsInner::Encoded(bytes) => bytes.is_empty(),
            OptionsInner::List(list) => list.is_empty(),
        }
    }

    /// How many options there are.
    #[must_use]
    pub fn len(&self) -> usize {
        match self.inner {
            OptionsInner::Encoded(_) => self.iter().count(),
            OptionsInner::List(list) => list.len(),
        }
    }

    /// The first option, if any.
    #[must_use]
    pub fn first(&self) -> Option<CoapOption<'a>> {
        self.iter().next()
    }

    /// The first option numbered `number`.
    #[must_use]
    pub fn get(&self, number: OptionNumber) -> Option<CoapOption<'a>> {
        self.iter().find(|o| o.number == number)
    }

    /// The values of every option numbered `number`, in order.
    pub fn values(&self, number: OptionNumber) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        self.iter()
            .filter(move |o| o.number == number)
            .map(|o| o.value)
    }

    /// How many bytes the options take once encoded.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        match self.inner {
            OptionsInner::Encoded(bytes) => bytes.len(),
            OptionsInner::List(list) => {
                let mut prev = 0u16;
                let mut len = 0;
                for option in list {
                    let number = u16::from(option.number);
                    len += option_len(number - prev, option.value.len());
                    prev = number;
                }
                len
            }
        }
    }

    /// Writes the options as the last ones of a message.
    fn encode<S: Sink>(&self, sink: &mut S) {
        match self.inner {
            OptionsInner::Encoded(bytes) => sink.put(bytes),
            OptionsInner::List(list) => {
                let mut prev = 0;
                for option in list {
                    let number = u16::from(option.number);
                    put_option(sink, number - prev, option.value);
                    prev = number;
                }
            }
        }
    }
}

impl Default for Options<'_> {
    fn default() -> Self {
        Options::EMPTY
    }
}

impl PartialEq for Options<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}
impl Eq for Options<'_> {}

impl fmt::Debug for Options<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<'a> IntoIterator for &Options<'a> {
    type Item = CoapOption<'a>;
    type IntoIter = OptionsIter<'a>;
    fn into_iter(self) -> OptionsIter<'a> {
        self.iter()
    }
}

/// Iterator over [`Options`].
#[derive(Clone)]
pub struct OptionsIter<'a> {
    inner: IterInner<'a>,
}

#[derive(Clone)]
enum IterInner<'a> {
    Encoded {
        bytes: &'a [u8],
        pos: usize,
        prev: u16,
    },
    List(core::slice::Iter<'a, CoapOption<'a>>),
}

impl<'a> Iterator for OptionsIter<'a> {
    type Item = CoapOption<'a>;

    fn next(&mut self) -> Option<CoapOption<'a>> {
        match &mut self.inner {
            IterInner::List(iter) => iter.next().copied(),
            IterInner::Encoded { bytes, pos, prev } => {
                // The region was validated when it was parsed; a decoding error here can only mean
                // misuse and simply ends the iteration.
                match read_option(bytes, *pos, *prev) {
                    Ok(Some(raw)) => {
                        *pos = raw.end;
                        *prev = raw.number;
                        Some(CoapOption {
                            number: raw.number.into(),
                            value: bytes.get(raw.value.clone()).unwrap_or_default(),
                        })
                    }
                    _ => {
                        *pos = bytes.len();
                        None
                    }
                }
            }
        }
    }
}

/// One option header decoded from a buffer.
struct RawOption {
    number: u16,
    value: core::ops::Range<usize>,
    end: usize,
}

/// Decodes the option starting at `pos`; `Ok(None)` at the end of the buffer or at the payload
/// marker.
fn read_option(buf: &[u8], pos: usize, prev: u16) -> Result<Option<RawOption>, Error> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    if first == PAYLOAD_MARKER {
        return Ok(None);
    }
    let mut at = pos + 1;
    let delta = read_extended(buf, &mut at, first >> 4)?;
    let length = read_extended(buf, &mut at, first & 0x0F)?;
    let number = usize::from(prev) + delta;
    let number = u16::try_from(number).map_err(|_| Error::OptionNumber)?;
    let end = at.checked_add(length).ok_or(Error::Truncated)?;
    if end > buf.len() {
        return Err(Error::Truncated);
    }
    Ok(Some(RawOption {
        number,
        value: at..end,
        end,
    }))
}

/// Reads the value of a delta or length nibble, with its extended bytes.
fn read_extended(buf: &[u8], at: &mut usize, nibble: u8) -> Result<usize, Error> {
    match nibble {
        0..=12 => Ok(usize::from(nibble)),
        13 => {
            let b = *buf.get(*at).ok_or(Error::Truncated)?;
            *at += 1;
            Ok(13 + usize::from(b))
        }
        14 => {
            let bytes = buf.get(*at..*at + 2).ok_or(Error::Truncated)?;
            *at += 2;
            Ok(269 + usize::from(u16::from_be_bytes([bytes[0], bytes[1]])))
        }
        // 15 is reserved for the payload marker and never valid in an option header.
        _ => Err(Error::ReservedOptionNibble),
    }
}

/// The nibble and extended byte count for a delta or length.
const fn extended(value: usize) -> (u8, usize) {
    if value < 13 {
        (value as u8, 0)
    } else if value < 269 {
        (13, 1)
    } else {
        (14, 2)
    }
}

/// Encoded size of one option.
const fn option_len(delta: u16, value_len: usize) -> usize {
    1 + extended(delta as usize).1 + extended(value_len).1 + value_len
}

fn put_extended<S: Sink>(sink: &mut S, value: usize) {
    match extended(value).1 {
        0 => {}
        1 => sink.put(&[(value - 13) as u8]),
        _ => sink.put(&((value - 269) as u16).to_be_bytes()),
    }
}

/// Writes one option header and value. `value.len()` must be at most [`MAX_OPTION_EXTENDED`].
fn put_option<S: Sink>(sink: &mut S, delta: u16, value: &[u8]) {
    let (dn, _) = extended(usize::from(delta));
    let (ln, _) = extended(value.len());
    sink.put(&[(dn << 4) | ln]);
    put_extended(sink, usize::from(delta));
    put_extended(sink, value.len());
    sink.put(value);
}

/// Where an encoder writes: a byte counter (for `buffer_len`) or a slice (for `emit`).
pub(crate) trait Sink {
    /// Appends bytes.
    fn put(&mut self, bytes: &[u8]);
}

/// Counts bytes.
#[derive(Default)]
pub(crate) struct Counter(pub(crate) usize);

impl Sink for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Writes into a slice; a piece that does not fit is skipped but counted, so `pos` ends at the
/// length the whole message needs.
pub(crate) struct SliceSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Sink for SliceSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let end = self.pos + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.pos..end) {
            dst.copy_from_slice(bytes);
        }
        self.pos = end;
    }
}

/// Writes as much as fits into a slice and drops the rest.
struct PrefixSink<'b> {
    buf: &'b mut [u8],
    pos: usize,
}

impl Sink for PrefixSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        let start = self.pos.min(self.buf.len());
        let room = self.buf.len() - start;
        let n = room.min(bytes.len());
        self.buf[start..start + n].copy_from_slice(&bytes[..n]);
        self.pos += bytes.len();
    }
}

/// Something that encodes itself as one CoAP message; gives `buffer_len` and `emit` from one routine,
/// so the two can never disagree.
pub(crate) trait Encode {
    /// Writes the whole message.
    fn encode<S: Sink>(&self, sink: &mut S);

    /// The encoded size.
    fn encoded_len(&self) -> usize {
        let mut counter = Counter(0);
        self.encode(&mut counter);
        counter.0
    }

    /// Checks what the types alone cannot (value lengths the encoding can express, ...).
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }

    /// Writes into the front of `buf` in one pass; returns the length written. When `buf` is too
    /// short the pass still counts every byte, so the error says how many are required (what was
    /// written into `buf` before that is unspecified).
    fn encode_into(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.check()?;
        let mut sink = SliceSink { buf, pos: 0 };
        self.encode(&mut sink);
        if sink.pos > sink.buf.len() {
            return Err(Error::InsufficientSize { required: sink.pos });
        }
        Ok(sink.pos)
    }
}

/// A streaming message encoder: the header, then options in ascending order, then the payload.
pub(crate) struct Encoder<'s, S: Sink> {
    sink: &'s mut S,
    prev: u16,
}

impl<'s, S: Sink> Encoder<'s, S> {
    /// Writes the header and token.
    pub(crate) fn new(
        sink: &'s mut S,
        msg_type: MessageType,
        code: Code,
        message_id: u16,
        token: &Token,
    ) -> Self {
        let first = (VERSION << 6) | (msg_type.bits() << 4) | token.len;
        sink.put(&[first, code.into()]);
        sink.put(&message_id.to_be_bytes());
        sink.put(token.as_bytes());
        Encoder { sink, prev: 0 }
    }

    /// Writes one option; numbers must not decrease and values must fit [`MAX_OPTION_EXTENDED`]
    /// (every caller in this crate writes values bounded by their type or checked beforehand).
    pub(crate) fn option(&mut self, number: OptionNumber, value: &[u8]) -> &mut Self {
        let number = u16::from(number);
        debug_assert!(number >= self.prev && value.len() <= MAX_OPTION_EXTENDED);
        put_option(self.sink, number.saturating_sub(self.prev), value);
        self.prev = number;
        self
    }

    /// Writes the last options of a message (nothing but the payload follows).
    pub(crate) fn final_options(&mut self, options: &Options<'_>) -> &mut Self {
        debug_assert_eq!(self.prev, 0);
        options.encode(self.sink);
        self
    }

    /// Writes the payload marker and the payload.
    pub(crate) fn payload(&mut self, payload: &[u8]) {
        self.sink.put(&[PAYLOAD_MARKER]);
        self.sink.put(payload);
    }

    /// Appends bytes to a payload started with [`Encoder::payload`].
    pub(crate) fn payload_more(&mut self, bytes: &[u8]) {
        self.sink.put(bytes);
    }

    /// Writes the payload marker and a payload given in pieces.
    pub(crate) fn payload_parts(&mut self, parts: &[&[u8]]) {
        self.sink.put(&[PAYLOAD_MARKER]);
        for part in parts {
            self.sink.put(part);
        }
    }

    /// Writes the payload marker and payload when there is one.
    pub(crate) fn optional_payload(&mut self, payload: Option<&[u8]>) {
        if let Some(payload) = payload {
            self.payload(payload);
        }
    }
}

/// Where the parts of a message lie in its buffer.
#[derive(Debug, Clone)]
struct Layout {
    options: core::ops::Range<usize>,
    payload: Option<core::ops::Range<usize>>,
}

/// Validates a whole message and locates its parts.
fn layout(buf: &[u8]) -> Result<Layout, Error> {
    if buf.len() < HEADER_LEN {
        return Err(Error::Truncated);
    }
    let tkl = buf[field::VER_TYPE_TKL] & 0x0F;
    if usize::from(tkl) > MAX_TOKEN_LEN {
        return Err(Error::TokenLength(tkl));
    }
    let start = field::TOKEN + usize::from(tkl);
    if start > buf.len() {
        return Err(Error::Truncated);
    }
    let mut pos = start;
    let mut prev = 0u16;
    while let Some(raw) = read_option(buf, pos, prev)? {
        pos = raw.end;
        prev = raw.number;
    }
    let payload = (pos < buf.len()).then(|| pos + 1..buf.len());
    Ok(Layout {
        options: start..pos,
        payload,
    })
}

/// A zero-copy view of a CoAP message.
///
/// Build it with [`Packet::new_checked`] for untrusted bytes; the getters never panic afterwards.
/// With [`Packet::new_unchecked`] the header getters may panic on a buffer shorter than the header.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without validating it.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>, Error> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Validates the whole message: header length, token length, every option header, option number
    /// range. The version is not checked here (see [`Repr::parse`]).
    pub fn check_len(&self) -> Result<(), Error> {
        layout(self.buffer.as_ref()).map(|_| ())
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole message.
    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    /// The version field (1 for every message RFC 7252 knows).
    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TYPE_TKL] >> 6
    }

    /// The message type.
    pub fn msg_type(&self) -> MessageType {
        MessageType::from_bits(self.buffer.as_ref()[field::VER_TYPE_TKL] >> 4)
    }

    /// The token length field (0..=15 as encoded; 0..=8 after `check_len`).
    pub fn token_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_TYPE_TKL] & 0x0F)
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.buffer.as_ref()[field::CODE].into()
    }

    /// The message id.
    pub fn message_id(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::MESSAGE_ID];
        u16::from_be_bytes([b[0], b[1]])
    }

    /// The token bytes (empty when the buffer is too short to hold them).
    pub fn token(&self) -> &[u8] {
        let end = field::TOKEN + self.token_len();
        self.buffer
            .as_ref()
            .get(field::TOKEN..end)
            .unwrap_or_default()
    }

    /// The options (empty when the message does not validate).
    pub fn options(&self) -> Options<'_> {
        let buf = self.buffer.as_ref();
        match layout(buf) {
            Ok(l) => Options::from_encoded(buf.get(l.options).unwrap_or_default()),
            Err(_) => Options::EMPTY,
        }
    }

    /// The payload after the marker; `None` without a marker (or when the message does not
    /// validate).
    pub fn payload(&self) -> Option<&[u8]> {
        let buf = self.buffer.as_ref();
        layout(buf).ok()?.payload.and_then(|r| buf.get(r))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field.
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_TYPE_TKL];
        *b = (*b & 0x3F) | (version << 6);
    }

    /// Sets the message type.
    pub fn set_msg_type(&mut self, msg_type: MessageType) {
        let b = &mut self.buffer.as_mut()[field::VER_TYPE_TKL];
        *b = (*b & 0xCF) | (msg_type.bits() << 4);
    }

    /// Sets the code.
    pub fn set_code(&mut self, code: Code) {
        self.buffer.as_mut()[field::CODE] = code.into();
    }

    /// Sets the message id.
    pub fn set_message_id(&mut self, id: u16) {
        self.buffer.as_mut()[field::MESSAGE_ID].copy_from_slice(&id.to_be_bytes());
    }

    /// The token bytes, mutable (their length is fixed by the header).
    pub fn token_mut(&mut self) -> &mut [u8] {
        let end = field::TOKEN + self.token_len();
        self.buffer
            .as_mut()
            .get_mut(field::TOKEN..end)
            .unwrap_or_default()
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed, validated CoAP message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Repr<'a> {
    /// CON, NON, ACK or RST.
    pub msg_type: MessageType,
    /// Method or response code.
    pub code: Code,
    /// The message id.
    pub message_id: u16,
    /// The token (0..=8 bytes).
    pub token: Token,
    /// The options, ascending.
    pub options: Options<'a>,
    /// The payload: `None` without a payload marker, `Some(&[])` for a bare marker.
    pub payload: Option<&'a [u8]>,
}

impl<'a> Repr<'a> {
    /// Parses and validates a message. Any byte string gives a `Repr` or an error, never a panic.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>, Error> {
        Repr::parse_bytes(packet.buffer.as_ref())
    }

    /// Parses and validates the message in `bytes`.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Repr<'a>, Error> {
        let l = layout(bytes)?;
        let first = bytes[field::VER_TYPE_TKL];
        let version = first >> 6;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let tkl = usize::from(first & 0x0F);
        Ok(Repr {
            msg_type: MessageType::from_bits(first >> 4),
            code: bytes[field::CODE].into(),
            message_id: u16::from_be_bytes([bytes[2], bytes[3]]),
            token: Token::new(&bytes[field::TOKEN..field::TOKEN + tkl])?,
            options: Options::from_encoded(&bytes[l.options]),
            payload: l.payload.map(|r| &bytes[r]),
        })
    }

    /// The encoded length.
    #[must_use]
    pub fn buffer_len(&self) -> usize {
        self.encoded_len()
    }

    /// Writes the message into the front of `buf`; returns its length, or
    /// [`Error::InsufficientSize`] when `buf` is shorter than [`Repr::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.encode_into(buf)
    }

    /// The message as a new vector.
    #[cfg(feature = "alloc")]
    #[must_use]
    pub fn to_vec(&self) -> alloc::vec::Vec<u8> {
        let mut out = alloc::vec![0; self.buffer_len()];
        let written = self.encode_into(&mut out).unwrap_or(0);
        out.truncate(written);
        out
    }

    /// Writes the first `prefix.len()` bytes of the encoded message (the rest is dropped).
    pub(crate) fn encode_prefix(&self, prefix: &mut [u8]) {
        self.encode(&mut PrefixSink {
            buf: prefix,
            pos: 0,
        });
    }

    /// The first option when it is a Uri-Path: the resource letter of a well-formed Spark request.
    #[must_use]
    pub fn resource(&self) -> Option<&'a [u8]> {
        self.options
            .first()
            .filter(|o| o.number == OptionNumber::UriPath)
            .map(|o| o.value)
    }
}

impl Encode for Repr<'_> {
    fn encode<S: Sink>(&self, sink: &mut S) {
        let mut enc = Encoder::new(sink, self.msg_type, self.code, self.message_id, &self.token);
        enc.final_options(&self.options);
        enc.optional_payload(self.payload);
    }

    fn encoded_len(&self) -> usize {
        HEADER_LEN
            + self.token.len()
            + self.options.encoded_len()
            + self.payload.map_or(0, |p| 1 + p.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> [u8; 64] {
        let mut out = [0u8; 64];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let text = core::str::from_utf8(chunk).unwrap();
            out[i] = u8::from_str_radix(text, 16).unwrap();
        }
        out
    }

    fn bytes(s: &str) -> ([u8; 64], usize) {
        (hex(s), s.len() / 2)
    }

    #[test]
    fn parses_a_function_call() {
        // CON 0.02 mid=97b2 tok=ef Uri-Path=f Uri-Path=brew Uri-Query=32,240
        let (buf, n) = bytes("410297b2efb16604627265774633322c323430");
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        assert_eq!(repr.msg_type, MessageType::Confirmable);
        assert_eq!(repr.code, Code::Post);
        assert_eq!(repr.message_id, 0x97b2);
        assert_eq!(repr.token, Token::from_byte(0xef));
        let mut it = repr.options.iter();
        assert_eq!(
            it.next(),
            Some(CoapOption::new(OptionNumber::UriPath, b"f"))
        );
        assert_eq!(
            it.next(),
            Some(CoapOption::new(OptionNumber::UriPath, b"brew"))
        );
        assert_eq!(
            it.next(),
            Some(CoapOption::new(OptionNumber::UriQuery, b"32,240"))
        );
        assert_eq!(it.next(), None);
        assert_eq!(repr.payload, None);
        assert_eq!(repr.resource(), Some(&b"f"[..]));

        let mut out = [0u8; 64];
        assert_eq!(repr.emit(&mut out), Ok(n));
        assert_eq!(&out[..n], &buf[..n]);
    }

    #[test]
    fn packet_view_reads_and_writes_the_header() {
        let (mut buf, n) = bytes("6145f6495fff00");
        let mut packet = Packet::new_checked(&mut buf[..n]).unwrap();
        assert_eq!(packet.version(), 1);
        assert_eq!(packet.msg_type(), MessageType::Acknowledgement);
        assert_eq!(packet.code(), Code::Content);
        assert_eq!(packet.message_id(), 0xf649);
        assert_eq!(packet.token(), &[0x5f]);
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload(), Some(&[0u8][..]));
        packet.set_msg_type(MessageType::NonConfirmable);
        packet.set_code(Code::Changed);
        packet.set_message_id(0x1234);
        packet.token_mut()[0] = 0x77;
        packet.set_version(1);
        assert_eq!(&buf[..n], &[0x51, 0x44, 0x12, 0x34, 0x77, 0xff, 0x00]);
    }

    #[test]
    fn extended_delta_and_length_forms_both_ways() {
        // Uri-Path (11) of 13 bytes: length nibble 13 + 0; then No-Response (258) empty: delta 247
        // = 13 + 234; then option 600 of 300 bytes: delta 342 = 269 + 73, length 300 = 269 + 31.
        let long = [0x61u8; 300];
        let list = [
            CoapOption::new(OptionNumber::UriPath, b"abcdefghijklm"),
            CoapOption::new(OptionNumber::NoResponse, b""),
            CoapOption::new(OptionNumber::Unknown(600), &long),
        ];
        let repr = Repr {
            msg_type: MessageType::NonConfirmable,
            code: Code::Post,
            message_id: 7,
            token: Token::EMPTY,
            options: Options::new(&list).unwrap(),
            payload: None,
        };
        let mut out = [0u8; 400];
        let n = repr.emit(&mut out).unwrap();
        assert_eq!(n, repr.buffer_len());
        assert_eq!(&out[4..6], &[0xbd, 0x00]);
        assert_eq!(&out[19..21], &[0xd0, 234]);
        assert_eq!(&out[21..26], &[0xee, 0x00, 73, 0x00, 31]);
        assert_eq!(n, 26 + 300);
        let back = Repr::parse_bytes(&out[..n]).unwrap();
        assert_eq!(back, repr);
        assert_eq!(back.options.len(), 3);
    }

    #[test]
    fn bare_payload_marker_is_kept() {
        let (buf, n) = bytes("5002f649b165ff");
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        assert_eq!(repr.payload, Some(&[][..]));
        let mut out = [0u8; 16];
        assert_eq!(repr.emit(&mut out), Ok(n));
        assert_eq!(&out[..n], &buf[..n]);
    }

    #[test]
    fn rejects_malformed_messages() {
        let cases: &[(&str, Error)] = &[
            ("", Error::Truncated),
            ("50", Error::Truncated),
            ("500297", Error::Truncated),
            ("59020000", Error::TokenLength(9)),
            ("5f020000", Error::TokenLength(15)),
            ("52020000aa", Error::Truncated),
            ("50020000b2", Error::Truncated),
            ("50020000bd", Error::Truncated),
            ("50020000be00", Error::Truncated),
            // An option claiming the largest length (269 + 0xFFFF) in a short buffer.
            ("50020000beffff6869", Error::Truncated),
            ("50020000f0", Error::ReservedOptionNibble),
            ("500200000f", Error::ReservedOptionNibble),
            ("50020000e0ff00", Error::OptionNumber),
            ("90020000", Error::Version(2)),
            ("10020000", Error::Version(0)),
        ];
        for (input, err) in cases {
            let (buf, n) = bytes(input);
            assert_eq!(Repr::parse_bytes(&buf[..n]), Err(*err), "{input}");
        }
        // The view leaves the version to Repr.
        let (buf, n) = bytes("90020000");
        assert!(Packet::new_checked(&buf[..n]).is_ok());
    }

    #[test]
    fn option_number_limit_is_exact() {
        // Delta 65535 from 0 is the largest option number; one more overflows.
        let (buf, n) = bytes("50020000e0fef2");
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        assert_eq!(
            repr.options.first().unwrap().number,
            OptionNumber::Unknown(65535)
        );
        let (buf, n) = bytes("50020000e0fef3");
        assert_eq!(Repr::parse_bytes(&buf[..n]), Err(Error::OptionNumber));
    }

    #[test]
    fn emit_reports_the_required_size() {
        let (buf, n) = bytes("410197b228b164");
        let repr = Repr::parse_bytes(&buf[..n]).unwrap();
        let mut small = [0u8; 5];
        assert_eq!(
            repr.emit(&mut small),
            Err(Error::InsufficientSize { required: 7 })
        );
    }

    #[test]
    fn options_must_be_ordered() {
        let list = [
            CoapOption::new(OptionNumber::UriQuery, b"a"),
            CoapOption::new(OptionNumber::UriPath, b"b"),
        ];
        assert_eq!(Options::new(&list).unwrap_err(), Error::OptionOrder);
    }

    #[test]
    fn codes_and_numbers_compare_by_value() {
        assert_eq!(Code::Unknown(0x02), Code::Post);
        assert_eq!(Code::from(0x45), Code::Content);
        assert_eq!(Code::from(0x99), Code::Unknown(0x99));
        assert_eq!(u8::from(Code::BadRequest), 0x80);
        assert!(OptionNumber::UriPath < OptionNumber::UriQuery);
        assert_eq!(OptionNumber::from(258), OptionNumber::NoResponse);
        // A test links std whatever the crate's features; Display is checked through it.
        extern crate std;
        assert_eq!(std::format!("{}", Code::Content), "2.05");
        assert_eq!(Code::NotFound.class(), 4);
        assert_eq!(Code::NotFound.detail(), 4);
        assert!(Code::Get.is_request() && !Code::Empty.is_request() && !Code::Content.is_request());
    }

    #[test]
    fn tokens() {
        assert!(Token::new(&[0; 9]).is_err());
        let t = Token::new(&[1, 2, 3]).unwrap();
        assert_eq!(t.as_bytes(), &[1, 2, 3]);
        assert_eq!(t.len(), 3);
        assert_eq!(t.first(), Some(1));
        assert!(Token::EMPTY.is_empty());
        assert_eq!(Token::from_byte(5), Token::new(&[5]).unwrap());
    }
}
