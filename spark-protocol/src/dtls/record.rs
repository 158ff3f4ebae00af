//! DTLS 1.2 records on the wire (RFC 6347 section 4.1): the 13-byte header, the content types,
//! alerts, and the sliding anti-replay window.
//!
//! Parsing never panics: [`RecordHeader::parse`] checks lengths before it reads.

/// Bytes of a record header: type, version, epoch, 48-bit sequence number, length.
pub const HEADER_LEN: usize = 13;
/// The DTLS 1.2 version on the wire (`{254, 253}`).
pub const DTLS_1_2: [u8; 2] = [0xfe, 0xfd];
/// DTLS 1.0, which clients may put on records carrying their first ClientHello.
pub const DTLS_1_0: [u8; 2] = [0xfe, 0xff];
/// The largest sequence number a 48-bit field holds.
pub const MAX_SEQUENCE: u64 = (1 << 48) - 1;

/// The content type of a record that carries a connection id (draft-ietf-tls-dtls-connection-id
/// -05 in Particle's mbedTLS; the real type travels inside the encryption).
pub const CONTENT_TYPE_CID: u8 = 25;
/// Device OS's marker for a connection-id record sent after the device's address changed: the
/// first byte of a [`CONTENT_TYPE_CID`] record rewritten after protection, so the cloud re-binds
/// the association to the new address. Authentication still uses 25.
pub const CONTENT_TYPE_CID_MOVED: u8 = 253;

/// A record's content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// 20.
    ChangeCipherSpec,
    /// 21.
    Alert,
    /// 22.
    Handshake,
    /// 23.
    ApplicationData,
    /// Anything else (the connection-ID types 25 and Particle's 253 included).
    Unknown(u8),
}

impl From<u8> for ContentType {
    fn from(v: u8) -> Self {
        match v {
            20 => Self::ChangeCipherSpec,
            21 => Self::Alert,
            22 => Self::Handshake,
            23 => Self::ApplicationData,
            other => Self::Unknown(other),
        }
    }
}

impl From<ContentType> for u8 {
    fn from(v: ContentType) -> u8 {
        match v {
            ContentType::ChangeCipherSpec => 20,
            ContentType::Alert => 21,
            ContentType::Handshake => 22,
            ContentType::ApplicationData => 23,
            ContentType::Unknown(other) => other,
        }
    }
}

/// A parsed record header and where its fragment lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// What the fragment holds.
    pub content_type: ContentType,
    /// The version field as sent.
    pub version: [u8; 2],
    /// Key epoch: 0 before the first ChangeCipherSpec, then 1.
    pub epoch: u16,
    /// The 48-bit record sequence number within the epoch.
    pub sequence: u64,
    /// Fragment length.
    pub length: u16,
}

impl RecordHeader {
    /// Reads the header at the start of `bytes` and checks that the whole fragment is there.
    /// Returns the header and the fragment.
    #[must_use]
    pub fn parse(bytes: &[u8]) -> Option<(RecordHeader, &[u8])> {
        let head: &[u8; HEADER_LEN] = bytes.get(..HEADER_LEN)?.try_into().ok()?;
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&head[5..11]);
        let header = RecordHeader {
            content_type: ContentType::from(head[0]),
            version: [head[1], head[2]],
            epoch: u16::from_be_bytes([head[3], head[4]]),
            sequence: u64::from_be_bytes(seq),
            length: u16::from_be_bytes([head[11], head[12]]),
        };
        let body = bytes.get(HEADER_LEN..HEADER_LEN + usize::from(header.length))?;
        Some((header, body))
    }

    /// Reads a header that carries a connection id of `cid_len` bytes between the sequence
    /// number and the length; returns the header, the CID and the fragment.
    #[must_use]
    pub fn parse_with_cid(bytes: &[u8], cid_len: usize) -> Option<(RecordHeader, &[u8], &[u8])> {
        let head = bytes.get(..HEADER_LEN + cid_len)?;
        let mut seq = [0u8; 8];
        seq[2..].copy_from_slice(&head[5..11]);
        let cid = &head[11..11 + cid_len];
        let length = u16::from_be_bytes([head[11 + cid_len], head[12 + cid_len]]);
        let header = RecordHeader {
            content_type: ContentType::from(head[0]),
            version: [head[1], head[2]],
            epoch: u16::from_be_bytes([head[3], head[4]]),
            sequence: u64::from_be_bytes(seq),
            length,
        };
        let start = HEADER_LEN + cid_len;
        let body = bytes.get(start..start + usize::from(length))?;
        Some((header, cid, body))
    }

    /// Writes the header into the first [`HEADER_LEN`] bytes of `out` (which must hold them).
    pub fn emit(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = self.content_type.into();
        out[1..3].copy_from_slice(&self.version);
        out[3..11].copy_from_slice(&self.epoch_and_sequence());
        out[11..13].copy_from_slice(&self.length.to_be_bytes());
    }

    /// `epoch ‖ sequence` as the 8 bytes the AEAD nonce and additional data use.
    #[must_use]
    pub fn epoch_and_sequence(&self) -> [u8; 8] {
        let mut b = (self.sequence & MAX_SEQUENCE).to_be_bytes();
        b[..2].copy_from_slice(&self.epoch.to_be_bytes());
        b
    }
}

