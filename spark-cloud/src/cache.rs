//! What the REST layer asks the store on every request, held in memory: the token behind a bearer digest
//! ([`TokenCache`]) and the device record behind a device id ([`DeviceCache`]).
//!
//! Both are a [`Cache`]: bounded (two generations of at most half the capacity each: a full young generation
//! becomes the old one and the previous old one is dropped, so what is used stays and what is not ages out), each
//! entry kept at most a short time-to-live, and every forgetting immediate. A lookup that missed reads the
//! [`Cache::epoch`] before asking the store and hands it back to [`Cache::insert`], which keeps the answer only if
//! nothing was forgotten meanwhile: an answer read before a revocation can never be cached after it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::state::{Authenticated, DeviceRecord};

/// Entries a [`TokenCache`] holds at most.
pub const TOKEN_CACHE_MAX: usize = 65_536;
/// How long a token's answer is kept at most (a safety net: revocations made anywhere in a cluster forget it at
/// once when their word arrives; a word the bus lost is made up within this).
pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// Entries a [`DeviceCache`] holds at most.
pub const DEVICE_CACHE_MAX: usize = 65_536;
/// How long a device record is kept at most (as [`TOKEN_CACHE_TTL`], for owner and name changes).
pub const DEVICE_CACHE_TTL: Duration = Duration::from_secs(5);

struct Entry<V> {
    value: V,
    until: Instant,
}

struct Inner<V> {
    epoch: u64,
    young: HashMap<String, Entry<V>>,
    old: HashMap<String, Entry<V>>,
}

/// A bounded map of string keys to values that expire, with a forgetting epoch (see the [module docs](self)).
pub struct Cache<V> {
    half: usize,
    ttl: Duration,
    inner: Mutex<Inner<V>>,
}

impl<V> core::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache")
            .field("capacity", &(self.half * 2))
            .field("ttl", &self.ttl)
            .field("len", &{
                let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                inner.young.len() + inner.old.len()
            })
            .finish()
    }
}

