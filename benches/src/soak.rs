//! The soak run of the `soak` binary: a fixed request rate through the session layer for a set
//! time, reported per window (a minute by default): the process's resident memory, latency
//! quantiles, operations done and errors; then a verdict on whether memory or p99 latency grew
//! between the first and the last window.
//!
//! The load is open-loop: operation `i` is due at `start + i / rate` whatever happened before,
//! and its latency is measured from that due time to its end, so a store that falls behind shows
//! it as latency (queueing included) instead of quietly lowering the rate. At most
//! `max_in_flight` operations run at once; past that the dispatcher waits, and the waiting
//! counts in the latency of the operations it delays.
//!
//! The workload is a web app's: a fixed population of logged-in sessions (five keys, about 1 KB,
//! [`crate::payload`]), and a mix of *reads* (load, read two keys, save without writing), *writes*
//! (load, read two keys, increment a counter, save) and *logins* (a user logs out of the session
//! in one slot of the population, destroying it, and logs in again: a new session with the five
//! keys, bound to the user in the owner index), so the population keeps its size.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use session_core::Manager;
use tokio::sync::Semaphore;

use crate::Result;
use crate::payload::{self, COUNTER, KEYS};
use crate::run::Pick;

/// Relative weights of the three operations (`80,15,5` by default: 80 % reads, 15 % writes,
/// 5 % logins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mix {
    /// Weight of reads.
    pub read: u32,
    /// Weight of writes.
    pub write: u32,
    /// Weight of logins (a logout and a new session).
    pub login: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            read: 80,
            write: 15,
            login: 5,
        }
    }
}

impl Mix {
    /// Parses `READ,WRITE,LOGIN` weights (`80,15,5`); at least one must be above zero.
    pub fn parse(text: &str) -> Result<Mix> {
        let parts: Vec<u32> = text
            .split(',')
            .map(|p| p.trim().parse::<u32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("--mix {text:?}: {e}"))?;
        let [read, write, login] = parts[..] else {
            return Err(format!("--mix {text:?}: three weights READ,WRITE,LOGIN").into());
        };
        if u64::from(read) + u64::from(write) + u64::from(login) == 0 {
            return Err(format!("--mix {text:?}: every weight is zero").into());
        }
        Ok(Mix { read, write, login })
    }

    /// The operation a uniform number `x` below [`total`](Self::total) stands for.
    fn op(&self, x: u32) -> Op {
        if x < self.read {
            Op::Read
        } else if x < self.read + self.write {
            Op::Write
        } else {
            Op::Login
        }
    }

    /// The sum of the weights.
    pub fn total(&self) -> u32 {
        self.read + self.write + self.login
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.read, self.write, self.login)
    }
}

/// Parses a duration: `90` or `90s` (seconds), `10m`, `1h`, `500ms`.
pub fn parse_duration(text: &str) -> Result<Duration> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|e| format!("duration {text:?}: {e}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("duration {text:?}: unit must be ms, s, m or h").into()),
    };
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("duration {text:?} must be above zero").into())
}

/// Parses a rate: `2000` or `2000/s`, operations per second, above zero.
pub fn parse_rate(text: &str) -> Result<f64> {
    let rate: f64 = text
        .trim()
        .trim_end_matches("/s")
        .replace('_', "")
        .parse()
        .map_err(|e| format!("rate {text:?}: {e}"))?;
    if !(rate > 0.0 && rate.is_finite()) {
        return Err(format!("rate {text:?} must be above zero").into());
    }
    Ok(rate)
}

/// The resident set size of this process in bytes (`VmRSS` in `/proc/self/status`), or `None`
/// where there is no such file.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What a soak run does.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Operations started per second.
    pub rate: f64,
    /// How long the load runs.
    pub duration: Duration,
    /// The reporting window (a minute by default).
    pub window: Duration,
    /// Sessions in the population (created before the run).
    pub sessions: usize,
    /// The operation mix.
    pub mix: Mix,
    /// Most operations running at once.
    pub max_in_flight: usize,
}

impl Default for SoakConfig {
    fn default() -> Self {
        SoakConfig {
            rate: 2000.0,
            duration: Duration::from_secs(600),
            window: Duration::from_secs(60),
            sessions: 10_000,
            mix: Mix::default(),
            max_in_flight: 1024,
        }
    }
}

