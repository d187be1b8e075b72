//! The Lua scripts of the driver. Each runs atomically on the server in one round trip
//! (`EVALSHA`; on `NOSCRIPT` the driver runs it again as `EVAL` with its source).
//!
//! Every script that writes session keys declares them in `KEYS`, and all of them share the
//! session's hash tag, so the scripts run unchanged on Redis Cluster. The one exception is
//! [`INDEX_SESSIONS_SINGLE`] (and [`INDEX_ADD_SINGLE`]), used only on a single node, which touch
//! keys of several sessions.
//!
//! Every script that sets the expiry of a session hash (apply, save, touch) also writes the hash's
//! deadline field ([`DEADLINE_FIELD`]) and the session's entry in the live index in the same step,
//! and sets the expiry as that absolute deadline (`PEXPIREAT`), so `load` reads the deadline with
//! the data in one `HGETALL` and the server never keeps a session past it; a script that keeps
//! the expiry (apply with `Expiry::Keep`, remove) leaves all three as they are; a script that
//! deletes a session takes it out of the live index; and no script leaves a hash holding the
//! deadline field alone. The live index of a session shares its hash slot (see `Keys::live`), so
//! all of this runs unchanged on a cluster.

use std::sync::LazyLock;

use redis::{Cmd, Script};

use crate::keys::{DEADLINE_FIELD, FOLDED_META, FOLDED_SEEN};

/// A Lua script of this driver, called with `EVALSHA` by its SHA1.
///
/// redis-rs's `ScriptInvocation` copies every key and argument into its own `Vec` before building
/// the command; [`Lua::call`] writes them straight into one [`Cmd`] buffer (on the apply path
/// that saved about 6,000 instructions per call, callgrind). When the server answers `NOSCRIPT`
/// the caller sends the same call as `EVAL` with [`Lua::eval`] (see `RedisClient::eval`).
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

    /// `call`, an `EVALSHA` of this script made by [`call`](Self::call), as `EVAL <source>` with
    /// the same keys and arguments: it runs on whichever node the keys route to (and leaves the
    /// script cached there), so no `SCRIPT LOAD` to every node of a cluster is needed.
    pub(crate) fn eval(&self, call: &Cmd) -> Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(&self.source);
        for arg in call.args_iter().skip(2) {
            if let redis::Arg::Simple(bytes) = arg {
                cmd.arg(bytes);
            }
        }
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

/// The live index's score for a session whose deadline is `deadline` (unix ms): the deadline
/// rounded up to a multiple of `granularity` ms (at least 1). The scripts write it with
/// `ZADD GT`, so an entry's score only grows and is never below its session's deadline: an entry
/// scored at or before now belongs to an expired session (trims and purges remove those), and
/// one scored after now may (`scan` asks whether its hash still exists, and [`PURGE_LIVE`] does
/// for those scored within a granularity ahead). Most writes of a session in use find its entry
/// already in their bucket and change nothing in the sorted set (a no-op `ZADD GT`: no
/// reordering, nothing to replicate).
pub(crate) fn index_score(deadline: u64, granularity: u64) -> u64 {
    let granularity = granularity.max(1);
    deadline.div_ceil(granularity).saturating_mul(granularity)
}

/// Every how many writes that add to the live index one trims it (the store counts them).
pub(crate) const TRIM_EVERY: u32 = 8;

/// How many entries of expired sessions a trimming write removes from the live index at most:
/// two per write on average.
pub(crate) const TRIM_LIMIT: u32 = 2 * TRIM_EVERY;

