//! The plain data types of the registry.

use std::net::IpAddr;

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use session_core::{Data, Error, Result, SessionId, Value};
use tokio::sync::mpsc;

use crate::id::ConnId;

/// What the server knows about a connection when it opens (Dce `connect`'s `extra`, mqant's
/// `IP` and `Network`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnMeta {
    /// The client's IP address, if known.
    pub ip: Option<IpAddr>,
    /// The transport: `"ws"`, `"tcp"`, ... (at most 32 bytes of `[A-Za-z0-9._-]`).
    pub transport: String,
}

impl ConnMeta {
    /// Meta for a connection of `transport` from `ip`.
    pub fn new(transport: impl Into<String>, ip: Option<IpAddr>) -> Self {
        ConnMeta {
            ip,
            transport: transport.into(),
        }
    }
}

/// A registered connection, as the registry holds it (Dce's `FdForm`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnInfo {
    /// Its id (which names its node).
    pub id: ConnId,
    /// The client's IP address, if known.
    pub ip: Option<IpAddr>,
    /// The transport (`"ws"`, `"tcp"`, ...).
    pub transport: String,
    /// When it was opened, in milliseconds since the Unix epoch.
    pub opened_at_ms: u64,
    /// The HTTP session it was opened with, if any.
    #[serde(with = "opt_sid")]
    pub session: Option<SessionId>,
    /// The user it is bound to, if any.
    pub user: Option<String>,
}

/// What a connection's owner receives on the outbox it gave to [`Hub::open`](crate::Hub::open).
/// More kinds may come: match with a catch-all arm.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message sent with [`Hub::send`](crate::Hub::send): write it to the socket.
    Message(Bytes),
    /// Another connection took the user exclusively
    /// ([`Hub::bind_exclusive`](crate::Hub::bind_exclusive)); this one has been unbound already.
    /// Tell the client and close the socket, or keep it as a guest.
    Kicked,
    /// The HTTP session this connection was opened with has a new id (regenerated, rotated
    /// or logged in over HTTP): the registry links the connection to `new` already (Dce
    /// `renewSession`).
    SessionRenewed {
        /// The id it had.
        old: SessionId,
        /// The id it has now.
        new: SessionId,
    },
    /// The HTTP session this connection was opened with was logged in as `user`: the
    /// connection has been bound to `user` already.
    LoggedIn {
        /// The session.
        session: SessionId,
        /// Its owner.
        user: String,
    },
    /// The HTTP session this connection was opened with was logged out but lives on: the
    /// connection has been unbound from `user` already (it is a guest now).
    LoggedOut {
        /// The session.
        session: SessionId,
        /// The owner it had.
        user: String,
    },
    /// The HTTP session this connection was opened with ended (destroyed, logged out
    /// everywhere, past its absolute deadline): the connection has been unlinked from it and
    /// unbound already. Tell the client and close the socket, or keep it as a guest.
    SessionEnded {
        /// The session.
        session: SessionId,
    },
}

/// The sending half a connection's task reads its [`Event`]s from. Bounded: a message for a
/// connection whose outbox is full is dropped and not counted as delivered (at most once).
pub type Outbox = mpsc::Sender<Event>;

/// Whom [`Hub::send`](crate::Hub::send) delivers to.
#[derive(Clone, Copy, Debug)]
pub enum Target<'a> {
    /// One connection; routed by the node in its id, without a lookup.
    Conn(&'a ConnId),
    /// Every connection bound to a user, on every node.
    User(&'a str),
    /// Every connection opened with an HTTP session.
    Session(&'a SessionId),
    /// Every connection on every node.
    All,
}

/// How [`Hub::bind_with`](crate::Hub::bind_with) binds a connection to a user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindMode {
    /// Add this connection to the user's (several devices or tabs allowed).
    Add,
    /// Make it the user's only connection: the others are unbound and sent [`Event::Kicked`].
    Exclusive,
    /// Bind only if the user has no connection bound yet (imi `bindNx`).
    IfAbsent,
}

/// The result of a bind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BindOutcome {
    /// Whether the connection is now bound to the user (`false` only for a lost
    /// [`BindMode::IfAbsent`]).
    pub bound: bool,
    /// Connections unbound by [`BindMode::Exclusive`].
    pub kicked: Vec<ConnId>,
}

/// How far a message went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Connections of this node whose outbox took the message.
    pub local: usize,
    /// Other nodes the message was published to and that had a subscriber listening.
    pub nodes: usize,
    /// Nodes that acknowledged before the timeout ([`Hub::send_acked`](crate::Hub::send_acked)
    /// only; 0 for [`Hub::send`](crate::Hub::send)).
    pub acked: usize,
    /// Connections the acknowledging nodes reached ([`Hub::send_acked`](crate::Hub::send_acked)
    /// only).
    pub remote: usize,
}

/// One page of [`Hub::list_page`](crate::Hub::list_page).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnPage {
    /// The connections of this page.
    pub conns: Vec<ConnInfo>,
    /// The cursor of the next page; `None` when the listing is complete.
    pub next: Option<String>,
}

/// A connection's whole state (mqant's `Serializable` session): its info, its user and its
/// context data, as bytes that another process turns back into the same snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnSnapshot {
    /// The registry's record of the connection.
    pub info: ConnInfo,
    /// The context data (imi ConnectContext, mqant `Settings`).
    pub context: Data,
}

#[derive(Serialize, Deserialize)]
struct SnapshotWire {
    v: u8,
    info: ConnInfo,
    context: Vec<(String, Bytes)>,
}

impl ConnSnapshot {
    /// The snapshot as MessagePack bytes.
    pub fn to_bytes(&self) -> Result<Bytes> {
        let mut context: Vec<(String, Bytes)> = self
            .context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        context.sort_by(|a, b| a.0.cmp(&b.0));
        let wire = SnapshotWire {
            v: 1,
            info: self.info.clone(),
            context,
        };
        rmp_serde::to_vec_named(&wire)
            .map(Bytes::from)
            .map_err(Error::Encode)
    }

    /// A snapshot back from [`to_bytes`](Self::to_bytes); foreign bytes are an
    /// [`Error::Decode`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let wire: SnapshotWire = rmp_serde::from_slice(bytes).map_err(Error::Decode)?;
        if wire.v != 1 {
            return Err(Error::corrupt(
                "connect",
                format!("snapshot format version {} is unknown", wire.v),
            ));
        }
        Ok(ConnSnapshot {
            info: wire.info,
            context: wire
                .context
                .into_iter()
                .map(|(k, v)| (k, Value::from_bytes(v)))
                .collect(),
        })
    }

    /// One context value, decoded.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.context.get(key).map(Value::decode).transpose()
    }

    /// The user the connection is bound to.
    pub fn user(&self) -> Option<&str> {
        self.info.user.as_deref()
    }
}

/// Checks a transport name.
pub(crate) fn check_transport(t: &str) -> Result<()> {
    if t.is_empty()
        || t.len() > 32
        || !t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(Error::InvalidInput(
            "transport must be 1 to 32 bytes of [A-Za-z0-9._-]".into(),
        ));
    }
    Ok(())
}

/// Serde for `Option<SessionId>` (as text, validated on the way in).
mod opt_sid {
    use serde::{Deserialize, Deserializer, Serializer};
    use session_core::SessionId;

    pub fn serialize<S: Serializer>(id: &Option<SessionId>, s: S) -> Result<S::Ok, S::Error> {
        match id {
            Some(id) => s.serialize_some(id.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SessionId>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|t| SessionId::parse(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}
