//! Exploring one workload: run it, then recover and check every enumerated crash state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::check::{Violation, ViolationClass};
use crate::pmem::{
    Backing, Choice, CrashPoint, CrashState, Device, MediaFault, Trace, Tracker, View, crash_points,
};
use crate::rng::{SimRng, rng_from_seed};
use crate::target::{Target, TargetError};
use rand::RngExt as _;

mod lazy;

use super::coverage::{Coverage, OVER_BUDGET_LISTED};
use super::evidence::{attach_crash, attach_run_time};
use super::replay::{oracle, replay_run};
use super::{CrashConfig, ImageMode, Strategy, choices, guarded, random_choice};

/// What exploring one workload found. Counts are deterministic for a seed and a config.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkloadReport {
    /// Crash points explored (see `coverage.points` for all of them).
    pub crash_points: u64,
    /// Crash states enumerated, duplicates included.
    pub crash_states: u64,
    /// Crash states recovered and checked (distinct image and expectations in this workload).
    pub unique_states: u64,
    /// Crash states of recovery's own traces that were recovered again.
    pub recovery_crash_states: u64,
    /// Run-time violations first, then crash violations in crash-point order.
    pub violations: Vec<Violation>,
    /// How much of the crash-state space was explored.
    #[serde(default = "Coverage::unknown")]
    pub coverage: Coverage,
    /// The first crash points (trace positions, ascending) whose state space exceeded the
    /// budget, at most [`OVER_BUDGET_LISTED`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub over_budget_points: Vec<u64>,
    /// Recoveries run by lazy enumeration (one per recovered metadata state it explored).
    #[serde(default)]
    pub recoveries: u64,
    /// Word values judged line-locally beyond each recovered image's own (lazy enumeration).
    #[serde(default)]
    pub others_judged: u64,
    /// Recoveries whose verdict was reused from an equal recovered state of the same crash
    /// point (same verdict key, same values in every word the verdict read).
    #[serde(default)]
    pub verdicts_reused: u64,
    /// Lazy enumeration: crash points skipped because an earlier point of the workload had the
    /// same durable image, pending units and expectations, as (point, earlier point). Their
    /// violations are the earlier point's and are not reported again. Kept for differential
    /// tests; not serialized.
    #[serde(skip)]
    pub duplicate_points: Vec<(usize, usize)>,
}

/// Builds the workload for `seed`, runs it on a fresh image and explores its crash states.
pub fn explore_seed<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    seed: u64,
) -> Result<WorkloadReport, TargetError> {
    explore_workload(target, cfg, seed, &super::workload_for_seed(target, seed)?, None)
}

/// [`explore_seed`], abandoned as soon as `stop` is set: `Ok(None)` then (nothing of the seed
/// is reported; exploring it again gives the full report).
pub fn explore_seed_until<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    seed: u64,
    stop: &AtomicBool,
) -> Result<Option<WorkloadReport>, TargetError> {
    explore(target, cfg, seed, &super::workload_for_seed(target, seed)?, None, Some(stop), None)
}

/// Runs `workload` on a fresh image and explores its crash states; `stream_seed` seeds the
/// random choices (a sweep passes the workload's seed). With `only`, violations of other classes
/// are dropped and exploration stops at the first one of class `only` (the minimizer's test).
pub fn explore_workload<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    stream_seed: u64,
    workload: &T::Workload,
    only: Option<ViolationClass>,
) -> Result<WorkloadReport, TargetError> {
    let report = explore(target, cfg, stream_seed, workload, only, None, None)?;
    Ok(report.expect("no stop flag, never stopped"))
}

/// The verdict the engine's fast path (views, dedup, the target's caches) gave one enumerated
/// crash state; a duplicate state gets the verdict of the first equal state it stands for.
pub type StateObserver<'o> = dyn FnMut(CrashPoint, &Choice, &[Violation]) + 'o;

/// [`explore_workload`] that also reports every enumerated crash state (media-fault states
/// excepted) with its verdict to `observe`, for differential tests against a plain path.
/// Violations are attached no evidence; keep `violations_per_workload` large so nothing stops
/// early.
pub fn explore_observed<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    stream_seed: u64,
    workload: &T::Workload,
    observe: &mut StateObserver<'_>,
) -> Result<WorkloadReport, TargetError> {
    let report = explore(target, cfg, stream_seed, workload, None, None, Some(observe))?;
    Ok(report.expect("no stop flag, never stopped"))
}

