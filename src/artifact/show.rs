//! `crashsim show`: an artifact explained for a human: the workload, the trace around the crash
//! point with call sites, per cache line which pending stores persisted and which were lost,
//! and what the offending words are (through the target's [`Target::describe_word`]).

use std::fmt::Write as _;

use crate::check::Violation;
use crate::pmem::{Backing as _, Choice, CrashPoint, Op, Trace};
use crate::target::Target;

use super::repro::rebuild;
use super::{ArtifactError, Loaded};

/// Trace events shown before and after the crash point.
const WINDOW_BEFORE: usize = 12;
const WINDOW_AFTER: usize = 4;
/// Pending cache lines listed (the offending line first).
const LINES_MAX: usize = 8;
/// Trace events (before folding) in the timeline of the HTML page, before and after the crash.
const TIMELINE_BEFORE: usize = 48;
const TIMELINE_AFTER: usize = 8;
/// Rows of folded cache lines in the timeline, at most (the offending line's row always kept).
const LINE_ROWS_MAX: usize = 40;
/// Runs of folded pending lines listed, at most (the offending line's run always kept).
const PENDING_RUNS_MAX: usize = 64;

/// One trace event.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EventLine {
    /// The event's index in the run's trace.
    pub seq: usize,
    /// The instruction (`store`, `clwb`, `sfence`, ...: [`crate::pmem::Op::name`]).
    pub op: String,
    /// First byte it covers; `None` for a fence.
    pub addr: Option<u64>,
    /// Bytes it covers (a flush: whole lines); `None` for a fence.
    pub len: Option<u64>,
    /// Call site label.
    pub site: String,
    /// The thread that issued the event and its operation index in that thread, where the
    /// target marks its steps (`Device::begin_step`).
    pub thread: Option<u8>,
    /// The operation index within `thread`.
    pub op_index: Option<u32>,
    /// The power was cut just before this event.
    pub crash_here: bool,
}

/// One pending 8-byte unit and its fate in this crash state.
#[derive(Clone, Debug, serde::Serialize)]
pub struct UnitFate {
    /// Device address of the unit (8-aligned).
    pub addr: u64,
    /// The value the store wrote, whether or not it persisted.
    pub value: u64,
    /// The trace event that stored it.
    pub seq: usize,
    /// That store's call site label.
    pub site: String,
    /// It reached media in this crash state (else it was lost).
    pub persisted: bool,
    /// The target's reading of `value` at `addr` ([`Target::describe_word`]).
    pub reading: Option<String>,
}

/// Pending units of one cache line (or the non-temporal units, `line: None`).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LineFate {
    /// The cache line's address; `None` for the non-temporal units.
    pub line: Option<u64>,
    /// Its pending units, in program order.
    pub units: Vec<UnitFate>,
}

/// The offending word as the crash image holds it.
#[derive(Clone, Debug, serde::Serialize)]
pub struct WordNote {
    /// The violation's device address.
    pub addr: u64,
    /// The 8-byte word the image holds there, little-endian.
    pub value: u64,
    /// The target's reading of it ([`Target::describe_word`]).
    pub reading: Option<String>,
}

/// A run of consecutive trace events of the same kind and call site over contiguous bytes (a
/// 2 MiB zeroing as 512 page stores is one entry), never spanning the crash point.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct TimelineEvent {
    /// Trace index of the first event folded into this entry.
    pub first_seq: usize,
    /// Trace index of the last one (inclusive).
    pub last_seq: usize,
    /// Events folded into this entry.
    pub count: usize,
    /// The instruction they all are ([`crate::pmem::Op::name`]).
    pub op: String,
    /// First byte covered; `None` for fences.
    pub addr: Option<u64>,
    /// Bytes covered by the folded events.
    pub len: Option<u64>,
    /// The call site they all share.
    pub site: String,
    /// The thread that issued the events and its operation index (entries never span a
    /// thread change), where the target marks its steps.
    pub thread: Option<u8>,
    /// The operation index within `thread`.
    pub op_index: Option<u32>,
}

