#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod builder;
mod owners;
mod record;
mod store;
#[cfg(test)]
mod tests;

pub use builder::MemoryStoreBuilder;
pub use store::MemoryStore;

/// The driver's name ([`Storage::name`](session_core::Storage::name)).
pub const NAME: &str = "memory";

/// Default bound on the number of sessions a [`MemoryStore`] holds.
pub const DEFAULT_MAX_SESSIONS: u64 = 100_000;