fn explore<T: Target>(
    target: &T,
    cfg: &CrashConfig,
    stream_seed: u64,
    workload: &T::Workload,
    only: Option<ViolationClass>,
    stop: Option<&AtomicBool>,
    observe: Option<&mut StateObserver<'_>>,
) -> Result<Option<WorkloadReport>, TargetError> {
    let replay = replay_run(target, workload)
        .map_err(|e| TargetError::Other(format!("run of seed {stream_seed}: {e}")))?;
    let mut report = WorkloadReport::default();
    for mut v in replay.run_violations {
        attach_run_time(&mut v, &replay.trace);
        report.violations.push(v);
    }
    let cfg = match only {
        Some(_) => CrashConfig { violations_per_workload: 1, ..*cfg },
        None => *cfg,
    };
    report.violations.retain(|v| only.is_none_or(|c| v.class == c));
    let fault_words = if cfg.media_faults_per_point > 0 {
        fault_words(&replay.trace, &target.media_fault_ranges())
    } else {
        Vec::new()
    };
    let mut explorer = Explorer {
        target,
        cfg: &cfg,
        fault_words,
        seed: stream_seed,
        trace: &replay.trace,
        record: &replay.record,
        seen: BTreeSet::new(),
        seen_points: BTreeMap::new(),
        only,
        stop,
        report,
        observe,
        verdicts: BTreeMap::new(),
        all_persisted: None,
    };
    explorer.explore(replay.initial)?;
    if explorer.stopped() {
        return Ok(None);
    }
    let mut report = explorer.report;
    report.violations.truncate(cfg.violations_per_workload);
    Ok(Some(report))
}

/// `cap` of `points`, in trace order (the tracker only moves forward), spread over the call
/// sites of the events the points precede: round after round, one seeded pick from each site
/// that has points left. A zeroing loop's thousand fences and a journal commit's one each get a
/// turn, so the rare persistence step is not drowned by the common one.
fn sample_by_site(trace: &Trace, points: Vec<CrashPoint>, cap: usize, mut rng: SimRng) -> Vec<CrashPoint> {
    let mut by_site: std::collections::BTreeMap<&str, Vec<CrashPoint>> = std::collections::BTreeMap::new();
    for p in points {
        let site = if p.0 < trace.len() { trace.event(p.0).site } else { "end of run" };
        by_site.entry(site).or_default().push(p);
    }
    let mut groups: Vec<Vec<CrashPoint>> = by_site.into_values().collect();
    let mut keep = Vec::with_capacity(cap);
    while keep.len() < cap {
        for g in groups.iter_mut().filter(|g| !g.is_empty()) {
            if keep.len() == cap {
                break;
            }
            let i = rng.random_range(0..g.len());
            keep.push(g.swap_remove(i));
        }
    }
    keep.sort_unstable();
    keep
}

struct Explorer<'a, 'o, T: Target> {
    target: &'a T,
    cfg: &'a CrashConfig,
    seed: u64,
    trace: &'a Trace,
    /// (trace seq, address) of every 8-byte word the run stored inside the target's
    /// media-fault ranges, in trace order.
    fault_words: Vec<(usize, u64)>,
    record: &'a T::Record,
    /// (state hash, expectations digest, cut inside a store) of every state checked, across
    /// crash points: a torn cut is judged with more operations begun.
    seen: BTreeSet<(u128, u64, bool)>,
    /// Lazy enumeration: the first crash point of each (point hash, expectations).
    seen_points: BTreeMap<(u128, u64), usize>,
    /// Keep only violations of this class.
    only: Option<ViolationClass>,
    /// Abandon the workload once this is set.
    stop: Option<&'a AtomicBool>,
    report: WorkloadReport,
    /// Told every enumerated state's verdict ([`explore_observed`]).
    observe: Option<&'a mut StateObserver<'o>>,
    /// The verdict of each checked state, by its dedup key; kept only when observing.
    verdicts: BTreeMap<(u128, u64, bool), Vec<Violation>>,
    /// The crash point's image with everything pending persisted, from the tracker
    /// ([`Tracker::all_persisted`]): what media faults damage.
    all_persisted: Option<View>,
}

impl<T: Target> Explorer<'_, '_, T> {
    fn stopped(&self) -> bool {
        self.stop.is_some_and(|s| s.load(Ordering::Relaxed))
    }

    /// The workload reached its violation limit, or was told to stop.
    fn full(&self) -> bool {
        self.report.violations.len() >= self.cfg.violations_per_workload || self.stopped()
    }

