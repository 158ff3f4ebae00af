//! The programmer against the simulated CC3000 NVMEM (feature `sim`), with the published service-pack images.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.

use spark_cc3000::ServicePack;
use spark_cc3000::hci::HciNvmem;
use spark_cc3000::nvmem::{FatEntry, FatTable, FileId, MacAddress, RadioParams};
use spark_cc3000::programmer::{
    self, Action, Backup, Config, Error, Nvmem, Outcome, Programmer, Report, Source,
};
use spark_cc3000::sim::{Fault, Op, SimNvmem, SimSpi};

struct Images {
    drv_124: Vec<u8>,
    drv_128: Vec<u8>,
    drv_132: Vec<u8>,
    fw_111: Vec<u8>,
    fw_115: Vec<u8>,
    rm_default: RadioParams,
}

fn images() -> Images {
    let v = |n: &str| spark_vectors::load("cc3000", n);
    Images {
        drv_124: v("cc3000_drv_sp1.24_P1.11.7.14.24.bin"),
        drv_128: v("cc3000_drv_sp1.28_P1.13.7.15.28.bin"),
        drv_132: v("cc3000_drv_sp1.32_P1.14.7.16.32.bin"),
        fw_111: v("cc3000_fw_P1.11.7.12.14.bin"),
        fw_115: v("cc3000_fw_P1.12-1.14_x.15.bin"),
        rm_default: RadioParams::from_slice(&v("cc3000_rm_default_params.bin")).unwrap(),
    }
}

const USER_MAC: MacAddress = MacAddress([0x08, 0x00, 0x28, 0x5A, 0x11, 0x7C]);
const FALLBACK_MAC: MacAddress = MacAddress([0x08, 0x00, 0x28, 0x01, 0x02, 0x03]);

/// This module's own calibration: the defaults with a few bytes changed, so a restore of the defaults shows.
fn user_radio(img: &Images) -> RadioParams {
    let mut rm = img.rm_default;
    rm.0[8] = 0x2A;
    rm.0[100] = 0x19;
    rm
}

fn user_wlan() -> [u8; 100] {
    core::array::from_fn(|i| (i as u8).wrapping_mul(7) ^ 0x5C)
}

/// A factory table: 4 KiB patch slots, so files 6 to 11 sit 8 KiB lower than in the programmer's table.
fn factory_table() -> FatTable {
    let mut t = FatTable::programmer_default();
    let e = t.entries_mut();
    e[4].length = 0x1000;
    e[5] = FatEntry::allocated(0x3390, 0x1000);
    for entry in &mut e[6..12] {
        entry.address -= 0x2000;
    }
    t.validate(0x8000).unwrap();
    t
}

/// Small synthetic driver and firmware patches that fit a factory table's 4 KiB slots.
fn small_patches() -> (Vec<u8>, Vec<u8>) {
    let mut drv = vec![0u8; 64];
    let n = spark_cc3000::patch::emit([(0x0008_62E4u32, &[0x11u8; 18][..])], &mut drv).unwrap();
    drv.truncate(n);
    let mut fw = vec![0u8; 64];
    let n = spark_cc3000::patch::emit([(0x0000_0314u32, &[0x22u8; 20][..])], &mut fw).unwrap();
    fw.truncate(n);
    (drv, fw)
}

/// The starting Core for a table: SP 1.24 in the programmer's table, small old patches in a factory table.
fn start(img: &Images, table: &FatTable) -> SimNvmem {
    if *table == FatTable::programmer_default() {
        core(img, table, &img.drv_124, &img.fw_111)
    } else {
        let (drv, fw) = small_patches();
        core(img, table, &drv, &fw)
    }
}

/// A Core patched with SP 1.24 (or a factory module), with its own MAC, radio parameters, WLAN profiles and
/// Spark's user file 14 (holding flags).
fn core(img: &Images, table: &FatTable, driver: &[u8], firmware: &[u8]) -> SimNvmem {
    let mut sim = SimNvmem::with_table(table, ServicePack::new(1, 10));
    sim.install(FileId::WlanDriverSp, driver).unwrap();
    sim.install(FileId::WlanFwSp, firmware).unwrap();
    sim.install(FileId::Mac, &USER_MAC.0).unwrap();
    sim.install(FileId::Rm, user_radio(img).as_bytes()).unwrap();
    sim.install(FileId::WlanConfig, &user_wlan()).unwrap();
    sim.create_entry(FileId::User14, 16).unwrap();
    sim.install(
        FileId::User14,
        &[1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    )
    .unwrap();
    sim
}

fn config(img: &Images) -> Config<'_> {
    Config {
        default_radio_params: Some(&img.rm_default),
        fallback_mac: Some(FALLBACK_MAC),
        ..Config::default()
    }
}

