//! HCI packet parsers (chip packets, host commands, the backup format): never panic; commands round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cc3000::hci::{Command, Packet, ReadResponse, SpiHeader, remaining_read_len};
use spark_cc3000::programmer::Backup;

fuzz_target!(|data: &[u8]| {
    let _ = Packet::parse(data);
    let _ = ReadResponse::parse(data);
    let _ = SpiHeader::parse_read(data);
    let _ = remaining_read_len(data);
    let _ = Backup::parse(data);
    if let Ok(command) = Command::parse(data) {
        let mut buf = vec![0u8; command.hci_len()];
        command.emit_hci(&mut buf).expect("sized by hci_len");
        assert_eq!(Command::parse(&buf), Ok(command));
    }
});