/// A script whose body can use what every script on a session hash shares:
///
/// * `D`: the name of the deadline field ([`DEADLINE_FIELD`]); `SEEN` and `META`, the session
///   layer's two bookkeeping keys that the deadline field holds ([`FOLDED_SEEN`],
///   [`FOLDED_META`]);
/// * `unfold(v)`: a deadline field's value `v` (or `false`) split into the deadline (a string of
///   digits, maybe empty; `false` without a field), the two folded values (`false` where
///   absent) and whether `v` is in the folded layout (a value without a comma is a deadline
///   alone, written before keys were folded: those hashes keep the two keys as fields);
/// * `fold(deadline, seen, meta)`: the value back (see [`DEADLINE_FIELD`] for the layout);
/// * `has_keys(key)`: whether the hash `key` holds a session key: a field other than the deadline
///   field, or a folded key. One `HLEN` in the usual case; `HGET` of the field only for a hash
///   of one field.
/// * `trim(live, now)`: unless `now` is `'0'`, removes at most [`TRIM_LIMIT`] entries of expired
///   sessions (deadline at or before `now`) from the live index `live`. Every
///   [`TRIM_EVERY`]th write that adds to the index trims it (the others pass `'0'`: the search
///   costs a call, about 1.3 µs of server time, even when it finds nothing), so the index never
///   holds many more entries than live sessions, even where no purge runs: each session's entry
///   is added by a write, and the writes take out two expired entries each on average.
fn session_script(body: &str) -> Lua {
    let source = format!(
        r#"
local D, SEEN, META = {field}, {seen}, {meta}
local function unfold(v)
  if not v then
    return false, false, false, false
  end
  local dl, sl, ml, pos = string.match(v, '^(%d*),([%d%-]+),([%d%-]+),()')
  if not dl then
    if string.find(v, ',', 1, true) then
      return '', false, false, true
    end
    return v, false, false, false
  end
  local seen, meta = false, false
  if sl ~= '-' then
    local n = tonumber(sl)
    seen = string.sub(v, pos, pos + n - 1)
    pos = pos + n
  end
  if ml ~= '-' then
    meta = string.sub(v, pos, pos + tonumber(ml) - 1)
  end
  return dl, seen, meta, true
end
local function fold(dl, seen, meta)
  return dl .. ',' .. (seen and #seen or '-') .. ',' .. (meta and #meta or '-') .. ','
    .. (seen or '') .. (meta or '')
end
local function has_keys(key)
  local n = redis.call('HLEN', key)
  if n > 1 then
    return true
  end
  if n == 0 then
    return false
  end
  local v = redis.call('HGET', key, D)
  if not v then
    return true
  end
  local _, seen, meta = unfold(v)
  return seen ~= false or meta ~= false
end
local function trim(live, now)
  if now == '0' then
    return
  end
  local old = redis.call('ZRANGEBYSCORE', live, '-inf', now, 'LIMIT', 0, {trim})
  if #old > 0 then
    redis.call('ZREM', live, unpack(old))
  end
end
{body}"#,
        trim = TRIM_LIMIT,
        field = lua_literal(DEADLINE_FIELD),
        seen = lua_literal(FOLDED_SEEN.as_bytes()),
        meta = lua_literal(FOLDED_META.as_bytes()),
    );
    Lua::new(source)
}

/// Applies a change set and the expiry atomically, and keeps the live index in step.
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key, `KEYS[3]` live index (a sorted set of ids scored by
/// an upper bound of their deadline, see [`index_score`]). `ARGV[1]` the deadline (unix ms,
/// decimal), or `0` to keep the expiry (`Expiry::Keep`), `ARGV[2]` clear ("1"/"0"), `ARGV[3]`
/// only-if-exists ("1"/"0"), `ARGV[4]` the session id, `ARGV[5]` now (unix ms, the clock the
/// deadline was computed on) if this write trims the live index, else `0` (see `trim`),
/// `ARGV[6]` the index score of the deadline ([`index_score`]; `0` with `ARGV[1]` `0`),
/// `ARGV[7]`/`ARGV[8]` what happens to the folded key [`FOLDED_SEEN`] (`k` keep, `r` remove,
/// `s` set to `ARGV[8]`; `ARGV[8]` is empty unless `s`), `ARGV[9]`/`ARGV[10]` the same for
/// [`FOLDED_META`], `ARGV[11]` number `n` of removed fields, then the `n` fields, then
/// field/value pairs to set (neither holds a folded key), the last pair always the deadline
/// field and a placeholder the script replaces with the field's new value (so the field goes
/// in the same `HSET` as the keys). Returns 1 if the session exists afterwards, else 0.
///
/// The session exists when its hash holds a session key (a field other than the deadline field,
/// or a folded key). Keeping the expiry implies only-if-exists. Fields are written 1000
/// arguments per `HSET`/`HDEL` call (an even number, so pairs never split; far below the limit of
/// Lua's `unpack`). Order: clear, remove; then, if session keys are left, the set, the deadline
/// field (the deadline and the folded keys, see [`DEADLINE_FIELD`]), `PEXPIREAT` of the
/// deadline on the hash (an absolute time, so a server that runs the script late never stretches
/// the session past the deadline the client recorded), and the id's score in the live index with
/// `ZADD GT CH` (which the write also trims, see `trim`): a score only grows, so a write whose
/// deadline falls in the bucket the entry already has changes nothing in the sorted set; when it
/// does raise the score, the owner key's expiry moves to the new score (see [`BIND`]: the owner
/// key expires at the score, never before the session). If none are left, the hash is deleted,
/// the id leaves the live index, and the owner key goes too if the session existed before.
///
/// The one read is the deadline field (`HGET`): it says whether the session exists (when it
/// holds a folded key, as every session the session layer saved does; else an `HLEN` tells) and
/// holds the folded keys the write keeps. A hash whose deadline field is a deadline alone
/// (written before keys were folded) has the two keys as fields: the write moves them into the
/// field.
///
/// Keeping the expiry, no `PEXPIREAT` runs and the deadline stays; the live index is not written
/// (`HSET` and `HDEL` leave a key's TTL alone); only a clear, which deletes the hash, reads its
/// `PTTL` first and puts it back.
pub(crate) static APPLY: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
local data, okey, live = KEYS[1], KEYS[2], KEYS[3]
local keep = ARGV[1] == '0'
local clear = ARGV[2] == '1'
local id = ARGV[4]
local removed = tonumber(ARGV[11])
local old = redis.call('HGET', data, D)
local dl0, seen, meta, folded = unfold(old)
local moved = false
if old and not folded then
  seen, meta = unpack(redis.call('HMGET', data, SEEN, META))
  moved = seen ~= false or meta ~= false
  if moved then
    redis.call('HDEL', data, SEEN, META)
  end
end
local existed
if old and (seen or meta) then
  existed = true
end
local function exists()
  if existed == nil then
    if old then
      existed = redis.call('HLEN', data) > 1
    else
      existed = redis.call('EXISTS', data) == 1
    end
  end
  return existed
end
if (keep or ARGV[3] == '1') and not exists() then
  return 0
end
local pttl
if clear then
  exists()
  if keep then
    pttl = redis.call('PTTL', data)
  end
  redis.call('DEL', data)
  seen, meta = false, false
end
if ARGV[7] == 's' then
  seen = ARGV[8]
elseif ARGV[7] == 'r' then
  seen = false
end
if ARGV[9] == 's' then
  meta = ARGV[10]
elseif ARGV[9] == 'r' then
  meta = false
end
local step = 1000
local last = 11 + removed
local n = #ARGV
if n - last <= 2 then
  exists()
end
local i = 12
while i <= last do
  local j = math.min(i + step - 1, last)
  redis.call('HDEL', data, unpack(ARGV, i, j))
  i = j + 1
end
local left
if n - last > 2 or seen or meta then
  left = true
elseif clear then
  left = false
elseif removed > 0 or moved or ARGV[7] == 'r' or ARGV[9] == 'r' then
  left = redis.call('HLEN', data) > (old and 1 or 0)
else
  left = exists()
end
if not left then
  redis.call('DEL', data)
  if exists() then
    redis.call('DEL', okey)
  end
  redis.call('ZREM', live, id)
  return 0
end
ARGV[n] = fold(keep and (dl0 or '') or ARGV[1], seen, meta)
i = last + 1
while i < n do
  local j = math.min(i + step - 1, n)
  redis.call('HSET', data, unpack(ARGV, i, j))
  i = j + 1
end
if keep then
  if clear and pttl > 0 then
    redis.call('PEXPIRE', data, pttl)
  end
  return 1
end
redis.call('PEXPIREAT', data, ARGV[1])
if redis.call('ZADD', live, 'GT', 'CH', ARGV[6], id) == 1 then
  redis.call('PEXPIREAT', okey, ARGV[6])
end
trim(live, ARGV[5])
return 1
"#,
    )
});

