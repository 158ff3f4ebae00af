//! The virtual Core's model: Tinker's semantics, the OTA download into the external flash, and the CC3000 deep
//! update, driven by the synthetic deep update and, where the vectors hold it, by Spark's `deep_update_2014_06.bin`.

mod common;

use common::TempDir;

use spark_cc3000::ServicePack;
use spark_cc3000::sim::Fault;
use spark_protocol::crypto::keys::RsaPrivateKey;
use spark_vcore::flash::{OTA_ADDRESS, OTA_LEN};
use spark_vcore::image::synthetic_deep_update;
use spark_vcore::tinker::{Bank, Pin, PinMode, Tinker};
use spark_vcore::{CoreError, Firmware, VariableValue, VirtualCore};

/// A Core with a device key made once per test binary (generating RSA keys is slow in debug builds).
fn core(dir: &TempDir, sp: ServicePack) -> VirtualCore {
    let key: RsaPrivateKey = common::device_key().clone();
    let id = [
        0x55, 0xff, 0x70, 0x06, 0x4b, 0x49, 0x33, 0x52, 0x41, 0x07, 0x10, 0x87,
    ];
    VirtualCore::create_with_identity(&dir.0, sp, id, key).unwrap()
}

/// The deep update this project builds: a Core application carrying synthetic SP 1.28 images.
fn deep_update() -> Vec<u8> {
    synthetic_deep_update(ServicePack::SP_1_28)
}

/// Spark's own deep update, from the vectors.
fn sparks_deep_update() -> Vec<u8> {
    spark_vectors::load("dfu", "spark-cli/deep_update_2014_06.bin")
}

/// A plain application: the synthetic image's vector table and code, without the service pack.
fn application() -> Vec<u8> {
    deep_update()[..4096].to_vec()
}

/// Sends `image` as the cloud would: UpdateBegin with its size, 512-byte chunks, UpdateDone.
fn ota(core: &mut VirtualCore, image: &[u8]) -> Result<(), CoreError> {
    core.ota_begin(Some(image.len() as u32))?;
    for (i, chunk) in image.chunks(512).enumerate() {
        core.ota_write((i * 512) as u32, chunk)?;
    }
    core.ota_finish(image.len() as u32).map(|_| ())
}

#[test]
fn tinker_digitalwrite_formats_and_codes() {
    let mut t = Tinker::new();
    let d7 = Pin::new(Bank::D, 7).unwrap();
    let a0 = Pin::new(Bank::A, 0).unwrap();
    assert_eq!(t.call("digitalwrite", "D7,HIGH"), Some(1));
    assert_eq!(t.pin(d7).mode, PinMode::Output);
    assert!(t.pin(d7).level);
    assert_eq!(t.call("digitalwrite", "D7,LOW"), Some(1));
    assert!(!t.pin(d7).level);
    assert_eq!(t.call("digitalwrite", "A0,HIGH"), Some(1));
    assert!(t.pin(a0).level);
    // Tinker compares four (three) characters at offset 3 and ignores the rest.
    assert_eq!(t.call("digitalwrite", "D7,HIGHER"), Some(1));
    assert!(t.pin(d7).level);
    assert_eq!(t.call("digitalwrite", "D7,LOWX"), Some(1));
    assert!(!t.pin(d7).level);
    // Bad pin number first (-1), then bad value (-2), then bad bank (-3).
    assert_eq!(t.call("digitalwrite", "D8,HIGH"), Some(-1));
    assert_eq!(t.call("digitalwrite", "D/,HIGH"), Some(-1));
    assert_eq!(t.call("digitalwrite", "D"), Some(-1));
    assert_eq!(t.call("digitalwrite", ""), Some(-1));
    assert_eq!(t.call("digitalwrite", "X9,bogus"), Some(-1));
    assert_eq!(t.call("digitalwrite", "D7,high"), Some(-2));
    assert_eq!(t.call("digitalwrite", "D7,HIG"), Some(-2));
    assert_eq!(t.call("digitalwrite", "D7"), Some(-2));
    assert_eq!(t.call("digitalwrite", "B3,HIGH"), Some(-3));
    assert_eq!(t.call("digitalwrite", "d3,HIGH"), Some(-3));
    // Failed calls leave the pin alone.
    assert!(!t.pin(d7).level);
}

