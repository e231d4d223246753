//! `crashsim minimize`: greedy delta debugging while the same violation class holds.
//!
//! 1. Workload: the target's [`Target::shrink`] candidates (threads, schedule, chunks of
//!    operations from halves down to single operations, options), most aggressive first; the
//!    first candidate that still shows the class is taken and the search restarts from it.
//!    Removals are steered so the surviving threads keep their interleaving (see the daxfs
//!    target's shrink); a target that derives settings from the workload's contents (daxfs's
//!    per-workload allocation policy) has them fixed first ([`Target::fixed_for`]).
//! 2. Persisted set: the shrunk workload is explored again and, among its violations of the
//!    class, the one with the fewest persisted units is taken. Then delta debugging on that
//!    crash state: its pending lines and non-temporal units are the items, complements of
//!    ever smaller chunks are dropped while the class still shows, and each kept line's
//!    prefix is lowered to the shortest that still shows it. (States inside a crashed recovery
//!    and media-fault states keep their choice as found.)
//!
//! Every workload candidate is judged by a full exploration with the artifact's crash config
//! (run-time violations by the run alone), every persisted-set candidate by recovering that one
//! image, so the result is an ordinary artifact: `input.bin` holds the workload as JSON
//! (`input.kind: json`).

use std::path::{Path, PathBuf};

use crate::check::{Violation, ViolationClass};
use std::sync::Arc;

use crate::crash::{CrashConfig, attach_crash, explore_workload, judge_image, replay_run};
use crate::pmem::{Backing, Choice, View};
use crate::target::Target;

use super::{ArtifactError, ArtifactSource, InputKind, Loaded, workload_of, write_artifact};

/// Bound on explorations one minimization runs.
pub const MINIMIZE_RUNS_MAX: usize = 2000;
/// Violations kept when choosing the smallest persisted set.
const FINAL_VIOLATIONS_MAX: usize = 256;

/// Sizes reported before and after.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Sizes {
    /// Workload operations ([`Target::workload_ops`]; 0 when the target does not count them).
    pub ops: usize,
    /// Events in the run's trace.
    pub trace_events: usize,
    /// Pending units persisted in the violation's crash state (0 for a run-time violation).
    pub persisted_units: usize,
}

/// A minimization's result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Minimized {
    /// The input artifact's sizes, as its manifest records them.
    pub before: Sizes,
    /// The minimized artifact's sizes.
    pub after: Sizes,
    /// Explorations run.
    pub runs: usize,
    /// The violation the minimized artifact records: the same class, with fresh evidence (its
    /// message, crash point and address may differ from the original's).
    pub violation: Violation,
    /// The minimized artifact's directory.
    pub path: PathBuf,
}

