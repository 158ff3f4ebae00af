//! Finding service-pack images carried inside a firmware binary (a patch programmer or a deep-update application).
//!
//! The programmer applications keep the images as `const` arrays in `.rodata`, not necessarily 4-byte aligned (the
//! July 2014 deep update has its firmware patch at an odd offset). The scan looks for the format bytes at every
//! offset, reads the length word, and keeps the candidates that pass the full validation of
//! [`PatchImage::parse`]; valid images that are not in the known table are reported too.

use super::{HEADER_LEN, Identification, MAGIC, MAX_IMAGE_LEN, PatchImage};

/// A patch image found inside a larger binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Embedded<'a> {
    /// Byte offset of the image inside the binary.
    pub offset: usize,
    /// The validated image.
    pub image: PatchImage<'a>,
    /// What the image is.
    pub identification: Identification,
}

/// Iterator over the images embedded in a binary, in offset order. See [`find_embedded`].
#[derive(Debug, Clone)]
pub struct EmbeddedImages<'a> {
    binary: &'a [u8],
    at: usize,
}

/// Scans `binary` for embedded service-pack images.
///
/// Linear in the binary's length for the scan plus one validation per candidate position; no allocation.
pub fn find_embedded(binary: &[u8]) -> EmbeddedImages<'_> {
    EmbeddedImages { binary, at: 0 }
}

impl<'a> Iterator for EmbeddedImages<'a> {
    type Item = Embedded<'a>;

    fn next(&mut self) -> Option<Embedded<'a>> {
        while self.at + HEADER_LEN <= self.binary.len() {
            let offset = self.at;
            let rest = &self.binary[offset..];
            self.at += 1;
            if rest[..4] != MAGIC {
                continue;
            }
            let declared = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
            let Some(len) = declared.checked_add(8) else {
                continue;
            };
            if len > MAX_IMAGE_LEN || len > rest.len() {
                continue;
            }
            if let Ok(image) = PatchImage::parse(&rest[..len]) {
                self.at = offset + len;
                return Some(Embedded {
                    offset,
                    image,
                    identification: image.identify(),
                });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::emit;
    use super::*;

    #[test]
    fn finds_unaligned_unknown_images_and_skips_lookalikes() {
        let mut image = [0u8; 64];
        let n = emit([(0x0314u32, &[0xAAu8; 9][..])], &mut image).unwrap();
        let mut binary = [0x55u8; 200];
        // a lookalike: format bytes with a length running past the end of the binary
        binary[3..7].copy_from_slice(&MAGIC);
        binary[7..11].copy_from_slice(&500u32.to_le_bytes());
        binary[41..41 + n].copy_from_slice(&image[..n]);
        let found: [Option<Embedded<'_>>; 2] = {
            let mut it = find_embedded(&binary);
            [it.next(), it.next()]
        };
        let hit = found[0].unwrap();
        assert_eq!(hit.offset, 41);
        assert_eq!(hit.image.as_bytes(), &image[..n]);
        assert_eq!(hit.identification, Identification::Unknown);
        assert!(found[1].is_none());
        assert_eq!(find_embedded(&binary[..40]).count(), 0);
        assert_eq!(find_embedded(&[]).count(), 0);
    }
}
