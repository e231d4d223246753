//! The sweep driver: explore a range of seeded workloads in parallel and merge the results.
//!
//! Results are identical for any `jobs`: each seed is explored independently and results are
//! merged in seed order. `--fail-fast` keeps that property (it stops only seeds above the
//! smallest failing seed, and drops their results). The time budget, the progress monitor and
//! the cancellation flag are the wall-clock inputs and live here, never in the model: a sweep
//! cut short says so (`complete: false`, with `budget_exhausted` or `interrupted`, and the seeds
//! not done).

#![deny(missing_docs, missing_debug_implementations)]

mod monitor;
mod results;

pub use monitor::{Monitor, Progress};
pub use results::{
    PARTITIONS_MAX, Partition, RESULTS_FILE, RunOptions, merge_summaries, summary_from_results,
};

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::check::Violation;
use crate::crash::{
    Coverage, CrashConfig, OVER_BUDGET_LISTED, STATES_PER_POINT_MAX, WorkloadReport, explore_seed_until,
};
use crate::target::{Target, TargetError};

use results::{ResultsHeader, ResultsLog};

/// Bound on seeds per sweep.
pub const SEEDS_MAX: u64 = 1 << 32;
/// Bound on worker threads.
pub const JOBS_MAX: usize = 256;

/// A half-open range of workload seeds, written `A..B`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedRange {
    /// The first seed.
    pub start: u64,
    /// One past the last seed (excluded).
    pub end: u64,
}

impl SeedRange {
    /// Seeds in the range (0 when `end <= start`).
    pub fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// True when the range holds no seed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for SeedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl std::str::FromStr for SeedRange {
    type Err = SweepError;
    fn from_str(s: &str) -> Result<Self, SweepError> {
        let bad = || SweepError::BadSeeds(s.to_string());
        let (a, b) = s.split_once("..").ok_or_else(bad)?;
        let range = SeedRange {
            start: a.trim().parse().map_err(|_| bad())?,
            end: b.trim().parse().map_err(|_| bad())?,
        };
        if range.is_empty() || range.len() > SEEDS_MAX {
            return Err(bad());
        }
        Ok(range)
    }
}

/// Sweep options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SweepConfig {
    /// The workload seeds to explore, at most [`SEEDS_MAX`] (with `--partition`, the whole
    /// range every shard is cut from).
    pub seeds: SeedRange,
    /// How each seed's workload is crash-explored; the same for every seed.
    pub crash: CrashConfig,
    /// Worker threads (a local rayon pool of this size), 1..=[`JOBS_MAX`]. Results do not
    /// depend on it.
    pub jobs: usize,
    /// Start no new seed after this much wall-clock time.
    pub budget: Option<Duration>,
    /// Stop at the first violation: the smallest seed the run-time pass flags, else the smallest
    /// seed with any violation (seeds above it are dropped).
    pub fail_fast: bool,
}

/// Bad sweep options. Violations are results, not errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SweepError {
    /// A seed range that does not parse, is empty or holds more than [`SEEDS_MAX`] seeds (the
    /// text as given).
    #[error("bad seed range `{0}`: expected A..B with A < B and at most {SEEDS_MAX} seeds")]
    BadSeeds(String),
    /// A worker count outside 1..=[`JOBS_MAX`].
    #[error("jobs must be 1..={JOBS_MAX}, got {0}")]
    BadJobs(usize),
    /// A per-point state budget outside 1..=[`STATES_PER_POINT_MAX`] (checked whatever the
    /// strategy).
    #[error("states per crash point must be 1..={STATES_PER_POINT_MAX}, got {0}")]
    BadStatesPerPoint(usize),
    /// The rayon pool could not be built.
    #[error("cannot start the worker pool: {0}")]
    ThreadPool(String),
    /// A shard that does not parse as `slice:I/N` or is out of bounds (the text as given).
    #[error("bad partition `{0}`: expected slice:I/N with I < N <= {PARTITIONS_MAX}")]
    BadPartition(String),
    /// The results file cannot be created, read, appended to, or belongs to another sweep.
    #[error("{path}: {problem}")]
    Results {
        /// The results file.
        path: String,
        /// What went wrong with it, in one line.
        problem: String,
    },
    /// Summaries that are not shards of one sweep (another target, range or config), or none.
    #[error("cannot merge: {0}")]
    Merge(String),
    /// Exhaustive enumeration met a crash point over the per-point budget (the smallest such
    /// seed; the sweep stops there).
    #[error("seed {seed}: {error}")]
    OverBudget {
        /// The smallest seed that met such a point.
        seed: u64,
        /// The engine's error, a [`TargetError::OverBudget`] naming the point.
        error: TargetError,
    },
}

