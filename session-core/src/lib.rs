#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod check;
mod config;
mod context;
mod delta;
pub mod driver;
mod error;
mod events;
mod expiry;
#[cfg(feature = "axum")]
mod extract;
#[cfg(feature = "actix")]
mod extract_actix;
#[doc(hidden)]
pub mod fuzzing;
mod id;
mod manager;
mod meta;
mod outcome;
mod purge;
mod reserved;
mod session;
mod snapshot;
mod state;
mod storage;
mod value;

pub use error::{BoxError, Error, Result};
pub use events::{Observation, SessionEvent, SessionObserver};
pub use id::{IncomingId, LockToken, SessionId};
pub use snapshot::{Packed, Snapshot, ValueRef};
pub use storage::{Capabilities, ChangeSet, Loaded, ScanPage, Storage};
pub use value::{Data, Value};

pub use config::{Config, LockPolicy};
#[cfg(feature = "axum")]
pub use extract::MissingSessionLayer;
#[cfg(feature = "actix")]
pub use extract_actix::MissingSessionMiddleware;
pub use manager::{Manager, SessionInfo};
pub use meta::{ClientInfo, MAX_USER_AGENT_LEN, SessionMeta};
pub use outcome::{CookieAction, SaveOutcome};
pub use purge::{PurgeStats, PurgeTask};
pub use reserved::RESERVED_PREFIX;
pub use session::Session;

/// Re-exported so drivers implement [`Driver`](driver::Driver) with the same macro version.
pub use async_trait::async_trait;
