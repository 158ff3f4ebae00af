//! Known answers for the DTLS profile's primitives: AES-CCM with an 8-byte tag (RFC 3610),
//! the TLS 1.2 PRF on SHA-256 (the published P_SHA256 vector, and `openssl kdf` live), and
//! record protection (a vector derived with OpenSSL's AES-CCM, and live against the `openssl`
//! crate).
#![cfg(all(feature = "dtls", feature = "openssl"))]

use std::process::Command;

use aes::Aes128;
use ccm::Ccm;
use ccm::aead::{AeadInOut, KeyInit};
use ccm::consts::{U8, U13};
use rand::{RngExt, SeedableRng};
use spark_protocol::dtls::{MasterSecret, RecordCipher, prf};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 3610 section 8, Packet Vector #1: M = 8, L = 2, 8 bytes of header authenticated only.
#[test]
fn aes_ccm8_matches_rfc3610_packet_vector_1() {
    let key = hex("C0 C1 C2 C3 C4 C5 C6 C7 C8 C9 CA CB CC CD CE CF");
    let nonce = hex("00 00 00 03 02 01 00 A0 A1 A2 A3 A4 A5");
    let packet = hex(
        "00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F 10 11 12 13 14 15 16 17 18 19 1A 1B 1C 1D 1E",
    );
    let expected = hex(
        "00 01 02 03 04 05 06 07 58 8C 97 9A 61 C6 63 D2 F0 66 D0 C2 C0 F9 89 80 6D 5F 6B 61 DA C3 84 17 E8 D1 2C FD F9 26 E0",
    );
    let ccm = Ccm::<Aes128, U8, U13>::new(key.as_slice().try_into().unwrap());
    let (aad, body) = packet.split_at(8);
    let mut body = body.to_vec();
    let tag = ccm
        .encrypt_inout_detached(
            nonce.as_slice().try_into().unwrap(),
            aad,
            body.as_mut_slice().into(),
        )
        .unwrap();
    let mut out = aad.to_vec();
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    assert_eq!(out, expected);
}

/// The P_SHA256 vector circulated with the TLS 1.2 drafts (secret, seed and "test label").
#[test]
fn tls12_prf_matches_the_published_p_sha256_vector() {
    let secret = hex("9b be 43 6b a9 40 f0 17 b1 76 52 84 9a 71 db 35");
    let seed = hex("a0 ba 9f 93 6c da 31 18 27 a6 f7 96 ff d5 19 8c");
    let expected = hex(
        "e3 f2 29 ba 72 7b e1 7b 8d 12 26 20 55 7c d4 53 c2 aa b2 1d 07 c3 d4 95 32 9b 52 d4 e6 1e db 5a
         6b 30 17 91 e9 0d 35 c9 c9 a4 6b 4e 14 ba f9 af 0f a0 22 f7 07 7d ef 17 ab fd 37 97 c0 56 4b ab
         4f bc 91 66 6e 9d ef 9b 97 fc e3 4f 79 67 89 ba a4 80 82 d1 22 ee 42 c5 a7 2e 5a 51 10 ff f7 01
         87 34 7b 66",
    );
    let mut out = vec![0u8; expected.len()];
    prf(&secret, b"test label", &[&seed], &mut out);
    assert_eq!(out, expected);
}

