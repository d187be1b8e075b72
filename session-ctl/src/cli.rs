//! The command line: arguments (clap), confirmation, output (tables or `--json`), exit codes.

use std::fs::File;
use std::io::{BufReader, BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value as Json, json};
use session_core::Storage;

use crate::confirm::confirm;
use crate::error::{self, CtlError, Result};
use crate::inspect::{self, ListOptions, Row};
use crate::record::{self, Record};
use crate::spec::{Open, Spec};
use crate::transfer::{self, MigrateOptions, MigrateReport, Tally};
use crate::{admin, table, time};

/// `println!` that ignores a closed pipe (`sessionctl list | head`) instead of panicking.
macro_rules! out {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

/// `print!` that ignores a closed pipe.
macro_rules! outp {
    ($($t:tt)*) => {{
        let _ = write!(std::io::stdout(), $($t)*);
    }};
}

/// `eprintln!` that ignores a closed standard error.
macro_rules! err {
    ($($t:tt)*) => {{
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

const AFTER_HELP: &str = "\
Stores (SPEC):
  file:DIR  sqlite:PATH  sled:DIR
  redis://HOST:PORT[/DB][?prefix=P]          (rediss://, redis+unix://)
  redis+cluster://HOST:PORT,HOST:PORT[?prefix=P]
  postgres://USER@HOST:PORT/DB[?schema=S&table=T]
  mysql://USER@HOST:PORT/DB[?table=T]
  memcached://HOST:PORT[?prefix=P]            (no count, list, stats, user, export, migrate --from)

Exit codes:
  0 ok   1 error (store, data, or not confirmed)   2 usage (or a writing command
  without a terminal and without --yes)   3 not found   4 unsupported by this driver
  5 migrate: live source sessions missing from the target";

/// sessionctl: inspect, purge, export and migrate the sessions of any store.
///
/// Reading never changes a session's expiry. Writing commands (destroy, logout-user, purge,
/// import, migrate) ask for confirmation on a terminal, and need --yes otherwise.
#[derive(Debug, Parser)]
#[command(name = "sessionctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// The store, as the application's store spec (see "Stores" below).
    #[arg(
        long,
        short,
        global = true,
        env = "SESSIONCTL_STORE",
        value_name = "SPEC"
    )]
    pub store: Option<String>,
    /// Print JSON for scripts instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Do not ask before writing (required when standard input is not a terminal).
    #[arg(long, short, global = true)]
    pub yes: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// How `get --raw` shows bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RawFormat {
    /// Lower-case hex.
    Hex,
    /// Standard base64.
    Base64,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// The number of live sessions.
    Count,
    /// Live sessions, logged-in users, the spread of expiry times, approximate bytes.
    Stats,
    /// Live sessions with owner, created, last seen and expiry, a page at a time.
    List {
        /// About this many sessions per page (whole scan pages are shown).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Every session, on one page.
        #[arg(long, conflicts_with_all = ["limit", "cursor"])]
        all: bool,
        /// Go on from a previous page (its `next`).
        #[arg(long, allow_hyphen_values = true)]
        cursor: Option<String>,
        /// Only the sessions of this user (through the owner index).
        #[arg(long, allow_hyphen_values = true)]
        owner: Option<String>,
    },
    /// One session: every value decoded from MessagePack to JSON, the metadata, the deadline.
    Get {
        /// The session id (it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
        /// Show every stored key's bytes instead (hex, or base64), reserved keys included.
        #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "hex")]
        raw: Option<RawFormat>,
    },
    /// The live sessions of a user (the owner index).
    User {
        /// The user (the owner the application logged in).
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Log a user out everywhere: destroy every session of theirs.
    LogoutUser {
        /// The user.
        #[arg(allow_hyphen_values = true)]
        name: String,
    },
    /// Destroy one session.
    Destroy {
        /// The session id (it may start with `-`).
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// Delete the expired sessions; prints how many.
    Purge,
    /// Every live session as JSON lines: id, deadline, owner, values (MessagePack, base64).
    Export {
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Add each session's values decoded to JSON ("decoded"; import ignores it).
        #[arg(long)]
        decoded: bool,
    },
    /// Write the sessions of an export into the store, with their deadline and owner.
    Import {
        /// Read this file instead of standard input.
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Leave sessions the store already holds as they are (default: overwrite them).
        #[arg(long)]
        skip_existing: bool,
        /// Read and check everything, write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Copy every live session, with its time left and owner, from one store to another.
    ///
    /// Resumable: writing a session is idempotent, so a run stopped half way and run again ends
    /// complete. Sessions already in the target are overwritten unless --skip-existing. At the
    /// end, checks that every live source session is in the target (exit code 5 if not).
    Migrate {
        /// The source store.
        #[arg(long, value_name = "SPEC")]
        from: String,
        /// The target store (created if missing).
        #[arg(long, value_name = "SPEC")]
        to: String,
        /// Read everything, write nothing; report what would be written.
        #[arg(long)]
        dry_run: bool,
        /// Leave sessions the target already holds as they are (default: overwrite them).
        #[arg(long)]
        skip_existing: bool,
        /// Stop after this many sessions (run again to go on).
        #[arg(long)]
        limit: Option<u64>,
        /// Skip the final check.
        #[arg(long)]
        no_verify: bool,
    },
}

/// Runs sessionctl with the process's arguments; returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                error::USAGE
            } else {
                error::OK
            };
        }
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            err!("sessionctl: cannot start the async runtime: {e}");
            return error::FAILED;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            if json {
                let j = json!({"error": {"code": e.code, "message": e.message, "hint": e.hint}});
                err!("{j}");
            } else {
                err!("sessionctl: {e}");
            }
            e.code
        }
    }
}