impl<V: Clone> Cache<V> {
    /// A cache of at most `capacity` entries (at least 2), each kept at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Cache<V> {
        Cache {
            half: (capacity / 2).max(1),
            ttl,
            inner: Mutex::new(Inner {
                epoch: 0,
                young: HashMap::new(),
                old: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key` if it is held and still fresh at `now` and `keep` accepts it (one it refuses is dropped).
    pub fn get(&self, key: &str, now: Instant, keep: impl Fn(&V) -> bool) -> Option<V> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(e) = inner.young.get(key) {
            if e.until > now && keep(&e.value) {
                return Some(e.value.clone());
            }
            inner.young.remove(key);
            return None;
        }
        let e = inner.old.remove(key)?;
        if e.until <= now || !keep(&e.value) {
            return None;
        }
        let value = e.value.clone();
        Self::put(self.half, inner, key.to_owned(), e);
        Some(value)
    }

    fn put(half: usize, inner: &mut Inner<V>, key: String, entry: Entry<V>) {
        if inner.young.len() >= half && !inner.young.contains_key(&key) {
            inner.old = std::mem::take(&mut inner.young);
        }
        inner.old.remove(&key);
        inner.young.insert(key, entry);
    }

    /// The forgetting epoch now: read it before asking the store, hand it to [`Cache::insert`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Keeps `value` for `key` until `now` + the time-to-live (or `until`, if sooner), unless something was forgotten
    /// since `epoch` was read. Returns whether it was kept.
    pub fn insert(
        &self,
        epoch: u64,
        key: String,
        value: V,
        now: Instant,
        until: Option<Instant>,
    ) -> bool {
        let mut until_ttl = now + self.ttl;
        if let Some(u) = until {
            until_ttl = until_ttl.min(u);
        }
        if until_ttl <= now {
            return false;
        }
        let mut inner = self.lock();
        if inner.epoch != epoch {
            return false;
        }
        Self::put(
            self.half,
            &mut inner,
            key,
            Entry {
                value,
                until: until_ttl,
            },
        );
        true
    }

    /// Forgets `key`.
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.young.remove(key);
        inner.old.remove(key);
    }

    /// Forgets every entry `doomed` picks.
    pub fn forget_where(&self, doomed: impl Fn(&V) -> bool) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.young.retain(|_, e| !doomed(&e.value));
        inner.old.retain(|_, e| !doomed(&e.value));
    }

    /// Forgets everything.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.epoch = inner.epoch.wrapping_add(1);
        inner.young.clear();
        inner.old.clear();
    }

    /// Entries held (expired ones included until they are looked up or pushed out).
    pub fn len(&self) -> usize {
        let inner = self.lock();
        inner.young.len() + inner.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Token digests to the user they authenticate, in front of [`Store::authenticate`](crate::store::Store).
pub type TokenCache = Cache<Authenticated>;
/// Device ids to their stored record, in front of [`Store::find_device`](crate::store::Store) for an id.
pub type DeviceCache = Cache<DeviceRecord>;

/// When a token's cached answer must go at the latest: its expiry, as an instant (`None`: it never expires).
pub fn token_deadline(auth: &Authenticated, now: Instant) -> Option<Instant> {
    let expires = auth.expires_at?;
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Some(now + left)
}

/// Whether a cached answer for a token still holds by the wall clock (it has not expired).
pub fn token_unexpired(auth: &Authenticated) -> bool {
    auth.expires_at.is_none_or(|e| e > SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_read_before_a_forgetting_is_not_kept() {
        let c: Cache<u32> = Cache::new(8, Duration::from_secs(60));
        let now = Instant::now();
        let epoch = c.epoch();
        c.forget("a");
        assert!(!c.insert(epoch, "a".into(), 1, now, None));
        assert_eq!(c.get("a", now, |_| true), None);
        let epoch = c.epoch();
        assert!(c.insert(epoch, "a".into(), 1, now, None));
        assert_eq!(c.get("a", now, |_| true), Some(1));
    }

    #[test]
    fn entries_expire_at_the_ttl_or_their_own_deadline() {
        let c: Cache<u32> = Cache::new(8, Duration::from_secs(10));
        let now = Instant::now();
        c.insert(c.epoch(), "a".into(), 1, now, None);
        c.insert(
            c.epoch(),
            "b".into(),
            2,
            now,
            Some(now + Duration::from_secs(1)),
        );
        assert_eq!(c.get("a", now + Duration::from_secs(9), |_| true), Some(1));
        assert_eq!(c.get("a", now + Duration::from_secs(10), |_| true), None);
        assert_eq!(c.get("b", now + Duration::from_secs(1), |_| true), None);
        assert!(!c.insert(c.epoch(), "c".into(), 3, now, Some(now)));
    }

    #[test]
    fn the_size_is_bounded_and_used_entries_stay() {
        let c: Cache<u32> = Cache::new(4, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..100u32 {
            c.insert(c.epoch(), i.to_string(), i, now, None);
            // "0" is used all along: it survives every generation change.
            assert_eq!(c.get("0", now, |_| true), Some(0), "after {i}");
            assert!(c.len() <= 4, "{} entries", c.len());
        }
        assert_eq!(c.get("50", now, |_| true), None);
    }

    #[test]
    fn forget_where_drops_only_what_it_picks() {
        let c: Cache<u32> = Cache::new(8, Duration::from_secs(60));
        let now = Instant::now();
        for i in 0..4u32 {
            c.insert(c.epoch(), i.to_string(), i, now, None);
        }
        c.forget_where(|v| v % 2 == 0);
        let held: Vec<_> = (0..4u32)
            .filter_map(|i| c.get(&i.to_string(), now, |_| true))
            .collect();
        assert_eq!(held, vec![1, 3]);
        c.clear();
        assert!(c.is_empty());
        // A refused value is dropped.
        c.insert(c.epoch(), "x".into(), 7, now, None);
        assert_eq!(c.get("x", now, |v| *v != 7), None);
        assert_eq!(c.len(), 0);
    }
}