fn program(
    sim: &mut SimNvmem,
    driver: &[u8],
    firmware: &[u8],
    config: Config<'_>,
) -> Result<Report, Error> {
    let mut p = Programmer::new(driver, firmware, config)?;
    programmer::run(&mut p, sim, |_| {}).map_err(|e| e.error)
}

/// The chip holds the service pack, verified byte for byte, and the user's data survived.
fn assert_patched(sim: &SimNvmem, img: &Images, driver: &[u8], firmware: &[u8], sp: ServicePack) {
    assert_eq!(sim.reported_version(), sp);
    assert_eq!(sim.file(FileId::WlanDriverSp, driver.len()), Some(driver));
    assert_eq!(sim.file(FileId::WlanFwSp, firmware.len()), Some(firmware));
    assert!(
        sim.table()
            .unwrap()
            .same_layout(&FatTable::programmer_default())
    );
    assert!(
        sim.file(FileId::User14, 16).is_some(),
        "Spark's file 14 exists"
    );
    let _ = img;
}

fn assert_user_data_kept(sim: &SimNvmem, img: &Images) {
    assert_eq!(sim.file(FileId::Mac, 6), Some(&USER_MAC.0[..]));
    assert_eq!(sim.file(FileId::Rm, 128), Some(&user_radio(img).0[..]));
    assert_eq!(sim.file(FileId::WlanConfig, 100), Some(&user_wlan()[..]));
}

#[spark_vectors::test]
fn from_1_24_to_1_28_then_1_32_keeping_mac_and_radio_params() {
    let img = images();
    let table = FatTable::programmer_default();
    let mut sim = start(&img, &table);
    assert_eq!(sim.reported_version(), ServicePack::SP_1_24);

    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(report.initial_version, Some(ServicePack::SP_1_24));
    assert_eq!(report.final_version, ServicePack::SP_1_28);
    assert!(!report.fat_rewritten, "the table already had 8 KiB slots");
    assert_eq!(
        (report.mac, report.mac_source, report.radio_source),
        (Some(USER_MAC), Source::Chip, Source::Chip)
    );
    assert_eq!(
        report.files_written,
        1 << 4 | 1 << 5,
        "only the patch files differ"
    );
    assert_patched(&sim, &img, &img.drv_128, &img.fw_115, ServicePack::SP_1_28);
    assert_user_data_kept(&sim, &img);
    assert_eq!(
        sim.file(FileId::User14, 16).unwrap()[..3],
        [1, 0, 3],
        "the user's flags survive"
    );

    let report = program(&mut sim, &img.drv_132, &img.fw_115, config(&img)).unwrap();
    assert_eq!(
        (report.initial_version, report.final_version),
        (Some(ServicePack::SP_1_28), ServicePack::SP_1_32)
    );
    assert_eq!(
        report.files_written,
        1 << 4,
        "the 1.28 and 1.32 firmware patches are identical"
    );
    assert_patched(&sim, &img, &img.drv_132, &img.fw_115, ServicePack::SP_1_32);
    assert_user_data_kept(&sim, &img);

    // a re-run finds everything in place and writes nothing
    let before = sim.eeprom().to_vec();
    let report = program(&mut sim, &img.drv_132, &img.fw_115, config(&img)).unwrap();
    assert!(report.already_patched());
    assert_eq!(sim.eeprom(), &before[..]);
}

#[spark_vectors::test]
fn from_a_factory_table_the_table_is_rewritten_and_user_data_restored() {
    let img = images();
    let mut sim = start(&img, &factory_table());
    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert!(report.fat_rewritten);
    assert_eq!(report.radio_source, Source::Chip);
    assert_patched(&sim, &img, &img.drv_128, &img.fw_115, ServicePack::SP_1_28);
    assert_user_data_kept(&sim, &img);
    // user files 12, 13, 15 were cleared by the table rewrite; 14 was recreated empty
    for f in [FileId::Aes128Key, FileId::SharedMem, FileId::User15] {
        assert!(
            !sim.table().unwrap().entry(f).unwrap().flags.allocated(),
            "{f:?}"
        );
    }
    assert_eq!(sim.file(FileId::User14, 16), Some(&[0u8; 16][..]));
}

