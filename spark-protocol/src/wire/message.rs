//! The typed messages of the Spark protocol, both directions, each parsed from a [`Repr`] and
//! emitted to bytes.
//!
//! Every message keeps its [`Header`] (type, message id, token) as received, so a parsed message
//! re-emits to the same bytes; the constructors give the forms the Core and the original server
//! send. Decoding checks the code and the resource letter (the first Uri-Path) of requests, and the
//! code of responses; options a message does not use are ignored, as the originals ignore them.
//!
//! ```
//! use spark_protocol::wire::message::{FunctionCall, FunctionReturn, Header};
//! use spark_protocol::wire::{Code, Repr};
//!
//! // The cloud calls `brew("espresso")`; the Core answers with a separate FunctionReturn.
//! let call = FunctionCall {
//!     header: Header::con(0x0102).with_token(9),
//!     name: b"brew",
//!     argument: Some(b"espresso"),
//! };
//! let mut buf = [0u8; 32];
//! let n = call.emit(&mut buf)?;
//! let parsed = FunctionCall::parse(&Repr::parse_bytes(&buf[..n])?)?;
//! assert_eq!(parsed, call);
//!
//! let answer = FunctionReturn {
//!     header: Header::separate(&call.header, 0x0a0b),
//!     code: Code::Changed,
//!     value: Some(42),
//! };
//! let n = answer.emit(&mut buf)?;
//! assert_eq!(&buf[n - 4..n], &42i32.to_be_bytes());
//! // A buffer that is too short says how long it must be.
//! assert_eq!(
//!     answer.emit(&mut buf[..3]),
//!     Err(spark_protocol::wire::Error::InsufficientSize { required: answer.buffer_len() })
//! );
//! # Ok::<(), spark_protocol::wire::Error>(())
//! ```
//!
//! In the table, names after the letter are further Uri-Path options, `?x` is a Uri-Query option,
//! and parenthesised parts are optional.
//!
//! | message | direction | CoAP | letter / options | payload |
//! |---|---|---|---|---|
//! | [`Hello`] | both | NON POST | `h` | [`HelloPayload`] |
//! | [`Describe`] | cloud → device | CON GET | `d` (?flags) | — |
//! | [`DescribeReturn`] | device → cloud | ACK 2.05 | — | JSON |
//! | [`FunctionCall`] | cloud → device | CON POST | `f`, name, ?argument | — |
//! | [`FunctionReturn`] | device → cloud | NON 2.04 | — | i32 big-endian |
//! | [`VariableRequest`] | cloud → device | CON GET | `v`, name | — |
//! | [`VariableValue`] | device → cloud | ACK 2.05 | — | bool, i32 BE, f64 **LE**, string |
//! | [`Event`] | both | NON POST | `e`/`E`, name (Max-Age) | data |
//! | [`Subscribe`] | device → cloud | CON GET | `e` (filter) (?u) | (device id) |
//! | [`GetTime`] / [`Time`] | device → cloud / back | CON GET `t` / ACK 2.05 | | u32 BE seconds |
//! | [`UpdateBegin`] / [`UpdateReady`] | cloud → device / back | CON POST `u` / NON 2.04 | | [`UpdateParams`] / flags |
//! | [`Chunk`] / [`ChunkReceived`] | cloud → device / back | CON POST `c` ?crc (?index) / NON 2.04 or 4.00 | | data |
//! | [`ChunkMissed`] | device → cloud | CON GET | `c` | u16 BE indices |
//! | [`UpdateDone`] | cloud → device | CON PUT | `u` | (result) |
//! | [`Signal`] | cloud → device | CON PUT | `s` ?byte | — |
//! | [`KeyChange`] / [`KeyChanged`] | cloud → device / back | CON PUT `k` / NON 2.04 | | key material |
//! | [`Reply`] | both | ACK 2.04, 4.00, ... | — | (text) |
//! | [`Ping`] / [`EmptyAck`] | both | CON 0.00 / ACK 0.00 | | — |
//! | [`Goodbye`] | device → cloud | POST | `x` (No-Response) | reasons |

use core::fmt;

use super::Error;
use super::classify::MessageKind;
use super::coap::{
    Code, Encode, Encoder, MAX_OPTION_EXTENDED, MessageType, OptionNumber, Options, OptionsIter,
    Repr, Sink, Token, read_uint,
};
use super::describe::VarType;
use super::hello::HelloPayload;
use super::limits::DEFAULT_EVENT_TTL;
use super::ota::{ChunkIndices, UpdateParams, crc32};

/// What every message carries besides its content: type, message id, token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct Header {
    /// CON, NON, ACK or RST.
    pub msg_type: MessageType,
    /// The message id (requests carry the sender's counter; ACKs echo the request's).
    pub message_id: u16,
    /// The token (Spark uses none or one byte).
    pub token: Token,
}

impl Header {
    /// A header of any type.
    pub const fn new(msg_type: MessageType, message_id: u16, token: Token) -> Self {
        Header {
            msg_type,
            message_id,
            token,
        }
    }

    /// NON without a token (Hello, events).
    pub const fn non(message_id: u16) -> Self {
        Header::new(MessageType::NonConfirmable, message_id, Token::EMPTY)
    }

    /// CON without a token (ChunkMissed, Subscribe, Ping).
    pub const fn con(message_id: u16) -> Self {
        Header::new(MessageType::Confirmable, message_id, Token::EMPTY)
    }

    /// ACK without a token.
    pub const fn ack(message_id: u16) -> Self {
        Header::new(MessageType::Acknowledgement, message_id, Token::EMPTY)
    }

    /// This header with a one-byte token.
    pub const fn with_token(self, token: u8) -> Self {
        Header {
            token: Token::from_byte(token),
            ..self
        }
    }

    /// The piggy-backed reply to `request`: ACK, same message id, same token.
    pub const fn piggybacked(request: &Header) -> Self {
        Header::new(
            MessageType::Acknowledgement,
            request.message_id,
            request.token,
        )
    }

    /// A separate reply to `request`: NON, the sender's own `message_id`, the request's token.
    pub const fn separate(request: &Header, message_id: u16) -> Self {
        Header::new(MessageType::NonConfirmable, message_id, request.token)
    }

    fn of(repr: &Repr<'_>) -> Self {
        Header::new(repr.msg_type, repr.message_id, repr.token)
    }

    fn encoder<'s, S: Sink>(&self, sink: &'s mut S, code: Code) -> Encoder<'s, S> {
        Encoder::new(sink, self.msg_type, code, self.message_id, &self.token)
    }
}

/// Calls the macro `$then` with every message type of the set: the one list that the emit
/// methods, the `From` conversions and the [`Message`] accessors are generated from.
macro_rules! every_message {
    ($then:ident) => {
        $then! {
            Hello<'a>,
            Describe,
            DescribeReturn<'a>,
            FunctionCall<'a>,
            FunctionReturn,
            VariableRequest<'a>,
            VariableValue<'a>,
            Event<'a>,
            Subscribe<'a>,
            GetTime,
            Time,
            UpdateBegin,
            UpdateReady,
            Chunk<'a>,
            ChunkReceived,
            ChunkMissed<'a>,
            UpdateDone<'a>,
            Signal,
            KeyChange<'a>,
            KeyChanged,
            Reply<'a>,
            Ping,
            EmptyAck,
            Goodbye<'a>,
        }
    };
}

