//! The messages nodes exchange on the bus, and their encoding.
//!
//! Every payload is one line of JSON (the header: which message, and its fields), a line feed, then raw bytes for
//! the messages that carry some (an event's SSE frame, a piece of a firmware image). JSON keeps the headers readable
//! with `nats sub`; the raw tail keeps images and frames out of JSON strings. Parsing never panics: a payload that
//! is not one of these messages is an [`WireError`], which the node logs and drops.

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::hub::{Description, HubError, VarType, VariableValue};

/// The subject every node publishes its events on, and subscribes to.
pub const EVENTS: &str = "spark.cluster.events";
/// The subject of presence: heartbeats, and devices held or let go.
pub const PRESENCE: &str = "spark.cluster.presence";
/// The subject of administrative changes made on one node that every node must act on at once.
pub const ADMIN: &str = "spark.cluster.admin";
/// The prefix of a node's request subject (`spark.cluster.node.<node id>`).
pub const NODE_PREFIX: &str = "spark.cluster.node.";
/// The prefix of the subject on which a node hands out the list of the devices it holds, piece by piece
/// (`spark.cluster.list.<node id>`, request/reply: [`ListRequest`] in, [`ListPiece`] out).
pub const LIST_PREFIX: &str = "spark.cluster.list.";

/// The longest node id.
pub const MAX_NODE_ID: usize = 64;

/// The subject on which `node` answers requests for the devices it holds.
#[must_use]
pub fn node_subject(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}

/// The subject on which `node` answers for the list of the devices it holds.
#[must_use]
pub fn list_subject(node: &str) -> String {
    format!("{LIST_PREFIX}{node}")
}

/// Whether `id` may name a node: 1 to 64 ASCII letters, digits, `-` or `_` (one token of a NATS subject).
#[must_use]
pub fn valid_node_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_NODE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why a payload was not a bus message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// No line feed ends the header.
    #[error("no header line")]
    NoHeader,
    /// The header is not the JSON of a message of this subject.
    #[error("malformed header: {0}")]
    Header(String),
    /// A node id is not a valid subject token.
    #[error("invalid node id")]
    NodeId,
    /// A field is out of its range.
    #[error("invalid field: {0}")]
    Field(&'static str),
}

/// One device a node holds, and since when (milliseconds since the epoch, the node's clock).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    /// The device id (24 hex digits).
    pub device: String,
    /// When its session was established.
    pub since_ms: u64,
}

/// A message on [`PRESENCE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum PresenceMessage {
    /// A node is alive (sent every lease / 3). It says how many devices it holds and their [`digest`]; a peer
    /// whose view differs asks for the list ([`LIST_PREFIX`]), so a heartbeat stays small however many devices a
    /// node holds.
    Heartbeat {
        /// The sender.
        node: String,
        /// Its lease: silent for this long, it is taken for dead.
        lease_ms: u64,
        /// How many devices it holds.
        #[serde(default)]
        count: u64,
        /// The [`digest`] of what it holds.
        #[serde(default)]
        digest: String,
        /// Every device it holds, when the sender puts the list in (a node of this version never does: it
        /// answers list requests instead); taken as the whole truth when present.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        devices: Option<Vec<Holding>>,
    },
    /// A device completed its handshake on `node`.
    Held {
        /// The sender.
        node: String,
        /// The device, and since when.
        holding: Holding,
    },
    /// A device's session on `node` ended.
    Released {
        /// The sender.
        node: String,
        /// The device id.
        device: String,
    },
}

impl PresenceMessage {
    /// The sending node.
    #[must_use]
    pub fn node(&self) -> &str {
        match self {
            PresenceMessage::Heartbeat { node, .. }
            | PresenceMessage::Held { node, .. }
            | PresenceMessage::Released { node, .. } => node,
        }
    }
}

/// What a node asks on another's [`list_subject`]: one piece of its list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// The piece, from 0.
    pub piece: u32,
}