/// A violation with the seed whose workload found it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SweepViolation {
    /// The workload seed: [`Target::workload_from_seed`] rebuilds the workload from it, and
    /// it seeds the engine's random choices, so a sweep of this one seed finds it again.
    pub seed: u64,
    /// The violation with its evidence (serialized flat, beside `seed`).
    #[serde(flatten)]
    pub violation: Violation,
    /// The artifact directory written for it (one per distinct class and call site).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
}

/// A seed the target could not run (harness or input problem, not a violation).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedError {
    /// The seed whose workload failed.
    pub seed: u64,
    /// Why, in one line ([`TargetError`]'s text: a device error, a panic in the target).
    pub message: String,
}

/// A crash point of one seed's workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SeedPoint {
    /// The workload seed.
    pub seed: u64,
    /// The crash point's trace position.
    pub point: u64,
}

/// How a kind of extra crash state is explored: a seeded sample per crash point, or not at all.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// A few seeded states per crash point: never the whole space.
    #[default]
    Sampled,
    /// None explored (the config's counts are 0).
    Off,
}

impl std::fmt::Display for Sampling {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sampled => "sampled",
            Self::Off => "off",
        })
    }
}

/// The merged result of a sweep. Everything but `elapsed_s` and `states_per_s` is a function of
/// the target, the seeds and the crash config (and of the budget, when it cut the sweep short).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepSummary {
    /// The target's [`Target::name`].
    pub target: String,
    /// The whole seed range of the sweep (with `partition`, the shard's seeds are a slice of
    /// it).
    pub seeds: SeedRange,
    /// The crash config every seed was explored with.
    pub config: CrashConfig,
    /// Workloads explored.
    pub workloads: u64,
    /// Seeds not explored (budget or fail-fast).
    pub seeds_skipped: u64,
    /// True only when every seed was explored (`seeds_complete`) and every crash state of
    /// every crash point was covered (`states_complete`).
    pub complete: bool,
    /// True when every seed of the range (or of every shard, and the shards cover the range)
    /// was explored without error.
    #[serde(default)]
    pub seeds_complete: bool,
    /// True when every crash state of every crash point of the explored workloads was
    /// covered: no point over the per-point budget, none left out.
    #[serde(default)]
    pub states_complete: bool,
    /// How much of the crash-state space the explored workloads covered, summed.
    #[serde(default = "Coverage::unknown")]
    pub coverage: Coverage,
    /// The first crash points over the per-point budget, by seed and trace position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_budget_points: Vec<SeedPoint>,
    /// Crashes inside recovery: a seeded sample of the first states of each crash point,
    /// never the whole space (`complete` does not count them).
    #[serde(default)]
    pub recovery_crashes: Sampling,
    /// Media-fault states: a seeded sample per crash point (`complete` does not count them).
    #[serde(default)]
    pub media_faults: Sampling,
    /// Crash points explored, summed over workloads ([`WorkloadReport::crash_points`]);
    /// `coverage.points` counts the skipped ones too.
    pub crash_points: u64,
    /// Crash states enumerated, duplicates included, summed over workloads.
    pub crash_states: u64,
    /// Crash states recovered and checked (distinct within their workload), summed.
    pub unique_states: u64,
    /// Crash states inside recovery that were recovered again, summed.
    pub recovery_crash_states: u64,
    /// Every violation kept, in seed order (at most `violations_per_workload` per seed).
    pub violations: Vec<SweepViolation>,
    /// Seeds the target could not run, in seed order: not violations, but the sweep is not
    /// complete.
    pub errors: Vec<SeedError>,
    /// Wall-clock seconds, over every run of a resumed sweep; for merged shards, the slowest
    /// shard's. Not deterministic.
    pub elapsed_s: f64,
    /// `crash_states / elapsed_s` (0 when no time elapsed). Not deterministic.
    pub states_per_s: f64,
    /// The shard this summary covers (`--partition`); `None` for a whole range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<Partition>,
    /// Seeds of the range (or shard) not explored, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<u64>,
    /// The same seeds as runs `A..B` of consecutive seeds (of the shard, with `--partition`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_ranges: Vec<SeedRange>,
    /// The sweep was cancelled (a signal): the seeds in flight were abandoned and the rest not
    /// started. A resumed sweep picks them up.
    #[serde(default)]
    pub interrupted: bool,
    /// The time budget ran out before every seed was started.
    #[serde(default)]
    pub budget_exhausted: bool,
    /// The results file this run appended to (`--resume` continues from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub results_file: Option<String>,
}