/// Adds `buffer_len`, `emit` and `to_vec` to a message type.
macro_rules! emit_methods {
    ($($ty:ident $(<$lt:lifetime>)?),+ $(,)?) => {$(
        impl$(<$lt>)? $ty$(<$lt>)? {
            /// The encoded length.
            pub fn buffer_len(&self) -> usize {
                Encode::encoded_len(self)
            }

            /// Writes the message into the front of `buf`; returns its length, or
            /// [`Error::InsufficientSize`] when `buf` is shorter than
            #[doc = concat!("[`", stringify!($ty), "::buffer_len`].")]
            pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
                Encode::encode_into(self, buf)
            }

            /// The message as a new vector.
            #[cfg(feature = "alloc")]
            pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, Error> {
                let mut out = alloc::vec![0; self.buffer_len()];
                let n = self.emit(&mut out)?;
                out.truncate(n);
                Ok(out)
            }
        }
    )+};
}

/// Checks the code and the resource letter of a request; returns the options after the letter.
fn request<'a>(
    repr: &Repr<'a>,
    code: Code,
    letter: u8,
    name: &'static str,
) -> Result<RestOptions<'a>, Error> {
    if repr.code != code {
        return Err(Error::Mismatch { expected: name });
    }
    let mut iter = repr.options.iter();
    // The resource is the first Uri-Path (the Core requires it to be the first option; options
    // of other numbers before it are skipped as the original server skips them).
    match iter.find(|o| o.number == OptionNumber::UriPath) {
        Some(o) if o.value == [letter] => Ok(RestOptions(iter)),
        _ => Err(Error::Mismatch { expected: name }),
    }
}

/// Checks that a response's code is one of `allowed`.
fn response(repr: &Repr<'_>, allowed: &[Code], name: &'static str) -> Result<(), Error> {
    if allowed.contains(&repr.code) {
        Ok(())
    } else {
        Err(Error::Mismatch { expected: name })
    }
}

/// Checks that a response's code is a response (class 2 to 5).
fn any_response(repr: &Repr<'_>, name: &'static str) -> Result<(), Error> {
    if repr.code.class() >= 2 {
        Ok(())
    } else {
        Err(Error::Mismatch { expected: name })
    }
}

/// The options that follow the resource letter.
#[derive(Clone)]
struct RestOptions<'a>(OptionsIter<'a>);

impl<'a> RestOptions<'a> {
    fn first(&self, number: OptionNumber) -> Option<&'a [u8]> {
        self.0.clone().find(|o| o.number == number).map(|o| o.value)
    }

    fn nth(&self, number: OptionNumber, n: usize) -> Option<&'a [u8]> {
        self.0
            .clone()
            .filter(|o| o.number == number)
            .nth(n)
            .map(|o| o.value)
    }
}

fn exact<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], Error> {
    bytes.try_into().map_err(|_| Error::Length {
        field,
        found: bytes.len(),
        expected: N,
    })
}

fn check_option(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_OPTION_EXTENDED {
        Err(Error::OptionTooLong)
    } else {
        Ok(())
    }
}

/// Writes the payload only when it is not empty (for messages whose empty payload means none).
fn payload_if_any<S: Sink>(enc: &mut Encoder<'_, S>, payload: &[u8]) {
    if !payload.is_empty() {
        enc.payload(payload);
    }
}

/// A message's payload as one typed field: how it reads from a received payload and how it is
/// written. The forms the protocol uses: bytes where an empty payload means none, a required
/// big-endian number, and optional fixed-size values where an empty payload means none.
trait PayloadField<'a>: Sized {
    fn read(payload: Option<&'a [u8]>, field: &'static str) -> Result<Self, Error>;
    fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>);

    /// What the type alone cannot promise about the bytes it will write.
    fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

impl<'a> PayloadField<'a> for HelloPayload<'a> {
    fn read(payload: Option<&'a [u8]>, _: &'static str) -> Result<Self, Error> {
        Ok(HelloPayload::parse(payload))
    }

    fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
        self.with_bytes(|parts| {
            if let Some(parts) = parts {
                enc.payload_parts(parts);
            }
        });
    }

    fn check(&self) -> Result<(), Error> {
        self.validate()
    }
}

/// Big-endian chunk indices; none is no payload at all.
impl<'a> PayloadField<'a> for ChunkIndices<'a> {
    fn read(payload: Option<&'a [u8]>, _: &'static str) -> Result<Self, Error> {
        ChunkIndices::parse(payload.unwrap_or_default())
    }

    fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
        if !self.is_empty() {
            enc.payload(&[]);
            self.for_each_bytes(|b| enc.payload_more(b));
        }
    }
}

impl<'a> PayloadField<'a> for &'a [u8] {
    fn read(payload: Option<&'a [u8]>, _: &'static str) -> Result<Self, Error> {
        Ok(payload.unwrap_or_default())
    }

    fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
        payload_if_any(enc, self);
    }
}

impl PayloadField<'_> for u32 {
    fn read(payload: Option<&[u8]>, field: &'static str) -> Result<Self, Error> {
        let p = payload.ok_or(Error::Missing(field))?;
        Ok(u32::from_be_bytes(exact(p, field)?))
    }

    fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
        enc.payload(&self.to_be_bytes());
    }
}

/// The optional payloads: none or empty reads as `None`; `parse` reads the bytes, `bytes` gives
/// them back to write.
macro_rules! optional_payload {
    ($($ty:ty: |$p:ident, $field:ident| $parse:expr, |$v:ident| $bytes:expr;)+) => {$(
        impl PayloadField<'_> for Option<$ty> {
            fn read(payload: Option<&[u8]>, $field: &'static str) -> Result<Self, Error> {
                match payload {
                    None | Some([]) => Ok(None),
                    Some($p) => Ok(Some($parse)),
                }
            }

            fn write<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
                if let Some($v) = self {
                    enc.payload(&$bytes);
                }
            }
        }
    )+};
}

optional_payload! {
    u8: |p, field| exact::<1>(p, field)?[0], |v| [*v];
    i32: |p, field| i32::from_be_bytes(exact::<4>(p, field)?), |v| v.to_be_bytes();
    UpdateParams: |p, _field| UpdateParams::parse(p)?, |v| v.to_bytes();
}

