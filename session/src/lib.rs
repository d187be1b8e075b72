#![doc = include_str!("../README.md")]

pub use session_core::*;

/// The in-memory driver (feature `memory`, on by default).
#[cfg(feature = "memory")]
pub use session_memory as memory;
