//! The sans-IO host against the simulated Spark Core: the exact control-transfer sequence of a small image, the
//! refusals, injected faults at every transfer, and a property test. The operations on the published images, the
//! wrong-platform refusal and the transfer count against dfu-util 0.11's algorithm are in `vectors_host.rs`.

use proptest::prelude::*;
use spark_dfu::file::DfuFile;
use spark_dfu::file::suffix::SuffixRepr;
use spark_dfu::host::proto::{State, Status};
use spark_dfu::host::{
    Action, Device, Event, Host, HostError, Options, Phase, Refusal, Region, TransferError,
};
use spark_dfu::ops::{self, OpError};
use spark_dfu::platform::{Platform, core_map};
use spark_dfu::sim::{Fault, SparkCore};
use spark_dfu::transport::blocking::run;

fn core() -> Device<'static> {
    Device::for_platform(Platform::Core).unwrap()
}

fn quiet() -> impl FnMut(Event) {
    |_| {}
}

#[test]
fn device_key_save_reads_back_what_was_written() {
    // A DER-shaped key (SEQUENCE of 608 bytes) of 612 bytes.
    let mut der = vec![0x30, 0x82, 0x02, 0x60];
    der.extend((0..608u32).map(|i| (i * 7 + 3) as u8));
    let mut sim = SparkCore::new();
    ops::write_device_key(&mut sim, Platform::Core, &der, Options::default(), quiet()).unwrap();
    let saved = ops::read_device_key(&mut sim, Platform::Core, quiet()).unwrap();
    assert_eq!(saved.len(), 1024);
    assert_eq!(&saved[..612], &der[..]);
    assert!(saved[612..].iter().all(|&b| b == 0xFF));
    assert_eq!(
        sim.memory(core_map::DEVICE_PRIVATE_KEY, 1024).unwrap(),
        &saved[..]
    );
}

/// Renders the log of the simulated device as one line per transfer.
fn render(sim: &SparkCore) -> Vec<String> {
    sim.log
        .as_ref()
        .unwrap()
        .iter()
        .map(|l| {
            let name = [
                "DETACH",
                "DNLOAD",
                "UPLOAD",
                "GETSTATUS",
                "CLRSTATUS",
                "GETSTATE",
                "ABORT",
            ][usize::from(l.setup.request)];
            let head: Vec<String> = l.data.iter().take(5).map(|b| format!("{b:02x}")).collect();
            format!(
                "{name} v={} len={} [{}]",
                l.setup.value,
                l.setup.length,
                head.join(" ")
            )
        })
        .collect()
}

#[test]
fn golden_transfers_small_image() {
    // 1500 bytes at 0x08005000: two pages, two blocks, no verify, leave.
    let data: Vec<u8> = (0..1500u32).map(|i| i as u8).collect();
    let regions = [Region {
        alt: 0,
        address: 0x0800_5000,
        data: &data,
    }];
    let options = Options {
        verify: false,
        leave: true,
        ..Options::default()
    };
    let mut host = Host::download(core(), &regions, options).unwrap();
    let mut sim = SparkCore::new().with_log();
    let summary = run(&mut host, &mut sim, |_| {}).unwrap();
    let golden = [
        "GETSTATUS v=0 len=6 []",
        "CLRSTATUS v=0 len=0 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=0 len=5 [41 00 50 00 08]",
        "GETSTATUS v=0 len=6 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=0 len=5 [41 00 54 00 08]",
        "GETSTATUS v=0 len=6 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=0 len=5 [21 00 50 00 08]",
        "GETSTATUS v=0 len=6 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=2 len=1024 [00 01 02 03 04]",
        "GETSTATUS v=0 len=6 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=3 len=476 [00 01 02 03 04]",
        "GETSTATUS v=0 len=6 []",
        "GETSTATUS v=0 len=6 []",
        "DNLOAD v=2 len=0 []",
        "GETSTATUS v=0 len=6 []",
    ];
    assert_eq!(render(&sim), golden);
    // One SET_INTERFACE besides the DFU requests; the last GETSTATUS reports dfuMANIFEST, then the Core resets.
    assert_eq!(sim.resets, 1);
    assert_eq!(summary.transfers, golden.len() as u32 + 1);
    assert_eq!(sim.memory(0x0800_5000, 1500).unwrap(), &data[..]);
    // Waits: 2 erases, 1 set-address and 2 writes at 50 ms; nothing after dfuMANIFEST (the Core resets).
    assert_eq!(sim.elapsed_ms, 5 * 50);
    assert_eq!(summary.waited_ms, sim.elapsed_ms);
}