/// The messages whose whole shape is a header, how they are recognized (a request's code and
/// resource letter, or a response's code), the options a request carries after its resource
/// letter and at most one [`PayloadField`]: each row gives the type, its recognizer, the doc line
/// of its `parse`, its option fields in `[...]` and its payload field in `{...}` with the names
/// their errors carry. The structs themselves are written out above, with their docs.
///
/// Recognizers: `request(Code, letter)`; `response(Code)` (exactly that code); `any_response`
/// (class 2 to 5, kept in the `code` field); `success` (class 2, kept in `code`); `empty(con)`
/// (code 0.00, no options or payload, a CON or anything but a CON).
///
/// Option fields (requests only), written in option order: `path("name")`, a required second
/// Uri-Path (`&[u8]`); `query`, an optional Uri-Query (`Option<&[u8]>`); `query_byte("name")`,
/// an optional one-byte Uri-Query (`Option<u8>`); `query_flag("name")`, a required one-byte
/// Uri-Query read as non-zero (`bool`); `no_response`, an empty No-Response option (`bool`).
macro_rules! table_messages {
    ($($ty:ident $(<$lt:lifetime>)? = $kind:ident $(($($arg:tt)*))? $doc:literal
        $([$($opt:ident: $okind:ident $(($olabel:literal))?),+])?
        $({ $field:ident: $label:literal })?;)+) => {$(
        table_messages!(@one [$($lt)?] $ty = $kind [$($($arg)*)?] $doc
            [$($($opt $okind [$($olabel)?])+)?] [$($field $label)?]);
    )+};
    (@one [$lt:lifetime] $ty:ident = $kind:ident [$($arg:tt)*] $doc:literal [$($opts:tt)*] [$($field:ident $label:literal)?]) => {
        impl<$lt> $ty<$lt> {
            #[doc = $doc]
            pub fn parse(repr: &Repr<$lt>) -> Result<Self, Error> {
                table_messages!(@parse $kind [$($arg)*] $ty repr [$($opts)*] [$($field $label)?])
            }
        }

        impl Encode for $ty<'_> {
            table_messages!(@encode_impl $kind [$($arg)*] [$($opts)*] [$($field)?]);
        }
    };
    (@one [] $ty:ident = $kind:ident [$($arg:tt)*] $doc:literal [$($opts:tt)*] [$($field:ident $label:literal)?]) => {
        impl $ty {
            #[doc = $doc]
            pub fn parse(repr: &Repr<'_>) -> Result<Self, Error> {
                table_messages!(@parse $kind [$($arg)*] $ty repr [$($opts)*] [$($field $label)?])
            }
        }

        impl Encode for $ty {
            table_messages!(@encode_impl $kind [$($arg)*] [$($opts)*] [$($field)?]);
        }
    };
    (@encode_impl $kind:ident [$($arg:tt)*] [$($opt:ident $okind:ident [$($olabel:literal)?])*] [$($field:ident)?]) => {
        fn check(&self) -> Result<(), Error> {
            $(table_messages!(@check_option $okind self $opt)?;)*
            $(PayloadField::check(&self.$field)?;)?
            Ok(())
        }

        fn encode<S: Sink>(&self, sink: &mut S) {
            table_messages!(@encode $kind [$($arg)*] self sink [$($opt $okind)*] [$($field)?]);
        }
    };
    (@parse request [$code:ident, $letter:literal] $ty:ident $repr:ident [$($opt:ident $okind:ident [$($olabel:literal)?])*] [$($field:ident $label:literal)?]) => {{
        #[allow(unused_variables)]
        let rest = request($repr, Code::$code, $letter, stringify!($ty))?;
        Ok($ty {
            header: Header::of($repr),
            $($opt: table_messages!(@read_option $okind [$($olabel)?] rest),)*
            $($field: PayloadField::read($repr.payload, $label)?,)?
        })
    }};
    (@parse response [$code:ident] $ty:ident $repr:ident [] [$($field:ident $label:literal)?]) => {{
        response($repr, &[Code::$code], stringify!($ty))?;
        Ok($ty {
            header: Header::of($repr),
            $($field: PayloadField::read($repr.payload, $label)?,)?
        })
    }};
    (@parse empty [$con:literal] $ty:ident $repr:ident [] []) => {{
        let header = empty($repr, stringify!($ty))?;
        if (header.msg_type == MessageType::Confirmable) != $con {
            return Err(Error::Mismatch {
                expected: stringify!($ty),
            });
        }
        Ok($ty { header })
    }};
    (@parse any_response [] $ty:ident $repr:ident [] [$($field:ident $label:literal)?]) => {{
        any_response($repr, stringify!($ty))?;
        Ok($ty {
            header: Header::of($repr),
            code: $repr.code,
            $($field: PayloadField::read($repr.payload, $label)?,)?
        })
    }};
    (@parse success [] $ty:ident $repr:ident [] [$($field:ident $label:literal)?]) => {{
        if $repr.code.class() != 2 {
            return Err(Error::Mismatch {
                expected: stringify!($ty),
            });
        }
        Ok($ty {
            header: Header::of($repr),
            code: $repr.code,
            $($field: PayloadField::read($repr.payload, $label)?,)?
        })
    }};
    (@read_option path [$label:literal] $rest:ident) => {
        $rest.first(OptionNumber::UriPath).ok_or(Error::Missing($label))?
    };
    (@read_option query [] $rest:ident) => {
        $rest.first(OptionNumber::UriQuery)
    };
    (@read_option query_byte [$label:literal] $rest:ident) => {
        match $rest.first(OptionNumber::UriQuery) {
            Some(q) => Some(exact::<1>(q, $label)?[0]),
            None => None,
        }
    };
    (@read_option query_flag [$label:literal] $rest:ident) => {
        exact::<1>(
            $rest.first(OptionNumber::UriQuery).ok_or(Error::Missing($label))?,
            $label,
        )?[0] != 0
    };
    (@read_option no_response [] $rest:ident) => {
        $rest.first(OptionNumber::NoResponse).is_some()
    };
    (@check_option path $self:ident $opt:ident) => {
        check_option($self.$opt)
    };
    (@check_option query $self:ident $opt:ident) => {
        check_option($self.$opt.unwrap_or_default())
    };
    (@check_option $other:ident $self:ident $opt:ident) => {
        Ok::<(), Error>(())
    };
    (@write_option path $self:ident $opt:ident $enc:ident) => {
        $enc.option(OptionNumber::UriPath, $self.$opt);
    };
    (@write_option query $self:ident $opt:ident $enc:ident) => {
        if let Some(q) = $self.$opt {
            $enc.option(OptionNumber::UriQuery, q);
        }
    };
    (@write_option query_byte $self:ident $opt:ident $enc:ident) => {
        if let Some(b) = $self.$opt {
            $enc.option(OptionNumber::UriQuery, &[b]);
        }
    };
    (@write_option query_flag $self:ident $opt:ident $enc:ident) => {
        $enc.option(OptionNumber::UriQuery, &[u8::from($self.$opt)]);
    };
    (@write_option no_response $self:ident $opt:ident $enc:ident) => {
        if $self.$opt {
            $enc.option(OptionNumber::NoResponse, &[]);
        }
    };
    (@encode request [$code:ident, $letter:literal] $self:ident $sink:ident [$($opt:ident $okind:ident)*] [$($field:ident)?]) => {
        #[allow(unused_mut)]
        let mut enc = $self.header.encoder($sink, Code::$code);
        enc.option(OptionNumber::UriPath, &[$letter]);
        $(table_messages!(@write_option $okind $self $opt enc);)*
        $(PayloadField::write(&$self.$field, &mut enc);)?
    };
    (@encode response [$code:ident] $self:ident $sink:ident [] [$($field:ident)?]) => {
        #[allow(unused_mut, unused_variables)]
        let mut enc = $self.header.encoder($sink, Code::$code);
        $(PayloadField::write(&$self.$field, &mut enc);)?
    };
    (@encode empty [$con:literal] $self:ident $sink:ident [] []) => {
        $self.header.encoder($sink, Code::Empty);
    };
    (@encode $any:ident [] $self:ident $sink:ident [] [$($field:ident)?]) => {
        #[allow(unused_mut, unused_variables)]
        let mut enc = $self.header.encoder($sink, $self.code);
        $(PayloadField::write(&$self.$field, &mut enc);)?
    };
}