/// The usual save, [`APPLY`] cut to what it needs: a write that sets the expiry, sets
/// [`FOLDED_SEEN`] and some keys, keeps [`FOLDED_META`], and neither clears nor removes (what
/// the session layer sends on every save of a session it loaded). Each `EVALSHA` argument and
/// each line of Lua has a price on the server (about 1,100 instructions per argument, about 5,000
/// per `redis.call`, about 1,000 per string function); this script takes 6 arguments besides the
/// keys and the pairs where [`APPLY`] takes 13, and reads the deadline field with one `string.match` where
/// [`APPLY`] unfolds and folds it in full: 57,000 instructions per call against 79,000
/// (callgrind, a session of six keys).
///
/// `KEYS` as in [`APPLY`]. `ARGV[1]` the deadline (unix ms, decimal), `ARGV[2]` the session id,
/// `ARGV[3]` now if this write trims the live index, else `0` (as `ARGV[5]` of [`APPLY`]),
/// `ARGV[4]` the index score of the deadline ([`index_score`]), `ARGV[5]` the length of the new
/// [`FOLDED_SEEN`] value in bytes (decimal), `ARGV[6]` that value, then field/value pairs to set
/// (none of them a folded key; at most [`SAVE_MAX_PAIRS`], so one `unpack` takes them).
///
/// It writes only a session that exists in the folded layout with its [`FOLDED_META`] held in
/// the deadline field, as every session the session layer saved is: then it does what [`APPLY`]
/// does for this write (one `HSET` of the keys and the deadline field, whose deadline and seen
/// value are new and whose meta is kept, `PEXPIREAT`, `ZADD GT CH` and, when that raised the
/// score, `PEXPIREAT` of the owner key, the trim) and returns 1. For anything else (no deadline
/// field: a missing session or a hash of the older layout; no meta in the field; a field out of
/// the layout) it writes nothing and returns -1, and the caller sends the same write as
/// [`APPLY`], which handles every case.
pub(crate) static SAVE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r#"local data, okey, live = KEYS[1], KEYS[2], KEYS[3]
local old = redis.call('HGET', data, {field})
if not old then
  return -1
