//! Property tests over the published images (fixed seed, so runs are reproducible).
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package. Each test
//! reads its images once, then runs its cases.

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};
use spark_cc3000::ServicePack;
use spark_cc3000::nvmem::{FatTable, FileId, RadioParams};
use spark_cc3000::patch::{Identification, PatchImage};
use spark_cc3000::programmer::{self, Programmer};
use spark_cc3000::sim::{Fault, SimNvmem};

fn config(cases: u32) -> Config {
    Config {
        cases,
        rng_seed: RngSeed::Fixed(0x0CC3_0000),
        failure_persistence: None,
        ..Config::default()
    }
}

/// No single-byte change to a published image is ever taken for a published image.
#[spark_vectors::test]
fn a_flipped_byte_is_never_identified_as_known() {
    let good = spark_vectors::load("cc3000", "cc3000_drv_sp1.32_P1.14.7.16.32.bin");
    proptest!(config(64), |(index in any::<prop::sample::Index>(), xor in 1u8..=255)| {
        let mut bad = good.clone();
        bad[index.index(good.len())] ^= xor;
        if let Ok(image) = PatchImage::parse(&bad) {
            prop_assert_eq!(image.identify(), Identification::Unknown);
        }
    });
}

/// Random faults (failing reads, corrupted bytes) never make the programmer panic or report success on a chip
/// that does not hold the images.
#[spark_vectors::test]
fn programmer_under_random_faults() {
    let v = |n: &str| spark_vectors::load("cc3000", n);
    let drv = v("cc3000_drv_sp1.28_P1.13.7.15.28.bin");
    let fw = v("cc3000_fw_P1.12-1.14_x.15.bin");
    let rm = RadioParams::from_slice(&v("cc3000_rm_default_params.bin")).unwrap();
    proptest!(config(12), |(faults in prop::collection::vec((0usize..800, 1usize..4, 0usize..32, any::<bool>()), 0..6))| {
        let mut sim = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::new(1, 10));
        sim.install(FileId::Rm, rm.as_bytes()).unwrap();
        for (at, times, index, corrupt) in faults {
            sim.inject(if corrupt {
                Fault::CorruptWrite { write: at, index, xor: 0x40 }
            } else {
                Fault::ReadFails { read: at, times }
            });
        }
        let cfg = programmer::Config { default_radio_params: Some(&rm), ..programmer::Config::default() };
        let mut p = Programmer::new(&drv, &fw, cfg).unwrap();
        if programmer::run(&mut p, &mut sim, |_| {}).is_ok() {
            prop_assert_eq!(sim.file(FileId::WlanDriverSp, drv.len()), Some(&drv[..]));
            prop_assert_eq!(sim.file(FileId::WlanFwSp, fw.len()), Some(&fw[..]));
            prop_assert_eq!(sim.reported_version(), ServicePack::SP_1_28);
        }
    });
}
