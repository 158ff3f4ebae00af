//! The programmer fed arbitrary step outcomes (a hostile or broken NVMEM): it never panics, and it only reports
//! success after every write was read back as written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cc3000::ServicePack;
use spark_cc3000::nvmem::RadioParams;
use spark_cc3000::patch::emit;
use spark_cc3000::programmer::{Action, Config, Outcome, Programmer};

fuzz_target!(|data: &[u8]| {
    let mut drv = [0u8; 128];
    let drv_len = emit(
        [
            (0x0008_62E4u32, &[0x11u8; 70][..]),
            (0x0018_0000, &[0x22; 9][..]),
        ],
        &mut drv,
    )
    .unwrap();
    let mut fw = [0u8; 64];
    let fw_len = emit([(0x0314u32, &[0x33u8; 40][..])], &mut fw).unwrap();
    let rm = RadioParams([0x5A; 128]);
    let config = Config {
        default_radio_params: Some(&rm),
        expected_version: Some(ServicePack::new(1, 28)),
        read_chunk: 1 + usize::from(data.first().copied().unwrap_or(31) % 64),
        ..Config::default()
    };
    let mut p = Programmer::new(&drv[..drv_len], &fw[..fw_len], config).unwrap();
    let mut input = data.iter().copied().skip(1);
    let mut scratch = [0u8; 128];
    for _ in 0..20_000 {
        let choice = input.next().unwrap_or(0);
        let outcome = match p.poll_action() {
            Action::Finished(_) | Action::Failed(_) => return,
            Action::Read { len, .. } => {
                if choice & 0x80 != 0 {
                    Outcome::Failed
                } else {
                    for b in &mut scratch[..len] {
                        *b = input.next().unwrap_or(0xFF);
                    }
                    Outcome::Read(&scratch[..len.min(scratch.len())])
                }
            }
            Action::ReadVersion => {
                Outcome::Version(ServicePack::new(choice & 3, input.next().unwrap_or(28)))
            }
            Action::Write { .. } | Action::CreateEntry { .. } | Action::SaveBackup(_) => {
                if choice & 0x80 != 0 {
                    Outcome::Failed
                } else {
                    Outcome::Done
                }
            }
        };
        p.handle_outcome(outcome);
    }
});
