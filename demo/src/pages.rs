//! The demo's pages: server-rendered HTML strings, every piece of user input escaped.

use std::fmt::Write as _;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use html_escape::{encode_double_quoted_attribute as attr, encode_text as text};
use serde::Deserialize;
use session_kit::axum::Session;
use session_kit::{Error, Manager, SessionId, Value};

/// Longest user name and value the forms accept (the store would take more; a demo page
/// would not show it well).
const MAX_INPUT: usize = 200;

pub(crate) fn routes(manager: Manager) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/values", post(set_value))
        .route("/values/remove", post(remove_value))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/logout-all", post(logout_all))
        .route("/session", get(session_info))
        .with_state(manager)
}

/// A storage error while rendering: a 500 page (the session layer answers a failed save with
/// its own 500).
pub(crate) struct AppError(Error);

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError(e)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let body = format!(
            "<!doctype html><title>Error</title><h1>Something went wrong</h1><p>{}</p>",
            text(&self.0.to_string())
        );
        (StatusCode::INTERNAL_SERVER_ERROR, Html(body)).into_response()
    }
}

type Page = Result<Html<String>, AppError>;
type Action = Result<Redirect, AppError>;

async fn notice(s: &Session, message: &str) -> Result<(), AppError> {
    Ok(s.set_flash("notice", message).await?)
}

async fn problem(s: &Session, message: &str) -> Result<(), AppError> {
    Ok(s.set_flash("error", message).await?)
}