    /// Walks every crash point: those in the sample (all, unless `points_per_workload` is set)
    /// are explored while the workload is not full; every one adds its space to the coverage.
    fn explore(&mut self, initial: Arc<dyn Backing>) -> Result<(), TargetError> {
        let mut tracker = Tracker::new(self.trace, initial, self.cfg.model);
        let faults = self.cfg.media_faults_per_point > 0 && !self.fault_words.is_empty();
        let points = crash_points(self.trace, self.cfg.granularity);
        let cap = self.cfg.points_per_workload;
        let sample: Option<BTreeSet<CrashPoint>> = (cap > 0 && points.len() > cap).then(|| {
            let rng = rng_from_seed(stream(self.seed, CrashPoint(0), 3));
            sample_by_site(self.trace, points.clone(), cap, rng).into_iter().collect()
        });
        // The latest image costs every store of the walk and saves every explored point a view
        // of all its pending units: worth it when every point is explored, not for a sample
        // (fuzzing's 16 points), whose media faults build that view at their few points.
        if faults && sample.is_none() {
            tracker.keep_latest();
        }
        let budget = self.cfg.states_per_point;
        for point in points {
            if self.stopped() {
                return Ok(());
            }
            // Dropped before the tracker writes again (see `explore_media_faults`).
            self.all_persisted = None;
            tracker.advance_to(point);
            let states = tracker.choice_count();
            self.report.coverage.add_point_space(states);
            if self.full() || sample.as_ref().is_some_and(|s| !s.contains(&point)) {
                self.report.coverage.points_skipped += 1;
                continue;
            }
            let state = tracker.crash_state();
            if crate::self_check_due!() {
                assert_eq!(state.choice_count(), states, "the tracker counts the state's choices");
            }
            self.all_persisted = if faults { tracker.all_persisted() } else { None };
            if self.cfg.strategy == Strategy::Lazy {
                self.report.crash_points += 1;
                self.explore_point_lazy(&state, states);
                continue;
            }
            let fits = states <= budget as u128;
            if !fits {
                if self.cfg.strategy == Strategy::Exhaustive && !self.cfg.exhaustive_cap {
                    return Err(TargetError::OverBudget { point: point.0, states, budget });
                }
                self.report.coverage.points_over_budget += 1;
                if self.report.over_budget_points.len() < OVER_BUDGET_LISTED {
                    self.report.over_budget_points.push(point.0 as u64);
                }
            }
            self.report.crash_points += 1;
            let whole = self.explore_point(&state);
            if fits && !whole {
                self.report.coverage.points_skipped += 1;
            }
            if fits && whole {
                self.report.coverage.point_whole();
            }
        }
        Ok(())
    }

    /// Explores one crash point; true if its choices ran to the end (the workload did not
    /// fill up on the way).
    fn explore_point(&mut self, state: &CrashState) -> bool {
        let expectations = self.target.expectations_at(self.record, state.point);
        let choice_rng = rng_from_seed(stream(self.seed, state.point, 0));
        let mut recovery_rng = rng_from_seed(stream(self.seed, state.point, 1));
        let mut checked = 0usize;
        let mut whole = true;
        for choice in choices(state, self.cfg.strategy, self.cfg.states_per_point, choice_rng) {
            if self.full() {
                whole = false;
                break;
            }
            self.report.crash_states += 1;
            self.report.coverage.states_explored += 1;
            let view = View::of_valid(state, &choice);
            let torn = choice.torn > 0;
            let key = (view.state_hash(), expectations, torn);
            if !self.seen.insert(key) {
                if let Some(observe) = self.observe.as_mut() {
                    observe(state.point, &choice, &self.verdicts[&key]);
                }
                continue;
            }
            self.report.unique_states += 1;
            let sample = checked < self.cfg.recovery_crash.states_per_point;
            checked += 1;
            let mut found = self.examine(state.point, torn, view, sample.then_some(&mut recovery_rng));
            found.retain(|v| self.only.is_none_or(|c| v.class == c));
            if let Some(observe) = self.observe.as_mut() {
                observe(state.point, &choice, &found);
                self.verdicts.insert(key, found.clone());
            }
            for v in &mut found {
                attach_crash(v, self.trace, state, &choice);
            }
            self.report.violations.append(&mut found);
        }
        self.explore_media_faults(state, expectations);
        whole
    }