/// What a timeline entry did to a cache line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LineMark {
    /// A write-back store wrote to it.
    Store,
    /// A non-temporal store wrote to it.
    StoreNt,
    /// A flush covered it (`clwb`, `clflushopt` or `clflush`).
    Flush,
}

/// Consecutive cache lines with the same marks in the timeline.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LineRow {
    /// Address of the first line.
    pub line: u64,
    /// Lines folded into the row.
    pub lines: u64,
    /// (timeline entry index, mark), ascending.
    pub marks: Vec<(usize, LineMark)>,
    /// The offending word is on one of these lines.
    pub offending: bool,
}

/// Consecutive pending lines whose units had the same fate (offsets, stores, persisted or lost).
#[derive(Clone, Debug, serde::Serialize)]
pub struct LineRun {
    /// First line address; `None` for the pending non-temporal units.
    pub line: Option<u64>,
    /// Lines folded into the run (0 for the non-temporal units).
    pub lines: u64,
    /// The units of the first line of the run.
    pub units: Vec<UnitFate>,
    /// Units persisted over the whole run.
    pub persisted: usize,
    /// Units lost over the whole run.
    pub lost: usize,
    /// The offending word is on one of these lines.
    pub offending: bool,
}

/// Everything `show` prints.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Explanation {
    /// The target's name, from the manifest.
    pub target: String,
    /// The target's enabled bugs, by id.
    pub bugs: Vec<String>,
    /// The violation the artifact records.
    pub violation: Violation,
    /// The workload, as the manifest records it (JSON).
    pub workload: serde_json::Value,
    /// How `input.bin` holds the workload: JSON for a minimized (or hand-written) workload.
    pub input_kind: super::InputKind,
    /// The sweep seed the workload came from, if any.
    pub seed: Option<u64>,
    /// Events in the run's trace.
    pub trace_events: usize,
    /// The crash point's trace position; `None` for a run-time violation.
    pub crash_point: Option<usize>,
    /// The trace events around the crash point (for a run-time violation: around the last
    /// writer of the offending word, else at the end of the trace), unfolded.
    pub window: Vec<EventLine>,
    /// Cache lines with pending units at the crash point, all of them (`lines` lists a few).
    pub pending_lines: usize,
    /// The pending units of the first few pending lines, offending line first, then the
    /// non-temporal units.
    pub lines: Vec<LineFate>,
    /// eADR: the cut fell inside the store at the crash point.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torn: Option<TornFate>,
    /// The word at the violation's address in the crash image; `None` without an address or
    /// an image.
    pub offending_word: Option<WordNote>,
    /// The wider window of the HTML timeline, folded.
    pub timeline: Vec<TimelineEvent>,
    /// Index in `timeline` of the entry the power was cut just before (`timeline.len()`: after
    /// the last entry); `None` for a run-time violation.
    pub crash_column: Option<usize>,
    /// Cache lines the timeline touches, folded.
    pub line_rows: Vec<LineRow>,
    /// Rows left out of `line_rows` past its bound (the offending row is always kept).
    pub line_rows_omitted: usize,
    /// Every pending line at the crash point, folded into runs.
    pub pending_runs: Vec<LineRun>,
    /// Runs left out of `pending_runs` past its bound (the offending run is always kept).
    pub pending_runs_omitted: usize,
    /// Pending units persisted in the chosen crash state (torn units included).
    pub persisted_units: usize,
    /// Pending units lost in the chosen crash state (torn units included).
    pub lost_units: usize,
}

/// How much of the store at the crash point a torn (eADR) cut let through.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TornFate {
    /// The torn store's trace index (the crash point).
    pub seq: usize,
    /// Its call site label.
    pub site: String,
    /// Units of that store written before the cut, in address order.
    pub written: u32,
    /// Units of that store.
    pub units: usize,
}

