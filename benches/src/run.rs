//! Running a phase: `ops` operations spread over `concurrency` tasks, each latency recorded in
//! an HDR histogram.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::Result;
use crate::targets::{Target, ThreadTarget};

/// The three phases of the workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// New sessions with the five keys.
    Create,
    /// Load, read two keys, close without writing.
    Read,
    /// Load, read two keys, increment a counter, save.
    Write,
}

impl Phase {
    /// Every phase, in the order they run.
    pub const ALL: [Phase; 3] = [Phase::Create, Phase::Read, Phase::Write];

    /// The phase's name in output lines.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Create => "create",
            Phase::Read => "read",
            Phase::Write => "write",
        }
    }
}

/// What a phase measured.
#[derive(Clone, Debug)]
pub struct PhaseResult {
    /// Operations run.
    pub ops: u64,
    /// Wall time of the whole phase.
    pub elapsed: Duration,
    /// Latency of each operation, in nanoseconds.
    pub latency: Histogram<u64>,
}

impl PhaseResult {
    /// Operations per second over the phase.
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Latency at quantile `q` (0.0..=1.0), in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        self.latency.value_at_quantile(q) as f64 / 1000.0
    }
}

fn histogram() -> Result<Histogram<u64>> {
    // 1 ns .. 100 s, 2 significant digits (quantiles within 1%): 3 digits made each histogram
    // about 240 KB, and the session side's 256 tasks, one histogram each, then lost 12-17% of
    // their memory-store read throughput to cache misses the raw side's 16 threads did not have
    Ok(Histogram::new_with_bounds(1, 100_000_000_000, 2)?)
}

/// A small, fast generator for picking sessions (xorshift64*): not for anything secret.
#[derive(Clone, Debug)]
pub struct Pick(u64);

impl Pick {
    /// A generator seeded with `seed` (any value).
    pub fn new(seed: u64) -> Self {
        Pick(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1) as u64) as usize
    }
}

/// Runs `ops` operations of `phase` on `target` from `concurrency` tasks. Create operations make
/// sessions numbered from `first`; reads and writes pick uniformly from `ids`. Returns the ids
/// created (for [`Phase::Create`]) and the measurements; the first failing operation fails the
/// phase.
pub async fn run_phase(
    target: Arc<dyn Target>,
    phase: Phase,
    ops: u64,
    concurrency: usize,
    ids: Arc<Vec<String>>,
    first: u64,
    seed: u64,
) -> Result<(Vec<String>, PhaseResult)> {
    if phase != Phase::Create && ids.is_empty() {
        return Err("no sessions to read or write".into());
    }
    let concurrency = concurrency.max(1) as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..concurrency {
        let share = ops / concurrency + u64::from(t < ops % concurrency);
        let target = target.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram()?;
            let mut created = Vec::new();
            let mut pick = Pick::new(seed ^ (t + 1));
            for i in 0..share {
                let began = Instant::now();
                match phase {
                    Phase::Create => {
                        created.push(target.create(first + t + i * concurrency).await?);
                    }
                    Phase::Read => target.read(&ids[pick.below(ids.len())]).await?,
                    Phase::Write => target.write(&ids[pick.below(ids.len())]).await?,
                }
                hist.saturating_record(began.elapsed().as_nanos() as u64);
            }
            Ok::<_, crate::BoxError>((created, hist))
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        parts.push(task.await??);
    }
    merge(ops, start, parts)
}

/// As [`run_phase`], on `concurrency` OS threads each looping on `target` with blocking calls
/// (the honest floor of an embedded backend, [`crate::direct`]). Blocks the calling thread: call
/// it from `spawn_blocking` (or outside any runtime).
pub fn run_phase_threads(
    target: Arc<dyn ThreadTarget>,
    phase: Phase,
    ops: u64,
    concurrency: usize,
    ids: Arc<Vec<String>>,
    first: u64,
    seed: u64,
) -> Result<(Vec<String>, PhaseResult)> {
    if phase != Phase::Create && ids.is_empty() {
        return Err("no sessions to read or write".into());
    }
    let concurrency = concurrency.max(1) as u64;
    let start = Instant::now();
    let mut threads = Vec::new();
    for t in 0..concurrency {
        let share = ops / concurrency + u64::from(t < ops % concurrency);
        let target = target.clone();
        let ids = ids.clone();
        let worker = t as usize;
        let thread = std::thread::Builder::new()
            .name(format!("direct-{t}"))
            .spawn(move || {
                let mut hist = histogram()?;
                let mut created = Vec::new();
                let mut pick = Pick::new(seed ^ (t + 1));
                for i in 0..share {
                    let began = Instant::now();
                    match phase {
                        Phase::Create => {
                            created.push(target.create(worker, first + t + i * concurrency)?);
                        }
                        Phase::Read => target.read(worker, &ids[pick.below(ids.len())])?,
                        Phase::Write => target.write(worker, &ids[pick.below(ids.len())])?,
                    }
                    hist.saturating_record(began.elapsed().as_nanos() as u64);
                }
                Ok::<_, crate::BoxError>((created, hist))
            })?;
        threads.push(thread);
    }
    let mut parts = Vec::with_capacity(threads.len());
    for thread in threads {
        parts.push(
            thread
                .join()
                .map_err(|_| crate::BoxError::from("a benchmark thread panicked"))??,
        );
    }
    merge(ops, start, parts)
}

/// The ids each task or thread created and the merged latencies, timed from `start`.
fn merge(
    ops: u64,
    start: Instant,
    parts: Vec<(Vec<String>, Histogram<u64>)>,
) -> Result<(Vec<String>, PhaseResult)> {
    let elapsed = start.elapsed();
    let mut latency = histogram()?;
    let mut created = Vec::new();
    for (c, h) in parts {
        latency.add(&h)?;
        created.extend(c);
    }
    Ok((
        created,
        PhaseResult {
            ops,
            elapsed,
            latency,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_stays_in_range_and_spreads() {
        let mut p = Pick::new(3);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            seen[p.below(10)] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800), "{seen:?}");
    }
}
