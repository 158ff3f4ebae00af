//! A hostile USB device's answers, read from the fuzz input: one tag byte a transfer, naming a
//! transfer error or, past the errors, how many bytes an IN transfer returns (taken from the
//! input after it). Shared by the DFU host and the run-time detach targets.

use spark_dfu::host::TransferError;

/// The transfer errors a tag names, in tag order; a target takes those its machine can meet.
pub static ERRORS: [TransferError; 5] = [
    TransferError::Stall,
    TransferError::Disconnected,
    TransferError::Io,
    TransferError::Unsupported,
    TransferError::Timeout,
];

/// The input still to answer from, the errors its first tags name, and how many bytes a length
/// tag stands for.
pub struct Replies<'a> {
    pub rest: &'a [u8],
    pub errors: &'static [TransferError],
    pub scale: usize,
}

impl Replies<'_> {
    /// The answer to a transfer of at most `n` bytes; `None` once the input is spent.
    pub fn next(&mut self, n: usize) -> Option<Result<Vec<u8>, TransferError>> {
        let (&tag, rest) = self.rest.split_first()?;
        self.rest = rest;
        if let Some(&e) = self.errors.get(usize::from(tag)) {
            return Some(Err(e));
        }
        let take = (usize::from(tag) * self.scale).min(n).min(self.rest.len());
        let (answer, rest) = self.rest.split_at(take);
        self.rest = rest;
        Some(Ok(answer.to_vec()))
    }
}
