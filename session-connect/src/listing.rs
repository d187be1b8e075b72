//! Dce's listings on top of the registry's cursor: filters (user, node, a glob over user names),
//! offset-and-limit pages, and the lookup of a connection by its node's address and local
//! number (Dce `getFdForm(fd, host, port)`).

use session_core::{Error, Result, check};

use crate::hub::Hub;
use crate::id::{ConnId, NodeId};
use crate::types::{ConnInfo, ConnPage};

/// Which connections a filtered listing returns (every condition set must hold).
///
/// ```
/// use session_connect::ConnFilter;
///
/// let admins_anywhere = ConnFilter::default().user_glob("admin-*")?;
/// assert!(admins_anywhere.matches_user(Some("admin-7")));
/// assert!(!admins_anywhere.matches_user(Some("guest")));
/// assert!(!admins_anywhere.matches_user(None));
/// # Ok::<(), session_core::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct ConnFilter {
    user: Option<String>,
    node: Option<NodeId>,
    glob: Option<glob::Pattern>,
    bound: Option<bool>,
}

impl ConnFilter {
    /// Only connections bound to `user` (looked up in the user's set, not by a walk).
    pub fn user(mut self, user: &str) -> Result<Self> {
        check::owner(user)?;
        self.user = Some(user.to_string());
        Ok(self)
    }

    /// Only connections of `node`.
    pub fn node(mut self, node: NodeId) -> Self {
        self.node = Some(node);
        self
    }

    /// Only connections bound to a user whose name matches the shell-style `pattern` (`*`, `?`,
    /// `[abc]`, `[!abc]`; the `glob` crate's syntax). Fails with [`Error::InvalidInput`] for a
    /// malformed pattern.
    pub fn user_glob(mut self, pattern: &str) -> Result<Self> {
        let p = glob::Pattern::new(pattern)
            .map_err(|e| Error::InvalidInput(format!("user pattern {pattern:?}: {e}")))?;
        self.glob = Some(p);
        Ok(self)
    }

    /// Only bound connections (`true`) or only guests' (`false`).
    pub fn bound(mut self, bound: bool) -> Self {
        self.bound = Some(bound);
        self
    }

    /// Whether a connection bound to `user` (or to nobody) passes the user conditions.
    pub fn matches_user(&self, user: Option<&str>) -> bool {
        if self.user.is_some() && self.user.as_deref() != user {
            return false;
        }
        if let Some(g) = &self.glob
            && !user.is_some_and(|u| g.matches(u))
        {
            return false;
        }
        self.bound.is_none_or(|b| b == user.is_some())
    }

    /// Whether `info` passes every condition.
    pub fn matches(&self, info: &ConnInfo) -> bool {
        self.node.as_ref().is_none_or(|n| info.id.is_on(n))
            && self.matches_user(info.user.as_deref())
    }
}

impl Hub {
    /// One page of the connections that pass `filter` (Dce `listFdForm` with a filter): like
    /// [`list_page`](Self::list_page), whose cursor it takes and returns. With
    /// [`ConnFilter::user`] the user's connections come in one page (one lookup); otherwise the
    /// whole registry is walked a page at a time and filtered, so a page may hold fewer than
    /// `limit` (even none) while more follow.
    pub async fn list_filtered(
        &self,
        cursor: Option<&str>,
        limit: usize,
        filter: &ConnFilter,
    ) -> Result<ConnPage> {
        if let Some(user) = &filter.user {
            let conns: Vec<ConnId> = self
                .conns_of(user)
                .await?
                .into_iter()
                .filter(|c| filter.node.as_ref().is_none_or(|n| c.is_on(n)))
                .collect();
            let infos = self.backend().info(&conns).await?;
            let mut conns: Vec<ConnInfo> = infos
                .into_iter()
                .flatten()
                .filter(|i| filter.matches(i))
                .collect();
            conns.sort_by(|a, b| a.id.cmp(&b.id));
            return Ok(ConnPage { conns, next: None });
        }
        let mut page = self.list_page(cursor, limit).await?;
        page.conns.retain(|i| filter.matches(i));
        Ok(page)
    }

    /// The connections that pass `filter`, `limit` of them after skipping `offset` (Dce
    /// `listFdForm(offset, limit)`), in the registry's listing order. Walks the listing from the
    /// start each time, so the cost grows with `offset + limit`; for a long listing prefer the
    /// cursor of [`list_filtered`](Self::list_filtered). Connections opened or closed between
    /// two calls shift the pages.
    pub async fn list_range(
        &self,
        offset: usize,
        limit: usize,
        filter: &ConnFilter,
    ) -> Result<Vec<ConnInfo>> {
        let wanted = offset.saturating_add(limit);
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .list_filtered(cursor.as_deref(), limit.clamp(16, 1000), filter)
                .await?;
            out.extend(page.conns);
            if out.len() >= wanted {
                break;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(out.into_iter().skip(offset).take(limit).collect())
    }

    /// The connection number `seq` of the server at `host:port` (Dce `getFdForm(fd, host,
    /// port)`), in that server's current run (the living node with that address, the latest
    /// boot if several); `None` if there is no such node or connection.
    pub async fn find_conn(&self, host: &str, port: u16, seq: u64) -> Result<Option<ConnInfo>> {
        // validates host and port the way node ids do
        let addr = NodeId::new(host, port, 0)?.addr().to_string();
        let node = self
            .nodes()
            .await?
            .into_iter()
            .filter(|n| n.addr() == addr)
            .max_by_key(NodeId::epoch);
        let Some(node) = node else {
            return Ok(None);
        };
        self.info(&ConnId::new(&node, seq)).await
    }
}
