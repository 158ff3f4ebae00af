//! Cross-checks against the `openssl` command: keys it writes are read by our parsers, keys we
//! write are read by it, signatures and ciphertexts go both ways. Needs `openssl` on the PATH.
#![cfg(all(feature = "rsa", feature = "openssl"))]

mod crypto_common;

use std::fs;
use std::path::Path;

use crypto_common::{openssl, openssl_key, rng, scratch_dir};
use spark_protocol::crypto::handshake::{
    DEVICE_ID_LEN, Nonce, decrypt_device_credentials, encrypt_device_credentials, session_key_hmac,
};
use spark_protocol::crypto::keys::{SERVER_ADDRESS_OFFSET, ServerAddress, ServerKeyRecord};
use spark_protocol::crypto::openssl::OpensslPrivateKey;
use spark_protocol::crypto::rustcrypto::{RustCryptoPrivateKey, RustCryptoPublicKey};
use spark_protocol::crypto::{RsaPrivate, RsaPrivateKey, RsaPublic, RsaPublicKey, SessionKey};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn keys_openssl_writes_are_read_in_every_form() {
    let dir = scratch_dir("forms");
    let pkcs8 = dir.join("key.pem");
    openssl(&["genrsa", "-out", path(&pkcs8), "1024"]);
    let key = RsaPrivateKey::from_pem(&fs::read_to_string(&pkcs8).unwrap()).unwrap();
    assert_eq!(key.bits(), 1024);

    // PKCS#1 PEM and DER, PKCS#8 DER.
    let trad = openssl(&["rsa", "-in", path(&pkcs8), "-traditional"]);
    assert!(String::from_utf8_lossy(&trad).contains("BEGIN RSA PRIVATE KEY"));
    assert_eq!(
        RsaPrivateKey::from_pem(std::str::from_utf8(&trad).unwrap()).unwrap(),
        key
    );
    let der = openssl(&[
        "rsa",
        "-in",
        path(&pkcs8),
        "-traditional",
        "-outform",
        "DER",
    ]);
    assert_eq!(RsaPrivateKey::from_der(&der).unwrap(), key);
    assert_eq!(
        &key.to_pkcs1_der()[..],
        &der[..],
        "our PKCS#1 DER is openssl's byte for byte"
    );
    let der8 = openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        path(&pkcs8),
        "-outform",
        "DER",
    ]);
    assert_eq!(RsaPrivateKey::from_der(&der8).unwrap(), key);
    assert_eq!(&key.to_pkcs8_der()[..], &der8[..]);

    // Public keys: SPKI and PKCS#1, PEM and DER.
    let spki = openssl(&["rsa", "-in", path(&pkcs8), "-pubout"]);
    let spki = std::str::from_utf8(&spki).unwrap();
    assert_eq!(RsaPublicKey::from_pem(spki).unwrap(), key.public_key());
    assert_eq!(
        key.public_key().to_spki_pem().unwrap(),
        spki,
        "our SPKI PEM is openssl's text"
    );
    let rsapub = openssl(&["rsa", "-in", path(&pkcs8), "-RSAPublicKey_out"]);
    let rsapub = std::str::from_utf8(&rsapub).unwrap();
    assert_eq!(RsaPublicKey::from_pem(rsapub).unwrap(), key.public_key());
    assert_eq!(key.public_key().to_pkcs1_pem().unwrap(), rsapub);
    let spki_der = openssl(&["rsa", "-in", path(&pkcs8), "-pubout", "-outform", "DER"]);
    assert_eq!(
        spki_der.len(),
        162,
        "an RSA-1024 SPKI is the 162 bytes later devices append"
    );
    assert_eq!(key.public_key().to_spki_der(), spki_der);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn keys_we_write_are_read_by_openssl() {
    let key = RsaPrivateKey::generate(&mut rng(21), 1024).unwrap();
    let dir = scratch_dir("ours");
    let files = [
        (
            "pkcs1.pem",
            key.to_pkcs1_pem().unwrap().as_bytes().to_vec(),
            "PEM",
        ),
        (
            "pkcs8.pem",
            key.to_pkcs8_pem().unwrap().as_bytes().to_vec(),
            "PEM",
        ),
        ("pkcs1.der", key.to_pkcs1_der().to_vec(), "DER"),
    ];
    let expected_pub = key.public_key().to_spki_pem().unwrap();
    for (name, bytes, form) in files {
        let file = dir.join(name);
        fs::write(&file, bytes).unwrap();
        let check = openssl(&[
            "rsa",
            "-check",
            "-noout",
            "-inform",
            form,
            "-in",
            path(&file),
        ]);
        assert!(
            String::from_utf8_lossy(&check).contains("RSA key ok"),
            "{name}"
        );
        let public = openssl(&["rsa", "-inform", form, "-in", path(&file), "-pubout"]);
        assert_eq!(String::from_utf8(public).unwrap(), expected_pub, "{name}");
    }
    // The 612-byte storage form: the DER at its start (what openssl reads) then zeros.
    let storage = key.to_storage().unwrap();
    assert_eq!(storage.len(), 612);
    let der_len = key.to_pkcs1_der().len();
    assert!(storage[der_len..].iter().all(|&b| b == 0));
    let file = dir.join("storage.der");
    fs::write(&file, &storage[..der_len]).unwrap();
    let check = openssl(&[
        "rsa",
        "-check",
        "-noout",
        "-inform",
        "DER",
        "-in",
        path(&file),
    ]);
    assert!(String::from_utf8_lossy(&check).contains("RSA key ok"));
    assert_eq!(RsaPrivateKey::from_storage(&storage).unwrap(), key);
    fs::remove_dir_all(&dir).ok();
}