end
local sl, ml, p = string.match(old, '^%d*,([%d%-]+),(%d+),()')
if not ml then
  return -1
end
local ns = sl == '-' and 0 or tonumber(sl)
if not ns or p + ns + tonumber(ml) ~= #old + 1 then
  return -1
end
redis.call('HSET', data, {field},
  ARGV[1] .. ',' .. ARGV[5] .. ',' .. ml .. ',' .. ARGV[6] .. string.sub(old, p + ns),
  unpack(ARGV, 7))
redis.call('PEXPIREAT', data, ARGV[1])
if redis.call('ZADD', live, 'GT', 'CH', ARGV[4], ARGV[2]) == 1 then
  redis.call('PEXPIREAT', okey, ARGV[4])
end
if ARGV[3] ~= '0' then
  local expired = redis.call('ZRANGEBYSCORE', live, '-inf', ARGV[3], 'LIMIT', 0, {trim})
  if #expired > 0 then
    redis.call('ZREM', live, unpack(expired))
  end
end
return 1
"#,
        field = lua_literal(DEADLINE_FIELD),
        trim = TRIM_LIMIT,
    ))
});

/// The most field/value pairs a [`SAVE`] call takes (one `unpack` of its arguments; Lua's stack
/// allows a few thousand); a larger write goes through [`APPLY`].
pub(crate) const SAVE_MAX_PAIRS: usize = 500;

/// Deletes one key; if that leaves no session key, deletes the hash (and its deadline field)
/// and the owner key, and takes the id out of the live index. A folded key ([`FOLDED_SEEN`],
/// [`FOLDED_META`]) goes from the deadline field, or from the hash's fields where the deadline
/// field is a deadline alone (written before keys were folded).
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key, `KEYS[3]` live index, `ARGV[1]` key, `ARGV[2]` id.
pub(crate) static REMOVE: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
local gone
local v = false
if ARGV[1] == SEEN or ARGV[1] == META then
  v = redis.call('HGET', KEYS[1], D)