fn store_spec(cli: &Cli) -> Result<Spec> {
    match &cli.store {
        Some(s) => s.parse(),
        None => Err(CtlError::usage(
            "no store given",
            "pass --store SPEC (or set SESSIONCTL_STORE), for example --store sqlite:./data/app.sqlite3",
        )),
    }
}

fn print_json(v: &Json) {
    out!("{v}");
}

fn spinner(what: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {human_pos} sessions ({rate}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner())
            .with_key(
                "rate",
                |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0}/s", state.per_sec());
                },
            ),
    );
    pb.set_message(what.to_owned());
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Runs one parsed command; returns the exit code of a success (errors are `Err`).
pub async fn run(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Migrate { .. } => migrate(&cli).await,
        _ => {
            let spec = store_spec(&cli)?;
            let mode = match cli.command {
                Command::Import { .. } => Open::Create,
                _ => Open::Existing,
            };
            let store = spec.open(mode).await?;
            on_store(&cli, &spec, store).await
        }
    }
}

async fn on_store(cli: &Cli, spec: &Spec, store: Arc<dyn Storage>) -> Result<i32> {
    let s = store.as_ref();
    let now = time::now_ms();
    match &cli.command {
        Command::Count => {
            let n = inspect::count(s).await?;
            if cli.json {
                print_json(&json!({ "live": n }));
            } else {
                out!("{n}");
            }
        }
        Command::Stats => {
            let pb = spinner("reading");
            let stats = inspect::stats(s, &|n| pb.set_position(n)).await;
            pb.finish_and_clear();
            let stats = stats?;
            if cli.json {
                print_json(&json!(stats));
            } else {
                out!("live sessions      {}", stats.live);
                out!(
                    "logged-in users    {} ({} sessions)",
                    stats.users,
                    stats.logged_in_sessions
                );
                out!(
                    "approximate size   {} ({} bytes of ids, keys and values)",
                    table::bytes(stats.bytes),
                    stats.bytes
                );
                out!("expiring in");
                for (label, n) in &stats.expiry {
                    out!("  {label:<10} {n}");
                }
                if stats.no_deadline > 0 {
                    out!("  unknown    {}", stats.no_deadline);
                }
            }
        }
        Command::List {
            limit,
            all,
            cursor,
            owner,
        } => {
            let opts = ListOptions {
                limit: (!all).then_some(*limit),
                cursor: cursor.clone(),
                owner: owner.clone(),
            };
            let listing = inspect::list(s, &opts).await?;
            if cli.json {
                print_json(&json!(listing));
            } else {
                outp!("{}", rows_table(&listing.sessions, now));
                let n = listing.sessions.len();
                match &listing.next {
                    Some(c) => out!(
                        "{n} sessions on this page; next page: sessionctl list --cursor={c}{}",
                        owner
                            .as_ref()
                            .map(|o| format!(" --owner={o}"))
                            .unwrap_or_default()
                    ),
                    None => out!("{n} sessions (end of the list)"),
                }
            }
        }
        Command::Get { id, raw } => {
            let id = inspect::parse_id(id)?;
            let r = inspect::get(s, &id).await?;
            print_record(cli.json, &r, *raw, now);
        }
        Command::User { name } => {
            let rows = inspect::user(s, name).await?;
            if cli.json {
                print_json(&json!({ "user": name, "sessions": rows }));
            } else {
                outp!("{}", rows_table(&rows, now));
                out!("{} sessions of {name}", rows.len());
            }
        }
        Command::LogoutUser { name } => {
            let rows = inspect::user(s, name).await?;
            confirm(
                cli.yes,
                &format!(
                    "log {name} out everywhere: destroy {} sessions in {spec}?",
                    rows.len()
                ),
            )?;
            let n = admin::logout_user(store.clone(), name).await?;
            if cli.json {
                print_json(&json!({ "user": name, "destroyed": n }));
            } else {
                out!("{n} sessions of {name} destroyed");
            }
        }
        Command::Destroy { id } => {
            let id = inspect::parse_id(id)?;
            inspect::get(s, &id).await?;
            confirm(
                cli.yes,
                &format!("destroy session {} in {spec}?", id.as_str()),
            )?;
            admin::destroy(s, &id).await?;
            if cli.json {
                print_json(&json!({ "destroyed": id.as_str() }));
            } else {
                out!("session {} destroyed", id.as_str());
            }
        }
        Command::Purge => {
            confirm(cli.yes, &format!("delete the expired sessions of {spec}?"))?;
            let n = admin::purge(s).await?;
            let native = s.capabilities().native_expiry;
            if cli.json {
                print_json(&json!({ "purged": n, "native_expiry": native }));
            } else {
                out!("{n} expired sessions deleted");
                if native {
                    out!(
                        "({} deletes expired sessions by itself: 0 here is normal)",
                        s.name()
                    );
                }
            }
        }
        Command::Export { output, decoded } => {
            let pb = spinner("exporting");
            let n = match output {
                Some(path) => {
                    let file = File::create(path).map_err(|e| {
                        CtlError::failed(
                            format!("cannot create {}: {e}", path.display()),
                            "choose a path you can write to",
                        )
                    })?;
                    let mut w = BufWriter::new(file);
                    transfer::export(s, &mut w, *decoded, &|n| pb.set_position(n)).await
                }
                None => {
                    let stdout = std::io::stdout();
                    let mut w = BufWriter::new(stdout.lock());
                    transfer::export(s, &mut w, *decoded, &|n| pb.set_position(n)).await
                }
            };
            pb.finish_and_clear();
            let n = n?;
            let to = output
                .as_ref()
                .map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
            if cli.json && output.is_some() {
                print_json(&json!({ "exported": n }));
            } else {
                err!("{n} sessions exported to {to}");
            }
        }
        Command::Import {
            input,
            skip_existing,
            dry_run,
        } => {
            let from = input
                .as_ref()
                .map_or_else(|| "standard input".to_owned(), |p| p.display().to_string());
            if !dry_run {
                let how = if *skip_existing {
                    "leaving sessions it already holds"
                } else {
                    "overwriting sessions with the same id"
                };
                confirm(
                    cli.yes,
                    &format!("import the sessions of {from} into {spec}, {how}?"),
                )?;
            }
            let pb = spinner(if *dry_run { "checking" } else { "importing" });
            let tally = match input {
                Some(path) => {
                    let file = File::open(path).map_err(|e| {
                        CtlError::not_found(
                            format!("cannot open {}: {e}", path.display()),
                            "check the path of the export file",
                        )
                    })?;
                    let mut r = BufReader::new(file);
                    transfer::import(s, &mut r, *skip_existing, *dry_run, &|n| pb.set_position(n))
                        .await
                }
                None => {
                    let stdin = std::io::stdin();
                    let mut r = stdin.lock();
                    transfer::import(s, &mut r, *skip_existing, *dry_run, &|n| pb.set_position(n))
                        .await
                }
            };
            pb.finish_and_clear();
            let tally = tally?;
            if cli.json {
                print_json(&json!({ "dry_run": dry_run, "sessions": tally }));
            } else {
                print_tally(&tally, *dry_run);
            }
        }
        Command::Migrate { .. } => {
            return Err(CtlError::failed(
                "internal error: migrate dispatched as a one-store command",
                "report this",
            ));
        }
    }
    Ok(error::OK)
}

