//! The core of the session framework: the [`Storage`] trait that every driver implements, the
//! types it speaks ([`SessionId`], [`Value`], [`Data`], [`Error`]), and the input checks every
//! driver shares ([`check`]).
//!
//! ```
//! use session_core::{SessionId, Value, check};
//! use std::time::Duration;
//!
//! let id = SessionId::generate()?;                    // 192 bits from the OS CSPRNG
//! let v = Value::encode(&("cart", 3u32))?;            // MessagePack bytes
//! assert_eq!(v.decode::<(String, u32)>()?, ("cart".to_string(), 3));
//! assert_eq!(check::ttl_millis(Duration::from_micros(1500))?, 2); // never rounds down
//! assert!(SessionId::parse("../etc/passwd").is_err());
//! # let _ = id;
//! # Ok::<(), session_core::Error>(())
//! ```
#![warn(missing_docs)]

pub mod check;
mod config;
mod error;
mod id;
mod manager;
mod meta;
mod session;
mod state;
mod storage;
mod value;

pub use error::{BoxError, Error, Result};
pub use id::{LockToken, SessionId};
pub use storage::{Capabilities, ChangeSet, Loaded, ScanPage, Storage};
pub use value::{Data, Value};

pub use config::{Config, LockPolicy};
pub use manager::{Manager, SessionInfo};
pub use meta::{ClientInfo, MAX_USER_AGENT_LEN, RESERVED_PREFIX, SessionMeta};
pub use session::{CookieAction, SaveOutcome, Session};

/// Re-exported so drivers implement [`Storage`] with the same macro version.
pub use async_trait::async_trait;
