//! Claim codes handed to users and not yet presented, kept in `<dir>/claims.json` (mode 0600) so that a restart
//! loses none. A code is stored as its SHA-256, like a token: the file alone does not let anyone claim a device.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::lock;
use super::state::write_atomic;

/// One stored code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredClaim {
    /// The code's SHA-256 (hex).
    code_sha256: String,
    /// The user it was handed to.
    user: String,
    /// When it expires, in seconds since the Unix epoch.
    expires_at: u64,
}

/// Why a code could not be stored or used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimStoreError {
    /// The code is unknown, used or expired.
    Unknown,
    /// The file could not be written.
    Storage,
}

/// The pending claim codes.
#[derive(Debug)]
pub(crate) struct ClaimCodes {
    path: PathBuf,
    codes: Mutex<Vec<StoredClaim>>,
}

/// Reads `claims.json`; returns the stored codes.
pub(crate) fn parse_claims(bytes: &[u8]) -> Result<Vec<StoredClaim>, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl ClaimCodes {
    /// The codes stored in `dir`; an unreadable file is reported on stderr and replaced on the next change (codes
    /// live an hour: losing them costs a new code, not a device).
    pub(crate) fn load(dir: &Path) -> ClaimCodes {
        let path = dir.join("claims.json");
        let codes = match std::fs::read(&path) {
            Ok(bytes) => parse_claims(&bytes).unwrap_or_else(|e| {
                eprintln!(
                    "spark-cloud: {}: unreadable ({e}); its claim codes are dropped",
                    path.display()
                );
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        ClaimCodes {
            path,
            codes: Mutex::new(codes),
        }
    }

    fn save(&self, codes: &[StoredClaim]) -> Result<(), ClaimStoreError> {
        let json = serde_json::to_vec_pretty(codes).map_err(|_| ClaimStoreError::Storage)?;
        write_atomic(&self.path, &json, true).map_err(|_| ClaimStoreError::Storage)
    }

    /// Stores the code of digest `digest` for `user` until `expires_at`; the user's oldest codes go first past
    /// `max_per_user`.
    pub(crate) fn add(
        &self,
        digest: &str,
        user: &str,
        expires_at: u64,
        max_per_user: usize,
    ) -> Result<(), ClaimStoreError> {
        let now = SystemTime::now();
        let mut codes = lock(&self.codes);
        let mut next: Vec<StoredClaim> = codes
            .iter()
            .filter(|c| c.expires_at > secs(now))
            .cloned()
            .collect();
        // Codes of one user, oldest (earliest expiry) first.
        let mut held: Vec<usize> = (0..next.len()).filter(|&i| next[i].user == user).collect();
        held.sort_by_key(|&i| next[i].expires_at);
        let excess = (held.len() + 1).saturating_sub(max_per_user);
        let mut drop_at: Vec<usize> = held.into_iter().take(excess).collect();
        drop_at.sort_unstable();
        for i in drop_at.into_iter().rev() {
            next.remove(i);
        }
        next.push(StoredClaim {
            code_sha256: digest.to_owned(),
            user: user.to_owned(),
            expires_at,
        });
        self.save(&next)?;
        *codes = next;
        Ok(())
    }

    /// The user the code of digest `digest` was handed to, if it is pending.
    pub(crate) fn holder(&self, digest: &str) -> Option<String> {
        let now = secs(SystemTime::now());
        lock(&self.codes)
            .iter()
            .find(|c| c.code_sha256 == digest && c.expires_at > now)
            .map(|c| c.user.clone())
    }

    /// Uses the code of digest `digest` up; returns its user.
    pub(crate) fn take(&self, digest: &str) -> Result<String, ClaimStoreError> {
        let now = secs(SystemTime::now());
        let mut codes = lock(&self.codes);
        let at = codes
            .iter()
            .position(|c| c.code_sha256 == digest && c.expires_at > now)
            .ok_or(ClaimStoreError::Unknown)?;
        let mut next = codes.clone();
        let used = next.remove(at);
        next.retain(|c| c.expires_at > now);
        self.save(&next)?;
        *codes = next;
        Ok(used.user)
    }
}