/// The three operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Login,
}

/// How an operation ended when it did not fail.
enum Done {
    /// As planned.
    Ok,
    /// The session was gone: a login in the same slot destroyed it meanwhile.
    Missing,
}

/// Most distinct error texts a window keeps; further ones count as "(other errors)".
const MAX_ERROR_TEXTS: usize = 16;

/// One reporting window.
#[derive(Clone, Debug)]
pub struct Window {
    /// 1 for the first window.
    pub index: usize,
    /// Length of the window (the last one may be shorter).
    pub length: Duration,
    /// Operations that ended in this window, failed ones included.
    pub ops: u64,
    /// Of those: reads, writes, logins.
    pub by_op: [u64; 3],
    /// Operations that failed with an error.
    pub errors: u64,
    /// Reads and writes that found their session gone (a concurrent login in the same slot);
    /// not errors.
    pub missing: u64,
    /// The errors' texts (cut to 160 characters, at most 16 kept), each with its count.
    pub error_texts: BTreeMap<String, u64>,
    /// Latency of each operation from its due time to its end, in nanoseconds.
    pub latency: Histogram<u64>,
    /// How late each operation started after its due time, in nanoseconds: the dispatcher's
    /// wake-up and spawn, plus the wait for a free slot when `max_in_flight` operations run.
    pub lag: Histogram<u64>,
    /// Each operation from its start to its end, in nanoseconds: the session layer and the
    /// store, without the wait to start (on a machine short of CPU, that wait is most of the
    /// tail of [`latency`](Self::latency)).
    pub service: Histogram<u64>,
    /// Resident memory at the end of the window, in bytes (0 where unknown).
    pub rss: u64,
    /// Highest resident memory seen during the window (sampled every second), in bytes.
    pub rss_max: u64,
    /// Most operations in flight at once, sampled every second.
    pub in_flight_max: u64,
}

impl Window {
    /// A window whose histograms are already resident: 2 significant digits (quantiles within
    /// 1 %), every counter page written once, so that recording into a new window later does
    /// not grow the process's memory and blur the measurement.
    fn new(index: usize, length: Duration) -> Result<Window> {
        let histogram = || -> Result<Histogram<u64>> {
            let mut h = Histogram::new_with_bounds(1, 1_000_000_000_000, 2)?;
            h.reset();
            Ok(h)
        };
        Ok(Window {
            index,
            length,
            ops: 0,
            by_op: [0; 3],
            errors: 0,
            missing: 0,
            error_texts: BTreeMap::new(),
            latency: histogram()?,
            lag: histogram()?,
            service: histogram()?,
            rss: 0,
            rss_max: 0,
            in_flight_max: 0,
        })
    }

    /// The stand-in for a window already handed out: histograms of a few bytes.
    fn spent(index: usize) -> Result<Window> {
        let tiny = || Histogram::new_with_bounds(1, 2, 0);
        Ok(Window {
            index,
            length: Duration::ZERO,
            ops: 0,
            by_op: [0; 3],
            errors: 0,
            missing: 0,
            error_texts: BTreeMap::new(),
            latency: tiny()?,
            lag: tiny()?,
            service: tiny()?,
            rss: 0,
            rss_max: 0,
            in_flight_max: 0,
        })
    }

    /// Operations per second over the window.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.length.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q`, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }

    /// How late operations started at quantile `q`, in microseconds.
    pub fn lag_us(&self, q: f64) -> f64 {
        self.lag.value_at_quantile(q) as f64 / 1000.0
    }

    /// Service time (start to end) at quantile `q`, in microseconds.
    pub fn service_us(&self, q: f64) -> f64 {
        self.service.value_at_quantile(q) as f64 / 1000.0
    }

    /// The largest latency, in microseconds.
    pub fn max_us(&self) -> f64 {
        self.latency.max() as f64 / 1000.0
    }
}

/// The population of logged-in sessions the load works on, one id per slot; a login replaces
/// the session of its slot.
#[derive(Debug)]
pub struct Population(Mutex<Vec<String>>);