/// Power is cut before operation `k` (or in the middle of write `k`); the Core restarts and the programmer runs again
/// with the backup the first run handed out, if it got that far.
fn interrupted_then_rerun(
    img: &Images,
    table: &FatTable,
    fault: impl Fn(usize) -> Fault,
    k: usize,
    keep_backup: bool,
    fresh: &Programmer<'_>,
) {
    let mut sim = start(img, table);
    let start = (sim.op_count(), sim.write_count());
    let shifted = match fault(k) {
        Fault::PowerLossBeforeOp { op } => Fault::PowerLossBeforeOp { op: op + start.0 },
        Fault::PowerLossDuringWrite { write, keep } => Fault::PowerLossDuringWrite {
            write: write + start.1,
            keep,
        },
        other => other,
    };
    sim.inject(shifted);
    let mut persisted: Option<[u8; programmer::BACKUP_LEN]> = None;
    let mut p = fresh.clone();
    let first = programmer::run(&mut p, &mut sim, |b| persisted = Some(b.to_bytes()));
    assert!(first.is_err(), "power loss at {k} must stop the first run");
    assert!(!sim.is_powered());
    sim.power_cycle();

    let saved = persisted
        .filter(|_| keep_backup)
        .map(|b| Backup::parse(&b).unwrap());
    let cfg = Config {
        saved_backup: saved.as_ref(),
        ..config(img)
    };
    let report = program(&mut sim, &img.drv_128, &img.fw_115, cfg)
        .unwrap_or_else(|e| panic!("re-run after {k}: {e}"));
    assert_eq!(report.final_version, ServicePack::SP_1_28);
    assert_patched(&sim, img, &img.drv_128, &img.fw_115, ServicePack::SP_1_28);
    if keep_backup {
        assert_user_data_kept(&sim, img);
    } else {
        // without a persisted backup the MAC is the user's or the fallback, never lost
        let mac = sim.file(FileId::Mac, 6).unwrap();
        assert!(
            mac == USER_MAC.0 || mac == FALLBACK_MAC.0,
            "{k}: {mac:02x?}"
        );
    }
}

/// Operations and writes of a clean run from `table`.
fn clean_run_counts(img: &Images, table: &FatTable) -> (usize, usize) {
    let mut sim = start(img, table);
    let start = (sim.op_count(), sim.write_count());
    program(&mut sim, &img.drv_128, &img.fw_115, config(img)).unwrap();
    (sim.op_count() - start.0, sim.write_count() - start.1)
}

#[spark_vectors::test]
fn power_loss_before_every_operation_then_rerun_ends_patched_and_verified() {
    let img = images();
    for table in [factory_table(), FatTable::programmer_default()] {
        let (ops, _) = clean_run_counts(&img, &table);
        let fresh = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
        for k in 0..ops {
            interrupted_then_rerun(
                &img,
                &table,
                |op| Fault::PowerLossBeforeOp { op },
                k,
                true,
                &fresh,
            );
        }
    }
}

#[spark_vectors::test]
fn power_loss_in_the_middle_of_every_write_then_rerun_ends_patched_and_verified() {
    let img = images();
    for table in [factory_table(), FatTable::programmer_default()] {
        let (_, writes) = clean_run_counts(&img, &table);
        let fresh = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
        for k in 0..writes {
            let fault = |write| Fault::PowerLossDuringWrite { write, keep: 1 };
            interrupted_then_rerun(&img, &table, fault, k, true, &fresh);
        }
    }
}

#[spark_vectors::test]
fn power_loss_without_a_persisted_backup_still_ends_patched() {
    let img = images();
    let table = factory_table();
    let (ops, _) = clean_run_counts(&img, &table);
    let fresh = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
    for k in 0..ops {
        interrupted_then_rerun(
            &img,
            &table,
            |op| Fault::PowerLossBeforeOp { op },
            k,
            false,
            &fresh,
        );
    }
}

