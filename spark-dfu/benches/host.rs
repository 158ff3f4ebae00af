//! Throughput of the sans-IO host driving the simulated Spark Core (the host's own cost plus the model's), and
//! the efficiency of its plan against dfu-util 0.11's (set-address before every block) for the 80 KB Tinker
//! image: control transfers and simulated time (the sum of the poll timeouts), computed in the same run and
//! printed with their ratio and with the floor below.
//!
//! # The floor on this bootloader
//!
//! The Spark bootloader (spark/bootloader `usb_prop.c`, the ST DFU library) accepts DFU_DNLOAD only in dfuIDLE or
//! dfuDNLOAD-IDLE. A DNLOAD puts it in dfuDNLOAD-SYNC; the first GETSTATUS answers dfuDNBUSY and the command (set
//! address, erase page, or program the block) runs in that GETSTATUS's status stage, which leaves the device in
//! dfuDNLOAD-SYNC again with nothing pending; only a second GETSTATUS (or an ABORT, or a zero-length UPLOAD, each
//! also one transfer) brings it to a state where the next DNLOAD is accepted. So **every command costs exactly
//! three control transfers**, and no transfer can carry two commands: the data stage holds one command or one
//! block of at most `wTransferSize` = 1024 bytes.
//!
//! Internal flash has 1 KiB pages and nothing erases it for the host (no mass erase, no erase on write; writing
//! over programmed bytes fails), so each KiB of image on pages that hold data needs one erase-page command and
//! one data block: **6 transfers per KiB, the floor for any correct host**. Fixed costs: GETSTATUS + CLRSTATUS to
//! leave the dfuERROR the Core starts in (2), and the leave request plus the GETSTATUS whose status stage resets
//! the MCU (2); the set-address command can even be avoided, because the bootloader loads the address pointer
//! from each erase command too. Tinker is 79,996 bytes = 79 blocks on 79 pages:
//!
//! - floor: 79 × 6 + 2 + 2 = **478** transfers, 79 × (50 + 50) = 7,900 ms of poll timeouts (erase and write
//!   both report 50 ms on internal flash);
//! - ours: 79 × 6 + 3 (prepare, with dfu-util's re-check GETSTATUS) + 1 (SET_INTERFACE) + 3 (one set-address)
//!   + 2 (leave) = **483**, 7,950 ms;
//! - dfu-util 0.11: 79 × 9 (erase, set-address, block) + 3 + 1 + 2 = **717**, 11,850 ms (the real tool also
//!   sets the address once more before the leave request: 720).
//!
//! Best possible ratio: 478 / 717 = **0.667** (ours 483 / 717 = 0.674). Reaching 0.6 would need at most 430
//! transfers, i.e. fewer than 6 per KiB: only by leaving out erases, which is correct only for pages already known
//! to be blank, and knowing that costs a read-back (set-address, ABORT, one UPLOAD per KiB): 4 per KiB on blank
//! pages (ratio about 0.46, but only on an erased Core, which the simulator's fresh state is and a Core in the
//! field is not) and 7 per KiB on pages holding the previous firmware (worse than 6). So the plan stays at the
//! general floor plus 5.

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
    // Any correct host: 3 transfers per erase and per block, GETSTATUS + CLRSTATUS, leave + GETSTATUS.
    let kib = image.len().div_ceil(1024) as u32;
    let floor = kib * 6 + 4;
    println!(
        "\nfloor for any host: {} control transfers ({:.3} of dfu-util 0.11)",
        floor,
        f64::from(floor) / f64::from(theirs.0)
    );
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
