//! Where a received firmware image goes: the [`FirmwareSink`] trait and a RAM sink.

/// What the cloud announced about an image (from UpdateBegin; sizes are 0 when it sent none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    /// The image size in bytes, or `None` when UpdateBegin had no payload (the Core's form).
    pub size: Option<u32>,
    /// The chunk size of the transfer.
    pub chunk_size: u16,
    /// The destination byte of UpdateBegin (0 firmware, 1 external flash, 128 application).
    pub destination: u8,
    /// The destination address.
    pub address: u32,
}

/// The storage an OTA image is written to (the Core's external flash, a file, RAM).
///
/// The session calls [`begin`](Self::begin) once per transfer, [`write`](Self::write) for every
/// chunk whose CRC-32 matched (offsets may come out of order and repeat in fast OTA),
/// [`finish`](Self::finish) only when every chunk arrived and the size is right, and
/// [`abort`](Self::abort) when the transfer fails or the session ends before it completes. A
/// sink must make the new image bootable only in `finish`: an aborted transfer leaves the
/// running firmware untouched.
pub trait FirmwareSink {
    /// Prepares for a new image (erase the staging area). An error refuses the update.
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError>;
    /// Writes `data` at byte `offset` of the image.
    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError>;
    /// Commits the complete image of `size` bytes. Every byte of it was written from a chunk
    /// whose CRC-32 matched; a sink that stores a whole-image checksum computes it here.
    fn finish(&mut self, size: u32) -> Result<(), SinkError>;
    /// Drops the partial image.
    fn abort(&mut self);
}

/// Why a sink refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    /// The image does not fit the storage.
    #[error("image does not fit: {required} bytes required")]
    InsufficientSize {
        /// The bytes the image needs.
        required: usize,
    },
    /// The storage failed to erase or write.
    #[error("storage write failed")]
    Storage,
    /// No transfer is in progress.
    #[error("no transfer in progress")]
    NotStarted,
}

/// A sink that refuses every update (a device without OTA).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFirmware;

impl FirmwareSink for NoFirmware {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        Err(SinkError::InsufficientSize {
            required: info.size.unwrap_or(0) as usize,
        })
    }
    fn write(&mut self, _: u32, _: &[u8]) -> Result<(), SinkError> {
        Err(SinkError::NotStarted)
    }
    fn finish(&mut self, _: u32) -> Result<(), SinkError> {
        Err(SinkError::NotStarted)
    }
    fn abort(&mut self) {}
}

/// A sink over a caller buffer: the staging area is `buf`, and the committed image is reported
/// as committed only after [`finish`](FirmwareSink::finish) (tests, RAM-loaded images).
#[derive(Debug)]
pub struct BufferSink<'b> {
    buf: &'b mut [u8],
    written: usize,
    active: bool,
    committed: Option<usize>,
    commits: usize,
    aborts: usize,
}

impl<'b> BufferSink<'b> {
    /// A sink staging into `buf`.
    pub fn new(buf: &'b mut [u8]) -> Self {
        BufferSink {
            buf,
            written: 0,
            active: false,
            committed: None,
            commits: 0,
            aborts: 0,
        }
    }

    /// The committed image, once a transfer has finished.
    #[must_use]
    pub fn committed(&self) -> Option<&[u8]> {
        self.committed.map(|n| &self.buf[..n])
    }

    /// How many transfers were committed and how many aborted.
    #[must_use]
    pub fn counts(&self) -> (usize, usize) {
        (self.commits, self.aborts)
    }

    /// Whether a transfer is in progress.
    #[must_use]
    pub fn is_active(&self) -> bool {
        self.active
    }
}

impl FirmwareSink for BufferSink<'_> {
    fn begin(&mut self, info: &ImageInfo) -> Result<(), SinkError> {
        if let Some(size) = info.size {
            let required = size as usize;
            if required > self.buf.len() {
                return Err(SinkError::InsufficientSize { required });
            }
        }
        self.committed = None;
        self.written = 0;
        self.active = true;
        Ok(())
    }

    fn write(&mut self, offset: u32, data: &[u8]) -> Result<(), SinkError> {
        if !self.active {
            return Err(SinkError::NotStarted);
        }
        let start = offset as usize;
        let end = start + data.len();
        let dst = self
            .buf
            .get_mut(start..end)
            .ok_or(SinkError::InsufficientSize { required: end })?;
        dst.copy_from_slice(data);
        self.written = self.written.max(end);
        Ok(())
    }

    fn finish(&mut self, size: u32) -> Result<(), SinkError> {
        if !self.active {
            return Err(SinkError::NotStarted);
        }
        if size as usize > self.buf.len() || (size as usize) < self.written {
            self.abort();
            return Err(SinkError::InsufficientSize {
                required: self.written.max(size as usize),
            });
        }
        self.active = false;
        self.committed = Some(size as usize);
        self.commits += 1;
        Ok(())
    }

    fn abort(&mut self) {
        if self.active {
            self.active = false;
            self.aborts += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(size: Option<u32>) -> ImageInfo {
        ImageInfo {
            size,
            chunk_size: 4,
            destination: 0,
            address: 0,
        }
    }

    #[test]
    fn buffer_sink_commits_only_on_finish() {
        let mut buf = [0u8; 8];
        let mut sink = BufferSink::new(&mut buf);
        assert_eq!(sink.write(0, b"ab"), Err(SinkError::NotStarted));
        assert_eq!(
            sink.begin(&info(Some(9))),
            Err(SinkError::InsufficientSize { required: 9 })
        );
        sink.begin(&info(Some(6))).unwrap();
        sink.write(4, b"ef").unwrap();
        sink.write(0, b"abcd").unwrap();
        assert_eq!(sink.committed(), None);
        assert_eq!(
            sink.write(6, b"xyz"),
            Err(SinkError::InsufficientSize { required: 9 })
        );
        sink.finish(6).unwrap();
        assert_eq!(sink.committed(), Some(&b"abcdef"[..]));
        assert_eq!(sink.counts(), (1, 0));
        assert_eq!(sink.finish(6), Err(SinkError::NotStarted));
    }

    #[test]
    fn aborted_or_short_images_are_not_committed() {
        let mut buf = [0u8; 8];
        let mut sink = BufferSink::new(&mut buf);
        sink.begin(&info(None)).unwrap();
        sink.write(0, b"abcd").unwrap();
        sink.abort();
        assert_eq!(sink.committed(), None);
        assert_eq!(sink.counts(), (0, 1));
        sink.begin(&info(None)).unwrap();
        sink.write(0, b"abcdef").unwrap();
        assert!(sink.finish(4).is_err(), "bytes past the declared size");
        assert_eq!(sink.committed(), None);
        assert!(NoFirmware.begin(&info(Some(1))).is_err());
    }
}
