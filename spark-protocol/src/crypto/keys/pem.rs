//! PEM armour (RFC 7468) for the four RSA key labels, into and out of caller buffers.

use base64ct::{Base64, Encoding};

use super::KeyError;

/// The PEM labels of RSA keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PemLabel {
    /// `RSA PUBLIC KEY`: PKCS#1 `RSAPublicKey`.
    RsaPublicKey,
    /// `PUBLIC KEY`: X.509 SubjectPublicKeyInfo (what the original server's `core_keys/` hold).
    PublicKey,
    /// `RSA PRIVATE KEY`: PKCS#1 `RSAPrivateKey` (what `openssl genrsa` wrote before 3.0).
    RsaPrivateKey,
    /// `PRIVATE KEY`: unencrypted PKCS#8 `PrivateKeyInfo`.
    PrivateKey,
}

impl PemLabel {
    /// The label text between `BEGIN ` and the closing dashes.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            PemLabel::RsaPublicKey => "RSA PUBLIC KEY",
            PemLabel::PublicKey => "PUBLIC KEY",
            PemLabel::RsaPrivateKey => "RSA PRIVATE KEY",
            PemLabel::PrivateKey => "PRIVATE KEY",
        }
    }

    fn from_str(label: &str) -> Option<Self> {
        [
            PemLabel::RsaPublicKey,
            PemLabel::PublicKey,
            PemLabel::RsaPrivateKey,
            PemLabel::PrivateKey,
        ]
        .into_iter()
        .find(|l| l.as_str() == label)
    }

    /// Whether the label holds a private key.
    #[must_use]
    pub fn is_private(self) -> bool {
        matches!(self, PemLabel::RsaPrivateKey | PemLabel::PrivateKey)
    }
}

const BEGIN: &str = "-----BEGIN ";
const END: &str = "-----END ";
const DASHES: &str = "-----";
const LINE: usize = 64;

/// Finds the first PEM block with one of the RSA labels (text before it, such as the
/// `EC PARAMETERS` or comments some tools write, is skipped) and decodes its body into `out`.
/// Returns the label and the DER length.
///
/// Encrypted keys (`ENCRYPTED PRIVATE KEY`, or `Proc-Type:` headers) are refused with
/// [`KeyError::PemLabel`].
pub fn pem_decode(pem: &str, out: &mut [u8]) -> Result<(PemLabel, usize), KeyError> {
    let mut lines = pem.lines().map(str::trim);
    let label = loop {
        let line = lines.next().ok_or(KeyError::PemLabel)?;
        if let Some(label) = line
            .strip_prefix(BEGIN)
            .and_then(|l| l.strip_suffix(DASHES))
        {
            break PemLabel::from_str(label).ok_or(KeyError::PemLabel)?;
        }
    };
    let mut quad = [0u8; 4];
    let mut filled = 0;
    let mut written = 0;
    let mut finished = false;
    for line in lines.by_ref() {
        if let Some(end) = line.strip_prefix(END) {
            if end.strip_suffix(DASHES) != Some(label.as_str()) || filled != 0 {
                return Err(KeyError::PemEncoding);
            }
            return Ok((label, written));
        }
        if line.contains(':') {
            return Err(KeyError::PemLabel);
        }
        for &c in line.as_bytes() {
            if c.is_ascii_whitespace() {
                continue;
            }
            if finished {
                return Err(KeyError::PemEncoding);
            }
            quad[filled] = c;
            filled += 1;
            if filled == 4 {
                let mut bytes = [0u8; 3];
                let decoded =
                    Base64::decode(&quad[..], &mut bytes).map_err(|_| KeyError::PemEncoding)?;
                let end = written + decoded.len();
                let dst = out
                    .get_mut(written..end)
                    .ok_or(KeyError::InsufficientSize { required: end })?;
                dst.copy_from_slice(decoded);
                written = end;
                finished = decoded.len() < 3;
                filled = 0;
            }
        }
    }
    Err(KeyError::PemEncoding)
}

