//! Property tests: what the writers emit, the readers read back unchanged; no input makes a parser panic.
//! proptest runs with a fixed seed so that a run is reproducible.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use spark_dfu::file::DfuFile;
use spark_dfu::file::dfuse::{DfuseFile, DfuseRepr, DfuseWriteError, Element, TargetRepr};
use spark_dfu::file::layout::MemoryLayout;
use spark_dfu::file::prefix::PrefixRepr;
use spark_dfu::file::suffix::{Suffix, SuffixRepr};
use spark_dfu::module::inspect;
use spark_dfu::platform::server_key::{KeyFormat, ServerAddress, ServerKeyImage};

fn config() -> Config {
    Config {
        cases: 256,
        rng_seed: RngSeed::Fixed(0x5EED_D0F0),
        failure_persistence: None,
        ..Config::default()
    }
}

fn suffix_repr() -> impl Strategy<Value = SuffixRepr> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        prop_oneof![Just(0x0100u16), Just(0x011a), any::<u16>()],
    )
        .prop_map(|(bcd_device, id_product, id_vendor, bcd_dfu)| SuffixRepr {
            bcd_device,
            id_product,
            id_vendor,
            bcd_dfu,
        })
}

/// Targets with disjoint elements per alt setting: (alt, name, [(gap, data)]).
/// (alt, name, [(gap or address, data)]).
type TargetSpec = (u8, Option<Vec<u8>>, Vec<(u32, Vec<u8>)>);

