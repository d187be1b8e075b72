//! The Lua scripts of the driver. Each runs atomically on the server in one round trip
//! (`EVALSHA`; on `NOSCRIPT` the driver sends `SCRIPT LOAD` and runs it again).
//!
//! Every script that writes session keys declares them in `KEYS`, and all of them share the
//! session's hash tag, so the scripts run unchanged on Redis Cluster. The one exception is
//! [`INDEX_SESSIONS_SINGLE`] (and [`INDEX_ADD_SINGLE`]), used only on a single node, which touch
//! keys of several sessions.
//!
//! Every script that sets the expiry of a session hash (apply, touch) also writes the hash's
//! deadline field ([`DEADLINE_FIELD`]) in the same step, so `load` reads the deadline with the
//! data in one `HGETALL`; a script that keeps the expiry (apply with `Expiry::Keep`, remove)
//! leaves both as they are; and no script leaves a hash holding the deadline field alone.

use std::sync::LazyLock;

use redis::{Cmd, Script};

use crate::keys::DEADLINE_FIELD;

/// A Lua script of this driver, called with `EVALSHA` by its SHA1.
///
/// redis-rs's `ScriptInvocation` copies every key and argument into its own `Vec` before building
/// the command; [`Lua::call`] writes them straight into one [`Cmd`] buffer (on the apply path
/// that saved about 6,000 instructions per call, callgrind). The caller loads the script with
/// [`Lua::load`] and retries when the server answers `NOSCRIPT` (see `RedisStore::eval`).
pub(crate) struct Lua {
    sha: String,
    source: String,
}

impl Lua {
    fn new(source: impl Into<String>) -> Lua {
        let source = source.into();
        Lua {
            sha: Script::new(&source).get_hash().to_owned(),
            source,
        }
    }

    /// `EVALSHA <sha> <number of keys> <keys...>`: add the `ARGV` with [`Cmd::arg`].
    pub(crate) fn call(&self, keys: &[&str]) -> Cmd {
        self.call_sized(keys, 0, 0)
    }

    /// [`call`](Self::call) with room for `args` more arguments of `bytes` bytes in all, so
    /// adding them never grows the command's buffers.
    pub(crate) fn call_sized(&self, keys: &[&str], args: usize, bytes: usize) -> Cmd {
        let key_bytes: usize = keys.iter().map(|k| k.len()).sum();
        let mut cmd = Cmd::with_capacity(
            3 + keys.len() + args,
            "EVALSHA".len() + self.sha.len() + 4 + key_bytes + bytes,
        );
        cmd.arg("EVALSHA").arg(&self.sha).arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        cmd
    }

    /// `SCRIPT LOAD <source>`.
    pub(crate) fn load(&self) -> Cmd {
        let mut cmd = redis::cmd("SCRIPT");
        cmd.arg("LOAD").arg(&self.source);
        cmd
    }
}

/// `bytes` as a Lua string literal, every byte a decimal escape (`'\255\100...'`), so any byte
/// string survives, whatever the Lua source's encoding.
fn lua_literal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 + 2);
    out.push('\'');
    for b in bytes {
        out.push('\\');
        out.push_str(&b.to_string());
    }
    out.push('\'');
    out
}

/// A script whose body can use what every script on a session hash shares:
///
/// * `D`: the name of the deadline field ([`DEADLINE_FIELD`]);
/// * `has_keys(key)`: whether the hash `key` holds a session key (a field other than the deadline
///   field). One `HLEN` in the usual case; `HEXISTS` only for a hash of one field.
fn session_script(body: &str) -> Lua {
    let source = format!(
        r#"
local D = {field}
local function has_keys(key)
  local n = redis.call('HLEN', key)
  return n > 1 or (n == 1 and redis.call('HEXISTS', key, D) == 0)
end
{body}"#,
        field = lua_literal(DEADLINE_FIELD),
    );
    Lua::new(source)
}

/// Applies a change set and the expiry atomically.
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key. `ARGV[1]` TTL in ms, or `0` to keep the expiry
/// (`Expiry::Keep`), `ARGV[2]` clear ("1"/"0"), `ARGV[3]` only-if-exists ("1"/"0"), `ARGV[4]`
/// number `n` of removed fields, then the `n` fields, then field/value pairs to set; with a TTL
/// the last pair is always the deadline field and the deadline (unix ms, decimal). Returns 1 if
/// the session exists afterwards, else 0.
///
/// The session exists when its hash holds a field other than the deadline field. Keeping the
/// expiry implies only-if-exists. Fields are written 1000 arguments per `HSET`/`HDEL` call (an
/// even number, so pairs never split; far below the limit of Lua's `unpack`). Order: clear,
/// remove; then, if session keys are left, the set (with the deadline field, in the same `HSET`)
/// and `PEXPIRE` on the hash and the owner key (so the owner binding expires with the session).
/// If none are left, the hash is deleted (it may still hold the deadline field), and so is the
/// owner key if the session existed before. Whether keys are left is known without asking the
/// server unless the write removed keys and set none.
///
/// Keeping the expiry, no `PEXPIRE` runs and the deadline field is not written (`HSET` and
/// `HDEL` leave a key's TTL alone); only a clear, which deletes the hash, reads its `PTTL` and
/// deadline field first and puts both back, so the two stay as they were.
pub(crate) static APPLY: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
local data, okey = KEYS[1], KEYS[2]
local keep = ARGV[1] == '0'
local clear = ARGV[2] == '1'
local removed = tonumber(ARGV[4])
local existed = has_keys(data)
if (keep or ARGV[3] == '1') and not existed then
  return 0
