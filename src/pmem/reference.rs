//! A brute-force reference for the persistence model (`docs/persistence-model.md`), written from
//! the rules and not from [`super::Tracker`]: the property test and the `pmem_model` fuzz target
//! compare the two.
//!
//! The reference recomputes everything from scratch at every trace position. Under ADR: which
//! 8-byte units are durable (scan the events before the position), then every subset of the
//! pending units that the hardware allows, each applied together with the durable units in
//! program order. It is exponential on purpose; inputs are bounded by [`REF_DEVICE_BYTES_MAX`]
//! and [`REF_PENDING_UNITS_MAX`]. Under eADR: every program-order prefix of the trace's units
//! that a power cut at the position can leave.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{
    Background, Backing, Device, FlushKind, Granularity, LINE_BYTES, Op, PersistenceModel, PmemAddr, Trace,
    Tracker, UNIT_BYTES, View, crash_points,
};

/// Largest device the reference accepts: every state is a full byte image.
pub const REF_DEVICE_BYTES_MAX: u64 = 4096;
/// Largest number of pending units at one position: the reference enumerates 2^n subsets.
pub const REF_PENDING_UNITS_MAX: usize = 14;
/// Pending-unit cap [`trace_from_bytes`] keeps its traces under (below the reference's limit).
pub const DECODE_PENDING_UNITS_MAX: usize = 12;
/// Events [`trace_from_bytes`] decodes at most (forced drains come on top).
pub const DECODE_OPS_MAX: usize = 40;
/// Size of the devices [`trace_from_bytes`] builds: four cache lines.
pub const DECODE_DEVICE_BYTES: u64 = 4 * LINE_BYTES;

/// A full crash image.
pub type Image = Vec<u8>;

/// Crash images per trace position (the position is the index of the first event lost).
pub type StatesByPoint = BTreeMap<usize, BTreeSet<Image>>;

/// One state the engine produced: its crash point, its `View::state_hash` and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineState {
    /// The crash point's trace position.
    pub point: usize,
    /// The view's [`View::state_hash`]: equal images must have equal hashes, and only they.
    pub hash: u128,
    /// The crash image, materialized.
    pub image: Image,
}

/// A decoded input: the initial media content and the trace recorded on it.
pub struct RefCase {
    /// The media the trace starts from ([`decode_initial`]'s pattern).
    pub initial: Arc<dyn Backing>,
    /// The decoded device calls, as the device traced them.
    pub trace: Trace,
}

impl std::fmt::Debug for RefCase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefCase").field("trace", &self.trace).finish()
    }
}

/// One 8-byte unit a store wrote, as the reference sees it.
#[derive(Copy, Clone, Debug)]
struct RefUnit {
    seq: usize,
    addr: u64,
    value: [u8; 8],
    nt: bool,
}

fn line_of(addr: u64) -> u64 {
    addr / LINE_BYTES * LINE_BYTES
}

/// Every unit of every store in the trace, in program order (address order within a store).
fn all_units(trace: &Trace) -> Vec<RefUnit> {
    let mut out = Vec::new();
    for (seq, e) in trace.events().iter().enumerate() {
        let (addr, nt) = match e.op {
            Op::Store { addr, .. } => (addr, false),
            Op::StoreNt { addr, .. } => (addr, true),
            _ => continue,
        };
        for (i, chunk) in trace.store_data(e).chunks(UNIT_BYTES as usize).enumerate() {
            let value: [u8; 8] = chunk.try_into().expect("stores are multiples of 8 bytes");
            out.push(RefUnit { seq, addr: addr + i as u64 * UNIT_BYTES, value, nt });
        }
    }
    out
}

fn flush_covers(op: &Op, line: u64) -> Option<FlushKind> {
    match *op {
        Op::Flush { addr, len, kind } if addr <= line && line < addr + len => Some(kind),
        _ => None,
    }
}

