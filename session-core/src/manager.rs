//! The [`Manager`]: a store, a config, and everything that works on more than one session.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::check;
use crate::config::Config;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::{Observation, SessionEvent, SessionObserver};
use crate::expiry::Verdict;
use crate::id::{IncomingId, SessionId};
use crate::meta::{ClientInfo, SessionMeta};
use crate::purge::PurgeTask;
use crate::reserved::{self, Reserved};
use crate::session::Session;
use crate::storage::{ChangeSet, Storage};
use crate::value::Value;

/// Builds [`Session`]s on one store with one [`Config`], and runs the per-user operations of the
/// owner index ("active sessions", "set for all of a user's sessions", "log out everywhere").
///
/// Cheap to clone (an `Arc` inside); share one per application.
///
/// # Example: a request's life
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_core::{CookieAction, Config, Manager};
/// use session_memory::MemoryStore;
///
/// let manager = Manager::new(Arc::new(MemoryStore::new()), Config::default())?;
///
/// // first request: no cookie yet
/// let session = manager.load(None);
/// session.set("cart", &vec!["apple"]).await?;
/// session.set_flash("notice", "Added to cart").await?;
/// let CookieAction::Set { id, .. } = session.save().await?.cookie else { unreachable!() };
///
/// // next request, with the cookie
/// let session = manager.load(Some(id.as_str()));
/// assert_eq!(session.get::<Vec<String>>("cart").await?, Some(vec!["apple".to_string()]));
/// assert_eq!(session.get_flash::<String>("notice").await?.as_deref(), Some("Added to cart"));
/// session.save().await?;
///
/// // the one after: the flash message is gone
/// let session = manager.load(Some(id.as_str()));
/// assert_eq!(session.get::<String>("notice").await?, None);
/// # Ok(()) }
/// ```
///
/// # Example: log out everywhere
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_core::{Config, Manager};
/// use session_memory::MemoryStore;
///
/// let manager = Manager::new(Arc::new(MemoryStore::new()), Config::default())?;
/// for _device in 0..2 {
///     let s = manager.load(None);
///     s.login("alice").await?;
///     s.save().await?;
/// }
/// assert_eq!(manager.sessions_of("alice").await?.len(), 2);
/// manager.set_for_user("alice", "plan", "pro").await?; // every session sees it
/// assert_eq!(manager.destroy_user("alice").await?, 2);
/// assert!(manager.sessions_of("alice").await?.is_empty());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Manager {
    inner: Arc<ManagerInner>,
}

/// What a manager's clones share.
struct ManagerInner {
    /// The store, the config and its timing, the observers.
    ctx: Context,
    /// [`COPIES`](crate::context::COPIES) copies of `ctx` for the sessions this manager makes,
    /// one per thread (see [`Context::copy_for_this_thread`]).
    copies: Box<[Arc<Context>]>,
}

impl fmt::Debug for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manager")
            .field("store", &self.ctx().store.name())
            .field("config", &self.ctx().config)
            .finish()
    }
}

/// One live session of a user, as listed by [`Manager::sessions_of`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// The session's id (show it shortened with [`SessionId::short`], never in full).
    pub id: SessionId,
    /// Its metadata; `None` for a session written without the session layer.
    pub meta: Option<SessionMeta>,
    /// When it expires, if the driver reports deadlines.
    pub expires_at: Option<SystemTime>,
}

impl Manager {
    /// A manager on `store` with `config`.
    ///
    /// Fails with [`Error::InvalidInput`] when the config does not
    /// [`validate`](Config::validate), and with [`Error::Unsupported`] when
    /// [`Config::owner_index`] is on but the store has no owner index (turn it off for such a
    /// store: logins then bind nothing and the per-user methods are unavailable).
    pub fn new(store: Arc<dyn Storage>, config: Config) -> Result<Self> {
        let ctx = Context::new(store, config)?;
        let copies = (0..crate::context::COPIES)
            .map(|_| Arc::new(ctx.clone()))
            .collect();
        Ok(Manager {
            inner: Arc::new(ManagerInner { ctx, copies }),
        })
    }

    /// The context this manager's own methods use.
    fn ctx(&self) -> &Context {
        &self.inner.ctx
    }