end
local pttl, deadline
if clear then
  if keep then
    pttl = redis.call('PTTL', data)
    deadline = redis.call('HGET', data, D)
  end
  redis.call('DEL', data)
end
local step = 1000
local last = 4 + removed
local i = 5
while i <= last do
  local j = math.min(i + step - 1, last)
  redis.call('HDEL', data, unpack(ARGV, i, j))
  i = j + 1
end
local n = #ARGV
local left
if n - last > (keep and 0 or 2) then
  left = true
elseif clear then
  left = false
elseif removed > 0 then
  left = has_keys(data)
else
  left = existed
end
if not left then
  redis.call('DEL', data)
  if existed then
    redis.call('DEL', okey)
  end
  return 0
end
i = last + 1
while i < n do
  local j = math.min(i + step - 1, n)
  redis.call('HSET', data, unpack(ARGV, i, j))
  i = j + 1
end
if keep then
  if clear then
    if deadline then
      redis.call('HSET', data, D, deadline)
    end
    if pttl > 0 then
      redis.call('PEXPIRE', data, pttl)
    end
  end
  return 1
end
redis.call('PEXPIRE', data, ARGV[1])
redis.call('PEXPIRE', okey, ARGV[1])
return 1
"#,
    )
});

/// Deletes one field; if that leaves no session key, deletes the hash (and its deadline field)
/// and the owner key.
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key, `ARGV[1]` field.
pub(crate) static REMOVE: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
if redis.call('HDEL', KEYS[1], ARGV[1]) == 1 and not has_keys(KEYS[1]) then
  redis.call('DEL', KEYS[1], KEYS[2])
end
return 0
"#,
    )
});

/// Slides the expiry of an existing session (its hash, deadline field and owner key); no effect
/// on a missing one.
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key, `ARGV[1]` TTL in ms, `ARGV[2]` the deadline (unix
/// ms, decimal). Returns 1 if it slid. The deadline field is written before the `PEXPIRE`s
/// (`HSET` keeps a key's TTL, and `PEXPIRE` replaces it), so a key of another type fails with
/// `WRONGTYPE` before anything changed.
pub(crate) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[1], D, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return 1
"#,
    )
});

/// Compare-and-delete release of a lease lock.
///
/// `KEYS[1]` lock key, `ARGV[1]` token. Returns 1 if the token held the lock and released it.
pub(crate) static UNLOCK: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#,
    )
});

/// Adds an id to an owner's set and makes the set live at least `ttl`.
///
/// `KEYS[1]` owner set, `ARGV[1]` id, `ARGV[2]` TTL in ms. (Cluster: first half of `index_add`.)
pub(crate) static INDEX_ADD_SET: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
redis.call('SADD', KEYS[1], ARGV[1])
local ttl = tonumber(ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return 1
"#,
    )
});

/// Writes a session's owner key with the session's remaining lifetime (or `ttl` if the session
/// does not exist yet).
///
/// `KEYS[1]` owner key, `KEYS[2]` data hash, `ARGV[1]` owner, `ARGV[2]` TTL in ms.
/// (Cluster: second half of `index_add`.)
pub(crate) static INDEX_BIND: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local left = redis.call('PTTL', KEYS[2])
if left <= 0 then
  left = tonumber(ARGV[2])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', left)
return 1
"#,
    )
});

/// Both halves of `index_add` in one script (single node only: the set and the session keys are
/// in different slots).
///
/// `KEYS[1]` owner set, `KEYS[2]` owner key, `KEYS[3]` data hash; `ARGV[1]` owner, `ARGV[2]` id,
/// `ARGV[3]` TTL in ms.
pub(crate) static INDEX_ADD_SINGLE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local ttl = tonumber(ARGV[3])
redis.call('SADD', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
local left = redis.call('PTTL', KEYS[3])
if left <= 0 then
  left = ttl
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', left)
return 1
"#,
    )
});

/// Lists an owner's live sessions and prunes dead entries (single node only: it reads the keys of
/// every member session, which it builds from `ARGV[1]`).
///
/// `KEYS[1]` owner set; `ARGV[1]` `<prefix>:{`, `ARGV[2]` owner. A member whose owner key no
/// longer names this owner (expired, removed, unbound, moved) is removed from the set; one whose
/// owner key names this owner and whose hash exists is returned.
pub(crate) static INDEX_SESSIONS_SINGLE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local live = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = ARGV[1] .. id .. '}:'
  if redis.call('GET', base .. 'owner') ~= ARGV[2] then
    redis.call('SREM', KEYS[1], id)
  elseif redis.call('EXISTS', base .. 'data') == 1 then
    live[#live + 1] = id
  end
end
return live
"#,
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lua_literal_escapes_every_byte() {
        assert_eq!(lua_literal(b"\xffd"), r"'\255\100'");
        assert_eq!(lua_literal(b""), "''");
        assert_eq!(
            lua_literal(DEADLINE_FIELD),
            r"'\255\100\101\97\100\108\105\110\101'"
        );
    }
}
