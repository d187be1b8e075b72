#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod backend;
mod context;
mod hub;
mod id;
mod keeper;
mod listing;
mod memory;
#[cfg(feature = "redis")]
mod redis_backend;
#[cfg(feature = "redis")]
mod redis_builder;
mod types;

pub use backend::{Backend, Channel, CtxWrite, NodeEntry};
pub use context::{Context, ContextData, MAX_UPDATE_ATTEMPTS};
pub use hub::{ConnCursor, DEFAULT_BEAT, GuestJudge, Hub, HubBuilder, MISSED_BEATS};
pub use id::{ConnId, MAX_ID_LEN, NodeId};
pub use keeper::{BackendKeeper, ConnKeeper, Kept};
pub use listing::ConnFilter;
pub use memory::MemoryBackend;
#[cfg(feature = "redis")]
pub use redis_backend::RedisBackend;
#[cfg(feature = "redis")]
pub use redis_builder::{DEFAULT_PREFIX, DEFAULT_RESPONSE_TIMEOUT, RedisBackendBuilder};
pub use types::{
    BindMode, BindOutcome, ConnInfo, ConnMeta, ConnPage, ConnSnapshot, Delivery, Event, Outbox,
    Target,
};
