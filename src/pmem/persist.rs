//! Which stores a power cut may leave on media (DESIGN §3), computed by walking a trace.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::media::{Backing, SparseImage};
use super::trace::{Op, Trace};
use super::{FlushKind, LINE_BYTES, PersistenceModel, PmemError};

/// "Power is cut just before trace event `index`" (`index == trace.len()`: after the last event).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct CrashPoint(pub usize);

/// Where crash points are placed.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Granularity {
    /// Before every ordering point (fence, clflush) and at the end. Complete for ADR: inside an
    /// epoch the pending sets only grow, so the state space just before the next ordering point
    /// contains every state reachable earlier in the epoch.
    #[default]
    Fence,
    /// Before every store as well. Needed for eADR, where a crash leaves an exact prefix.
    Store,
}

impl std::str::FromStr for Granularity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fence" => Ok(Self::Fence),
            "store" => Ok(Self::Store),
            _ => Err(format!("unknown crash-point granularity `{s}` (expected fence or store)")),
        }
    }
}

/// The crash points of `trace`, ascending and distinct.
pub fn crash_points(trace: &Trace, granularity: Granularity) -> Vec<CrashPoint> {
    let mut points: Vec<CrashPoint> = trace
        .events()
        .iter()
        .enumerate()
        .filter(|(_, e)| match e.op {
            Op::Fence | Op::Flush { kind: FlushKind::Clflush, .. } => true,
            Op::Store { .. } | Op::StoreNt { .. } => granularity == Granularity::Store,
            Op::Flush { .. } => false,
        })
        .map(|(i, _)| CrashPoint(i))
        .collect();
    points.push(CrashPoint(trace.len()));
    points.dedup();
    points
}

/// One pending 8-byte unit: written by trace event `seq`, not yet durable.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Unit {
    pub addr: u64,
    pub value: u64,
    pub seq: usize,
}

/// The pending write-back units of one cache line, in program order. At a crash the line holds
/// the durable base plus some prefix of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLine {
    pub line: u64,
    pub units: Vec<Unit>,
}

/// Everything a crash at `point` may leave: the durable base plus any allowed choice of the
/// pending units.
#[derive(Clone, Debug)]
pub struct CrashState {
    pub point: CrashPoint,
    pub model: PersistenceModel,
    pub base: Arc<SparseImage>,
    /// Hash of the whole durable base (see [`Tracker`]); with a view's delta it names a state.
    pub base_hash: u128,
    /// Lines with pending write-back units, ascending by address.
    pub lines: Vec<PendingLine>,
    /// Pending non-temporal units, in program order; each persists or not on its own.
    pub nt: Vec<Unit>,
}

/// Which pending units persisted: for each pending line (index-aligned with
/// [`CrashState::lines`]) how many of its units, in program order; for each pending
/// non-temporal unit, whether it did.
///
/// Serialized run-length encoded (`[[value, count], ...]`): a crash inside a 2 MiB zeroing has
/// 32,768 pending lines, nearly all alike. A plain list of values is read too.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    #[serde(with = "runs")]
    pub line_prefix: Vec<u32>,
    #[serde(with = "runs")]
    pub nt_mask: Vec<bool>,
}

/// Run-length serde for [`Choice`]'s vectors.
mod runs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize + PartialEq + Copy, S: Serializer>(
        v: &[T],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let mut runs: Vec<(T, u32)> = Vec::new();
        for &x in v {
            match runs.last_mut() {
                Some((value, count)) if *value == x => *count += 1,
                _ => runs.push((x, 1)),
            }
        }
        runs.serialize(s)
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form<T> {
        Plain(Vec<T>),
        Runs(Vec<(T, u32)>),
    }

    /// Bound on the decoded length: more than any trace can leave pending, and a corrupt count
    /// must not size an allocation.
    const DECODED_MAX: u64 = 1 << 26;

    pub fn deserialize<'de, T: Deserialize<'de> + Copy, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<T>, D::Error> {
        match Form::<T>::deserialize(d)? {
            Form::Plain(v) => Ok(v),
            Form::Runs(runs) => {
                let total: u64 = runs.iter().map(|&(_, n)| u64::from(n)).sum();
                if total > DECODED_MAX {
                    return Err(serde::de::Error::custom(format!(
                        "{total} entries, more than {DECODED_MAX}"
                    )));
                }
                Ok(runs.into_iter().flat_map(|(x, n)| std::iter::repeat_n(x, n as usize)).collect())
            }
        }
    }
}