#[test]
fn tinker_digitalread_reads_the_outside_through_the_pulldown() {
    let mut t = Tinker::new();
    let d3 = Pin::new(Bank::D, 3).unwrap();
    let a6 = Pin::new(Bank::A, 6).unwrap();
    assert_eq!(t.call("digitalread", "D3"), Some(0));
    assert_eq!(t.pin(d3).mode, PinMode::InputPulldown);
    t.drive(d3, true);
    assert_eq!(t.call("digitalread", "D3"), Some(1));
    t.drive(a6, true);
    assert_eq!(t.call("digitalread", "A6"), Some(1));
    // Writing HIGH then reading: the read reconfigures the pin as an input, so it sees the pull-down.
    assert_eq!(t.call("digitalwrite", "D4,HIGH"), Some(1));
    assert_eq!(t.call("digitalread", "D4"), Some(0));
    assert_eq!(t.call("digitalread", "D9"), Some(-1));
    assert_eq!(t.call("digitalread", "Q3"), Some(-2));
}

#[test]
fn tinker_analog_functions() {
    let mut t = Tinker::new();
    let a5 = Pin::new(Bank::A, 5).unwrap();
    let d0 = Pin::new(Bank::D, 0).unwrap();
    let d5 = Pin::new(Bank::D, 5).unwrap();
    t.set_analog_input(a5, 3000);
    assert_eq!(t.call("analogread", "A5"), Some(3000));
    assert_eq!(t.pin(a5).mode, PinMode::AnalogInput);
    t.set_analog_input(a5, 9999);
    assert_eq!(t.call("analogread", "A5"), Some(4095));
    assert_eq!(t.call("analogread", "D5"), Some(-3));
    assert_eq!(t.call("analogread", "A8"), Some(-1));
    assert_eq!(t.call("analogread", "Z1"), Some(-2));

    assert_eq!(t.call("analogwrite", "D0,200"), Some(1));
    assert_eq!((t.pin(d0).mode, t.pin(d0).duty), (PinMode::Pwm, 200));
    // atol, then truncation to the uint8_t parameter.
    assert_eq!(t.call("analogwrite", "D0,300"), Some(1));
    assert_eq!(t.pin(d0).duty, 44);
    assert_eq!(t.call("analogwrite", "D0,abc"), Some(1));
    assert_eq!(t.pin(d0).duty, 0);
    assert_eq!(t.call("analogwrite", "D0, 17xyz"), Some(1));
    assert_eq!(t.pin(d0).duty, 17);
    // No timer on D5: Tinker still answers 1, the pin is a plain output.
    assert_eq!(t.call("analogwrite", "D5,128"), Some(1));
    assert_eq!(t.pin(d5).mode, PinMode::Output);
    assert_eq!(t.call("analogwrite", "A9,1"), Some(-1));
    assert_eq!(t.call("analogwrite", "E1,1"), Some(-2));
    assert_eq!(t.call("digitalWrite", "D7,HIGH"), None);
    assert_eq!(t.call("nosuch", ""), None);
}

