//! Which message a received packet is, decided the way the original peers decide it.
//!
//! The two sides never used the same rules, and a faithful peer has to reproduce each:
//!
//! - **The device** ([`Role::Device`], the Spark Core, CCL `SparkProtocol::received_message`) looks
//!   at the code and at the byte at offset `5 + token length`, the value of a one-byte first Uri-Path
//!   option `b1 X`; the signal state is the byte at the fixed offset 8. Message types are ignored,
//!   except that an empty CON is a ping and any other empty message an empty ACK; every 2.05 is
//!   taken for the time reply. A byte past the end of the message is read as the PKCS#7 padding
//!   that follows the message in the Core's receive buffer (never a letter; non-zero for the
//!   signal byte).
//! - **The cloud** ([`Role::Cloud`], the Node.js server, SP `SparkCore.routeMessage` and
//!   `Messages.getRouteKey`) routes requests (codes 0.01 to 0.04) by code and the first character of
//!   the Uri-Path, whatever the message type. Everything else is a response, matched to its request
//!   by token ([`MessageKind::Response`]); an empty CON is a ping.
//!
//! Neither original knows the Device OS additions (Goodbye `x`, device-initiated describe `POST d`):
//! they classify as [`MessageKind::Unknown`], and a session that supports them decodes them by
//! letter with [`Message::parse`](super::Message::parse).
//!
//! ```
//! use spark_protocol::wire::{MessageKind, Packet, Repr, Role, classify, classify_repr};
//!
//! // An empty CON is a ping to either side.
//! let ping = Packet::new_checked(&[0x40, 0x00, 0x12, 0x34][..])?;
//! assert_eq!(classify(&ping, Role::Device), MessageKind::Ping);
//! assert_eq!(classify(&ping, Role::Cloud), MessageKind::Ping);
//! // A 2.05 with a token: the Core takes any 2.05 for the time, the server a response to match.
//! let reply = [0x61, 0x45, 0x00, 0x01, 0x07, 0xff, 0x5f, 0x00, 0x00, 0x00];
//! let repr = Repr::parse_bytes(&reply)?;
//! assert_eq!(classify_repr(&repr, Role::Device), MessageKind::Time);
//! assert_eq!(classify_repr(&repr, Role::Cloud), MessageKind::Response);
//! # Ok::<(), spark_protocol::wire::Error>(())
//! ```

use super::coap::{Code, HEADER_LEN, MessageType, OptionNumber, Options, Packet, Repr};
use super::describe::VarType;

/// The side that received the message, whose rules classify it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The device classifies what the cloud sends.
    Device,
    /// The cloud classifies what the device sends.
    Cloud,
}

/// The kind of a message: what [`classify`] answers, and what [`Message::parse`] decodes.
///
/// [`Message::parse`]: super::Message::parse
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// `POST h`, both ways.
    Hello,
    /// `GET d`, cloud to device.
    Describe,
    /// The description JSON, device to cloud (response to Describe).
    DescribeReturn,
    /// `POST f/<name>?<argument>`, cloud to device.
    FunctionCall,
    /// The function's i32 result, device to cloud (response to FunctionCall).
    FunctionReturn,
    /// `GET v/<name>`, cloud to device.
    VariableRequest,
    /// The variable's value, device to cloud (response to VariableRequest); the type comes from the
    /// description.
    VariableValue(VarType),
    /// `POST e|E/<name>`: a published event (device to cloud) or a delivered one (cloud to device).
    Event,
    /// `GET e[/<filter>]`, device to cloud.
    Subscribe,
    /// `GET t`, device to cloud.
    GetTime,
    /// The time reply, cloud to device: the device takes every 2.05 for it.
    Time,
    /// `POST u`, cloud to device.
    UpdateBegin,
    /// Device to cloud (response to UpdateBegin).
    UpdateReady,
    /// `POST c?<crc>[&<index>]`, cloud to device.
    Chunk,
    /// 2.04 OK or 4.00 BAD, device to cloud (response to Chunk).
    ChunkReceived,
    /// `GET c` with chunk indices, device to cloud.
    ChunkMissed,
    /// `PUT u`, cloud to device (Device OS also sends it device to cloud).
    UpdateDone,
    /// `PUT s` with a non-zero byte: start signalling (rainbow LED).
    SignalStart,
    /// `PUT s` with a zero byte: stop signalling.
    SignalStop,
    /// `PUT k`, cloud to device.
    KeyChange,
    /// Device to cloud (response to KeyChange).
    KeyChanged,
    /// A response known by its code alone (acknowledging UpdateDone, Signal, an event, ...).
    Reply,
    /// An empty CON, either way.
    Ping,
    /// An empty ACK (the device also files any empty NON or RST here).
    EmptyAck,
    /// `POST x`, device to cloud (Device OS; unknown to the Core and the original server).
    Goodbye,
    /// A response the cloud matches to its request by token (the original server takes an ACK whose
    /// token matches nothing for a ping acknowledgement).
    Response,
    /// Nothing the receiving side recognises.
    Unknown,
}