impl CrashState {
    pub fn pending_units(&self) -> usize {
        self.lines.iter().map(|l| l.units.len()).sum::<usize>() + self.nt.len()
    }

    /// Number of distinct choices, saturating: Π(units per line + 1) × 2^nt.
    pub fn choice_count(&self) -> u128 {
        let mut n: u128 = 1;
        for l in &self.lines {
            n = n.saturating_mul(l.units.len() as u128 + 1);
        }
        for _ in &self.nt {
            n = n.saturating_mul(2);
        }
        n
    }

    pub fn choice_none(&self) -> Choice {
        Choice { line_prefix: vec![0; self.lines.len()], nt_mask: vec![false; self.nt.len()] }
    }

    pub fn choice_all(&self) -> Choice {
        Choice {
            line_prefix: self.lines.iter().map(|l| l.units.len() as u32).collect(),
            nt_mask: vec![true; self.nt.len()],
        }
    }

    /// Every choice, in a fixed order (mixed-radix counting, last line fastest; NT units after
    /// the lines). Only sensible when [`Self::choice_count`] is small.
    pub fn choices_exhaustive(&self) -> impl Iterator<Item = Choice> + '_ {
        let total = self.choice_count();
        (0..total).map(move |mut k| {
            let mut c = self.choice_none();
            for (i, bit) in c.nt_mask.iter_mut().enumerate().rev() {
                let _ = i;
                *bit = k % 2 == 1;
                k /= 2;
            }
            for (i, p) in c.line_prefix.iter_mut().enumerate().rev() {
                let radix = self.lines[i].units.len() as u128 + 1;
                *p = (k % radix) as u32;
                k /= radix;
            }
            c
        })
    }

    pub fn check_choice(&self, choice: &Choice) -> Result<(), PmemError> {
        let bad = |reason: String| Err(PmemError::BadChoice { reason });
        if choice.line_prefix.len() != self.lines.len() || choice.nt_mask.len() != self.nt.len() {
            return bad(format!(
                "choice has {} lines and {} nt units; crash point {} has {} and {}",
                choice.line_prefix.len(),
                choice.nt_mask.len(),
                self.point.0,
                self.lines.len(),
                self.nt.len()
            ));
        }
        for (l, &p) in self.lines.iter().zip(&choice.line_prefix) {
            if p as usize > l.units.len() {
                return bad(format!("line {:#x}: prefix {p} > {} pending units", l.line, l.units.len()));
            }
        }
        Ok(())
    }

    /// The units that persisted under `choice`, in program order.
    pub fn persisted(&self, choice: &Choice) -> Vec<Unit> {
        let mut out: Vec<Unit> = Vec::new();
        for (l, &p) in self.lines.iter().zip(&choice.line_prefix) {
            out.extend_from_slice(&l.units[..p as usize]);
        }
        out.extend(self.nt.iter().zip(&choice.nt_mask).filter(|(_, m)| **m).map(|(u, _)| *u));
        out.sort_by_key(|u| u.seq);
        out
    }

    /// The pending units that were lost under `choice`, in program order.
    pub fn lost(&self, choice: &Choice) -> Vec<Unit> {
        let mut out: Vec<Unit> = Vec::new();
        for (l, &p) in self.lines.iter().zip(&choice.line_prefix) {
            out.extend_from_slice(&l.units[p as usize..]);
        }
        out.extend(self.nt.iter().zip(&choice.nt_mask).filter(|(_, m)| !**m).map(|(u, _)| *u));
        out.sort_by_key(|u| u.seq);
        out
    }
}

