//! The embedded store: one node's state directory ([`StateDir`], its layout unchanged) with its claim codes
//! (`claims.json`) and this process's flash jobs.

use std::path::Path;
use std::sync::Mutex;

use rand_core::CryptoRng;
use spark_protocol::crypto::keys::{RsaPrivateKey, RsaPublicKey};
use spark_protocol::dtls;

use super::{AdminGeneration, FlashJob, Store, StoreError, StoreFuture, now_secs};
use crate::claims::{ClaimCodes, ClaimStoreError};
use crate::lock;
use crate::state::{
    DeviceRecord, PREVIOUS_KEY_FILE, PasswordCheck, SERVER_KEY_FILE, ServerKeys, StateDir,
    TOKENS_NOT_BEFORE_FILE, TokenRecord, UserRecord,
};

/// Flash jobs kept in memory (the oldest finished ones are dropped first).
const KEPT_FLASH_JOBS: usize = 1024;

/// The state directory as a [`Store`]: what a single node uses by default.
pub struct EmbeddedStore {
    state: StateDir,
    claims: ClaimCodes,
    /// Serialises a claim's check of the code, the device's owner and the code's use.
    claiming: Mutex<()>,
    flash: Mutex<FlashJobs>,
}

#[derive(Default)]
struct FlashJobs {
    next_id: u64,
    jobs: Vec<FlashJob>,
}

impl core::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("dir", &self.state.path())
            .finish_non_exhaustive()
    }
}

fn ready<'a, T: Send + 'a>(result: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(core::future::ready(result))
}

