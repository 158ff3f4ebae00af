//! The Flasher: sends a firmware image to the device, stop-and-wait or fast OTA.
//!
//! The sequence and the timers are the original server's (`Flasher.js`): UpdateBegin with the
//! 12-byte parameters, waiting 6 s for UpdateReady, three times, then once more without parameters
//! waiting 90 s; then the chunks — one at a time, each answered by ChunkReceived (stop-and-wait),
//! or all back to back with their index (fast OTA, when the device accepts it) — then UpdateDone.
//! A ChunkMissed is acknowledged and its chunks sent again; more than `max_missed_chunks` fail
//! the transfer, and a watchdog bounds the whole of it. The last chunk is zero-padded to the chunk
//! size and its CRC taken over the padded bytes, as the original server does.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use super::types::{OtaError, OtaEvent, OtaOptions, OtaReport, RequestError, RequestId};
use super::{CloudEvent, Outbox, Pending, Waiting};
use crate::session::Instant;
use crate::wire::message::{Chunk, UpdateBegin, UpdateDone};
use crate::wire::ota::UpdateParams;
use crate::wire::{Code, Header, Message};

/// The largest chunk this flasher sends (Device OS announces at most 1024; the original server
/// sent 256 and allowed 594).
pub(super) const MAX_CHUNK_SIZE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// UpdateBegin try `tries` (1..=4) sent with `token`.
    Begin {
        tries: u8,
        token: u8,
        deadline: Instant,
    },
    /// Chunks going out.
    Sending,
    /// UpdateDone sent with `token`.
    Done { token: u8, deadline: Instant },
    /// Ended (the result has been reported).
    Finished,
}

pub(super) struct Flasher {
    request: RequestId,
    image: Vec<u8>,
    chunk_size: u16,
    chunks: u16,
    options: OtaOptions,
    fast: bool,
    phase: Phase,
    watchdog: Instant,
    /// Chunks to send next, in order.
    to_send: VecDeque<u16>,
    /// Stop-and-wait: the chunk in flight and its token.
    awaiting: Option<(u8, u16)>,
    /// Chunks sent at least once (they are always first sent in order).
    first_sent: u32,
    /// Tokens this transfer holds in the outbox.
    tokens: Vec<u8>,
    missed: u32,
    resent: u32,
    bytes_sent: u64,
}

impl Flasher {
    pub(super) fn start(
        now: Instant,
        request: RequestId,
        image: Vec<u8>,
        chunk_size: u16,
        options: OtaOptions,
        out: &mut Outbox,
    ) -> Result<Flasher, RequestError> {
        if image.is_empty() {
            return Err(RequestError::InvalidImage("empty image"));
        }
        if chunk_size == 0 || usize::from(chunk_size) > MAX_CHUNK_SIZE {
            return Err(RequestError::InvalidImage("chunk size not in 1..=4096"));
        }
        let chunks = image.len().div_ceil(usize::from(chunk_size));
        let chunks = u16::try_from(chunks)
            .map_err(|_| RequestError::InvalidImage("more than 65535 chunks"))?;
        if u32::try_from(image.len()).is_err() {
            return Err(RequestError::InvalidImage("larger than 4 GiB"));
        }
        let mut f = Flasher {
            request,
            image,
            chunk_size,
            chunks,
            options,
            fast: false,
            phase: Phase::Finished,
            watchdog: now + options.watchdog,
            to_send: VecDeque::new(),
            awaiting: None,
            first_sent: 0,
            tokens: Vec::new(),
            missed: 0,
            resent: 0,
            bytes_sent: 0,
        };
        f.send_begin(now, 1, out)?;
        Ok(f)
    }

    fn params(&self) -> UpdateParams {
        UpdateParams {
            flags: if self.options.fast {
                UpdateParams::FAST_OTA
            } else {
                0
            },
            chunk_size: self.chunk_size,
            // Checked in `start`.
            file_size: u32::try_from(self.image.len()).unwrap_or(u32::MAX),
            destination: self.options.destination,
            address: self.options.address,
        }
    }

