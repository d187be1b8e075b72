//! Node and connection ids: text that carries its route.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use session_core::{Error, Result};

/// Longest node id or connection id accepted by the parsers, in bytes.
pub const MAX_ID_LEN: usize = 300;

/// One run of a server: `"{host}:{port}.{boot_epoch}"`, for example `"10.0.0.7:9000.1718000000123"`.
///
/// `host:port` is the address the server announces; the boot epoch is chosen by the backend at
/// [`Hub`](crate::Hub) start (milliseconds since the Unix epoch, strictly greater than any earlier
/// epoch of the same address), so a restarted server never reuses the ids of its previous run.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(Arc<str>);

impl NodeId {
    /// Builds a node id from its parts, checking the host.
    pub fn new(host: &str, port: u16, epoch: u64) -> Result<Self> {
        check_host(host)?;
        Ok(NodeId(format!("{host}:{port}.{epoch}").into()))
    }

    /// Parses and validates a node id.
    pub fn parse(text: &str) -> Result<Self> {
        parse_node(text)?;
        Ok(NodeId(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `"{host}:{port}"`: the address part, shared by every run of the same server.
    pub fn addr(&self) -> &str {
        parse_node(&self.0).map(|p| p.addr).unwrap_or_default()
    }

    /// The boot epoch of this run.
    pub fn epoch(&self) -> u64 {
        parse_node(&self.0).map(|p| p.epoch).unwrap_or_default()
    }
}

/// One connection: `"{node}/{seq}"`, for example `"10.0.0.7:9000.1718000000123/42"`.
///
/// The node part says which server holds the socket, so a message for a connection is routed
/// without any lookup (Dce's `host:port/fd`). Sequence numbers start at 1 on each run and are
/// never reused within it; with the boot epoch in the node part, an id is never reused at all.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConnId(Arc<str>);

impl ConnId {
    /// The id of connection number `seq` of `node`.
    pub fn new(node: &NodeId, seq: u64) -> Self {
        ConnId(format!("{}/{seq}", node.as_str()).into())
    }

    /// Parses and validates a connection id that came from outside (a client, a message).
    pub fn parse(text: &str) -> Result<Self> {
        split_conn(text)?;
        Ok(ConnId(text.into()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The node that holds this connection.
    pub fn node(&self) -> NodeId {
        let node = self.0.rsplit_once('/').map(|(n, _)| n).unwrap_or_default();
        NodeId(node.into())
    }

    /// Whether this connection lives on `node` (no allocation).
    pub fn is_on(&self, node: &NodeId) -> bool {
        self.0.rsplit_once('/').map(|(n, _)| n) == Some(node.as_str())
    }

    /// The sequence number within its node.
    pub fn seq(&self) -> u64 {
        split_conn(&self.0).map(|(_, s)| s).unwrap_or_default()
    }
}

struct NodeParts<'a> {
    addr: &'a str,
    epoch: u64,
}

fn invalid(what: &str) -> Error {
    Error::InvalidInput(what.to_string())
}

fn check_host(host: &str) -> Result<()> {
    if host.is_empty() || host.len() > 255 {
        return Err(invalid("node host must be 1 to 255 bytes"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']'))
    {
        return Err(invalid(
            "node host may only hold [A-Za-z0-9._-] and, for IPv6, ':' '[' ']'",
        ));
    }
    Ok(())
}

fn parse_node(text: &str) -> Result<NodeParts<'_>> {
    if text.len() > MAX_ID_LEN {
        return Err(invalid("node id too long"));
    }
    let (addr, epoch) = text
        .rsplit_once('.')
        .ok_or_else(|| invalid("node id must look like host:port.epoch"))?;
    let epoch: u64 = epoch
        .parse()
        .map_err(|_| invalid("node id epoch is not a number"))?;
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| invalid("node id must look like host:port.epoch"))?;
    port.parse::<u16>()
        .map_err(|_| invalid("node id port is not a port number"))?;
    check_host(host)?;
    Ok(NodeParts { addr, epoch })
}

fn split_conn(text: &str) -> Result<(&str, u64)> {
    if text.len() > MAX_ID_LEN {
        return Err(invalid("connection id too long"));
    }
    let (node, seq) = text
        .rsplit_once('/')
        .ok_or_else(|| invalid("connection id must look like host:port.epoch/seq"))?;
    let seq: u64 = seq
        .parse()
        .map_err(|_| invalid("connection id sequence is not a number"))?;
    parse_node(node)?;
    Ok((node, seq))
}

macro_rules! text_impls {
    ($t:ident) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($t), &self.0)
            }
        }
        impl FromStr for $t {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                $t::parse(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = Error;
            fn try_from(s: String) -> Result<Self> {
                $t::parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(id: $t) -> String {
                id.0.to_string()
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

text_impls!(NodeId);
text_impls!(ConnId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_route() {
        let node = NodeId::new("10.0.0.7", 9000, 17).expect("valid");
        assert_eq!(node.as_str(), "10.0.0.7:9000.17");
        assert_eq!(node.addr(), "10.0.0.7:9000");
        assert_eq!(node.epoch(), 17);
        let conn = ConnId::new(&node, 42);
        assert_eq!(conn.as_str(), "10.0.0.7:9000.17/42");
        assert_eq!(conn.node(), node);
        assert!(conn.is_on(&node));
        assert_eq!(conn.seq(), 42);
        assert_eq!(ConnId::parse(conn.as_str()).expect("parses"), conn);
        let v6 = NodeId::new("[::1]", 80, 1).expect("ipv6");
        assert_eq!(v6.addr(), "[::1]:80");
    }

    #[test]
    fn bad_ids_are_rejected() {
        for bad in [
            "",
            "host",
            "host:1.2",
            "host:99999.1/1",
            "ho st:1.1/1",
            "h:1.1/x",
            "h:1.x/1",
            "h*:1.1/1",
        ] {
            assert!(ConnId::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(NodeId::new("a/b", 1, 1).is_err());
        assert!(NodeId::parse("h:1.1").is_ok());
    }
}