async fn migrate(cli: &Cli) -> Result<i32> {
    let Command::Migrate {
        from,
        to,
        dry_run,
        skip_existing,
        limit,
        no_verify,
    } = &cli.command
    else {
        return Err(CtlError::failed(
            "internal error: not migrate",
            "report this",
        ));
    };
    let from_spec: Spec = from.parse()?;
    let to_spec: Spec = to.parse()?;
    if from_spec == to_spec {
        return Err(CtlError::usage(
            "--from and --to name the same store",
            "migrate copies between two different stores",
        ));
    }
    let source = from_spec.open(Open::Existing).await?;
    let target = to_spec.open(Open::Create).await?;
    if !dry_run {
        let how = if *skip_existing {
            "leaving sessions it already holds"
        } else {
            "overwriting sessions with the same id"
        };
        confirm(
            cli.yes,
            &format!("copy every live session of {from_spec} into {to_spec}, {how}?"),
        )?;
    }
    let opts = MigrateOptions {
        dry_run: *dry_run,
        skip_existing: *skip_existing,
        limit: *limit,
        verify: !no_verify,
    };
    let pb = spinner(if *dry_run { "reading" } else { "migrating" });
    let report = transfer::migrate(source.as_ref(), target.as_ref(), &opts, &|n| {
        pb.set_position(n)
    })
    .await;
    pb.finish_and_clear();
    let report = report?;
    if cli.json {
        print_json(&json!(report));
    } else {
        print_migrate(&report, &from_spec, &to_spec);
    }
    match &report.check {
        Some(c) if !c.complete() => Err(CtlError::incomplete(
            format!(
                "the counts do not match: {} live sessions in the source, {} of them in the target",
                c.source_live, c.in_target
            ),
            "run the same migrate again: it is resumable (sessions created in the source during \
             the run are copied by the next run; stop the application's writes for a final one)",
        )),
        _ => Ok(error::OK),
    }
}