/// Whether `u` is durable under ADR when power is cut just before event `point`, by the rules
/// alone: an NT unit once a fence follows it; a write-back unit once its line is clflushed, or
/// clwb/clflushopt-ed and then fenced, or once an NT store to its line follows it and a fence
/// follows that (the NT store evicted the line; the fence made the NT store durable, and the
/// line's earlier data reaches media no later than it).
fn is_durable(trace: &Trace, units: &[RefUnit], u: &RefUnit, point: usize) -> bool {
    if u.seq >= point {
        return false;
    }
    let fenced_after = |seq: usize| trace.events()[seq + 1..point].iter().any(|e| e.op == Op::Fence);
    if u.nt {
        return fenced_after(u.seq);
    }
    let events = &trace.events()[u.seq + 1..point];
    let flushed = events.iter().enumerate().any(|(i, e)| match flush_covers(&e.op, line_of(u.addr)) {
        Some(FlushKind::Clflush) => true,
        Some(FlushKind::Clwb | FlushKind::Clflushopt) => fenced_after(u.seq + 1 + i),
        None => false,
    });
    let evicted = units.iter().any(|n| {
        n.nt && n.seq > u.seq && n.seq < point && line_of(n.addr) == line_of(u.addr) && fenced_after(n.seq)
    });
    flushed || evicted
}

/// Whether the chosen pending units (bit `i` of `chosen` for `pending[i]`, program order)
/// respect the hardware: per line, the chosen write-back units are a program-order prefix of
/// that line's pending write-back units; a chosen NT unit comes with every pending write-back
/// unit stored to its line before it. NT units are otherwise free.
fn respects_line_order(pending: &[RefUnit], chosen: u32) -> bool {
    let is_chosen = |i: usize| chosen & (1 << i) != 0;
    let mut skipped_lines: BTreeSet<u64> = BTreeSet::new();
    for (i, u) in pending.iter().enumerate() {
        let line = line_of(u.addr);
        if u.nt {
            if is_chosen(i) && skipped_lines.contains(&line) {
                return false;
            }
        } else if !is_chosen(i) {
            skipped_lines.insert(line);
        } else if skipped_lines.contains(&line) {
            return false;
        }
    }
    true
}

fn read_image(b: &dyn Backing) -> Image {
    let mut out = vec![0u8; b.size_bytes() as usize];
    b.read_at(0, &mut out);
    out
}

/// Applies `units` (already in program order) to a copy of `initial`.
fn apply(initial: &[u8], units: impl Iterator<Item = RefUnit>) -> Image {
    let mut img = initial.to_vec();
    for u in units {
        let a = u.addr as usize;
        img[a..a + UNIT_BYTES as usize].copy_from_slice(&u.value);
    }
    img
}

/// Every crash image the rules allow at every position `0..=trace.len()`.
pub fn reference_states(
    initial: &dyn Backing,
    trace: &Trace,
    model: PersistenceModel,
) -> Result<StatesByPoint, String> {
    if initial.size_bytes() > REF_DEVICE_BYTES_MAX {
        return Err(format!("device of {} bytes is over the reference's bound", initial.size_bytes()));
    }
    let base = read_image(initial);
    let units = all_units(trace);
    let mut out = StatesByPoint::new();
    for point in 0..=trace.len() {
        let states = match model {
            PersistenceModel::Adr => adr_states_at(&base, trace, &units, point)?,
            PersistenceModel::Eadr => eadr_states_at(&base, &units, point),
        };
        out.insert(point, states);
    }
    Ok(out)
}

/// eADR: the caches are durable, so media holds a program-order prefix of all units stored. A
/// cut at `point` follows every unit of the events before it and may fall between any two units
/// of event `point` (if it stores), but not after its last unit: then event `point` completed.
fn eadr_states_at(base: &[u8], units: &[RefUnit], point: usize) -> BTreeSet<Image> {
    let before = units.iter().filter(|u| u.seq < point).count();
    let inside = units.iter().filter(|u| u.seq == point).count();
    let longest = before + inside.saturating_sub(1);
    (before..=longest).map(|m| apply(base, units[..m].iter().copied())).collect()
}

fn adr_states_at(
    base: &[u8],
    trace: &Trace,
    units: &[RefUnit],
    point: usize,
) -> Result<BTreeSet<Image>, String> {
    let executed: Vec<(RefUnit, bool)> =
        units.iter().filter(|u| u.seq < point).map(|u| (*u, is_durable(trace, units, u, point))).collect();
    let pending: Vec<RefUnit> = executed.iter().filter(|(_, d)| !d).map(|(u, _)| *u).collect();
    if pending.len() > REF_PENDING_UNITS_MAX {
        return Err(format!("{} pending units at point {point}: over the reference's bound", pending.len()));
    }
    let mut images = BTreeSet::new();
    for chosen in 0u32..1 << pending.len() {
        if !respects_line_order(&pending, chosen) {
            continue;
        }
        let mut k = 0usize;
        // `executed` is in program order; a pending unit persists iff its bit is set.
        let persisted = executed.iter().filter_map(|&(u, durable)| {
            if durable {
                return Some(u);
            }
            let bit = chosen & (1 << k) != 0;
            k += 1;
            bit.then_some(u)
        });
        images.insert(apply(base, persisted));
    }
    Ok(images)
}

