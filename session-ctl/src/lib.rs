#![doc = include_str!("../README.md")]

pub mod admin;
pub mod cli;
pub mod confirm;
pub mod error;
pub mod inspect;
pub mod record;
pub mod spec;
pub mod table;
pub mod time;
pub mod transfer;

pub use error::{CtlError, Result};
pub use spec::{Open, Spec};