/// The page frame: navigation, who is logged in, this request's flash messages.
async fn layout(s: &Session, title: &str, body: &str) -> Page {
    let user = s.user().await?;
    let mut flashes = String::new();
    if let Some(m) = s.get_flash::<String>("notice").await? {
        let _ = write!(flashes, r#"<p class="flash notice">{}</p>"#, text(&m));
    }
    if let Some(m) = s.get_flash::<String>("error").await? {
        let _ = write!(flashes, r#"<p class="flash error">{}</p>"#, text(&m));
    }
    let who = match &user {
        Some(u) => format!(
            r#"<span id="user">Logged in as <b>{}</b></span>
<form method="post" action="/logout" class="inline"><button id="logout">Log out</button></form>"#,
            text(u)
        ),
        None => r#"<span id="user">Not logged in</span> <a href="/login">Log in</a>"#.into(),
    };
    let sessions_link = if user.is_some() {
        r#"<a href="/sessions">Active sessions</a>"#
    } else {
        ""
    };
    Ok(Html(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · session demo</title>
<style>
body {{ font: 15px/1.45 system-ui, sans-serif; max-width: 62rem; margin: 1.5rem auto; padding: 0 1rem; color: #222 }}
nav {{ display: flex; gap: 1rem; align-items: center; border-bottom: 1px solid #ddd; padding-bottom: .6rem }}
nav .who {{ margin-left: auto; display: flex; gap: .6rem; align-items: center }}
.inline {{ display: inline }}
.flash {{ padding: .5rem .8rem; border-radius: 4px }}
.notice {{ background: #e6f4ea }} .error {{ background: #fce8e6 }}
table {{ border-collapse: collapse; width: 100% }}
th, td {{ text-align: left; padding: .35rem .5rem; border-bottom: 1px solid #eee; vertical-align: top }}
.this-session {{ background: #1a73e8; color: white; border-radius: 3px; padding: 0 .35rem; font-size: 85% }}
code {{ background: #f3f3f3; padding: 0 .25rem }}
</style></head>
<body><nav><b>session demo</b><a href="/">Home</a><a href="/session">This session</a>{sessions_link}
<span class="who">{who}</span></nav>
{flashes}<h1>{title}</h1>
{body}
</body></html>"#,
        title = text(title),
    )))
}

/// A stored value shown as text: a string or number as is, anything else by size.
fn show(v: &Value) -> String {
    if let Ok(s) = v.decode::<String>() {
        return s;
    }
    if let Ok(n) = v.decode::<i64>() {
        return n.to_string();
    }
    if let Ok(b) = v.decode::<bool>() {
        return b.to_string();
    }
    format!("({} bytes of MessagePack)", v.len())
}

/// "3 min ago" / "in 2 h 5 min".
fn relative(t: SystemTime) -> String {
    let now = SystemTime::now();
    let (secs, future) = match t.duration_since(now) {
        Ok(d) => (d.as_secs(), true),
        Err(e) => (e.duration().as_secs(), false),
    };
    let span = match secs {
        0..=4 => return "just now".into(),
        5..=59 => format!("{secs} s"),
        60..=3599 => format!("{} min", secs / 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

async fn home(s: Session) -> Page {
    let visits = s.get::<u64>("visits").await?.unwrap_or(0) + 1;
    s.set("visits", &visits).await?;
    let mut rows = String::new();
    for key in s.keys().await? {
        if let Some(v) = s.get_value(&key).await? {
            let _ = write!(
                rows,
                r#"<tr><td><code>{k}</code></td><td class="value">{v}</td><td>
<form method="post" action="/values/remove" class="inline"><input type="hidden" name="key" value="{ka}"><button>Remove</button></form></td></tr>"#,
                k = text(&key),
                v = text(&show(&v)),
                ka = attr(&key),
            );
        }
    }
    let body = format!(
        r#"<p id="visits">You have viewed this page <b>{visits}</b> time{plural} in this session.</p>
<h2>Session values</h2>
<table><tr><th>key</th><th>value</th><th></th></tr>{rows}</table>
<h2>Store a value</h2>
<form method="post" action="/values">
<label>Key <input name="key" id="key" required maxlength="{MAX_INPUT}"></label>
<label>Value <input name="value" id="value" maxlength="{MAX_INPUT}"></label>
<button id="store">Store</button></form>"#,
        plural = if visits == 1 { "" } else { "s" },
    );
    layout(&s, "Home", &body).await
}

#[derive(Deserialize)]
struct KeyValue {
    key: String,
    #[serde(default)]
    value: String,
}

async fn set_value(s: Session, Form(f): Form<KeyValue>) -> Action {
    let key = f.key.trim();
    if key.is_empty() || key.len() > MAX_INPUT || f.value.len() > MAX_INPUT {
        problem(
            &s,
            &format!("Keys take 1 to {MAX_INPUT} bytes, values up to {MAX_INPUT}."),
        )
        .await?;
        return Ok(Redirect::to("/"));
    }
    match s.set(key, &f.value).await {
        Ok(()) => notice(&s, &format!("Stored {key:?}.")).await?,
        Err(Error::InvalidInput(why)) => problem(&s, &format!("Not stored: {why}")).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/"))
}

#[derive(Deserialize)]
struct KeyOnly {
    key: String,
}

async fn remove_value(s: Session, Form(f): Form<KeyOnly>) -> Action {
    match s.remove(&f.key).await {
        Ok(()) => notice(&s, &format!("Removed {:?}.", f.key)).await?,
        Err(Error::InvalidInput(why)) => problem(&s, &format!("Not removed: {why}")).await?,
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/"))
}

async fn login_form(s: Session) -> Page {
    let body = format!(
        r#"<p>Any user name will do: this demo has no passwords. Logging in gives the session a
new id (against session fixation) and lists it under the user, so the same name logged in from
another browser shows up on the "Active sessions" page.</p>
<form method="post" action="/login">
<label>User name <input name="username" id="username" required maxlength="{MAX_INPUT}" autofocus></label>
<button id="login-submit">Log in</button></form>"#
    );
    layout(&s, "Log in", &body).await
}

#[derive(Deserialize)]
struct Login {
    username: String,
}

async fn login(s: Session, Form(f): Form<Login>) -> Action {
    let name = f.username.trim();
    if name.is_empty() || name.len() > MAX_INPUT {
        problem(&s, &format!("A user name has 1 to {MAX_INPUT} bytes.")).await?;
        return Ok(Redirect::to("/login"));
    }
    match s.login(name).await {
        Ok(()) => notice(&s, &format!("Welcome, {name}! Your session has a new id.")).await?,
        Err(Error::InvalidInput(why)) => {
            problem(&s, &format!("Not logged in: {why}")).await?;
            return Ok(Redirect::to("/login"));
        }
        Err(e) => return Err(e.into()),
    }
    Ok(Redirect::to("/"))
}

async fn logout(s: Session) -> Action {
    s.logout().await?;
    // the old session is gone; this flash starts a new, anonymous one
    notice(&s, "You have been logged out.").await?;
    Ok(Redirect::to("/"))
}

/// The logged-in user, or a redirect to the login page with a message.
async fn require_user(s: &Session) -> Result<Result<String, Redirect>, AppError> {
    match s.user().await? {
        Some(u) => Ok(Ok(u)),
        None => {
            problem(s, "Log in first to see your sessions.").await?;
            Ok(Err(Redirect::to("/login")))
        }
    }
}

async fn sessions(State(m): State<Manager>, s: Session) -> Result<Response, AppError> {
    let user = match require_user(&s).await? {
        Ok(u) => u,
        Err(to_login) => return Ok(to_login.into_response()),
    };
    let me = s.id().await;
    let list = m.sessions_of(&user).await?;
    let mut rows = String::new();
    for info in &list {
        let this = me.as_ref() == Some(&info.id);
        let (device, ip, created, seen) = match &info.meta {
            Some(meta) => (
                meta.client
                    .user_agent
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                meta.last_ip.map_or("unknown".into(), |ip| ip.to_string()),
                relative(meta.created_at),
                relative(meta.last_seen),
            ),
            None => ("unknown".into(), "unknown".into(), "?".into(), "?".into()),
        };
        let _ = write!(
            rows,
            r#"<tr class="session-row"><td><code>{short}</code>{marker}</td><td class="device">{device}</td><td>{ip}</td><td>{created}</td><td>{seen}</td><td>{expires}</td>
<td><form method="post" action="/sessions/revoke" class="inline"><input type="hidden" name="session" value="{short_attr}"><button class="revoke">Log out this session</button></form></td></tr>"#,
            short = text(&info.id.short()),
            short_attr = attr(&info.id.short()),
            marker = if this {
                r#" <span class="this-session">this session</span>"#
            } else {
                ""
            },
            device = text(&device),
            ip = text(&ip),
            expires = info.expires_at.map_or("?".into(), relative),
        );
    }
    let body = format!(
        r#"<p id="count">{n} active session{plural} of <b>{user}</b>, from the owner index.</p>
<table id="sessions"><tr><th>session</th><th>device (user agent)</th><th>IP</th><th>started</th><th>last seen</th><th>expires</th><th></th></tr>
{rows}</table>
<form method="post" action="/sessions/logout-all"><p><button id="logout-everywhere">Log out everywhere</button>
(every session of {user}, this one included)</p></form>"#,
        n = list.len(),
        plural = if list.len() == 1 { "" } else { "s" },
        user = text(&user),
    );
    Ok(layout(&s, "Active sessions", &body).await?.into_response())
}

#[derive(Deserialize)]
struct Revoke {
    session: String,
}

async fn revoke(State(m): State<Manager>, s: Session, Form(f): Form<Revoke>) -> Action {
    let user = match require_user(&s).await? {
        Ok(u) => u,
        Err(to_login) => return Ok(to_login),
    };
    // the page shows shortened ids only; find the full one among this user's sessions
    let target: Option<SessionId> = m
        .sessions_of(&user)
        .await?
        .into_iter()
        .map(|i| i.id)
        .find(|id| id.short() == f.session);
    let Some(id) = target else {
        problem(&s, "That session has already ended.").await?;
        return Ok(Redirect::to("/sessions"));
    };
    if s.id().await.as_ref() == Some(&id) {
        s.logout().await?;
        notice(&s, "You logged out this session.").await?;
        return Ok(Redirect::to("/"));
    }
    let other = m.load(Some(id.as_str()));
    other.destroy().await?;
    other.save().await?;
    notice(&s, &format!("Logged out session {}.", id.short())).await?;
    Ok(Redirect::to("/sessions"))
}

async fn logout_all(State(m): State<Manager>, s: Session) -> Action {
    let user = match require_user(&s).await? {
        Ok(u) => u,
        Err(to_login) => return Ok(to_login),
    };
    let ended = m.sessions_of(&user).await?.len();
    s.logout().await?;
    m.destroy_user(&user).await?;
    notice(
        &s,
        &format!(
            "Logged out everywhere: {ended} session{} ended.",
            if ended == 1 { "" } else { "s" }
        ),
    )
    .await?;
    Ok(Redirect::to("/"))
}

async fn session_info(State(m): State<Manager>, s: Session) -> Page {
    let keys = s.keys().await?;
    let meta = s.meta().await?;
    let id = s.id().await;
    let mut body = String::new();
    match &id {
        None => body.push_str(
            r#"<p id="no-session">No session is stored for you yet: nothing has been written
(viewing this page writes nothing). Visit <a href="/">Home</a> to start one.</p>"#,
        ),
        Some(id) => {
            // one extra load, just to show the deadline the store keeps
            let expires = m.store().load(id).await?.and_then(|l| l.expires_at);
            let _ = write!(
                body,
                r#"<table>
<tr><th>id (shortened)</th><td><code id="session-id">{short}</code></td></tr>
<tr><th>expires</th><td id="expires">{expires}</td></tr>
<tr><th>store</th><td>{store}</td></tr>"#,
                short = text(&id.short()),
                expires = expires.map_or("not reported by this store".into(), relative),
                store = text(m.store().name()),
            );
            if let Some(meta) = &meta {
                let _ = write!(
                    body,
                    r#"<tr><th>created</th><td>{}</td></tr><tr><th>last seen</th><td>{}</td></tr>
<tr><th>logged in</th><td>{}</td></tr><tr><th>user agent</th><td>{}</td></tr><tr><th>IP</th><td>{}</td></tr>"#,
                    relative(meta.created_at),
                    relative(meta.last_seen),
                    meta.authenticated_at.map_or("no".into(), relative),
                    text(meta.client.user_agent.as_deref().unwrap_or("unknown")),
                    meta.last_ip.map_or("unknown".into(), |ip| ip.to_string()),
                );
            }
            body.push_str("</table>");
        }
    }
    let list: String = keys
        .iter()
        .map(|k| format!("<li><code>{}</code></li>", text(k)))
        .collect();
    let _ = write!(
        body,
        r#"<h2>Stored keys</h2><ul id="keys">{}</ul>"#,
        if list.is_empty() {
            "<li>none</li>".into()
        } else {
            list
        }
    );
    layout(&s, "This session", &body).await
}