/// A read view of one crash state: the shared durable base with the chosen units layered over
/// it. Building it costs O(chosen units), never O(device size); nothing is copied.
#[derive(Clone)]
pub struct View {
    base: Arc<SparseImage>,
    /// Final value per address of the persisted units, ascending by address.
    units: Vec<(u64, u64)>,
    hash: u128,
}

/// One flipped bit in a durable word: damage a checksum must catch, beyond what a crash can do.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MediaFault {
    /// Device address of the 8-byte word (8-aligned).
    pub addr: u64,
    /// Bit index in the little-endian word, 0..64.
    pub bit: u8,
}

impl View {
    pub fn new(state: &CrashState, choice: &Choice) -> Result<Self, PmemError> {
        state.check_choice(choice)?;
        if choice.nt_mask.iter().any(|&m| m) {
            return Ok(Self::new_general(state, choice));
        }
        // Write-back units only: lines are ascending and disjoint, so each line's prefix is
        // applied to one read of the base line and the delta comes out sorted.
        let mut units = Vec::new();
        let mut hash = state.base_hash;
        let mut base = [0u8; LINE_BYTES as usize];
        for (l, &p) in state.lines.iter().zip(&choice.line_prefix).filter(|(_, p)| **p > 0) {
            state.base.read_at(l.line, &mut base);
            let old: [u64; 8] =
                std::array::from_fn(|k| u64::from_le_bytes(base[k * 8..k * 8 + 8].try_into().expect("8")));
            let mut new = old;
            let mut touched = 0u8;
            for u in &l.units[..p as usize] {
                let k = ((u.addr - l.line) / 8) as usize;
                new[k] = u.value;
                touched |= 1 << k;
            }
            for k in (0..8).filter(|k| touched & (1 << k) != 0) {
                let addr = l.line + k as u64 * 8;
                hash = hash.wrapping_sub(word_hash(addr, old[k])).wrapping_add(word_hash(addr, new[k]));
                units.push((addr, new[k]));
            }
        }
        Ok(Self { base: Arc::clone(&state.base), units, hash })
    }

    /// Any choice, non-temporal units included: same-address units apply in program order.
    fn new_general(state: &CrashState, choice: &Choice) -> Self {
        let mut finals: BTreeMap<u64, u64> = BTreeMap::new();
        for u in state.persisted(choice) {
            finals.insert(u.addr, u.value);
        }
        let mut hash = state.base_hash;
        for (&addr, &value) in &finals {
            let old = read_word(&*state.base, addr);
            hash = hash.wrapping_sub(word_hash(addr, old)).wrapping_add(word_hash(addr, value));
        }
        Self { base: Arc::clone(&state.base), units: finals.into_iter().collect(), hash }
    }

    /// The same image with one bit of one 8-byte word flipped: a media fault (DESIGN §8,
    /// "media faults"). `fault.addr` must be 8-aligned and inside the device.
    pub fn with_media_fault(mut self, fault: MediaFault) -> View {
        let addr = fault.addr;
        debug_assert!(addr % 8 == 0 && addr + 8 <= self.size_bytes(), "media fault at {addr:#x}");
        let old = read_word(&self, addr);
        let new = old ^ (1u64 << (fault.bit % 64));
        self.hash = self.hash.wrapping_sub(word_hash(addr, old)).wrapping_add(word_hash(addr, new));
        match self.units.binary_search_by_key(&addr, |&(a, _)| a) {
            Ok(i) => self.units[i].1 = new,
            Err(i) => self.units.insert(i, (addr, new)),
        }
        self
    }

    /// Identifies the persisted image: equal images have equal hashes across crash points
    /// (128-bit, collisions are negligible).
    pub fn state_hash(&self) -> u128 {
        self.hash
    }

