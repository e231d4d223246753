//! `crash_workload`: fuzz input → workload → run-time oracle → bounded crash exploration.

use super::{Failure, FuzzConfig};
use crate::crash::explore_workload;
use crate::targets::daxfs::DaxfsTarget;
use crate::workload::Workload;

/// Runs the workload `bytes` decodes to and explores its crash states; the first violation
/// (run-time or crash) is the failure. An input that does not decode is skipped.
pub fn crash_workload(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    let Ok(workload) = Workload::from_bytes(bytes) else {
        return Ok(());
    };
    let target = DaxfsTarget::new(cfg.run.clone());
    let report = explore_workload(&target, &cfg.crash, 0, &workload, None)
        .map_err(|e| Failure { summary: format!("harness: {e}"), repro: cfg.repro("crash_workload") })?;
    match report.violations.first() {
        None => Ok(()),
        Some(v) => Err(Failure {
            summary: format!("{} violation(s); first: {v}", report.violations.len()),
            repro: format!(
                "crashsim run fuzz/artifacts/crash_workload/<crash-file printed below>{}",
                cfg.bugs.ids().iter().map(|id| format!(" --bug {id}")).collect::<String>()
            ),
        }),
    }
}