/// Explains `loaded` (rebuilding its run on `target`).
pub fn explain<T: Target>(target: &T, loaded: &Loaded) -> Result<Explanation, ArtifactError> {
    let m = &loaded.manifest;
    let (replay, view) = rebuild(target, loaded)?;
    let v = &m.violation;
    let center = m.crash_point.map(|p| p.0).or(v.evidence.last_writer.as_ref().map(|w| w.seq + 1));
    let center = center.unwrap_or(replay.trace.len());
    let window = window(&replay.trace, center, m.crash_point.is_some());
    let mut lines = Vec::new();
    let mut pending_lines = 0;
    let mut torn = None;
    let (timeline, crash_column) = timeline(&replay.trace, center, m.crash_point.is_some());
    let (line_rows, line_rows_omitted) = line_rows(&timeline, v.addr.map(|a| a.line()));
    let mut pending_runs = Vec::new();
    let mut pending_runs_omitted = 0;
    let (mut persisted_units, mut lost_units) = (0, 0);
    if let (Some(point), Some(choice)) = (m.crash_point, &m.choice) {
        let state = replay.state_at(m.crash.model, point);
        pending_lines = state.lines.len();
        persisted_units = state.persisted(choice).len();
        lost_units = state.lost(choice).len();
        let fate = |u: &crate::pmem::Unit, persisted: bool| UnitFate {
            addr: u.addr,
            value: u.value,
            seq: u.seq,
            site: replay.trace.event(u.seq).site.to_string(),
            persisted,
            reading: target.describe_word(u.addr, u.value),
        };
        let offending = v.addr.map(|a| a.line());
        let mut order: Vec<usize> = (0..state.lines.len()).collect();
        order.sort_by_key(|&i| (Some(state.lines[i].line) != offending, i));
        for i in order.into_iter().take(LINES_MAX) {
            let l = &state.lines[i];
            let prefix = choice.line_prefix.get(i).copied().unwrap_or(0) as usize;
            let units = l.units.iter().enumerate().map(|(k, u)| fate(u, k < prefix)).collect();
            lines.push(LineFate { line: Some(l.line), units });
        }
        if !state.nt.is_empty() {
            let units = state
                .nt
                .iter()
                .enumerate()
                .map(|(k, u)| fate(u, choice.nt_mask.get(k) == Some(&true)))
                .collect();
            lines.push(LineFate { line: None, units });
        }
        torn = torn_fate(&replay.trace, point, choice);
        (pending_runs, pending_runs_omitted) =
            pending_runs_of(&state, choice, v.addr.map(|a| a.line()), &fate);
    }
    let offending_word = match (v.addr, &loaded.image, &view) {
        (Some(a), Some(img), _) if a.0 + 8 <= img.size_bytes() => Some(word_at(target, img.as_ref(), a.0)),
        (Some(a), None, Some(view)) if a.0 + 8 <= view.size_bytes() => Some(word_at(target, view, a.0)),
        _ => None,
    };
    Ok(Explanation {
        target: m.target.clone(),
        bugs: m.bugs.clone(),
        violation: v.clone(),
        workload: m.workload.clone(),
        input_kind: m.input.kind,
        seed: m.seed,
        trace_events: replay.trace.len(),
        crash_point: m.crash_point.map(|p| p.0),
        window,
        pending_lines,
        lines,
        torn,
        offending_word,
        timeline,
        crash_column,
        line_rows,
        line_rows_omitted,
        pending_runs,
        pending_runs_omitted,
        persisted_units,
        lost_units,
    })
}