/// The size of the PEM text for `der_len` bytes of DER: 64-character lines, each ending in `\n`.
#[must_use]
pub fn pem_encoded_len(label: PemLabel, der_len: usize) -> usize {
    pem_encoded_len_labelled(label.as_str(), der_len)
}

/// [`pem_encoded_len`] for any label text (for example `EC PRIVATE KEY`, which the DTLS keys use).
#[must_use]
pub fn pem_encoded_len_labelled(label: &str, der_len: usize) -> usize {
    let body = der_len.div_ceil(3) * 4;
    let lines = body.div_ceil(LINE);
    let frame = |s: &str| s.len() + label.len() + DASHES.len() + 1;
    frame(BEGIN) + body + lines + frame(END)
}

/// Writes `der` as a PEM block with `label` into `out`; returns the text length.
pub fn pem_encode(label: PemLabel, der: &[u8], out: &mut [u8]) -> Result<usize, KeyError> {
    pem_encode_labelled(label.as_str(), der, out)
}

/// [`pem_encode`] for any label text (for example `EC PRIVATE KEY`, which the DTLS keys use).
pub fn pem_encode_labelled(label: &str, der: &[u8], out: &mut [u8]) -> Result<usize, KeyError> {
    let required = pem_encoded_len_labelled(label, der.len());
    let out = out
        .get_mut(..required)
        .ok_or(KeyError::InsufficientSize { required })?;
    let mut pos = 0;
    let mut put = |bytes: &[u8], pos: &mut usize| {
        out[*pos..*pos + bytes.len()].copy_from_slice(bytes);
        *pos += bytes.len();
    };
    for part in [BEGIN, label, DASHES, "\n"] {
        put(part.as_bytes(), &mut pos);
    }
    for chunk in der.chunks(LINE / 4 * 3) {
        let mut line = [0u8; LINE];
        let text = Base64::encode(chunk, &mut line).map_err(|_| KeyError::PemEncoding)?;
        put(text.as_bytes(), &mut pos);
        put(b"\n", &mut pos);
    }
    for part in [END, label, DASHES, "\n"] {
        put(part.as_bytes(), &mut pos);
    }
    Ok(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_at_every_length() {
        let der: [u8; 200] = core::array::from_fn(|i| (i * 7 + 3) as u8);
        for len in 0..der.len() {
            let mut text = [0u8; 400];
            let n = pem_encode(PemLabel::PublicKey, &der[..len], &mut text).unwrap();
            assert_eq!(n, pem_encoded_len(PemLabel::PublicKey, len));
            let text = core::str::from_utf8(&text[..n]).unwrap();
            let mut back = [0u8; 200];
            assert_eq!(pem_decode(text, &mut back), Ok((PemLabel::PublicKey, len)));
            assert_eq!(&back[..len], &der[..len]);
        }
    }

    #[test]
    fn bad_blocks_are_refused() {
        let mut out = [0u8; 64];
        assert_eq!(pem_decode("", &mut out), Err(KeyError::PemLabel));
        assert_eq!(
            pem_decode(
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                &mut out
            ),
            Err(KeyError::PemLabel)
        );
        assert_eq!(
            pem_decode(
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
                &mut out
            ),
            Err(KeyError::PemEncoding)
        );
        assert_eq!(
            pem_decode("-----BEGIN PUBLIC KEY-----\nAAAA\n", &mut out),
            Err(KeyError::PemEncoding)
        );
        assert_eq!(
            pem_decode(
                "-----BEGIN PUBLIC KEY-----\nAA*A\n-----END PUBLIC KEY-----\n",
                &mut out
            ),
            Err(KeyError::PemEncoding)
        );
        assert_eq!(
            pem_decode(
                "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n",
                &mut out
            ),
            Err(KeyError::PemEncoding)
        );
        assert_eq!(
            pem_decode(
                "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n",
                &mut out
            ),
            Err(KeyError::PemLabel)
        );
        assert_eq!(
            pem_decode(
                "-----BEGIN PUBLIC KEY-----\nAAAAAAAA\n-----END PUBLIC KEY-----\n",
                &mut out[..5]
            ),
            Err(KeyError::InsufficientSize { required: 6 })
        );
    }
}