table_messages! {
    Hello<'a> = request(Post, b'h') "Decodes `POST h`." { payload: "Hello payload" };
    Describe = request(Get, b'd') "Decodes `GET d`." [flags: query_byte("Describe flags")];
    FunctionCall<'a> = request(Post, b'f') "Decodes `POST f/<name>?<argument>`."
        [name: path("function name"), argument: query];
    VariableRequest<'a> = request(Get, b'v') "Decodes `GET v/<name>`." [name: path("variable name")];
    Signal = request(Put, b's') "Decodes `PUT s?<byte>`." [start: query_flag("signal byte")];
    Goodbye<'a> = request(Post, b'x') "Decodes `POST x`." [no_response: no_response] { payload: "Goodbye payload" };
    ChunkMissed<'a> = request(Get, b'c') "Decodes `GET c` with its index list." { indices: "chunk indices" };
    DescribeReturn<'a> = success "Decodes a successful (2.xx) response carrying the description." { description: "description" };
    FunctionReturn = any_response "Decodes a response carrying a 4-byte result or nothing." { value: "function result" };
    GetTime = request(Get, b't') "Decodes `GET t`.";
    Time = any_response "Decodes a response with a 4-byte payload." { unix_time: "time" };
    UpdateBegin = request(Post, b'u') "Decodes `POST u`." { params: "update parameters" };
    UpdateReady = response(Changed) "Decodes a 2.04 response with an optional flags byte." { flags: "UpdateReady flags" };
    UpdateDone<'a> = request(Put, b'u') "Decodes `PUT u`." { result: "UpdateDone result" };
    KeyChange<'a> = request(Put, b'k') "Decodes `PUT k`." { payload: "key material" };
    KeyChanged = response(Changed) "Decodes a 2.04 response without payload.";
    Reply<'a> = any_response "Decodes any response (class 2 to 5)." { payload: "reply" };
    Ping = empty(true) "Decodes an empty CON.";
    EmptyAck = empty(false) "Decodes an empty message that is not a CON.";
}

// ---------------------------------------------------------------------------------------------
// Hello

/// Hello: the first message after the handshake, device first, then the cloud's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Hello<'a> {
    /// NON over TCP (CON over UDP); no token from the device, one byte from the original server.
    pub header: Header,
    /// The payload (none from the cloud).
    pub payload: HelloPayload<'a>,
}

// ---------------------------------------------------------------------------------------------
// Describe

/// Describe: the cloud asks for the device's functions and variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Describe {
    /// CON with a one-byte token.
    pub header: Header,
    /// Device OS: a one-byte Uri-Query of what to describe (see the `FLAG_*` constants); the Core
    /// sends and reads none.
    pub flags: Option<u8>,
}

impl Describe {
    /// Device OS flag: describe the system modules.
    pub const FLAG_SYSTEM: u8 = 1;
    /// Device OS flag: describe the application (functions and variables).
    pub const FLAG_APPLICATION: u8 = 2;
    /// Device OS flag: report metrics.
    pub const FLAG_METRICS: u8 = 4;
}

/// The description JSON a device returns to Describe (see [`describe`](super::describe)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct DescribeReturn<'a> {
    /// The Core answers piggy-backed: ACK, the request's id and token.
    pub header: Header,
    /// 2.05 from the Core (the original server also accepted 2.04).
    pub code: Code,
    /// `{"f":[...],"v":{...}}`.
    pub description: &'a [u8],
}

// ---------------------------------------------------------------------------------------------
// Functions and variables

/// FunctionCall: the cloud calls a device function with one string argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct FunctionCall<'a> {
    /// CON with a one-byte token.
    pub header: Header,
    /// The function name (a second Uri-Path; the Core matches at most 12 bytes).
    pub name: &'a [u8],
    /// The argument (one Uri-Query; the Core disconnects on 64 bytes or more).
    pub argument: Option<&'a [u8]>,
}

/// FunctionReturn: the function's result, sent after an empty ACK to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct FunctionReturn {
    /// The Core sends NON with its own message id and the call's token.
    pub header: Header,
    /// 2.04 Changed (the original server also names 4.00 FunctionReturnError).
    pub code: Code,
    /// The result, a big-endian i32 (none from a void function on Device OS).
    pub value: Option<i32>,
}

/// VariableRequest: the cloud reads a device variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct VariableRequest<'a> {
    /// CON with a one-byte token.
    pub header: Header,
    /// The variable name (a second Uri-Path; the Core matches at most 12 bytes).
    pub name: &'a [u8],
}

/// A variable's value, in the encoding of its type.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// One byte, `00` or `01` (any non-zero byte reads as true, as the original server reads it).
    Bool(bool),
    /// A big-endian i32.
    Int(i32),
    /// A **little-endian** IEEE-754 double: the Core copies the bytes of its `double`.
    Double(f64),
    /// Raw bytes, no terminating NUL.
    String(&'a [u8]),
    /// No payload.
    Null,
}

impl<'a> Value<'a> {
    /// Reads a payload as a value of type `ty`.
    pub fn parse(payload: &'a [u8], ty: VarType) -> Result<Self, Error> {
        Ok(match ty {
            VarType::Bool => Value::Bool(exact::<1>(payload, "bool value")?[0] != 0),
            VarType::Int => Value::Int(i32::from_be_bytes(exact(payload, "int value")?)),
            VarType::Double => Value::Double(f64::from_le_bytes(exact(payload, "double value")?)),
            VarType::String => Value::String(payload),
            VarType::Null => {
                exact::<0>(payload, "null value")?;
                Value::Null
            }
        })
    }

    /// The type of this value.
    #[must_use]
    pub fn var_type(&self) -> VarType {
        match self {
            Value::Bool(_) => VarType::Bool,
            Value::Int(_) => VarType::Int,
            Value::Double(_) => VarType::Double,
            Value::String(_) => VarType::String,
            Value::Null => VarType::Null,
        }
    }

