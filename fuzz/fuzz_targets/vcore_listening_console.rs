//! The virtual Core's listening-mode console: any bytes from the host never panic, the answers stay bounded, and
//! saved Wi-Fi credentials respect the Core's field sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_vcore::serial::ListeningConsole;

fuzz_target!(|data: &[u8]| {
    let mut console =
        ListeningConsole::new("53ff6c065075535119511687", [8, 0, 0x28, 1, 2, 3], "0.1.0");
    for chunk in data.chunks(7) {
        console.handle_input(chunk);
        // Each input byte causes at most one line of echo or one canned answer (the longest is the farewell).
        assert!(console.poll_output().len() <= 400 * chunk.len());
        while let Some(c) = console.poll_credentials() {
            assert!(c.ssid.len() <= 32 * 4 && c.password.len() <= 64 * 4);
        }
    }
});
