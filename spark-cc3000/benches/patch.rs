//! Throughput of image validation, identification, the embedded-image scan and a whole programmer run.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_cc3000::ServicePack;
use spark_cc3000::nvmem::{FatTable, FileId, RadioParams};
use spark_cc3000::patch::{PatchImage, find_embedded};
use spark_cc3000::programmer::{self, Config, Nvmem, Programmer};
use spark_cc3000::sim::SimNvmem;
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let Some(driver) = spark_vectors::read("cc3000", "cc3000_drv_sp1.28_P1.13.7.15.28.bin") else {
        return;
    };
    let Some(firmware) = spark_vectors::read("cc3000", "cc3000_fw_P1.12-1.14_x.15.bin") else {
        return;
    };
    let Some(rm) = spark_vectors::read("cc3000", "cc3000_rm_default_params.bin") else {
        return;
    };
    let Some(binary) = spark_vectors::read("dfu", "spark-cli/deep_update_2014_06.bin") else {
        return;
    };

    let mut g = c.benchmark_group("patch");
    g.throughput(Throughput::Bytes(driver.len() as u64));
    g.bench_function("parse+validate driver 1.28", |b| {
        b.iter(|| PatchImage::parse(black_box(&driver)).unwrap())
    });
    let image = PatchImage::parse(&driver).unwrap();
    g.bench_function("identify (sha256) driver 1.28", |b| {
        b.iter(|| black_box(image).identify())
    });
    g.throughput(Throughput::Bytes(binary.len() as u64));
    g.bench_function("find_embedded deep_update_2014_06", |b| {
        b.iter(|| find_embedded(black_box(&binary)).count())
    });
    g.finish();

    let rm = RadioParams::from_slice(&rm).unwrap();
    let mut base = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::new(1, 10));
    base.install(FileId::Rm, rm.as_bytes()).unwrap();
    base.install(FileId::Mac, &[8, 0, 0x28, 1, 2, 3]).unwrap();
    let config = Config {
        default_radio_params: Some(&rm),
        ..Config::default()
    };
    let mut g = c.benchmark_group("programmer");
    g.throughput(Throughput::Bytes((driver.len() + firmware.len()) as u64));
    g.bench_function(
        "full run against the simulator (write + verify 13.7 KB)",
        |b| {
            b.iter(|| {
                let mut sim = base.clone();
                let mut p = Programmer::new(&driver, &firmware, config).unwrap();
                let report = programmer::run(&mut p, &mut sim, |_| {}).unwrap();
                assert_eq!(sim.read_sp_version().unwrap(), ServicePack::SP_1_28);
                report
            })
        },
    );
    g.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
