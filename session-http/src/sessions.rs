//! [`HttpSessions`]: what a session middleware does per request, whatever the framework, and
//! [`RequestSession`], one request's share of it.

use std::net::IpAddr;
use std::sync::Arc;

use session_core::{ClientInfo, CookieAction, Error, IncomingId, Manager, Result, Session};
use session_layers::IdTagger;
use tracing::field::Empty;
use tracing::{Instrument, Span};

use crate::codec::{Codec, Incoming, forwarded_ip, text};
use crate::config::CookieConfig;
use crate::error::log_error;

/// The name of the span a session middleware opens around each request's session work.
pub const SPAN_NAME: &str = "session.request";

/// The framework-neutral part of a session middleware: the [`Manager`], the [`CookieConfig`]
/// and the [`IdTagger`] for logs. A framework adapter (session-axum, session-actix) hands it
/// the request's raw header values and gets back a lazy [`Session`] in a [`RequestSession`],
/// then the header value to send once the handler has run. Cheap to clone.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> session_core::Result<()> {
/// use std::sync::Arc;
/// use session_core::{ClientInfo, Config, Manager};
/// use session_http::{CookieConfig, HttpSessions};
///
/// let manager = Manager::new(Arc::new(session_memory::MemoryStore::new()), Config::default())?;
/// let sessions = HttpSessions::with_config(manager, CookieConfig::default())?;
/// assert_eq!(sessions.request_header(), "cookie");
///
/// // a request without a cookie, whose handler writes the session
/// let request = sessions.start([], ClientInfo::default());
/// request.session().set("visits", &1u32).await?;
/// let set_cookie = request.finish(|_name, value| Ok(value.to_owned())).await?;
/// let set_cookie = set_cookie.expect("a new session sends its cookie");
/// assert!(set_cookie.starts_with("session_id=") && set_cookie.contains("HttpOnly"));
///
/// // the next request brings it back
/// let cookie = set_cookie.split(';').next().unwrap_or_default();
/// let request = sessions.start([cookie.as_bytes()], ClientInfo::default());
/// assert_eq!(request.session().get::<u32>("visits").await?, Some(1));
/// # Ok(()) }
/// ```
///
/// Cheap to clone: the clones share one manager, config and tagger (each request's
/// [`RequestSession`] holds a clone, so nothing is copied per request).
#[derive(Clone, Debug)]
pub struct HttpSessions {
    inner: Arc<Inner>,
}

/// What the clones of an [`HttpSessions`] share.
#[derive(Clone, Debug)]
struct Inner {
    manager: Manager,
    codec: Codec,
    tagger: IdTagger,
}

impl HttpSessions {
    /// Sessions of `manager` with the default [`CookieConfig`] (`Secure`, `HttpOnly`,
    /// `SameSite=Lax`, `Max-Age` following the session, unsigned).
    pub fn new(manager: Manager) -> Self {
        HttpSessions {
            inner: Arc::new(Inner {
                manager,
                codec: Codec {
                    config: CookieConfig::default(),
                    header: None,
                },
                tagger: IdTagger::new(),
            }),
        }
    }

    /// Sessions of `manager` with `config`; [`Error::InvalidInput`] when the config does not
    /// [`validate`](CookieConfig::validate).
    pub fn with_config(manager: Manager, config: CookieConfig) -> Result<Self> {
        config.validate()?;
        let header = config.header_name()?;
        Ok(HttpSessions {
            inner: Arc::new(Inner {
                manager,
                codec: Codec { config, header },
                tagger: IdTagger::new(),
            }),
        })
    }