/// Minimizes `loaded` on `target` and writes the result to `out` (a new artifact directory).
/// With `hold_image` false the result is rebuild-only (no `crash.img`).
pub fn minimize<T: Target>(
    target: &T,
    loaded: &Loaded,
    out: &Path,
    hold_image: bool,
) -> Result<Minimized, ArtifactError> {
    let m = &loaded.manifest;
    let class = m.class();
    // The same checks as repro and show: the workload decodes to the manifest's, and the crash
    // point, choice and media fault rebuild a crash state.
    super::repro::rebuild(target, loaded)?;
    let mut workload = workload_of(target, loaded)?;
    let fixed = target.fixed_for(&workload);
    let target = fixed.as_ref().unwrap_or(target);
    let mut runs = 0usize;
    // A run-time violation is judged by the run alone: no crash state can make a run-time
    // class, so a candidate that lost it need not be crash-explored to say so.
    let run_time = m.crash_point.is_none();
    let holds = |w: &T::Workload, runs: &mut usize| -> Result<bool, ArtifactError> {
        *runs += 1;
        if run_time {
            let r = replay_run(target, w).map_err(ArtifactError::Replay)?;
            return Ok(r.run_violations.iter().any(|v| v.class == class));
        }
        let r = explore_workload(target, &m.crash, m.stream_seed, w, Some(class))
            .map_err(|e| ArtifactError::Replay(e.to_string()))?;
        Ok(!r.violations.is_empty())
    };
    if !holds(&workload, &mut runs)? {
        return Err(ArtifactError::Replay(format!("{class} does not reproduce on the artifact's workload")));
    }
    'shrink: while runs < MINIMIZE_RUNS_MAX {
        for candidate in target.shrink(&workload) {
            if runs >= MINIMIZE_RUNS_MAX {
                break 'shrink;
            }
            // A target's shrinker may step out of its own bounds; such a candidate is skipped.
            if target.validate_workload(&candidate).is_err() {
                continue;
            }
            if holds(&candidate, &mut runs)? {
                workload = candidate;
                continue 'shrink;
            }
        }
        break;
    }
    let violation = if run_time {
        let cfg = CrashConfig { violations_per_workload: 1, ..m.crash };
        explore_workload(target, &cfg, m.stream_seed, &workload, Some(class))
            .map_err(|e| ArtifactError::Replay(e.to_string()))?
            .violations
            .into_iter()
            .next()
            .ok_or_else(|| ArtifactError::Replay(format!("{class} vanished on the minimized workload")))?
    } else {
        let found = smallest_persisted(target, &m.crash, m.stream_seed, &workload, class)?;
        runs += 1;
        fewest_units(target, &m.crash, &workload, found, &mut runs)?
    };
    runs += 1;
    let trace_events = replay_run(target, &workload).map_err(ArtifactError::Replay)?.trace.len();
    let input = serde_json::to_vec_pretty(&workload).map_err(|e| ArtifactError::Replay(e.to_string()))?;
    let src =
        ArtifactSource { seed: None, stream_seed: m.stream_seed, kind: InputKind::Json, input, hold_image };
    let (parent, name) = split_out(out)?;
    let path = write_artifact(target, &m.crash, &src, &workload, &violation, &parent, &name)?;
    Ok(Minimized {
        before: Sizes {
            ops: m.workload_ops,
            trace_events: m.trace_events,
            persisted_units: m.persisted_count,
        },
        after: Sizes {
            ops: target.workload_ops(&workload),
            trace_events,
            persisted_units: violation.evidence.persisted_count,
        },
        runs,
        violation,
        path,
    })
}

/// Among the violations of `class` on `workload`, the one with the fewest persisted units
/// (run-time violations count as none; ties keep exploration order).
fn smallest_persisted<T: Target>(
    target: &T,
    crash: &CrashConfig,
    stream_seed: u64,
    workload: &T::Workload,
    class: ViolationClass,
) -> Result<Violation, ArtifactError> {
    let cfg = CrashConfig { violations_per_workload: FINAL_VIOLATIONS_MAX, ..*crash };
    let mut all = explore_workload(target, &cfg, stream_seed, workload, None)
        .map_err(|e| ArtifactError::Replay(e.to_string()))?
        .violations;
    all.retain(|v| v.class == class);
    if all.is_empty() {
        // Other classes filled the budget first: fall back to the class-only exploration.
        all = explore_workload(target, crash, stream_seed, workload, Some(class))
            .map_err(|e| ArtifactError::Replay(e.to_string()))?
            .violations;
    }
    all.into_iter()
        .min_by_key(|v| v.evidence.persisted_count)
        .ok_or_else(|| ArtifactError::Replay(format!("{class} vanished on the minimized workload")))
}

