//! Live figures of a running sweep, for progress lines and bars.
//!
//! The sweep driver updates a [`Monitor`] as seeds start and finish; a reporter on another
//! thread reads [`Monitor::snapshot`] whenever it likes (at a steady interval, say), so it can
//! show a seed that has been running for minutes without waiting for it to finish. Wall-clock
//! time lives here and in the driver only, never in the model: nothing here reaches a result.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// What a sweep has done so far.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// Seeds finished, those a resumed results file already held included.
    pub seeds_done: u64,
    /// Seeds of the range (or shard).
    pub seeds_total: u64,
    /// Seeds finished by this run (not read back from a results file).
    pub seeds_done_now: u64,
    /// Violations found so far.
    pub violations: u64,
    /// Crash states explored by this run.
    pub crash_states: u64,
    /// Wall-clock time since this run started.
    pub elapsed: Duration,
    /// The seed in flight that has been running longest, and for how long.
    pub slowest: Option<(u64, Duration)>,
    /// Crash points of the seeds this run finished, and of all it has to explore, once the
    /// first pass has counted them: seeds differ in cost by a thousandfold, points much less.
    pub points: Option<(u64, u64)>,
}

impl Progress {
    /// Crash states per second of this run.
    pub fn states_per_s(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 { self.crash_states as f64 / secs } else { 0.0 }
    }

    /// Time left at this run's pace so far (`None` before its first seed finished): by crash
    /// points when they are counted (a sweep explores its longest seeds first, so a pace in
    /// seeds would be far too slow early on), else by seeds.
    pub fn eta(&self) -> Option<Duration> {
        if self.seeds_done_now == 0 {
            return None;
        }
        if let Some((done, total)) = self.points.filter(|&(done, _)| done > 0) {
            return Some(self.elapsed.mul_f64(total.saturating_sub(done) as f64 / done as f64));
        }
        let left = self.seeds_total.saturating_sub(self.seeds_done);
        Some(self.elapsed.mul_f64(left as f64 / self.seeds_done_now as f64))
    }
}

/// Shared, thread-safe progress of one sweep run.
#[derive(Debug)]
pub struct Monitor {
    started: Mutex<Instant>,
    seeds_total: AtomicU64,
    seeds_resumed: AtomicU64,
    seeds_done_now: AtomicU64,
    violations: AtomicU64,
    crash_states: AtomicU64,
    /// Crash points of the seeds this run will explore (0: not counted).
    points_total: AtomicU64,
    points_done: AtomicU64,
    /// Seeds being explored, by seed, with their start time.
    in_flight: Mutex<BTreeMap<u64, Instant>>,
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor {
    /// A monitor of no seeds yet; the sweep driver starts it when the run starts, so one
    /// monitor may be shared before that ([`super::RunOptions::monitor`]).
    pub fn new() -> Self {
        Self {
            started: Mutex::new(Instant::now()),
            seeds_total: AtomicU64::new(0),
            seeds_resumed: AtomicU64::new(0),
            seeds_done_now: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            crash_states: AtomicU64::new(0),
            points_total: AtomicU64::new(0),
            points_done: AtomicU64::new(0),
            in_flight: Mutex::new(BTreeMap::new()),
        }
    }

    /// The figures now.
    pub fn snapshot(&self) -> Progress {
        let now = Instant::now();
        let started = *self.started.lock().unwrap_or_else(|p| p.into_inner());
        let in_flight = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        // The earliest start; the smallest seed among equals.
        let slowest = in_flight
            .iter()
            .min_by_key(|&(seed, start)| (*start, *seed))
            .map(|(&seed, &start)| (seed, now.saturating_duration_since(start)));
        let done_now = self.seeds_done_now.load(Ordering::SeqCst);
        Progress {
            seeds_done: self.seeds_resumed.load(Ordering::SeqCst) + done_now,
            seeds_total: self.seeds_total.load(Ordering::SeqCst),
            seeds_done_now: done_now,
            violations: self.violations.load(Ordering::SeqCst),
            crash_states: self.crash_states.load(Ordering::SeqCst),
            elapsed: now.saturating_duration_since(started),
            slowest,
            points: match self.points_total.load(Ordering::SeqCst) {
                0 => None,
                total => Some((self.points_done.load(Ordering::SeqCst), total)),
            },
        }
    }

    pub(super) fn start_run(&self, seeds_total: u64, seeds_resumed: u64, violations_resumed: u64) {
        *self.started.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.seeds_total.store(seeds_total, Ordering::SeqCst);
        self.seeds_resumed.store(seeds_resumed, Ordering::SeqCst);
        self.violations.store(violations_resumed, Ordering::SeqCst);
    }

    /// The first pass counted the crash points of the seeds left to explore.
    pub(super) fn expect_points(&self, total: u64) {
        self.points_total.store(total, Ordering::SeqCst);
    }

    pub(super) fn seed_started(&self, seed: u64) -> Instant {
        let now = Instant::now();
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(seed, now);
        now
    }

    /// A seed left the workers: finished (`Some((crash states, violations, crash points))`)
    /// or abandoned.
    pub(super) fn seed_ended(&self, seed: u64, finished: Option<(u64, u64, u64)>) {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&seed);
        if let Some((states, violations, points)) = finished {
            self.points_done.fetch_add(points, Ordering::SeqCst);
            self.crash_states.fetch_add(states, Ordering::SeqCst);
            self.violations.fetch_add(violations, Ordering::SeqCst);
            self.seeds_done_now.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_names_the_slowest_seed_in_flight_and_an_eta() {
        let m = Monitor::new();
        m.start_run(10, 2, 1);
        let p = m.snapshot();
        assert_eq!((p.seeds_done, p.seeds_total, p.violations, p.slowest, p.eta()), (2, 10, 1, None, None));
        m.seed_started(7);
        std::thread::sleep(Duration::from_millis(5));
        m.seed_started(3);
        assert_eq!(m.snapshot().slowest.map(|s| s.0), Some(7));
        m.seed_ended(7, Some((100, 2, 40)));
        let p = m.snapshot();
        assert_eq!((p.seeds_done, p.seeds_done_now, p.crash_states, p.violations), (3, 1, 100, 3));
        assert_eq!(p.slowest.map(|s| s.0), Some(3));
        assert!(p.eta().is_some() && p.states_per_s() > 0.0);
        assert_eq!(p.points, None, "points not counted");
        // Counted points set the pace: 40 of 50 done leaves a quarter of the time so far.
        m.expect_points(50);
        let p = m.snapshot();
        assert_eq!(p.points, Some((40, 50)));
        let (eta, elapsed) = (p.eta().unwrap().as_secs_f64(), p.elapsed.as_secs_f64());
        assert!((eta - elapsed / 4.0).abs() < 1e-6, "{eta} for {elapsed} elapsed");
        m.seed_ended(3, None);
        assert_eq!((m.snapshot().seeds_done, m.snapshot().slowest), (3, None));
    }
}