#[test]
fn refusals() {
    let d = [0u8; 2048];
    let opts = Options::default();
    let refuse = |alt, address, len: usize, force| {
        let regions = [Region {
            alt,
            address,
            data: &d[..len],
        }];
        Host::download(core(), &regions, Options { force, ..opts }).err()
    };
    assert_eq!(
        refuse(0, 0x0800_4C00, 1024, false),
        Some(Refusal::Bootloader {
            address: 0x0800_4C00,
            end: 0x0800_5000
        })
    );
    assert_eq!(
        refuse(0, 0x0801_FC00, 2048, false),
        Some(Refusal::Unmapped {
            address: 0x0802_0000
        })
    );
    assert_eq!(
        refuse(1, 0x001F_F800, 2048, false),
        None,
        "the last 2 KB of SPI flash are writeable"
    );
    assert_eq!(
        refuse(1, 0x0020_0000, 16, false),
        Some(Refusal::Unmapped {
            address: 0x0020_0000
        })
    );
    assert_eq!(refuse(2, 0, 16, false), Some(Refusal::NoLayout { alt: 2 }));
    assert_eq!(
        refuse(0, 0xFFFF_FF00, 1024, true),
        Some(Refusal::Overflow {
            address: 0xFFFF_FF00
        })
    );
    // A non-writeable page on a layout without a declared bootloader.
    let layouts = ["@Flash /0x08000000/4*001Ka,4*001Kg"];
    let plain = Device {
        bootloader: None,
        layouts: &layouts,
        ..core()
    };
    let regions = [Region {
        alt: 0,
        address: 0x0800_0C00,
        data: &d[..2048],
    }];
    assert_eq!(
        Host::download(plain, &regions, opts).err(),
        Some(Refusal::Access {
            address: 0x0800_0C00,
            access: "writeable"
        })
    );
    // Reading an unreadable or unmapped range.
    let mut out = [0u8; 16];
    assert_eq!(
        Host::upload(core(), 1, 0x0020_0000, &mut out).err(),
        Some(Refusal::Unmapped {
            address: 0x0020_0000
        })
    );
    // Forced onto the bootloader: the Core's write protection answers errWRITE (the page is not erasable
    // in the layout, so no erase is sent).
    let regions = [Region {
        alt: 0,
        address: 0x0800_0000,
        data: &d[..16],
    }];
    let mut host = Host::download(
        core(),
        &regions,
        Options {
            force: true,
            ..opts
        },
    )
    .unwrap();
    let mut sim = SparkCore::new();
    let e = run(&mut host, &mut sim, |_| {}).unwrap_err();
    assert_eq!(
        e,
        HostError::Device {
            phase: Phase::Write,
            address: 0x0800_0000,
            status: Status::WRITE,
            state: State::Error
        }
    );
    assert!(sim.programmed.is_empty());
}

#[test]
fn refusal_wrong_suffix() {
    let mut sim = SparkCore::new();
    let firmware = [0x11u8; 64];
    let mut buf = [0u8; 80];
    let n =
        DfuFile::add_suffix(&firmware, SuffixRepr::for_device(0x2b04, 0xd006), &mut buf).unwrap();
    let file = DfuFile::parse(&buf[..n]).unwrap();
    let e = ops::flash_file(
        &mut sim,
        Platform::Core,
        &file,
        1,
        0x8_0000,
        Options::default(),
        quiet(),
    )
    .unwrap_err();
    assert_eq!(
        e,
        OpError::Refused(Refusal::WrongDevice {
            file_vendor: 0x2b04,
            file_product: 0xd006,
            vendor: 0x1d50,
            product: 0x607f
        })
    );
    let n =
        DfuFile::add_suffix(&firmware, SuffixRepr::for_device(0x1d50, 0x607f), &mut buf).unwrap();
    let file = DfuFile::parse(&buf[..n]).unwrap();
    ops::flash_file(
        &mut sim,
        Platform::Core,
        &file,
        1,
        0x8_0000,
        Options::default(),
        quiet(),
    )
    .unwrap();
    assert_eq!(sim.memory(0x8_0000, 64).unwrap(), &firmware[..]);
}

