//! Rebuilding one crash state from its workload, and judging a given image of it: what
//! artifacts, `crashsim repro`, `show` and `minimize` stand on.
//!
//! A crash state is named by (workload, crash point, choice) and, for a crash inside recovery,
//! (recovery crash point, recovery choice) against the trace of the clean recovery of that state.
//! Everything here is deterministic: the same names rebuild the same bytes.

use std::sync::Arc;

use crate::check::{Violation, ViolationClass};
use crate::pmem::{Backing, Choice, CrashPoint, CrashState, Device, PersistenceModel, Trace, Tracker, View};
use crate::target::{Target, TargetError};

use super::explore::recover_again;
use super::guarded;

/// One traced run of a workload on a freshly formatted image.
pub struct Replay<R> {
    /// The formatted media the run started from.
    pub initial: Arc<dyn Backing>,
    /// Every store, flush and fence the run issued, from `initial` on: what crash points
    /// index.
    pub trace: Trace,
    /// What the target's run left for its crash oracle ([`Target::Record`]).
    pub record: R,
    /// Run-time violations, without engine evidence.
    pub run_violations: Vec<Violation>,
}

impl<R> std::fmt::Debug for Replay<R> {
    /// The sizes and the run-time violations; not the media, the events or the record.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("initial_bytes", &self.initial.size_bytes())
            .field("trace_events", &self.trace.len())
            .field("run_violations", &self.run_violations)
            .finish_non_exhaustive()
    }
}

/// The workload for `seed`; a panic in the target's generator becomes an error naming the seed.
pub fn workload_for_seed<T: Target>(target: &T, seed: u64) -> Result<T::Workload, TargetError> {
    guarded(|| Ok(target.workload_from_seed(seed)))
        .map_err(|panic| TargetError::Other(format!("workload_from_seed({seed}) {panic}")))
}

/// Formats a device and runs `workload` on it; a panic in the target becomes an `Err`.
pub fn replay_run<T: Target>(target: &T, workload: &T::Workload) -> Result<Replay<T::Record>, String> {
    let mut dev = target.format().map_err(|e| e.to_string())?;
    let outcome = guarded(|| target.run(workload, &mut dev).map_err(|e| e.to_string()))?;
    let (initial, _, trace) = dev.into_parts();
    Ok(Replay { initial, trace, record: outcome.record, run_violations: outcome.violations })
}

impl<R> Replay<R> {
    /// The crash state at `point` (clamped to the trace) under `model`.
    pub fn state_at(&self, model: PersistenceModel, point: CrashPoint) -> CrashState {
        let point = CrashPoint(point.0.min(self.trace.len()));
        Tracker::state_at(&self.trace, Arc::clone(&self.initial), model, point)
    }

    /// The view of `choice` at `point`; `Err` if the choice does not fit that state.
    pub fn view_at(
        &self,
        model: PersistenceModel,
        point: CrashPoint,
        choice: &Choice,
    ) -> Result<(CrashState, View), String> {
        let state = self.state_at(model, point);
        let view = View::new(&state, choice)
            .map_err(|e| format!("choice does not fit crash point {}: {e}", point.0))?;
        Ok((state, view))
    }
}

/// Where to crash recovery, if at all, when judging an image.
#[derive(Copy, Clone, Debug)]
pub struct RecoveryCrash<'c> {
    /// The crash point in the trace of the clean recovery of the image (not the run's trace).
    pub point: CrashPoint,
    /// Which of recovery's pending units persisted at `point`.
    pub choice: &'c Choice,
}

/// The crash oracle for a cut at `point`, inside the store there if `torn`.
pub(super) fn oracle<T: Target>(
    target: &T,
    mounted: &T::Mounted,
    dev: &Device,
    record: &T::Record,
    (point, torn): (CrashPoint, bool),
) -> Vec<Violation> {
    if torn {
        target.check_torn(mounted, dev, record, point)
    } else {
        target.check(mounted, dev, record, point)
    }
}

/// Recovers `image` as the crash state at `point` of a run that left `record` (`torn`: cut
/// inside the store at `point`, a choice with `torn > 0`), runs the crash oracle and, with
/// `recovery`, crashes that recovery once and recovers again. Returns every violation found
/// (evidence as the target fills it); `Err` if the recovery choice does not fit recovery's
/// trace (the image is not the state the names describe).
pub fn judge_image<T: Target>(
    target: &T,
    model: PersistenceModel,
    image: Arc<dyn Backing>,
    record: &T::Record,
    (point, torn): (CrashPoint, bool),
    recovery: Option<RecoveryCrash<'_>>,
) -> Result<Vec<Violation>, String> {
    let mut dev = Device::with_backing(image);
    let clean = guarded(|| {
        let mounted = target.recover(&mut dev).map_err(|e| e.to_string())?;
        Ok((oracle(target, &mounted, &dev, record, (point, torn)), target.fingerprint(&mounted, &dev)))
    });
    let (mut found, fingerprint) = match clean {
        Err(msg) => {
            let v = Violation::new(ViolationClass::RecoveryFailed, format!("recovery failed: {msg}"));
            return Ok(vec![v]);
        }
        Ok(x) => x,
    };
    if let Some(rc) = recovery {
        let trace = dev.trace();
        let at = CrashPoint(rc.point.0.min(trace.len()));
        let state = Tracker::state_at(trace, Arc::clone(dev.initial()), model, at);
        state
            .check_choice(rc.choice)
            .map_err(|e| format!("recovery choice does not fit recovery's trace: {e}"))?;
        found.extend(recover_again(target, &state, rc.choice, fingerprint));
    }
    Ok(found)
}