/// One piece of the list of the devices a node holds, sorted by device id and cut so that a piece fits under the
/// server's `max_payload` ([`holdings_per_piece`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListPiece {
    /// The sender.
    pub node: String,
    /// This piece, from 0.
    pub piece: u32,
    /// How many pieces the list has.
    pub pieces: u32,
    /// How many devices the whole list has.
    pub count: u64,
    /// The [`digest`] of the whole list: a piece of another list (the holdings changed in between) does not match.
    pub digest: String,
    /// This piece's devices.
    pub devices: Vec<Holding>,
}

/// The bytes of one [`Holding`] in a list, at most: `{"device":"<24 hex>","since_ms":<20 digits>},` is 70.
pub const HOLDING_BYTES: usize = 72;

/// Room kept in a list piece for everything but its devices.
pub const LIST_OVERHEAD: usize = 512;

/// How many holdings one [`ListPiece`] carries under `max_payload` bytes (at least one).
#[must_use]
pub fn holdings_per_piece(max_payload: usize) -> usize {
    (max_payload.saturating_sub(LIST_OVERHEAD) / HOLDING_BYTES).max(1)
}

/// A digest of a set of holdings that does not depend on their order: the wrapping sum of the first 8 bytes of
/// SHA-256 over each `device:since_ms`, as 16 hex digits. Two views of a node's devices that agree on the count and
/// the digest are taken to agree.
#[must_use]
pub fn digest<'a>(holdings: impl IntoIterator<Item = (&'a str, u64)>) -> String {
    use sha2::{Digest, Sha256};
    let mut sum = 0u64;
    for (device, since_ms) in holdings {
        let hash = Sha256::new()
            .chain_update(device.as_bytes())
            .chain_update(b":")
            .chain_update(since_ms.to_string().as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&hash[..8]);
        sum = sum.wrapping_add(u64::from_be_bytes(first));
    }
    format!("{sum:016x}")
}

/// The header of a message on [`EVENTS`]; the SSE frame follows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventHeader {
    /// The publishing node (a node skips its own).
    pub node: String,
    /// The event name.
    pub name: String,
    /// The user it belongs to.
    pub owner: Option<String>,
    /// The publishing device.
    pub device: Option<String>,
    /// Whether it is public.
    pub public: bool,
}

/// What one node asks of the node that holds a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Op {
    /// Its description.
    Describe,
    /// A function call.
    Call {
        /// The function.
        function: String,
        /// Its argument.
        argument: String,
    },
    /// A variable read.
    Get {
        /// The variable.
        variable: String,
    },
    /// The LED signal on or off.
    Signal {
        /// On or off.
        on: bool,
    },
    /// An event delivered to the device.
    Deliver {
        /// The event name.
        name: String,
        /// Its data.
        data: Option<String>,
        /// Time to live in seconds.
        ttl: u32,
        /// Whether it is public.
        public: bool,
    },
    /// A piece of a firmware image (the bytes follow the header), staged by the holder until [`Op::Flash`].
    Chunk {
        /// The upload this piece belongs to (chosen by the sender).
        upload: u64,
        /// Where the piece starts in the image (pieces arrive in order).
        offset: u64,
        /// The image's whole size.
        total: u64,
    },
    /// Flash the staged image of `upload`; progress and then the outcome come back on the reply subject.
    Flash {
        /// The upload.
        upload: u64,
        /// The image's whole size.
        total: u64,
    },
}

/// A request: a device and what to do with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// The device id.
    pub device: String,
    /// What to do.
    pub op: Op,
}

/// A variable's value as the bus carries it (its type kept, unlike the REST API's JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum WireValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i32),
    /// A double.
    Double(f64),
    /// A string.
    String(String),
    /// No value.
    Null,
    /// Raw bytes of a type code.
    Raw(u8, Vec<u8>),
}