fn openssl_tls1_prf(secret: &[u8], label: &str, seed: &[u8], len: usize) -> Vec<u8> {
    let to_hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut full_seed = label.as_bytes().to_vec();
    full_seed.extend_from_slice(seed);
    let out = Command::new("openssl")
        .args([
            "kdf",
            "-keylen",
            &len.to_string(),
            "-kdfopt",
            "digest:SHA256",
        ])
        .args(["-kdfopt", &format!("hexsecret:{}", to_hex(secret))])
        .args([
            "-kdfopt",
            &format!("hexseed:{}", to_hex(&full_seed)),
            "TLS1-PRF",
        ])
        .output()
        .expect("the openssl command is required (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex(&String::from_utf8(out.stdout).unwrap().replace(':', ""))
}

#[test]
fn master_secret_and_finished_agree_with_openssl_kdf() {
    let mut r = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let pms: [u8; 32] = r.random();
    let client_random: [u8; 32] = r.random();
    let server_random: [u8; 32] = r.random();
    let master = MasterSecret::derive(&pms, &client_random, &server_random);
    let mut seed = client_random.to_vec();
    seed.extend_from_slice(&server_random);
    assert_eq!(
        master.0.to_vec(),
        openssl_tls1_prf(&pms, "master secret", &seed, 48)
    );
    let hash: [u8; 32] = r.random();
    assert_eq!(
        master.verify_data(b"client finished", &hash).to_vec(),
        openssl_tls1_prf(&master.0, "client finished", &hash, 12)
    );
}

/// Record protection for AES_128_CCM_8 (RFC 6655): nonce = salt(4) ‖ epoch ‖ seq, AAD =
/// epoch ‖ seq ‖ type ‖ version ‖ length. The expected bytes were computed with OpenSSL's
/// AES-CCM (through Python's `cryptography`), not with this crate.
#[test]
fn record_seal_and_open_match_an_openssl_derived_vector() {
    let key: [u8; 16] = hex("000102030405060708090a0b0c0d0e0f").try_into().unwrap();
    let salt = [0xa0, 0xa1, 0xa2, 0xa3];
    let seq: [u8; 8] = hex("0001000000000005").try_into().unwrap();
    let cipher = RecordCipher::new(&key, salt);
    let mut body = b"spark dtls record".to_vec();
    let tag = cipher.seal(&seq, 23, [0xfe, 0xfd], &mut body);
    let mut sealed = body.clone();
    sealed.extend_from_slice(&tag);
    assert_eq!(
        sealed,
        hex("5f8d6f45c486a04770447797f649329d1a6c256100b80a2950")
    );
    cipher
        .open(&seq, &seq, 23, [0xfe, 0xfd], &mut body, &tag)
        .unwrap();
    assert_eq!(body, b"spark dtls record");
    // Any other type, sequence or tag fails.
    let mut again = sealed[..17].to_vec();
    assert!(
        cipher
            .open(&seq, &seq, 22, [0xfe, 0xfd], &mut again, &tag)
            .is_err()
    );
    let mut other = seq;
    other[7] ^= 1;
    assert!(
        cipher
            .open(&other, &other, 23, [0xfe, 0xfd], &mut again, &tag)
            .is_err()
    );
}

#[test]
fn record_protection_agrees_with_the_openssl_crate() {
    let mut r = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for len in [0usize, 1, 15, 16, 17, 100, 1200] {
        let key: [u8; 16] = r.random();
        let salt: [u8; 4] = r.random();
        let seq: [u8; 8] = r.random();
        let plain: Vec<u8> = (0..len).map(|_| r.random()).collect();
        let mut body = plain.clone();
        let tag = RecordCipher::new(&key, salt).seal(&seq, 23, [0xfe, 0xfd], &mut body);
        let mut nonce = salt.to_vec();
        nonce.extend_from_slice(&seq);
        let mut aad = seq.to_vec();
        aad.extend_from_slice(&[23, 0xfe, 0xfd]);
        aad.extend_from_slice(&(len as u16).to_be_bytes());
        let mut their_tag = [0u8; 8];
        let theirs = openssl_ccm8(&key, &nonce, &aad, &plain, &mut their_tag);
        assert_eq!(body, theirs, "ciphertext, {len} bytes");
        assert_eq!(tag, their_tag, "tag, {len} bytes");
    }
}

/// AES-128-CCM with an 8-byte tag through OpenSSL's EVP interface, in the order CCM needs:
/// nonce length and tag length before the key, the message length before the AAD.
fn openssl_ccm8(key: &[u8], nonce: &[u8], aad: &[u8], plain: &[u8], tag: &mut [u8; 8]) -> Vec<u8> {
    use openssl::cipher::Cipher;
    use openssl::cipher_ctx::CipherCtx;
    let mut ctx = CipherCtx::new().unwrap();
    ctx.encrypt_init(Some(Cipher::aes_128_ccm()), None, None)
        .unwrap();
    ctx.set_iv_length(nonce.len()).unwrap();
    ctx.set_tag_length(tag.len()).unwrap();
    ctx.encrypt_init(None, Some(key), Some(nonce)).unwrap();
    ctx.set_data_len(plain.len()).unwrap();
    ctx.cipher_update(aad, None).unwrap();
    let mut out = vec![0u8; plain.len() + 16];
    let n = ctx.cipher_update(plain, Some(&mut out)).unwrap();
    let m = ctx.cipher_final(&mut out[n..]).unwrap();
    out.truncate(n + m);
    ctx.tag(tag).unwrap();
    out
}
