//! The schema's DDL and its migrations. The tables are the logical schema of `session-sql`
//! ([`session_sql::Table`]); the change set and `remove_all` are PL/pgSQL functions.

/// The schema version this driver writes, kept in the `{table}_schema_version` table.
pub const SCHEMA_VERSION: i64 = 1;

/// `MIGRATIONS[n]` takes the tables from version `n` to `n + 1`, in one transaction. A new
/// store runs all of them. A schema change appends one entry and bumps [`SCHEMA_VERSION`];
/// a released entry never changes. Placeholders ([`session_sql::Tables::render`]): `{S}`
/// sessions, `{V}` values, `{O}` owners, `{L}` locks (qualified, quoted names), `{t}` the bare
/// base name (for index names, which live in their table's schema); and this driver's own,
/// `{APPLY}` and `{REMOVE_ALL}`, the functions.
pub(crate) const MIGRATIONS: [&[&str]; SCHEMA_VERSION as usize] = [
    // 0 -> 1: everything, in one statement block.
    &[r#"
CREATE TABLE {S} (
    id         text COLLATE "C" PRIMARY KEY,
    expires_at bigint NOT NULL               -- ms since the Unix epoch
);
CREATE INDEX "{t}_expires_at" ON {S} (expires_at);
CREATE TABLE {V} (
    id    text COLLATE "C" NOT NULL REFERENCES {S} (id) ON DELETE CASCADE,
    key   text COLLATE "C" NOT NULL,
    value bytea NOT NULL,                    -- MessagePack bytes, opaque to the driver
    PRIMARY KEY (id, key)
);
CREATE TABLE {O} (
    id    text COLLATE "C" PRIMARY KEY,      -- a session id; one owner per session
    owner text COLLATE "C" NOT NULL
);
CREATE INDEX "{t}_owners_owner" ON {O} (owner, id);
CREATE TABLE {L} (
    id         text COLLATE "C" PRIMARY KEY, -- a session id; the session need not exist
    token      text NOT NULL,
    expires_at bigint NOT NULL               -- ms since the Unix epoch
);
CREATE INDEX "{t}_locks_expires_at" ON {L} (expires_at);

-- Applies a change set in one call (so in one round trip and one transaction). Locks the
-- session row first (every writer does), so concurrent change sets serialize on it.
CREATE FUNCTION {APPLY}(
    p_id text, p_now bigint, p_deadline bigint, p_slide boolean, p_clear boolean,
    p_only_if_exists boolean, p_remove text[], p_keys text[], p_values bytea[]
) RETURNS boolean LANGUAGE plpgsql AS $fn$
DECLARE
    v_exp bigint;   -- the stored deadline; -1: the row was created by this call
    v_has boolean;
BEGIN
    IF p_only_if_exists THEN
        SELECT expires_at INTO v_exp FROM {S} WHERE id = p_id FOR UPDATE;
        IF NOT FOUND OR v_exp <= p_now THEN
            RETURN false;
        END IF;
    ELSE
        INSERT INTO {S} AS s (id, expires_at) VALUES (p_id, -1)
            ON CONFLICT (id) DO UPDATE SET expires_at = s.expires_at
            RETURNING s.expires_at INTO v_exp;
    END IF;
    IF v_exp <> -1 AND v_exp <= p_now THEN
        -- expired: starts empty, without its old keys or owner binding
        DELETE FROM {V} WHERE id = p_id;
        DELETE FROM {O} WHERE id = p_id;
    ELSIF p_clear THEN
        DELETE FROM {V} WHERE id = p_id;
    END IF;
    IF cardinality(p_remove) > 0 THEN
        DELETE FROM {V} WHERE id = p_id AND key = ANY (p_remove);
    END IF;
    IF cardinality(p_keys) > 0 THEN
        INSERT INTO {V} (id, key, value)
            SELECT p_id, u.k, u.v FROM unnest(p_keys, p_values) AS u(k, v)
            ON CONFLICT (id, key) DO UPDATE SET value = EXCLUDED.value;
        v_has := true;
    ELSE
        v_has := EXISTS (SELECT 1 FROM {V} WHERE id = p_id);
    END IF;
    IF v_has THEN
        IF p_slide OR v_exp <= p_now THEN
            UPDATE {S} SET expires_at = p_deadline WHERE id = p_id;
        END IF;
    ELSE
        DELETE FROM {S} WHERE id = p_id;
        IF v_exp > p_now THEN
            -- a live session lost its last key: it is gone, with its owner binding
            DELETE FROM {O} WHERE id = p_id;
        END IF;
    END IF;
    RETURN v_has;
END
$fn$;

-- Deletes a session (values by cascade) and its owner binding, session row first like every
-- writer, so it cannot deadlock with an apply.
CREATE FUNCTION {REMOVE_ALL}(p_id text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM {S} WHERE id = p_id;
    DELETE FROM {O} WHERE id = p_id;
END
$fn$;
"#],
];

/// Creates the version table if it is missing.
pub(crate) const VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS {VT} (version bigint NOT NULL)";