impl From<&VariableValue> for WireValue {
    fn from(v: &VariableValue) -> WireValue {
        match v {
            VariableValue::Bool(b) => WireValue::Bool(*b),
            VariableValue::Int(i) => WireValue::Int(*i),
            VariableValue::Double(d) => WireValue::Double(*d),
            VariableValue::String(s) => WireValue::String(s.clone()),
            VariableValue::Raw { type_code, bytes } => WireValue::Raw(*type_code, bytes.clone()),
            _ => WireValue::Null,
        }
    }
}

impl From<WireValue> for VariableValue {
    fn from(v: WireValue) -> VariableValue {
        match v {
            WireValue::Bool(b) => VariableValue::Bool(b),
            WireValue::Int(i) => VariableValue::Int(i),
            WireValue::Double(d) => VariableValue::Double(d),
            WireValue::String(s) => VariableValue::String(s),
            WireValue::Null => VariableValue::Null,
            WireValue::Raw(type_code, bytes) => VariableValue::Raw { type_code, bytes },
        }
    }
}

/// Why the holder could not do it, as [`HubError`] says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "error", content = "text", rename_all = "snake_case")]
pub enum WireHubError {
    /// [`HubError::NotConnected`].
    NotConnected,
    /// [`HubError::UnknownFunction`].
    UnknownFunction,
    /// [`HubError::UnknownVariable`].
    UnknownVariable,
    /// [`HubError::TimedOut`].
    TimedOut,
    /// [`HubError::Busy`].
    Busy(String),
    /// [`HubError::Device`] (and any error this version does not know).
    Device(String),
}

impl From<&HubError> for WireHubError {
    fn from(e: &HubError) -> WireHubError {
        match e {
            HubError::NotConnected => WireHubError::NotConnected,
            HubError::UnknownFunction => WireHubError::UnknownFunction,
            HubError::UnknownVariable => WireHubError::UnknownVariable,
            HubError::TimedOut => WireHubError::TimedOut,
            HubError::Busy(s) => WireHubError::Busy(s.clone()),
            HubError::Device(s) => WireHubError::Device(s.clone()),
        }
    }
}

impl From<WireHubError> for HubError {
    fn from(e: WireHubError) -> HubError {
        match e {
            WireHubError::NotConnected => HubError::NotConnected,
            WireHubError::UnknownFunction => HubError::UnknownFunction,
            WireHubError::UnknownVariable => HubError::UnknownVariable,
            WireHubError::TimedOut => HubError::TimedOut,
            WireHubError::Busy(s) => HubError::Busy(s),
            WireHubError::Device(s) => HubError::Device(s),
        }
    }
}

/// The holder's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    /// The device's description (variable types by name).
    Described {
        /// Function names.
        functions: Vec<String>,
        /// Variables and their type names.
        variables: BTreeMap<String, String>,
    },
    /// A function's result.
    Returned {
        /// The value.
        value: i32,
    },
    /// A variable's value.
    Read {
        /// The value.
        value: WireValue,
    },
    /// Done (signal, delivery, a staged piece, a finished update).
    Done,
    /// An update's progress (then more progress, then the outcome).
    Progress {
        /// Bytes the device acknowledged.
        sent: u64,
        /// The image's size.
        total: u64,
    },
    /// It failed.
    Failed {
        /// Why.
        error: WireHubError,
    },
}

impl Reply {
    /// The reply of a failure.
    #[must_use]
    pub fn failed(e: &HubError) -> Reply {
        Reply::Failed { error: e.into() }
    }

    /// The reply carrying a description.
    #[must_use]
    pub fn described(d: &Description) -> Reply {
        Reply::Described {
            functions: d.functions.clone(),
            variables: d
                .variables
                .iter()
                .map(|(k, v)| (k.clone(), v.name().to_owned()))
                .collect(),
        }
    }

    /// The description this reply carries (variables of an unknown type are left out).
    pub fn into_description(self) -> Result<Description, HubError> {
        match self {
            Reply::Described {
                functions,
                variables,
            } => Ok(Description {
                functions,
                variables: variables
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, VarType::from_name(&v)?)))
                    .collect(),
            }),
            other => Err(other.unexpected()),
        }
    }

    /// A reply that does not answer what was asked, or a failure, as the caller's error.
    #[must_use]
    pub fn unexpected(self) -> HubError {
        match self {
            Reply::Failed { error } => error.into(),
            _ => HubError::Device("the holding node gave an unexpected answer".into()),
        }
    }
}