#[test]
fn our_signature_verifies_with_openssl_pkeyutl_and_back() {
    let dir = scratch_dir("sign");
    let key_file = dir.join("server.pem");
    openssl(&["genrsa", "-out", path(&key_file), "2048"]);
    let key = RsaPrivateKey::from_pem(&fs::read_to_string(&key_file).unwrap()).unwrap();
    let pub_file = dir.join("server.pub.pem");
    fs::write(&pub_file, key.public_key().to_spki_pem().unwrap()).unwrap();

    let session = SessionKey::generate(&mut rng(3));
    let hmac = session_key_hmac(&session, &[0x5a; 128]);
    let hmac_file = dir.join("hmac.bin");
    fs::write(&hmac_file, hmac).unwrap();

    let ours = RustCryptoPrivateKey::new(&key.as_ref_key()).unwrap();
    let mut sig = [0u8; 256];
    ours.sign_pkcs1v15_unprefixed(&mut rng(4), &hmac, &mut sig)
        .unwrap();
    let sig_file = dir.join("sig.bin");
    fs::write(&sig_file, sig).unwrap();
    let verified = openssl(&[
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        path(&pub_file),
        "-in",
        path(&hmac_file),
        "-sigfile",
        path(&sig_file),
    ]);
    assert!(String::from_utf8_lossy(&verified).contains("Signature Verified Successfully"));

    // openssl's own raw signature is byte-identical (type 1 padding is deterministic).
    let theirs = openssl(&[
        "pkeyutl",
        "-sign",
        "-inkey",
        path(&key_file),
        "-in",
        path(&hmac_file),
    ]);
    assert_eq!(theirs, sig);
    let ossl = OpensslPrivateKey::new(&key.as_ref_key()).unwrap();
    let mut sig2 = [0u8; 256];
    ossl.sign_pkcs1v15_unprefixed(&mut rng(4), &hmac, &mut sig2)
        .unwrap();
    assert_eq!(sig2, sig);

    // Credentials: ours decrypt with `openssl pkeyutl -decrypt`; openssl's decrypt with ours.
    let public = RustCryptoPublicKey::new(&key.public_key().as_ref_key()).unwrap();
    let nonce = Nonce::generate(&mut rng(5));
    let id = [0x11u8; DEVICE_ID_LEN];
    let mut creds = [0u8; 256];
    encrypt_device_credentials(&public, &mut rng(6), &nonce, &id, None, &mut creds).unwrap();
    let creds_file = dir.join("creds.bin");
    fs::write(&creds_file, creds).unwrap();
    let plain = openssl(&[
        "pkeyutl",
        "-decrypt",
        "-inkey",
        path(&key_file),
        "-in",
        path(&creds_file),
    ]);
    assert_eq!(plain, [&nonce.0[..], &id].concat());

    let plain_file = dir.join("plain.bin");
    fs::write(&plain_file, [&nonce.0[..], &id].concat()).unwrap();
    let theirs = openssl(&[
        "pkeyutl",
        "-encrypt",
        "-pubin",
        "-inkey",
        path(&pub_file),
        "-in",
        path(&plain_file),
    ]);
    let got = decrypt_device_credentials(&ours, &mut rng(7), &nonce, &theirs).unwrap();
    assert_eq!(got.device_id, id);
    let got = decrypt_device_credentials(&ossl, &mut rng(7), &nonce, &theirs).unwrap();
    assert_eq!(got.device_id, id);
    assert_eq!(public.modulus_len(), 256);
    fs::remove_dir_all(&dir).ok();
}

/// The IPv4 address record and the port of a server key record, on a 2048-bit key made by `openssl genrsa`
/// (the same checks on particle-cli's own key are in `vectors_openssl_cli.rs`).
#[test]
fn server_key_record_with_an_ipv4_address_and_port() {
    let public = openssl_key(2048).public_key();
    let with_ip = ServerKeyRecord {
        key: public.as_ref_key(),
        address: Some(ServerAddress::Ipv4([192, 168, 8, 14])),
        port: Some(5683),
    };
    let mut out = [0u8; 1024];
    with_ip.emit(&mut out).unwrap();
    assert_eq!(
        &out[SERVER_ADDRESS_OFFSET..SERVER_ADDRESS_OFFSET + 6],
        &[0, 4, 192, 168, 8, 14]
    );
    assert_eq!(&out[450..452], &5683u16.to_be_bytes());
    assert!(out[294..SERVER_ADDRESS_OFFSET].iter().all(|&b| b == 0xff));
    assert_eq!(ServerKeyRecord::parse(&out), Ok(with_ip));
}
