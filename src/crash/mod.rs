//! The crash engine (docs/design.md §8): for one workload, walk its trace, cut power at every crash
//! point, enumerate the crash states the persistence model allows, recover each one through the
//! target and run its oracles; for a sample, crash again inside recovery.
//!
//! Architecture Invariant: images are never copied per state in the default mode: recovery
//! reads a [`crate::pmem::View`] (shared base + chosen units) and writes a private copy-on-write
//! overlay. [`ImageMode::Copy`] exists only as the benchmark baseline.

#![deny(missing_docs, missing_debug_implementations)]

mod coverage;
mod enumerate;
mod evidence;
mod explore;
mod guard;
mod replay;

pub use coverage::{Coverage, OVER_BUDGET_LISTED, StateCount};
pub use enumerate::{Strategy, choices, fits_budget, random_choice};
pub(crate) use evidence::attach_crash;
pub use evidence::last_writer;
pub use explore::{
    StateObserver, WorkloadReport, explore_observed, explore_seed, explore_seed_until, explore_workload,
};
pub(crate) use guard::guarded;
pub use replay::{RecoveryCrash, Replay, judge_image, replay_run, workload_for_seed};

use crate::pmem::{Granularity, PersistenceModel};

/// Default bound on crash states explored per crash point.
pub const STATES_PER_POINT_DEFAULT: usize = 256;
/// Default bound on recoveries per crash point under [`Strategy::Lazy`].
pub const RECOVERIES_PER_POINT_DEFAULT: usize = 4096;
/// Hard bound on `states_per_point`.
pub const STATES_PER_POINT_MAX: usize = 1 << 20;
/// Default bound on violations kept per workload; exploring a workload stops once reached.
pub const VIOLATIONS_PER_WORKLOAD_DEFAULT: usize = 8;
/// Default media-fault states per crash point.
pub const MEDIA_FAULTS_PER_POINT_DEFAULT: usize = 1;
/// Units listed per side (persisted / lost) in a violation's evidence.
pub const EVIDENCE_UNITS_MAX: usize = 16;

/// How recovery sees a crash state.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageMode {
    /// A layered view plus a copy-on-write overlay: O(chosen units) per state.
    #[default]
    Overlay,
    /// A full device-size copy per state, as block-level tools do. Benchmark baseline only.
    Copy,
}

/// Crashes inside recovery: for the first `states_per_point` unique crash states of each crash
/// point, up to `crashes_per_state` seeded crash states of recovery's own trace are recovered
/// again and compared with the clean recovery.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecoveryCrashConfig {
    /// Unique crash states per crash point whose recovery is crashed, the first ones in
    /// enumeration order (under [`Strategy::Lazy`]: the first recoveries). 0 turns recovery
    /// crashes off.
    pub states_per_point: usize,
    /// Crash points drawn (seeded, with repeats) from the trace of one clean recovery; each is
    /// crashed and recovered again, and the state stops at the first violation. 0 turns
    /// recovery crashes off.
    pub crashes_per_state: usize,
}

impl Default for RecoveryCrashConfig {
    fn default() -> Self {
        Self { states_per_point: 2, crashes_per_state: 4 }
    }
}

/// Everything the engine needs to explore one workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrashConfig {
    /// Where the persistence domain ends: decides which stores a power cut may lose.
    pub model: PersistenceModel,
    /// Where crash points are placed; [`CrashConfig::complete_granularity`] gives the one that
    /// misses no state under `model`.
    pub granularity: Granularity,
    /// How the crash states of one crash point are enumerated.
    pub strategy: Strategy,
    /// Budget of crash states (choices, duplicates included) per crash point for
    /// [`Strategy::Exhaustive`] and [`Strategy::Bounded`], 1..=[`STATES_PER_POINT_MAX`].
    /// [`Strategy::Lazy`] ignores it: `recoveries_per_point` bounds it instead.
    pub states_per_point: usize,
    /// How recovery sees a crash state; [`ImageMode::Overlay`] except to benchmark.
    pub image_mode: ImageMode,
    /// Crashes inside recovery (the idempotence oracle).
    pub recovery_crash: RecoveryCrashConfig,
    /// Violations kept per workload: exploring the workload stops once this many are found
    /// (run-time violations count), so a buggy workload costs little. Points left unexplored
    /// are counted skipped, and the coverage is then not complete.
    pub violations_per_workload: usize,
    /// Media-fault states per crash point: the all-persisted state with one bit flipped in a
    /// word the run stored inside one of the target's [`crate::target::Target::media_fault_ranges`],
    /// judged by the integrity oracles only. 0 turns them off.
    #[serde(default)]
    pub media_faults_per_point: usize,
    /// Explore at most this many crash points per workload, a seeded sample spread over the
    /// call sites of the persistence steps they precede (0: every crash point, the default).
    /// Fuzzing bounds it to keep each input cheap.
    #[serde(default)]
    pub points_per_workload: usize,
    /// With [`Strategy::Exhaustive`]: a crash point with more states than `states_per_point`
    /// is sampled (and counted over budget in the report) instead of stopping the exploration
    /// with [`crate::target::TargetError::OverBudget`].
    #[serde(default, skip_serializing_if = "is_false")]
    pub exhaustive_cap: bool,
    /// With [`Strategy::Lazy`]: recoveries (recovered metadata states) explored per crash
    /// point at most; a point that needs more is counted over budget.
    #[serde(default = "recoveries_per_point_default")]
    pub recoveries_per_point: usize,
}

fn recoveries_per_point_default() -> usize {
    RECOVERIES_PER_POINT_DEFAULT
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Default for CrashConfig {
    fn default() -> Self {
        Self {
            model: PersistenceModel::Adr,
            granularity: Granularity::Fence,
            strategy: Strategy::Lazy,
            states_per_point: STATES_PER_POINT_DEFAULT,
            image_mode: ImageMode::Overlay,
            recovery_crash: RecoveryCrashConfig::default(),
            violations_per_workload: VIOLATIONS_PER_WORKLOAD_DEFAULT,
            media_faults_per_point: MEDIA_FAULTS_PER_POINT_DEFAULT,
            points_per_workload: 0,
            exhaustive_cap: false,
            recoveries_per_point: RECOVERIES_PER_POINT_DEFAULT,
        }
    }
}

impl CrashConfig {
    /// The granularity that is complete for `model`: fence for ADR, store for eADR.
    pub fn complete_granularity(model: PersistenceModel) -> Granularity {
        match model {
            PersistenceModel::Adr => Granularity::Fence,
            PersistenceModel::Eadr => Granularity::Store,
        }
    }
}
