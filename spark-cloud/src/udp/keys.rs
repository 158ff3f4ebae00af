//! The P-256 keys of the UDP protocol in the state directory: the server's key pair
//! (`udp_key.pem`, `udp_key.pub.pem`) and the devices' public keys (`udp_devices.json`).
//!
//! A UDP device (Electron class) proves a P-256 key in its DTLS handshake and names no id until its
//! Hello, so the cloud maps keys to ids. The file is separate from `core_keys/`, so a state directory
//! written before UDP support loads unchanged and one written after still loads in an older cloud.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spark_protocol::dtls::{self, PrivateKey, PublicKey};

/// The server's UDP private key (SEC1 `EC PRIVATE KEY` PEM, mode 0600), generated on first start.
pub const SERVER_UDP_KEY_FILE: &str = "udp_key.pem";
/// The server's UDP public key (SPKI PEM): what a UDP device is given (`spark keys server --ec`).
pub const SERVER_UDP_PUBLIC_KEY_FILE: &str = "udp_key.pub.pem";
/// The devices' UDP public keys with their name and owner (mode 0600).
pub const UDP_DEVICES_FILE: &str = "udp_devices.json";

/// One device's entry of [`UDP_DEVICES_FILE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UdpDeviceEntry {
    /// Its P-256 public key as SPKI PEM.
    pub public_key: String,
    /// Its name (used when the device has no `core_keys/` record).
    #[serde(default)]
    pub name: Option<String>,
    /// Its owner (likewise).
    #[serde(default)]
    pub owner: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct UdpDevicesFile {
    devices: BTreeMap<String, UdpDeviceEntry>,
}

/// Reads [`UDP_DEVICES_FILE`]: each device's id (24 hex digits, lower-cased), key and entry.
pub fn parse_udp_devices(text: &str) -> Result<Vec<(String, PublicKey, UdpDeviceEntry)>, String> {
    let file: UdpDevicesFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(file.devices.len());
    for (id, entry) in file.devices {
        if !crate::state::is_device_id(&id) {
            return Err(format!("{id:?} is not a device id"));
        }
        let key = public_key_from_pem(&entry.public_key).map_err(|e| format!("{id}: {e}"))?;
        out.push((id.to_ascii_lowercase(), key, entry));
    }
    Ok(out)
}

/// Writes [`UDP_DEVICES_FILE`]'s text.
pub fn render_udp_devices(devices: &BTreeMap<String, UdpDeviceEntry>) -> Vec<u8> {
    let file = UdpDevicesFile {
        devices: devices.clone(),
    };
    serde_json::to_vec_pretty(&file).unwrap_or_default()
}

/// Why a P-256 key in PEM or DER could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EcKeyError {
    /// No PEM block of the expected kind, or bad base64.
    #[error("no {0} PEM block")]
    NoPem(&'static str),
    /// The DER is not a P-256 key of the expected kind.
    #[error("not a P-256 {0}")]
    NotP256(&'static str),
}

/// A P-256 public key from SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or DER.
pub fn public_key_from_pem(text: &str) -> Result<PublicKey, EcKeyError> {
    let mut der = [0u8; 512];
    let (_, n) = dtls::pem_to_der(text, &["PUBLIC KEY"], &mut der)
        .map_err(|_| EcKeyError::NoPem("PUBLIC KEY"))?;
    PublicKey::from_spki(&der[..n]).map_err(|_| EcKeyError::NotP256("public key"))
}

/// A P-256 public key from SPKI DER or PEM bytes.
pub fn public_key_from_bytes(bytes: &[u8]) -> Result<PublicKey, EcKeyError> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN") => public_key_from_pem(text),
        _ => PublicKey::from_spki(bytes).map_err(|_| EcKeyError::NotP256("public key")),
    }
}

/// A P-256 private key from SEC1 (`EC PRIVATE KEY`) or PKCS#8 (`PRIVATE KEY`) PEM.
pub fn private_key_from_pem(text: &str) -> Result<PrivateKey, EcKeyError> {
    let mut der = [0u8; 512];
    let (_, n) = dtls::pem_to_der(text, &["EC PRIVATE KEY", "PRIVATE KEY"], &mut der)
        .map_err(|_| EcKeyError::NoPem("EC PRIVATE KEY"))?;
    let key = PrivateKey::from_der(&der[..n]).map_err(|_| EcKeyError::NotP256("private key"));
    zeroize_slice(&mut der);
    key
}

