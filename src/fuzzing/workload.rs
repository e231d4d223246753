//! `crash_workload`: daxfs through the generic [`TargetHarness`]: fuzz input (compact, or the
//! generator's raw bytes) → workload → run-time oracle → lazy crash exploration of sampled points.

use super::target::TargetHarness;
use super::{Failure, FuzzConfig};
use crate::targets::daxfs::DaxfsTarget;

/// Runs the workload `bytes` decodes to under the run-time oracle and, for one input in
/// [`FuzzConfig::explore_one_in`], explores its crash states; any violation (run-time or crash)
/// is the failure, reported by its most basic class after a wider exploration
/// ([`FuzzConfig::widened`]). An input that does not decode is skipped.
pub fn crash_workload(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    // Compact inputs (what the structure-aware mutator writes), else the generator's raw bytes:
    // daxfs's `workload_from_bytes` decodes both the same way, so a crash file replays with
    // `crashsim run FILE`.
    let mut harness = TargetHarness::compact(DaxfsTarget::new(cfg.run.clone()), "crash_workload");
    harness.crash = cfg.crash;
    harness.widened = cfg.widened;
    harness.explore_one_in = cfg.explore_one_in;
    harness.check(bytes)
}
