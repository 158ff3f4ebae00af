//! Who holds which device: this node's sessions and what the other nodes announce, each under a lease.
//!
//! No IO and no clock: messages come in through `handle_*` with the time (`now` for leases, the wall clock in
//! milliseconds for ordering sessions across nodes), and the answers are values. The node's tasks drive it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use spark_protocol::DeviceId;

use super::wire::{self, Holding, ListPiece, PresenceMessage};

/// A device session on this node: the hub's serial of its connection and when it was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Local {
    serial: u64,
    since_ms: u64,
}

#[derive(Debug)]
struct Peer {
    seen: Instant,
    lease: Duration,
    devices: HashMap<DeviceId, u64>,
}

impl Peer {
    fn alive(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.seen) <= self.lease
    }

    /// Whether this view of the peer's devices matches what its heartbeat says.
    fn agrees(&self, count: u64, digest: &str) -> bool {
        self.devices.len() as u64 == count && digest_of(&self.devices) == digest
    }
}

fn digest_of(devices: &HashMap<DeviceId, u64>) -> String {
    let named: Vec<(String, u64)> = devices.iter().map(|(d, s)| (d.to_string(), *s)).collect();
    wire::digest(named.iter().map(|(d, s)| (d.as_str(), *s)))
}

/// What a presence message asks of this node.
#[derive(Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Outcome {
    /// Local connections made stale by a newer session elsewhere: (device, the hub's serial) to disconnect.
    pub stale: Vec<(DeviceId, u64)>,
    /// The sender was not known (it joined, or came back): answer with a heartbeat so that it learns the holders
    /// at once.
    pub newcomer: bool,
    /// The sender's heartbeat does not match what this node knows of its devices: ask it for its list
    /// ([`wire::list_subject`]) and hand the list to [`Presence::handle_list`].
    pub fetch_list: bool,
}

/// The presence table of one node.
#[derive(Debug)]
pub struct Presence {
    me: String,
    lease: Duration,
    local: HashMap<DeviceId, Local>,
    peers: HashMap<String, Peer>,
    /// Peers whose lease ran out and whose devices were reported offline (until they are heard again).
    lost: HashSet<String>,
}

/// A peer silent this many leases is forgotten (its devices were offline since one lease).
const FORGET_AFTER_LEASES: u32 = 10;

impl Presence {
    /// The table of node `me`, whose heartbeats promise `lease`.
    #[must_use]
    pub fn new(me: &str, lease: Duration) -> Presence {
        Presence {
            me: me.to_owned(),
            lease,
            local: HashMap::new(),
            peers: HashMap::new(),
            lost: HashSet::new(),
        }
    }

    /// A device completed its handshake here (connection `serial`, at `since_ms`); returns the announcement.
    pub fn handle_local_held(
        &mut self,
        device: DeviceId,
        serial: u64,
        since_ms: u64,
    ) -> PresenceMessage {
        self.local.insert(device, Local { serial, since_ms });
        PresenceMessage::Held {
            node: self.me.clone(),
            holding: Holding {
                device: device.to_string(),
                since_ms,
            },
        }
    }

    /// A session here ended; returns the announcement, or `None` when a newer session of the device is here.
    pub fn handle_local_released(
        &mut self,
        device: DeviceId,
        serial: u64,
    ) -> Option<PresenceMessage> {
        if self.local.get(&device)?.serial != serial {
            return None;
        }
        self.local.remove(&device);
        Some(PresenceMessage::Released {
            node: self.me.clone(),
            device: device.to_string(),
        })
    }