    /// Calls `f` with the encoded payload.
    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Value::Bool(b) => f(&[u8::from(*b)]),
            Value::Int(i) => f(&i.to_be_bytes()),
            Value::Double(d) => f(&d.to_le_bytes()),
            Value::String(s) => f(s),
            Value::Null => f(&[]),
        }
    }
}

impl PartialEq for Value<'_> {
    /// Doubles compare by their bits, so a NaN read back equals the NaN written.
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Double(a), Value::Double(b)) => a.to_bits() == b.to_bits(),
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::Int(a), Value::Int(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::Null, Value::Null) => true,
            _ => false,
        }
    }
}

/// VariableValue: the device's answer to VariableRequest.
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct VariableValue<'a> {
    /// The Core answers piggy-backed: ACK, the request's id and token.
    pub header: Header,
    /// 2.05 Content.
    pub code: Code,
    /// The value.
    pub value: Value<'a>,
}

impl<'a> VariableValue<'a> {
    /// Decodes a response as a value of type `ty` (known from the description).
    pub fn parse(repr: &Repr<'a>, ty: VarType) -> Result<Self, Error> {
        any_response(repr, "VariableValue")?;
        Ok(VariableValue {
            header: Header::of(repr),
            code: repr.code,
            value: Value::parse(repr.payload.unwrap_or_default(), ty)?,
        })
    }
}

impl Encode for VariableValue<'_> {
    fn encode<S: Sink>(&self, sink: &mut S) {
        let mut enc = self.header.encoder(sink, self.code);
        self.value.with_bytes(|b| payload_if_any(&mut enc, b));
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// Public (`e`) or private (`E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Visibility {
    /// `e`: anyone subscribed to the name sees it.
    Public,
    /// `E`: only the owner's devices and apps see it.
    Private,
}

impl Visibility {
    /// The resource letter.
    #[must_use]
    pub const fn letter(self) -> u8 {
        match self {
            Visibility::Public => b'e',
            Visibility::Private => b'E',
        }
    }
}

/// An event name (or subscription filter) and how it travels.
///
/// A device publishes the whole name as one Uri-Path even when it contains `/`; the cloud delivers
/// it split into one Uri-Path per `/`-separated segment, and the device joins them back. Names
/// compare equal when their joined bytes are equal, whatever their form.
#[derive(Clone, Copy)]
#[must_use]
pub struct EventName<'a> {
    inner: NameInner<'a>,
}

#[derive(Clone, Copy)]
enum NameInner<'a> {
    Whole(&'a [u8]),
    Split(&'a [u8]),
    /// Every Uri-Path after the first (the resource letter).
    Received(Options<'a>),
}

impl<'a> EventName<'a> {
    /// A name sent as one Uri-Path, as a device publishes and subscribes. An empty name is sent as
    /// no option at all.
    pub const fn whole(name: &'a [u8]) -> Self {
        EventName {
            inner: NameInner::Whole(name),
        }
    }

    /// A name sent as one Uri-Path per `/`-separated segment, as the cloud delivers events. An empty
    /// name is sent as no option at all.
    pub const fn split(name: &'a [u8]) -> Self {
        EventName {
            inner: NameInner::Split(name),
        }
    }

    /// The segments (Uri-Path values) in order.
    pub fn segments(&self) -> Segments<'a> {
        Segments {
            inner: match self.inner {
                NameInner::Whole(n) => SegmentsInner::Whole((!n.is_empty()).then_some(n)),
                NameInner::Split(n) => SegmentsInner::Split((!n.is_empty()).then_some(n)),
                NameInner::Received(o) => SegmentsInner::Received(o.iter(), false),
            },
        }
    }

    /// The name's bytes, segments joined with `/`.
    pub fn bytes(&self) -> impl Iterator<Item = u8> + use<'a> {
        self.segments()
            .enumerate()
            .flat_map(|(i, s)| (i > 0).then_some(b'/').into_iter().chain(s.iter().copied()))
    }

    /// The length of the joined name.
    #[must_use]
    pub fn len(&self) -> usize {
        self.segments()
            .enumerate()
            .map(|(i, s)| s.len() + usize::from(i > 0))
            .sum()
    }

    /// Whether the name is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The name as one slice, when it is stored as one (always for names built by
    /// [`EventName::whole`] or [`EventName::split`], and for received names of one segment).
    #[must_use]
    pub fn as_contiguous(&self) -> Option<&'a [u8]> {
        match self.inner {
            NameInner::Whole(n) | NameInner::Split(n) => Some(n),
            NameInner::Received(_) => {
                let mut segs = self.segments();
                match (segs.next(), segs.next()) {
                    (None, _) => Some(&[]),
                    (Some(s), None) => Some(s),
                    _ => None,
                }
            }
        }
    }

    /// Copies the joined name into `buf`; returns its length.
    pub fn copy_to(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let required = self.len();
        let dst = buf
            .get_mut(..required)
            .ok_or(Error::InsufficientSize { required })?;
        for (d, b) in dst.iter_mut().zip(self.bytes()) {
            *d = b;
        }
        Ok(required)
    }

    /// Whether the name starts with `prefix`: how the Core matches a delivered event to its
    /// handlers' filters.
    #[must_use]
    pub fn starts_with(&self, prefix: &[u8]) -> bool {
        let mut bytes = self.bytes();
        prefix.iter().all(|p| bytes.next() == Some(*p))
    }

    fn check(&self) -> Result<(), Error> {
        self.segments().try_for_each(check_option)
    }

    fn encode<S: Sink>(&self, enc: &mut Encoder<'_, S>) {
        for segment in self.segments() {
            enc.option(OptionNumber::UriPath, segment);
        }
    }
}

impl PartialEq for EventName<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes().eq(other.bytes())
    }
}
impl Eq for EventName<'_> {}

impl PartialEq<[u8]> for EventName<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        self.bytes().eq(other.iter().copied())
    }
}

impl PartialEq<str> for EventName<'_> {
    fn eq(&self, other: &str) -> bool {
        *self == *other.as_bytes()
    }
}

impl PartialEq<&str> for EventName<'_> {
    fn eq(&self, other: &&str) -> bool {
        *self == *other.as_bytes()
    }
}

impl fmt::Debug for EventName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for b in self.bytes() {
            write!(f, "{}", core::ascii::escape_default(b))?;
        }
        f.write_str("\"")
    }
}

/// Iterator over the segments of an [`EventName`].
#[derive(Clone)]
#[must_use]
pub struct Segments<'a> {
    inner: SegmentsInner<'a>,
}

