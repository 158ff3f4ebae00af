//! The server key record of particle-cli's published key files, parsed, re-emitted byte for byte and checked with
//! the `openssl` command. Needs `openssl` on the PATH.
//!
//! Needs the workspace's test vectors (`spark-vectors`), so it is left out of the published package.
#![cfg(all(feature = "rsa", feature = "openssl"))]

mod crypto_common;

use std::fs;
use std::path::Path;

use crypto_common::{openssl, scratch_dir};
use spark_protocol::crypto::keys::{
    PemLabel, RsaPublicKeyRef, SERVER_ADDRESS_OFFSET, ServerAddress, ServerKeyRecord, pem_decode,
};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[spark_vectors::test]
fn server_key_record_matches_particle_cli() {
    // particle-cli's Core server key file: the cloud key's DER, 0xFF padding and the domain
    // record at offset 384.
    let file = spark_vectors::load("dfu", "particle-cli/rsa.pub-padded.der");
    let record = ServerKeyRecord::parse(&file).unwrap();
    assert_eq!(record.key.bits(), 2048);
    assert_eq!(
        record.address,
        Some(ServerAddress::Domain("device.spark.io"))
    );
    assert_eq!(record.port, None);
    let mut out = vec![0u8; file.len()];
    assert_eq!(record.emit(&mut out), Ok(file.len()));
    assert_eq!(
        out, file,
        "emit reproduces the particle-cli file byte for byte"
    );

    // The same key as openssl sees it.
    let dir = scratch_dir("record");
    let der_file = dir.join("key.der");
    fs::write(&der_file, &file[..294]).unwrap();
    let text = openssl(&[
        "rsa",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        path(&der_file),
        "-pubout",
    ]);
    let mut der = [0u8; 400];
    let (label, n) = pem_decode(std::str::from_utf8(&text).unwrap(), &mut der).unwrap();
    assert_eq!(label, PemLabel::PublicKey);
    assert_eq!(
        RsaPublicKeyRef::from_spki_der(&der[..n]).unwrap(),
        record.key
    );
    fs::remove_dir_all(&dir).ok();

    // The Gen 2 DCT form (512 bytes) holds the same key.
    let dct = spark_vectors::load("dfu", "particle-cli/rsa.pub.der");
    let dct = ServerKeyRecord::parse(&dct).unwrap();
    assert_eq!(dct.key, record.key);

    // IPv4 records and ports.
    let with_ip = ServerKeyRecord {
        address: Some(ServerAddress::Ipv4([192, 168, 8, 14])),
        port: Some(5683),
        ..record
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