    /// The heartbeat of this node: how many devices it holds, and their digest (not the list: see
    /// [`Presence::list_piece`]).
    pub fn heartbeat(&self) -> PresenceMessage {
        let local: HashMap<DeviceId, u64> =
            self.local.iter().map(|(d, l)| (*d, l.since_ms)).collect();
        PresenceMessage::Heartbeat {
            node: self.me.clone(),
            lease_ms: u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX),
            count: local.len() as u64,
            digest: digest_of(&local),
            devices: None,
        }
    }

    /// Piece `piece` of the list of the devices this node holds, sorted by id, `per_piece` to a piece
    /// ([`wire::holdings_per_piece`]); `None` past the last piece. An empty list is one empty piece.
    #[must_use]
    pub fn list_piece(&self, piece: u32, per_piece: usize) -> Option<ListPiece> {
        let per_piece = per_piece.max(1);
        let mut all: Vec<Holding> = self
            .local
            .iter()
            .map(|(d, l)| Holding {
                device: d.to_string(),
                since_ms: l.since_ms,
            })
            .collect();
        all.sort_by(|a, b| a.device.cmp(&b.device));
        let pieces = u32::try_from(all.len().div_ceil(per_piece).max(1)).ok()?;
        if piece >= pieces {
            return None;
        }
        let digest = wire::digest(all.iter().map(|h| (h.device.as_str(), h.since_ms)));
        let count = all.len() as u64;
        let start = (piece as usize).saturating_mul(per_piece);
        let devices = all.into_iter().skip(start).take(per_piece).collect();
        Some(ListPiece {
            node: self.me.clone(),
            piece,
            pieces,
            count,
            digest,
            devices,
        })
    }

    /// The whole list of `node`, fetched piece by piece (the pieces' devices, together): it replaces what this
    /// node knew of that peer. Ignored for an unknown or dead peer, or a list that does not match its own digest.
    pub fn handle_list(
        &mut self,
        node: &str,
        count: u64,
        digest: &str,
        devices: Vec<Holding>,
        now: Instant,
    ) -> Outcome {
        let mut out = Outcome::default();
        let Some(peer) = self.peers.get_mut(node).filter(|p| p.alive(now)) else {
            return out;
        };
        let listed: HashMap<DeviceId, u64> = devices
            .iter()
            .filter_map(|h| Some((h.device.parse().ok()?, h.since_ms)))
            .collect();
        if listed.len() as u64 != count || digest_of(&listed) != digest {
            return out;
        }
        peer.devices = listed;
        let announced: Vec<(DeviceId, u64)> = peer.devices.iter().map(|(d, s)| (*d, *s)).collect();
        self.stale_against(node, announced, &mut out);
        out
    }

    fn stale_against(&self, node: &str, announced: Vec<(DeviceId, u64)>, out: &mut Outcome) {
        for (device, since_ms) in announced {
            if let Some(local) = self.local.get(&device)
                && newer(since_ms, node, local.since_ms, &self.me)
            {
                out.stale.push((device, local.serial));
            }
        }
    }

    /// A message from the bus (this node's own are ignored).
    pub fn handle_message(&mut self, message: PresenceMessage, now: Instant) -> Outcome {
        let mut out = Outcome::default();
        if message.node() == self.me {
            return out;
        }
        let node = message.node().to_owned();
        let peer = match self.peers.get_mut(&node) {
            Some(p) => {
                out.newcomer = !p.alive(now);
                p
            }
            None => {
                out.newcomer = true;
                self.peers.entry(node.clone()).or_insert(Peer {
                    seen: now,
                    lease: self.lease,
                    devices: HashMap::new(),
                })
            }
        };
        peer.seen = now;
        let mut announced = Vec::new();
        match message {
            PresenceMessage::Heartbeat {
                lease_ms,
                count,
                digest,
                devices,
                ..
            } => {
                // A lease is a few seconds; a hostile value is bounded rather than trusted.
                peer.lease = Duration::from_millis(lease_ms.clamp(100, 3_600_000));
                match devices {
                    Some(devices) => {
                        peer.devices = devices
                            .iter()
                            .filter_map(|h| Some((h.device.parse().ok()?, h.since_ms)))
                            .collect();
                        announced.extend(peer.devices.iter().map(|(d, s)| (*d, *s)));
                    }
                    None => out.fetch_list = !peer.agrees(count, &digest),
                }
            }
            PresenceMessage::Held { holding, .. } => {
                if let Ok(device) = holding.device.parse() {
                    peer.devices.insert(device, holding.since_ms);
                    announced.push((device, holding.since_ms));
                }
            }
            PresenceMessage::Released { device, .. } => {
                if let Ok(device) = device.parse::<DeviceId>() {
                    peer.devices.remove(&device);
                }
            }
        }
        self.stale_against(&node, announced, &mut out);
        out
    }

    /// The node that holds `device` now: this one (`Some(me)`), or the live peer with the newest session.
    #[must_use]
    pub fn holder(&self, device: DeviceId, now: Instant) -> Option<&str> {
        if self.local.contains_key(&device) {
            return Some(&self.me);
        }
        self.peers
            .iter()
            .filter(|(_, p)| p.alive(now))
            .filter_map(|(n, p)| Some((n, *p.devices.get(&device)?)))
            .max_by(|(na, sa), (nb, sb)| sa.cmp(sb).then(na.cmp(nb)))
            .map(|(n, _)| n.as_str())
    }

    /// Live peers now.
    #[must_use]
    pub fn live_peers(&self, now: Instant) -> usize {
        self.peers.values().filter(|p| p.alive(now)).count()
    }

    /// Forgets peers silent for many leases (their devices have read offline since their lease ran out).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.peers
            .retain(|_, p| now.saturating_duration_since(p.seen) <= p.lease * FORGET_AFTER_LEASES);
    }
}