impl Population {
    /// Creates `sessions` logged-in sessions with the five keys (slot `i` belongs to user
    /// `user{i:06}`), from 16 tasks.
    pub async fn create(manager: &Manager, sessions: usize) -> Result<Population> {
        const TASKS: usize = 16;
        let mut tasks = Vec::new();
        for t in 0..TASKS {
            let manager = manager.clone();
            tasks.push(tokio::spawn(async move {
                let mut made = Vec::new();
                for slot in (t..sessions).step_by(TASKS) {
                    made.push((slot, new_session(&manager, slot).await?));
                }
                Ok::<_, crate::BoxError>(made)
            }));
        }
        let mut ids = vec![String::new(); sessions];
        for task in tasks {
            for (slot, id) in task.await?? {
                ids[slot] = id;
            }
        }
        Ok(Population(Mutex::new(ids)))
    }

    /// How many sessions (slots) there are.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, slot: usize) -> String {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)[slot].clone()
    }

    fn replace(&self, slot: usize, id: String) -> String {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut ids[slot], id)
    }
}

/// The user of population slot `slot`.
fn user(slot: usize) -> String {
    format!("user{slot:06}")
}

/// A new session for slot `slot` with the five keys, logged in as its user; returns its id.
async fn new_session(manager: &Manager, slot: usize) -> Result<String> {
    let (user_id, name, roles, cart, csrf) = payload::values(slot as u64);
    let s = manager.load(None);
    s.set(KEYS[0], &user_id).await?;
    s.set(KEYS[1], &name).await?;
    s.set(KEYS[2], &roles).await?;
    s.set(KEYS[3], &cart).await?;
    s.set(KEYS[4], &csrf).await?;
    s.login(&user(slot)).await?;
    let out = s.save().await?;
    let id = out
        .cookie
        .id()
        .ok_or("a new session was saved without an id")?;
    Ok(id.as_str().to_owned())
}

async fn run_op(manager: &Manager, population: &Population, op: Op, slot: usize) -> Result<Done> {
    match op {
        Op::Read | Op::Write => {
            let id = population.get(slot);
            let s = manager.load(Some(id.as_str()));
            let user_id: Option<u64> = s.get(KEYS[0]).await?;
            let name: Option<String> = s.get(KEYS[1]).await?;
            if user_id.is_none() || name.is_none() {
                return Ok(Done::Missing);
            }
            if op == Op::Write {
                let n: u64 = s.get(COUNTER).await?.unwrap_or(0);
                s.set(COUNTER, &(n + 1)).await?;
            }
            let out = s.save().await?;
            if op == Op::Write && !out.wrote {
                return Ok(Done::Missing);
            }
            if op == Op::Read && out.wrote {
                return Err("a read-only request wrote".into());
            }
            Ok(Done::Ok)
        }
        Op::Login => {
            let old = population.get(slot);
            let s = manager.load(Some(old.as_str()));
            s.logout().await?;
            s.save().await?;
            let id = new_session(manager, slot).await?;
            population.replace(slot, id);
            Ok(Done::Ok)
        }
    }
}

/// The windows' shared tallies while the run goes.
struct Tally {
    start: Instant,
    window: Duration,
    windows: Mutex<Vec<Window>>,
}

impl Tally {
    fn record(&self, op: Op, due: Instant, began: Instant, outcome: &Result<Done>) {
        let end = Instant::now();
        let at = end.saturating_duration_since(self.start);
        let mut windows = self.windows.lock().unwrap_or_else(PoisonError::into_inner);
        let last = windows.len().saturating_sub(1);
        let k = ((at.as_nanos() / self.window.as_nanos().max(1)) as usize).min(last);
        let Some(w) = windows.get_mut(k) else { return };
        w.ops += 1;
        w.by_op[op as usize] += 1;
        match outcome {
            Ok(Done::Ok) => {}
            Ok(Done::Missing) => w.missing += 1,
            Err(e) => {
                w.errors += 1;
                let mut text: String = e.to_string().chars().take(160).collect();
                if w.error_texts.len() >= MAX_ERROR_TEXTS && !w.error_texts.contains_key(&text) {
                    text = "(other errors)".into();
                }
                *w.error_texts.entry(text).or_default() += 1;
            }
        }
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        w.latency
            .saturating_record(nanos(end.saturating_duration_since(due)));
        w.lag
            .saturating_record(nanos(began.saturating_duration_since(due)));
        w.service
            .saturating_record(nanos(end.saturating_duration_since(began)));
    }
}