    /// Media-fault states at one crash point: all persisted, then one bit flipped in a word the
    /// run stored in a checksummed range. Only integrity oracles judge them: damage may
    /// legitimately lose acknowledged data, but must never be applied as if it were valid.
    fn explore_media_faults(&mut self, state: &CrashState, expectations: u64) {
        // Taken first: a snapshot of the tracker's image kept past this point would make the
        // tracker copy every page it writes next.
        let mut all: Option<View> = self.all_persisted.take();
        let stored = self.fault_words.partition_point(|&(seq, _)| seq < state.point.0);
        if stored == 0 {
            return;
        }
        let mut rng = rng_from_seed(stream(self.seed, state.point, 2));
        // Every fault damages the same image, everything pending persisted: built once (or
        // taken from the tracker).
        let choice = state.choice_all();
        for _ in 0..self.cfg.media_faults_per_point {
            if self.full() {
                break;
            }
            let fault = MediaFault {
                addr: self.fault_words[rng.random_range(0..stored)].1,
                bit: rng.random_range(0..64u8),
            };
            let view =
                all.get_or_insert_with(|| View::of_valid(state, &choice)).clone().with_media_fault(fault);
            self.report.crash_states += 1;
            let torn = choice.torn > 0;
            if !self.seen.insert((view.state_hash(), expectations, torn)) {
                continue;
            }
            self.report.unique_states += 1;
            let mut found = self.examine_integrity(state.point, torn, view);
            found.retain(|v| self.only.is_none_or(|c| v.class == c));
            for v in &mut found {
                attach_crash(v, self.trace, state, &choice);
                v.evidence.media_fault = Some(fault);
                v.message = format!(
                    "{} (after a media fault: bit {} of word {:#x} flipped)",
                    v.message, fault.bit, fault.addr
                );
            }
            self.report.violations.append(&mut found);
        }
    }

    /// Recovers a media-fault state and runs the integrity oracles
    /// ([`Target::check_integrity`]): its `AllocatorInconsistent` and `RecoveryFailed`
    /// violations. A debug build also runs the whole check and asserts that the target's
    /// integrity check found the same.
    fn examine_integrity(&mut self, point: CrashPoint, torn: bool, view: View) -> Vec<Violation> {
        let mut dev = Device::with_backing(self.backing(view));
        let (target, record) = (self.target, self.record);
        let integrity = |v: &Violation| v.class == ViolationClass::AllocatorInconsistent;
        let key = |v: &Violation| (v.class, v.addr);
        let clean = guarded(|| {
            let mounted = target.recover(&mut dev).map_err(|e| e.to_string())?;
            let mut found = target.check_integrity(&mounted, &dev, record, point, torn);
            found.retain(integrity);
            let whole = crate::self_check_due!().then(|| {
                let all = oracle(target, &mounted, &dev, record, (point, torn));
                all.iter().filter(|v| integrity(v)).map(key).collect::<Vec<_>>()
            });
            Ok((found, whole))
        });
        if let Ok((found, Some(whole))) = &clean {
            let mut mine: Vec<_> = found.iter().map(key).collect();
            let mut whole = whole.clone();
            mine.sort();
            whole.sort();
            assert_eq!(
                mine, whole,
                "check_integrity of crash point {} disagrees with the whole check (media fault)",
                point.0
            );
        }
        self.after_recovery(&dev, clean.map(|(found, _)| (found, None)), None)
    }

    /// What recovery of `view` reads from: the view itself, or a private copy of it
    /// (`--image-mode copy`).
    fn backing(&self, view: View) -> Arc<dyn Backing> {
        match self.cfg.image_mode {
            ImageMode::Overlay => Arc::new(view),
            ImageMode::Copy => Arc::new(CopyImage(view.materialize())),
        }
    }

    /// Recovers one crash state, runs the crash oracle and, if sampled, crashes recovery.
    /// `torn`: the cut fell inside the store at `point`.
    fn examine(
        &mut self,
        point: CrashPoint,
        torn: bool,
        view: View,
        recovery_rng: Option<&mut SimRng>,
    ) -> Vec<Violation> {
        let mut dev = Device::with_backing(self.backing(view));
        let (target, record) = (self.target, self.record);
        let clean = guarded(|| {
            let mounted = target.recover(&mut dev).map_err(|e| e.to_string())?;
            let fingerprint = recovery_rng.is_some().then(|| target.fingerprint(&mounted, &dev));
            Ok((oracle(target, &mounted, &dev, record, (point, torn)), fingerprint))
        });
        self.after_recovery(&dev, clean, recovery_rng)
    }

