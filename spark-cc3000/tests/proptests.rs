//! Property tests over the parsers, the emitters and the programmer (fixed seed, so runs are reproducible).

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use spark_cc3000::hci::{Command, DataPacket, Event, PatchSource};
use spark_cc3000::nvmem::{FAT_LEN, FatTable, FileId, MacAddress, RadioParams};
use spark_cc3000::patch::{
    Identification, PatchError, PatchImage, RAM_REGION_END, RAM_REGION_START, ServicePack,
    TiRelease, emit, find_embedded, needs_deep_update,
};
use spark_cc3000::programmer::Backup;

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0CC3_0000),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Non-overlapping records: increasing addresses with gaps, some in the RAM region.
fn records() -> impl Strategy<Value = Vec<(u32, Vec<u8>)>> {
    let base = prop_oneof![
        Just(0x0000_0314u32),
        Just(0x0008_62E4),
        Just(RAM_REGION_START)
    ];
    (
        base,
        prop::collection::vec((0u32..64, prop::collection::vec(any::<u8>(), 1..40)), 1..12),
    )
        .prop_map(|(base, parts)| {
            let mut at = base;
            parts
                .into_iter()
                .map(|(gap, data)| {
                    let addr = at + gap;
                    at = addr + data.len() as u32;
                    (addr, data)
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn image_parse_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = PatchImage::parse(&bytes);
        let _ = find_embedded(&bytes).count();
    }

    #[test]
    fn image_parse_with_a_plausible_header_never_panics(body in prop::collection::vec(any::<u8>(), 0..300), ram in any::<u32>()) {
        let mut bytes = vec![0, 1, 0, 0];
        bytes.extend_from_slice(&((body.len() + 4) as u32).to_le_bytes());
        bytes.extend_from_slice(&ram.to_le_bytes());
        bytes.extend_from_slice(&body);
        match PatchImage::parse(&bytes) {
            Ok(image) => prop_assert_eq!(image.len(), bytes.len()),
            Err(e) => {
                let header_error = matches!(e, PatchError::BadMagic { .. } | PatchError::LengthMismatch { .. });
                prop_assert!(!header_error, "{:?}", e);
            }
        }
    }

    #[test]
    fn emit_then_parse_gives_the_records_back(recs in records()) {
        let mut buf = vec![0u8; 4096];
        let n = emit(recs.iter().map(|(a, d)| (*a, &d[..])), &mut buf).unwrap();
        let image = PatchImage::parse(&buf[..n]).unwrap();
        let back: Vec<(u32, Vec<u8>)> = image.records().map(|r| (r.address, r.data.to_vec())).collect();
        prop_assert_eq!(&back, &recs);
        let ram = recs
            .iter()
            .filter(|(a, _)| (RAM_REGION_START..RAM_REGION_END).contains(a))
            .map(|(a, d)| a + d.len() as u32)
            .max()
            .unwrap_or(RAM_REGION_START);
        prop_assert_eq!(image.ram_end(), ram);
        prop_assert_eq!(image.identify(), Identification::Unknown);
        // emitting into a buffer one byte short is refused with the size needed
        prop_assert_eq!(
            emit(recs.iter().map(|(a, d)| (*a, &d[..])), &mut buf[..n - 1]),
            Err(PatchError::InsufficientSize { required: n })
        );
    }

    #[test]
    fn fat_parse_emit_is_byte_exact(entries in prop::collection::vec(any::<u8>(), 66)) {
        let mut bytes = b"LS".to_vec();
        bytes.extend_from_slice(&entries);
        let table = FatTable::parse(&bytes).unwrap();
        prop_assert_eq!(&table.to_bytes()[..], &bytes[..FAT_LEN]);
        let _ = table.validate(0x8000);
    }

    #[test]
    fn versions_order_as_numbers(a in any::<(u8, u8)>(), b in any::<(u8, u8)>()) {
        let (x, y) = (ServicePack::new(a.0, a.1), ServicePack::new(b.0, b.1));
        prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        prop_assert_eq!(x.to_string().parse::<ServicePack>(), Ok(x));
        prop_assert_eq!(needs_deep_update(&x.to_string(), y), a < b);
    }

    #[test]
    fn ti_releases_round_trip_and_order(a in prop::collection::vec(any::<u8>(), 2..=4), b in prop::collection::vec(any::<u8>(), 2..=4)) {
        let (x, y) = (TiRelease::new(&a), TiRelease::new(&b));
        prop_assert_eq!(x.to_string().parse::<TiRelease>(), Ok(x));
        let pad = |v: &[u8]| { let mut p = [0u8; 4]; p[..v.len()].copy_from_slice(v); (p, v.len()) };
        prop_assert_eq!(x.cmp(&y), pad(&a).cmp(&pad(&b)));
    }

    #[test]
    fn mac_text_round_trip(m in any::<[u8; 6]>()) {
        let mac = MacAddress(m);
        prop_assert_eq!(mac.to_string().parse::<MacAddress>(), Ok(mac));
    }

    #[test]
    fn hci_commands_round_trip(file in 0u32..17, len in any::<u32>(), offset in any::<u32>(), data in prop::collection::vec(any::<u8>(), 0..64), which in 0u8..5) {
        let file = FileId::from_id(file).unwrap();
        let command = match which {
            0 => Command::NvmemRead { file, len, offset },
            1 => Command::NvmemWrite { file, offset, data: &data },
            2 => Command::NvmemCreateEntry { file, len },
            3 => Command::ReadSpVersion,
            _ => Command::SimpleLinkStart(PatchSource::ForceNone),
        };
        let mut frame = vec![0u8; command.frame_len()];
        let n = command.emit(&mut frame).unwrap();
        prop_assert_eq!(n % 2, 0);
        prop_assert_eq!(Command::parse(&frame[5..5 + command.hci_len()]), Ok(command));
    }

    #[test]
    fn hci_chip_packets_round_trip(opcode in any::<u16>(), status in any::<u8>(), params in prop::collection::vec(any::<u8>(), 0..60), args in prop::collection::vec(any::<u8>(), 0..20)) {
        let event = Event { opcode, status, params: &params };
        let mut buf = vec![0u8; event.buffer_len()];
        event.emit(&mut buf).unwrap();
        prop_assert_eq!(Event::parse(&buf), Ok(event));
        let data = DataPacket { opcode: 0x91, args: &args, data: &params };
        let mut buf = vec![0u8; data.buffer_len()];
        data.emit(&mut buf).unwrap();
        prop_assert_eq!(DataPacket::parse(&buf), Ok(data));
        for cut in 0..buf.len() {
            prop_assert!(DataPacket::parse(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn backups_round_trip(mac in proptest::option::of(any::<[u8; 6]>()), radio in proptest::option::of(prop::collection::vec(any::<u8>(), 128)), wlan in proptest::option::of(prop::collection::vec(any::<u8>(), 100))) {
        let backup = Backup {
            mac: mac.map(MacAddress),
            radio: radio.map(|r| RadioParams::from_slice(&r).unwrap()),
            wlan_config: wlan.map(|w| w.try_into().unwrap()),
        };
        prop_assert_eq!(Backup::parse(&backup.to_bytes()), Ok(backup));
    }
}