impl Presence {
    /// The devices of peers whose lease ran out since the last call, which no live node (nor this one) holds now:
    /// each is reported once per loss, so that this node tells its own subscribers they went offline. A peer heard
    /// again may be reported again when it next goes silent.
    pub fn handle_lost_peers(&mut self, now: Instant) -> Vec<DeviceId> {
        let peers = &self.peers;
        self.lost
            .retain(|n| peers.get(n).is_some_and(|p| !p.alive(now)));
        let newly: Vec<String> = self
            .peers
            .iter()
            .filter(|(n, p)| !p.alive(now) && !self.lost.contains(*n))
            .map(|(n, _)| n.clone())
            .collect();
        let mut devices = Vec::new();
        for node in newly {
            if let Some(peer) = self.peers.get(&node) {
                devices.extend(
                    peer.devices
                        .keys()
                        .filter(|d| self.holder(**d, now).is_none())
                        .copied(),
                );
            }
            self.lost.insert(node);
        }
        devices.sort_unstable();
        devices.dedup();
        devices
    }
}

/// Whether the session of (`since`, `node`) is newer than (`than`, `than_node`): later, or as late and on the
/// greater node id, so that two nodes never both keep a device.
fn newer(since: u64, node: &str, than: u64, than_node: &str) -> bool {
    (since, node) > (than, than_node)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "0123456789abcdef01234567";

    fn held(node: &str, since_ms: u64) -> PresenceMessage {
        PresenceMessage::Held {
            node: node.into(),
            holding: Holding {
                device: D.into(),
                since_ms,
            },
        }
    }

    #[test]
    fn a_newer_session_elsewhere_makes_the_local_one_stale_and_an_older_one_does_not() {
        let now = Instant::now();
        let d: DeviceId = D.parse().unwrap();
        let mut p = Presence::new("a", Duration::from_secs(3));
        let _ = p.handle_local_held(d, 7, 1000);
        let older = p.handle_message(held("b", 999), now);
        assert!(older.stale.is_empty());
        assert!(older.newcomer);
        assert_eq!(p.holder(d, now), Some("a"));
        let newer = p.handle_message(held("b", 1001), now);
        assert_eq!(newer.stale, vec![(d, 7)]);
        assert!(!newer.newcomer);
        // The stale session ends; the release names its serial, and the device is then b's.
        assert!(p.handle_local_released(d, 7).is_some());
        assert_eq!(p.holder(d, now), Some("b"));
        // A release of an older serial does not undo a newer local session.
        let _ = p.handle_local_held(d, 9, 2000);
        assert!(p.handle_local_released(d, 8).is_none());
        assert_eq!(p.holder(d, now), Some("a"));
    }

    #[test]
    fn a_peer_silent_for_its_lease_holds_nothing() {
        let start = Instant::now();
        let d: DeviceId = D.parse().unwrap();
        let mut p = Presence::new("a", Duration::from_secs(1));
        let beat = PresenceMessage::Heartbeat {
            node: "b".into(),
            lease_ms: 2000,
            count: 1,
            digest: String::new(),
            devices: Some(vec![Holding {
                device: D.into(),
                since_ms: 5,
            }]),
        };
        assert!(p.handle_message(beat.clone(), start).newcomer);
        assert_eq!(p.holder(d, start + Duration::from_millis(1999)), Some("b"));
        assert_eq!(p.holder(d, start + Duration::from_millis(2001)), None);
        assert_eq!(p.live_peers(start + Duration::from_millis(2001)), 0);
        // Back from the dead, it is a newcomer again (and is answered with a heartbeat).
        assert!(
            p.handle_message(beat, start + Duration::from_secs(3))
                .newcomer
        );
        p.handle_timeout(start + Duration::from_secs(100));
        assert_eq!(p.live_peers(start + Duration::from_secs(100)), 0);
    }

    #[test]
    fn a_lost_peers_devices_are_reported_once_unless_held_elsewhere() {
        let start = Instant::now();
        let d: DeviceId = D.parse().unwrap();
        let e: DeviceId = "0123456789abcdef01234568".parse().unwrap();
        let mut p = Presence::new("a", Duration::from_secs(1));
        let beat = |node: &str, devices: &[&str]| PresenceMessage::Heartbeat {
            node: node.into(),
            lease_ms: 1000,
            count: devices.len() as u64,
            digest: wire::digest(devices.iter().map(|d| (*d, 5))),
            devices: Some(
                devices
                    .iter()
                    .map(|d| Holding {
                        device: (*d).into(),
                        since_ms: 5,
                    })
                    .collect(),
            ),
        };
        let _ = p.handle_message(beat("b", &[D, "0123456789abcdef01234568"]), start);
        let _ = p.handle_message(beat("c", &[]), start);
        assert!(p.handle_lost_peers(start).is_empty());
        // c lives on and, by then, holds e (which reconnected there): only d is reported.
        let later = start + Duration::from_millis(1500);
        let _ = p.handle_message(beat("c", &["0123456789abcdef01234568"]), later);
        assert_eq!(p.handle_lost_peers(later), vec![d]);
        assert!(
            p.handle_lost_peers(later + Duration::from_millis(10))
                .is_empty()
        );
        assert_eq!(p.holder(e, later), Some("c"));
        // b comes back holding d, and dies again (with c, still holding e): both are reported.
        let back = start + Duration::from_secs(3);
        let _ = p.handle_message(beat("b", &[D]), back);
        let _ = p.handle_message(beat("c", &["0123456789abcdef01234568"]), back);
        assert!(p.handle_lost_peers(back).is_empty());
        assert_eq!(
            p.handle_lost_peers(back + Duration::from_millis(1001)),
            vec![d, e]
        );
    }

    #[test]
    fn ties_go_to_one_node_only() {
        assert!(newer(5, "b", 5, "a"));
        assert!(!newer(5, "a", 5, "b"));
        assert!(!newer(5, "a", 5, "a"));
    }

    #[test]
    fn a_heartbeat_carries_a_count_and_a_digest_and_a_differing_view_fetches_the_list_in_pieces() {
        let now = Instant::now();
        let mut a = Presence::new("a", Duration::from_secs(3));
        let mut b = Presence::new("b", Duration::from_secs(3));
        let ids: Vec<DeviceId> = (0..25u8)
            .map(|i| {
                let mut raw = [0u8; 12];
                raw[11] = i;
                DeviceId::from_bytes(raw)
            })
            .collect();
        for (serial, id) in ids.iter().enumerate() {
            let _ = a.handle_local_held(*id, serial as u64, 1000 + serial as u64);
        }
        let beat = a.heartbeat();
        let PresenceMessage::Heartbeat {
            count,
            ref digest,
            ref devices,
            ..
        } = beat
        else {
            panic!("{beat:?}")
        };
        assert_eq!(count, 25);
        assert!(devices.is_none(), "no list in a heartbeat");
        let digest = digest.clone();
        // b knows nothing of a yet: it must ask.
        let out = b.handle_message(beat.clone(), now);
        assert!(out.newcomer && out.fetch_list);
        assert_eq!(b.holder(ids[0], now), None);
        // The list in pieces of 10: 3 pieces, each sorted and disjoint, the last one short.
        let pieces: Vec<ListPiece> = (0..).map_while(|k| a.list_piece(k, 10)).collect();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.pieces == 3 && p.digest == digest));
        assert_eq!(
            pieces.iter().map(|p| p.devices.len()).collect::<Vec<_>>(),
            [10, 10, 5]
        );
        let all: Vec<Holding> = pieces.into_iter().flat_map(|p| p.devices).collect();
        // A list that does not match the digest is refused; the whole one is taken.
        let _ = b.handle_list("a", 25, &digest, all[..24].to_vec(), now);
        assert_eq!(b.holder(ids[24], now), None);
        let _ = b.handle_list("a", 25, &digest, all, now);
        assert!(ids.iter().all(|id| b.holder(*id, now) == Some("a")));
        // Now the views agree: the next heartbeat asks for nothing.
        let again = b.handle_message(a.heartbeat(), now);
        assert!(!again.fetch_list && !again.newcomer);
        // One release b missed: the digest differs, and b asks again.
        let _ = a.handle_local_released(ids[3], 3);
        assert!(b.handle_message(a.heartbeat(), now).fetch_list);
        // An empty list is one empty piece.
        assert_eq!(
            Presence::new("c", Duration::from_secs(3))
                .list_piece(0, 10)
                .map(|p| p.pieces),
            Some(1)
        );
    }

    #[test]
    fn a_heartbeat_stays_small_however_many_devices_the_node_holds() {
        let mut p = Presence::new("node-with-a-long-name-0123456789", Duration::from_secs(5));
        let small = wire::emit(&p.heartbeat(), b"").len();
        for i in 0..10_000u32 {
            let mut raw = [0u8; 12];
            raw[8..].copy_from_slice(&i.to_be_bytes());
            let _ = p.handle_local_held(DeviceId::from_bytes(raw), u64::from(i), 1_765_000_000_000);
        }
        let large = wire::emit(&p.heartbeat(), b"").len();
        assert!(large < 200, "{large} bytes");
        // Only the count's digits grow.
        assert!(large - small <= 4, "{small} -> {large}");
        // The heartbeat as it was, with every device listed, for comparison.
        let PresenceMessage::Heartbeat {
            node,
            lease_ms,
            count,
            digest,
            ..
        } = p.heartbeat()
        else {
            panic!("not a heartbeat")
        };
        let listed = p.list_piece(0, 10_000).map(|l| l.devices);
        let full = wire::emit(
            &PresenceMessage::Heartbeat {
                node,
                lease_ms,
                count,
                digest,
                devices: listed,
            },
            b"",
        )
        .len();
        eprintln!("heartbeat at 10,000 devices: {large} bytes; with the list: {full} bytes");
        assert!(full > 1000 * large);
        // The list under NATS' default limit of 1 MiB: 10,000 devices in one piece.
        assert_eq!(
            p.list_piece(0, wire::holdings_per_piece(1 << 20))
                .map(|l| l.pieces),
            Some(1)
        );
    }
}