/// Every pending line of `state`, folded into runs of consecutive lines with the same fate.
fn pending_runs_of(
    state: &crate::pmem::CrashState,
    choice: &Choice,
    offending: Option<u64>,
    fate: &dyn Fn(&crate::pmem::Unit, bool) -> UnitFate,
) -> (Vec<LineRun>, usize) {
    let mut runs: Vec<LineRun> = Vec::new();
    // What makes two lines alike: unit offsets in the line, the store each came from, its fate.
    let mut last_key: Vec<(u64, usize, bool)> = Vec::new();
    for (i, l) in state.lines.iter().enumerate() {
        let prefix = choice.line_prefix.get(i).copied().unwrap_or(0) as usize;
        let key: Vec<(u64, usize, bool)> =
            l.units.iter().enumerate().map(|(k, u)| (u.addr - l.line, u.seq, k < prefix)).collect();
        let persisted = prefix.min(l.units.len());
        let lost = l.units.len() - persisted;
        let is_offending = offending == Some(l.line);
        match runs.last_mut() {
            Some(r)
                if key == last_key
                    && r.line.is_some_and(|first| first + r.lines * crate::pmem::LINE_BYTES == l.line) =>
            {
                r.lines += 1;
                r.persisted += persisted;
                r.lost += lost;
                r.offending |= is_offending;
            }
            _ => {
                let units = l.units.iter().enumerate().map(|(k, u)| fate(u, k < prefix)).collect();
                runs.push(LineRun {
                    line: Some(l.line),
                    lines: 1,
                    units,
                    persisted,
                    lost,
                    offending: is_offending,
                });
                last_key = key;
            }
        }
    }
    if !state.nt.is_empty() {
        let units: Vec<UnitFate> =
            state.nt.iter().enumerate().map(|(k, u)| fate(u, choice.nt_mask.get(k) == Some(&true))).collect();
        let persisted = units.iter().filter(|u| u.persisted).count();
        let lost = units.len() - persisted;
        runs.push(LineRun { line: None, lines: 0, units, persisted, lost, offending: false });
    }
    let omitted = keep_with_offending(&mut runs, PENDING_RUNS_MAX, |r| r.offending);
    (runs, omitted)
}

/// Truncates `items` to `max`, keeping the first one `flagged` says is offending; returns how
/// many were dropped.
fn keep_with_offending<X>(items: &mut Vec<X>, max: usize, flagged: impl Fn(&X) -> bool) -> usize {
    if items.len() <= max {
        return 0;
    }
    let dropped = items.len() - max;
    let offending = items.iter().position(&flagged).filter(|&i| i >= max);
    match offending {
        Some(i) => {
            let keep = items.swap_remove(i);
            items.truncate(max - 1);
            items.push(keep);
        }
        None => items.truncate(max),
    }
    dropped
}

/// The events from `TIMELINE_BEFORE` before `center` to `TIMELINE_AFTER` after, folded, and
/// the index of the entry the power was cut before.
fn timeline(trace: &Trace, center: usize, crash: bool) -> (Vec<TimelineEvent>, Option<usize>) {
    let start = center.saturating_sub(TIMELINE_BEFORE);
    let end = (center + TIMELINE_AFTER).min(trace.len());
    let mut out: Vec<TimelineEvent> = Vec::new();
    let mut column = None;
    for seq in start..end {
        let e = trace.event(seq);
        let (addr, len) = match e.op {
            Op::Store { addr, len, .. } | Op::StoreNt { addr, len, .. } => (Some(addr), Some(u64::from(len))),
            Op::Flush { addr, len, .. } => (Some(addr), Some(len)),
            Op::Fence => (None, None),
        };
        let op = e.op.name();
        let at_crash = crash && seq == center;
        let step = trace.step_at(seq);
        let (thread, op_index) = (step.map(|s| s.thread), step.map(|s| s.op));
        let fold = out.last_mut().filter(|last| {
            !at_crash
                && last.op == op
                && last.site == e.site
                && (last.thread, last.op_index) == (thread, op_index)
                && match (last.addr, last.len, addr) {
                    (Some(a), Some(l), Some(b)) => a + l == b,
                    (None, None, None) => true,
                    _ => false,
                }
        });
        match fold {
            Some(last) => {
                last.last_seq = seq;
                last.count += 1;
                last.len = last.len.zip(len).map(|(a, b)| a + b);
            }
            None => {
                if at_crash {
                    column = Some(out.len());
                }
                out.push(TimelineEvent {
                    first_seq: seq,
                    last_seq: seq,
                    count: 1,
                    op: op.to_string(),
                    addr,
                    len,
                    site: e.site.to_string(),
                    thread,
                    op_index,
                });
            }
        }
    }
    if crash && column.is_none() {
        column = Some(out.len());
    }
    (out, column)
}

