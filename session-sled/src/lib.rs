#![doc = include_str!("../README.md")]

mod builder;
#[doc(hidden)]
pub mod fuzzing;
mod merge;
mod store;
mod trees;
mod write;

pub use builder::{Flush, SledStoreBuilder};
pub use store::SledStore;

/// Name of this driver, as [`Storage::name`](session_core::Storage::name) reports it (and the
/// backend named in its errors).
pub const NAME: &str = "sled";
