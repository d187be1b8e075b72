//! The behaviour suite on Redis: every node of a case opens its own `RedisBackend` (own
//! connections, own subscription) on one per-case prefix, deleted after the case.
#![allow(clippy::unwrap_used)]

mod common;

behaviour_suite!(common::redis_fixture);