/// Runs the load on `population` for `config.duration` and calls `each` with every window as
/// soon as it is complete (about a second after its end). Returns every window. Operations
/// that end after the last window's end count in the last window. (`config.sessions` is not
/// used here: the population is what [`Population::create`] made.)
///
/// Setting `stop` ends the run early: no further operation starts, and once the running ones
/// have ended the windows up to the current one are handed out (the current one with its
/// length so far), so an interrupted run still reports what it measured.
pub async fn soak(
    manager: Manager,
    population: Population,
    config: &SoakConfig,
    stop: Arc<AtomicBool>,
    mut each: impl FnMut(&Window),
) -> Result<Vec<Window>> {
    let sessions = population.len();
    if sessions == 0 || config.max_in_flight == 0 {
        return Err("the population and max_in_flight must be above zero".into());
    }
    let population = Arc::new(population);
    let total = (config.rate * config.duration.as_secs_f64()).round() as u64;
    let mut count = config
        .duration
        .as_nanos()
        .div_ceil(config.window.as_nanos().max(1)) as usize;
    let start = Instant::now();
    let windows = (0..count)
        .map(|k| {
            let begins = config.window * k as u32;
            Window::new(k + 1, config.window.min(config.duration - begins))
        })
        .collect::<Result<Vec<_>>>()?;
    let tally = Arc::new(Tally {
        start,
        window: config.window,
        windows: Mutex::new(windows),
    });
    let permits = Arc::new(Semaphore::new(config.max_in_flight));
    let in_flight = Arc::new(AtomicU64::new(0));

    // The dispatcher is an OS thread of its own: `thread::sleep` wakes it within tens of
    // microseconds of an operation's due time, where the runtime's timer has a 1 ms grain.
    let dispatcher = {
        let (tally, permits, in_flight) = (tally.clone(), permits.clone(), in_flight.clone());
        let (manager, population, mix) = (manager.clone(), population.clone(), config.mix);
        let (rate, stop) = (config.rate, stop.clone());
        let runtime = tokio::runtime::Handle::current();
        std::thread::Builder::new()
            .name("soak-dispatch".into())
            .spawn(move || {
                let mut pick = Pick::new(0x50a4);
                for issued in 0..total {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(Some(Instant::now()));
                    }
                    let due = start + Duration::from_secs_f64(issued as f64 / rate);
                    let wait = due.saturating_duration_since(Instant::now());
                    if !wait.is_zero() {
                        std::thread::sleep(wait);
                    }
                    let permit = runtime.block_on(permits.clone().acquire_owned())?;
                    let op = mix.op(pick.below(mix.total() as usize) as u32);
                    let slot = pick.below(sessions);
                    let (manager, population, tally) =
                        (manager.clone(), population.clone(), tally.clone());
                    let in_flight = in_flight.clone();
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    runtime.spawn(async move {
                        let began = Instant::now();
                        let outcome = run_op(&manager, &population, op, slot).await;
                        tally.record(op, due, began, &outcome);
                        in_flight.fetch_sub(1, Ordering::Relaxed);
                        drop(permit);
                    });
                }
                Ok::<_, crate::BoxError>(None)
            })?
    };

    // Every second: resident memory and operations in flight into the current window, and
    // into each window that ended since the last sample its end memory. A window is handed out
    // a second after its end (its late operations are in by then), the last one once every
    // operation has ended.
    let mut sampler = tokio::time::interval(Duration::from_secs(1));
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let end_of = |k: usize| start + (config.window * (k as u32 + 1)).min(config.duration);
    let mut end_rss: Vec<Option<u64>> = vec![None; count];
    let mut dispatcher = Some(dispatcher);
    let mut stopped: Option<Instant> = None;
    let mut done = Vec::with_capacity(count);
    while done.len() < count {
        sampler.tick().await;
        let now = Instant::now();
        let rss = rss_bytes().unwrap_or(0);
        let flying = in_flight.load(Ordering::Relaxed);
        {
            let mut windows = tally.windows.lock().unwrap_or_else(PoisonError::into_inner);
            let at = now.saturating_duration_since(start).as_nanos();
            let k = ((at / config.window.as_nanos().max(1)) as usize).min(count - 1);
            windows[k].rss_max = windows[k].rss_max.max(rss);
            windows[k].in_flight_max = windows[k].in_flight_max.max(flying);
            for (j, end) in end_rss.iter_mut().enumerate() {
                if end.is_none() && end_of(j) <= now {
                    *end = Some(rss);
                    windows[j].rss_max = windows[j].rss_max.max(rss);
                }
            }
        }
        if dispatcher.as_ref().is_some_and(|d| d.is_finished())
            && let Some(d) = dispatcher.take()
        {
            stopped = d.join().map_err(|_| "the dispatcher thread panicked")??;
        }
        let drained = dispatcher.is_none() && in_flight.load(Ordering::Relaxed) == 0;
        if drained && let Some(at) = stopped {
            // stopped early: the window it stopped in is the last, as long as it ran
            let ran = at.saturating_duration_since(start);
            let k = ((ran.as_nanos() / config.window.as_nanos().max(1)) as usize).min(count - 1);
            count = count.min(k + 1).max(done.len());
            let mut windows = tally.windows.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(w) = windows.get_mut(count - 1) {
                w.length = w
                    .length
                    .min(ran.saturating_sub(config.window * (count as u32 - 1)));
            }
        }
        while let Some(k) = Some(done.len()).filter(|&k| k < count) {
            let settled = k + 1 < count && now >= end_of(k) + Duration::from_secs(1);
            if !(settled || drained) {
                break;
            }
            // The window moves out (its resident histograms with it) and a tiny one takes its
            // place: a clone here grew the heap by 100 KB a window, which the first soak runs
            // measured as the store's.
            let mut w = {
                let mut windows = tally.windows.lock().unwrap_or_else(PoisonError::into_inner);
                std::mem::replace(&mut windows[k], Window::spent(k + 1)?)
            };
            w.rss = end_rss[k].unwrap_or(rss);
            w.rss_max = w.rss_max.max(w.rss);
            each(&w);
            done.push(w);
        }
    }
    Ok(done)
}