#[test]
fn the_core_directory_persists_identity_and_state() {
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    assert_eq!(c.boot().unwrap().installed, None);
    assert_eq!(c.call("digitalwrite", "D7,HIGH"), Some(1));
    c.set_temperature(30.25);
    let (id, der) = (c.id(), c.key().to_pkcs1_der());
    let mac = c.cc3000().mac().unwrap();
    assert_eq!(&mac[..3], &[0x08, 0x00, 0x28]);
    drop(c);
    let mut c = VirtualCore::open_or_create(&dir.0, ServicePack::SP_1_28).unwrap();
    assert_eq!(c.id(), id);
    assert_eq!(c.id_hex(), "55ff70064b49335241071087");
    assert_eq!(c.key().to_pkcs1_der().as_slice(), der.as_slice());
    // An existing Core keeps its chip: --sp only applies to new ones.
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    assert_eq!(c.cc3000().mac(), Some(mac));
    assert_eq!(c.boots(), 1);
    c.boot().unwrap();
    assert_eq!(c.variable("boots"), Some(VariableValue::Int(2)));
    assert_eq!(
        c.variable("cc3000"),
        Some(VariableValue::String("1.24".into()))
    );
    assert_eq!(
        c.variable("firmware"),
        Some(VariableValue::String("tinker".into()))
    );
    assert_eq!(c.variable("nosuch"), None);
    assert_eq!(
        c.patch_version_event(),
        ("spark/cc3000-patch-version", "1.24".to_string())
    );
    // Tinker state is RAM: a reset clears it.
    assert_eq!(
        c.tinker().pin(Pin::new(Bank::D, 7).unwrap()).mode,
        PinMode::Unset
    );
}

#[test]
fn the_deep_update_moves_the_cc3000_from_1_24_to_1_28_and_keeps_the_wifi_profile() {
    the_deep_update_patches(&deep_update());
}

#[spark_vectors::test]
fn sparks_deep_update_moves_the_cc3000_from_1_24_to_1_28_the_same_way() {
    the_deep_update_patches(&sparks_deep_update());
}

fn the_deep_update_patches(image: &[u8]) {
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    c.boot().unwrap();
    let profile = c.cc3000().profile().unwrap().to_vec();
    let mac = c.cc3000().mac();
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    ota(&mut c, image).unwrap();
    // Committed, but nothing runs it before the reset.
    assert!(c.has_staged_image());
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    assert!(!c.ota_succeeded());
    let report = c.boot().unwrap();
    assert_eq!(report.patch_error, None);
    assert_eq!(
        report.patched,
        Some((ServicePack::SP_1_24, ServicePack::SP_1_28))
    );
    assert!(matches!(
        report.installed,
        Some(Firmware::Application { len, service_pack: Some(ref sp), .. })
            if sp == "1.28" && len as usize == image.len()
    ));
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
    assert_eq!(c.patch_version_event().1, "1.28");
    assert_eq!(c.firmware().name(), "deep-update");
    assert!(c.ota_succeeded(), "the next Hello reports the OTA success");
    assert_eq!(c.firmware_image().unwrap().as_deref(), Some(image));
    // The deep update saved and restored the Wi-Fi profile and the MAC.
    assert_eq!(c.cc3000().profile().unwrap(), &profile[..]);
    assert_eq!(c.cc3000().mac(), mac);
    // The deep update is a Tinker build: the functions still answer.
    assert_eq!(c.call("digitalwrite", "D7,HIGH"), Some(1));

    c.clear_ota_succeeded().unwrap();
    // A second reset with the chip already at 1.28 patches nothing.
    let writes = c.cc3000().nvmem().write_count();
    let again = c.boot().unwrap();
    assert_eq!(again.patched, None);
    assert_eq!(c.cc3000().nvmem().write_count(), writes);
    assert!(!c.ota_succeeded());

    // It survives a restart of the process.
    drop(c);
    let mut c = VirtualCore::open(&dir.0).unwrap();
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
    assert_eq!(c.firmware().name(), "deep-update");
    // Then the cloud sends Tinker, as the rollout did: the chip keeps 1.28.
    ota(&mut c, &application()).unwrap();
    let r = c.boot().unwrap();
    assert_eq!(r.patched, None);
    assert_eq!(c.firmware().name(), "application");
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
}

#[test]
fn a_core_already_on_1_28_is_not_patched_again() {
    let dir = TempDir::new();
    let (mut c, image) = (core(&dir, ServicePack::SP_1_28), deep_update());
    ota(&mut c, &image).unwrap();
    let r = c.boot().unwrap();
    assert!(r.installed.is_some());
    assert_eq!(r.patched, None);
    assert_eq!(c.cc3000().nvmem().write_count(), 0);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
}

