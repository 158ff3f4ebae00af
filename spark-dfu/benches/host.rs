//! Throughput of the sans-IO host driving the simulated Spark Core (the host's own cost plus the model's), and
//! the efficiency of its plan against dfu-util 0.11's (set-address before every block) for the 80 KB Tinker
//! image: control transfers and simulated time (the sum of the poll timeouts), computed in the same run and
//! printed with their ratio.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use spark_dfu::host::{Device, Host, Options, Region};
use spark_dfu::platform::{Platform, core_map};
use spark_dfu::sim::SparkCore;
use spark_dfu::transport::blocking::run;
use std::hint::black_box;

fn image() -> Vec<u8> {
    spark_vectors::read("dfu", "spark-cli/spark_tinker.bin").unwrap_or_else(|| {
        // The same size as Tinker when the vectors are absent.
        (0..79_996u32).map(|i| (i * 2_654_435_761) as u8).collect()
    })
}

fn flash(image: &[u8], options: Options) -> (u32, u64) {
    let device = Device::for_platform(Platform::Core).expect("the Core is in the table");
    let regions = [Region {
        alt: 0,
        address: core_map::FIRMWARE,
        data: image,
    }];
    let mut host = Host::download(device, &regions, options).expect("plan accepted");
    let mut sim = SparkCore::new();
    let summary = run(&mut host, &mut sim, |_| {}).expect("flash succeeds");
    (summary.transfers, sim.elapsed_ms)
}

fn benches(c: &mut Criterion) {
    let image = image();
    let plain = Options {
        verify: false,
        leave: true,
        force: false,
        address_every_block: false,
    };
    let dfu_util = Options {
        address_every_block: true,
        ..plain
    };
    let mut g = c.benchmark_group("host+sim");
    g.throughput(Throughput::Bytes(image.len() as u64));
    g.bench_function("flash tinker", |b| {
        b.iter(|| black_box(flash(&image, plain)))
    });
    g.bench_function("flash tinker + verify", |b| {
        b.iter(|| {
            black_box(flash(
                &image,
                Options {
                    verify: true,
                    ..plain
                },
            ))
        })
    });
    g.bench_function("flash tinker, dfu-util 0.11 plan", |b| {
        b.iter(|| black_box(flash(&image, dfu_util)))
    });
    g.finish();

    let ours = flash(&image, plain);
    let theirs = flash(&image, dfu_util);
    println!(
        "\nTinker ({} bytes) on the simulated Core:\n  ours:          {} control transfers, {} ms of poll timeouts\n  dfu-util 0.11: {} control transfers, {} ms of poll timeouts\n  ratio:         {:.3} transfers, {:.3} time",
        image.len(),
        ours.0,
        ours.1,
        theirs.0,
        theirs.1,
        f64::from(ours.0) / f64::from(theirs.0),
        ours.1 as f64 / theirs.1 as f64,
    );
}

criterion_group!(group, benches);
criterion_main!(group);