#[spark_vectors::test]
fn every_step_is_idempotent() {
    // Perform every write and create step twice in a row: the end state equals a clean run's.
    let img = images();
    for table in [factory_table(), FatTable::programmer_default()] {
        let mut clean = start(&img, &table);
        program(&mut clean, &img.drv_128, &img.fw_115, config(&img)).unwrap();

        let mut sim = start(&img, &table);
        let mut p = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
        let mut buf = [0u8; 128];
        loop {
            let outcome = match p.poll_action() {
                Action::Read { file, offset, len } => match sim.read(file, offset, &mut buf[..len])
                {
                    Ok(()) => Outcome::Read(&buf[..len]),
                    Err(_) => Outcome::Failed,
                },
                Action::Write { file, offset, data } => {
                    sim.write(file, offset, data).unwrap();
                    sim.write(file, offset, data).unwrap();
                    Outcome::Done
                }
                Action::CreateEntry { file, len } => {
                    sim.create_entry(file, len).unwrap();
                    sim.create_entry(file, len).unwrap();
                    Outcome::Done
                }
                Action::ReadVersion => Outcome::Version(sim.read_sp_version().unwrap()),
                Action::SaveBackup(_) => Outcome::Done,
                Action::Finished(_) => break,
                Action::Failed(e) => panic!("{e}"),
            };
            p.handle_outcome(outcome);
        }
        assert_eq!(sim.eeprom(), clean.eeprom());
    }
}

#[spark_vectors::test]
fn a_bad_image_is_refused_before_any_operation() {
    let img = images();
    let mut bad = img.drv_128.clone();
    bad[9] ^= 0x01; // RAM-end word
    assert!(matches!(
        Programmer::new(&bad, &img.fw_115, config(&img)),
        Err(Error::InvalidDriverImage(_))
    ));
    let mut bad = img.fw_115.clone();
    bad.truncate(bad.len() - 2);
    assert!(matches!(
        Programmer::new(&img.drv_128, &bad, config(&img)),
        Err(Error::InvalidFirmwareImage(_))
    ));
    assert!(matches!(
        Programmer::new(&img.fw_115, &img.drv_128, config(&img)),
        Err(Error::WrongImageKind { .. })
    ));
    assert_eq!(
        Programmer::new(&img.drv_128, &img.fw_111, config(&img)).err(),
        Some(Error::MismatchedImages)
    );
    let cfg = Config {
        write_chunk: 0,
        ..config(&img)
    };
    assert!(matches!(
        Programmer::new(&img.drv_128, &img.fw_115, cfg),
        Err(Error::BadConfig(_))
    ));

    // an unknown (but valid) image is refused only on request
    let mut unknown = img.drv_128.clone();
    unknown[20] ^= 1;
    assert!(Programmer::new(&unknown, &img.fw_115, config(&img)).is_ok());
    let cfg = Config {
        require_known_images: true,
        ..config(&img)
    };
    assert_eq!(
        Programmer::new(&unknown, &img.fw_115, cfg).err(),
        Some(Error::UnknownImage)
    );
}

#[spark_vectors::test]
fn unreadable_radio_params_without_default_stop_before_any_write() {
    let img = images();
    let mut sim = SimNvmem::with_table(&FatTable::programmer_default(), ServicePack::new(1, 10));
    sim.install(FileId::Mac, &USER_MAC.0).unwrap();
    let writes = sim.write_count();
    let cfg = Config {
        default_radio_params: None,
        ..Config::default()
    };
    assert_eq!(
        program(&mut sim, &img.drv_128, &img.fw_115, cfg),
        Err(Error::NoRadioParams)
    );
    assert_eq!(sim.write_count(), writes);
    assert!(
        !sim.log()
            .iter()
            .any(|op| matches!(op, Op::Write { .. } | Op::CreateEntry { .. }))
    );
    // with TI's defaults it goes ahead, and says where the parameters came from
    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(report.radio_source, Source::Default);
    assert_eq!(sim.file(FileId::Rm, 128), Some(&img.rm_default.0[..]));
}

