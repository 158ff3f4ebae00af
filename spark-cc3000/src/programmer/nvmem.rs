//! The four NVMEM calls a port implements to run the programmer on real hardware.

use crate::nvmem::FileId;
use crate::patch::ServicePack;

/// Access to a CC3000's NVMEM: what a port to another MCU implements.
///
/// The chip must have been started without EEPROM patches (`SIMPLE_LINK_START` with
/// [`PatchSource::ForceNone`](crate::hci::PatchSource::ForceNone)) so that every file may be rewritten.
///
/// Beware of the two host-driver conventions for `nvmem_read`: TI's returns a status byte (0 = success), Spark's
/// core-common-lib returns the number of bytes read. An implementation returns `Ok` only when `buf` was filled
/// completely, whichever convention its driver follows.
pub trait Nvmem {
    /// The driver's error.
    type Error;

    /// Reads `buf.len()` bytes of `file` from `offset`.
    fn read(&mut self, file: FileId, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error>;

    /// Writes `data` to `file` at `offset` (`nvmem_write`); the programmer never sends more than its configured
    /// chunk (32 bytes by default, what a TINY-driver host can carry).
    fn write(&mut self, file: FileId, offset: u32, data: &[u8]) -> Result<(), Self::Error>;

    /// (Re)allocates user file `file` with `len` bytes (`nvmem_create_entry`; 0 marks it invalid).
    fn create_entry(&mut self, file: FileId, len: u32) -> Result<(), Self::Error>;

    /// Reads the service-pack version (`nvmem_read_sp_version`).
    fn read_sp_version(&mut self) -> Result<ServicePack, Self::Error>;
}

impl<N: Nvmem + ?Sized> Nvmem for &mut N {
    type Error = N::Error;

    fn read(&mut self, file: FileId, offset: u32, buf: &mut [u8]) -> Result<(), Self::Error> {
        (**self).read(file, offset, buf)
    }

    fn write(&mut self, file: FileId, offset: u32, data: &[u8]) -> Result<(), Self::Error> {
        (**self).write(file, offset, data)
    }

    fn create_entry(&mut self, file: FileId, len: u32) -> Result<(), Self::Error> {
        (**self).create_entry(file, len)
    }

    fn read_sp_version(&mut self) -> Result<ServicePack, Self::Error> {
        (**self).read_sp_version()
    }
}