/// Runs of consecutive seeds (`step` apart) of an ascending list, as half-open ranges.
pub(crate) fn seed_runs(seeds: &[u64], step: u64) -> Vec<SeedRange> {
    let mut runs: Vec<SeedRange> = Vec::new();
    for &s in seeds {
        match runs.last_mut() {
            Some(r) if r.end - 1 + step == s => r.end = s + 1,
            _ => runs.push(SeedRange { start: s, end: s + 1 }),
        }
    }
    runs
}

enum SeedOutcome {
    Explored(u64, WorkloadReport),
    Failed(u64, String),
    Skipped(u64),
}

/// When a seed ran, as a results file remembers it.
#[derive(Copy, Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct SeedTiming {
    /// Wall-clock seconds the seed took.
    elapsed_s: f64,
    /// Which run of the sweep explored it: 0 for the first, one more for each `--resume`.
    session: u32,
    /// Seconds from the start of that run to the end of the seed.
    at_s: f64,
}

impl SeedOutcome {
    fn seed(&self) -> u64 {
        match self {
            Self::Explored(s, _) | Self::Failed(s, _) | Self::Skipped(s) => *s,
        }
    }
}

impl SweepConfig {
    fn validate(&self) -> Result<(), SweepError> {
        if self.jobs == 0 || self.jobs > JOBS_MAX {
            return Err(SweepError::BadJobs(self.jobs));
        }
        let spp = self.crash.states_per_point;
        if spp == 0 || spp > STATES_PER_POINT_MAX {
            return Err(SweepError::BadStatesPerPoint(spp));
        }
        if self.seeds.is_empty() || self.seeds.len() > SEEDS_MAX {
            return Err(SweepError::BadSeeds(self.seeds.to_string()));
        }
        Ok(())
    }
}

/// Shared state of the workers.
struct Shared<'a> {
    cfg: &'a SweepConfig,
    deadline: Option<Instant>,
    /// Smallest seed that found a violation or failed (fail-fast); `u64::MAX` if none.
    stop_after: AtomicU64,
    /// Fail-fast after the run-time pass flagged a seed: seeds below it are not crash-explored
    /// (0 otherwise).
    stop_before: AtomicU64,
    /// Set to abandon the seeds in flight and start no more.
    cancel: &'a AtomicBool,
    /// Seeds skipped because of `cancel`, and because of the budget.
    cancelled: AtomicU64,
    late: AtomicU64,
    monitor: &'a Monitor,
    /// This run's number in the results file, and its start.
    session: u32,
    start: Instant,
    /// Smallest seed whose exhaustive exploration met a crash point over the budget; seeds
    /// above it are not started (`u64::MAX` if none).
    abort_after: AtomicU64,
    over_budget: std::sync::Mutex<Option<(u64, TargetError)>>,
    progress: &'a (dyn Fn(Progress) + Sync),
    log: Option<&'a ResultsLog>,
}