#[derive(Clone)]
enum SegmentsInner<'a> {
    Whole(Option<&'a [u8]>),
    Split(Option<&'a [u8]>),
    /// The options, and whether the resource letter has been passed.
    Received(OptionsIter<'a>, bool),
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        match &mut self.inner {
            SegmentsInner::Whole(n) => n.take(),
            SegmentsInner::Split(rest) => {
                let r = (*rest)?;
                match r.iter().position(|&b| b == b'/') {
                    Some(i) => {
                        *rest = Some(&r[i + 1..]);
                        Some(&r[..i])
                    }
                    None => {
                        *rest = None;
                        Some(r)
                    }
                }
            }
            SegmentsInner::Received(iter, passed) => loop {
                let o = iter.next()?;
                if o.number != OptionNumber::UriPath {
                    continue;
                }
                if *passed {
                    return Some(o.value);
                }
                *passed = true;
            },
        }
    }
}

/// A Max-Age option: the event's time to live in seconds, and how many bytes carry it.
///
/// The Core publishes a 3-byte value (and none for the default 60 s); the original server delivers
/// the shortest encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub struct MaxAge {
    /// Seconds.
    pub seconds: u32,
    /// Bytes on the wire (0..=4); `seconds` must fit.
    pub width: u8,
}

impl MaxAge {
    /// The shortest encoding of `seconds` (CoAP uint; 0 takes no bytes).
    pub const fn compact(seconds: u32) -> Self {
        let width = (4 - seconds.leading_zeros() / 8) as u8;
        MaxAge { seconds, width }
    }

    /// The Core's 3-byte encoding (`seconds` must be at most [`MAX_EVENT_TTL`](super::limits::MAX_EVENT_TTL)).
    pub const fn core(seconds: u32) -> Self {
        MaxAge { seconds, width: 3 }
    }

    fn parse(value: &[u8]) -> Result<Self, Error> {
        let seconds = read_uint(value).ok_or(Error::Length {
            field: "Max-Age",
            found: value.len(),
            expected: 4,
        })?;
        Ok(MaxAge {
            seconds,
            width: value.len() as u8,
        })
    }

    fn check(&self) -> Result<(), Error> {
        if self.width > 4 || (self.width < 4 && self.seconds >> (8 * u32::from(self.width)) != 0) {
            return Err(Error::Invalid("Max-Age width"));
        }
        Ok(())
    }

    fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let bytes = self.seconds.to_be_bytes();
        f(&bytes[4 - usize::from(self.width.min(4))..])
    }
}

/// An event: published by a device (one Uri-Path for the name) or delivered by the cloud (one per
/// segment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Event<'a> {
    /// NON without a token, both ways.
    pub header: Header,
    /// `e` or `E`.
    pub visibility: Visibility,
    /// The name.
    pub name: EventName<'a>,
    /// The time to live; none means 60 s.
    pub max_age: Option<MaxAge>,
    /// The data; `None` (no payload marker) differs on the wire from `Some(b"")` (a bare marker),
    /// as the Core's encoder distinguishes null from empty data.
    pub data: Option<&'a [u8]>,
}

impl<'a> Event<'a> {
    /// An event as the Core publishes it: NON, no token, the whole name in one Uri-Path, a 3-byte
    /// Max-Age unless the TTL is 60 s.
    pub const fn publish(
        message_id: u16,
        visibility: Visibility,
        name: &'a [u8],
        data: Option<&'a [u8]>,
        ttl: u32,
    ) -> Self {
        Event {
            header: Header::non(message_id),
            visibility,
            name: EventName::whole(name),
            max_age: if ttl == DEFAULT_EVENT_TTL {
                None
            } else {
                Some(MaxAge::core(ttl))
            },
            data,
        }
    }

    /// An event as the original server delivers it: NON, no token, one Uri-Path per segment, the
    /// TTL as a shortest-form Max-Age.
    pub const fn deliver(
        message_id: u16,
        visibility: Visibility,
        name: &'a [u8],
        data: Option<&'a [u8]>,
        ttl: u32,
    ) -> Self {
        Event {
            header: Header::non(message_id),
            visibility,
            name: EventName::split(name),
            max_age: Some(MaxAge::compact(ttl)),
            data,
        }
    }

    /// Decodes `POST e/...` or `POST E/...`.
    pub fn parse(repr: &Repr<'a>) -> Result<Self, Error> {
        if repr.code != Code::Post {
            return Err(Error::Mismatch { expected: "Event" });
        }
        // One pass: the letter (the first Uri-Path), then the Max-Age after the name.
        let mut options = repr.options.iter();
        let visibility = match options.find(|o| o.number == OptionNumber::UriPath) {
            Some(o) if o.value == b"e" => Visibility::Public,
            Some(o) if o.value == b"E" => Visibility::Private,
            _ => return Err(Error::Mismatch { expected: "Event" }),
        };
        let max_age = options
            .find(|o| o.number == OptionNumber::MaxAge)
            .map(|o| MaxAge::parse(o.value))
            .transpose()?;
        Ok(Event {
            header: Header::of(repr),
            visibility,
            name: EventName {
                inner: NameInner::Received(repr.options),
            },
            max_age,
            data: repr.payload,
        })
    }

    /// The time to live in seconds (60 without Max-Age).
    #[must_use]
    pub fn ttl(&self) -> u32 {
        self.max_age.map_or(DEFAULT_EVENT_TTL, |m| m.seconds)
    }
}

impl Encode for Event<'_> {
    fn check(&self) -> Result<(), Error> {
        self.name.check()?;
        self.max_age.as_ref().map_or(Ok(()), MaxAge::check)
    }

    fn encode<S: Sink>(&self, sink: &mut S) {
        let mut enc = self.header.encoder(sink, Code::Post);
        enc.option(OptionNumber::UriPath, &[self.visibility.letter()]);
        self.name.encode(&mut enc);
        if let Some(max_age) = self.max_age {
            max_age.with_bytes(|b| enc.option(OptionNumber::MaxAge, b));
        }
        enc.optional_payload(self.data);
    }
}

/// Whose events a subscription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscribeScope<'a> {
    /// Everyone's public events (the Core refuses to send this without a filter).
    Firehose,
    /// The owner's devices only: a Uri-Query `u`.
    MyDevices,
    /// One device: its id (24 hex characters) as the payload.
    Device(&'a [u8]),
}

/// Subscribe: the device asks for events whose names start with a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Subscribe<'a> {
    /// CON without a token.
    pub header: Header,
    /// The filter, one Uri-Path (none when empty).
    pub filter: EventName<'a>,
    /// Whose events.
    pub scope: SubscribeScope<'a>,
}

impl<'a> Subscribe<'a> {
    /// Decodes `GET e[/<filter>][?u]`.
    pub fn parse(repr: &Repr<'a>) -> Result<Self, Error> {
        let rest = request(repr, Code::Get, b'e', "Subscribe")?;
        let my_devices = rest.first(OptionNumber::UriQuery) == Some(b"u");
        let scope = match (my_devices, repr.payload) {
            (false, None) => SubscribeScope::Firehose,
            (true, None) => SubscribeScope::MyDevices,
            (false, Some(id)) => SubscribeScope::Device(id),
            (true, Some(_)) => return Err(Error::Invalid("subscription scope")),
        };
        Ok(Subscribe {
            header: Header::of(repr),
            filter: EventName {
                inner: NameInner::Received(repr.options),
            },
            scope,
        })
    }
}