#[test]
fn tinker_truncated_and_corrupt_images_leave_the_service_pack_alone() {
    let (image, tinker) = (deep_update(), application());
    // Tinker: installed, no patch.
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    ota(&mut c, &tinker).unwrap();
    let r = c.boot().unwrap();
    assert_eq!(r.patched, None);
    assert_eq!(c.firmware().name(), "application");
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    assert_eq!(c.cc3000().nvmem().write_count(), 0);

    // The deep update cut before its driver patch: still a valid application, no service pack.
    let driver_at = spark_cc3000::find_embedded(&image)
        .find(|e| e.image.kind() == spark_cc3000::ImageKind::Driver)
        .unwrap()
        .offset;
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    ota(&mut c, &image[..driver_at]).unwrap();
    let r = c.boot().unwrap();
    assert_eq!(r.patched, None);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);

    // A byte of the embedded driver patch's first record flipped: neither a published nor a synthetic image any
    // more, so not burnt.
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    let mut bad = image.clone();
    bad[driver_at
        + spark_cc3000::patch::HEADER_LEN
        + spark_cc3000::patch::RECORD_HEADER_LEN
        + 1] ^= 0x01;
    ota(&mut c, &bad).unwrap();
    let r = c.boot().unwrap();
    assert_eq!(r.patched, None);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    assert_eq!(c.cc3000().nvmem().write_count(), 0);

    // Not firmware at all: refused at the end of the download, nothing committed.
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    let junk = vec![0x42u8; 4096];
    assert!(matches!(ota(&mut c, &junk), Err(CoreError::Ota(_))));
    assert!(!c.has_staged_image());
    let r = c.boot().unwrap();
    assert_eq!(r.installed, None);
    assert_eq!(c.firmware(), &Firmware::FactoryTinker);
}

#[test]
fn an_interrupted_ota_leaves_firmware_and_service_pack_unchanged() {
    let image = deep_update();
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    // Every chunk but the last, then finish: incomplete.
    c.ota_begin(Some(image.len() as u32)).unwrap();
    let chunks: Vec<_> = image.chunks(512).collect();
    for (i, chunk) in chunks[..chunks.len() - 1].iter().enumerate() {
        c.ota_write((i * 512) as u32, chunk).unwrap();
    }
    assert_eq!(
        c.ota_progress(),
        Some(((chunks.len() as u32 - 1) * 512, Some(image.len() as u32)))
    );
    let err = c.ota_finish(image.len() as u32).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    assert!(!c.has_staged_image());

    // Half a download, then the link drops and the Core resets.
    c.ota_begin(Some(image.len() as u32)).unwrap();
    for (i, chunk) in chunks[..chunks.len() / 2].iter().enumerate() {
        c.ota_write((i * 512) as u32, chunk).unwrap();
    }
    let r = c.boot().unwrap();
    assert_eq!(r.installed, None);
    assert_eq!(c.firmware(), &Firmware::FactoryTinker);
    assert_eq!(c.firmware_image().unwrap(), None);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
    assert!(!c.ota_succeeded());
    assert!(matches!(c.ota_write(0, &[0]), Err(CoreError::NoDownload)));
    assert!(matches!(c.ota_finish(1), Err(CoreError::NoDownload)));

    // Aborted after the last chunk but before UpdateDone: same.
    c.ota_begin(Some(image.len() as u32)).unwrap();
    for (i, chunk) in chunks.iter().enumerate() {
        c.ota_write((i * 512) as u32, chunk).unwrap();
    }
    c.ota_abort();
    assert_eq!(c.boot().unwrap().installed, None);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
}

#[test]
fn chunks_out_of_order_and_repeated_still_give_the_image() {
    let image = deep_update();
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    c.ota_begin(Some(image.len() as u32)).unwrap();
    let n = image.len().div_ceil(512);
    for i in (0..n).rev().chain(0..3) {
        let end = ((i + 1) * 512).min(image.len());
        c.ota_write((i * 512) as u32, &image[i * 512..end]).unwrap();
    }
    c.ota_finish(image.len() as u32).unwrap();
    c.boot().unwrap();
    assert_eq!(c.firmware_image().unwrap().as_deref(), Some(&image[..]));
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
}

