//! Property tests of the virtual Core: Tinker never leaves its return codes and a refused call changes no pin;
//! an OTA image arrives byte for byte whatever the chunking, order and repetition, and never with a hole.

mod common;

use common::TempDir;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use spark_cc3000::ServicePack;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::tinker::{Pin, Tinker};
use spark_vcore::{CoreError, Firmware, VirtualCore};

fn runner(cases: u32) -> TestRunner {
    TestRunner::new_with_rng(
        Config {
            cases,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[0x5C; 32]),
    )
}

/// A legacy Core application of `len` bytes: stack at the top of SRAM, reset handler inside the image.
fn legacy_image(len: usize, fill: u8) -> Vec<u8> {
    let mut image: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ fill)
        .collect();
    image[0..4].copy_from_slice(&0x2000_5000u32.to_le_bytes());
    image[4..8].copy_from_slice(&0x0800_5101u32.to_le_bytes());
    image[8..16].fill(0);
    image
}

#[test]
fn tinker_codes_stay_in_range_and_refusals_change_nothing() {
    let names = prop_oneof![
        Just("digitalread"),
        Just("digitalwrite"),
        Just("analogread"),
        Just("analogwrite"),
    ];
    let arg = prop_oneof![
        "[DAQda][0-9/:][,;]?(HIGH|LOW|high|[0-9]{0,5}|.{0,4})",
        ".{0,12}",
    ];
    runner(2000)
        .run(&(names, arg), |(name, arg)| {
            let mut t = Tinker::new();
            t.call("digitalwrite", "D2,HIGH");
            let before: Vec<_> = Pin::all().map(|p| t.pin(p)).collect();
            let code = t.call(name, &arg).expect("a Tinker function");
            let after: Vec<_> = Pin::all().map(|p| t.pin(p)).collect();
            prop_assert!((-3..=4095).contains(&code), "{name}({arg:?}) = {code}");
            if code < 0 {
                prop_assert_eq!(
                    before,
                    after,
                    "{}({:?}) refused but changed a pin",
                    name,
                    arg
                );
            }
            if name.ends_with("write") && code == 1 {
                prop_assert!(matches!(arg.as_bytes().first(), Some(b'D' | b'A')));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn ota_delivers_the_image_whatever_the_chunking_order_and_repeats() {
    let key: RsaPrivateKey = common::device_key().clone();
    let strategy = (
        0x200usize..6000,
        any::<u8>(),
        1usize..700,
        any::<bool>(),
        Just(()).prop_perturb(|(), rng| rng),
        proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
        proptest::option::of(any::<prop::sample::Index>()),
    );
    runner(24)
        .run(
            &strategy,
            |(len, fill, chunk, announce, mut rng, repeats, hole)| {
                let dir = TempDir::new();
                let mut core = VirtualCore::create_with_identity(
                    &dir.0,
                    ServicePack::SP_1_24,
                    [7; 12],
                    key.clone(),
                )
                .unwrap();
                let image = legacy_image(len, fill);
                let mut order: Vec<usize> = (0..len.div_ceil(chunk)).collect();
                // A random order, plus some chunks again.
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.random_range(0..=i));
                }
                let extra: Vec<usize> = repeats.iter().map(|r| r.index(order.len())).collect();
                order.extend(extra);
                let skipped = hole.map(|h| h.index(len.div_ceil(chunk)));
                core.ota_begin(announce.then_some(len as u32)).unwrap();
                for &i in &order {
                    if Some(i) == skipped {
                        continue;
                    }
                    let end = ((i + 1) * chunk).min(len);
                    core.ota_write((i * chunk) as u32, &image[i * chunk..end])
                        .unwrap();
                }
                let result = core.ota_finish(len as u32);
                let report = core.boot().unwrap();
                if skipped.is_some() {
                    prop_assert!(matches!(result, Err(CoreError::Ota(_))));
                    prop_assert_eq!(report.installed, None);
                    prop_assert_eq!(core.firmware(), &Firmware::FactoryTinker);
                    prop_assert_eq!(core.firmware_image().unwrap(), None);
                } else {
                    prop_assert!(result.is_ok(), "{:?}", result);
                    prop_assert!(report.installed.is_some());
                    prop_assert_eq!(core.firmware_image().unwrap(), Some(image));
                    prop_assert!(core.ota_succeeded());
                }
                Ok(())
            },
        )
        .unwrap();
}