/// The cache lines the timeline touches, with what each entry did to them, folded into runs of
/// consecutive lines with the same marks.
fn line_rows(timeline: &[TimelineEvent], offending: Option<u64>) -> (Vec<LineRow>, usize) {
    let line_bytes = crate::pmem::LINE_BYTES;
    let mut marks: std::collections::BTreeMap<u64, Vec<(usize, LineMark)>> =
        std::collections::BTreeMap::new();
    for (col, e) in timeline.iter().enumerate() {
        let mark = match e.op.as_str() {
            "store" => LineMark::Store,
            "store_nt" => LineMark::StoreNt,
            "sfence" => continue,
            _ => LineMark::Flush,
        };
        let (Some(addr), Some(len)) = (e.addr, e.len) else { continue };
        let first = addr & !(line_bytes - 1);
        let last = (addr + len.max(1) - 1) & !(line_bytes - 1);
        let mut line = first;
        while line <= last {
            let m = marks.entry(line).or_default();
            if m.last() != Some(&(col, mark)) {
                m.push((col, mark));
            }
            line += line_bytes;
        }
    }
    let mut rows: Vec<LineRow> = Vec::new();
    for (line, m) in marks {
        let is_offending = offending == Some(line);
        match rows.last_mut() {
            Some(r) if r.marks == m && r.line + r.lines * line_bytes == line => {
                r.lines += 1;
                r.offending |= is_offending;
            }
            _ => rows.push(LineRow { line, lines: 1, marks: m, offending: is_offending }),
        }
    }
    let omitted = keep_with_offending(&mut rows, LINE_ROWS_MAX, |r| r.offending);
    (rows, omitted)
}

/// The torn store of a choice with `torn > 0`, if any.
fn torn_fate(trace: &Trace, point: CrashPoint, choice: &Choice) -> Option<TornFate> {
    let e = trace.events().get(point.0).filter(|_| choice.torn > 0)?;
    let units = trace.store_data(e).len() / 8;
    Some(TornFate { seq: point.0, site: e.site.to_string(), written: choice.torn, units })
}

fn word_at<T: Target>(target: &T, media: &dyn crate::pmem::Backing, addr: u64) -> WordNote {
    let mut b = [0u8; 8];
    media.read_at(addr, &mut b);
    let value = u64::from_le_bytes(b);
    WordNote { addr, value, reading: target.describe_word(addr, value) }
}

fn window(trace: &Trace, center: usize, crash: bool) -> Vec<EventLine> {
    let start = center.saturating_sub(WINDOW_BEFORE);
    let end = (center + WINDOW_AFTER).min(trace.len());
    (start..end)
        .map(|seq| {
            let e = trace.event(seq);
            let (addr, len) = match e.op {
                Op::Store { addr, len, .. } | Op::StoreNt { addr, len, .. } => {
                    (Some(addr), Some(u64::from(len)))
                }
                Op::Flush { addr, len, .. } => (Some(addr), Some(len)),
                Op::Fence => (None, None),
            };
            let step = trace.step_at(seq);
            EventLine {
                seq,
                op: e.op.name().to_string(),
                addr,
                len,
                site: e.site.to_string(),
                thread: step.map(|s| s.thread),
                op_index: step.map(|s| s.op),
                crash_here: crash && seq == center,
            }
        })
        .collect()
}