/// A header line, a line feed, then `body`.
#[must_use]
pub fn emit(header: &impl Serialize, body: &[u8]) -> Bytes {
    // Serialising these plain structs into a vector cannot fail; an empty header would be refused by the peer.
    let json = serde_json::to_vec(header).unwrap_or_default();
    let mut out = BytesMut::with_capacity(json.len() + 1 + body.len());
    out.put_slice(&json);
    out.put_u8(b'\n');
    out.put_slice(body);
    out.freeze()
}

/// Splits a payload into its header, read as `T`, and the bytes after it.
pub fn parse<'a, T: Deserialize<'a>>(payload: &'a [u8]) -> Result<(T, &'a [u8]), WireError> {
    let at = payload
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(WireError::NoHeader)?;
    let (head, rest) = payload.split_at(at);
    let header = serde_json::from_slice(head).map_err(|e| WireError::Header(e.to_string()))?;
    Ok((header, &rest[1..]))
}

/// Reads a [`PRESENCE`] message (the sender's id checked).
pub fn parse_presence(payload: &[u8]) -> Result<PresenceMessage, WireError> {
    let (m, _): (PresenceMessage, _) = parse(payload)?;
    if !valid_node_id(m.node()) {
        return Err(WireError::NodeId);
    }
    Ok(m)
}

/// Reads a list request.
pub fn parse_list_request(payload: &[u8]) -> Result<ListRequest, WireError> {
    parse(payload).map(|(r, _)| r)
}

/// Reads a list piece (the sender's id checked, and the piece among the pieces).
pub fn parse_list_piece(payload: &[u8]) -> Result<ListPiece, WireError> {
    let (p, _): (ListPiece, _) = parse(payload)?;
    if !valid_node_id(&p.node) {
        return Err(WireError::NodeId);
    }
    if p.piece >= p.pieces {
        return Err(WireError::Field("piece"));
    }
    Ok(p)
}

/// Reads an [`EVENTS`] message: its header and the SSE frame.
pub fn parse_event(payload: &[u8]) -> Result<(EventHeader, &[u8]), WireError> {
    let (h, frame): (EventHeader, _) = parse(payload)?;
    if !valid_node_id(&h.node) {
        return Err(WireError::NodeId);
    }
    if !frame.starts_with(b"event: ") || !frame.ends_with(b"\n\n") {
        return Err(WireError::Field("frame"));
    }
    Ok((h, frame))
}

/// Reads a request: what to do, and the bytes of a [`Op::Chunk`].
pub fn parse_request(payload: &[u8]) -> Result<(Request, &[u8]), WireError> {
    let (r, body): (Request, _) = parse(payload)?;
    if let Op::Chunk { offset, total, .. } = r.op
        && offset.saturating_add(body.len() as u64) > total
    {
        return Err(WireError::Field("chunk past the image's end"));
    }
    Ok((r, body))
}

/// Reads a reply.
pub fn parse_reply(payload: &[u8]) -> Result<Reply, WireError> {
    parse(payload).map(|(r, _)| r)
}

/// A change to the shared registry that the other nodes act on at once: they end the event streams it
/// revokes, forget the owner they cached, or reload the server keys. The registry holds the change itself; this only
/// says that it happened (a missed message is made up by each node's poll of the registry's generation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum AdminChange {
    /// One token was revoked: the streams opened with it end.
    TokenRevoked {
        /// The token's digest (64 lowercase hex digits).
        token: String,
    },
    /// Every token of a user was revoked: the streams they opened end.
    UserTokensRevoked {
        /// The user's name.
        user: String,
    },
    /// Tokens issued before `before` (seconds since the epoch) are refused: the streams they opened end.
    TokensCutOff {
        /// The cut-off.
        before: u64,
    },
    /// A device's owner changed (a claim, a release, a transfer, a provisioning).
    OwnerChanged {
        /// The device id.
        device: String,
    },
    /// The server keys changed (a rotation, a retirement, a reload).
    KeysChanged,
}

