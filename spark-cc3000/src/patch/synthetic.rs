//! Synthetic service-pack images: the structure of TI's patches with made-up content, for demos and tests that must
//! run without TI's firmware.
//!
//! TI's patch bytes cannot ship with this project, yet a tool author needs a deep update to exercise: a driver
//! patch and a firmware patch that parse, classify, embed in a Core application, burn into NVMEM and make the chip
//! report a new service pack. The images written here have what the real ones have (the header, records at the
//! addresses of their kind, 0xFF padding, a RAM high-water word, about the same size) and pseudo-random content.
//!
//! Each carries a tag in its first record: [`SYNTHETIC_TAG`] followed by the two bytes of the service pack it stands
//! for. [`PatchImage::identify`] reports such an image as [`Identification::Synthetic`](super::Identification::Synthetic), and
//! [`PatchImage::reports`] gives the version a synthetic driver patch makes a (simulated) chip report, as the
//! known table does for a published driver patch. A real CC3000 would run the content as code: never burn a
//! synthetic image into a real module.

use super::{
    HEADER_LEN, PatchError, PatchImage, RAM_REGION_START, RECORD_HEADER_LEN, ServicePack, emit,
    padding_len,
};

/// The first bytes of a synthetic image's first record, followed by the service pack's two bytes.
pub const SYNTHETIC_TAG: [u8; 12] = *b"spark-sdk/sp";

/// Length of the tag record's data: the tag and the version.
const TAG_RECORD_LEN: usize = SYNTHETIC_TAG.len() + 2;

/// Where each record goes and how long it is: (address, data length). The tag record comes first.
type Layout = [(u32, usize)];

/// A driver patch: the tag in patch RAM, a block of RAM code after it, and ROM-patch records above 0x80000,
/// about the size of the 1.28 driver patch (8,024 bytes).
const DRIVER_LAYOUT: [(u32, usize); 10] = [
    (RAM_REGION_START, TAG_RECORD_LEN),
    (RAM_REGION_START + 0x20, 2_990),
    (0x0008_1000, 604),
    (0x0008_2400, 596),
    (0x0008_3800, 612),
    (0x0008_4C00, 588),
    (0x0008_6000, 600),
    (0x0008_7400, 604),
    (0x0008_8800, 592),
    (0x0008_9C00, 598),
];

/// A firmware patch: every record below 0x30000 and none in RAM, about the size of the 1.28 firmware patch
/// (5,700 bytes).
const FIRMWARE_LAYOUT: [(u32, usize); 7] = [
    (0x0002_F000, TAG_RECORD_LEN),
    (0x0001_0000, 942),
    (0x0001_2000, 930),
    (0x0001_4000, 948),
    (0x0001_6000, 936),
    (0x0001_8000, 944),
    (0x0001_A000, 926),
];

/// The longest record of either layout.
const MAX_RECORD: usize = 2_990;

/// Zeros standing in for record data while [`emit`] lays the image out; the content is written afterwards.
static BLANK: [u8; MAX_RECORD] = [0; MAX_RECORD];

const fn layout_len(layout: &Layout) -> usize {
    let mut len = HEADER_LEN;
    let mut i = 0;
    while i < layout.len() {
        len += RECORD_HEADER_LEN + layout[i].1 + padding_len(layout[i].1);
        i += 1;
    }
    len
}

/// Length of [`emit_synthetic_driver`]'s image.
pub const SYNTHETIC_DRIVER_LEN: usize = layout_len(&DRIVER_LAYOUT);
/// Length of [`emit_synthetic_firmware`]'s image.
pub const SYNTHETIC_FIRMWARE_LEN: usize = layout_len(&FIRMWARE_LAYOUT);

/// Writes a synthetic driver patch (NVMEM file 4) standing for `service_pack` into `buf`; returns its length,
/// [`SYNTHETIC_DRIVER_LEN`]. `buf` too small gives [`PatchError::InsufficientSize`].
pub fn emit_synthetic_driver(
    service_pack: ServicePack,
    buf: &mut [u8],
) -> Result<usize, PatchError> {
    emit_layout(&DRIVER_LAYOUT, service_pack, 0x0D71_7E45, buf)
}

/// Writes a synthetic firmware patch (NVMEM file 5) standing for `service_pack` into `buf`; returns its length,
/// [`SYNTHETIC_FIRMWARE_LEN`]. `buf` too small gives [`PatchError::InsufficientSize`].
pub fn emit_synthetic_firmware(
    service_pack: ServicePack,
    buf: &mut [u8],
) -> Result<usize, PatchError> {
    emit_layout(&FIRMWARE_LAYOUT, service_pack, 0x0F1E_3A5B, buf)
}

fn emit_layout(
    layout: &Layout,
    service_pack: ServicePack,
    seed: u32,
    buf: &mut [u8],
) -> Result<usize, PatchError> {
    let len = emit(
        layout.iter().map(|&(address, n)| (address, &BLANK[..n])),
        buf,
    )?;
    let [major, minor] = service_pack.to_bytes();
    let mut state = seed ^ u32::from_le_bytes([major, minor, major, minor]) | 1;
    let mut at = HEADER_LEN;
    for (i, &(_, n)) in layout.iter().enumerate() {
        let data = &mut buf[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + n];
        if i == 0 {
            data[..SYNTHETIC_TAG.len()].copy_from_slice(&SYNTHETIC_TAG);
            data[SYNTHETIC_TAG.len()..].copy_from_slice(&[major, minor]);
        } else {
            for byte in data.iter_mut() {
                // xorshift32: deterministic filler that looks like code to a reader, not like padding.
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                *byte = state as u8;
            }
        }
        at += RECORD_HEADER_LEN + n + padding_len(n);
    }
    Ok(len)
}