impl Encode for Subscribe<'_> {
    fn check(&self) -> Result<(), Error> {
        self.filter.check()
    }

    fn encode<S: Sink>(&self, sink: &mut S) {
        let mut enc = self.header.encoder(sink, Code::Get);
        enc.option(OptionNumber::UriPath, b"e");
        self.filter.encode(&mut enc);
        match self.scope {
            SubscribeScope::Firehose => {}
            SubscribeScope::MyDevices => {
                enc.option(OptionNumber::UriQuery, b"u");
            }
            SubscribeScope::Device(id) => enc.payload(id),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time

/// GetTime: the device asks for the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct GetTime {
    /// CON with a one-byte token.
    pub header: Header,
}

/// The time reply: Unix seconds, big-endian u32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Time {
    /// Piggy-backed: ACK, the request's id and token.
    pub header: Header,
    /// 2.05 Content (the Core takes any 2.05 for the time).
    pub code: Code,
    /// Seconds since 1970.
    pub unix_time: u32,
}

// ---------------------------------------------------------------------------------------------
// OTA

/// UpdateBegin: the cloud starts a firmware transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct UpdateBegin {
    /// CON with a one-byte token.
    pub header: Header,
    /// The 12-byte parameters (optional: the Core reads none, and its test vectors carry none).
    pub params: Option<UpdateParams>,
}

/// UpdateReady: the device is ready for chunks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct UpdateReady {
    /// NON with the device's id and UpdateBegin's token.
    pub header: Header,
    /// Device OS: one byte, bit 0 = fast OTA accepted (the Core sends none).
    pub flags: Option<u8>,
}

/// Chunk: one piece of the firmware, with its CRC-32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Chunk<'a> {
    /// CON with a one-byte token.
    pub header: Header,
    /// CRC-32 of `data` (first Uri-Query, 4 bytes big-endian). The Core reads it at offset 8, so
    /// the message must start `41 02 id id tok b1 63 44`.
    pub crc: u32,
    /// Fast OTA: the chunk index (second Uri-Query, 2 bytes big-endian).
    pub index: Option<u16>,
    /// The chunk bytes (the original server zero-pads the last chunk).
    pub data: &'a [u8],
}

impl<'a> Chunk<'a> {
    /// A chunk with its CRC computed.
    pub fn new(header: Header, index: Option<u16>, data: &'a [u8]) -> Self {
        Chunk {
            header,
            crc: crc32(data),
            index,
            data,
        }
    }

    /// Decodes `POST c?<crc>[&<index>]`.
    pub fn parse(repr: &Repr<'a>) -> Result<Self, Error> {
        let rest = request(repr, Code::Post, b'c', "Chunk")?;
        let crc = rest
            .first(OptionNumber::UriQuery)
            .ok_or(Error::Missing("chunk CRC"))?;
        let index = match rest.nth(OptionNumber::UriQuery, 1) {
            Some(i) => Some(u16::from_be_bytes(exact(i, "chunk index")?)),
            None => None,
        };
        Ok(Chunk {
            header: Header::of(repr),
            crc: u32::from_be_bytes(exact(crc, "chunk CRC")?),
            index,
            data: repr.payload.unwrap_or_default(),
        })
    }

    /// Whether the CRC matches the data.
    #[must_use]
    pub fn crc_matches(&self) -> bool {
        crc32(self.data) == self.crc
    }
}

impl Encode for Chunk<'_> {
    fn encode<S: Sink>(&self, sink: &mut S) {
        let mut enc = self.header.encoder(sink, Code::Post);
        enc.option(OptionNumber::UriPath, b"c")
            .option(OptionNumber::UriQuery, &self.crc.to_be_bytes());
        if let Some(i) = self.index {
            enc.option(OptionNumber::UriQuery, &i.to_be_bytes());
        }
        payload_if_any(&mut enc, self.data);
    }
}

/// ChunkReceived: whether a chunk's CRC matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ChunkReceived {
    /// NON with the device's id and the chunk's token.
    pub header: Header,
    /// 2.04 when the CRC matched, 4.00 when it did not.
    pub ok: bool,
}

impl ChunkReceived {
    /// Decodes a 2.04 (OK) or 4.00 (BAD) response.
    pub fn parse(repr: &Repr<'_>) -> Result<Self, Error> {
        response(repr, &[Code::Changed, Code::BadRequest], "ChunkReceived")?;
        Ok(ChunkReceived {
            header: Header::of(repr),
            ok: repr.code == Code::Changed,
        })
    }
}

impl Encode for ChunkReceived {
    fn encode<S: Sink>(&self, sink: &mut S) {
        let code = if self.ok {
            Code::Changed
        } else {
            Code::BadRequest
        };
        self.header.encoder(sink, code);
    }
}

/// ChunkMissed: the device asks again for chunks it has not received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct ChunkMissed<'a> {
    /// CON without a token.
    pub header: Header,
    /// The missing chunk indices (the Core sends one).
    pub indices: ChunkIndices<'a>,
}

/// UpdateDone: the cloud has sent every chunk (Device OS also sends it, with a result text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct UpdateDone<'a> {
    /// CON with a one-byte token from the cloud.
    pub header: Header,
    /// Device OS: an optional result text.
    pub result: &'a [u8],
}

// ---------------------------------------------------------------------------------------------
// Signal, keys, keep-alive, goodbye

/// SignalStart / SignalStop: the cloud asks the device to show (or stop showing) its rainbow LED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Signal {
    /// CON with a one-byte token.
    pub header: Header,
    /// Start (byte `01`) or stop (byte `00`).
    pub start: bool,
}

/// KeyChange: the cloud sends new key material (the Core ignores it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct KeyChange<'a> {
    /// CON with a one-byte token.
    pub header: Header,
    /// The key material.
    pub payload: &'a [u8],
}

/// KeyChanged: the device acknowledges KeyChange (a separate 2.04).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct KeyChanged {
    /// NON with the device's id and KeyChange's token.
    pub header: Header,
}

/// A response known by its code alone, with optional text: the Core's ACK 2.04 to UpdateDone and
/// to Signal, the original server's EventSlowdown and SubscribeFail (ACK 4.00), Device OS's ACK 5.03
/// refusing an update or 4.00 to an incomplete UpdateDone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Reply<'a> {
    /// Usually piggy-backed: ACK, the request's id and token.
    pub header: Header,
    /// A response code (class 2 to 5).
    pub code: Code,
    /// Optional text (Device OS).
    pub payload: &'a [u8],
}

fn empty(repr: &Repr<'_>, name: &'static str) -> Result<Header, Error> {
    if !repr.code.is_empty() || !repr.options.is_empty() || repr.payload.is_some() {
        return Err(Error::Mismatch { expected: name });
    }
    Ok(Header::of(repr))
}

/// Ping: an empty CON, either way; answered by an [`EmptyAck`] with the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Ping {
    /// CON, no token.
    pub header: Header,
}

