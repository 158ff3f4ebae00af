//! Handshake messages on the wire (RFC 5246 section 7.4, RFC 6347 section 4.2): the 12-byte
//! DTLS handshake header, the bodies this profile exchanges, and reassembly of fragments.
//!
//! Every parser here is bounds-checked and returns [`Error::Malformed`] on bad input; none panics.

use super::Error;

/// Bytes of a DTLS handshake header: type, length, message_seq, fragment_offset, fragment_length.
pub const HEADER_LEN: usize = 12;

/// The cipher suite of the profile: TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 (RFC 7251).
pub const TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8: u16 = 0xc0ae;
/// The renegotiation SCSV a client may list instead of the extension (RFC 5746).
pub const TLS_EMPTY_RENEGOTIATION_INFO_SCSV: u16 = 0x00ff;
/// secp256r1 in `supported_groups`.
pub const SECP256R1: u16 = 23;
/// ecdsa_secp256r1_sha256 in `signature_algorithms`.
pub const ECDSA_SECP256R1_SHA256: [u8; 2] = [0x04, 0x03];
/// `ecdsa_sign` in a CertificateRequest.
pub const CERT_TYPE_ECDSA_SIGN: u8 = 64;

/// Extension numbers this profile reads or writes.
pub mod ext {
    /// supported_groups (RFC 8422).
    pub const SUPPORTED_GROUPS: u16 = 10;
    /// ec_point_formats (RFC 8422).
    pub const EC_POINT_FORMATS: u16 = 11;
    /// signature_algorithms (RFC 5246).
    pub const SIGNATURE_ALGORITHMS: u16 = 13;
    /// client_certificate_type (RFC 7250).
    pub const CLIENT_CERTIFICATE_TYPE: u16 = 19;
    /// server_certificate_type (RFC 7250).
    pub const SERVER_CERTIFICATE_TYPE: u16 = 20;
    /// renegotiation_info (RFC 5746).
    pub const RENEGOTIATION_INFO: u16 = 0xff01;
    /// connection_id as draft-ietf-tls-dtls-connection-id-05 had it, at the code point
    /// Particle's mbedTLS uses (the draft left it to be assigned).
    pub const CONNECTION_ID: u16 = 254;
}

/// Certificate types of RFC 7250.
pub const CERTIFICATE_TYPE_X509: u8 = 0;
/// A bare SubjectPublicKeyInfo.
pub const CERTIFICATE_TYPE_RAW_PUBLIC_KEY: u8 = 2;

/// Handshake message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeType {
    /// 1.
    ClientHello,
    /// 2.
    ServerHello,
    /// 3.
    HelloVerifyRequest,
    /// 11.
    Certificate,
    /// 12.
    ServerKeyExchange,
    /// 13.
    CertificateRequest,
    /// 14.
    ServerHelloDone,
    /// 15.
    CertificateVerify,
    /// 16.
    ClientKeyExchange,
    /// 20.
    Finished,
    /// Anything else.
    Unknown(u8),
}

impl From<u8> for HandshakeType {
    fn from(v: u8) -> Self {
        match v {
            1 => Self::ClientHello,
            2 => Self::ServerHello,
            3 => Self::HelloVerifyRequest,
            11 => Self::Certificate,
            12 => Self::ServerKeyExchange,
            13 => Self::CertificateRequest,
            14 => Self::ServerHelloDone,
            15 => Self::CertificateVerify,
            16 => Self::ClientKeyExchange,
            20 => Self::Finished,
            other => Self::Unknown(other),
        }
    }
}

impl From<HandshakeType> for u8 {
    fn from(v: HandshakeType) -> u8 {
        match v {
            HandshakeType::ClientHello => 1,
            HandshakeType::ServerHello => 2,
            HandshakeType::HelloVerifyRequest => 3,
            HandshakeType::Certificate => 11,
            HandshakeType::ServerKeyExchange => 12,
            HandshakeType::CertificateRequest => 13,
            HandshakeType::ServerHelloDone => 14,
            HandshakeType::CertificateVerify => 15,
            HandshakeType::ClientKeyExchange => 16,
            HandshakeType::Finished => 20,
            HandshakeType::Unknown(other) => other,
        }
    }
}

