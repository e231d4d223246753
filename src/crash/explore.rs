//! Exploring one workload: run it, then recover and check every enumerated crash state.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::check::{Violation, ViolationClass};
use crate::pmem::{Backing, Choice, CrashPoint, CrashState, Device, Trace, Tracker, View, crash_points};
use crate::rng::{SimRng, rng_from_seed};
use crate::target::{Target, TargetError};
use rand::RngExt as _;

use super::evidence::{attach_crash, attach_run_time};
use super::{CrashConfig, ImageMode, choices, guarded, random_choice};

/// What exploring one workload found. Counts are deterministic for a seed and a config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadReport {
    pub crash_points: u64,
    /// Crash states enumerated, duplicates included.
    pub crash_states: u64,
    /// Crash states recovered and checked (distinct image and expectations in this workload).
    pub unique_states: u64,
    /// Crash states of recovery's own traces that were recovered again.
    pub recovery_crash_states: u64,
    /// Run-time violations first, then crash violations in crash-point order.
    pub violations: Vec<Violation>,
}

/// Builds the workload for `seed`, runs it on a fresh image and explores its crash states.
pub fn explore_seed<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    seed: u64,
) -> Result<WorkloadReport, TargetError> {
    let workload = target.workload_from_seed(seed);
    explore_workload_as(target, cfg, &workload, seed).map_err(|e| match e {
        TargetError::Other(msg) => TargetError::Other(format!("seed {seed}: {msg}")),
        other => other,
    })
}

/// Runs `workload` (e.g. a fuzz input) on a fresh image and explores its crash states. The
/// choice streams are seeded from 0, so the same workload always gives the same report.
pub fn explore_workload<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    workload: &T::Workload,
) -> Result<WorkloadReport, TargetError> {
    explore_workload_as(target, cfg, workload, 0)
}

/// `seed` keys the per-crash-point choice streams only; the workload is given.
fn explore_workload_as<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    workload: &T::Workload,
    seed: u64,
) -> Result<WorkloadReport, TargetError> {
    let mut dev = target.format()?;
    let outcome = guarded(|| target.run(workload, &mut dev).map_err(|e| e.to_string()))
        .map_err(|msg| TargetError::Other(format!("run: {msg}")))?;
    let (initial, _, trace) = dev.into_parts();
    let mut report = WorkloadReport::default();
    for mut v in outcome.violations {
        attach_run_time(&mut v, &trace);
        report.violations.push(v);
    }
    let mut explorer =
        Explorer { target, cfg, seed, trace: &trace, record: &outcome.record, seen: BTreeSet::new(), report };
    explorer.explore(initial);
    let mut report = explorer.report;
    report.violations.truncate(cfg.violations_per_workload);
    Ok(report)
}

struct Explorer<'a, T: Target> {
    target: &'a T,
    cfg: &'a CrashConfig,
    seed: u64,
    trace: &'a Trace,
    record: &'a T::Record,
    /// (state hash, expectations digest) of every state checked, across crash points.
    seen: BTreeSet<(u128, u64)>,
    report: WorkloadReport,
}