/// Every crash state the real engine enumerates: `crash_points` at fence granularity for ADR
/// and store granularity for eADR, a [`Tracker`], exhaustive choices and materialized views.
pub fn engine_states(
    initial: &Arc<dyn Backing>,
    trace: &Trace,
    model: PersistenceModel,
) -> Result<Vec<EngineState>, String> {
    let granularity = match model {
        PersistenceModel::Adr => Granularity::Fence,
        PersistenceModel::Eadr => Granularity::Store,
    };
    let mut tracker = Tracker::new(trace, Arc::clone(initial), model);
    let mut out = Vec::new();
    for point in crash_points(trace, granularity) {
        tracker.advance_to(point);
        let state = tracker.crash_state();
        if state.pending_units() > REF_PENDING_UNITS_MAX {
            return Err(format!("{} pending units at point {}: too many", state.pending_units(), point.0));
        }
        for choice in state.choices_exhaustive() {
            let view = View::new(&state, &choice).map_err(|e| e.to_string())?;
            out.push(EngineState { point: point.0, hash: view.state_hash(), image: view.materialize() });
        }
    }
    Ok(out)
}

/// Compares the engine with the reference under ADR and eADR: at each engine crash point the
/// image sets are equal, the union over all points equals the reference's union over every
/// position (so the crash-point granularity is complete), and state hashes name images exactly.
pub fn check_trace(initial: &Arc<dyn Backing>, trace: &Trace) -> Result<(), String> {
    for model in [PersistenceModel::Adr, PersistenceModel::Eadr] {
        check_trace_model(initial, trace, model)?;
    }
    Ok(())
}

/// [`check_trace`] under one model (eADR alone takes stores far wider than ADR could enumerate).
pub fn check_trace_model(
    initial: &Arc<dyn Backing>,
    trace: &Trace,
    model: PersistenceModel,
) -> Result<(), String> {
    let reference = reference_states(&**initial, trace, model)?;
    let engine = engine_states(initial, trace, model)?;
    let base = read_image(&**initial);
    check_points(&reference, &engine, &base).map_err(|e| format!("{model}: {e}"))?;
    check_union(&reference, &engine, &base).map_err(|e| format!("{model}: {e}"))?;
    check_hashes(&engine, &base).map_err(|e| format!("{model}: {e}"))?;
    Ok(())
}

fn check_points(reference: &StatesByPoint, engine: &[EngineState], base: &[u8]) -> Result<(), String> {
    let mut by_point: StatesByPoint = BTreeMap::new();
    for s in engine {
        by_point.entry(s.point).or_default().insert(s.image.clone());
    }
    for (point, images) in &by_point {
        let want = reference.get(point).ok_or_else(|| format!("engine point {point} past the trace"))?;
        compare_sets(want, images, base).map_err(|e| format!("crash point {point}: {e}"))?;
    }
    Ok(())
}

fn check_union(reference: &StatesByPoint, engine: &[EngineState], base: &[u8]) -> Result<(), String> {
    let want: BTreeSet<Image> = reference.values().flatten().cloned().collect();
    let got: BTreeSet<Image> = engine.iter().map(|s| s.image.clone()).collect();
    compare_sets(&want, &got, base).map_err(|e| format!("union over all points: {e}"))
}

fn compare_sets(want: &BTreeSet<Image>, got: &BTreeSet<Image>, base: &[u8]) -> Result<(), String> {
    if let Some(missing) = want.difference(got).next() {
        return Err(format!("engine misses a state the rules allow: {}", describe_delta(base, missing)));
    }
    if let Some(extra) = got.difference(want).next() {
        return Err(format!("engine yields a state the rules forbid: {}", describe_delta(base, extra)));
    }
    Ok(())
}

fn check_hashes(engine: &[EngineState], base: &[u8]) -> Result<(), String> {
    let mut by_hash: BTreeMap<u128, &Image> = BTreeMap::new();
    let mut by_image: BTreeMap<&Image, u128> = BTreeMap::new();
    for s in engine {
        if let Some(prev) = by_hash.insert(s.hash, &s.image)
            && prev != &s.image
        {
            return Err(format!("hash {:#x} names two images ({})", s.hash, describe_delta(base, &s.image)));
        }
        if let Some(prev) = by_image.insert(&s.image, s.hash)
            && prev != s.hash
        {
            return Err(format!("one image has two hashes ({})", describe_delta(base, &s.image)));
        }
    }
    Ok(())
}