/// A handshake fragment's header and its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fragment<'a> {
    /// Message type.
    pub msg_type: HandshakeType,
    /// Length of the whole message body.
    pub length: usize,
    /// Handshake sequence number of the message.
    pub message_seq: u16,
    /// Where this fragment starts in the body.
    pub offset: usize,
    /// The fragment's bytes.
    pub body: &'a [u8],
}

impl<'a> Fragment<'a> {
    /// Reads one fragment from the front of `bytes`; returns it and what follows.
    pub fn parse(bytes: &'a [u8]) -> Result<(Fragment<'a>, &'a [u8]), Error> {
        let mut r = Reader::new(bytes);
        let msg_type = HandshakeType::from(r.u8()?);
        let length = r.u24()?;
        let message_seq = r.u16()?;
        let offset = r.u24()?;
        let frag_len = r.u24()?;
        if offset + frag_len > length {
            return Err(Error::Malformed("handshake fragment beyond its message"));
        }
        let body = r.take(frag_len)?;
        Ok((
            Fragment {
                msg_type,
                length,
                message_seq,
                offset,
                body,
            },
            r.rest(),
        ))
    }
}

/// Writes a handshake header into `out[..12]`.
pub fn write_header(
    out: &mut [u8],
    msg_type: HandshakeType,
    length: usize,
    message_seq: u16,
    offset: usize,
    frag_len: usize,
) {
    out[0] = msg_type.into();
    out[1..4].copy_from_slice(&u24(length));
    out[4..6].copy_from_slice(&message_seq.to_be_bytes());
    out[6..9].copy_from_slice(&u24(offset));
    out[9..12].copy_from_slice(&u24(frag_len));
}

fn u24(v: usize) -> [u8; 3] {
    let b = (v as u32).to_be_bytes();
    [b[1], b[2], b[3]]
}

/// The largest handshake message (header included) a connection reassembles or sends.
pub const MAX_MESSAGE: usize = 1536;
const BITMAP_LEN: usize = MAX_MESSAGE.div_ceil(8);

/// Collects the fragments of one handshake message into a fixed buffer.
#[derive(Clone)]
pub struct Reassembly {
    /// The whole message, header (as if unfragmented) first: what the transcript hashes.
    buf: [u8; MAX_MESSAGE],
    /// Which body bytes have arrived, one bit each.
    have: [u8; BITMAP_LEN],
    msg_type: u8,
    length: usize,
    message_seq: u16,
    active: bool,
}

impl Default for Reassembly {
    fn default() -> Self {
        Reassembly {
            buf: [0; MAX_MESSAGE],
            have: [0; BITMAP_LEN],
            msg_type: 0,
            length: 0,
            message_seq: 0,
            active: false,
        }
    }
}

impl Reassembly {
    /// Adds a fragment of the expected message. Returns `Ok(true)` when the message is whole.
    pub fn add(&mut self, f: &Fragment<'_>) -> Result<bool, Error> {
        if f.length + HEADER_LEN > MAX_MESSAGE {
            return Err(Error::Malformed(
                "handshake message larger than the reassembly buffer",
            ));
        }
        if !self.active || self.message_seq != f.message_seq {
            self.active = true;
            self.msg_type = f.msg_type.into();
            self.length = f.length;
            self.message_seq = f.message_seq;
            self.have.fill(0);
            write_header(
                &mut self.buf,
                f.msg_type,
                f.length,
                f.message_seq,
                0,
                f.length,
            );
        } else if self.msg_type != u8::from(f.msg_type) || self.length != f.length {
            return Err(Error::Malformed("fragments of one message disagree"));
        }
        let end = f.offset + f.body.len();
        self.buf[HEADER_LEN + f.offset..HEADER_LEN + end].copy_from_slice(f.body);
        for i in f.offset..end {
            self.have[i / 8] |= 1 << (i % 8);
        }
        Ok((0..self.length).all(|i| self.have[i / 8] & (1 << (i % 8)) != 0))
    }

    /// The whole message, header included.
    #[must_use]
    pub fn message(&self) -> &[u8] {
        &self.buf[..HEADER_LEN + self.length]
    }

    /// Forgets the message (after it was processed).
    pub fn clear(&mut self) {
        self.active = false;
    }
}