/// Explores every seed of `cfg.seeds` on `target`; `progress` is called after each seed.
pub fn run<T: Target>(
    target: &T,
    cfg: &SweepConfig,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<SweepSummary, SweepError> {
    run_with(target, cfg, &RunOptions::default(), progress)
}

/// [`run`] over one shard, recording each finished seed in a results file (and, with
/// `resume`, skipping the seeds it already holds).
pub fn run_with<T: Target>(
    target: &T,
    cfg: &SweepConfig,
    opts: &RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<SweepSummary, SweepError> {
    cfg.validate()?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(cfg.jobs)
        .build()
        .map_err(|e| SweepError::ThreadPool(e.to_string()))?;
    let start = Instant::now();
    let header = ResultsHeader {
        target: target.name().to_string(),
        target_config: target.config_json(),
        seeds: cfg.seeds,
        partition: opts.partition,
        config: cfg.crash,
        fail_fast: cfg.fail_fast,
    };
    let (mut done, history, log) = match &opts.results {
        Some(path) => {
            let (done, history, log) = ResultsLog::open(path, &header, opts.resume)?;
            (done, history, Some(log))
        }
        None => (Vec::new(), results::History::default(), None),
    };
    let own_monitor = Monitor::new();
    let monitor = opts.monitor.as_deref().unwrap_or(&own_monitor);
    let never = AtomicBool::new(false);
    let cancel = opts.cancel.as_deref().unwrap_or(&never);
    let resumed_violations = done
        .iter()
        .map(|o| match o {
            SeedOutcome::Explored(_, r) => r.violations.len() as u64,
            SeedOutcome::Failed(..) => 1,
            SeedOutcome::Skipped(_) => 0,
        })
        .sum();
    let shard_total = shard_seeds(cfg.seeds, opts.partition).count() as u64;
    monitor.start_run(shard_total, done.len() as u64, resumed_violations);
    let stop_after = done
        .iter()
        .filter(|o| !matches!(o, SeedOutcome::Explored(_, r) if r.violations.is_empty()))
        .map(SeedOutcome::seed)
        .min()
        .unwrap_or(u64::MAX);
    let shared = Shared {
        cfg,
        deadline: cfg.budget.map(|b| start + b),
        stop_after: AtomicU64::new(stop_after),
        stop_before: AtomicU64::new(0),
        cancel,
        cancelled: AtomicU64::new(0),
        late: AtomicU64::new(0),
        monitor,
        session: history.sessions,
        start,
        abort_after: AtomicU64::new(u64::MAX),
        over_budget: std::sync::Mutex::new(None),
        progress,
        log: log.as_ref(),
    };
    let finished: BTreeSet<u64> = done.iter().map(SeedOutcome::seed).collect();
    let mut todo: Vec<u64> =
        shard_seeds(cfg.seeds, opts.partition).filter(|s| !finished.contains(s)).collect();
    // Pass 1: the run-time oracles alone, over every seed (a run costs about a thousandth of its
    // crash exploration). Seeds they flag are explored first; with fail-fast only the smallest
    // is, and the sweep stops there. (A resumed fail-fast sweep re-probes the seed it stopped at.)
    let mut probe = todo.clone();
    if cfg.fail_fast && stop_after != u64::MAX && !probe.contains(&stop_after) {
        probe.push(stop_after);
        probe.sort_unstable();
    }
    // The probe also counts each seed's crash points: without --fail-fast the seeds are then
    // explored most points first, so that a long seed does not start last and leave the other
    // workers idle.
    let probed: Vec<(u64, Probe)> = if probe.len() > 1 {
        let granularity = cfg.crash.granularity;
        pool.install(|| {
            probe
                .par_iter()
                .copied()
                .filter(|_| !cancel.load(Ordering::SeqCst))
                .map(|s| (s, run_time_probe(target, s, granularity)))
                .collect()
        })
    } else {
        Vec::new()
    };
    let flagged: Vec<u64> = probed.iter().filter(|(_, p)| p.flagged).map(|&(s, _)| s).collect();
    let points: std::collections::BTreeMap<u64, usize> = probed.iter().map(|&(s, p)| (s, p.points)).collect();
    let first_flagged = flagged.first().copied();
    let explore_now: Vec<u64> = match first_flagged {
        Some(first) if cfg.fail_fast => vec![first],
        _ => flagged,
    };
    todo.retain(|s| !explore_now.contains(s));
    let explore_now: Vec<u64> = explore_now.into_iter().filter(|s| !finished.contains(s)).collect();
    if !points.is_empty() {
        let count = |s: &u64| points.get(s).map_or(0, |&p| p as u64);
        monitor.expect_points(todo.iter().chain(&explore_now).map(count).sum());
    }
    let mut fresh: Vec<SeedOutcome> =
        pool.install(|| explore_now.par_iter().map(|&seed| one_seed(target, &shared, seed)).collect());
    if cfg.fail_fast {
        let stop = shared.stop_after.load(Ordering::SeqCst);
        if first_flagged == Some(stop) {
            shared.stop_before.store(stop, Ordering::SeqCst);
        }
    }
    if cfg.fail_fast {
        // Seed order, split between the workers as rayon does: the smallest failing seed is
        // what ends the sweep, and a long seed explored first would only delay finding it.
        fresh.extend(
            pool.install(|| todo.par_iter().map(|&seed| one_seed(target, &shared, seed)).collect::<Vec<_>>()),
        );
    } else {
        todo.sort_by_key(|s| std::cmp::Reverse(points.get(s).copied().unwrap_or(0)));
        fresh.extend(in_queue_order(&pool, &todo, |seed| one_seed(target, &shared, seed)));
    }
    let stop_after = shared.stop_after.load(Ordering::SeqCst);
    let interrupted = shared.cancelled.load(Ordering::SeqCst) > 0;
    let budget_exhausted = shared.late.load(Ordering::SeqCst) > 0;
    if let Some((seed, error)) = shared.over_budget.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(SweepError::OverBudget { seed, error });
    }
    if let Some(e) = log.and_then(ResultsLog::into_error) {
        return Err(e);
    }
    done.extend(fresh);
    done.sort_by_key(SeedOutcome::seed);
    let mut summary = merge(&header, done, stop_after);
    summary.interrupted = interrupted;
    summary.budget_exhausted = budget_exhausted;
    summary.results_file = opts.results.as_ref().map(|p| p.display().to_string());
    // Earlier runs of a resumed sweep count too.
    summary.elapsed_s = history.elapsed_s + start.elapsed().as_secs_f64();
    summary.states_per_s =
        if summary.elapsed_s > 0.0 { summary.crash_states as f64 / summary.elapsed_s } else { 0.0 };
    Ok(summary)
}

/// The seeds of `range` in shard `partition`, ascending.
pub fn shard_seeds(range: SeedRange, partition: Option<Partition>) -> impl Iterator<Item = u64> {
    (range.start..range.end).filter(move |s| partition.is_none_or(|p| (s - range.start) % p.count == p.index))
}

/// What the first pass learns of a seed by running it.
#[derive(Clone, Copy, Debug)]
struct Probe {
    /// The run-time oracles flag it (a seed that cannot run counts: exploring it reports the
    /// error).
    flagged: bool,
    /// Its crash points at the sweep's granularity: the order of exploration.
    points: usize,
}

fn run_time_probe<T: Target>(target: &T, seed: u64, granularity: crate::pmem::Granularity) -> Probe {
    let Ok(workload) = crate::crash::workload_for_seed(target, seed) else {
        return Probe { flagged: true, points: 0 };
    };
    match crate::crash::replay_run(target, &workload) {
        Ok(r) => Probe {
            flagged: !r.run_violations.is_empty(),
            points: crate::pmem::crash_points(&r.trace, granularity).len(),
        },
        Err(_) => Probe { flagged: true, points: 0 },
    }
}

/// `f` of every item, on `pool`'s workers, each taking the next item in order as it comes free
/// (a queue, where rayon's splitting would hand each worker a fixed half to begin with); the
/// results in item order.
fn in_queue_order<R: Send>(pool: &rayon::ThreadPool, items: &[u64], f: impl Fn(u64) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(Vec::with_capacity(items.len()));
    pool.scope(|scope| {
        for _ in 0..pool.current_num_threads() {
            scope.spawn(|_| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(&item) = items.get(i) else { break };
                    let r = f(item);
                    done.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|p| p.into_inner());
    done.sort_by_key(|&(i, _)| i);
    done.into_iter().map(|(_, r)| r).collect()
}

fn one_seed<T: Target>(target: &T, shared: &Shared<'_>, seed: u64) -> SeedOutcome {
    let cfg = shared.cfg;
    let stopped = cfg.fail_fast
        && (seed > shared.stop_after.load(Ordering::SeqCst)
            || seed < shared.stop_before.load(Ordering::SeqCst));
    let late = shared.deadline.is_some_and(|d| Instant::now() >= d);
    let aborted = seed > shared.abort_after.load(Ordering::SeqCst);
    let cancelled = shared.cancel.load(Ordering::SeqCst);
    if cancelled {
        shared.cancelled.fetch_add(1, Ordering::SeqCst);
    } else if late && !stopped {
        shared.late.fetch_add(1, Ordering::SeqCst);
    }
    if stopped || late || aborted || cancelled {
        return SeedOutcome::Skipped(seed);
    }
    let began = shared.monitor.seed_started(seed);
    let explored = explore_seed_until(target, &cfg.crash, seed, shared.cancel);
    if let Ok(None) = explored {
        // Abandoned mid-seed: not a result, a resumed sweep explores it again.
        shared.monitor.seed_ended(seed, None);
        shared.cancelled.fetch_add(1, Ordering::SeqCst);
        return SeedOutcome::Skipped(seed);
    }
    let timing = SeedTiming {
        elapsed_s: began.elapsed().as_secs_f64(),
        session: shared.session,
        at_s: shared.start.elapsed().as_secs_f64(),
    };
    let outcome = match explored.map(|r| r.expect("not abandoned")) {
        Ok(report) => SeedOutcome::Explored(seed, report),
        Err(e @ TargetError::OverBudget { .. }) => {
            // Not a result: the sweep stops with an error at the smallest such seed (every seed
            // below it still runs, so which one it is does not depend on --jobs).
            shared.abort_after.fetch_min(seed, Ordering::SeqCst);
            let mut first = shared.over_budget.lock().unwrap_or_else(|p| p.into_inner());
            if first.as_ref().is_none_or(|(s, _)| seed < *s) {
                *first = Some((seed, e));
            }
            shared.monitor.seed_ended(seed, None);
            return SeedOutcome::Skipped(seed);
        }
        Err(e) => SeedOutcome::Failed(seed, e.to_string()),
    };
    let failing = match &outcome {
        SeedOutcome::Explored(_, r) => r.violations.len() as u64,
        SeedOutcome::Failed(..) => 1,
        SeedOutcome::Skipped(_) => 0,
    };
    if let Some(log) = shared.log {
        log.append(&outcome, &timing);
    }
    if failing > 0 {
        shared.stop_after.fetch_min(seed, Ordering::SeqCst);
    }
    let (states, points) = match &outcome {
        SeedOutcome::Explored(_, r) => (r.crash_states, r.coverage.points),
        _ => (0, 0),
    };
    shared.monitor.seed_ended(seed, Some((states, failing, points)));
    (shared.progress)(shared.monitor.snapshot());
    outcome
}

/// Merges per-seed outcomes in seed order; with fail-fast, seeds above `stop_after` are dropped.
fn merge(header: &ResultsHeader, outcomes: Vec<SeedOutcome>, stop_after: u64) -> SweepSummary {
    let mut s = SweepSummary {
        target: header.target.clone(),
        seeds: header.seeds,
        config: header.config,
        workloads: 0,
        seeds_skipped: 0,
        complete: false,
        seeds_complete: false,
        states_complete: false,
        coverage: Coverage::default(),
        over_budget_points: Vec::new(),
        recovery_crashes: recovery_sampling(&header.config),
        media_faults: if header.config.media_faults_per_point > 0 {
            Sampling::Sampled
        } else {
            Sampling::Off
        },
        crash_points: 0,
        crash_states: 0,
        unique_states: 0,
        recovery_crash_states: 0,
        violations: Vec::new(),
        errors: Vec::new(),
        elapsed_s: 0.0,
        states_per_s: 0.0,
        partition: header.partition,
        skipped: Vec::new(),
        skipped_ranges: Vec::new(),
        interrupted: false,
        budget_exhausted: false,
        results_file: None,
    };
    let kept = |seed: u64| !header.fail_fast || seed <= stop_after;
    for outcome in outcomes {
        match outcome {
            SeedOutcome::Explored(seed, r) if kept(seed) => {
                s.workloads += 1;
                s.crash_points += r.crash_points;
                s.crash_states += r.crash_states;
                s.unique_states += r.unique_states;
                s.recovery_crash_states += r.recovery_crash_states;
                s.coverage.add(&r.coverage);
                let room = OVER_BUDGET_LISTED.saturating_sub(s.over_budget_points.len());
                s.over_budget_points
                    .extend(r.over_budget_points.iter().take(room).map(|&point| SeedPoint { seed, point }));
                s.violations.extend(r.violations.into_iter().map(|violation| SweepViolation {
                    seed,
                    violation,
                    artifact: None,
                }));
            }
            SeedOutcome::Failed(seed, message) if kept(seed) => {
                s.errors.push(SeedError { seed, message });
            }
            other => {
                s.seeds_skipped += 1;
                s.skipped.push(other.seed());
            }
        }
    }
    s.skipped_ranges = seed_runs(&s.skipped, header.partition.map_or(1, |p| p.count));
    s.seeds_complete = s.seeds_skipped == 0 && s.errors.is_empty();
    s.states_complete = s.coverage.complete();
    s.complete = s.seeds_complete && s.states_complete;
    s
}

fn recovery_sampling(c: &CrashConfig) -> Sampling {
    if c.recovery_crash.states_per_point > 0 && c.recovery_crash.crashes_per_state > 0 {
        Sampling::Sampled
    } else {
        Sampling::Off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_seeds_print_as_runs() {
        let r = |a, b| SeedRange { start: a, end: b };
        assert_eq!(seed_runs(&[3, 4, 5, 9, 11, 12], 1), vec![r(3, 6), r(9, 10), r(11, 13)]);
        assert_eq!(seed_runs(&[2, 5, 8, 14], 3), vec![r(2, 9), r(14, 15)]);
        assert!(seed_runs(&[], 1).is_empty());
    }

    #[test]
    fn seed_ranges_parse_and_reject_nonsense() {
        assert_eq!("3..10".parse::<SeedRange>().unwrap(), SeedRange { start: 3, end: 10 });
        for bad in ["", "3", "10..3", "5..5", "a..b", "0..99999999999"] {
            assert!(bad.parse::<SeedRange>().is_err(), "{bad}");
        }
    }
}