    /// The same, tagging session ids in logs with `tagger`: give it the tagger of your storage
    /// [`TracingLayer`](session_layers::TracingLayer) and the tags of one session match in
    /// both.
    pub fn with_tagger(self, tagger: IdTagger) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        inner.tagger = tagger;
        HttpSessions {
            inner: Arc::new(inner),
        }
    }

    /// The manager.
    pub fn manager(&self) -> &Manager {
        &self.inner.manager
    }

    /// The cookie config.
    pub fn config(&self) -> &CookieConfig {
        &self.inner.codec.config
    }

    /// The tagger that turns ids into short tags for logs.
    pub fn tagger(&self) -> &IdTagger {
        &self.inner.tagger
    }

    /// The request header the id is read from, lower-cased: `"cookie"`, or the
    /// [`CookieConfig::header`].
    pub fn request_header(&self) -> &str {
        self.inner.codec.header.as_deref().unwrap_or("cookie")
    }

    /// The response header the id is written to, lower-cased: `"set-cookie"`, or the
    /// [`CookieConfig::header`].
    pub fn response_header(&self) -> &str {
        self.inner.codec.header.as_deref().unwrap_or("set-cookie")
    }

    /// The id in the values of the [`request_header`](Self::request_header) (all of them, in
    /// order; a value that is not visible ASCII is skipped): the first cookie of the configured
    /// name (or the first comma-separated header value) that verifies or decrypts and holds a
    /// well-formed id is [`IncomingId::Valid`]. If there is none but a value was sent (forged,
    /// tampered, unprotected when keys are set, or malformed), [`IncomingId::Invalid`]: it
    /// never reaches storage, the request gets a fresh session, and the save tells the client
    /// to drop it. An empty value counts as none.
    pub fn read<'a>(&self, values: impl IntoIterator<Item = &'a [u8]>) -> Incoming {
        self.inner.codec.read(values)
    }

    /// The value of the [`response_header`](Self::response_header) that `action` asks for, if
    /// any: a `Set-Cookie` (or id header) value with a new id, a slid `Max-Age`, a re-issue under
    /// the first key (`stale_key`: the request's value was protected with an old key), or a
    /// removal (`Max-Age=0`; an empty id header value). The value is visible ASCII, a valid
    /// header value in every framework; `Err` (with the reason) if it could not be made.
    pub fn outgoing(
        &self,
        action: &CookieAction,
        stale_key: bool,
    ) -> Option<std::result::Result<String, String>> {
        self.inner.codec.outgoing(action, stale_key)
    }

    /// The client's IP and user agent: `peer` (made canonical: an IPv4-mapped IPv6 address is
    /// plain IPv4), or with [`CookieConfig::trusted_proxies`] `n`, the `n`-th address from the
    /// right of the `X-Forwarded-For` values (the peer when there are fewer, or it does not
    /// parse); `user_agent` is the `User-Agent` value.
    pub fn client_info<'a>(
        &self,
        peer: Option<IpAddr>,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
        user_agent: Option<&[u8]>,
    ) -> ClientInfo {
        let peer = peer.map(|ip| ip.to_canonical());
        let ip = match self.config().trusted_proxies {
            0 => peer,
            hops => forwarded_ip(forwarded_for, hops).or(peer),
        };
        ClientInfo::new(ip, user_agent.and_then(text))
    }

    /// Starts one request: reads the id from `values` (see [`read`](Self::read)), opens its
    /// [`SPAN_NAME`] span and makes its lazy session ([`Manager::load_with`]): **no storage
    /// call**. Run the handler inside [`RequestSession::span`], then call
    /// [`RequestSession::finish`].
    pub fn start<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
        client: ClientInfo,
    ) -> RequestSession {
        let (incoming, span) = self.open(values);
        let session = self.manager().load_with(incoming.id, client);
        self.request(session, incoming.stale_key, span)
    }

    /// Like [`start`](Self::start), but loads the session at once holding its lease lock
    /// ([`Manager::load_locked`]): concurrent requests on one session then run one after the
    /// other, and [`finish`](RequestSession::finish) releases the lock. A failure (another
    /// request held the lock for longer than [`LockPolicy::wait`](session_core::LockPolicy),
    /// the store failed) is logged once, in the request's span, and returned with the span:
    /// answer it with [`Answer::for_error`](crate::Answer::for_error) without logging again.
    pub async fn start_locked<'a>(
        &self,
        values: impl IntoIterator<Item = &'a [u8]>,
        client: ClientInfo,
    ) -> std::result::Result<RequestSession, (Error, Span)> {
        let (incoming, span) = self.open(values);
        let loaded = self
            .manager()
            .load_locked(incoming.id, client)
            .instrument(span.clone())
            .await;
        match loaded {
            Ok(session) => Ok(self.request(session, incoming.stale_key, span)),
            Err(e) => {
                span.record("outcome", e.kind());
                span.in_scope(|| log_error(&e));
                Err((e, span))
            }
        }
    }

    /// The request's id, read, and its span.
    fn open<'a>(&self, values: impl IntoIterator<Item = &'a [u8]>) -> (Incoming, Span) {
        // the id crosses to the manager once, parsed (or known invalid), never as text
        let incoming = self.read(values);
        let span = tracing::info_span!(
            "session.request",
            session = Empty,
            incoming = incoming_kind(&incoming.id),
            issued = Empty,
            action = Empty,
            outcome = Empty,
        );
        // The tag costs a hash and a string: only for a span someone listens to.
        if let Some(valid) = incoming.id.id().filter(|_| !span.is_disabled()) {
            span.record("session", self.tagger().tag(valid));
        }
        if incoming.id.is_invalid() {
            tracing::debug!(
                parent: &span,
                "refused a session id that is malformed or does not verify; a fresh session"
            );
        }
        (incoming, span)
    }

    fn request(&self, session: Session, stale_key: bool, span: Span) -> RequestSession {
        RequestSession {
            session,
            stale_key,
            span,
            sessions: self.clone(),
        }
    }
}

