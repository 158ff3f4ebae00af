//! The UDP key files of the cloud's state directory on arbitrary bytes: `udp_devices.json` (device ids and their
//! P-256 keys), the server's `udp_key.pem`, and a key file as `POST /v1/provisioning` and `spark keys send` read it
//! (PEM or DER). No panic; a devices file that parses renders and parses back to the same entries.

#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_cloud::udp::keys::{
    parse_udp_devices, private_key_from_pem, public_key_from_bytes, render_udp_devices,
};

fuzz_target!(|data: &[u8]| {
    let _ = public_key_from_bytes(data);
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = private_key_from_pem(text);
        if let Ok(devices) = parse_udp_devices(text) {
            let map = devices
                .iter()
                .map(|(id, _, entry)| (id.clone(), entry.clone()))
                .collect();
            let again = render_udp_devices(&map);
            let back = parse_udp_devices(core::str::from_utf8(&again).unwrap()).unwrap();
            assert_eq!(back.len(), map.len());
            for ((id, key, _), (id2, key2, _)) in devices.iter().zip(&back) {
                assert_eq!((id, key), (id2, key2));
            }
        }
    }
});