/// A bounds-checked reader over handshake bytes.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader over `bytes`.
    #[must_use]
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    /// What is left.
    #[must_use]
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        if self.rest.len() < n {
            return Err(Error::Malformed("truncated handshake field"));
        }
        let (a, b) = self.rest.split_at(n);
        self.rest = b;
        Ok(a)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    /// A big-endian u16.
    pub fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A big-endian u24.
    pub fn u24(&mut self) -> Result<usize, Error> {
        let b = self.take(3)?;
        Ok(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a one-byte length.
    pub fn vec8(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }

    /// A vector with a two-byte length.
    pub fn vec16(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    /// A vector with a three-byte length.
    pub fn vec24(&mut self) -> Result<&'a [u8], Error> {
        let n = self.u24()?;
        self.take(n)
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), Error> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(Error::Malformed("trailing bytes in handshake message"))
        }
    }
}

/// A writer into a caller's buffer; running out of room is `InsufficientSize`.
pub struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// A writer at the start of `out`.
    pub fn new(out: &'a mut [u8]) -> Self {
        Writer { out, pos: 0 }
    }

    /// Bytes written.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pos
    }

    /// Whether nothing was written.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Appends bytes.
    pub fn put(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let end = self.pos + bytes.len();
        let dst = self
            .out
            .get_mut(self.pos..end)
            .ok_or(Error::InsufficientSize { required: end })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Appends a big-endian u16.
    pub fn u16(&mut self, v: u16) -> Result<(), Error> {
        self.put(&v.to_be_bytes())
    }

    /// Appends a big-endian u24.
    pub fn u24(&mut self, v: usize) -> Result<(), Error> {
        self.put(&u24(v))
    }

    /// Reserves `n` bytes for a length written later; returns their position.
    pub fn reserve(&mut self, n: usize) -> Result<usize, Error> {
        let at = self.pos;
        self.put(&[0u8; 3][..n])?;
        Ok(at)
    }

    /// Writes the length of everything after the `n`-byte field at `at`.
    pub fn patch_len(&mut self, at: usize, n: usize) {
        let len = self.pos - at - n;
        let b = (len as u32).to_be_bytes();
        self.out[at..at + n].copy_from_slice(&b[4 - n..]);
    }
}

/// A ClientHello's fields this profile reads.
#[derive(Debug, Clone, Copy)]
pub struct ClientHello<'a> {
    /// client_version.
    pub version: [u8; 2],
    /// The client's random.
    pub random: &'a [u8; 32],
    /// A session the client would resume.
    pub session_id: &'a [u8],
    /// The cookie (empty on a first hello).
    pub cookie: &'a [u8],
    /// Whether TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8 is offered.
    pub offers_suite: bool,
    /// Whether the null compression method is offered.
    pub offers_null_compression: bool,
    /// Whether the client asked for secure renegotiation (extension or SCSV).
    pub renegotiation_info: bool,
    /// Whether P-256 is acceptable (no supported_groups extension also means yes).
    pub offers_p256: bool,
    /// Whether the client would take a raw public key from the server.
    pub server_rpk: bool,
    /// Whether the client can send a raw public key of its own.
    pub client_rpk: bool,
    /// The connection id the client asks to receive, when it offered the extension (empty:
    /// it wants none but will send ours).
    pub connection_id: Option<&'a [u8]>,
    /// The whole body, for the cookie's MAC.
    pub body: &'a [u8],
}