/// One request's session, from [`HttpSessions::start`] to [`finish`](Self::finish).
#[derive(Debug)]
pub struct RequestSession {
    session: Session,
    stale_key: bool,
    span: Span,
    sessions: HttpSessions,
}

impl RequestSession {
    /// The session: put a clone in the request for the handler.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The request's [`SPAN_NAME`] span (`INFO`): run the handler inside it, so the lazy load
    /// and whatever the handler logs carry the session's tag. Its fields: `session` (a short
    /// keyed tag of the incoming id, never the id), `incoming` (`absent`, `valid`, `invalid`),
    /// `issued` (the tag of a new id the response sends), `action` (`unchanged`, `set`,
    /// `refresh`, `remove`) and `outcome` (`ok` or the error's kind).
    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Saves the session ([`Session::save`]: no storage call for a session nobody touched,
    /// one `apply` of just the changed keys for a changed one) and returns the header to send,
    /// made by `header` from the [`response_header`](HttpSessions::response_header)'s name and
    /// value (the framework's header types), or `None` when there is nothing to send.
    ///
    /// A failed save, or a value `header` refuses, is logged at `ERROR` with its cause in the
    /// request's span and returned: answer it with an empty `500` (and no cookie), without
    /// logging it again.
    pub async fn finish<H>(
        self,
        header: impl FnOnce(&str, &str) -> std::result::Result<H, String>,
    ) -> Result<Option<H>> {
        let span = self.span.clone();
        // boxed: inline, the save made the future of every framework's request that awaits
        // `finish` larger than the 1,032 bytes of glibc's per-thread cache (axum's layer: 1,264
        // bytes), so every request locked a malloc arena (see `Session::save` in session-core)
        Box::pin(self.save(header).instrument(span)).await
    }

    async fn save<H>(
        self,
        header: impl FnOnce(&str, &str) -> std::result::Result<H, String>,
    ) -> Result<Option<H>> {
        let RequestSession {
            session,
            stale_key,
            span,
            sessions,
        } = self;
        let outcome = match session.save().await {
            Ok(outcome) => outcome,
            Err(e) => {
                let tag = session.id().await.map(|id| sessions.tagger().tag(&id));
                span.record("outcome", e.kind());
                tracing::error!(
                    session = tag.as_deref().unwrap_or("-"),
                    kind = e.kind(),
                    error = %e,
                    "session save failed; answering 500"
                );
                return Err(e);
            }
        };
        span.record("action", action_kind(&outcome.cookie));
        if let (CookieAction::Set { id, .. }, false) = (&outcome.cookie, span.is_disabled()) {
            span.record("issued", sessions.tagger().tag(id));
        }
        let sent = match sessions.outgoing(&outcome.cookie, stale_key) {
            None => Ok(None),
            Some(value) => value
                .and_then(|v| header(sessions.response_header(), &v))
                .map(Some),
        };
        match sent {
            Ok(sent) => {
                span.record("outcome", "ok");
                Ok(sent)
            }
            Err(e) => {
                let e = Error::InvalidInput(e);
                span.record("outcome", e.kind());
                tracing::error!(error = %e, "could not write the session id; answering 500");
                Err(e)
            }
        }
    }
}

/// The `incoming` field of the span.
fn incoming_kind(id: &IncomingId) -> &'static str {
    match id {
        IncomingId::Absent => "absent",
        IncomingId::Valid(_) => "valid",
        IncomingId::Invalid => "invalid",
    }
}

/// The `action` field of the span.
fn action_kind(action: &CookieAction) -> &'static str {
    match action {
        CookieAction::Unchanged => "unchanged",
        CookieAction::Set { .. } => "set",
        CookieAction::Refresh { .. } => "refresh",
        CookieAction::Remove => "remove",
    }
}