    /// The persisted units layered over the base, ascending by address.
    pub fn delta(&self) -> &[(u64, u64)] {
        &self.units
    }

    /// The full crash image as bytes (for artifacts).
    pub fn materialize(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.size_bytes() as usize];
        self.read_at(0, &mut out);
        out
    }
}

impl Backing for View {
    fn size_bytes(&self) -> u64 {
        self.base.size_bytes()
    }
    fn view_delta(&self) -> Option<&[(u64, u64)]> {
        Some(&self.units)
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        self.base.read_at(addr, buf);
        let end = addr + buf.len() as u64;
        let first = self.units.partition_point(|&(a, _)| a + 8 <= addr);
        for &(a, v) in &self.units[first..] {
            if a >= end {
                break;
            }
            let bytes = v.to_le_bytes();
            let lo = a.max(addr);
            let hi = (a + 8).min(end);
            buf[(lo - addr) as usize..(hi - addr) as usize]
                .copy_from_slice(&bytes[(lo - a) as usize..(hi - a) as usize]);
        }
    }
}

impl std::fmt::Debug for View {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("View").field("units", &self.units.len()).field("hash", &self.hash).finish()
    }
}

fn read_word(b: &dyn Backing, addr: u64) -> u64 {
    let mut w = [0u8; 8];
    b.read_at(addr, &mut w);
    u64::from_le_bytes(w)
}

/// Per-word hash; an image's hash is the wrapping sum over its changed words, so it can be
/// updated in O(1) per store and for a view in O(units).
fn word_hash(addr: u64, value: u64) -> u128 {
    let a = splitmix(addr ^ 0x243f_6a88_85a3_08d3);
    let b = splitmix(value.wrapping_add(a));
    let c = splitmix(b ^ addr.rotate_left(29));
    (u128::from(b) << 64) | u128::from(c)
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Debug, Default)]
struct LineState {
    pending: Vec<super::Unit>,
    /// How many of `pending` (a prefix) a clwb/clflushopt has covered; they become durable at
    /// the next fence.
    flushed: usize,
}

/// Walks a trace from its initial image, keeping the durable image and the pending units.
pub struct Tracker<'t> {
    trace: &'t Trace,
    model: PersistenceModel,
    pos: usize,
    durable: SparseImage,
    durable_hash: u128,
    lines: BTreeMap<u64, LineState>,
    nt: Vec<Unit>,
}

impl<'t> Tracker<'t> {
    pub fn new(trace: &'t Trace, initial: Arc<dyn Backing>, model: PersistenceModel) -> Self {
        Self {
            trace,
            model,
            pos: 0,
            durable: SparseImage::new(initial),
            durable_hash: 0,
            lines: BTreeMap::new(),
            nt: Vec::new(),
        }
    }

    pub fn position(&self) -> CrashPoint {
        CrashPoint(self.pos)
    }

    /// Processes events up to (not including) `point`. Points only move forward.
    pub fn advance_to(&mut self, point: CrashPoint) {
        assert!(
            point.0 >= self.pos && point.0 <= self.trace.len(),
            "tracker moved backwards or past the end"
        );
        while self.pos < point.0 {
            self.step();
        }
    }

    /// The crash state if power were cut now.
    pub fn crash_state(&self) -> CrashState {
        CrashState {
            point: CrashPoint(self.pos),
            model: self.model,
            base: Arc::new(self.durable.clone()),
            base_hash: self.durable_hash,
            lines: self
                .lines
                .iter()
                .filter(|(_, l)| !l.pending.is_empty())
                .map(|(&line, l)| PendingLine { line, units: l.pending.clone() })
                .collect(),
            nt: self.nt.clone(),
        }
    }

    /// The number of choices of the crash state if power were cut now: the same as
    /// `self.crash_state().choice_count()`, without building the state.
    pub fn choice_count(&self) -> u128 {
        let mut n: u128 = 1;
        for l in self.lines.values().filter(|l| !l.pending.is_empty()) {
            n = n.saturating_mul(l.pending.len() as u128 + 1);
        }
        for _ in &self.nt {
            n = n.saturating_mul(2);
        }
        n
    }