fn print_tally(t: &Tally, dry_run: bool) {
    let verb = if dry_run { "to write" } else { "written" };
    out!("read               {}", t.read);
    out!("{verb:<18} {}", t.written);
    out!("owners bound       {}", t.owners_bound);
    if t.owners_not_bound > 0 {
        out!(
            "owners not bound   {} (the target keeps no owner index; the owner stays in the session)",
            t.owners_not_bound
        );
    }
    out!("already there      {}", t.already_there);
    out!("expired, skipped   {}", t.expired);
}

fn print_migrate(r: &MigrateReport, from: &Spec, to: &Spec) {
    out!(
        "{from} -> {to}{}",
        if r.dry_run { " (dry run)" } else { "" }
    );
    print_tally(&r.tally, r.dry_run);
    if !r.whole_source {
        out!("stopped at --limit: run again to go on");
    }
    if let Some(c) = &r.check {
        let verdict = if c.complete() { "ok" } else { "INCOMPLETE" };
        out!(
            "check              {verdict}: {} of {} live source sessions are in the target",
            c.in_target,
            c.source_live
        );
        if let Some(n) = c.target_live {
            out!("target now holds   {n} live sessions");
        }
        for id in &c.missing {
            out!("  missing: {id}");
        }
    }
}

fn rows_table(rows: &[Row], now: u64) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.id.clone(),
                r.owner.clone().unwrap_or_else(|| "-".into()),
                table::when(r.created_ms),
                table::when(r.last_seen_ms),
                table::expires(r.deadline_ms, now),
            ]
        })
        .collect();
    table::render(&["ID", "OWNER", "CREATED", "LAST SEEN", "EXPIRES"], &cells)
}

fn print_record(json: bool, r: &Record, raw: Option<RawFormat>, now: u64) {
    let encode = |b: &[u8]| match raw {
        Some(RawFormat::Base64) => record::base64(b),
        _ => record::hex(b),
    };
    let raw_values: serde_json::Map<String, Json> = r
        .data
        .iter()
        .map(|(k, v)| (k.clone(), json!(encode(v.as_bytes()))))
        .collect();
    if json {
        let mut out = json!({
            "id": r.id.as_str(),
            "deadline_ms": r.deadline_ms,
            "deadline": r.deadline_ms.map(time::rfc3339),
            "expires_in_ms": r.left_ms(now),
            "bytes": r.bytes(),
            "meta": r.meta_json(),
        });
        if let Some(o) = out.as_object_mut() {
            if raw.is_some() {
                o.insert("raw".into(), Json::Object(raw_values));
            } else {
                o.insert("values".into(), Json::Object(r.values_json()));
            }
        }
        print_json(&out);
        return;
    }
    let meta = r.meta_json();
    let text = |v: &Json| match v {
        Json::Null => "-".to_owned(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    };
    out!("session     {}", r.id.as_str());
    out!(
        "expires     {} ({})",
        r.deadline_ms.map_or_else(|| "-".into(), time::rfc3339),
        table::expires(r.deadline_ms, now)
    );
    for (label, key) in [
        ("owner", "owner"),
        ("created", "created"),
        ("logged in", "logged_in"),
        ("last seen", "last_seen"),
        ("last ip", "last_ip"),
        ("user agent", "user_agent"),
    ] {
        out!("{label:<11} {}", text(&meta[key]));
    }
    if let Some(ttl) = meta["own_idle_ttl_ms"].as_u64() {
        out!("own ttl     {}", time::short(ttl));
    }
    if let Some(bad) = meta.get("undecodable") {
        out!("undecodable {bad}");
    }
    out!("size        {}", table::bytes(r.bytes() as u64));
    if raw.is_some() {
        out!("stored keys (MessagePack bytes):");
        for (k, v) in raw_values {
            out!("  {k} = {}", text(&v));
        }
    } else {
        let flash = meta["flash"].as_array().cloned().unwrap_or_default();
        out!("values:");
        for (k, v) in r.values_json() {
            let mark = if flash.contains(&json!(k)) {
                " (flash)"
            } else if meta["temp"].get(&k).is_some() {
                " (temp)"
            } else {
                ""
            };
            out!("  {k} = {v}{mark}");
        }
    }
}