end
local dl, seen, meta, folded = unfold(v)
if folded then
  if ARGV[1] == SEEN then
    gone = seen ~= false
    seen = false
  else
    gone = meta ~= false
    meta = false
  end
  if gone then
    redis.call('HSET', KEYS[1], D, fold(dl, seen, meta))
  end
else
  gone = redis.call('HDEL', KEYS[1], ARGV[1]) == 1
end
if gone and not has_keys(KEYS[1]) then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
return 0
"#,
    )
});

/// Slides the expiry of an existing session (its hash, deadline field (the keys it folds stay)
/// and live index entry, and its owner key when the entry's score rises, as in [`APPLY`]); no
/// effect on a missing one.
///
/// `KEYS[1]` data hash, `KEYS[2]` owner key, `KEYS[3]` live index, `ARGV[1]` the deadline (unix
/// ms, decimal), `ARGV[2]` the id, `ARGV[3]` now (unix ms) to trim the index or `0` (see
/// `trim`), `ARGV[4]` the deadline's index score ([`index_score`], written with `ZADD GT`).
/// Returns 1 if it slid. The deadline field is written before the
/// `PEXPIREAT`s (`HSET` keeps a key's TTL, and `PEXPIREAT` replaces it), so a key of another type
/// fails with `WRONGTYPE` before anything changed.
pub(crate) static TOUCH: LazyLock<Lua> = LazyLock::new(|| {
    session_script(
        r#"
local v = redis.call('HGET', KEYS[1], D)
if not v and redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local _, seen, meta, folded = unfold(v)
if folded then
  redis.call('HSET', KEYS[1], D, fold(ARGV[1], seen, meta))
else
  redis.call('HSET', KEYS[1], D, ARGV[1])
end
redis.call('PEXPIREAT', KEYS[1], ARGV[1])
if redis.call('ZADD', KEYS[3], 'GT', 'CH', ARGV[4], ARGV[2]) == 1 then
  redis.call('PEXPIREAT', KEYS[2], ARGV[4])
end
trim(KEYS[3], ARGV[3])
return 1
"#,
    )
});

