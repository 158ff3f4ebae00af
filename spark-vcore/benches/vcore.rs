//! The virtual Core's costs: a Tinker call, receiving a deep update into the external-flash file, and the
//! reset that installs it and runs the CC3000 patch programmer against the simulated NVMEM.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::SeedableRng;
use rand::rngs::StdRng;
use spark_cc3000::ServicePack;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::VirtualCore;
use spark_vcore::image::synthetic_deep_update;
use spark_vcore::tinker::Tinker;

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("vcore");
    let mut t = Tinker::new();
    g.bench_function("tinker digitalwrite", |b| {
        b.iter(|| t.call(black_box("digitalwrite"), black_box("D7,HIGH")))
    });
    // Spark's deep update where the vectors hold it, else the synthetic one.
    let image = spark_vectors::area("dfu")
        .map(|dfu| std::fs::read(dfu.join("spark-cli/deep_update_2014_06.bin")).unwrap())
        .unwrap_or_else(|| synthetic_deep_update(ServicePack::SP_1_28));
    let key = RsaPrivateKey::generate(&mut StdRng::seed_from_u64(9), 1024).unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("vcore-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let fresh = |name: &str| {
        let d = dir.join(name);
        let _ = std::fs::remove_dir_all(&d);
        VirtualCore::create_with_identity(&d, ServicePack::SP_1_24, [9; 12], key.clone()).unwrap()
    };

    let mut core = fresh("ota");
    g.throughput(Throughput::Bytes(image.len() as u64));
    g.bench_function("OTA receive deep update (512 B chunks)", |b| {
        b.iter(|| {
            core.ota_begin(Some(image.len() as u32)).unwrap();
            for (i, chunk) in image.chunks(512).enumerate() {
                core.ota_write((i * 512) as u32, chunk).unwrap();
            }
            core.ota_finish(image.len() as u32).unwrap()
        })
    });

    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.bench_function(
        "reset: install deep update + patch CC3000 1.24 -> 1.28",
        |b| {
            b.iter_batched(
                || {
                    let mut core = fresh("boot");
                    core.ota_begin(Some(image.len() as u32)).unwrap();
                    core.ota_write(0, &image).unwrap();
                    core.ota_finish(image.len() as u32).unwrap();
                    core
                },
                |mut core| {
                    let report = core.boot().unwrap();
                    assert_eq!(report.patched.map(|p| p.1), Some(ServicePack::SP_1_28));
                    core
                },
                BatchSize::PerIteration,
            )
        },
    );
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(vcore, benches);
criterion_main!(vcore);