/// Every fault at every transfer of a small run ends in a typed error (or, after the leave request, success),
/// and every block reported written is in flash.
#[test]
fn faults_at_every_transfer() {
    let data: Vec<u8> = (0..2100u32).map(|i| (i * 13) as u8).collect();
    let regions = [Region {
        alt: 1,
        address: 0x8_0000,
        data: &data,
    }];
    let options = Options {
        verify: true,
        leave: true,
        ..Options::default()
    };
    let clean = {
        let mut sim = SparkCore::new();
        let mut host = Host::download(core(), &regions, options).unwrap();
        run(&mut host, &mut sim, |_| {}).unwrap();
        sim.transfers
    };
    let faults = [
        Fault::Stall,
        Fault::UsbError,
        Fault::Disappear,
        Fault::WrongStatus(Status::PROG),
        Fault::WrongStatus(Status::ERASE),
    ];
    for fault in faults {
        for at in 0..clean {
            let mut sim = SparkCore::new();
            sim.inject(at, fault);
            let mut host = Host::download(core(), &regions, options).unwrap();
            let mut written = Vec::new();
            let r = run(&mut host, &mut sim, |e| {
                if let Event::Written { address, len } = e {
                    written.push((address, len));
                }
            });
            for &(address, len) in &written {
                assert!(
                    sim.programmed.contains(&(address, len)),
                    "{fault:?}@{at}: reported but not programmed"
                );
                let off = (address - 0x8_0000) as usize;
                assert_eq!(
                    sim.memory(address, len as usize).unwrap(),
                    &data[off..off + len as usize]
                );
            }
            assert_eq!(
                host.summary().written,
                written.iter().map(|w| u64::from(w.1)).sum::<u64>()
            );
            let leave_at = clean - 2;
            // A lost leave DNLOAD, or any failure of the GETSTATUS after it, is success: the Core resets there.
            // A stalled leave request is a refusal.
            let lost = matches!(fault, Fault::UsbError | Fault::Disappear);
            // A wrong status on the GETSTATUS calls while preparing (transfers 0 and 2) is cleared like errFIRMWARE.
            let prepare = matches!(fault, Fault::WrongStatus(_)) && (at == 0 || at == 2);
            let expect_ok = prepare
                || (at == leave_at && lost)
                || (at == leave_at + 1 && (lost || fault == Fault::Stall));
            assert_eq!(r.is_ok(), expect_ok, "{fault:?}@{at}: {r:?}");
            match r {
                Ok(_) => {}
                Err(e) => {
                    let typed = match fault {
                        Fault::Stall => matches!(
                            e,
                            HostError::Transfer {
                                error: TransferError::Stall,
                                ..
                            }
                        ),
                        Fault::UsbError => matches!(
                            e,
                            HostError::Transfer {
                                error: TransferError::Io,
                                ..
                            }
                        ),
                        Fault::Disappear => matches!(
                            e,
                            HostError::Transfer {
                                error: TransferError::Disconnected,
                                ..
                            }
                        ),
                        Fault::WrongStatus(s) => match e {
                            HostError::Device { status, .. } => status == s,
                            // On a non-GETSTATUS transfer the fault is a stall.
                            HostError::Transfer {
                                error: TransferError::Stall,
                                ..
                            } => true,
                            // Preparing retries a cleared error; a third error in a row gives up.
                            _ => false,
                        },
                    };
                    assert!(typed, "{fault:?}@{at}: {e:?}");
                }
            }
        }
    }
}

#[test]
fn wrong_status_while_preparing_is_cleared() {
    // The first GETSTATUS reports errUNKNOWN: it is cleared like the Core's errFIRMWARE.
    let mut sim = SparkCore::new();
    sim.inject(0, Fault::WrongStatus(Status::UNKNOWN));
    let data = [1u8; 8];
    let regions = [Region {
        alt: 1,
        address: 0x8_0000,
        data: &data,
    }];
    let mut host = Host::download(core(), &regions, Options::default()).unwrap();
    let mut events = Vec::new();
    run(&mut host, &mut sim, |e| events.push(e)).unwrap();
    assert_eq!(
        events[0],
        Event::Cleared {
            status: Status::UNKNOWN
        }
    );
}