/// One page of a live index, in order of score (then id), starting after a cursor entry.
///
/// `KEYS[1]` live index; `ARGV[1]` now (unix ms), `ARGV[2]` the cursor's score (`''` to start
/// at the first entry scored after now), `ARGV[3]` the cursor's id, `ARGV[4]` the page size `n`,
/// `ARGV[5]` what every session key starts with (`<prefix>:{`). Returns `{more, id1, score1,
/// live1, id2, score2, live2, ...}`, all strings: at most `n` entries scored after now, each with
/// `'1'` if its session's hash exists (a score is only an upper bound of the deadline, see
/// [`index_score`]; Redis deletes a hash at its deadline to the millisecond) and `'0'` if not,
/// and `more` `'1'` if the index holds entries after the last one returned. The hash of an
/// entry shares the index's slot, so the `EXISTS` runs unchanged on a cluster.
///
/// The page starts right after the cursor's entry (found by `ZRANK`) while that entry still has
/// the cursor's score; if it moved or went, after the entries with a lower score, or the same
/// score and a lower or equal id (a bisection over the ranks of that score's entries: with
/// rounded scores, one score may hold many). Ids compare byte by byte, as Redis orders members
/// of equal score (Lua's `<=` on strings follows the server's locale). Never before the first
/// entry scored after now (entries of expired sessions stay in the index until a trim or purge,
/// and are skipped here). An entry whose score grows during a walk moves ahead and may be seen
/// again; one live throughout is never missed.
pub(crate) static SCAN_LIVE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local key, now, n, base = KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[4]), ARGV[5]
local function le(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a <= #b
end
local first = redis.call('ZCOUNT', key, '-inf', now)
if ARGV[2] ~= '' then
  local at, id = tonumber(ARGV[2]), ARGV[3]
  local score = redis.call('ZSCORE', key, id)
  local from
  if score and tonumber(score) == at then
    from = redis.call('ZRANK', key, id) + 1
  else
    local lo = redis.call('ZCOUNT', key, '-inf', '(' .. ARGV[2])
    local hi = redis.call('ZCOUNT', key, '-inf', ARGV[2])
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if le(redis.call('ZRANGE', key, mid, mid)[1], id) then
        lo = mid + 1
      else
        hi = mid
      end
    end
    from = lo
  end
  if from > first then
    first = from
  end
end
local page = redis.call('ZRANGE', key, first, first + n - 1, 'WITHSCORES')
local more = '0'
if first + n < redis.call('ZCARD', key) then
  more = '1'
end
local out = {more}
for i = 1, #page, 2 do
  out[#out + 1] = page[i]
  out[#out + 1] = page[i + 1]
  out[#out + 1] = tostring(redis.call('EXISTS', base .. page[i] .. '}:data'))
end
return out
"#,
    )
});

/// Removes the entries of expired sessions from a live index and returns how many it removed.
///
/// `KEYS[1]` live index; `ARGV[1]` now (unix ms), `ARGV[2]` now + the store's granularity,
/// `ARGV[3]` what every session key starts with (`<prefix>:{`). Entries scored at or before now
/// go without a look (a score is never below its session's deadline); an entry scored up to a
/// granularity after now may belong to a session that has expired since its last write (its
/// score is its deadline rounded up), so it goes if its session's hash no longer exists (the
/// first 1,000 such entries of the index per call, so that one call blocks the server for a
/// millisecond or so at most; the others go at a later purge or once their score has passed). An
/// entry scored later stays until its score has passed (a session whose TTL a write shortened
/// keeps its higher score: `ZADD GT`).
pub(crate) static PURGE_LIVE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(
        r#"
local key, base = KEYS[1], ARGV[3]
local n = redis.call('ZREMRANGEBYSCORE', key, '-inf', ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', key, '(' .. ARGV[1], ARGV[2], 'LIMIT', 0, 1000)) do
  if redis.call('EXISTS', base .. id .. '}:data') == 0 then
    n = n + redis.call('ZREM', key, id)
  end
end
return n
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

/// `bind(okey, data, live, owner, id, ttl)`: writes a session's owner key `okey` naming `owner`,
/// expiring with the session: after the session's remaining lifetime (`PTTL` of its hash
/// `data`, or `ttl` ms if the session does not exist yet), or at the score of its entry in the
/// live index `live` if that is later. The apply and touch scripts move the owner key's expiry
/// only when they raise that score (`ZADD GT CH` says so), to the new score: so an owner key
/// never expires before its session, and outlives it by less than the index's granularity (every
/// reader of an owner key checks the session's hash).
const BIND: &str = r#"
local function bind(okey, data, live, owner, id, ttl)
  local left = redis.call('PTTL', data)
  if left <= 0 then
    left = ttl
  end
  redis.call('SET', okey, owner, 'PX', left)
  local score = redis.call('ZSCORE', live, id)
  if score then
    local t = redis.call('TIME')
    local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    if tonumber(score) - now > left then
      redis.call('PEXPIREAT', okey, score)
    end
  end
end
"#;

/// Writes a session's owner key (see [`BIND`]).
///
/// `KEYS[1]` owner key, `KEYS[2]` data hash, `KEYS[3]` live index; `ARGV[1]` owner, `ARGV[2]`
/// TTL in ms, `ARGV[3]` id. (Cluster: second half of `index_add`; the three keys share the
/// session's slot.)
pub(crate) static INDEX_BIND: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r#"{BIND}
bind(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[3], tonumber(ARGV[2]))
return 1
"#
    ))
});

/// Both halves of `index_add` in one script (single node only: the set and the session keys are
/// in different slots).
///
/// `KEYS[1]` owner set, `KEYS[2]` owner key, `KEYS[3]` data hash, `KEYS[4]` live index;
/// `ARGV[1]` owner, `ARGV[2]` id, `ARGV[3]` TTL in ms.
pub(crate) static INDEX_ADD_SINGLE: LazyLock<Lua> = LazyLock::new(|| {
    Lua::new(format!(
        r#"{BIND}
local ttl = tonumber(ARGV[3])
redis.call('SADD', KEYS[1], ARGV[2])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
bind(KEYS[2], KEYS[3], KEYS[4], ARGV[1], ARGV[2], ttl)
return 1
"#
    ))
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