impl MessageKind {
    /// The message's name as the protocol says it.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            MessageKind::Hello => "Hello",
            MessageKind::Describe => "Describe",
            MessageKind::DescribeReturn => "DescribeReturn",
            MessageKind::FunctionCall => "FunctionCall",
            MessageKind::FunctionReturn => "FunctionReturn",
            MessageKind::VariableRequest => "VariableRequest",
            MessageKind::VariableValue(_) => "VariableValue",
            MessageKind::Event => "Event",
            MessageKind::Subscribe => "Subscribe",
            MessageKind::GetTime => "GetTime",
            MessageKind::Time => "Time",
            MessageKind::UpdateBegin => "UpdateBegin",
            MessageKind::UpdateReady => "UpdateReady",
            MessageKind::Chunk => "Chunk",
            MessageKind::ChunkReceived => "ChunkReceived",
            MessageKind::ChunkMissed => "ChunkMissed",
            MessageKind::UpdateDone => "UpdateDone",
            MessageKind::SignalStart => "SignalStart",
            MessageKind::SignalStop => "SignalStop",
            MessageKind::KeyChange => "KeyChange",
            MessageKind::KeyChanged => "KeyChanged",
            MessageKind::Reply => "Reply",
            MessageKind::Ping => "Ping",
            MessageKind::EmptyAck => "EmptyAck",
            MessageKind::Goodbye => "Goodbye",
            MessageKind::Response => "Response",
            MessageKind::Unknown => "Unknown",
        }
    }
}

impl core::fmt::Display for MessageKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// Classifies a received message by the receiving side's rules (see the [module docs](self)).
///
/// Total: any packet gets a kind. Build the packet with [`Packet::new_checked`]; an unchecked packet
/// shorter than the 4-byte header is [`MessageKind::Unknown`].
pub fn classify<T: AsRef<[u8]>>(packet: &Packet<T>, receiver: Role) -> MessageKind {
    let buf = packet.as_bytes();
    if buf.len() < HEADER_LEN {
        return MessageKind::Unknown;
    }
    match receiver {
        Role::Device => as_core(buf, buf.len()),
        Role::Cloud => as_server(packet.code(), packet.msg_type(), &packet.options()),
    }
}

/// [`classify`] for an already parsed message: the same answer as classifying its bytes, without
/// walking them again.
#[must_use]
pub fn classify_repr(repr: &Repr<'_>, receiver: Role) -> MessageKind {
    match receiver {
        Role::Device => {
            // The Core looks no further than offset 13 (5 + an 8-byte token); the encoding is
            // canonical, so the first 16 encoded bytes are the received ones.
            let mut prefix = [0u8; 16];
            repr.encode_prefix(&mut prefix);
            as_core(&prefix, repr.buffer_len())
        }
        Role::Cloud => as_server(repr.code, repr.msg_type, &repr.options),
    }
}

/// The byte at `index` as the Core sees it: the message of `len` bytes (whose first bytes are in
/// `prefix`), then its PKCS#7 padding.
fn core_byte(prefix: &[u8], len: usize, index: usize) -> u8 {
    if index < len {
        prefix.get(index).copied().unwrap_or(0)
    } else {
        // Past the end lie the padding bytes, each equal to the padding length (1..=16), and the
        // padding covers at least up to offset 15 of a block.
        (16 - len % 16) as u8
    }
}