/// The explanation as text.
pub fn render_text(x: &Explanation) -> String {
    let mut s = String::new();
    let bugs = if x.bugs.is_empty() { "none".to_string() } else { x.bugs.join(", ") };
    let _ = writeln!(s, "target {} (bugs: {bugs})", x.target);
    let _ = writeln!(s, "violation: {}", x.violation);
    let _ = writeln!(s, "\nworkload:");
    render_workload(&mut s, &x.workload);
    let _ = writeln!(s, "\ntrace ({} events), around the crash point:", x.trace_events);
    for e in &x.window {
        let mark = if e.crash_here { "--- power cut here ---\n" } else { "" };
        let range = match (e.addr, e.len) {
            (Some(a), Some(l)) => format!("{a:#x}+{l}"),
            _ => String::new(),
        };
        let who = match (e.thread, e.op_index) {
            (Some(t), Some(op)) => format!("t{t} op {op}"),
            _ => String::new(),
        };
        let _ = writeln!(s, "{mark}  #{:<6} {:<10} {:<16} {:<10} {}", e.seq, e.op, range, who, e.site);
    }
    if x.crash_point == Some(x.trace_events) {
        let _ = writeln!(s, "--- power cut here (end of the trace) ---");
    }
    if !x.lines.is_empty() {
        let _ =
            writeln!(s, "\npending units ({} cache lines pending; offending line first):", x.pending_lines);
    }
    for l in &x.lines {
        let _ = match l.line {
            Some(line) => writeln!(s, "  line {line:#x}:"),
            None => writeln!(s, "  non-temporal:"),
        };
        for u in &l.units {
            let fate = if u.persisted { "PERSISTED" } else { "lost     " };
            let reading = u.reading.as_deref().unwrap_or("");
            let _ =
                writeln!(s, "    {fate} {:#x} = {:#018x} (#{} {}) {reading}", u.addr, u.value, u.seq, u.site);
        }
    }
    if let Some(t) = &x.torn {
        let _ = writeln!(
            s,
            "\npower cut inside store #{} ({}): its first {} of {} units written",
            t.seq, t.site, t.written, t.units
        );
    }
    if let Some(w) = &x.offending_word {
        let reading = w.reading.as_deref().unwrap_or("no reading for this target");
        let _ = writeln!(s, "\noffending word at {:#x} = {:#018x}: {reading}", w.addr, w.value);
    }
    s
}