fn zeroize_slice(b: &mut [u8]) {
    zeroize::Zeroize::zeroize(b);
}

/// The SPKI PEM of a P-256 public key.
pub fn public_key_pem(key: &PublicKey) -> String {
    key.to_spki_pem()
}

/// The SEC1 PEM of a P-256 private key.
pub fn private_key_pem(key: &PrivateKey) -> String {
    key.to_sec1_pem().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_pem() {
        let key = PrivateKey::from_scalar(&[0x31; 32]).unwrap();
        let back = private_key_from_pem(&private_key_pem(&key)).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        let public = public_key_from_pem(&public_key_pem(&key.public_key())).unwrap();
        assert_eq!(public, key.public_key());
        assert_eq!(
            public_key_from_bytes(&key.public_key().to_spki()).unwrap(),
            key.public_key()
        );
        assert!(
            public_key_from_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
                .is_err()
        );
    }

    #[test]
    fn a_udp_device_and_the_server_key_survive_a_restart_and_an_owner_change() {
        use crate::state::StateDir;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("default_key.pem"),
            include_str!("../../tests/fixtures/server_key_1024.pem"),
        )
        .unwrap();
        let mut rng = rand::rng();
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        let server = state.udp_server_key().public_key();
        let id = "0123456789abcdef01234567";
        let key = PrivateKey::from_scalar(&[0x33; 32]).unwrap().public_key();
        let other = PrivateKey::from_scalar(&[0x34; 32]).unwrap().public_key();
        state.provision_udp(id, &key, None).unwrap();
        assert_eq!(state.device_for_udp_key(&key).as_deref(), Some(id));
        assert_eq!(state.device_for_udp_key(&other), None);
        // The key of one device is no other's.
        assert!(
            state
                .provision_udp("0123456789abcdef01234568", &key, None)
                .is_err()
        );
        // A UDP-only device has no RSA key: its owner change goes to the UDP file.
        assert_eq!(
            state
                .update_device(id, |d| d.owner = Some("joe".into()))
                .unwrap(),
            Some(())
        );
        drop(state);
        let state = StateDir::open(dir.path(), 1024, &mut rng).unwrap();
        assert_eq!(state.udp_server_key().public_key(), server);
        assert_eq!(state.device_for_udp_key(&key).as_deref(), Some(id));
        assert_eq!(state.udp_device_key(id), Some(key));
        assert_eq!(state.device(id).unwrap().owner.as_deref(), Some("joe"));
        assert!(state.device_key(id).is_none(), "no RSA key was made up");
        #[cfg(unix)]
        for (file, mode) in [
            (SERVER_UDP_KEY_FILE, 0o600),
            (UDP_DEVICES_FILE, 0o600),
            (SERVER_UDP_PUBLIC_KEY_FILE, 0o644),
        ] {
            use std::os::unix::fs::PermissionsExt;
            let m = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(m & 0o777, mode, "{file}");
        }
    }

    #[test]
    fn the_devices_file_round_trips_and_refuses_bad_ids() {
        let key = PrivateKey::from_scalar(&[0x32; 32]).unwrap().public_key();
        let mut devices = BTreeMap::new();
        devices.insert(
            "0123456789abcdef01234567".to_owned(),
            UdpDeviceEntry {
                public_key: public_key_pem(&key),
                name: Some("electron".into()),
                owner: None,
            },
        );
        let text = String::from_utf8(render_udp_devices(&devices)).unwrap();
        let parsed = parse_udp_devices(&text).unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].0, "0123456789abcdef01234567");
        assert_eq!(parsed[0].1, key);
        assert_eq!(parsed[0].2.name.as_deref(), Some("electron"));
        let bad = text.replace("0123456789abcdef01234567", "not-an-id");
        assert!(parse_udp_devices(&bad).is_err());
        let bad_key = text.replace("MFkw", "MFkx");
        assert!(parse_udp_devices(&bad_key).is_err());
    }
}
