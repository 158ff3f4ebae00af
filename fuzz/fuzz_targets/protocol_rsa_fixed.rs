//! The heap-free RSA backend on keys and blocks from the input: any numbers that parse as a key are
//! refused or work, never panic; an accepted private key's signatures verify with its public half, and
//! any ciphertext decrypts to a typed error or a message that fits the block, the same one in a scratch
//! that held a public operation's numbers before.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand::SeedableRng;
use spark_protocol::crypto::fixed::{FixedPrivateKey, FixedPublicKey};
use spark_protocol::crypto::{
    RsaPrivate, RsaPrivateKeyRef, RsaPublic, RsaPublicKeyRef, RsaScratch,
};

/// Splits off a part whose length is the next two bytes (big-endian, at most 300).
fn part<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let &[a, b, ref rest @ ..] = *data else {
        return &[];
    };
    let len = (usize::from(a) << 8 | usize::from(b)) % 301;
    let (part, rest) = rest.split_at(len.min(rest.len()));
    *data = rest;
    part
}

fuzz_target!(|data: &[u8]| {
    let mut data = data;
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut scratch = RsaScratch::new();
    let n = part(&mut data);
    let e = part(&mut data);
    let block = part(&mut data);
    if let Ok(public) = RsaPublicKeyRef::new(n, e)
        && let Ok(key) = FixedPublicKey::new(&public)
    {
        let _ =
            key.verify_pkcs1v15_unprefixed_in(&block[..block.len().min(20)], block, &mut scratch);
        let mut out = [0u8; 256];
        let _ = key.encrypt_pkcs1v15(&mut rng, &block[..block.len().min(20)], &mut out);
    }
    let [d, p, q, dp, dq, qinv] = core::array::from_fn(|_| part(&mut data));
    let Ok(key) = RsaPrivateKeyRef::from_components(n, e, d, p, q, dp, dq, qinv) else {
        return;
    };
    let Ok(private) = FixedPrivateKey::new(&key) else {
        return;
    };
    let k = private.modulus_len();
    let mut out = [0u8; 128];
    let decrypted = private.decrypt_pkcs1v15(&mut rng, block, &mut out);
    if let Ok(len) = decrypted {
        assert!(len <= k - 11);
    }
    let mut again = [0u8; 128];
    let in_scratch = private.decrypt_pkcs1v15_in(&mut rng, block, &mut again, &mut scratch);
    assert_eq!(in_scratch, decrypted);
    assert_eq!(again, out);
    let mut sig = [0u8; 128];
    if private
        .sign_pkcs1v15_unprefixed(&mut rng, b"fuzz", &mut sig)
        .is_ok()
    {
        let public = FixedPublicKey::new(&key.public_key()).expect("a private key's public half");
        public
            .verify_pkcs1v15_unprefixed(b"fuzz", &sig[..k])
            .expect("a signature the checked private operation made verifies");
    }
});