/// The words where `image` differs from `base`, e.g. `[0x40]=0x5 [0x48]=0x7`.
pub fn describe_delta(base: &[u8], image: &[u8]) -> String {
    let mut parts = Vec::new();
    for (i, (b, m)) in base.chunks(8).zip(image.chunks(8)).enumerate() {
        if b != m {
            let v = u64::from_le_bytes(m.try_into().unwrap_or([0; 8]));
            parts.push(format!("[{:#x}]={v:#x}", i * 8));
        }
    }
    if parts.is_empty() { "no change from the initial image".to_string() } else { parts.join(" ") }
}

/// The initial media of decoded cases: word `i` holds `i % 16` repeated in every byte, so stores
/// sometimes rewrite a word's old value (an identity write the state hash must absorb).
pub fn decode_initial(size_bytes: u64) -> Arc<dyn Backing> {
    Arc::new(Background::procedural(size_bytes, |addr| word_pattern(addr / UNIT_BYTES)))
}

fn word_pattern(k: u64) -> u64 {
    (k % 16) * 0x0101_0101_0101_0101
}

/// Reads input bytes one at a time; missing bytes read as 0.
struct ByteCursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl ByteCursor<'_> {
    fn next(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn done(&self) -> bool {
        self.pos >= self.bytes.len()
    }
}

/// Decodes arbitrary bytes into a small bounded trace on a [`DECODE_DEVICE_BYTES`] device:
/// stores and NT stores of 8..=24 bytes at aligned addresses over 2 or 3 lines, clwb,
/// clflushopt, clflush and fences. At most [`DECODE_PENDING_UNITS_MAX`] units are ever pending:
/// before a store that could exceed it, the decoder drains everything (clflush of every line
/// and a fence). Every input decodes; the same bytes always give the same trace.
pub fn trace_from_bytes(bytes: &[u8]) -> RefCase {
    let initial = decode_initial(DECODE_DEVICE_BYTES);
    let mut dev = Device::with_backing(Arc::clone(&initial));
    let mut input = ByteCursor { bytes, pos: 0 };
    let lines_used = 2 + u64::from(input.next() % 2);
    // Units stored since the last full drain: an upper bound on the pending units.
    let mut undrained = 0usize;
    let mut ops = 0usize;
    while !input.done() && ops < DECODE_OPS_MAX {
        decode_op(&mut dev, &mut input, lines_used, &mut undrained);
        ops += 1;
    }
    let (_, _, trace) = dev.into_parts();
    RefCase { initial, trace }
}

const DECODE_SITE: &str = "pmem::reference::decode";

fn decode_op(dev: &mut Device, input: &mut ByteCursor<'_>, lines_used: u64, undrained: &mut usize) {
    let op = input.next();
    let arg = input.next();
    let line = u64::from(op >> 4) % lines_used * LINE_BYTES;
    let ok = "decoder emits only valid device calls";
    match op % 8 {
        0..=2 => {
            let units = 1 + usize::from(arg >> 6) % 3;
            if *undrained + units > DECODE_PENDING_UNITS_MAX {
                drain(dev);
                *undrained = 0;
            }
            *undrained += units;
            let addr = PmemAddr(line + u64::from(arg % 8) * UNIT_BYTES);
            let data = store_bytes(input.next(), units);
            if op % 8 == 2 {
                dev.store_nt(addr, &data, DECODE_SITE).expect(ok);
            } else {
                dev.store(addr, &data, DECODE_SITE).expect(ok);
            }
        }
        3..=5 => {
            let kind = [FlushKind::Clwb, FlushKind::Clflushopt, FlushKind::Clflush][usize::from(op % 8 - 3)];
            // Offsets and lengths inside the used lines, so a flush may cover one or two lines.
            let off = u64::from(arg % 64);
            let room = lines_used * LINE_BYTES - (line + off);
            let len = 1 + u64::from(arg >> 2) % room;
            dev.flush(PmemAddr(line + off), len, kind, DECODE_SITE).expect(ok);
        }
        _ => dev.fence(DECODE_SITE).expect(ok),
    }
}

/// `units` words whose values come from one input byte: word `i` is pattern `(b + i) % 16`.
fn store_bytes(b: u8, units: usize) -> Vec<u8> {
    (0..units).flat_map(|i| word_pattern(u64::from(b) + i as u64).to_le_bytes()).collect()
}

