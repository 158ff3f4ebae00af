//! The small subset of ASN.1 DER that RSA keys use: SEQUENCE, INTEGER, NULL, OBJECT IDENTIFIER,
//! BIT STRING and OCTET STRING, read strictly and written in canonical form.

use super::KeyError;

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_BIT_STRING: u8 = 0x03;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// The content octets of the OBJECT IDENTIFIER 1.2.840.113549.1.1.1 (rsaEncryption).
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// A cursor over DER bytes. Every read checks bounds; nothing here panics.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        self.rest
    }

    /// Reads one element with the given tag and returns its content octets.
    pub(crate) fn element(&mut self, tag: u8) -> Result<&'a [u8], KeyError> {
        let (&found, after_tag) = self.rest.split_first().ok_or(KeyError::Truncated)?;
        if found != tag {
            return Err(KeyError::UnexpectedTag {
                expected: tag,
                found,
            });
        }
        let (&first, mut after_len) = after_tag.split_first().ok_or(KeyError::Truncated)?;
        let len = if first < 0x80 {
            usize::from(first)
        } else {
            let count = usize::from(first & 0x7f);
            // Lengths of up to four octets cover anything an RSA key needs; 0x80 (indefinite)
            // is BER only and rejected.
            if count == 0 || count > 4 || after_len.len() < count {
                return Err(if count == 0 || count > 4 {
                    KeyError::NonCanonical
                } else {
                    KeyError::Truncated
                });
            }
            let (len_bytes, rest) = after_len.split_at(count);
            after_len = rest;
            if len_bytes[0] == 0 {
                return Err(KeyError::NonCanonical);
            }
            let len = len_bytes
                .iter()
                .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
            if len < 0x80 {
                return Err(KeyError::NonCanonical);
            }
            len
        };
        if after_len.len() < len {
            return Err(KeyError::Truncated);
        }
        let (content, rest) = after_len.split_at(len);
        self.rest = rest;
        Ok(content)
    }

    pub(crate) fn sequence(&mut self) -> Result<Reader<'a>, KeyError> {
        self.element(TAG_SEQUENCE).map(Reader::new)
    }

    /// Reads a non-negative INTEGER and returns its magnitude without a leading zero octet.
    pub(crate) fn unsigned(&mut self) -> Result<&'a [u8], KeyError> {
        let content = self.element(TAG_INTEGER)?;
        match content {
            [] => Err(KeyError::NonCanonical),
            [b, ..] if b & 0x80 != 0 => Err(KeyError::NegativeInteger),
            [0] => Ok(&content[1..]),
            [0, b, ..] if b & 0x80 == 0 => Err(KeyError::NonCanonical),
            [0, rest @ ..] => Ok(rest),
            _ => Ok(content),
        }
    }

    /// Reads the INTEGER 0 (the version field of PKCS#1 and PKCS#8 private keys).
    pub(crate) fn version_zero(&mut self) -> Result<(), KeyError> {
        match self.unsigned()? {
            [] => Ok(()),
            _ => Err(KeyError::UnsupportedVersion),
        }
    }

    /// Reads `SEQUENCE { OID rsaEncryption, NULL }`.
    pub(crate) fn rsa_algorithm(&mut self) -> Result<(), KeyError> {
        let mut alg = self.sequence()?;
        if alg.element(TAG_OID)? != OID_RSA_ENCRYPTION {
            return Err(KeyError::NotRsa);
        }
        // The parameters are NULL for rsaEncryption; some encoders omit them.
        if !alg.is_empty() && !alg.element(TAG_NULL)?.is_empty() {
            return Err(KeyError::NonCanonical);
        }
        alg.finish()
    }

    pub(crate) fn finish(&self) -> Result<(), KeyError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(KeyError::TrailingData)
        }
    }
}

/// The number of octets a DER length field takes.
pub(crate) const fn length_len(len: usize) -> usize {
    if len < 0x80 {
        1
    } else if len <= 0xff {
        2
    } else if len <= 0xffff {
        3
    } else if len <= 0xff_ffff {
        4
    } else {
        5
    }
}

/// The size of a whole element with `content_len` content octets.
pub(crate) const fn element_len(content_len: usize) -> usize {
    1 + length_len(content_len) + content_len
}

/// The magnitude without leading zero octets.
pub(crate) fn trim(mut magnitude: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = magnitude {
        magnitude = rest;
    }
    magnitude
}