impl<'a> ClientHello<'a> {
    /// Parses a ClientHello body.
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let v = r.take(2)?;
        let version = [v[0], v[1]];
        let random: &[u8; 32] = r
            .take(32)?
            .try_into()
            .map_err(|_| Error::Malformed("random"))?;
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return Err(Error::Malformed("session id longer than 32 bytes"));
        }
        let cookie = r.vec8()?;
        let suites = r.vec16()?;
        if suites.len() % 2 != 0 {
            return Err(Error::Malformed("odd cipher suite list"));
        }
        let has = |s: u16| {
            suites
                .chunks(2)
                .any(|c| u16::from_be_bytes([c[0], c[1]]) == s)
        };
        let offers_suite = has(TLS_ECDHE_ECDSA_WITH_AES_128_CCM_8);
        let mut renegotiation_info = has(TLS_EMPTY_RENEGOTIATION_INFO_SCSV);
        let offers_null_compression = r.vec8()?.contains(&0);
        let mut hello = ClientHello {
            version,
            random,
            session_id,
            cookie,
            offers_suite,
            offers_null_compression,
            renegotiation_info,
            offers_p256: true,
            server_rpk: false,
            client_rpk: false,
            connection_id: None,
            body,
        };
        extensions(&mut r, |kind, data| {
            match kind {
                ext::SUPPORTED_GROUPS => {
                    let list = data.vec16()?;
                    hello.offers_p256 = list.chunks(2).any(|c| c == SECP256R1.to_be_bytes());
                }
                ext::SERVER_CERTIFICATE_TYPE => {
                    hello.server_rpk = data.vec8()?.contains(&CERTIFICATE_TYPE_RAW_PUBLIC_KEY);
                }
                ext::CLIENT_CERTIFICATE_TYPE => {
                    hello.client_rpk = data.vec8()?.contains(&CERTIFICATE_TYPE_RAW_PUBLIC_KEY);
                }
                ext::RENEGOTIATION_INFO if data.vec8()?.is_empty() => {
                    renegotiation_info = true;
                }
                ext::CONNECTION_ID => hello.connection_id = Some(connection_id(data)?),
                _ => {}
            }
            Ok(())
        })?;
        hello.renegotiation_info = renegotiation_info;
        Ok(hello)
    }
}

/// Reads a hello's extension block, if any is left in `r`, handing each extension's type and
/// data to `f`; nothing may follow the block.
fn extensions<'a>(
    r: &mut Reader<'a>,
    mut f: impl FnMut(u16, &mut Reader<'a>) -> Result<(), Error>,
) -> Result<(), Error> {
    if r.rest().is_empty() {
        return Ok(());
    }
    let mut exts = Reader::new(r.vec16()?);
    r.finish()?;
    while !exts.rest().is_empty() {
        let kind = exts.u16()?;
        let mut data = Reader::new(exts.vec16()?);
        f(kind, &mut data)?;
    }
    Ok(())
}

/// The connection id extension's value (at most 32 bytes).
fn connection_id<'a>(data: &mut Reader<'a>) -> Result<&'a [u8], Error> {
    let cid = data.vec8()?;
    if cid.len() > 32 {
        return Err(Error::Malformed("connection id longer than 32 bytes"));
    }
    Ok(cid)
}

/// A ServerHello's fields this profile reads.
#[derive(Debug, Clone, Copy)]
pub struct ServerHello<'a> {
    /// server_version.
    pub version: [u8; 2],
    /// The server's random.
    pub random: [u8; 32],
    /// The session id the server assigned (or echoed, when resuming).
    pub session_id: &'a [u8],
    /// The chosen suite.
    pub cipher_suite: u16,
    /// The chosen compression.
    pub compression: u8,
    /// The server's certificate type, when the extension was present.
    pub server_certificate_type: Option<u8>,
    /// The client's certificate type, when the extension was present.
    pub client_certificate_type: Option<u8>,
    /// The connection id the server asks to receive, when the extension was present.
    pub connection_id: Option<&'a [u8]>,
}

impl<'a> ServerHello<'a> {
    /// Parses a ServerHello body.
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        let v = r.take(2)?;
        let mut random = [0u8; 32];
        random.copy_from_slice(r.take(32)?);
        let session_id = r.vec8()?;
        if session_id.len() > 32 {
            return Err(Error::Malformed("session id longer than 32 bytes"));
        }
        let mut hello = ServerHello {
            version: [v[0], v[1]],
            random,
            session_id,
            cipher_suite: r.u16()?,
            compression: r.u8()?,
            server_certificate_type: None,
            client_certificate_type: None,
            connection_id: None,
        };
        extensions(&mut r, |kind, data| {
            match kind {
                ext::SERVER_CERTIFICATE_TYPE => hello.server_certificate_type = Some(data.u8()?),
                ext::CLIENT_CERTIFICATE_TYPE => hello.client_certificate_type = Some(data.u8()?),
                ext::CONNECTION_ID => hello.connection_id = Some(connection_id(data)?),
                _ => {}
            }
            Ok(())
        })?;
        Ok(hello)
    }
}