fn as_core(buf: &[u8], len: usize) -> MessageKind {
    let tkl = usize::from(buf[0] & 0x0F);
    let letter = core_byte(buf, len, 5 + tkl);
    match buf[1] {
        0x01 => match letter {
            b'v' => MessageKind::VariableRequest,
            b'd' => MessageKind::Describe,
            _ => MessageKind::Unknown,
        },
        0x02 => match letter {
            b'e' | b'E' => MessageKind::Event,
            b'h' => MessageKind::Hello,
            b'f' => MessageKind::FunctionCall,
            b'u' => MessageKind::UpdateBegin,
            b'c' => MessageKind::Chunk,
            _ => MessageKind::Unknown,
        },
        0x03 => match letter {
            b'k' => MessageKind::KeyChange,
            b'u' => MessageKind::UpdateDone,
            b's' if core_byte(buf, len, 8) != 0 => MessageKind::SignalStart,
            b's' => MessageKind::SignalStop,
            _ => MessageKind::Unknown,
        },
        0x00 => match MessageType::from_bits(buf[0] >> 4) {
            MessageType::Confirmable => MessageKind::Ping,
            _ => MessageKind::EmptyAck,
        },
        0x45 => MessageKind::Time,
        _ => MessageKind::Unknown,
    }
}

