#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod check;
mod config;
pub mod driver;
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

/// Re-exported so drivers implement [`Driver`](driver::Driver) with the same macro version.
pub use async_trait::async_trait;