/// A TLS alert description (RFC 5246 section 7.2), the ones this profile sends or names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertDescription {
    /// 0: orderly end.
    CloseNotify,
    /// 10.
    UnexpectedMessage,
    /// 20.
    BadRecordMac,
    /// 40.
    HandshakeFailure,
    /// 42.
    BadCertificate,
    /// 43.
    UnsupportedCertificate,
    /// 47.
    IllegalParameter,
    /// 50.
    DecodeError,
    /// 51.
    DecryptError,
    /// 70.
    ProtocolVersion,
    /// 80.
    InternalError,
    /// 110.
    UnsupportedExtension,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for AlertDescription {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::CloseNotify,
            10 => Self::UnexpectedMessage,
            20 => Self::BadRecordMac,
            40 => Self::HandshakeFailure,
            42 => Self::BadCertificate,
            43 => Self::UnsupportedCertificate,
            47 => Self::IllegalParameter,
            50 => Self::DecodeError,
            51 => Self::DecryptError,
            70 => Self::ProtocolVersion,
            80 => Self::InternalError,
            110 => Self::UnsupportedExtension,
            other => Self::Unknown(other),
        }
    }
}

impl From<AlertDescription> for u8 {
    fn from(v: AlertDescription) -> u8 {
        match v {
            AlertDescription::CloseNotify => 0,
            AlertDescription::UnexpectedMessage => 10,
            AlertDescription::BadRecordMac => 20,
            AlertDescription::HandshakeFailure => 40,
            AlertDescription::BadCertificate => 42,
            AlertDescription::UnsupportedCertificate => 43,
            AlertDescription::IllegalParameter => 47,
            AlertDescription::DecodeError => 50,
            AlertDescription::DecryptError => 51,
            AlertDescription::ProtocolVersion => 70,
            AlertDescription::InternalError => 80,
            AlertDescription::UnsupportedExtension => 110,
            AlertDescription::Unknown(other) => other,
        }
    }
}

/// The 64-entry sliding window of RFC 6347 section 4.1.2.6 over one epoch's sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// The highest sequence number accepted so far, if any.
    top: Option<u64>,
    /// Bit `i` set: `top - i` was accepted.
    bits: u64,
}

impl ReplayWindow {
    /// The window as 17 bytes: a flag, the top sequence number, the bitmap (for saving).
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 17] {
        let mut out = [0u8; 17];
        out[0] = u8::from(self.top.is_some());
        out[1..9].copy_from_slice(&self.top.unwrap_or(0).to_be_bytes());
        out[9..].copy_from_slice(&self.bits.to_be_bytes());
        out
    }

    /// The window [`to_bytes`](Self::to_bytes) wrote.
    #[must_use]
    pub fn from_bytes(b: &[u8; 17]) -> Self {
        let mut top = [0u8; 8];
        top.copy_from_slice(&b[1..9]);
        let mut bits = [0u8; 8];
        bits.copy_from_slice(&b[9..]);
        ReplayWindow {
            top: (b[0] != 0).then_some(u64::from_be_bytes(top)),
            bits: u64::from_be_bytes(bits),
        }
    }

    /// Whether `seq` is new and inside the window (checked before the record is authenticated).
    #[must_use]
    pub fn is_fresh(&self, seq: u64) -> bool {
        match self.top {
            None => true,
            Some(top) if seq > top => true,
            Some(top) => {
                let age = top - seq;
                age < 64 && self.bits & (1 << age) == 0
            }
        }
    }

    /// Marks `seq` as seen (after the record authenticated).
    pub fn accept(&mut self, seq: u64) {
        match self.top {
            None => {
                self.top = Some(seq);
                self.bits = 1;
            }
            Some(top) if seq > top => {
                let shift = seq - top;
                self.bits = if shift >= 64 { 0 } else { self.bits << shift };
                self.bits |= 1;
                self.top = Some(seq);
            }
            Some(top) => {
                let age = top - seq;
                if age < 64 {
                    self.bits |= 1 << age;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = RecordHeader {
            content_type: ContentType::ApplicationData,
            version: DTLS_1_2,
            epoch: 1,
            sequence: 0x0102_0304_0506,
            length: 3,
        };
        let mut buf = [0u8; HEADER_LEN + 3];
        h.emit((&mut buf[..HEADER_LEN]).try_into().unwrap());
        assert_eq!(
            &buf[..HEADER_LEN],
            &[23, 0xfe, 0xfd, 0, 1, 1, 2, 3, 4, 5, 6, 0, 3]
        );
        assert_eq!(RecordHeader::parse(&buf).unwrap().0, h);
        assert!(RecordHeader::parse(&buf[..HEADER_LEN + 2]).is_none());
    }

    #[test]
    fn replay_window_rejects_duplicates_and_stale_numbers() {
        let mut w = ReplayWindow::default();
        for seq in [5, 3, 70, 10] {
            assert!(w.is_fresh(seq), "{seq}");
            w.accept(seq);
            assert!(!w.is_fresh(seq), "{seq} twice");
        }
        // 70 is the top: 7..=70 is inside, 6 and below are too old.
        assert!(!w.is_fresh(6));
        assert!(w.is_fresh(7));
        assert!(!w.is_fresh(5));
        assert!(w.is_fresh(69));
        w.accept(200);
        assert!(!w.is_fresh(70));
        assert!(w.is_fresh(199));
    }
}