#[test]
fn ota_bad_sizes_and_bounds_are_typed_errors() {
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    assert!(matches!(c.ota_begin(Some(0)), Err(CoreError::Ota(_))));
    assert!(matches!(
        c.ota_begin(Some(OTA_LEN + 1)),
        Err(CoreError::Ota(_))
    ));
    c.ota_begin(Some(1000)).unwrap();
    assert!(matches!(c.ota_write(999, &[0, 0]), Err(CoreError::Ota(_))));
    assert!(matches!(
        c.ota_write(u32::MAX, &[0]),
        Err(CoreError::Ota(_))
    ));
    c.ota_write(0, &[0; 1000]).unwrap();
    // 1000 zero bytes: complete, but the stack pointer is not in SRAM.
    let err = c.ota_finish(1000).unwrap_err();
    assert!(err.to_string().contains("not Core firmware"), "{err}");
    assert!(!c.has_staged_image());
    // A size other than the announced one.
    c.ota_begin(Some(8)).unwrap();
    c.ota_write(0, &[1; 8]).unwrap();
    assert!(matches!(c.ota_finish(7), Err(CoreError::Ota(_))));
}

#[test]
fn the_cores_unannounced_size_form_takes_the_size_at_the_end() {
    let image = deep_update();
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    c.ota_begin(None).unwrap();
    for (i, chunk) in image.chunks(256).enumerate() {
        c.ota_write((i * 256) as u32, chunk).unwrap();
    }
    // A size past what arrived is incomplete; a chunk past the area is refused.
    assert!(matches!(c.ota_write(OTA_LEN, &[0]), Err(CoreError::Ota(_))));
    let err = c.ota_finish(image.len() as u32 + 1).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
    c.ota_begin(None).unwrap();
    for (i, chunk) in image.chunks(256).enumerate() {
        c.ota_write((i * 256) as u32, chunk).unwrap();
    }
    c.ota_finish(image.len() as u32).unwrap();
    assert_eq!(
        c.boot().unwrap().patched.map(|p| p.1),
        Some(ServicePack::SP_1_28)
    );
}

#[test]
fn a_staged_image_corrupted_in_flash_is_not_installed() {
    let image = deep_update();
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    ota(&mut c, &image).unwrap();
    // Bits cleared in the download area after the commit (NOR programming can only clear bits).
    c.flash_mut()
        .program(OTA_ADDRESS + 0x2000, &[0x00; 16])
        .unwrap();
    let r = c.boot().unwrap();
    assert!(r.staged_corrupt);
    assert_eq!(r.installed, None);
    assert_eq!(c.firmware(), &Firmware::FactoryTinker);
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_24);
}

#[test]
fn power_lost_while_patching_is_retried_at_the_next_reset() {
    let image = deep_update();
    let dir = TempDir::new();
    let mut c = core(&dir, ServicePack::SP_1_24);
    ota(&mut c, &image).unwrap();
    // Power fails in the middle of the 40th write (inside the driver patch).
    let writes = c.cc3000().nvmem().write_count();
    c.cc3000_mut()
        .nvmem_mut()
        .inject(Fault::PowerLossDuringWrite {
            write: writes + 40,
            keep: 5,
        });
    let r = c.boot().unwrap();
    assert!(r.patch_error.is_some());
    assert_eq!(r.patched, None);
    assert_ne!(c.cc3000().version(), ServicePack::SP_1_28);
    let profile_before = c.cc3000().profile().map(<[u8]>::to_vec);
    c.cc3000_mut().nvmem_mut().power_cycle();
    let r = c.boot().unwrap();
    assert_eq!(r.patch_error, None);
    assert_eq!(r.patched.map(|p| p.1), Some(ServicePack::SP_1_28));
    assert_eq!(c.cc3000().version(), ServicePack::SP_1_28);
    // The profile was restored from what the interrupted run left (or kept).
    assert_eq!(c.cc3000().profile().map(<[u8]>::to_vec), profile_before);
}