    /// The violations of one clean recovery on `dev` (its verdict and, when it is to be crashed,
    /// its fingerprint; or why it failed), plus, if `recovery_rng` is given, those of crashing that recovery.
    fn after_recovery(
        &mut self,
        dev: &Device,
        clean: Result<(Vec<Violation>, Option<u64>), String>,
        recovery_rng: Option<&mut SimRng>,
    ) -> Vec<Violation> {
        match clean {
            Err(msg) => {
                vec![Violation::new(ViolationClass::RecoveryFailed, format!("recovery failed: {msg}"))]
            }
            Ok((mut found, fingerprint)) => {
                if let Some(rng) = recovery_rng {
                    let fingerprint =
                        fingerprint.expect("a recovery to be crashed has its fingerprint taken");
                    found.extend(self.crash_recovery(dev, fingerprint, rng));
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
            if let Some(v) = recover_again(self.target, &state, &choice, clean) {
                return Some(v);
            }
        }
        None
    }
}

/// Recovers `choice` of a crash state of recovery's own trace and compares the fingerprint
/// with the clean recovery's; `None` if equal.
pub(super) fn recover_again<T: Target>(
    target: &T,
    state: &CrashState,
    choice: &Choice,
    clean: u64,
) -> Option<Violation> {
    let view: Arc<dyn Backing> = Arc::new(View::of_valid(state, choice));
    let mut dev = Device::with_backing(Arc::clone(&view));
    let again = guarded(|| {
        // Only the fingerprint is compared, and nothing crashes this recovery: recovery for
        // judging is enough (its contract: the same fingerprint as `recover`'s state).
        let mounted = target.recover_to_judge(&mut dev);
        if crate::self_check_due!() {
            lazy::check_recover_to_judge(target, &mounted, &dev, view);
        }
        let mounted = mounted.map_err(|e| e.to_string())?;
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
    v.evidence.recovery_choice = Some(choice.clone());
    Some(v)
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

/// Every 8-byte word stored inside `ranges`, as (trace seq, address), in trace order.
fn fault_words(trace: &Trace, ranges: &[std::ops::Range<u64>]) -> Vec<(usize, u64)> {
    if ranges.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for (seq, e) in trace.events().iter().enumerate() {
        let (crate::pmem::Op::Store { addr, len, .. } | crate::pmem::Op::StoreNt { addr, len, .. }) = e.op
        else {
            continue;
        };
        if ranges.iter().any(|r| addr < r.end && r.start < addr + u64::from(len)) {
            out.extend(
                trace
                    .store_units(e)
                    .filter(|(a, _)| ranges.iter().any(|r| r.contains(a)))
                    .map(|(a, _)| (seq, a)),
            );
        }
    }
    out
}

/// An independent generator seed per (workload seed, crash point, purpose).
fn stream(seed: u64, point: CrashPoint, purpose: u64) -> u64 {
    let mut z = seed ^ (point.0 as u64).rotate_left(32) ^ purpose.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::{FlushKind, PmemAddr};
    use crate::rng::rng_from_seed;

    #[test]
    fn the_point_sample_gives_every_site_a_turn() {
        let mut dev = Device::new(1 << 16);
        for i in 0..100u64 {
            dev.store_u64(PmemAddr(i * 64), i, "zero_range").unwrap();
            dev.flush(PmemAddr(i * 64), 64, FlushKind::Clwb, "zero_range").unwrap();
            dev.fence("zero_range").unwrap();
        }
        dev.store_u64(PmemAddr(0), 1, "commit").unwrap();
        dev.fence("commit").unwrap();
        let trace = dev.trace().clone();
        let points = crash_points(&trace, crate::pmem::Granularity::Fence);
        let commit = *points.iter().find(|p| p.0 < trace.len() && trace.event(p.0).site == "commit").unwrap();
        for seed in 0..20 {
            let sample = sample_by_site(&trace, points.clone(), 3, rng_from_seed(seed));
            assert_eq!(sample.len(), 3);
            assert!(sample.windows(2).all(|w| w[0] < w[1]), "trace order, no repeats: {sample:?}");
            // The commit fence and the end of the run are sites of their own.
            assert!(sample.contains(&commit) && sample.contains(&CrashPoint(trace.len())), "{sample:?}");
            assert_eq!(sample, sample_by_site(&trace, points.clone(), 3, rng_from_seed(seed)));
        }
    }
}
