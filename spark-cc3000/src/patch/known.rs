//! The table of every published service-pack image, identified by SHA-256.

use super::{ImageKind, ServicePack};
use sha2::{Digest, Sha256};

/// The SHA-256 digest of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A published service-pack image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownImage {
    /// A short stable name, e.g. `"driver-1.28"` or `"driver-1.24-arp-assert"`.
    pub name: &'static str,
    /// TI's label from the source comments where one exists (`"P1.13.7.15.28"`); labels are not reliable
    /// identifiers (the same bytes carry different labels upstream), the digest is.
    pub label: Option<&'static str>,
    /// Driver or firmware patch.
    pub kind: ImageKind,
    /// Image length in bytes.
    pub len: usize,
    /// SHA-256 of the whole image.
    pub sha256: [u8; 32],
    /// For a driver patch: the version the chip reports once it is burnt (`nvmem_read_sp_version`).
    pub reports: Option<ServicePack>,
    /// The service packs this image belongs to (a firmware patch is shared by several).
    pub service_packs: &'static [ServicePack],
    /// For TI hotfix drops on a release: the hotfix's name.
    pub hotfix: Option<&'static str>,
}

impl KnownImage {
    /// Whether this image belongs to service pack `sp`.
    pub fn belongs_to(&self, sp: ServicePack) -> bool {
        self.service_packs.contains(&sp)
    }
}

/// What [`PatchImage::identify`](super::PatchImage::identify) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identification {
    /// A published image.
    Known(&'static KnownImage),
    /// An image written by [`synthetic`](super::synthetic), standing for this service pack.
    Synthetic(ServicePack),
    /// A well-formed image that is neither in [`KNOWN_IMAGES`] nor synthetic.
    Unknown,
}

impl Identification {
    /// The known image, if any.
    pub fn known(self) -> Option<&'static KnownImage> {
        match self {
            Identification::Known(k) => Some(k),
            Identification::Synthetic(_) | Identification::Unknown => None,
        }
    }
}

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not a lowercase hex digit"),
    }
}

/// Decodes 64 lowercase hex digits at compile time.
const fn hex32(s: &str) -> [u8; 32] {
    let s = s.as_bytes();
    assert!(s.len() == 64);
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(s[2 * i]) << 4) | nibble(s[2 * i + 1]);
        i += 1;
    }
    out
}

const SP_1_19: ServicePack = ServicePack::new(1, 19);
const SP_1_24: ServicePack = ServicePack::new(1, 24);
const SP_1_26: ServicePack = ServicePack::new(1, 26);
const SP_1_28: ServicePack = ServicePack::new(1, 28);
const SP_1_32: ServicePack = ServicePack::new(1, 32);

const fn driver(
    name: &'static str,
    label: Option<&'static str>,
    len: usize,
    sha: &str,
    sp: &'static [ServicePack; 1],
    hotfix: Option<&'static str>,
) -> KnownImage {
    KnownImage {
        name,
        label,
        kind: ImageKind::Driver,
        len,
        sha256: hex32(sha),
        reports: Some(sp[0]),
        service_packs: sp,
        hotfix,
    }
}

