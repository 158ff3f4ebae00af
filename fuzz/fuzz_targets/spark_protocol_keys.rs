//! The key parsers: DER (PKCS#1, SPKI, PKCS#8), PEM, the server key record and the device key
//! storage form. Any input is a typed error or a key that writes back to an encoding that parses
//! to the same key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spark_protocol::crypto::keys::{ServerKeyRecord, device_private_key_from_storage, pem_decode};
use spark_protocol::crypto::{RsaPrivateKeyRef, RsaPublicKeyRef};

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = RsaPublicKeyRef::from_der(data) {
        let mut buf = vec![0u8; key.spki_der_len()];
        let n = key.write_spki_der(&mut buf).expect("sized");
        assert_eq!(RsaPublicKeyRef::from_spki_der(&buf[..n]), Ok(key));
    }
    for parsed in [
        RsaPrivateKeyRef::from_der(data),
        device_private_key_from_storage(data),
    ] {
        if let Ok(key) = parsed {
            let mut buf = vec![0u8; key.pkcs8_der_len()];
            let n = key.write_pkcs8_der(&mut buf).expect("sized");
            assert_eq!(RsaPrivateKeyRef::from_pkcs8_der(&buf[..n]), Ok(key));
        }
    }
    if let Ok(record) = ServerKeyRecord::parse(data) {
        let mut buf = vec![0u8; record.buffer_len().max(512)];
        if record.emit(&mut buf).is_ok() {
            assert_eq!(ServerKeyRecord::parse(&buf).map(|r| r.key), Ok(record.key));
        }
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let mut der = [0u8; 4096];
        if let Ok((_, n)) = pem_decode(text, &mut der) {
            let _ = RsaPrivateKeyRef::from_der(&der[..n]);
        }
    }
});