impl EmbeddedStore {
    /// Opens (creating when needed) the state directory `dir`; a missing server key is generated with `key_bits`
    /// bits.
    pub fn open(
        dir: &Path,
        key_bits: usize,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<EmbeddedStore, StoreError> {
        let state = StateDir::open(dir, key_bits, rng)?;
        Ok(EmbeddedStore::new(state))
    }

    /// The store over an opened state directory.
    pub fn new(state: StateDir) -> EmbeddedStore {
        let claims = ClaimCodes::load(state.path());
        EmbeddedStore {
            state,
            claims,
            claiming: Mutex::new(()),
            flash: Mutex::new(FlashJobs::default()),
        }
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    fn claim(&self, id: &str, digest: &str) -> Result<String, StoreError> {
        let _one_at_a_time = lock(&self.claiming);
        if self.state.device(id).is_none() {
            return Err(StoreError::UnknownDevice);
        }
        let holder = self.claims.holder(digest).ok_or(StoreError::UnknownCode)?;
        let taken = self.state.update_device(id, |d| {
            if d.owner.as_deref().is_some_and(|o| o != holder) {
                false
            } else {
                d.owner = Some(holder.clone());
                true
            }
        })?;
        match taken {
            None => return Err(StoreError::UnknownDevice),
            Some(false) => return Err(StoreError::Owned),
            Some(true) => {}
        }
        self.claims.take(digest).map_err(|e| match e {
            ClaimStoreError::Unknown => StoreError::UnknownCode,
            ClaimStoreError::Storage => StoreError::Unavailable("cannot write claims.json".into()),
        })
    }
}

impl Store for EmbeddedStore {
    fn describe(&self) -> String {
        format!("state directory {}", self.state.path().display())
    }

    fn as_state_dir(&self) -> Option<&StateDir> {
        Some(&self.state)
    }

    fn add_user(&self, user: UserRecord) -> StoreFuture<'_, ()> {
        ready(self.state.add_user(user).map_err(StoreError::from))
    }

    fn user_exists<'a>(&'a self, username: &'a str) -> StoreFuture<'a, bool> {
        ready(Ok(self.state.user_exists(username)))
    }

    fn password_check<'a>(&'a self, username: &'a str) -> StoreFuture<'a, PasswordCheck> {
        ready(Ok(self.state.password_check(username)))
    }

    fn add_token<'a>(&'a self, username: &'a str, token: TokenRecord) -> StoreFuture<'a, ()> {
        ready(
            self.state
                .add_token(username, token)
                .map_err(StoreError::from),
        )
    }

    fn authenticate<'a>(&'a self, digest: &'a str) -> StoreFuture<'a, crate::state::Authenticated> {
        ready(
            self.state
                .authenticate_digest(digest)
                .map_err(StoreError::from),
        )
    }

    fn tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, Vec<TokenRecord>> {
        ready(Ok(self.state.tokens(username)))
    }

    fn delete_token<'a>(
        &'a self,
        username: &'a str,
        token: &'a str,
    ) -> StoreFuture<'a, Option<String>> {
        ready(
            self.state
                .delete_token_digest(username, token)
                .map_err(StoreError::from),
        )
    }

    fn delete_all_tokens<'a>(&'a self, username: &'a str) -> StoreFuture<'a, usize> {
        ready(
            self.state
                .delete_all_tokens(username)
                .map_err(StoreError::from),
        )
    }

    fn invalidate_tokens_before(&self, cutoff: u64) -> StoreFuture<'_, Vec<String>> {
        ready(
            self.state
                .invalidate_tokens_before(cutoff)
                .map_err(StoreError::from),
        )
    }

    fn admin_generation(&self) -> StoreFuture<'_, AdminGeneration> {
        // The files `spark-cloud keys …` and `tokens invalidate-before` write: their digest is the generation.
        use sha2::Digest;
        let dir = self.state.path();
        let mut digest = sha2::Sha256::new();
        for name in [SERVER_KEY_FILE, PREVIOUS_KEY_FILE, TOKENS_NOT_BEFORE_FILE] {
            let bytes = std::fs::read(dir.join(name)).unwrap_or_default();
            digest.update((bytes.len() as u64).to_le_bytes());
            digest.update(&bytes);
        }
        let sum = digest.finalize();
        let mut generation = [0u8; 8];
        generation.copy_from_slice(&sum[..8]);
        let cutoff = crate::state::read_not_before(dir).map_err(StoreError::from);
        ready(cutoff.map(|cutoff| AdminGeneration {
            generation: u64::from_le_bytes(generation),
            tokens_not_before: cutoff.unwrap_or(0).max(self.state.tokens_not_before()),
        }))
    }

    fn devices(&self) -> StoreFuture<'_, Vec<DeviceRecord>> {
        ready(Ok(self.state.devices()))
    }

    fn device<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<DeviceRecord>> {
        ready(Ok(self.state.device(id)))
    }

    fn device_owner<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<String>> {
        ready(Ok(self.state.device_owner(id)))
    }

    fn find_device<'a>(
        &'a self,
        id_or_name: &'a str,
        owner: &'a str,
    ) -> StoreFuture<'a, Option<DeviceRecord>> {
        ready(Ok(self.state.find_device(id_or_name, owner)))
    }

    fn device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<RsaPublicKey>> {
        ready(Ok(self.state.device_key(id)))
    }

    fn udp_device_key<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<dtls::PublicKey>> {
        ready(Ok(self.state.udp_device_key(id)))
    }

    fn device_for_udp_key<'a>(
        &'a self,
        key: &'a dtls::PublicKey,
    ) -> StoreFuture<'a, Option<String>> {
        ready(Ok(self.state.device_for_udp_key(key)))
    }

    fn provision<'a>(
        &'a self,
        id: &'a str,
        key: &'a RsaPublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord> {
        Box::pin(async move {
            Ok(self
                .state
                .provision_durable_checked(id, key, caller, caller.is_some())
                .await?)
        })
    }

    fn provision_udp<'a>(
        &'a self,
        id: &'a str,
        key: &'a dtls::PublicKey,
        caller: Option<&'a str>,
    ) -> StoreFuture<'a, DeviceRecord> {
        ready(
            self.state
                .provision_udp_checked(id, key, caller, caller.is_some())
                .map_err(StoreError::from),
        )
    }

    fn rename<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        name: &'a str,
    ) -> StoreFuture<'a, DeviceRecord> {
        let result = self.state.update_device(id, |d| {
            if d.owner.as_deref() == Some(owner) {
                d.name = Some(name.to_owned());
                Ok(d.clone())
            } else {
                Err(StoreError::Owned)
            }
        });
        ready(match result {
            Ok(Some(r)) => r,
            Ok(None) => Err(StoreError::UnknownDevice),
            Err(e) => Err(e.into()),
        })
    }

    fn set_owner<'a>(&'a self, id: &'a str, user: Option<&'a str>) -> StoreFuture<'a, ()> {
        let result = self
            .state
            .update_device(id, |d| d.owner = user.map(str::to_owned));
        ready(match result {
            Ok(Some(())) => Ok(()),
            Ok(None) => Err(StoreError::UnknownDevice),
            Err(e) => Err(e.into()),
        })
    }

    fn release<'a>(&'a self, id: &'a str, owner: &'a str) -> StoreFuture<'a, ()> {
        let result = self.state.update_device(id, |d| {
            if d.owner.as_deref() == Some(owner) {
                d.owner = None;
                true
            } else {
                false
            }
        });
        ready(match result {
            Ok(Some(true)) => Ok(()),
            Ok(Some(false)) => Err(StoreError::Owned),
            Ok(None) => Err(StoreError::UnknownDevice),
            Err(e) => Err(e.into()),
        })
    }

    fn add_claim_code<'a>(
        &'a self,
        digest: &'a str,
        username: &'a str,
        expires_at: u64,
        max_per_user: usize,
    ) -> StoreFuture<'a, ()> {
        if !self.state.user_exists(username) {
            return ready(Err(StoreError::UnknownUser));
        }
        ready(
            self.claims
                .add(digest, username, expires_at, max_per_user)
                .map_err(|_| StoreError::Unavailable("cannot write claims.json".into())),
        )
    }

    fn claim_with_code<'a>(&'a self, id: &'a str, digest: &'a str) -> StoreFuture<'a, String> {
        ready(self.claim(id, digest))
    }

    fn start_flash<'a>(&'a self, device: &'a str, node: &'a str) -> StoreFuture<'a, FlashJob> {
        let mut held = lock(&self.flash);
        if held
            .jobs
            .iter()
            .any(|j| j.device == device && j.ended_at.is_none())
        {
            return ready(Err(StoreError::FlashInProgress));
        }
        held.next_id += 1;
        let job = FlashJob {
            id: held.next_id,
            device: device.to_owned(),
            node: node.to_owned(),
            started_at: now_secs(),
            ended_at: None,
            result: None,
        };
        if held.jobs.len() >= KEPT_FLASH_JOBS
            && let Some(at) = held.jobs.iter().position(|j| j.ended_at.is_some())
        {
            held.jobs.remove(at);
        }
        held.jobs.push(job.clone());
        ready(Ok(job))
    }

    fn finish_flash<'a>(&'a self, id: u64, result: &'a str) -> StoreFuture<'a, ()> {
        let mut held = lock(&self.flash);
        let Some(job) = held
            .jobs
            .iter_mut()
            .find(|j| j.id == id && j.ended_at.is_none())
        else {
            return ready(Err(StoreError::Corrupt(format!(
                "no running flash job {id}"
            ))));
        };
        job.ended_at = Some(now_secs());
        job.result = Some(result.to_owned());
        ready(Ok(()))
    }

    fn flash_jobs<'a>(&'a self, device: &'a str) -> StoreFuture<'a, Vec<FlashJob>> {
        let held = lock(&self.flash);
        let mut jobs: Vec<FlashJob> = held
            .jobs
            .iter()
            .filter(|j| j.device == device)
            .cloned()
            .collect();
        jobs.reverse();
        ready(Ok(jobs))
    }

    fn server_keys(&self) -> StoreFuture<'_, ServerKeys> {
        // Read from the files: another process (`spark-cloud keys rotate`) may have changed them.
        ready(self.state.reload_server_keys().map_err(StoreError::from))
    }

    fn rotate_server_key(&self, fresh: RsaPrivateKey) -> StoreFuture<'_, ServerKeys> {
        ready(
            self.state
                .rotate_server_key_to(fresh)
                .map_err(StoreError::from),
        )
    }

    fn retire_server_key(&self) -> StoreFuture<'_, ServerKeys> {
        ready(self.state.retire_server_key().map_err(StoreError::from))
    }

    fn udp_server_key(&self) -> StoreFuture<'_, dtls::PrivateKey> {
        ready(Ok(self.state.udp_server_key().clone()))
    }
}