/// Whether memory and p99 latency grew from the first window to the last.
#[derive(Clone, Debug)]
pub struct Verdict {
    /// Resident memory at the end of the first and of the last window, in bytes.
    pub rss: (u64, u64),
    /// p99 latency of the first and of the last window, in microseconds.
    pub p99_us: (f64, f64),
    /// p99 service time (start to end) of the first and of the last window, in microseconds.
    pub service_p99_us: (f64, f64),
    /// Least-squares slope of the windows' end memory, in bytes per window.
    pub rss_slope: f64,
    /// Memory grew: the last window ends more than 10 % and more than 8 MiB above the first.
    pub memory_grew: bool,
    /// Latency grew: the last window's p99 is more than 1.5 times and more than 200 µs above the
    /// first's.
    pub latency_grew: bool,
    /// Errors in all.
    pub errors: u64,
    /// Operations in all.
    pub ops: u64,
    /// The slowest window's rate, operations per second.
    pub min_ops_per_sec: f64,
}

/// Compares the first and the last window (see [`Verdict`] for the thresholds); `None` for no
/// window.
pub fn verdict(windows: &[Window]) -> Option<Verdict> {
    let (first, last) = (windows.first()?, windows.last()?);
    let n = windows.len() as f64;
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = windows.iter().map(|w| w.rss as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, w) in windows.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (w.rss as f64 - mean_y);
        den += dx * dx;
    }
    let rss_slope = if den > 0.0 { num / den } else { 0.0 };
    let (r0, r1) = (first.rss, last.rss);
    let (p0, p1) = (first.quantile_us(0.99), last.quantile_us(0.99));
    Some(Verdict {
        rss: (r0, r1),
        p99_us: (p0, p1),
        service_p99_us: (first.service_us(0.99), last.service_us(0.99)),
        rss_slope,
        memory_grew: r1 as f64 > r0 as f64 * 1.10 && r1.saturating_sub(r0) > 8 << 20,
        latency_grew: p1 > p0 * 1.5 && p1 - p0 > 200.0,
        errors: windows.iter().map(|w| w.errors).sum(),
        ops: windows.iter().map(|w| w.ops).sum(),
        min_ops_per_sec: windows
            .iter()
            .map(Window::ops_per_sec)
            .fold(f64::INFINITY, f64::min),
    })
}

/// Bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations_rates_and_mixes_parse() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("10d").is_err());
        assert!(parse_duration("x").is_err());
        assert_eq!(parse_rate("2000/s").unwrap(), 2000.0);
        assert_eq!(parse_rate("2_000").unwrap(), 2000.0);
        assert!(parse_rate("0").is_err());
        assert_eq!(
            Mix::parse("70,20,10").unwrap(),
            Mix {
                read: 70,
                write: 20,
                login: 10
            }
        );
        assert!(Mix::parse("1,2").is_err());
        assert!(Mix::parse("0,0,0").is_err());
    }

    #[test]
    fn the_mix_maps_weights_to_operations() {
        let mix = Mix::default();
        let ops: Vec<Op> = (0..mix.total()).map(|x| mix.op(x)).collect();
        assert_eq!(ops.iter().filter(|o| **o == Op::Read).count(), 80);
        assert_eq!(ops.iter().filter(|o| **o == Op::Write).count(), 15);
        assert_eq!(ops.iter().filter(|o| **o == Op::Login).count(), 5);
    }

    fn window(rss_mib: u64, p99_us: u64) -> Window {
        let mut w = Window::new(1, Duration::from_secs(60)).unwrap();
        w.rss = rss_mib << 20;
        for _ in 0..100 {
            w.latency.record(p99_us * 1000).unwrap();
        }
        w.ops = 100;
        w
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_short_soak_runs_every_operation_in_its_windows() {
        let store = Arc::new(session_memory::MemoryStore::new());
        let manager = Manager::new(store, session_core::Config::default()).unwrap();
        let population = Population::create(&manager, 40).await.unwrap();
        let before: Vec<String> = population.0.lock().unwrap().clone();
        let config = SoakConfig {
            rate: 400.0,
            duration: Duration::from_millis(1500),
            window: Duration::from_millis(500),
            sessions: 40,
            mix: Mix {
                read: 50,
                write: 30,
                login: 20,
            },
            max_in_flight: 64,
        };
        let mut seen = Vec::new();
        let stop = Arc::new(AtomicBool::new(false));
        let windows = soak(manager.clone(), population, &config, stop, |w| {
            seen.push(w.index)
        })
        .await
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3], "each window handed out once, in order");
        assert_eq!(windows.len(), 3);
        // exactly rate x duration operations, each counted once, none failed
        assert_eq!(windows.iter().map(|w| w.ops).sum::<u64>(), 600);
        assert_eq!(windows.iter().map(|w| w.errors).sum::<u64>(), 0);
        let by_op: Vec<u64> = (0..3)
            .map(|i| windows.iter().map(|w| w.by_op[i]).sum())
            .collect();
        assert!(by_op.iter().all(|&n| n > 0), "{by_op:?}");
        assert!(windows.iter().all(|w| w.rss > 0
            && w.latency.len() == w.ops
            && w.lag.len() == w.ops
            && w.service.len() == w.ops));
        // logins replaced sessions: some of the first population's ids are gone from the store
        let mut gone = 0;
        for id in &before {
            if manager
                .load(Some(id.as_str()))
                .get::<u64>(KEYS[0])
                .await
                .unwrap()
                .is_none()
            {
                gone += 1;
            }
        }
        assert!(gone > 0, "no login replaced a session");
    }

    #[test]
    fn the_verdict_flags_growth_beyond_both_thresholds_only() {
        let flat = verdict(&[window(100, 1000), window(101, 1100)]).unwrap();
        assert!(!flat.memory_grew && !flat.latency_grew);
        let grew = verdict(&[window(100, 1000), window(130, 2000)]).unwrap();
        assert!(grew.memory_grew && grew.latency_grew);
        // relative growth of a small number is not growth
        let small = verdict(&[window(20, 100), window(26, 250)]).unwrap();
        assert!(!small.memory_grew && !small.latency_grew);
        assert!(verdict(&[]).is_none());
    }
}
