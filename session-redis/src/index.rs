//! The owner index on a Redis Cluster, where an owner's set and its sessions' keys live in
//! different slots, so no one script can touch both (a single node runs one script each, see
//! [`INDEX_ADD_SINGLE`](crate::scripts::INDEX_ADD_SINGLE) and
//! [`INDEX_SESSIONS_SINGLE`](crate::scripts::INDEX_SESSIONS_SINGLE)).

use redis::RedisResult;
use session_core::driver::{Error, Result, SessionId, Ttl};
use tokio::task::JoinSet;

use crate::NAME;
use crate::conn::{backend, timed_out};
use crate::scripts;
use crate::store::RedisStore;

impl RedisStore {
    /// Cluster `index_add`: two scripts, the owner's set first. If the second step fails, the set
    /// holds an entry that the next lookup prunes (its owner key does not name this owner).
    pub(crate) async fn index_add_cluster(
        &self,
        owner: &str,
        id: &SessionId,
        ttl: Ttl,
    ) -> Result<()> {
        let set_key = self.keys.owner_set(owner);
        let mut add = scripts::INDEX_ADD_SET.call(&[&set_key]);
        add.arg(id.as_str()).arg(ttl.as_millis());
        let _: i64 = self.client.eval(&scripts::INDEX_ADD_SET, &add).await?;
        let (owner_key, data, live) = (
            self.keys.owner_of(id),
            self.keys.data(id),
            self.keys.live(id),
        );
        let mut bind = scripts::INDEX_BIND.call(&[&owner_key, &data, &live]);
        bind.arg(owner).arg(ttl.as_millis()).arg(id.as_str());
        let _: i64 = self.client.eval(&scripts::INDEX_BIND, &bind).await?;
        Ok(())
    }

    /// Cluster `index_sessions`: members live in other slots than the set, so each member is
    /// checked with its own (concurrent) pipeline, then the dead ones are removed.
    pub(crate) async fn index_sessions_cluster(&self, owner: &str) -> Result<Vec<SessionId>> {
        let set_key = self.keys.owner_set(owner);
        let members: Vec<String> = self
            .client
            .query(redis::cmd("SMEMBERS").arg(&set_key))
            .await?;
        let mut checks = JoinSet::new();
        let mut dead = Vec::new();
        for member in members {
            let Ok(id) = SessionId::parse(&member) else {
                dead.push(member);
                continue;
            };
            let mut pipe = redis::pipe();
            pipe.cmd("GET")
                .arg(self.keys.owner_of(&id))
                .cmd("EXISTS")
                .arg(self.keys.data(&id));
            let mut conn = self.client.conn();
            checks.spawn(async move {
                let reply: RedisResult<(Option<String>, bool)> = pipe.query_async(&mut conn).await;
                (member, id, reply)
            });
        }
        let mut live = Vec::new();
        let gather = async {
            while let Some(joined) = checks.join_next().await {
                let (member, id, reply) =
                    joined.map_err(|e| Error::backend(NAME, format!("index check task: {e}")))?;
                let (bound_to, exists) = reply.map_err(backend)?;
                if bound_to.as_deref() != Some(owner) {
                    dead.push(member);
                } else if exists {
                    live.push(id);
                }
            }
            Ok::<_, Error>(())
        };
        tokio::time::timeout(self.client.op_timeout, gather)
            .await
            .map_err(|_| timed_out(self.client.op_timeout))??;
        if !dead.is_empty() {
            let _: i64 = self
                .client
                .query(redis::cmd("SREM").arg(&set_key).arg(&dead))
                .await?;
        }
        Ok(live)
    }
}