impl<T: Target> Explorer<'_, T> {
    fn full(&self) -> bool {
        self.report.violations.len() >= self.cfg.violations_per_workload
    }

    fn explore(&mut self, initial: Arc<dyn Backing>) {
        let mut tracker = Tracker::new(self.trace, initial, self.cfg.model);
        for point in crash_points(self.trace, self.cfg.granularity) {
            if self.full() {
                break;
            }
            tracker.advance_to(point);
            self.report.crash_points += 1;
            self.explore_point(&tracker.crash_state());
        }
    }

    fn explore_point(&mut self, state: &CrashState) {
        let expectations = self.target.expectations_at(self.record, state.point);
        let choice_rng = rng_from_seed(stream(self.seed, state.point, 0));
        let mut recovery_rng = rng_from_seed(stream(self.seed, state.point, 1));
        let mut checked = 0usize;
        for choice in choices(state, self.cfg.strategy, self.cfg.states_per_point, choice_rng) {
            if self.full() {
                break;
            }
            self.report.crash_states += 1;
            let view = View::new(state, &choice).expect("enumerated choices fit their crash state");
            if !self.seen.insert((view.state_hash(), expectations)) {
                continue;
            }
            self.report.unique_states += 1;
            let sample = checked < self.cfg.recovery_crash.states_per_point;
            checked += 1;
            let mut found = self.examine(state.point, view, sample.then_some(&mut recovery_rng));
            for v in &mut found {
                attach_crash(v, self.trace, state, &choice);
            }
            self.report.violations.append(&mut found);
        }
    }

    /// Recovers one crash state, runs the crash oracle and, if sampled, crashes recovery.
    fn examine(
        &mut self,
        point: CrashPoint,
        view: View,
        recovery_rng: Option<&mut SimRng>,
    ) -> Vec<Violation> {
        let backing: Arc<dyn Backing> = match self.cfg.image_mode {
            ImageMode::Overlay => Arc::new(view),
            ImageMode::Copy => Arc::new(CopyImage(view.materialize())),
        };
        let mut dev = Device::with_backing(backing);
        let (target, record) = (self.target, self.record);
        let clean = guarded(|| {
            let mounted = target.recover(&mut dev)?;
            Ok((target.check(&mounted, &dev, record, point), target.fingerprint(&mounted, &dev)))
        });
        match clean {
            Err(msg) => {
                vec![Violation::new(ViolationClass::RecoveryFailed, format!("recovery failed: {msg}"))]
            }
            Ok((mut found, fingerprint)) => {
                if let Some(rng) = recovery_rng {
                    found.extend(self.crash_recovery(&dev, fingerprint, rng));
                }
                found
            }
        }
    }

    /// Crashes inside the clean recovery that ran on `dev`, at seeded points of its trace; the
    /// first point picked twice or more gets "all persisted" first, then random choices.
    fn crash_recovery(&mut self, dev: &Device, clean: u64, rng: &mut SimRng) -> Option<Violation> {
        let trace = dev.trace();
        if trace.is_empty() {
            return None;
        }
        let points = crash_points(trace, self.cfg.granularity);
        let mut picks: Vec<CrashPoint> = (0..self.cfg.recovery_crash.crashes_per_state)
            .map(|_| points[rng.random_range(0..points.len())])
            .collect();
        picks.sort();
        let mut tracker = Tracker::new(trace, Arc::clone(dev.initial()), self.cfg.model);
        let mut previous = None;
        for point in picks {
            tracker.advance_to(point);
            let state = tracker.crash_state();
            let choice =
                if previous == Some(point) { random_choice(&state, rng) } else { state.choice_all() };
            previous = Some(point);
            self.report.recovery_crash_states += 1;
            if let Some(v) = self.recover_again(&state, &choice, clean) {
                return Some(v);
            }
        }
        None
    }

    fn recover_again(&self, state: &CrashState, choice: &Choice, clean: u64) -> Option<Violation> {
        let view = View::new(state, choice).expect("choice fits its recovery crash state");
        let mut dev = Device::with_backing(Arc::new(view));
        let target = self.target;
        let again = guarded(|| {
            let mounted = target.recover(&mut dev)?;
            Ok(target.fingerprint(&mounted, &dev))
        });
        let mut v = match again {
            Ok(fp) if fp == clean => return None,
            Ok(fp) => Violation::new(
                ViolationClass::RecoveryNotIdempotent,
                "a crash inside recovery, then recovery, differs from one clean recovery",
            )
            .found_allowed(format!("fingerprint {fp:#018x}"), format!("fingerprint {clean:#018x}")),
            Err(msg) => Violation::new(
                ViolationClass::RecoveryFailed,
                format!("recovery after a crash inside recovery failed: {msg}"),
            ),
        };
        v.evidence.recovery_crash_point = Some(state.point);
        Some(v)
    }
}

/// A full device-size copy of one crash state (the benchmark baseline).
struct CopyImage(Vec<u8>);

impl Backing for CopyImage {
    fn size_bytes(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        buf.copy_from_slice(&self.0[addr as usize..addr as usize + buf.len()]);
    }
}

/// An independent generator seed per (workload seed, crash point, purpose).
fn stream(seed: u64, point: CrashPoint, purpose: u64) -> u64 {
    let mut z = seed ^ (point.0 as u64).rotate_left(32) ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
