//! The engine's half of a violation's evidence: crash point, last writer, persisted and lost.

use crate::check::{EventNote, UnitNote, Violation};
use crate::pmem::{Choice, CrashPoint, CrashState, LINE_BYTES, Op, PmemAddr, Trace, Unit};

use super::EVIDENCE_UNITS_MAX;

/// Fills the evidence of a crash-oracle violation found at `state` under `choice`.
pub(crate) fn attach_crash(v: &mut Violation, trace: &Trace, state: &CrashState, choice: &Choice) {
    let persisted = state.persisted(choice);
    let lost = state.lost(choice);
    let e = &mut v.evidence;
    e.crash_point = Some(state.point);
    e.persisted_count = persisted.len();
    e.lost_count = lost.len();
    e.persisted = notes(trace, &persisted, v.addr);
    e.lost = notes(trace, &lost, v.addr);
    e.last_writer = v.addr.and_then(|a| last_writer(trace, state.point, a));
    e.choice = Some(choice.clone());
}

/// Fills the evidence of a run-time violation: the last store to its address in the whole run.
pub fn attach_run_time(v: &mut Violation, trace: &Trace) {
    v.evidence.last_writer = v.addr.and_then(|a| last_writer(trace, CrashPoint(trace.len()), a));
}

/// Units on the offending line (every unit if the address is unknown), bounded.
fn notes(trace: &Trace, units: &[Unit], addr: Option<PmemAddr>) -> Vec<UnitNote> {
    let on_line = |u: &&Unit| addr.is_none_or(|a| u.addr & !(LINE_BYTES - 1) == a.line());
    units
        .iter()
        .filter(on_line)
        .take(EVIDENCE_UNITS_MAX)
        .map(|u| UnitNote {
            addr: PmemAddr(u.addr),
            value: u.value,
            seq: u.seq,
            site: trace.event(u.seq).site.to_string(),
        })
        .collect()
}

/// The last store before `point` whose bytes cover `addr`.
pub fn last_writer(trace: &Trace, point: CrashPoint, addr: PmemAddr) -> Option<EventNote> {
    let events = &trace.events()[..point.0.min(trace.len())];
    let (seq, event) = events.iter().enumerate().rev().find(|(_, e)| match e.op {
        Op::Store { addr: a, len, .. } | Op::StoreNt { addr: a, len, .. } => {
            (a..a + u64::from(len)).contains(&addr.0)
        }
        Op::Flush { .. } | Op::Fence => false,
    })?;
    Some(EventNote { seq, op: event.op.name().to_string(), site: event.site.to_string() })
}
