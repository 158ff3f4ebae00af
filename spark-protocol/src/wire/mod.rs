//! The wire layer: the bytes of every plaintext protocol message, and nothing else.
//!
//! It knows no keys, no time and no session state. What it owns:
//!
//! - [`coap`]: the CoAP codec of the Spark dialect, a zero-copy [`Packet`] view and a validated [`Repr`]
//!   with `parse` / `emit` / `buffer_len`;
//! - [`message`]: the typed messages of the whole set in both directions ([`Message`], one struct per
//!   message), parsed from and emitted to a [`Repr`];
//! - [`classify`](mod@classify): which message a received packet is, decided exactly the way the
//!   original Spark Core firmware and the original Node.js server decide it ([`classify()`] on the
//!   bytes, [`classify_repr`] on a parsed message, with the same answers);
//! - [`hello`] and [`ota`]: the binary payloads (Hello, UpdateBegin, ChunkMissed, the chunk CRC);
//! - [`describe`]: the description JSON a device returns to Describe, written and read without
//!   allocation;
//! - [`limits`]: the sizes the original implementations enforce, with where each number comes from.
//!
//! Everything here works without `alloc`. Parsing takes any byte string and returns a value or an
//! [`Error`]; it never panics, and a message that parses re-emits to the same bytes.
//!
//! ```
//! use spark_protocol::wire::{classify, Message, MessageKind, Packet, Repr, Role};
//!
//! // A published event as the Core writes it: NON POST /e/motion-detected.
//! let bytes = b"\x50\x02\x97\xb3\xb1\x65\x0d\x02motion-detected";
//! let packet = Packet::new_checked(&bytes[..])?;
//! let kind = classify(&packet, Role::Cloud);
//! assert_eq!(kind, MessageKind::Event);
//!
//! let repr = Repr::parse(&packet)?;
//! let Message::Event(event) = Message::parse(&repr, kind)? else { unreachable!() };
//! assert!(event.name == "motion-detected");
//!
//! let mut out = [0u8; 64];
//! let n = event.emit(&mut out)?;
//! assert_eq!(&out[..n], &bytes[..]);
//! # Ok::<(), spark_protocol::wire::Error>(())
//! ```

pub mod classify;
pub mod coap;
pub mod describe;
pub mod hello;
pub mod limits;
pub mod message;
pub mod ota;

pub use classify::{MessageKind, Role, classify, classify_repr};
pub use coap::{CoapOption, Code, MessageType, OptionNumber, Options, Packet, Repr, Token};
pub use message::{Header, Message};

/// Everything that can be wrong with a plaintext message, or with a buffer given to write one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The message ends inside its header, token or an option.
    #[error("message truncated")]
    Truncated,
    /// The version field is not 1.
    #[error("unsupported CoAP version {0}")]
    Version(u8),
    /// The token length field is over 8.
    #[error("token length {0} is over 8")]
    TokenLength(u8),
    /// An option header uses the reserved nibble 15 for its delta or length.
    #[error("option header uses the reserved nibble 15")]
    ReservedOptionNibble,
    /// The option number passes 65535.
    #[error("option number over 65535")]
    OptionNumber,
    /// Options given to be written are not in ascending number order.
    #[error("options are not in ascending order")]
    OptionOrder,
    /// An option value is longer than the encoding can express.
    #[error("option value longer than 65804 bytes")]
    OptionTooLong,
    /// The output buffer is too small; `required` bytes are needed.
    #[error("buffer too small: {required} bytes required")]
    InsufficientSize {
        /// The size the output needs.
        required: usize,
    },
    /// The message is not the kind it was decoded as (wrong code, resource letter or type).
    #[error("message is not a {expected}")]
    Mismatch {
        /// The message that was expected.
        expected: &'static str,
    },
    /// A part the message needs is absent.
    #[error("{0} missing")]
    Missing(&'static str),
    /// A field has a size the message does not allow.
    #[error("{field} has {found} bytes, expected {expected}")]
    Length {
        /// Which field.
        field: &'static str,
        /// The size found.
        found: usize,
        /// The size allowed (the largest, where a range is allowed).
        expected: usize,
    },
    /// A field holds a value the message does not allow.
    #[error("invalid {0}")]
    Invalid(&'static str),
}