/// An empty acknowledgement (the device also files an empty NON or RST here). The original server's
/// ACKs carry a one-byte token `00`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct EmptyAck {
    /// ACK (or NON/RST), the acknowledged id.
    pub header: Header,
}

/// Goodbye (Device OS): the device says why it is about to disconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Goodbye<'a> {
    /// CON or NON, no token.
    pub header: Header,
    /// Whether a No-Response option (empty) asks the cloud not to answer (sent with NON).
    pub no_response: bool,
    /// The reasons (varint-encoded by Device OS), kept as bytes.
    pub payload: &'a [u8],
}

every_message!(emit_methods);

// ---------------------------------------------------------------------------------------------
// Any message

/// Declares [`Message`]: one variant a message type, named after it.
macro_rules! message_enum {
    ($($variant:ident $(<$lt:lifetime>)?),+ $(,)?) => {
        /// Any message of the set.
        #[derive(Debug, Clone, Copy, PartialEq)]
        #[non_exhaustive]
        #[must_use]
        pub enum Message<'a> {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant$(<$lt>)?),
            )+
        }
    };
}

every_message!(message_enum);

macro_rules! from_messages {
    ($($variant:ident $(<$lt:lifetime>)?),+ $(,)?) => {$(
        impl<'a> From<$variant$(<$lt>)?> for Message<'a> {
            fn from(m: $variant$(<$lt>)?) -> Self {
                Message::$variant(m)
            }
        }
    )+};
}

/// The accessors of [`Message`] that hand over to the message inside, one arm per type.
macro_rules! message_accessors {
    ($($variant:ident $(<$lt:lifetime>)?),+ $(,)?) => {
        impl Message<'_> {
            /// The message's header.
            pub fn header(&self) -> &Header {
                match self {
                    $(Message::$variant(m) => &m.header,)+
                }
            }

            /// The encoded length.
            #[must_use]
            pub fn buffer_len(&self) -> usize {
                match self {
                    $(Message::$variant(m) => m.buffer_len(),)+
                }
            }

            /// Writes the message into the front of `buf`; returns its length.
            pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
                match self {
                    $(Message::$variant(m) => m.emit(buf),)+
                }
            }

            /// The message as a new vector.
            #[cfg(feature = "alloc")]
            pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, Error> {
                match self {
                    $(Message::$variant(m) => m.to_vec(),)+
                }
            }
        }
    };
}

every_message!(from_messages);
every_message!(message_accessors);

impl<'a> Message<'a> {
    /// Decodes `repr` as a message of `kind`: the kind [`classify`](super::classify()) gave for a
    /// request, or the kind of the pending request's response for a response (matched by token).
    ///
    /// [`MessageKind::Response`] and [`MessageKind::Unknown`] name no message and give
    /// [`Error::Mismatch`].
    pub fn parse(repr: &Repr<'a>, kind: MessageKind) -> Result<Message<'a>, Error> {
        Ok(match kind {
            MessageKind::Hello => Message::Hello(Hello::parse(repr)?),
            MessageKind::Describe => Message::Describe(Describe::parse(repr)?),
            MessageKind::DescribeReturn => Message::DescribeReturn(DescribeReturn::parse(repr)?),
            MessageKind::FunctionCall => Message::FunctionCall(FunctionCall::parse(repr)?),
            MessageKind::FunctionReturn => Message::FunctionReturn(FunctionReturn::parse(repr)?),
            MessageKind::VariableRequest => Message::VariableRequest(VariableRequest::parse(repr)?),
            MessageKind::VariableValue(ty) => {
                Message::VariableValue(VariableValue::parse(repr, ty)?)
            }
            MessageKind::Event => Message::Event(Event::parse(repr)?),
            MessageKind::Subscribe => Message::Subscribe(Subscribe::parse(repr)?),
            MessageKind::GetTime => Message::GetTime(GetTime::parse(repr)?),
            MessageKind::Time => Message::Time(Time::parse(repr)?),
            MessageKind::UpdateBegin => Message::UpdateBegin(UpdateBegin::parse(repr)?),
            MessageKind::UpdateReady => Message::UpdateReady(UpdateReady::parse(repr)?),
            MessageKind::Chunk => Message::Chunk(Chunk::parse(repr)?),
            MessageKind::ChunkReceived => Message::ChunkReceived(ChunkReceived::parse(repr)?),
            MessageKind::ChunkMissed => Message::ChunkMissed(ChunkMissed::parse(repr)?),
            MessageKind::UpdateDone => Message::UpdateDone(UpdateDone::parse(repr)?),
            MessageKind::SignalStart | MessageKind::SignalStop => {
                Message::Signal(Signal::parse(repr)?)
            }
            MessageKind::KeyChange => Message::KeyChange(KeyChange::parse(repr)?),
            MessageKind::KeyChanged => Message::KeyChanged(KeyChanged::parse(repr)?),
            MessageKind::Reply => Message::Reply(Reply::parse(repr)?),
            MessageKind::Ping => Message::Ping(Ping::parse(repr)?),
            MessageKind::EmptyAck => Message::EmptyAck(EmptyAck::parse(repr)?),
            MessageKind::Goodbye => Message::Goodbye(Goodbye::parse(repr)?),
            MessageKind::Response | MessageKind::Unknown => {
                return Err(Error::Mismatch {
                    expected: "known message kind",
                });
            }
        })
    }

    /// The message's kind.
    #[must_use]
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Hello(_) => MessageKind::Hello,
            Message::Describe(_) => MessageKind::Describe,
            Message::DescribeReturn(_) => MessageKind::DescribeReturn,
            Message::FunctionCall(_) => MessageKind::FunctionCall,
            Message::FunctionReturn(_) => MessageKind::FunctionReturn,
            Message::VariableRequest(_) => MessageKind::VariableRequest,
            Message::VariableValue(v) => MessageKind::VariableValue(v.value.var_type()),
            Message::Event(_) => MessageKind::Event,
            Message::Subscribe(_) => MessageKind::Subscribe,
            Message::GetTime(_) => MessageKind::GetTime,
            Message::Time(_) => MessageKind::Time,
            Message::UpdateBegin(_) => MessageKind::UpdateBegin,
            Message::UpdateReady(_) => MessageKind::UpdateReady,
            Message::Chunk(_) => MessageKind::Chunk,
            Message::ChunkReceived(_) => MessageKind::ChunkReceived,
            Message::ChunkMissed(_) => MessageKind::ChunkMissed,
            Message::UpdateDone(_) => MessageKind::UpdateDone,
            Message::Signal(s) if s.start => MessageKind::SignalStart,
            Message::Signal(_) => MessageKind::SignalStop,
            Message::KeyChange(_) => MessageKind::KeyChange,
            Message::KeyChanged(_) => MessageKind::KeyChanged,
            Message::Reply(_) => MessageKind::Reply,
            Message::Ping(_) => MessageKind::Ping,
            Message::EmptyAck(_) => MessageKind::EmptyAck,
            Message::Goodbye(_) => MessageKind::Goodbye,
        }
    }
}

#[cfg(test)]
mod tests;