/// Every published driver and firmware patch image (SP 1.19 to 1.32 and the TI hotfix drops on 1.24).
///
/// The digests are of the byte-exact C array initialisers in Spark's cc3000-patch-programmer, Adafruit's CC3000
/// library and TI's PatchProgrammer sources. A hotfix's reported version (1.24) is inferred from the programmers'
/// success check on the branches that carried it.
pub static KNOWN_IMAGES: [KnownImage; 11] = [
    driver(
        "driver-1.19",
        Some("P4.11.6.13.19"),
        7864,
        "b266a4494a1d8f1b8b372f949a9c45d565fc6914d259aadb13402b2073a22899",
        &[SP_1_19],
        None,
    ),
    driver(
        "driver-1.24",
        Some("P1.11.7.14.24"),
        8168,
        "8ac4e6fae8d811bfa91a3ce34fdcc1a31f0e6aae24d63917d4bb979f2c8b9290",
        &[SP_1_24],
        None,
    ),
    driver(
        "driver-1.24-arp-assert",
        Some("P1.11.7.14.24"),
        8048,
        "d3dc33eca85bdd5509eed9944c6154218a381549c2cb3bf823f1686a7ab9afb8",
        &[SP_1_24],
        Some("arp-assert"),
    ),
    driver(
        "driver-1.24-arp-issue",
        Some("P1.11.7.14.24"),
        8040,
        "cde51db6802305c7047bfbd5cfc50f62445a5f60324d3ab8bf21f265f4810cf5",
        &[SP_1_24],
        Some("arp-issue"),
    ),
    driver(
        "driver-1.24-arp-event",
        Some("P1.11.7.14.24"),
        7116,
        "c8428fcc7f9c21d478aa958796a38fbdf9a8f18111814c1c4ddf032729500494",
        &[SP_1_24],
        Some("arp-event"),
    ),
    driver(
        "driver-1.24-arp-request-pool",
        Some("P1.11.7.14.24"),
        6912,
        "3347b5ff95778d1a18092d3829a7731d4eafb46dda8209baebee312ccec84ab1",
        &[SP_1_24],
        Some("arp-request-pool"),
    ),
    driver(
        "driver-1.26",
        Some("P1.12.7.15.26"),
        8076,
        "0288cbc1a17bac782c9d87218237cbab665addb15345c5edd29b8c72f58338a3",
        &[SP_1_26],
        None,
    ),
    driver(
        "driver-1.28",
        Some("P1.13.7.15.28"),
        8024,
        "5f7b1c848a208a7891d589d301e982a7bdb8bcb50ef00a3fd325a40b40b01ac9",
        &[SP_1_28],
        None,
    ),
    driver(
        "driver-1.32",
        Some("P1.14.7.16.32"),
        7036,
        "88de3f5790f36b0f1f5987316507b0027ff9b0149de6eca01a064a7207165ad9",
        &[SP_1_32],
        None,
    ),
    KnownImage {
        name: "firmware-1.11",
        label: Some("P1.11.7.12.14"),
        kind: ImageKind::Firmware,
        len: 4616,
        sha256: hex32("ab8777dba53778372ee555dff49247e2b8e5affebac5eb3553e54fc9967e58ee"),
        reports: None,
        service_packs: &[SP_1_19, SP_1_24],
        hotfix: None,
    },
    KnownImage {
        name: "firmware-1.12",
        label: Some("P1.12.7.15.15"),
        kind: ImageKind::Firmware,
        len: 5700,
        sha256: hex32("0ee06eca4213cd55a6346def264fcee291328299ebdd1d221e7e2b82dfbe922b"),
        reports: None,
        service_packs: &[SP_1_26, SP_1_28, SP_1_32],
        hotfix: None,
    },
];

/// Looks a digest up in [`KNOWN_IMAGES`].
pub(crate) fn lookup(digest: &[u8; 32]) -> Option<&'static KnownImage> {
    KNOWN_IMAGES.iter().find(|k| &k.sha256 == digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc() {
        assert_eq!(
            sha256(b"abc"),
            hex32("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
    }

    #[test]
    fn table_is_consistent() {
        for (i, a) in KNOWN_IMAGES.iter().enumerate() {
            assert!(a.len <= super::super::MAX_IMAGE_LEN, "{}", a.name);
            assert_eq!(
                a.kind == ImageKind::Driver,
                a.reports.is_some(),
                "{}",
                a.name
            );
            for b in &KNOWN_IMAGES[i + 1..] {
                assert_ne!(a.sha256, b.sha256);
                assert_ne!(a.name, b.name);
            }
        }
        // every SP with a driver has exactly one firmware patch to pair with
        for d in KNOWN_IMAGES.iter().filter(|k| k.kind == ImageKind::Driver) {
            let sp = d.reports.unwrap();
            let fws = KNOWN_IMAGES
                .iter()
                .filter(|k| k.kind == ImageKind::Firmware && k.belongs_to(sp))
                .count();
            assert_eq!(fws, 1, "{}", d.name);
        }
    }
}