/// A message on [`ADMIN`]: the sending node (a node skips its own) and the change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminMessage {
    /// The sender.
    pub node: String,
    /// What changed.
    pub change: AdminChange,
}

/// The longest user name an admin message may carry.
const MAX_ADMIN_USER: usize = 256;

/// Reads an [`ADMIN`] message (the sender's id and the change's fields checked).
pub fn parse_admin(payload: &[u8]) -> Result<AdminMessage, WireError> {
    let (m, _): (AdminMessage, _) = parse(payload)?;
    if !valid_node_id(&m.node) {
        return Err(WireError::NodeId);
    }
    match &m.change {
        AdminChange::TokenRevoked { token } => {
            if token.len() != 64
                || !token
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            {
                return Err(WireError::Field("token"));
            }
        }
        AdminChange::UserTokensRevoked { user } => {
            if user.is_empty() || user.len() > MAX_ADMIN_USER {
                return Err(WireError::Field("user"));
            }
        }
        AdminChange::OwnerChanged { device } => {
            if device.parse::<spark_protocol::DeviceId>().is_err() {
                return Err(WireError::Field("device"));
            }
        }
        AdminChange::TokensCutOff { .. } | AdminChange::KeysChanged => {}
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back_as_it_was_written() {
        let presence = [
            PresenceMessage::Heartbeat {
                node: "a-1".into(),
                lease_ms: 3000,
                count: 1,
                digest: digest([("0123456789abcdef01234567", 7)]),
                devices: None,
            },
            PresenceMessage::Heartbeat {
                node: "a-1".into(),
                lease_ms: 3000,
                count: 1,
                digest: String::new(),
                devices: Some(vec![Holding {
                    device: "0123456789abcdef01234567".into(),
                    since_ms: 7,
                }]),
            },
            PresenceMessage::Held {
                node: "b".into(),
                holding: Holding {
                    device: "0123456789abcdef01234567".into(),
                    since_ms: 9,
                },
            },
            PresenceMessage::Released {
                node: "c".into(),
                device: "0123456789abcdef01234567".into(),
            },
        ];
        for m in presence {
            assert_eq!(parse_presence(&emit(&m, b"")).unwrap(), m);
        }
        let image = [0u8, b'\n', 255, 10, 13];
        let r = Request {
            device: "x".into(),
            op: Op::Chunk {
                upload: 5,
                offset: 3,
                total: 8,
            },
        };
        let bytes = emit(&r, &image);
        assert_eq!(parse_request(&bytes).unwrap(), (r, &image[..]));
        for reply in [
            Reply::Read {
                value: WireValue::Double(1.5),
            },
            Reply::Read {
                value: WireValue::Raw(4, vec![0xff, b'\n']),
            },
            Reply::failed(&HubError::Busy("updating".into())),
            Reply::Progress { sent: 1, total: 2 },
            Reply::Done,
        ] {
            assert_eq!(parse_reply(&emit(&reply, b"")).unwrap(), reply);
        }
    }

    #[test]
    fn garbage_and_hostile_fields_are_refused() {
        assert_eq!(parse_presence(b"no line feed"), Err(WireError::NoHeader));
        assert!(matches!(
            parse_presence(b"{\"kind\":\"nope\"}\n"),
            Err(WireError::Header(_))
        ));
        let bad_node = emit(
            &PresenceMessage::Released {
                node: "a.b>".into(),
                device: "d".into(),
            },
            b"",
        );
        assert_eq!(parse_presence(&bad_node), Err(WireError::NodeId));
        let past_end = emit(
            &Request {
                device: "x".into(),
                op: Op::Chunk {
                    upload: 1,
                    offset: u64::MAX,
                    total: 2,
                },
            },
            b"ab",
        );
        assert!(matches!(parse_request(&past_end), Err(WireError::Field(_))));
        let header = EventHeader {
            node: "a".into(),
            name: "n".into(),
            owner: None,
            device: None,
            public: true,
        };
        assert!(parse_event(&emit(&header, b"not a frame")).is_err());
        assert!(parse_event(&emit(&header, b"event: n\ndata: {}\n\n")).is_ok());
    }

    #[test]
    fn the_digest_ignores_order_and_sees_any_change() {
        let a = ("0123456789abcdef01234567", 7);
        let b = ("76543210fedcba9876543210", 9);
        assert_eq!(digest([a, b]), digest([b, a]));
        assert_ne!(digest([a, b]), digest([a]));
        assert_ne!(digest([a]), digest([("0123456789abcdef01234567", 8)]));
        assert_eq!(digest([]), "0000000000000000");
    }

    #[test]
    fn a_full_list_piece_fits_its_payload_limit() {
        for max_payload in [600, 1024, 4096, 1 << 20] {
            let per = holdings_per_piece(max_payload);
            let piece = ListPiece {
                node: "n".repeat(MAX_NODE_ID),
                piece: u32::MAX - 1,
                pieces: u32::MAX,
                count: u64::MAX,
                digest: digest([]),
                devices: (0..per)
                    .map(|_| Holding {
                        device: "0123456789abcdef01234567".into(),
                        since_ms: u64::MAX,
                    })
                    .collect(),
            };
            let bytes = emit(&piece, b"");
            assert!(
                bytes.len() <= max_payload,
                "{} > {max_payload}",
                bytes.len()
            );
            assert_eq!(parse_list_piece(&bytes), Ok(piece));
        }
        assert_eq!(holdings_per_piece(10), 1);
        let bad = emit(
            &ListPiece {
                node: "n".into(),
                piece: 2,
                pieces: 2,
                count: 0,
                digest: String::new(),
                devices: Vec::new(),
            },
            b"",
        );
        assert_eq!(parse_list_piece(&bad), Err(WireError::Field("piece")));
    }

    #[test]
    fn admin_messages_read_back_and_bad_fields_are_refused() {
        let digest = crate::state::token_digest("t");
        for change in [
            AdminChange::TokenRevoked {
                token: digest.clone(),
            },
            AdminChange::UserTokensRevoked { user: "joe".into() },
            AdminChange::TokensCutOff { before: 1_400_000 },
            AdminChange::OwnerChanged {
                device: "0123456789abcdef01234567".into(),
            },
            AdminChange::KeysChanged,
        ] {
            let m = AdminMessage {
                node: "a".into(),
                change,
            };
            assert_eq!(parse_admin(&emit(&m, b"")).unwrap(), m);
        }
        let with = |change| {
            emit(
                &AdminMessage {
                    node: "a".into(),
                    change,
                },
                b"",
            )
        };
        let upper = digest.to_uppercase();
        for (bad, field) in [
            (AdminChange::TokenRevoked { token: upper }, "token"),
            (AdminChange::TokenRevoked { token: "ab".into() }, "token"),
            (
                AdminChange::UserTokensRevoked {
                    user: "u".repeat(MAX_ADMIN_USER + 1),
                },
                "user",
            ),
            (
                AdminChange::UserTokensRevoked {
                    user: String::new(),
                },
                "user",
            ),
            (
                AdminChange::OwnerChanged {
                    device: "nope".into(),
                },
                "device",
            ),
        ] {
            assert_eq!(parse_admin(&with(bad)), Err(WireError::Field(field)));
        }
        let bad_node = emit(
            &AdminMessage {
                node: "a b".into(),
                change: AdminChange::KeysChanged,
            },
            b"",
        );
        assert_eq!(parse_admin(&bad_node), Err(WireError::NodeId));
        assert!(matches!(
            parse_admin(b"{\"node\":\"a\",\"change\":{\"kind\":\"drop_tables\"}}\n"),
            Err(WireError::Header(_))
        ));
    }
}