fn as_server(code: Code, msg_type: MessageType, options: &Options<'_>) -> MessageKind {
    if (1..=4).contains(&u8::from(code)) {
        // SP joins the Uri-Path options into "/a/b" and keys on the character after the first '/'.
        let letter = options
            .values(OptionNumber::UriPath)
            .next()
            .and_then(|v| v.first().copied());
        let routed = match (code, letter) {
            (Code::Get, Some(b'c')) => Some(MessageKind::ChunkMissed),
            (Code::Get, Some(b'v')) => Some(MessageKind::VariableRequest),
            (Code::Get, Some(b'e')) => Some(MessageKind::Subscribe),
            (Code::Get, Some(b'd')) => Some(MessageKind::Describe),
            (Code::Get, Some(b't')) => Some(MessageKind::GetTime),
            (Code::Post, Some(b'h')) => Some(MessageKind::Hello),
            (Code::Post, Some(b'u')) => Some(MessageKind::UpdateBegin),
            (Code::Post, Some(b'c')) => Some(MessageKind::Chunk),
            (Code::Post, Some(b'f')) => Some(MessageKind::FunctionCall),
            (Code::Post, Some(b'e' | b'E')) => Some(MessageKind::Event),
            (Code::Put, Some(b'k')) => Some(MessageKind::KeyChange),
            (Code::Put, Some(b'u')) => Some(MessageKind::UpdateDone),
            // SP calls this RaiseYourHand and never looks at the byte; the byte says which.
            (Code::Put, Some(b's')) => Some(
                match options
                    .values(OptionNumber::UriQuery)
                    .next()
                    .and_then(|v| v.first())
                {
                    Some(0) => MessageKind::SignalStop,
                    _ => MessageKind::SignalStart,
                },
            ),
            _ => None,
        };
        if let Some(kind) = routed {
            return kind;
        }
    }
    match (msg_type, code.is_empty()) {
        (MessageType::Acknowledgement, true) => MessageKind::EmptyAck,
        (MessageType::Confirmable, true) => MessageKind::Ping,
        (_, true) => MessageKind::Unknown,
        _ if code.is_request() => MessageKind::Unknown,
        _ => MessageKind::Response,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(bytes: &[u8], role: Role) -> MessageKind {
        let packet = Packet::new_checked(bytes).unwrap();
        let kind = classify(&packet, role);
        assert_eq!(classify_repr(&Repr::parse(&packet).unwrap(), role), kind);
        kind
    }

    /// Each message's bytes and the kind `role` must see in them.
    fn check(role: Role, cases: &[(&[u8], MessageKind)]) {
        for (bytes, want) in cases {
            assert_eq!(kind(bytes, role), *want, "{bytes:02x?}");
        }
    }

    #[test]
    fn core_rules() {
        use MessageKind as K;
        let d = Role::Device;
        check(
            d,
            &[
                (b"\x41\x01\xab\xce\x88\xb1v", K::VariableRequest),
                (b"\x41\x01\xab\xce\x88\xb1d", K::Describe),
                (b"\x41\x01\xab\xce\x88\xb1t", K::Unknown),
                (b"\x50\x02\xbb\xbb\xb1e", K::Event),
                (b"\x50\x02\xbb\xbb\xb1E", K::Event),
                (b"\x50\x02\xbb\xbb\xb1h", K::Hello),
                (b"\x41\x02\xbb\xbb\x01\xb1f", K::FunctionCall),
                (b"\x41\x02\xbb\xbb\x01\xb1u", K::UpdateBegin),
                (b"\x41\x02\xbb\xbb\x01\xb1c", K::Chunk),
                (b"\x41\x03\xbb\xbb\x01\xb1k", K::KeyChange),
                (b"\x41\x03\xbb\xbb\x01\xb1u", K::UpdateDone),
                (b"\x41\x03\xab\xcd\xef\xb1s\x41\x01", K::SignalStart),
                (b"\x41\x03\xab\xcd\xef\xb1s\x41\x00", K::SignalStop),
                // Without the query byte the Core reads padding, which is never zero.
                (b"\x41\x03\xab\xcd\xef\xb1s", K::SignalStart),
                (b"\x40\x00\x00\x01", K::Ping),
                (b"\x60\x00\x00\x01", K::EmptyAck),
                (b"\x50\x00\x00\x01", K::EmptyAck),
                (b"\x70\x00\x00\x01", K::EmptyAck),
                (b"\x61\x45\x99\x99\x99\xffSYf\xad", K::Time),
                (b"\x51\x45\x99\x99\x99", K::Time),
                (b"\x61\x44\x99\x99\x99", K::Unknown),
                // The Core reads the byte at 5 + TKL, whatever option is there: a long first Uri-Path
                // starting with the letter still counts, a first option of another number does not.
                (b"\x50\x02\x00\x00\xb5hello", K::Hello),
                (b"\x50\x02\x00\x00\x11\x00\xa1h", K::Unknown),
                // A message too short to hold a letter reads padding.
                (b"\x50\x02\x00\x00", K::Unknown),
            ],
        );
    }

    #[test]
    fn server_rules() {
        use MessageKind as K;
        let c = Role::Cloud;
        check(
            c,
            &[
                (
                    b"\x50\x02\x97\xb2\xb1h\xff\xff\xff\xff\xff\x00\x00",
                    K::Hello,
                ),
                (b"\x50\x02\x97\xb3\xb1e\x01x", K::Event),
                (b"\x50\x02\x97\xb3\xb1E\x01x", K::Event),
                (b"\x40\x01\x97\xb3\xb1e", K::Subscribe),
                (b"\x41\x01\x97\xb3\x98\xb1t", K::GetTime),
                (b"\x40\x01\x97\xb4\xb1c\xff\x00\x00", K::ChunkMissed),
                // SP ignores the message type and reads the first Uri-Path wherever it is.
                (b"\x60\x01\x97\xb4\xb1c", K::ChunkMissed),
                (b"\x50\x02\x00\x00\x11\x00\xa1h", K::Hello),
                (b"\x60\x00\x97\xb2", K::EmptyAck),
                (b"\x61\x00\x97\xb2\x00", K::EmptyAck),
                (b"\x40\x00\x97\xb2", K::Ping),
                (b"\x50\x00\x97\xb2", K::Unknown),
                (b"\x51\x44\x97\xb3\xef\xff\x00\x00\x01\xc8", K::Response),
                (b"\x61\x45\x97\xb2\x88\xff\x01", K::Response),
                (b"\x51\x80\x97\xb3\x22", K::Response),
                (b"\x40\x02\x00\x01\xb1x", K::Unknown),
                (b"\x40\x04\x00\x01\xb1e", K::Unknown),
                (b"\x40\x01\x00\x01", K::Unknown),
                (b"\x41\x03\xab\xcd\xef\xb1s\x41\x00", K::SignalStop),
                (b"\x41\x03\xab\xcd\xef\xb1s\x41\x01", K::SignalStart),
            ],
        );
    }

    #[test]
    fn too_short_is_unknown() {
        for role in [Role::Device, Role::Cloud] {
            assert_eq!(
                classify(&Packet::new_unchecked(&[0x40u8][..]), role),
                MessageKind::Unknown
            );
        }
    }
}