    /// The config.
    pub fn config(&self) -> &Config {
        &self.ctx().config
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Storage> {
        &self.ctx().store
    }

    /// The session of a request that presented `id`, without touching storage: the first read
    /// or write loads it.
    ///
    /// `id` is what the request brought, parsed once by the HTTP layer ([`IncomingId`]), or any
    /// of its plain forms: `None`, `Some(text)` (parsed here), a [`SessionId`] or `&SessionId`.
    /// An unknown or expired id is never adopted: the session then starts empty and gets a
    /// fresh id when it is first saved. An invalid id ([`IncomingId::Invalid`], or text that
    /// does not parse) is never looked up, and the save tells the client to drop it
    /// ([`CookieAction::Remove`](crate::CookieAction::Remove)) unless it writes a new session.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// use session_core::{CookieAction, IncomingId};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// // a cookie that failed its signature check: the request does not even read the session
    /// let session = manager.load(IncomingId::Invalid);
    /// assert_eq!(session.save().await?.cookie, CookieAction::Remove);
    /// // the same for text that is not an id
    /// let session = manager.load(Some("not an id"));
    /// assert_eq!(session.save().await?.cookie, CookieAction::Remove);
    /// # Ok(()) }
    /// ```
    pub fn load(&self, id: impl Into<IncomingId>) -> Session {
        self.load_with(id, ClientInfo::default())
    }

    /// Like [`load`](Self::load), with the client's IP and user agent: kept in the metadata of a
    /// new session, compared by the fingerprint checks ([`Config::match_ip`],
    /// [`Config::match_user_agent`]), and recorded as "last seen" IP.
    pub fn load_with(&self, id: impl Into<IncomingId>, client: ClientInfo) -> Session {
        Session::new(
            Context::copy_for_this_thread(&self.inner.copies),
            id.into(),
            client.normalized(),
        )
    }

    /// Like [`load_with`](Self::load_with), but holds the session's lease lock until
    /// [`Session::save`] (CodeIgniter's locking): concurrent requests on one session then run one
    /// after the other. Waits up to [`LockPolicy::wait`](crate::LockPolicy::wait), retrying every
    /// [`LockPolicy::retry_interval`](crate::LockPolicy::retry_interval), then fails with
    /// [`Error::Locked`]. Loads the session at once (one `try_lock` per attempt, one `load`).
    ///
    /// A lock whose holder never saves is freed when its lease
    /// ([`LockPolicy::lease`](crate::LockPolicy::lease)) runs out.
    pub async fn load_locked(
        &self,
        id: impl Into<IncomingId>,
        client: ClientInfo,
    ) -> Result<Session> {
        let session = self.load_with(id, client);
        session.lock_and_load().await?;
        Ok(session)
    }

    fn require_index(&self, user: &str) -> Result<()> {
        check::owner(user)?;
        if !self.ctx().config.owner_index {
            return Err(Error::InvalidInput(
                "the owner index is off (Config::owner_index is false)".into(),
            ));
        }
        Ok(())
    }

    /// The live sessions of `user` with their data; prunes dead ones (expired, past their
    /// absolute deadline, retired) from the index as it finds them.
    async fn live_sessions(
        &self,
        user: &str,
    ) -> Result<Vec<(SessionId, Reserved, Option<SystemTime>)>> {
        self.require_index(user)?;
        let store = &self.ctx().store;
        let now = check::now_millis();
        let mut live = Vec::new();
        for id in store.index_sessions(user).await? {
            match store.load(&id).await? {
                None => store.index_remove(&id).await?,
                Some(loaded) => {
                    let r = Reserved::read_snapshot(&loaded.data, store.name())?;
                    let dead = r.retired.is_some()
                        || self
                            .inner
                            .ctx
                            .timing
                            .verdict(&r, &ClientInfo::default(), now)?
                            == Verdict::Expired;
                    if dead {
                        if r.retired.is_some() {
                            store.index_remove(&id).await?;
                        } else {
                            store.remove_all(&id).await?;
                        }
                    } else {
                        live.push((id, r, loaded.expires_at));
                    }
                }
            }
        }
        Ok(live)
    }

    /// The live sessions of `user` (logged in with [`Session::login`]), with their metadata, for
    /// an "active sessions" page. Dead sessions found in the index are pruned. One index call,
    /// then one `load` per session.
    pub async fn sessions_of(&self, user: &str) -> Result<Vec<SessionInfo>> {
        let mut out: Vec<SessionInfo> = self
            .live_sessions(user)
            .await?
            .into_iter()
            .map(|(id, r, expires_at)| {
                Ok(SessionInfo {
                    id,
                    meta: r.public()?,
                    expires_at,
                })
            })
            .collect::<Result<_>>()?;
        out.sort_by_key(|s| s.meta.as_ref().map(|m| m.created_at));
        Ok(out)
    }

    /// The milliseconds a session has left at `now`: to its deadline when the driver reports
    /// it, else what a write would give it; 0 when none.
    fn time_left(&self, r: &Reserved, expires_at: Option<SystemTime>, now: u64) -> Result<u64> {
        Ok(match expires_at {
            Some(t) => check::unix_millis(t).saturating_sub(now),
            None => self.ctx().timing.write_ttl(r, now)?.unwrap_or(0),
        })
    }

    /// Applies `changes` to every live session of `user` without extending its life (the TTL
    /// passed is what the session had left, when the driver reports it). Returns how many
    /// sessions were changed.
    async fn apply_for_user(&self, user: &str, changes: ChangeSet) -> Result<usize> {
        let store = &self.ctx().store;
        let mut n = 0;
        for (id, r, expires_at) in self.live_sessions(user).await? {
            let left = self.time_left(&r, expires_at, check::now_millis())?;
            if left == 0 {
                continue;
            }
            let mut cs = changes.clone();
            cs.only_if_exists = true;
            if store.apply(&id, cs, Duration::from_millis(left)).await? {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Sets `key` to `value` in every live session of `user` (Dce's `setSession`): after a
    /// profile change, every device sees the new data on its next request. Returns how many
    /// sessions were changed. The sessions' expiry is not extended.
    ///
    /// A request in flight that loaded a session before this call and then writes the same key
    /// wins (last writer wins); other keys are not affected.
    pub async fn set_for_user<T: Serialize + ?Sized>(
        &self,
        user: &str,
        key: &str,
        value: &T,
    ) -> Result<usize> {
        reserved::user_key(key)?;
        let mut set = crate::Data::new();
        set.insert(key.to_string(), Value::encode(value)?);
        self.apply_for_user(
            user,
            ChangeSet {
                set,
                ..ChangeSet::default()
            },
        )
        .await
    }

    /// Removes `key` from every live session of `user` (Dce's `deleteSession`); returns how many
    /// sessions were visited.
    pub async fn remove_for_user(&self, user: &str, key: &str) -> Result<usize> {
        reserved::user_key(key)?;
        let remove = vec![
            key.to_string(),
            reserved::flash_mark(key)?,
            reserved::temp_mark(key)?,
        ];
        self.apply_for_user(
            user,
            ChangeSet {
                remove,
                ..ChangeSet::default()
            },
        )
        .await
    }

    /// Destroys every session of `user` ("log out everywhere", Dce's `destroySession`); returns
    /// how many live sessions were destroyed. Requests in flight on those sessions cannot bring
    /// them back: their saves find the session gone.
    pub async fn destroy_user(&self, user: &str) -> Result<usize> {
        self.require_index(user)?;
        let store = &self.ctx().store;
        let ids = store.index_sessions(user).await?;
        let n = ids.len();
        for id in ids {
            store.remove_all(&id).await?;
            self.inner
                .ctx
                .emit(|| SessionEvent::Destroyed {
                    id,
                    user: Some(user.to_string()),
                })
                .await;
        }
        Ok(n)
    }

    /// Makes the live session `id` `user`'s without changing its id (Dce `login`): the session
    /// records the owner and the login time, the owner index binds it, and the observers hear
    /// [`SessionEvent::LoggedIn`]. Returns `false`, changing nothing, if no live session has
    /// that id. The session's expiry slides as on any write.
    ///
    /// This is how a connection registry logs in the session a socket came with. In an HTTP
    /// handler use [`Session::login`], which also gives the session a new id (against session
    /// fixation).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let s = manager.load(None);
    /// s.set("cart", &["apple"]).await?;
    /// let id = s.save().await?.cookie.id().cloned().expect("saved");
    /// assert!(manager.login_session(&id, "ada").await?);
    /// assert_eq!(manager.load(Some(id.as_str())).user().await?.as_deref(), Some("ada"));
    /// assert_eq!(manager.sessions_of("ada").await?.len(), 1);
    /// assert_eq!(manager.logout_session(&id).await?.as_deref(), Some("ada"));
    /// assert!(manager.sessions_of("ada").await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn login_session(&self, id: &SessionId, user: &str) -> Result<bool> {
        check::owner(user)?;
        Ok(self.set_owner(id, Some(user)).await?.is_some())
    }

    /// Removes the owner of the live session `id` without destroying it or changing its id
    /// (Dce `logout`): the session forgets its owner and login time, the owner index drops it,
    /// and the observers hear [`SessionEvent::LoggedOut`]. Returns the owner it had; `None`
    /// (changing nothing) if it had none or no live session has that id.
    pub async fn logout_session(&self, id: &SessionId) -> Result<Option<String>> {
        Ok(self.set_owner(id, None).await?.flatten())
    }

    /// Writes `user` as the owner of the live session `id` (or removes the owner), keeps the
    /// owner index in step and reports the change. Only the owner and the metadata are
    /// written (one `apply`, only if the session still exists, with the time it had left): the
    /// id, the expiry and "last seen" stay, and no request's other keys are touched. Returns
    /// the owner it had (`Some(None)`: none), or `None` if no live session has that id.
    async fn set_owner(
        &self,
        id: &SessionId,
        user: Option<&str>,
    ) -> Result<Option<Option<String>>> {
        let store = &self.ctx().store;
        let Some(loaded) = store.load(id).await? else {
            return Ok(None);
        };
        let r = Reserved::read_snapshot(&loaded.data, store.name())?;
        let now = check::now_millis();
        if r.retired.is_some()
            || self
                .inner
                .ctx
                .timing
                .verdict(&r, &ClientInfo::default(), now)?
                == Verdict::Expired
        {
            return Ok(None);
        }
        let before = r.user.clone();
        if before.is_none() && user.is_none() {
            return Ok(Some(None));
        }
        let left = self.time_left(&r, loaded.expires_at, now)?;
        if left == 0 {
            return Ok(None);
        }
        let mut meta = match r.meta()? {
            Some(m) => m.clone(),
            None => reserved::StoredMeta::new(now, ClientInfo::default()),
        };
        meta.auth = user.map(|_| now);
        let mut changes = ChangeSet {
            only_if_exists: true,
            ..ChangeSet::default()
        };
        changes
            .set
            .insert(reserved::META.into(), reserved::encode(&meta)?);
        match user {
            Some(user) => {
                changes
                    .set
                    .insert(reserved::USER.into(), reserved::encode(&user)?);
            }
            None => changes.remove.push(reserved::USER.into()),
        }
        if !store
            .apply(id, changes, Duration::from_millis(left))
            .await?
        {
            return Ok(None);
        }
        if self.ctx().config.owner_index {
            match user {
                Some(user) => {
                    store
                        .index_add(user, id, self.ctx().index_ttl(r.ttl))
                        .await?
                }
                None => store.index_remove(id).await?,
            }
        }
        if let Some(old) = before.clone().filter(|old| Some(old.as_str()) != user) {
            self.inner
                .ctx
                .emit(|| SessionEvent::LoggedOut {
                    id: id.clone(),
                    user: old,
                })
                .await;
        }
        if let Some(user) = user {
            self.inner
                .ctx
                .emit(|| SessionEvent::LoggedIn {
                    id: id.clone(),
                    user: user.to_string(),
                })
                .await;
        }
        Ok(Some(before))
    }

    /// Starts the background purge: a Tokio task that calls
    /// [`Storage::purge_expired`] every [`Config::purge_interval`] (the first time one interval
    /// from now), until the returned [`PurgeTask`] is dropped or [`stopped`](PurgeTask::stop).
    /// A failed round is counted and kept ([`PurgeTask::last_error`]); the task goes on.
    ///
    /// Starts nothing (an idle [`PurgeTask`]) for a store that expires sessions by itself
    /// ([`Capabilities::native_expiry`](crate::Capabilities::native_expiry): memory, Redis,
    /// Memcached) and when `purge_interval` is `None`. Fails with [`Error::Unsupported`] for a
    /// store that does neither purge ([`Capabilities::purge`](crate::Capabilities::purge)) nor
    /// expire by itself, and with [`Error::InvalidInput`] outside a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::Arc;
    /// # use session_core::{Config, Manager};
    /// let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let purge = manager.start_purge()?; // keep it as long as the manager
    /// assert!(!purge.is_running(), "moka expires sessions by itself");
    /// # Ok(()) }
    /// ```
    pub fn start_purge(&self) -> Result<PurgeTask> {
        let store = &self.ctx().store;
        let caps = store.capabilities();
        let Some(interval) = self.ctx().config.purge_interval else {
            return Ok(PurgeTask::idle());
        };
        if caps.native_expiry {
            return Ok(PurgeTask::idle());
        }
        if !caps.purge {
            return Err(Error::unsupported(store.name(), "purge_expired"));
        }
        PurgeTask::start(store.clone(), interval)
    }

    /// Registers `observer` for this manager's [`SessionEvent`]s (shared by every clone of the
    /// manager and every session it loads) until the returned [`Observation`] is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> session_core::Result<()> {
    /// # use std::sync::{Arc, Mutex};
    /// # use session_core::{Config, Manager};
    /// use session_core::{SessionEvent, SessionObserver, async_trait};
    ///
    /// #[derive(Default)]
    /// struct Log(Mutex<Vec<SessionEvent>>);
    ///
    /// #[async_trait]
    /// impl SessionObserver for Log {
    ///     async fn on_event(&self, event: &SessionEvent) {
    ///         self.0.lock().unwrap().push(event.clone());
    ///     }
    /// }
    ///
    /// # let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
    /// let log = Arc::new(Log::default());
    /// let _observation = manager.observe(log.clone());
    /// let s = manager.load(None);
    /// s.login("ada").await?;
    /// s.save().await?;
    /// assert!(matches!(&log.0.lock().unwrap()[..], [SessionEvent::LoggedIn { user, .. }] if user == "ada"));
    /// # Ok(()) }
    /// ```
    pub fn observe(&self, observer: Arc<dyn SessionObserver>) -> Observation {
        Observation::new(&self.ctx().observers, observer)
    }
}