/// Makes every unit durable: clflush of each line (a store may have spilled into the next line,
/// so the whole device is covered) and a fence for the NT units.
fn drain(dev: &mut Device) {
    let ok = "decoder emits only valid device calls";
    dev.flush(PmemAddr(0), DECODE_DEVICE_BYTES, FlushKind::Clflush, DECODE_SITE).expect(ok);
    dev.fence(DECODE_SITE).expect(ok);
}

/// Size of the devices [`wide_trace_from_bytes`] builds: the largest the reference takes.
pub const WIDE_DEVICE_BYTES: u64 = REF_DEVICE_BYTES_MAX;
/// Events [`wide_trace_from_bytes`] decodes at most.
pub const WIDE_OPS_MAX: usize = 8;
/// Units [`wide_trace_from_bytes`] stores at most over a whole trace: each is one eADR state,
/// a full image in the reference.
pub const WIDE_UNITS_MAX: usize = 1536;

/// Decodes arbitrary bytes into an eADR trace of wide stores on a [`WIDE_DEVICE_BYTES`] device:
/// write-back and NT stores of 16..=4096 bytes at 8-aligned addresses (a journal slot, a block
/// copy, a whole-device zeroing), with clwb, clflush and fences between. Every stored word is
/// distinct from the initial image and from every other, so each unit boundary is a new state.
/// Every input decodes; the same bytes always give the same trace.
pub fn wide_trace_from_bytes(bytes: &[u8]) -> RefCase {
    let initial = decode_initial(WIDE_DEVICE_BYTES);
    let mut dev = Device::with_backing(Arc::clone(&initial));
    let mut input = ByteCursor { bytes, pos: 0 };
    let mut stored = 0usize;
    for tag in 1..=WIDE_OPS_MAX as u64 {
        if input.done() {
            break;
        }
        decode_wide_op(&mut dev, &mut input, tag, &mut stored);
    }
    let (_, _, trace) = dev.into_parts();
    RefCase { initial, trace }
}

fn decode_wide_op(dev: &mut Device, input: &mut ByteCursor<'_>, tag: u64, stored: &mut usize) {
    let ok = "decoder emits only valid device calls";
    let device_units = (WIDE_DEVICE_BYTES / UNIT_BYTES) as usize;
    let (op, size, at) = (input.next(), input.next(), input.next());
    match op % 6 {
        0..=3 => {
            let units = wide_store_units(op / 6, size).min(WIDE_UNITS_MAX - *stored);
            if units == 0 {
                return;
            }
            *stored += units;
            let first = usize::from(at) * 8 % (device_units - units + 1);
            let data: Vec<u8> =
                (0..units as u64).flat_map(|i| ((tag << 32) | (i + 1)).to_le_bytes()).collect();
            let addr = PmemAddr(first as u64 * UNIT_BYTES);
            if op % 6 == 3 {
                dev.store_nt(addr, &data, DECODE_SITE).expect(ok);
            } else {
                dev.store(addr, &data, DECODE_SITE).expect(ok);
            }
        }
        4 => {
            let kind = if size % 2 == 0 { FlushKind::Clwb } else { FlushKind::Clflush };
            let line = u64::from(at) % (WIDE_DEVICE_BYTES / LINE_BYTES) * LINE_BYTES;
            dev.flush(PmemAddr(line), LINE_BYTES, kind, DECODE_SITE).expect(ok);
        }
        _ => dev.fence(DECODE_SITE).expect(ok),
    }
}

/// A store length in units, 2..=512: a slot (up to a line), a few lines, or up to a whole page.
fn wide_store_units(class: u8, size: u8) -> usize {
    let size = usize::from(size);
    match class % 4 {
        0 => 2 + size % 7,
        1 => 9 + size % 56,
        2 => 65 + size * 2 % 448,
        _ => 512,
    }
}

/// Decodes `bytes` and checks the engine against the reference: the fuzz target's body. The
/// same bytes also decode to a wide-store trace, checked under eADR alone.
pub fn check_bytes(bytes: &[u8]) -> Result<(), String> {
    let case = trace_from_bytes(bytes);
    check_trace(&case.initial, &case.trace)?;
    let wide = wide_trace_from_bytes(bytes);
    check_trace_model(&wide.initial, &wide.trace, PersistenceModel::Eadr)
        .map_err(|e| format!("wide stores: {e}"))
}