    /// Queues a request owned by the transfer; returns its token.
    fn send<'m>(
        &mut self,
        out: &mut Outbox,
        build: impl FnOnce(Header) -> Message<'m>,
    ) -> Result<u8, RequestError> {
        let token = out.token().ok_or(RequestError::TooManyInFlight)?;
        let message_id = out.next_id.wrapping_add(1);
        out.push(&build(Header::con(message_id).with_token(token)))
            .map_err(RequestError::Encode)?;
        out.next_id = message_id;
        out.next_token = token;
        out.pending.push(Pending {
            token,
            message_id,
            waiting: Waiting::Ota,
            deadline: None,
        });
        self.tokens.push(token);
        Ok(token)
    }

    fn drop_token(&mut self, out: &mut Outbox, token: u8) {
        out.take_by_token(token);
        self.tokens.retain(|&t| t != token);
    }

    fn send_begin(
        &mut self,
        now: Instant,
        tries: u8,
        out: &mut Outbox,
    ) -> Result<(), RequestError> {
        if let Phase::Begin { token, .. } = self.phase {
            self.drop_token(out, token);
        }
        // Tries 1 to 3 carry the parameters; the fourth, for devices that reject them, none.
        let params = (tries <= 3).then(|| self.params());
        let wait = if tries <= 3 {
            self.options.ready_timeout
        } else {
            self.options.last_ready_timeout
        };
        let token = self.send(out, |header| {
            Message::UpdateBegin(UpdateBegin { header, params })
        })?;
        self.phase = Phase::Begin {
            tries,
            token,
            deadline: now + wait,
        };
        Ok(())
    }

    pub(super) fn is_finished(&self) -> bool {
        self.phase == Phase::Finished
    }

    /// Gives the transfer's tokens back.
    pub(super) fn release(self, out: &mut Outbox) {
        out.pending
            .retain(|p| !(p.waiting == Waiting::Ota && self.tokens.contains(&p.token)));
    }

    pub(super) fn max_message_len(&self) -> usize {
        // Header, token, `b1 63`, the CRC and index options, the payload marker, the chunk.
        usize::from(self.chunk_size) + 24
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Finished => None,
            Phase::Begin { deadline, .. } | Phase::Done { deadline, .. } => {
                Some(deadline.min(self.watchdog))
            }
            Phase::Sending => Some(self.watchdog),
        }
    }

    fn event(&self, events: &mut VecDeque<CloudEvent>, event: OtaEvent) {
        events.push_back(CloudEvent::Ota {
            request: self.request,
            event,
        });
    }

    pub(super) fn fail(&mut self, error: OtaError, events: &mut VecDeque<CloudEvent>) {
        if self.phase == Phase::Finished {
            return;
        }
        self.phase = Phase::Finished;
        self.event(events, OtaEvent::Finished(Err(error)));
    }

    fn succeed(&mut self, events: &mut VecDeque<CloudEvent>) {
        self.phase = Phase::Finished;
        let report = OtaReport {
            image_len: self.image.len(),
            chunk_size: self.chunk_size,
            chunks: self.chunks,
            chunks_resent: self.resent,
            fast: self.fast,
        };
        self.event(events, OtaEvent::Finished(Ok(report)));
    }

    pub(super) fn handle_timeout(
        &mut self,
        now: Instant,
        out: &mut Outbox,
        events: &mut VecDeque<CloudEvent>,
    ) {
        if self.phase == Phase::Finished {
            return;
        }
        if now >= self.watchdog {
            self.fail(OtaError::Watchdog, events);
            return;
        }
        match self.phase {
            Phase::Begin {
                tries, deadline, ..
            } if now >= deadline => {
                if tries >= 4 {
                    self.fail(OtaError::ReadyTimeout, events);
                } else if let Err(e) = self.send_begin(now, tries + 1, out) {
                    let _ = e;
                    self.fail(OtaError::ReadyTimeout, events);
                }
            }
            Phase::Done { deadline, .. } if now >= deadline => {
                self.fail(OtaError::DoneTimeout, events);
            }
            _ => {}
        }
    }

    /// A reply carrying one of the transfer's tokens.
    pub(super) fn handle_reply(
        &mut self,
        now: Instant,
        token: u8,
        code: Code,
        payload: &[u8],
        out: &mut Outbox,
        events: &mut VecDeque<CloudEvent>,
    ) {
        let failed = code.class() >= 4;
        match self.phase {
            Phase::Begin { token: t, .. } if t == token => {
                if failed {
                    self.fail(OtaError::Rejected(code), events);
                    return;
                }
                // UpdateReady; Device OS adds a flags byte, bit 0 = fast OTA accepted. The token
                // stays reserved: fast-OTA chunks carry it.
                let accepted = payload
                    .first()
                    .is_some_and(|f| f & UpdateParams::FAST_OTA != 0);
                self.fast = self.options.fast && accepted;
                self.phase = Phase::Sending;
                if self.fast {
                    self.to_send.extend(0..self.chunks);
                } else {
                    self.to_send.push_back(0);
                }
                self.event(
                    events,
                    OtaEvent::Ready {
                        fast: self.fast,
                        chunk_size: self.chunk_size,
                    },
                );
            }
            Phase::Sending if self.awaiting.is_some_and(|(t, _)| t == token) => {
                let Some((_, index)) = self.awaiting.take() else {
                    return;
                };
                self.drop_token(out, token);
                if code == Code::Changed {
                    if index + 1 < self.chunks {
                        self.push_chunk(index + 1);
                    }
                } else if code == Code::BadRequest {
                    // ChunkReceived BAD: the CRC did not match; send it again.
                    if self.count_missed(1, events) {
                        self.push_chunk(index);
                    }
                } else {
                    self.fail(OtaError::Rejected(code), events);
                }
            }
            Phase::Done { token: t, .. } if t == token => {
                if !failed {
                    self.succeed(events);
                } else if code == Code::BadRequest {
                    // Device OS: incomplete; its ChunkMissed follows. Keep waiting.
                    self.drop_token(out, token);
                    self.phase = Phase::Done {
                        token,
                        deadline: now + self.options.done_timeout,
                    };
                } else {
                    self.fail(OtaError::Rejected(code), events);
                }
            }
            _ => {
                // A late answer to an earlier UpdateBegin try or a chunk sent again.
                if self.tokens.first() != Some(&token) {
                    self.drop_token(out, token);
                }
            }
        }
    }

    fn push_chunk(&mut self, index: u16) {
        if !self.to_send.contains(&index) {
            self.to_send.push_back(index);
        }
    }

    /// Counts `n` more missed chunks; fails the transfer past the limit.
    fn count_missed(&mut self, n: u32, events: &mut VecDeque<CloudEvent>) -> bool {
        self.missed = self.missed.saturating_add(n);
        if self.missed > self.options.max_missed_chunks {
            self.fail(OtaError::TooManyMissedChunks { count: self.missed }, events);
            return false;
        }
        true
    }

    /// A ChunkMissed (already acknowledged).
    pub(super) fn handle_missed(
        &mut self,
        now: Instant,
        indices: &[u16],
        events: &mut VecDeque<CloudEvent>,
    ) {
        if matches!(self.phase, Phase::Finished | Phase::Begin { .. }) {
            return;
        }
        let mut n = 0u32;
        for &index in indices {
            if index >= self.chunks {
                self.fail(
                    OtaError::BadChunkIndex {
                        index,
                        chunks: self.chunks,
                    },
                    events,
                );
                return;
            }
            n += 1;
        }
        if !self.count_missed(n, events) {
            return;
        }
        for &index in indices {
            if self.awaiting.is_some_and(|(_, i)| i == index) {
                // The chunk in flight was lost; its token is released when it is sent again.
                self.awaiting = None;
            }
            self.push_chunk(index);
        }
        if let Phase::Done { .. } = self.phase {
            // Send the missing chunks, then UpdateDone again.
            self.phase = Phase::Sending;
        }
        let _ = now;
    }

    /// Queues the next chunk (or UpdateDone) when the transport has room.
    pub(super) fn poll_chunk(
        &mut self,
        now: Instant,
        out: &mut Outbox,
        events: &mut VecDeque<CloudEvent>,
    ) {
        if self.phase != Phase::Sending || self.awaiting.is_some() {
            return;
        }
        let Some(index) = self.to_send.pop_front() else {
            match self.send(out, |header| {
                Message::UpdateDone(UpdateDone {
                    header,
                    result: &[],
                })
            }) {
                Ok(token) => {
                    self.phase = Phase::Done {
                        token,
                        deadline: now + self.options.done_timeout,
                    }
                }
                Err(_) => self.fail(OtaError::Rejected(Code::InternalServerError), events),
            }
            return;
        };
        let size = usize::from(self.chunk_size);
        let start = usize::from(index) * size;
        let end = (start + size).min(self.image.len());
        let mut data = vec![0u8; size];
        data[..end - start].copy_from_slice(&self.image[start..end]);
        let data = if self.options.pad_last_chunk {
            &data[..]
        } else {
            &data[..end - start]
        };
        if u32::from(index) < self.first_sent {
            self.resent += 1;
        } else {
            self.first_sent = u32::from(index) + 1;
        }
        let sent = if self.fast {
            let Some(&token) = self.tokens.first() else {
                self.fail(OtaError::Rejected(Code::InternalServerError), events);
                return;
            };
            let id = out.id();
            // A fast-OTA chunk is never acknowledged; over UDP a confirmable one would be sent
            // again and again, so there it is non-confirmable and ChunkMissed recovers losses.
            let header = if out.datagram {
                Header::non(id)
            } else {
                Header::con(id)
            }
            .with_token(token);
            out.push(&Message::Chunk(Chunk::new(header, Some(index), data)))
                .map(|_| ())
                .map_err(RequestError::Encode)
        } else {
            // Over UDP a chunk sent again (after ChunkMissed) can arrive after its successor's
            // turn, so it names its index; the TCP dialect's stop-and-wait chunks do not.
            let indexed = out.datagram.then_some(index);
            self.send(out, |header| {
                Message::Chunk(Chunk::new(header, indexed, data))
            })
            .map(|token| self.awaiting = Some((token, index)))
        };
        if sent.is_err() {
            self.fail(OtaError::Rejected(Code::InternalServerError), events);
            return;
        }
        self.bytes_sent += data.len() as u64;
        self.event(
            events,
            OtaEvent::Progress {
                bytes_sent: self.bytes_sent,
                total: self.image.len(),
                chunks_resent: self.resent,
            },
        );
    }
}
