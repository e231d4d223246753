//! `crash_workload`: fuzz input → workload → run-time oracle → bounded crash exploration.

use super::{Failure, FuzzConfig};
use crate::crash::{explore_workload, replay_run};
use crate::targets::daxfs::DaxfsTarget;
use crate::workload::Workload;

/// Runs the workload `bytes` decodes to under the run-time oracle and, for one input in
/// [`FuzzConfig::explore_one_in`], explores its crash states; any violation (run-time or crash)
/// is the failure, reported by its most basic class after a wider exploration
/// ([`FuzzConfig::widened`]). An input that does not decode is skipped.
pub fn crash_workload(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    let Ok(workload) = Workload::from_bytes(bytes) else {
        return Ok(());
    };
    let target = DaxfsTarget::new(cfg.run.clone());
    let harness =
        |e: String| Failure { summary: format!("harness: {e}"), repro: cfg.repro("crash_workload") };
    let explore = explored(bytes, cfg.explore_one_in);
    let mut violations = if explore {
        explore_workload(&target, &cfg.crash, 0, &workload, None)
            .map_err(|e| harness(e.to_string()))?
            .violations
    } else {
        replay_run(&target, &workload).map_err(harness)?.run_violations
    };
    if explore && violations.iter().any(|v| v.evidence.crash_point.is_some()) {
        // A failing input ends the campaign, so it can afford a wider look before it is named:
        // the sampled states may have caught only a consequence of the bug at a later point.
        let wide = explore_workload(&target, &cfg.widened, 0, &workload, None)
            .map_err(|e| harness(e.to_string()))?;
        violations.extend(wide.violations.into_iter().filter(|v| v.evidence.crash_point.is_some()));
    }
    // The headline violation: the most basic class found (class order of docs/design.md §6, old contents
    // first), the earliest of that class.
    match violations.iter().min_by_key(|v| v.class) {
        None => Ok(()),
        Some(v) => Err(Failure {
            summary: format!("{} violation(s); headline: {v}", violations.len()),
            repro: format!(
                "crashsim run fuzz/artifacts/crash_workload/<crash-file printed below>{}",
                cfg.bugs.ids().iter().map(|id| format!(" --bug {id}")).collect::<String>()
            ),
        }),
    }
}

/// Whether an input is crash-explored: FNV-1a of its bytes, modulo `one_in`.
fn explored(bytes: &[u8], one_in: u64) -> bool {
    let hash = bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    hash % one_in.max(1) == 0
}