    /// Convenience: the crash state at `point`, walking a fresh tracker.
    pub fn state_at(
        trace: &Trace,
        initial: Arc<dyn Backing>,
        model: PersistenceModel,
        point: CrashPoint,
    ) -> CrashState {
        let mut t = Tracker::new(trace, initial, model);
        t.advance_to(point);
        t.crash_state()
    }

    fn step(&mut self) {
        let seq = self.pos;
        let event = *self.trace.event(seq);
        self.pos += 1;
        match (self.model, event.op) {
            (_, Op::Store { .. }) | (_, Op::StoreNt { .. }) if self.model == PersistenceModel::Eadr => {
                for (addr, value) in self.trace.store_units(&event) {
                    self.make_durable(Unit { addr, value, seq });
                }
            }
            (_, Op::Store { .. }) => {
                for (addr, value) in self.trace.store_units(&event) {
                    let line = addr & !(LINE_BYTES - 1);
                    self.lines.entry(line).or_default().pending.push(Unit { addr, value, seq });
                }
            }
            (_, Op::StoreNt { .. }) => {
                let units: Vec<Unit> =
                    self.trace.store_units(&event).map(|(addr, value)| Unit { addr, value, seq }).collect();
                self.nt.extend(units);
            }
            (_, Op::Flush { addr, len, kind }) => self.flush(addr, len, kind),
            (_, Op::Fence) => self.fence(),
        }
    }

    fn flush(&mut self, addr: u64, len: u64, kind: FlushKind) {
        let lines: Vec<u64> = self.lines.range(addr..addr + len).map(|(&l, _)| l).collect();
        for line in lines {
            let state = self.lines.get_mut(&line).expect("line listed");
            match kind {
                FlushKind::Clwb | FlushKind::Clflushopt => state.flushed = state.pending.len(),
                FlushKind::Clflush => {
                    let units = std::mem::take(&mut state.pending);
                    self.lines.remove(&line);
                    for u in units {
                        self.make_durable(u);
                    }
                }
            }
        }
    }

    fn fence(&mut self) {
        let mut durable: Vec<Unit> = Vec::new();
        self.lines.retain(|_, l| {
            durable.extend(l.pending.drain(..l.flushed));
            l.flushed = 0;
            !l.pending.is_empty()
        });
        durable.append(&mut self.nt);
        // Program order matters only for units to the same address; sort to apply in order.
        durable.sort_by_key(|u| u.seq);
        for u in durable {
            self.make_durable(u);
        }
    }

    fn make_durable(&mut self, u: Unit) {
        let old = read_word(&self.durable, u.addr);
        self.durable_hash =
            self.durable_hash.wrapping_sub(word_hash(u.addr, old)).wrapping_add(word_hash(u.addr, u.value));
        self.durable.write_u64(u.addr, u.value);
        self.drop_superseded(u);
    }

    /// Stores to one address reach media in program order: once `u` is durable, a pending unit
    /// written to the same address earlier can no longer land after it, so it is dropped.
    /// Without this, a stale NT or write-back value could resurface over a newer durable one
    /// (WB store, NT store, fence; or NT store, WB store, clflush). Dropping such a unit loses no
    /// state: whenever it would have persisted, the newer durable value overwrote it.
    fn drop_superseded(&mut self, u: Unit) {
        let older = |p: &Unit| p.addr == u.addr && p.seq < u.seq;
        self.nt.retain(|p| !older(p));
        let line = u.addr & !(LINE_BYTES - 1);
        if let Some(state) = self.lines.get_mut(&line) {
            let flushed_dropped = state.pending[..state.flushed].iter().filter(|p| older(p)).count();
            state.pending.retain(|p| !older(p));
            state.flushed -= flushed_dropped;
            if state.pending.is_empty() {
                self.lines.remove(&line);
            }
        }
    }
}