fn targets() -> impl Strategy<Value = Vec<TargetSpec>> {
    let name = prop::option::of(prop::collection::vec(1u8..=255, 0..40));
    let element = (0u32..5000, prop::collection::vec(any::<u8>(), 0..200));
    prop::collection::vec((0u8..4, name, prop::collection::vec(element, 0..4)), 1..5)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn suffix_round_trip(body in prop::collection::vec(any::<u8>(), 0..500), repr in suffix_repr()) {
        let file = repr.append_to_vec(&body);
        let s = Suffix::parse(&file).unwrap();
        prop_assert_eq!(s.repr(), repr);
        prop_assert_eq!(s.length, 16);
        prop_assert_eq!(s.crc, spark_dfu::crc::jamcrc(&file[..file.len() - 4]));
    }

    #[test]
    fn prefix_and_suffix_round_trip(body in prop::collection::vec(any::<u8>(), 16..400), repr in suffix_repr(), lpc in any::<bool>(), address in any::<u32>()) {
        // Vector-table-like first byte so that the body itself is never taken for a prefix.
        let mut body = body;
        body[0] = 0;
        let prefix = if lpc { PrefixRepr::Lpc } else { PrefixRepr::Lmdfu { address } };
        let mut a = vec![0; body.len() + 16];
        let n = DfuFile::add_prefix(&body, prefix, &mut a).unwrap();
        a.truncate(n);
        let with = DfuFile::add_suffix_to_vec(&a, repr).unwrap();
        let f = DfuFile::parse(&with).unwrap();
        prop_assert_eq!(f.firmware(), &body[..]);
        prop_assert_eq!(f.prefix().map(|p| p.kind()), Some(prefix.kind()));
        let mut back = vec![0; with.len()];
        let n = DfuFile::remove_prefix(&with, None, &mut back).unwrap();
        let mut bare = vec![0; n];
        let n2 = DfuFile::remove_suffix(&back[..n], &mut bare).unwrap();
        prop_assert_eq!(&bare[..n2], &body[..]);
    }

    #[test]
    fn dfuse_round_trip(spec in targets(), repr in suffix_repr()) {
        // Lay the elements of each alt setting out one after another so that none overlap.
        let mut next = [0x0800_0000u32; 4];
        let placed: Vec<TargetSpec> = spec
            .into_iter()
            .map(|(alt, name, els)| {
                let els = els
                    .into_iter()
                    .map(|(gap, data)| {
                        let at = next[usize::from(alt)] + gap;
                        next[usize::from(alt)] = at + data.len() as u32;
                        (at, data)
                    })
                    .collect();
                (alt, name, els)
            })
            .collect();
        let elements: Vec<Vec<Element<'_>>> =
            placed.iter().map(|(_, _, els)| els.iter().map(|(a, d)| Element { address: *a, data: d }).collect()).collect();
        let reprs: Vec<TargetRepr<'_>> = placed
            .iter()
            .zip(&elements)
            .map(|((alt, name, _), els)| TargetRepr { alt: *alt, name: name.as_deref(), elements: els })
            .collect();
        let written = DfuseRepr { targets: &reprs, suffix: repr }.to_vec();
        if reprs.len() == 1 && reprs[0].elements.is_empty() {
            prop_assert_eq!(written, Err(DfuseWriteError::TooSmall));
            return Ok(());
        }
        let file = written.unwrap();
        let f = DfuseFile::parse(&file).unwrap();
        prop_assert_eq!(f.image_size() as usize, file.len());
        prop_assert_eq!(f.suffix().id_vendor, repr.id_vendor);
        prop_assert_eq!(f.targets().count(), reprs.len());
        for (t, r) in f.targets().zip(&reprs) {
            prop_assert_eq!(t.alt(), r.alt);
            let expected_name = r.name.map(|n| &n[..n.iter().position(|&b| b == 0).unwrap_or(n.len())]);
            prop_assert_eq!(t.name(), expected_name);
            let got: Vec<Element<'_>> = t.elements().collect();
            prop_assert_eq!(&got[..], r.elements);
        }
    }

    #[test]
    fn parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..700)) {
        let _ = Suffix::parse(&bytes);
        let _ = DfuFile::parse(&bytes);
        let _ = DfuseFile::parse(&bytes);
        if let Ok(f) = DfuseFile::parse_lenient(&bytes) {
            let _ = f.targets().flat_map(|t| t.elements()).count();
        }
        let _ = inspect(&bytes, 0x0800_5000);
        for format in [KeyFormat::CORE, KeyFormat::DCT_RSA, KeyFormat::DCT_EC] {
            let _ = ServerKeyImage::parse(&bytes, format);
        }
        let text = String::from_utf8_lossy(&bytes);
        if let Ok(l) = MemoryLayout::parse(&text) {
            let _ = l.warnings().count();
            let _ = l.pages_to_erase(0, u32::MAX).map(|p| p.take(100).count());
        }
    }

    #[test]
    fn dfuse_with_suffix_never_panics(body in prop::collection::vec(any::<u8>(), 0..900), targets in 0u8..4) {
        // A valid DfuSe suffix and signature around random bytes reaches the structure checks.
        let mut body = body;
        if body.len() >= 11 {
            body[..6].copy_from_slice(b"DfuSe\x01");
            body[10] = targets;
        }
        let file = SuffixRepr { bcd_dfu: 0x011a, ..SuffixRepr::default() }.append_to_vec(&body);
        let _ = DfuseFile::parse(&file);
        let _ = DfuseFile::parse_lenient(&file).map(|f| f.targets().flat_map(|t| t.elements()).count());
    }

    #[test]
    fn layout_strings_never_panic(s in "@[ -~]{0,12}(/0x[0-9A-Fa-fx+-]{0,10}/?([0-9+ -]{0,4}\\*[0-9 -]{0,5}[BKMa-g ,/]?[a-g ,/]{0,2},?){0,4}){0,3}") {
        if let Ok(l) = MemoryLayout::parse(&s) {
            let segs: Vec<_> = l.segments().collect();
            prop_assert!(!segs.is_empty());
            for seg in segs {
                let _ = l.pages_to_erase(seg.start, 100).map(|p| p.take(1000).count());
                let _ = l.is_writeable(seg.start, 1);
            }
        }
    }

    #[test]
    fn server_key_round_trip(der_body in prop::collection::vec(any::<u8>(), 0..300), ip in any::<[u8; 4]>(), domain in "[a-z.]{1,40}", nul in any::<bool>(), port in prop::option::of(0u16..0xffff), use_ip in any::<bool>()) {
        let mut der = vec![0x30, 0x82];
        der.extend_from_slice(&(der_body.len() as u16).to_be_bytes());
        der.extend_from_slice(&der_body);
        let address = if use_ip { ServerAddress::Ipv4(ip) } else { ServerAddress::Domain { name: domain.as_bytes(), nul } };
        let mut out = vec![0; 512];
        ServerKeyImage::emit(&der, KeyFormat::DCT_RSA, Some(address), port, &mut out).unwrap();
        let k = ServerKeyImage::parse(&out, KeyFormat::DCT_RSA).unwrap();
        prop_assert_eq!(k.der, &der[..]);
        prop_assert_eq!(k.address, Some(address));
        prop_assert_eq!(k.port, port);
    }
}
