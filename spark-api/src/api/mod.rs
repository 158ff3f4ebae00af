//! The endpoints, grouped by resource. Each file adds methods to [`crate::Client`].

mod devices;
mod events;
mod firmware;
mod tokens;
mod webhooks;

pub use events::{DisconnectReason, EventStream, StreamItem};