/// The service pack a synthetic image stands for, read from its tag record; `None` for any other image.
pub(super) fn tagged_service_pack(image: &PatchImage<'_>) -> Option<ServicePack> {
    let first = image.records().next()?;
    let (tag, version) = first.data.split_at_checked(SYNTHETIC_TAG.len())?;
    match (tag == SYNTHETIC_TAG, version) {
        (true, &[major, minor]) => Some(ServicePack::from_bytes([major, minor])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patch::{Identification, ImageKind, find_embedded};

    #[test]
    fn synthetic_images_parse_classify_and_name_their_service_pack() {
        let mut driver = [0u8; SYNTHETIC_DRIVER_LEN];
        let mut firmware = [0u8; SYNTHETIC_FIRMWARE_LEN];
        assert_eq!(
            emit_synthetic_driver(ServicePack::SP_1_28, &mut driver),
            Ok(SYNTHETIC_DRIVER_LEN)
        );
        assert_eq!(
            emit_synthetic_firmware(ServicePack::SP_1_28, &mut firmware),
            Ok(SYNTHETIC_FIRMWARE_LEN)
        );
        let d = PatchImage::parse(&driver).unwrap();
        let f = PatchImage::parse(&firmware).unwrap();
        assert_eq!(d.kind(), ImageKind::Driver);
        assert_eq!(f.kind(), ImageKind::Firmware);
        assert_eq!(
            d.identify(),
            Identification::Synthetic(ServicePack::SP_1_28)
        );
        assert_eq!(
            f.identify(),
            Identification::Synthetic(ServicePack::SP_1_28)
        );
        assert_eq!(d.reports(), Some(ServicePack::SP_1_28));
        assert_eq!(
            f.reports(),
            None,
            "only a driver patch sets the reported version"
        );
        // About the size of TI's 1.28 pair (8,024 and 5,700 bytes), and within an NVMEM slot.
        assert!(
            (7_000..8_192).contains(&SYNTHETIC_DRIVER_LEN),
            "{SYNTHETIC_DRIVER_LEN}"
        );
        assert!(
            (5_000..6_500).contains(&SYNTHETIC_FIRMWARE_LEN),
            "{SYNTHETIC_FIRMWARE_LEN}"
        );
    }

    #[test]
    fn the_content_depends_on_the_service_pack_and_is_not_padding() {
        let mut a = [0u8; SYNTHETIC_DRIVER_LEN];
        let mut b = [0u8; SYNTHETIC_DRIVER_LEN];
        emit_synthetic_driver(ServicePack::SP_1_28, &mut a).unwrap();
        emit_synthetic_driver(ServicePack::SP_1_32, &mut b).unwrap();
        assert_ne!(a[..], b[..]);
        let image = PatchImage::parse(&a).unwrap();
        let code = image.records().nth(1).unwrap().data;
        let ff = code.iter().filter(|&&x| x == 0xFF).count();
        assert!(
            ff < code.len() / 16,
            "{ff} of {} bytes are 0xFF",
            code.len()
        );
        assert_eq!(
            PatchImage::parse(&b).unwrap().reports(),
            Some(ServicePack::SP_1_32)
        );
    }

    #[test]
    fn a_small_buffer_is_refused_and_an_edited_tag_is_unknown() {
        let mut small = [0u8; 100];
        assert_eq!(
            emit_synthetic_firmware(ServicePack::SP_1_28, &mut small),
            Err(PatchError::InsufficientSize {
                required: SYNTHETIC_FIRMWARE_LEN
            })
        );
        let mut f = [0u8; SYNTHETIC_FIRMWARE_LEN];
        emit_synthetic_firmware(ServicePack::SP_1_28, &mut f).unwrap();
        f[HEADER_LEN + RECORD_HEADER_LEN] ^= 1;
        assert_eq!(
            PatchImage::parse(&f).unwrap().identify(),
            Identification::Unknown
        );
    }

    #[test]
    fn both_are_found_inside_an_application_at_odd_offsets() {
        let mut binary = [0x42u8; SYNTHETIC_DRIVER_LEN + SYNTHETIC_FIRMWARE_LEN + 301];
        emit_synthetic_driver(ServicePack::SP_1_28, &mut binary[101..]).unwrap();
        let f_at = 101 + SYNTHETIC_DRIVER_LEN + 99;
        emit_synthetic_firmware(ServicePack::SP_1_28, &mut binary[f_at..]).unwrap();
        let found: [_; 2] = {
            let mut it = find_embedded(&binary);
            [it.next().unwrap(), it.next().unwrap()]
        };
        assert_eq!(
            (found[0].offset, found[0].image.kind()),
            (101, ImageKind::Driver)
        );
        assert_eq!(
            (found[1].offset, found[1].image.kind()),
            (f_at, ImageKind::Firmware)
        );
        assert!(
            found
                .iter()
                .all(|e| e.identification == Identification::Synthetic(ServicePack::SP_1_28))
        );
    }
}
