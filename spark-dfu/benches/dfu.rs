//! Throughput of the DfuSe reader and writer on a 1 MiB image, and of the CRC-32 (slice-by-16, and the table-free
//! variant the device-side crates link) against memory bandwidth
//! (a `memcpy` of the same size, measured in the same run) and against `dfu-suffix -a` on the same file (the
//! whole command, measured in the same run when dfu-util is installed). A summary with the ratios is printed
//! after criterion's own report.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use spark_dfu::file::DfuFile;
use spark_dfu::file::dfuse::{BinImage, DfuseFile, Element, pack, pack_len};
use spark_dfu::file::suffix::SuffixRepr;
use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

/// The table-free CRC-32 spark-protocol (on the Core) and spark-cc3000 use.
static NO_TABLE: crc::Crc<u32, crc::NoTable> =
    crc::Crc::<u32, crc::NoTable>::new(&crc::CRC_32_ISO_HDLC);

fn image() -> Vec<u8> {
    let mut x = 0x1234_5678u32;
    (0..MIB)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn dfuse_file(data: &[u8]) -> Vec<u8> {
    let images = [BinImage {
        alt: 0,
        element: Element {
            address: 0x0800_5000,
            data,
        },
    }];
    let mut out = vec![0; pack_len(&images).unwrap()];
    pack(&images, 0x1d50, 0x607f, &mut out).unwrap();
    out
}

fn benches(c: &mut Criterion) {
    let data = image();
    let file = dfuse_file(&data);

    let mut g = c.benchmark_group("dfuse_1MiB");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.bench_function("read (validate + walk)", |b| {
        b.iter(|| {
            let f = DfuseFile::parse(black_box(&file)).unwrap();
            f.targets()
                .flat_map(|t| t.elements())
                .map(|e| e.data.len())
                .sum::<usize>()
        });
    });
    let mut out = vec![0u8; file.len()];
    let images = [BinImage {
        alt: 0,
        element: Element {
            address: 0x0800_5000,
            data: &data,
        },
    }];
    g.bench_function("write", |b| {
        b.iter(|| pack(black_box(&images), 0x1d50, 0x607f, &mut out).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("crc32_1MiB");
    g.throughput(Throughput::Bytes(MIB as u64));
    g.bench_function(BenchmarkId::new("jamcrc", "crc slice-by-16"), |b| {
        b.iter(|| spark_dfu::crc::jamcrc(black_box(&data)));
    });
    // The table-free variant the device-side crates link, for the ratio.
    g.bench_function(BenchmarkId::new("jamcrc", "crc no table"), |b| {
        b.iter(|| !NO_TABLE.checksum(black_box(&data)));
    });
    let mut copy = vec![0u8; MIB];
    g.bench_function("memcpy", |b| {
        b.iter(|| copy.copy_from_slice(black_box(&data)))
    });
    g.finish();
}

/// Mean time of `f` over about `budget`.
fn time(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut n = 0u32;
    while start.elapsed() < budget {
        f();
        n += 1;
    }
    start.elapsed() / n.max(1)
}

fn gbps(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn summary() {
    let data = image();
    let file = dfuse_file(&data);
    let budget = Duration::from_millis(700);
    let crc = time(budget, || {
        black_box(spark_dfu::crc::jamcrc(black_box(&data)));
    });
    let crc_bitwise = time(budget, || {
        black_box(!NO_TABLE.checksum(black_box(&data)));
    });
    let mut copy = vec![0u8; MIB];
    let memcpy = time(budget, || {
        black_box(&mut copy).copy_from_slice(black_box(&data));
        black_box(&copy);
    });
    // The same on 64 MiB, which no cache holds: DRAM bandwidth.
    let big: Vec<u8> = data.iter().copied().cycle().take(64 * MIB).collect();
    let mut big_copy = vec![0u8; 64 * MIB];
    let crc_big = time(budget, || {
        black_box(spark_dfu::crc::jamcrc(black_box(&big)));
    });
    let memcpy_big = time(budget, || {
        black_box(&mut big_copy).copy_from_slice(black_box(&big));
        black_box(&big_copy);
    });
    let read = time(budget, || {
        black_box(DfuseFile::parse(black_box(&file)).unwrap());
    });
    let images = [BinImage {
        alt: 0,
        element: Element {
            address: 0x0800_5000,
            data: &data,
        },
    }];
    let mut out = vec![0u8; file.len()];
    let write = time(budget, || {
        black_box(pack(&images, 0x1d50, 0x607f, &mut out).unwrap());
    });
    let mut sfx = vec![0u8; MIB + 16];
    let add = time(budget, || {
        black_box(
            DfuFile::add_suffix(&data, SuffixRepr::for_device(0x1d50, 0x607f), &mut sfx).unwrap(),
        );
    });

    println!("\n== spark-dfu summary (1 MiB, this machine, this run)");
    println!(
        "CRC-32/JAMCRC    {:8.2} GB/s   (1 MiB, in cache)",
        gbps(MIB, crc)
    );
    println!(
        "memcpy           {:8.2} GB/s   (1 MiB)   CRC time / memcpy time = {:.2}",
        gbps(MIB, memcpy),
        crc.as_secs_f64() / memcpy.as_secs_f64()
    );
    println!(
        "CRC, no table    {:8.2} GB/s   (1 MiB)   no-table time / slice-by-16 time = {:.1}",
        gbps(MIB, crc_bitwise),
        crc_bitwise.as_secs_f64() / crc.as_secs_f64()
    );
    println!(
        "CRC-32/JAMCRC    {:8.2} GB/s   (64 MiB, from DRAM)",
        gbps(64 * MIB, crc_big)
    );
    println!(
        "memcpy           {:8.2} GB/s   (64 MiB)  CRC time / memcpy time = {:.2}",
        gbps(64 * MIB, memcpy_big),
        crc_big.as_secs_f64() / memcpy_big.as_secs_f64()
    );
    println!("DfuSe read       {:8.2} GB/s", gbps(file.len(), read));
    println!("DfuSe write      {:8.2} GB/s", gbps(file.len(), write));
    println!(
        "add_suffix       {:8.3} ms (copy + CRC, in memory)",
        add.as_secs_f64() * 1e3
    );

    let dir = std::env::temp_dir().join(format!("spark-dfu-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("image.bin");
    let tool = Command::new("dfu-suffix").arg("-V").output().is_ok();
    if tool {
        let command = time(Duration::from_secs(2), || {
            std::fs::write(&path, &data).unwrap();
            let ok = Command::new("dfu-suffix")
                .args(["-v", "1d50", "-p", "607f", "-a"])
                .arg(&path)
                .output()
                .unwrap();
            assert!(ok.status.success());
        });
        let ours_with_io = time(Duration::from_secs(2), || {
            std::fs::write(&path, &data).unwrap();
            let input = std::fs::read(&path).unwrap();
            let out =
                DfuFile::add_suffix_to_vec(&input, SuffixRepr::for_device(0x1d50, 0x607f)).unwrap();
            std::fs::write(&path, out).unwrap();
        });
        let theirs = std::fs::read(&path).unwrap();
        assert_eq!(
            theirs,
            DfuFile::add_suffix_to_vec(&data, SuffixRepr::for_device(0x1d50, 0x607f)).unwrap()
        );
        println!(
            "dfu-suffix -a    {:8.3} ms (whole command incl. writing the input file)",
            command.as_secs_f64() * 1e3
        );
        println!(
            "ours, same IO    {:8.3} ms (write input, read, add, write)",
            ours_with_io.as_secs_f64() * 1e3
        );
        println!(
            "ratios: dfu-suffix -a / our add_suffix = {:.1}x; / ours with the same file IO = {:.1}x",
            command.as_secs_f64() / add.as_secs_f64(),
            command.as_secs_f64() / ours_with_io.as_secs_f64()
        );
    } else {
        println!("dfu-suffix not installed: command comparison skipped");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(group, benches);

fn main() {
    group();
    Criterion::default().configure_from_args().final_summary();
    summary();
}