#[test]
fn interrupted_upload_is_aborted() {
    use spark_dfu::host::proto::{Request, Setup};
    use spark_dfu::transport::blocking::Transport as T;
    let mut sim = SparkCore::new();
    // Bring the device to dfuUPLOAD-IDLE by hand: clear, set no address (the default 0x08005000), read a block.
    T::control_out(&mut sim, Setup::out(Request::ClrStatus, 0, 0, 0), &[]).unwrap();
    let mut b = [0u8; 1024];
    T::control_in(&mut sim, Setup::input(Request::Upload, 2, 0, 1024), &mut b).unwrap();
    assert_eq!(sim.state().0, State::UploadIdle);
    let data = vec![0x5Au8; 3000];
    let regions = [Region {
        alt: 1,
        address: 0x9_0000,
        data: &data,
    }];
    let mut host = Host::download(core(), &regions, Options::default()).unwrap();
    let mut events = Vec::new();
    run(&mut host, &mut sim, |e| events.push(e)).unwrap();
    assert_eq!(
        events[0],
        Event::Aborted {
            state: State::UploadIdle
        }
    );
    assert_eq!(sim.memory(0x9_0000, 3000).unwrap(), &data[..]);
}

#[test]
fn verify_reports_first_bad_address() {
    // Drive a run by hand and corrupt the flash between the last write and the read-back.
    let data = vec![0xA5u8; 2500];
    let regions = [Region {
        alt: 1,
        address: 0xA_0000,
        data: &data,
    }];
    let mut host = Host::download(core(), &regions, Options::default()).unwrap();
    let mut sim = SparkCore::new();
    let mut buf = [0u8; 4096];
    let mut corrupted = false;
    let err = loop {
        let action = match host.poll_action() {
            Ok(a) => a,
            Err(e) => break Some(e),
        };
        use spark_dfu::transport::blocking::Transport as T;
        match action {
            Action::SelectAlt(a) => {
                let r = T::select_alt(&mut sim, a);
                host.handle_out(r).unwrap_or(());
            }
            Action::Out { setup, data } => {
                let r = T::control_out(&mut sim, setup, data);
                let _ = host.handle_out(r);
            }
            Action::In { setup } => {
                if setup.request == 2 && !corrupted {
                    sim.spi[0xA_0000 + 1500] = 0x00;
                    corrupted = true;
                }
                let n = setup.length as usize;
                let r = T::control_in(&mut sim, setup, &mut buf[..n]);
                let _ = host.handle_in(r.map(|l| &buf[..l]));
            }
            Action::Done => break None,
            _ => {}
        }
    };
    assert_eq!(
        err,
        Some(HostError::Mismatch {
            address: 0xA_0000 + 1500,
            expected: 0xA5,
            found: 0x00
        })
    );
}