#[spark_vectors::test]
fn a_read_that_fails_twice_is_retried() {
    let img = images();
    let mut sim = core(
        &img,
        &FatTable::programmer_default(),
        &img.drv_124,
        &img.fw_111,
    );
    // the MAC read is the 4th read of a run (FAT in 3 chunks of 32/32/4 bytes before it)
    let first_mac_read = 3;
    sim.inject(Fault::ReadFails {
        read: first_mac_read,
        times: 2,
    });
    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(report.mac_source, Source::Chip);
    assert!(report.retried_operations >= 2);
    assert_user_data_kept(&sim, &img);
    // three failures exhaust the retries: the MAC comes from the fallback
    let mut sim = core(
        &img,
        &FatTable::programmer_default(),
        &img.drv_124,
        &img.fw_111,
    );
    sim.inject(Fault::ReadFails {
        read: first_mac_read,
        times: 3,
    });
    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(report.mac_source, Source::Default);
    assert_eq!(sim.file(FileId::Mac, 6), Some(&FALLBACK_MAC.0[..]));
}

#[spark_vectors::test]
fn a_corrupted_byte_is_caught_by_read_back_and_rewritten() {
    let img = images();
    let mut sim = core(
        &img,
        &FatTable::programmer_default(),
        &img.drv_124,
        &img.fw_111,
    );
    let w = sim.write_count();
    sim.inject(Fault::CorruptWrite {
        write: w + 100,
        index: 7,
        xor: 0x20,
    });
    let report = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(report.verify_rewrites, 1);
    assert_patched(&sim, &img, &img.drv_128, &img.fw_115, ServicePack::SP_1_28);
}

#[spark_vectors::test]
fn a_chip_that_always_corrupts_fails_verification() {
    let img = images();
    let mut sim = core(
        &img,
        &FatTable::programmer_default(),
        &img.drv_124,
        &img.fw_111,
    );
    let w = sim.write_count();
    // the first chunk of the driver patch is corrupted on every attempt
    for n in 0..3 {
        sim.inject(Fault::CorruptWrite {
            write: w + n * 251,
            index: 0,
            xor: 1,
        });
    }
    let err = program(&mut sim, &img.drv_128, &img.fw_115, config(&img)).unwrap_err();
    assert_eq!(
        err,
        Error::VerifyFailed {
            file: FileId::WlanDriverSp,
            offset: 0,
            attempts: 3
        }
    );
}

#[spark_vectors::test]
fn tiny_driver_chunks_and_multicast_mac() {
    let img = images();
    let mut sim = start(&img, &factory_table());
    let mut mac = USER_MAC;
    mac.0[0] |= 1;
    sim.install(FileId::Mac, &mac.0).unwrap();
    let cfg = Config {
        read_chunk: 8,
        write_chunk: 24,
        ..config(&img)
    };
    let report = program(&mut sim, &img.drv_132, &img.fw_115, cfg).unwrap();
    assert!(report.mac_multicast_cleared);
    assert_eq!(sim.file(FileId::Mac, 6), Some(&USER_MAC.0[..]));
    assert!(sim.log().iter().all(|op| match op {
        Op::Read { len, .. } => *len <= 8,
        Op::Write { len, .. } => *len <= 24,
        _ => true,
    }));
    assert_patched(&sim, &img, &img.drv_132, &img.fw_115, ServicePack::SP_1_32);
}

#[spark_vectors::test]
fn over_hci_frames_end_to_end() {
    let img = images();
    let sim = start(&img, &factory_table());
    let mut direct = sim.clone();
    let mut hci = HciNvmem::<_, 192>::new(SimSpi::new(sim));
    let mut p = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
    let report = programmer::run(&mut p, &mut hci, |_| {}).unwrap();
    assert_eq!(report.final_version, ServicePack::SP_1_28);
    let over_hci = hci.into_inner().nvmem;
    program(&mut direct, &img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(over_hci.eeprom(), direct.eeprom());
    assert_user_data_kept(&over_hci, &img);
}

#[spark_vectors::test]
fn wrong_outcomes_count_as_failures() {
    let img = images();
    let mut p = Programmer::new(&img.drv_128, &img.fw_115, config(&img)).unwrap();
    assert_eq!(p.poll_action(), Action::ReadVersion);
    for _ in 0..3 {
        p.handle_outcome(Outcome::Read(&[1, 2]));
    }
    // the version is optional at the start: the run moves on to the table
    assert!(matches!(
        p.poll_action(),
        Action::Read {
            file: FileId::Fat,
            offset: 0,
            len: 32
        }
    ));
    p.handle_outcome(Outcome::Read(&[0; 31])); // wrong length
    assert!(matches!(
        p.poll_action(),
        Action::Read {
            file: FileId::Fat,
            offset: 0,
            len: 32
        }
    ));
    assert_eq!(p.report().retried_operations, 4);
}