/// Reads the peer's key from a Certificate body of the negotiated type: the first certificate
/// of an X.509 chain, or a raw SubjectPublicKeyInfo. `None` when the list is empty.
pub fn parse_certificate(
    body: &[u8],
    raw_public_key: bool,
) -> Result<Option<super::PublicKey>, Error> {
    let mut r = Reader::new(body);
    let list = r.vec24()?;
    r.finish()?;
    if raw_public_key {
        if list.is_empty() {
            return Ok(None);
        }
        return super::PublicKey::from_spki(list).map(Some);
    }
    if list.is_empty() {
        return Ok(None);
    }
    let mut certs = Reader::new(list);
    let first = certs.vec24()?;
    super::PublicKey::from_certificate(first).map(Some)
}

/// An ECDHE ServerKeyExchange: the signed parameters and the signature.
#[derive(Debug, Clone, Copy)]
pub struct ServerKeyExchange<'a> {
    /// `curve_type ‖ named_curve ‖ point`, as signed.
    pub params: &'a [u8],
    /// The server's ephemeral point.
    pub point: &'a [u8],
    /// The DER signature.
    pub signature: &'a [u8],
}

impl<'a> ServerKeyExchange<'a> {
    /// Parses the body; only named_curve secp256r1 and ecdsa_secp256r1_sha256 are accepted.
    pub fn parse(body: &'a [u8]) -> Result<Self, Error> {
        let mut r = Reader::new(body);
        if r.u8()? != 3 || r.u16()? != SECP256R1 {
            return Err(Error::Unsupported(
                "key exchange curve other than secp256r1",
            ));
        }
        let point = r.vec8()?;
        let params = &body[..body.len() - r.rest().len()];
        if r.take(2)? != ECDSA_SECP256R1_SHA256 {
            return Err(Error::Unsupported(
                "signature algorithm other than ECDSA-SHA256",
            ));
        }
        let signature = r.vec16()?;
        r.finish()?;
        Ok(ServerKeyExchange {
            params,
            point,
            signature,
        })
    }
}

/// A CertificateVerify's DER signature (algorithm checked).
pub fn parse_certificate_verify(body: &[u8]) -> Result<&[u8], Error> {
    let mut r = Reader::new(body);
    if r.take(2)? != ECDSA_SECP256R1_SHA256 {
        return Err(Error::Unsupported(
            "signature algorithm other than ECDSA-SHA256",
        ));
    }
    let sig = r.vec16()?;
    r.finish()?;
    Ok(sig)
}

/// Checks that a CertificateRequest lets the client sign with ECDSA P-256 and SHA-256.
pub fn parse_certificate_request(body: &[u8]) -> Result<(), Error> {
    let mut r = Reader::new(body);
    let types = r.vec8()?;
    let algs = r.vec16()?;
    let _authorities = r.vec16()?;
    r.finish()?;
    if !types.contains(&CERT_TYPE_ECDSA_SIGN)
        || !algs.chunks(2).any(|c| c == ECDSA_SECP256R1_SHA256)
    {
        return Err(Error::Unsupported(
            "certificate request without ECDSA-SHA256",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembles_out_of_order_fragments() {
        let body = [1u8, 2, 3, 4, 5, 6, 7];
        let mut r = Reassembly::default();
        let frag = |off: usize, len: usize| Fragment {
            msg_type: HandshakeType::Finished,
            length: 7,
            message_seq: 4,
            offset: off,
            body: &body[off..off + len],
        };
        assert!(!r.add(&frag(4, 3)).unwrap());
        assert!(!r.add(&frag(0, 2)).unwrap());
        assert!(r.add(&frag(1, 3)).unwrap());
        assert_eq!(
            r.message(),
            &[20, 0, 0, 7, 0, 4, 0, 0, 0, 0, 0, 7, 1, 2, 3, 4, 5, 6, 7]
        );
        let huge = Fragment {
            length: MAX_MESSAGE,
            body: &[],
            ..frag(0, 0)
        };
        assert!(r.add(&huge).is_err());
    }

    #[test]
    fn fragment_beyond_its_message_is_rejected() {
        let bytes = [20, 0, 0, 4, 0, 0, 0, 0, 3, 0, 0, 2, 9, 9];
        assert!(Fragment::parse(&bytes).is_err());
    }
}