#[test]
fn erase_before_write_is_enforced() {
    // Preloaded data in a page the host erases is wiped, then written; writing without erase would fail.
    let mut sim = SparkCore::new();
    sim.preload(0x0800_5000, &[0u8; 1024]);
    let data = [7u8; 1024];
    let regions = [Region {
        alt: 0,
        address: 0x0800_5000,
        data: &data,
    }];
    let mut host = Host::download(core(), &regions, Options::default()).unwrap();
    run(&mut host, &mut sim, |_| {}).unwrap();
    assert_eq!(sim.memory(0x0800_5000, 1024).unwrap(), &data[..]);
    // A layout that claims the segment needs no erase: the Core refuses to program over data.
    let layouts = [
        "@Internal Flash  /0x08000000/20*001Ka,108*001Kd",
        spark_dfu::platform::CORE_SPI_FLASH,
    ];
    let no_erase = Device {
        layouts: &layouts,
        ..core()
    };
    let other = [8u8; 1024];
    let regions = [Region {
        alt: 0,
        address: 0x0800_5000,
        data: &other,
    }];
    let mut host = Host::download(no_erase, &regions, Options::default()).unwrap();
    sim.reenter_dfu();
    let e = run(&mut host, &mut sim, |_| {}).unwrap_err();
    assert!(
        matches!(
            e,
            HostError::Device {
                status: Status::PROG,
                address: 0x0800_5000,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(host.summary().written, 0);
}

#[test]
fn async_run_matches_blocking() {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    let data: Vec<u8> = (0..5000u32).map(|i| (i ^ (i >> 8)) as u8).collect();
    let regions = [Region {
        alt: 1,
        address: 0x3000,
        data: &data,
    }];
    let mut host = Host::download(core(), &regions, Options::default()).unwrap();
    let mut sim = SparkCore::new();
    let summary = {
        let mut fut = pin!(spark_dfu::transport::asynch::run(
            &mut host,
            &mut sim,
            |_| {}
        ));
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(r) = fut.as_mut().poll(&mut cx) {
                break r.unwrap();
            }
        }
    };
    assert_eq!(sim.memory(0x3000, 5000).unwrap(), &data[..]);
    let mut host2 = Host::download(core(), &regions, Options::default()).unwrap();
    let mut sim2 = SparkCore::new();
    assert_eq!(run(&mut host2, &mut sim2, |_| {}).unwrap(), summary);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Random non-overlapping regions in SPI flash and the application area land byte for byte, and read back.
    #[test]
    fn random_plans_land(
        spans in prop::collection::vec((0u32..400, 1usize..3000, any::<u8>()), 1..4),
        app in prop::option::of((0u32..100, 1usize..4000)),
    ) {
        let mut regions_data = Vec::new();
        let mut next_free = 0u32;
        for (gap, len, seed) in spans {
            let address = next_free + gap * 64;
            let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect();
            // Keep regions in distinct 4 KB sectors so erasing one does not wipe another.
            next_free = (address + len as u32).div_ceil(4096) * 4096;
            regions_data.push((1u8, address, data));
        }
        if let Some((page, len)) = app {
            let data: Vec<u8> = (0..len).map(|i| (i * 3) as u8).collect();
            regions_data.push((0u8, core_map::FIRMWARE + page * 1024, data));
        }
        let regions: Vec<Region<'_>> = regions_data
            .iter()
            .map(|(alt, address, data)| Region { alt: *alt, address: *address, data })
            .collect();
        let mut host = Host::download(core(), &regions, Options::default()).unwrap();
        let mut sim = SparkCore::new();
        let s = run(&mut host, &mut sim, |_| {}).unwrap();
        let total: usize = regions_data.iter().map(|r| r.2.len()).sum();
        prop_assert_eq!(s.written, total as u64);
        for (_, address, data) in &regions_data {
            prop_assert_eq!(sim.memory(*address, data.len()).unwrap(), &data[..]);
            sim.reenter_dfu();
            let mut out = vec![0u8; data.len()];
            let mut up = Host::upload(core(), if *address >= 0x0800_0000 { 0 } else { 1 }, *address, &mut out).unwrap();
            run(&mut up, &mut sim, |_| {}).unwrap();
            prop_assert_eq!(&out, data);
        }
    }
}

#[test]
fn flash_dfuse_file_to_every_target() {
    use spark_dfu::file::dfuse::{BinImage, Element, pack_to_vec};
    let app: Vec<u8> = (0..3000u32).map(|i| (i * 5) as u8).collect();
    let user: Vec<u8> = (0..700u32).map(|i| (i * 11) as u8).collect();
    let images = [
        BinImage {
            alt: 0,
            element: Element {
                address: 0x0800_6000,
                data: &app,
            },
        },
        BinImage {
            alt: 1,
            element: Element {
                address: 0x8_1000,
                data: &user,
            },
        },
    ];
    let bytes = pack_to_vec(&images, 0x1d50, 0x607f).unwrap();
    let file = spark_dfu::file::dfuse::DfuseFile::parse(&bytes).unwrap();
    assert_eq!(ops::dfuse_regions(&file).len(), 2);
    let mut sim = SparkCore::new();
    ops::flash_dfuse_file(&mut sim, Platform::Core, &file, Options::default(), quiet()).unwrap();
    assert_eq!(sim.memory(0x0800_6000, app.len()).unwrap(), &app[..]);
    assert_eq!(sim.memory(0x8_1000, user.len()).unwrap(), &user[..]);
    let other = pack_to_vec(&images, 0x2b04, 0xd006).unwrap();
    let file = spark_dfu::file::dfuse::DfuseFile::parse(&other).unwrap();
    let e = ops::flash_dfuse_file(&mut sim, Platform::Core, &file, Options::default(), quiet());
    assert!(matches!(
        e,
        Err(OpError::Refused(Refusal::WrongDevice {
            file_vendor: 0x2b04,
            ..
        }))
    ));
}