/// The content length of the INTEGER for an unsigned magnitude.
pub(crate) fn unsigned_content_len(magnitude: &[u8]) -> usize {
    let magnitude = trim(magnitude);
    match magnitude.first() {
        None => 1,
        Some(b) if b & 0x80 != 0 => magnitude.len() + 1,
        Some(_) => magnitude.len(),
    }
}

/// Writes DER into a slice that the caller has sized with the `*_len` functions above.
pub(crate) struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl<'a> Writer<'a> {
    /// `out` must hold at least the computed length; the callers check that first and the
    /// writes below stay within it (they slice with checked bounds regardless).
    pub(crate) fn new(out: &'a mut [u8]) -> Self {
        Writer { out, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), KeyError> {
        let end = self.pos + bytes.len();
        let dst = self
            .out
            .get_mut(self.pos..end)
            .ok_or(KeyError::InsufficientSize { required: end })?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    pub(crate) fn header(&mut self, tag: u8, len: usize) -> Result<(), KeyError> {
        self.put(&[tag])?;
        let n = length_len(len);
        if n == 1 {
            // `len < 0x80` here, so the cast keeps every bit.
            return self.put(&[len as u8]);
        }
        let be = (len as u32).to_be_bytes();
        self.put(&[0x80 | (n as u8 - 1)])?;
        self.put(&be[4 - (n - 1)..])
    }

    pub(crate) fn unsigned(&mut self, magnitude: &[u8]) -> Result<(), KeyError> {
        let magnitude = trim(magnitude);
        let len = unsigned_content_len(magnitude);
        self.header(TAG_INTEGER, len)?;
        if len > magnitude.len() {
            self.put(&[0])?;
        }
        self.put(magnitude)
    }

    pub(crate) fn raw(&mut self, bytes: &[u8]) -> Result<(), KeyError> {
        self.put(bytes)
    }

    pub(crate) fn rsa_algorithm(&mut self) -> Result<(), KeyError> {
        self.header(TAG_SEQUENCE, element_len(OID_RSA_ENCRYPTION.len()) + 2)?;
        self.header(TAG_OID, OID_RSA_ENCRYPTION.len())?;
        self.put(OID_RSA_ENCRYPTION)?;
        self.put(&[TAG_NULL, 0])
    }
}

/// The length of `SEQUENCE { OID rsaEncryption, NULL }`.
pub(crate) const RSA_ALGORITHM_LEN: usize = element_len(element_len(OID_RSA_ENCRYPTION.len()) + 2);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_read_strictly() {
        let mut r = Reader::new(&[0x02, 0x02, 0x00, 0x80]);
        assert_eq!(r.unsigned(), Ok(&[0x80][..]));
        assert_eq!(
            Reader::new(&[0x02, 0x01, 0x80]).unsigned(),
            Err(KeyError::NegativeInteger)
        );
        assert_eq!(
            Reader::new(&[0x02, 0x02, 0x00, 0x01]).unsigned(),
            Err(KeyError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x02, 0x00]).unsigned(),
            Err(KeyError::NonCanonical)
        );
        assert_eq!(Reader::new(&[0x02, 0x01, 0x00]).unsigned(), Ok(&[][..]));
    }

    #[test]
    fn lengths_are_read_strictly() {
        assert_eq!(
            Reader::new(&[0x04, 0x81, 0x05]).element(0x04),
            Err(KeyError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x80]).element(0x04),
            Err(KeyError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x82, 0x00, 0x80]).element(0x04),
            Err(KeyError::NonCanonical)
        );
        assert_eq!(
            Reader::new(&[0x04, 0x03, 1, 2]).element(0x04),
            Err(KeyError::Truncated)
        );
        assert_eq!(
            Reader::new(&[0x05, 0x00]).element(0x04),
            Err(KeyError::UnexpectedTag {
                expected: 0x04,
                found: 0x05
            })
        );
    }

    #[test]
    fn written_lengths_match_computed_lengths() {
        for len in [0usize, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x1_0000] {
            let mut buf = [0u8; 8];
            let mut w = Writer::new(&mut buf);
            w.header(0x04, len).unwrap();
            assert_eq!(w.position(), length_len(len) + 1, "len {len}");
        }
        let mut buf = [0u8; 8];
        let mut w = Writer::new(&mut buf);
        w.unsigned(&[0, 0, 0x80, 1]).unwrap();
        assert_eq!(&buf[..5], &[0x02, 0x03, 0x00, 0x80, 0x01]);
    }
}