fn render_workload(s: &mut String, w: &serde_json::Value) {
    match w.get("threads").and_then(serde_json::Value::as_array) {
        Some(threads) => {
            for (t, ops) in threads.iter().enumerate() {
                let _ = writeln!(s, "  thread {t}:");
                for op in ops.as_array().into_iter().flatten() {
                    let _ = writeln!(s, "    {op}");
                }
            }
            if let Some(sched) = w.get("schedule") {
                let _ = writeln!(s, "  schedule: {sched}");
            }
        }
        None => {
            let _ = writeln!(s, "  {w}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::{Device, PmemAddr};

    #[test]
    fn torn_fate_names_the_store_cut_at_the_crash_point() {
        let mut dev = Device::new(4096);
        dev.store(PmemAddr(0), &[7u8; 32], "t::slot").unwrap();
        let trace = dev.trace();
        let torn = Choice { torn: 2, ..Choice::default() };
        let fate = torn_fate(trace, CrashPoint(0), &torn).expect("torn");
        assert_eq!((fate.seq, fate.site.as_str(), fate.written, fate.units), (0, "t::slot", 2, 4));
        assert!(torn_fate(trace, CrashPoint(0), &Choice::default()).is_none());
        assert!(torn_fate(trace, CrashPoint(1), &torn).is_none(), "no event at the end of the trace");
    }

    #[test]
    fn timeline_folds_runs_of_stores_but_not_across_the_crash_point() {
        let mut dev = Device::new(1 << 20);
        for page in 0..8u64 {
            dev.store(PmemAddr(page * 4096), &[0u8; 4096], "t::zero").unwrap();
        }
        dev.flush(PmemAddr(0), 8 * 4096, crate::pmem::FlushKind::Clwb, "t::zero").unwrap();
        dev.fence("t::zero").unwrap();
        dev.store(PmemAddr(64), &[1u8; 8], "t::data").unwrap();
        let trace = dev.trace();
        // Power cut before the fifth page store: two store entries, then flush, fence, store.
        let (tl, col) = timeline(trace, 4, true);
        let ops: Vec<(&str, usize)> = tl.iter().map(|e| (e.op.as_str(), e.count)).collect();
        assert_eq!(ops, [("store", 4), ("store", 4), ("clwb", 1), ("sfence", 1), ("store", 1)]);
        assert_eq!(col, Some(1));
        assert_eq!((tl[1].addr, tl[1].len), (Some(4 * 4096), Some(4 * 4096)));
        let (rows, omitted) = line_rows(&tl, Some(64));
        assert_eq!(omitted, 0);
        // Line 0x0, line 0x40 (also stored by t::data), then the rest of the first four pages,
        // then the last four pages: folded by their marks.
        let shape: Vec<(u64, u64, bool)> = rows.iter().map(|r| (r.line, r.lines, r.offending)).collect();
        assert_eq!(shape, [(0, 1, false), (64, 1, true), (128, 254, false), (4 * 4096, 256, false)]);
    }

    #[test]
    fn timeline_entries_carry_their_thread_and_never_fold_across_a_thread_change() {
        let mut dev = Device::new(1 << 20);
        dev.begin_step(0, 0);
        dev.store(PmemAddr(0), &[0u8; 4096], "t::zero").unwrap();
        dev.begin_step(1, 0); // a step that issues nothing is replaced by the next
        dev.begin_step(1, 2);
        dev.store(PmemAddr(4096), &[0u8; 4096], "t::zero").unwrap();
        dev.begin_step(0, 0);
        dev.store(PmemAddr(8192), &[0u8; 4096], "t::zero").unwrap();
        dev.store(PmemAddr(12288), &[0u8; 4096], "t::zero").unwrap();
        let trace = dev.trace();
        assert_eq!(trace.steps().len(), 3, "{:?}", trace.steps());
        let (tl, _) = timeline(trace, 4, false);
        let who: Vec<(Option<u8>, Option<u32>, usize)> =
            tl.iter().map(|e| (e.thread, e.op_index, e.count)).collect();
        assert_eq!(who, [(Some(0), Some(0), 1), (Some(1), Some(2), 1), (Some(0), Some(0), 2)]);
        let w = window(trace, 4, false);
        assert_eq!(w.iter().map(|e| e.thread).collect::<Vec<_>>(), [Some(0), Some(1), Some(0), Some(0)]);
        // A target that marks no steps: no thread anywhere, folding as before.
        let mut plain = Device::new(1 << 20);
        plain.store(PmemAddr(0), &[0u8; 4096], "t::zero").unwrap();
        plain.store(PmemAddr(4096), &[0u8; 4096], "t::zero").unwrap();
        let (tl, _) = timeline(plain.trace(), 2, false);
        assert_eq!(tl.iter().map(|e| (e.thread, e.count)).collect::<Vec<_>>(), [(None, 2)]);
    }

    #[test]
    fn truncation_keeps_the_offending_item() {
        let mut v: Vec<u32> = (0..10).collect();
        assert_eq!(keep_with_offending(&mut v, 4, |&x| x == 7), 6);
        assert_eq!(v, [0, 1, 2, 7]);
        let mut w: Vec<u32> = (0..3).collect();
        assert_eq!(keep_with_offending(&mut w, 4, |&x| x == 7), 0);
    }
}