/// Delta debugging of the persisted set of `found`'s crash state (module doc, step 2): returns
/// `found` itself when nothing smaller shows the class, or a violation of the same class at the
/// same crash point with fewer persisted units and fresh evidence.
fn fewest_units<T: Target>(
    target: &T,
    crash: &CrashConfig,
    workload: &T::Workload,
    found: Violation,
    runs: &mut usize,
) -> Result<Violation, ArtifactError> {
    let e = &found.evidence;
    let (Some(point), Some(choice)) = (e.crash_point, e.choice.clone()) else { return Ok(found) };
    if e.recovery_crash_point.is_some() || e.media_fault.is_some() || e.persisted_count == 0 {
        return Ok(found);
    }
    let class = found.class;
    let replay = replay_run(target, workload).map_err(ArtifactError::Replay)?;
    let state = replay.state_at(crash.model, point);
    let judge = |c: &Choice, runs: &mut usize| -> Option<Violation> {
        *runs += 1;
        let view = View::new(&state, c).ok()?;
        let image: Arc<dyn Backing> = Arc::new(view);
        let found =
            judge_image(target, crash.model, image, &replay.record, (point, c.torn > 0), None).ok()?;
        found.into_iter().find(|v| v.class == class)
    };
    let budget = |runs: &usize| *runs < MINIMIZE_RUNS_MAX;
    // Items: pending lines with a persisted prefix, then persisted non-temporal units.
    let items: Vec<Item> = (choice.line_prefix.iter().enumerate().filter(|(_, p)| **p > 0))
        .map(|(i, _)| Item::Line(i))
        .chain(choice.nt_mask.iter().enumerate().filter(|(_, m)| **m).map(|(k, _)| Item::Nt(k)))
        .collect();
    let with = |keep: &[Item]| -> Choice {
        let mut c = state.choice_none();
        for item in keep {
            match *item {
                Item::Line(i) => c.line_prefix[i] = choice.line_prefix[i],
                // With the write-back units it waits on (never more than `choice` persisted).
                Item::Nt(k) => c = state.with_nt(c, k),
            }
        }
        c
    };
    let mut keep = items;
    let mut best = None;
    if let Some(v) = judge(&with(&[]), runs) {
        keep.clear();
        best = Some((with(&[]), v));
    }
    let mut parts = 2usize;
    while keep.len() > 1 && budget(runs) {
        let chunk = keep.len().div_ceil(parts);
        let mut dropped = false;
        for start in (0..keep.len()).step_by(chunk) {
            if !budget(runs) {
                break;
            }
            let mut rest = keep.clone();
            rest.drain(start..(start + chunk).min(keep.len()));
            let c = with(&rest);
            if let Some(v) = judge(&c, runs) {
                keep = rest;
                best = Some((c, v));
                parts = (parts - 1).max(2);
                dropped = true;
                break;
            }
        }
        if !dropped {
            if parts >= keep.len() {
                break;
            }
            parts = (parts * 2).min(keep.len());
        }
    }
    // Shortest prefix of each kept line that still shows the class.
    let mut current = best.as_ref().map_or_else(|| with(&keep), |(c, _)| c.clone());
    for item in &keep {
        let Item::Line(i) = *item else { continue };
        for shorter in 1..current.line_prefix[i] {
            if !budget(runs) {
                break;
            }
            let mut c = current.clone();
            c.line_prefix[i] = shorter;
            if let Some(v) = judge(&c, runs) {
                current = c.clone();
                best = Some((c, v));
                break;
            }
        }
    }
    let Some((choice, mut v)) = best else { return Ok(found) };
    attach_crash(&mut v, &replay.trace, &state, &choice);
    Ok(v)
}

/// A unit of the persisted set: a pending line's whole persisted prefix, or one
/// non-temporal store.
#[derive(Copy, Clone, Debug)]
enum Item {
    Line(usize),
    Nt(usize),
}

fn split_out(out: &Path) -> Result<(PathBuf, String), ArtifactError> {
    let name = out.file_name().and_then(|n| n.to_str()).map(str::to_string);
    let name = name.ok_or_else(|| ArtifactError::corrupt(out, "not a usable directory name"))?;
    let parent = out.parent().map(Path::to_path_buf).unwrap_or_default();
    let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
    Ok((parent, name))
}
