//! Which stores a power cut may leave on media (the rules of `docs/persistence-model.md`),
//! computed by walking a trace.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::media::{Backing, SparseImage};
use super::trace::{Op, Trace};
use super::{FlushKind, LINE_BYTES, PersistenceModel, PmemError};

/// "Power is cut just before trace event `index` completes" (`index == trace.len()`: after the last
/// event). Every event before `index` completed; under eADR a store at `index` may be cut between
/// two of its 8-byte units (see [`CrashState::torn`]).
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
    /// Device address of the word (8-aligned).
    pub addr: u64,
    /// The word the store wrote, little-endian.
    pub value: u64,
    /// The trace event that stored it; several units share one store's `seq`.
    pub seq: usize,
}

/// How many lines ahead [`Tracker::crash_state`] fetches a line's shared units.
const PREFETCH_AHEAD: usize = 8;

/// Asks the CPU to fetch the cache lines of `*p` (its first 128 bytes) ahead of their use: a hint
/// with no effect on what any code computes.
fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = p.cast::<i8>();
        // SAFETY: prefetching is a hint: it never faults, whatever the address, and changes no
        // memory; `wrapping_add` keeps the second address computation defined.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(p);
            _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The pending write-back units of one cache line, in program order. At a crash the line holds
/// the durable base plus some prefix of these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingLine {
    /// Address of the cache line ([`LINE_BYTES`]-aligned).
    pub line: u64,
    /// Its pending units, in program order; one address may appear more than once. Shared
    /// with the walk that made the state (and with the states of later crash points, until the
    /// line changes).
    pub units: Arc<LineUnits>,
    /// `units.len()`, `units.by_address()` and `units.digest()`, copied when the state was
    /// made: a state's walks over its lines then read this vector, not every line's shared
    /// units (tens of thousands of scattered allocations at a point inside a zeroing).
    count: u32,
    by_address: bool,
    digest: u128,
}

impl PendingLine {
    /// The line's pending units, shared.
    pub fn new(line: u64, units: Arc<LineUnits>) -> Self {
        let count = u32::try_from(units.len()).expect("a line's pending units fit in 32 bits");
        let by_address = units.by_address();
        let digest = units.digest();
        Self { line, units, count, by_address, digest }
    }

    /// How many units are pending (`units.len()`).
    pub fn unit_count(&self) -> usize {
        if crate::self_check_due!() {
            assert_eq!(self.count as usize, self.units.len(), "a pending line's count");
        }
        self.count as usize
    }

    /// [`LineUnits::digest`] of the units.
    pub fn digest(&self) -> u128 {
        if crate::self_check_due!() {
            assert_eq!(self.digest, self.units.digest(), "a pending line's digest");
        }
        self.digest
    }

    /// Whether the units in program order are ascending by address ([`LineUnits::by_address`]).
    pub fn by_address(&self) -> bool {
        if crate::self_check_due!() {
            assert_eq!(self.by_address, self.units.by_address(), "a pending line's order flag");
        }
        self.by_address
    }
}

/// A line's pending units in program order, with a digest of them (and whether they are in
/// address order) taken once, when first asked for, and forgotten by every change: a crash
/// point's hash, and its cells, cost one step per pending line that did not change since an
/// earlier point, not one per unit.
#[derive(Debug, Default)]
pub struct LineUnits {
    units: Vec<Unit>,
    digest: std::sync::OnceLock<u128>,
    sorted: std::sync::OnceLock<bool>,
}

impl LineUnits {
    /// A digest of the units (addresses, values and count; not their program-order stamps).
    pub fn digest(&self) -> u128 {
        let d = *self.digest.get_or_init(|| digest_units(&self.units));
        if crate::self_check_due!() {
            assert_eq!(d, digest_units(&self.units), "a stale digest of a line's pending units");
        }
        d
    }

    /// Whether the units, in program order, are also ascending by address (as one store's
    /// are, and a zeroing's): then they are already in the order the cells of a crash state
    /// list units in. Taken once, when first asked for, and forgotten by every change.
    pub fn by_address(&self) -> bool {
        let plain = || self.units.is_sorted_by_key(|u| (u.addr, u.seq));
        let s = *self.sorted.get_or_init(plain);
        if crate::self_check_due!() {
            assert_eq!(s, plain(), "a stale order flag of a line's pending units");
        }
        s
    }
}

fn digest_units(units: &[Unit]) -> u128 {
    let mut h = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58du128 ^ units.len() as u128;
    for u in units {
        h = (h ^ u128::from(u.addr)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        h = (h ^ u128::from(u.value)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    h
}

impl Clone for LineUnits {
    fn clone(&self) -> Self {
        Self { units: self.units.clone(), digest: self.digest.clone(), sorted: self.sorted.clone() }
    }
}

impl PartialEq for LineUnits {
    fn eq(&self, other: &Self) -> bool {
        self.units == other.units
    }
}

impl Eq for LineUnits {}

impl std::ops::Deref for LineUnits {
    type Target = Vec<Unit>;
    fn deref(&self) -> &Vec<Unit> {
        &self.units
    }
}

impl std::ops::DerefMut for LineUnits {
    /// Any change may make the digest stale: it is forgotten.
    fn deref_mut(&mut self) -> &mut Vec<Unit> {
        self.digest = std::sync::OnceLock::new();
        self.sorted = std::sync::OnceLock::new();
        &mut self.units
    }
}

impl From<Vec<Unit>> for LineUnits {
    fn from(units: Vec<Unit>) -> Self {
        Self { units, digest: std::sync::OnceLock::new(), sorted: std::sync::OnceLock::new() }
    }
}

/// Pending NT unit that waits on a line: it may persist only if that line persisted at least
/// `prefix` of its pending write-back units (the ones stored before it). A `movnt` to a cached
/// line evicts the line first, so its earlier write-back stores reach media no later than it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NtDep {
    /// Index into [`CrashState::lines`].
    pub line: usize,
    /// Units of that line stored before the NT unit, at least 1: the line's
    /// [`Choice::line_prefix`] must reach it for the NT unit to persist.
    pub prefix: u32,
}

/// Everything a crash at `point` may leave: the durable base plus any allowed choice of the
/// pending units.
#[derive(Clone, Debug)]
pub struct CrashState {
    /// Where the power was cut.
    pub point: CrashPoint,
    /// The persistence model the state was computed under.
    pub model: PersistenceModel,
    /// The durable base: every unit that is durable whatever the choice (not a full copy:
    /// an overlay over the run's initial media).
    pub base: Arc<SparseImage>,
    /// Hash of the whole durable base (see [`Tracker`]); with a view's delta it names a state.
    pub base_hash: u128,
    /// Lines with pending write-back units, ascending by address.
    pub lines: Vec<PendingLine>,
    /// Pending non-temporal units, in program order; each persists or not on its own, except
    /// for the line it waits on.
    pub nt: Vec<Unit>,
    /// Index-aligned with `nt`: the line prefix each NT unit waits on, if any.
    pub nt_after: Vec<Option<NtDep>>,
    /// eADR only: the units of the store at `point` that a power cut inside that store may have
    /// written, in address order: all but its last unit. Any prefix of them persisted.
    pub torn: Vec<Unit>,
}

/// Which pending units persisted: for each pending line (index-aligned with
/// [`CrashState::lines`]) how many of its units, in program order; for each pending
/// non-temporal unit, whether it did; how many of the torn store's units did.
///
/// Serialized run-length encoded (`[[value, count], ...]`): a crash inside a 2 MiB zeroing has
/// 32,768 pending lines, nearly all alike. A plain list of values is read too. `torn` is left
/// out when 0 and reads as 0 when absent, so manifests written before it still load.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Choice {
    /// Per pending line, index-aligned with [`CrashState::lines`]: how many of its units, in
    /// program order, persisted (0..=units; a prefix, never a subset).
    #[serde(with = "runs")]
    pub line_prefix: Vec<u32>,
    /// Per pending non-temporal unit, index-aligned with [`CrashState::nt`]: whether it
    /// persisted.
    #[serde(with = "runs")]
    pub nt_mask: Vec<bool>,
    /// eADR: how many units of the store at the crash point ([`CrashState::torn`]) were
    /// written before the cut; 0 (always, under ADR) means the store had not begun.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub torn: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
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
    /// Pending write-back and NT units (the torn store's units are not pending: see `torn`).
    pub fn pending_units(&self) -> usize {
        self.lines.iter().map(|l| l.unit_count()).sum::<usize>() + self.nt.len()
    }

    /// Number of valid choices, saturating: per line, Σ over its prefixes p of 2^(NT units
    /// waiting on at most p); times 2^(NT units waiting on nothing); times (torn units + 1).
    pub fn choice_count(&self) -> u128 {
        let groups = self.nt_groups();
        let mut n = (self.torn.len() as u128).saturating_add(1);
        for (i, deps) in groups.per_line.iter().enumerate() {
            n = n.saturating_mul(line_group_count(self.lines[i].unit_count(), deps));
        }
        n.saturating_mul(pow2(groups.free.len()))
    }

    /// The choice in which no pending unit persisted: the durable base alone.
    pub fn choice_none(&self) -> Choice {
        Choice { line_prefix: vec![0; self.lines.len()], nt_mask: vec![false; self.nt.len()], torn: 0 }
    }

    /// The choice in which every pending unit persisted (and, under eADR, every torn unit:
    /// the store at the crash point cut just before its last unit).
    pub fn choice_all(&self) -> Choice {
        Choice {
            line_prefix: self.lines.iter().map(|l| l.unit_count() as u32).collect(),
            nt_mask: vec![true; self.nt.len()],
            torn: self.torn.len() as u32,
        }
    }

    /// Every valid choice once, in a fixed order: mixed-radix counting with the torn prefix
    /// slowest, then each line together with the NT units that wait on it (last line fastest),
    /// then the NT units that wait on nothing (last fastest). Only sensible when
    /// [`Self::choice_count`] is small.
    pub fn choices_exhaustive(&self) -> impl Iterator<Item = Choice> + '_ {
        let total = self.choice_count();
        let groups = self.nt_groups();
        let radix: Vec<u128> = (groups.per_line.iter().enumerate())
            .map(|(i, deps)| line_group_count(self.lines[i].unit_count(), deps))
            .collect();
        (0..total).map(move |mut k| {
            let mut c = self.choice_none();
            for &nt in groups.free.iter().rev() {
                c.nt_mask[nt] = k % 2 == 1;
                k /= 2;
            }
            for (i, deps) in groups.per_line.iter().enumerate().rev() {
                decode_line_group(&mut c, i, deps, k % radix[i]);
                k /= radix[i];
            }
            c.torn = k as u32;
            c
        })
    }

    /// Checks that `choice` is one of this state's: its shape matches, no line persists more
    /// than it has pending, no NT unit persists without what it waits on ([`NtDep`]), and the
    /// torn prefix is in bounds. The error is a [`PmemError::BadChoice`] naming the first misfit.
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
        if let Some(k) = self.unmet_nt(choice).next() {
            let u = self.nt[k];
            return bad(format!(
                "nt unit at {:#x} (event {}) persisted without the earlier write-back units of its line",
                u.addr, u.seq
            ));
        }
        if choice.torn as usize > self.torn.len() {
            return bad(format!("torn prefix {} > {} torn units", choice.torn, self.torn.len()));
        }
        Ok(())
    }

    /// `choice` with every NT unit whose line prefix is too short marked lost: always valid
    /// for the rule of [`NtDep`] (shape and prefixes unchanged).
    pub fn without_unmet_nt(&self, mut choice: Choice) -> Choice {
        let unmet: Vec<usize> = self.unmet_nt(&choice).collect();
        for k in unmet {
            choice.nt_mask[k] = false;
        }
        choice
    }

    /// `choice` with NT unit `k` persisted, and its line's prefix raised to what `k` waits on.
    pub fn with_nt(&self, mut choice: Choice, k: usize) -> Choice {
        choice.nt_mask[k] = true;
        if let Some(d) = self.nt_after[k] {
            let p = &mut choice.line_prefix[d.line];
            *p = (*p).max(d.prefix);
        }
        choice
    }

    /// NT units `choice` persists although their line prefix is shorter than they wait on.
    fn unmet_nt<'c>(&'c self, choice: &'c Choice) -> impl Iterator<Item = usize> + 'c {
        (self.nt_after.iter().enumerate()).filter_map(move |(k, dep)| match dep {
            Some(d) if choice.nt_mask.get(k) == Some(&true) => {
                (choice.line_prefix.get(d.line).copied().unwrap_or(0) < d.prefix).then_some(k)
            }
            _ => None,
        })
    }

    /// NT units grouped by the line they wait on (sorted by prefix), and those free.
    pub(super) fn nt_groups(&self) -> NtGroups {
        let mut per_line: Vec<Vec<(u32, usize)>> = vec![Vec::new(); self.lines.len()];
        let mut free = Vec::new();
        for (k, dep) in self.nt_after.iter().enumerate() {
            match dep {
                Some(d) => per_line[d.line].push((d.prefix, k)),
                None => free.push(k),
            }
        }
        for deps in &mut per_line {
            deps.sort_unstable();
        }
        NtGroups { per_line, free }
    }

    /// The units that persisted under `choice`, in program order.
    pub fn persisted(&self, choice: &Choice) -> Vec<Unit> {
        let mut out: Vec<Unit> = Vec::new();
        for (l, &p) in self.lines.iter().zip(&choice.line_prefix) {
            out.extend_from_slice(&l.units[..p as usize]);
        }
        out.extend(self.nt.iter().zip(&choice.nt_mask).filter(|(_, m)| **m).map(|(u, _)| *u));
        out.extend_from_slice(&self.torn[..(choice.torn as usize).min(self.torn.len())]);
        // Stable: the torn units share one seq and stay in address order.
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
        out.extend_from_slice(&self.torn[(choice.torn as usize).min(self.torn.len())..]);
        out.sort_by_key(|u| u.seq);
        out
    }
}

/// The NT units of a crash state by what they wait on: `per_line[i]` holds `(prefix, nt index)`
/// for the units waiting on line `i`, ascending; `free` the units waiting on nothing.
pub(super) struct NtGroups {
    pub(super) per_line: Vec<Vec<(u32, usize)>>,
    pub(super) free: Vec<usize>,
}

/// 2^n, saturating.
pub(super) fn pow2(n: usize) -> u128 {
    if n >= 128 { u128::MAX } else { 1u128 << n }
}

/// Valid (prefix, NT subset) pairs of one line with `units` pending units and the NT units
/// `deps` waiting on it: at prefix p, exactly the NT units waiting on at most p are free.
pub(super) fn line_group_count(units: usize, deps: &[(u32, usize)]) -> u128 {
    if deps.is_empty() {
        // One choice per prefix (the common case: no NT unit waits on the line).
        return units as u128 + 1;
    }
    (0..=units as u32)
        .fold(0u128, |n, p| n.saturating_add(pow2(deps.partition_point(|&(need, _)| need <= p))))
}

/// Sets line `i`'s prefix and its waiting NT units from `r`, an index below
/// [`line_group_count`]: prefixes in ascending order, each followed by its NT subsets.
pub(super) fn decode_line_group(c: &mut Choice, i: usize, deps: &[(u32, usize)], r: u128) {
    let (prefix, free, bits) = line_group_at(deps, r);
    c.line_prefix[i] = prefix;
    for (j, &(_, k)) in deps[..free].iter().enumerate() {
        c.nt_mask[k] = (bits >> j) & 1 == 1;
    }
}

/// Choice `r` (below [`line_group_count`]) of a line whose waiting NT units are `deps`: the
/// line's prefix, how many of `deps` may persist at that prefix (the first `free`), and which
/// of those did (bit `j` for `deps[j]`).
pub(super) fn line_group_at(deps: &[(u32, usize)], mut r: u128) -> (u32, usize, u128) {
    // `r` is below the line's count, so the loop ends by the prefix that persists every unit.
    let mut p = 0u32;
    loop {
        let free = deps.partition_point(|&(need, _)| need <= p);
        let subsets = pow2(free);
        if r < subsets {
            return (p, free, r);
        }
        r -= subsets;
        p += 1;
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
    /// Is `base` its crash state's durable base (so `units` are where the view differs from
    /// it)? Not for [`Tracker::all_persisted`], whose base is the latest image itself.
    over_state_base: bool,
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
    /// The image `choice` leaves of `state`; a [`PmemError::BadChoice`] if the choice does not
    /// fit the state ([`CrashState::check_choice`]).
    pub fn new(state: &CrashState, choice: &Choice) -> Result<Self, PmemError> {
        state.check_choice(choice)?;
        Ok(Self::of_valid(state, choice))
    }

    /// [`Self::new`] of a choice the harness made itself (enumerated, sampled, or decoded from
    /// cells), which fits its state by construction: checked in debug builds only.
    pub fn of_valid(state: &CrashState, choice: &Choice) -> Self {
        if crate::self_check_due!() {
            assert_eq!(state.check_choice(choice), Ok(()), "a harness-made choice fits its state");
        }
        let nt_chosen = choice.nt_mask.iter().any(|&m| m);
        if choice.torn > 0 && !nt_chosen && choice.line_prefix.iter().all(|&p| p == 0) {
            return Self::new_torn(state, choice.torn as usize);
        }
        if nt_chosen || choice.torn > 0 {
            return Self::new_general(state, choice);
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
                hash = rehash(hash, addr, old[k], new[k]);
                units.push((addr, new[k]));
            }
        }
        Self { base: Arc::clone(&state.base), units, hash, over_state_base: true }
    }

    /// Only a torn prefix (eADR): one store's units, ascending and distinct by address, so the
    /// delta is the prefix itself. O(units), no sorting: a cut inside a 2 MiB zeroing is cheap.
    fn new_torn(state: &CrashState, torn: usize) -> Self {
        let mut hash = state.base_hash;
        let units: Vec<(u64, u64)> = (state.torn[..torn].iter())
            .map(|u| {
                let old = read_word(&*state.base, u.addr);
                hash = rehash(hash, u.addr, old, u.value);
                (u.addr, u.value)
            })
            .collect();
        Self { base: Arc::clone(&state.base), units, hash, over_state_base: true }
    }

    /// Any choice, non-temporal and torn units included: same-address units apply in program
    /// order.
    fn new_general(state: &CrashState, choice: &Choice) -> Self {
        Self::from_persisted(state, state.persisted(choice))
    }

    /// The image of `state` with exactly the units `persisted` (in any order) written over its
    /// durable base: at an address written more than once, the last in program order shows.
    pub(super) fn from_persisted(state: &CrashState, mut persisted: Vec<Unit>) -> Self {
        persisted.sort_unstable_by_key(|u| (u.addr, u.seq));
        let mut units: Vec<(u64, u64)> = Vec::with_capacity(persisted.len());
        for u in &persisted {
            match units.last_mut() {
                Some(last) if last.0 == u.addr => last.1 = u.value,
                _ => units.push((u.addr, u.value)),
            }
        }
        let mut hash = state.base_hash;
        for &(addr, value) in &units {
            let old = read_word(&*state.base, addr);
            hash = rehash(hash, addr, old, value);
        }
        Self { base: Arc::clone(&state.base), units, hash, over_state_base: true }
    }

    /// Whether the view is `state`'s durable base plus some of its pending units.
    pub(super) fn over_base_of(&self, state: &CrashState) -> bool {
        self.over_state_base && Arc::ptr_eq(&self.base, &state.base)
    }

    /// Whether two views show the same image the same way (their deltas and hashes agree).
    pub(super) fn same_as(&self, other: &View) -> bool {
        Arc::ptr_eq(&self.base, &other.base) && self.units == other.units && self.hash == other.hash
    }

    /// The same image with one bit of one 8-byte word flipped: a media fault (see "Media faults"
    /// in `docs/persistence-model.md`). `fault.addr` must be 8-aligned and inside the device.
    pub fn with_media_fault(mut self, fault: MediaFault) -> View {
        let addr = fault.addr;
        debug_assert!(addr % 8 == 0 && addr + 8 <= self.size_bytes(), "media fault at {addr:#x}");
        let old = read_word(&self, addr);
        let new = old ^ (1u64 << (fault.bit % 64));
        self.hash = rehash(self.hash, addr, old, new);
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
        self.over_state_base.then_some(&self.units[..])
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

/// What pending NT unit `u` waits on: the pending write-back units stored to its line before it
/// (`lines` ascending by address, each in program order).
fn nt_dep(lines: &[PendingLine], u: &Unit) -> Option<NtDep> {
    let line = u.addr & !(LINE_BYTES - 1);
    let i = lines.binary_search_by_key(&line, |l| l.line).ok()?;
    let prefix = lines[i].units.partition_point(|p| p.seq < u.seq) as u32;
    (prefix > 0).then_some(NtDep { line: i, prefix })
}

pub(super) fn read_word(b: &dyn Backing, addr: u64) -> u64 {
    let mut w = [0u8; 8];
    b.read_at(addr, &mut w);
    u64::from_le_bytes(w)
}

/// Per-word hash; an image's hash is the wrapping sum over its changed words, so it can be
/// updated in O(1) per store and for a view in O(units).
#[cfg(test)]
fn word_hash(addr: u64, value: u64) -> u128 {
    word_hash_keyed(addr, splitmix(addr ^ 0x243f_6a88_85a3_08d3), value)
}

/// [`word_hash`] with the address's own mix `a` computed by the caller.
fn word_hash_keyed(addr: u64, a: u64, value: u64) -> u128 {
    let b = splitmix(value.wrapping_add(a));
    let c = splitmix(b ^ addr.rotate_left(29));
    (u128::from(b) << 64) | u128::from(c)
}

/// `hash` (a sum of [`word_hash`]es) after the word at `addr` changed from `old` to `new`:
/// unchanged if the word is, and the address mixed once for both values.
fn rehash(hash: u128, addr: u64, old: u64, new: u64) -> u128 {
    if old == new {
        return hash;
    }
    let a = splitmix(addr ^ 0x243f_6a88_85a3_08d3);
    hash.wrapping_sub(word_hash_keyed(addr, a, old)).wrapping_add(word_hash_keyed(addr, a, new))
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[derive(Clone, Debug, Default)]
struct LineState {
    /// Shared with the crash states built since the line last changed: copied on write.
    pending: Arc<LineUnits>,
    /// How many of `pending` (a prefix) a clwb/clflushopt has covered; they become durable at
    /// the next fence.
    flushed: usize,
}

/// Walks a trace from its initial image, keeping the durable image and the pending units.
///
/// Walking forward is incremental: exploring every crash point of a trace costs one pass, not
/// one per point. To go back, make a new tracker.
pub struct Tracker<'t> {
    trace: &'t Trace,
    model: PersistenceModel,
    pos: usize,
    durable: SparseImage,
    durable_hash: u128,
    lines: BTreeMap<u64, LineState>,
    /// Lines a clwb/clflushopt covered since the last fence (perhaps listed twice): the fence
    /// visits these, not every pending line.
    flushed_lines: Vec<u64>,
    /// How many pending lines hold each number of pending units (index: the number): the
    /// crash state's count is a product over lines, computed from this in O(longest line).
    lengths: Vec<u64>,
    nt: Vec<Unit>,
    /// Under ADR, if asked for ([`Tracker::keep_latest`]): the image with every store so far
    /// applied, as the program saw it, and its hash (on the scale of `durable_hash`).
    latest: Option<(SparseImage, u128)>,
}

/// Writes `value` at `addr` of `image`, keeping `hash` (the image's hash) up to date.
fn apply(image: &mut SparseImage, hash: &mut u128, addr: u64, value: u64) {
    let old = image.swap_u64(addr, value);
    *hash = rehash(*hash, addr, old, value);
}

/// Moves one line from pending length `from` to `to` in `lengths` (0: no pending units).
fn relength(lengths: &mut Vec<u64>, from: usize, to: usize) {
    if from == to {
        return;
    }
    if from > 0 {
        lengths[from] -= 1;
    }
    if to > 0 {
        if lengths.len() <= to {
            lengths.resize(to + 1, 0);
        }
        lengths[to] += 1;
    }
}

/// `base^exp`, saturating.
fn pow_saturating(base: u128, exp: u64) -> u128 {
    match (base, u32::try_from(exp)) {
        (0 | 1, _) => base.max(u128::from(exp == 0)),
        (_, Ok(e)) => base.checked_pow(e).unwrap_or(u128::MAX),
        (_, Err(_)) => u128::MAX,
    }
}

impl std::fmt::Debug for Tracker<'_> {
    /// Where the walk is and how much is pending; not the images.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracker")
            .field("model", &self.model)
            .field("position", &self.pos)
            .field("trace_events", &self.trace.len())
            .field("pending_lines", &self.lines.values().filter(|l| !l.pending.is_empty()).count())
            .field("pending_nt", &self.nt.len())
            .finish_non_exhaustive()
    }
}

impl<'t> Tracker<'t> {
    /// A tracker at crash point 0 of `trace`, under `model`: nothing executed, everything
    /// durable is `initial` (the media the trace was recorded on).
    pub fn new(trace: &'t Trace, initial: Arc<dyn Backing>, model: PersistenceModel) -> Self {
        Self {
            trace,
            model,
            pos: 0,
            durable: SparseImage::new(initial),
            durable_hash: 0,
            lines: BTreeMap::new(),
            flushed_lines: Vec::new(),
            lengths: Vec::new(),
            nt: Vec::new(),
            latest: None,
        }
    }

    /// Keeps the latest image (every store applied) from here on, for
    /// [`Self::all_persisted`]. Under ADR only, before the first step; otherwise a no-op.
    pub fn keep_latest(&mut self) {
        assert_eq!(self.pos, 0, "keep_latest before the walk begins");
        if self.model == PersistenceModel::Adr {
            self.latest = Some((self.durable.clone(), self.durable_hash));
        }
    }

    /// The crash state's image with every pending unit persisted (the view of
    /// [`CrashState::choice_all`]), in O(pages written) rather than O(pending units): the latest
    /// image itself, since under ADR nothing pending is older than the durable value at its
    /// address. `None` unless [`Self::keep_latest`] was called. Its
    /// [`Backing::view_delta`] is `None` (its base is not the state's durable base); a debug
    /// build compares it with the view built from the state.
    pub fn all_persisted(&self) -> Option<View> {
        let (latest, hash) = self.latest.as_ref()?;
        let view =
            View { base: Arc::new(latest.clone()), units: Vec::new(), hash: *hash, over_state_base: false };
        if crate::self_check_due!() {
            let state = self.crash_state();
            let plain = View::of_valid(&state, &state.choice_all());
            assert_eq!(plain.hash, view.hash, "the latest image's hash at crash point {}", self.pos);
            for &(addr, value) in &plain.units {
                assert_eq!(
                    read_word(&view, addr),
                    value,
                    "the latest image at {addr:#x}, crash point {}",
                    self.pos
                );
            }
        }
        Some(view)
    }

    fn apply_latest(&mut self, addr: u64, value: u64) {
        if let Some((latest, hash)) = &mut self.latest {
            apply(latest, hash, addr, value);
        }
    }

    /// The crash point the tracker stands at: the events before it are processed.
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

    /// The crash state if power were cut now (before the next event completes).
    pub fn crash_state(&self) -> CrashState {
        // Each line's shared units are a separate allocation, and a point inside a zeroing has
        // tens of thousands: they are fetched a few lines ahead of their use.
        let held: Vec<(u64, &Arc<LineUnits>)> =
            self.lines.iter().map(|(&line, l)| (line, &l.pending)).collect();
        let mut lines = Vec::with_capacity(held.len());
        for (k, &(line, units)) in held.iter().enumerate() {
            if let Some(&(_, ahead)) = held.get(k + PREFETCH_AHEAD) {
                prefetch(Arc::as_ptr(ahead));
            }
            if !units.is_empty() {
                lines.push(PendingLine::new(line, Arc::clone(units)));
            }
        }
        CrashState {
            point: CrashPoint(self.pos),
            model: self.model,
            base: Arc::new(self.durable.clone()),
            base_hash: self.durable_hash,
            nt_after: self.nt.iter().map(|u| nt_dep(&lines, u)).collect(),
            lines,
            nt: self.nt.clone(),
            torn: self.torn_units(),
        }
    }

    /// The number of choices of the crash state if power were cut now, exactly
    /// `self.crash_state().choice_count()`, without building the state (no copy of the pending
    /// lines or the durable image): what coverage needs for the points it does not explore.
    pub fn choice_count(&self) -> u128 {
        let mut waiting: BTreeMap<u64, Vec<(u32, usize)>> = BTreeMap::new();
        let mut free = 0usize;
        for (k, u) in self.nt.iter().enumerate() {
            let line = u.addr & !(LINE_BYTES - 1);
            let prefix = self.lines.get(&line).map_or(0, |l| l.pending.partition_point(|p| p.seq < u.seq));
            match prefix {
                0 => free += 1,
                p => waiting.entry(line).or_default().push((p as u32, k)),
            }
        }
        let mut n = (self.torn_len() as u128).saturating_add(1);
        // A line no NT unit waits on has `len + 1` choices; the others are counted one by one.
        // Every factor is at least 1, so the saturating product is exact whenever it fits.
        let mut lengths = self.lengths.clone();
        for (line, mut deps) in waiting {
            let len = self.lines[&line].pending.len();
            relength(&mut lengths, len, 0);
            deps.sort_unstable();
            n = n.saturating_mul(line_group_count(len, &deps));
        }
        for (len, &lines) in lengths.iter().enumerate().filter(|(_, n)| **n > 0) {
            n = n.saturating_mul(pow_saturating(len as u128 + 1, lines));
        }
        n.saturating_mul(pow2(free))
    }

    /// How many units [`Self::torn_units`] would return.
    fn torn_len(&self) -> usize {
        match self.trace.events().get(self.pos) {
            Some(e)
                if self.model == PersistenceModel::Eadr
                    && matches!(e.op, Op::Store { .. } | Op::StoreNt { .. }) =>
            {
                self.trace.store_units(e).count().saturating_sub(1)
            }
            _ => 0,
        }
    }

    /// Under eADR, a cut inside the next event, if it is a store, leaves a prefix of its units:
    /// all but the last are candidates (with the last, the store completed).
    fn torn_units(&self) -> Vec<Unit> {
        let Some(event) = self.trace.events().get(self.pos) else { return Vec::new() };
        if self.model != PersistenceModel::Eadr || !matches!(event.op, Op::Store { .. } | Op::StoreNt { .. })
        {
            return Vec::new();
        }
        let seq = self.pos;
        let mut units: Vec<Unit> =
            self.trace.store_units(event).map(|(addr, value)| Unit { addr, value, seq }).collect();
        units.pop();
        units
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
                // `make_durable` per unit, with the writes batched: one page lookup per run of
                // units on a page. Nothing is pending under eADR unless a trace mixes models,
                // so the superseded units are looked for only when something is.
                let hash = &mut self.durable_hash;
                self.durable.swap_words(self.trace.store_units(&event), |addr, old, new| {
                    *hash = rehash(*hash, addr, old, new);
                });
                if !self.nt.is_empty() || !self.lines.is_empty() {
                    for (addr, value) in self.trace.store_units(&event) {
                        self.drop_superseded(Unit { addr, value, seq });
                    }
                }
            }
            (_, Op::Store { .. }) => {
                // Units come in address order: one lookup per line, not per unit.
                let mut units = self.trace.store_units(&event).peekable();
                while let Some((addr, value)) = units.next() {
                    let line = addr & !(LINE_BYTES - 1);
                    let pending = Arc::make_mut(&mut self.lines.entry(line).or_default().pending);
                    let before = pending.len();
                    if before == 0 {
                        // A line holds at most eight units of one store: one allocation.
                        pending.reserve((LINE_BYTES / crate::pmem::UNIT_BYTES) as usize);
                    }
                    pending.push(Unit { addr, value, seq });
                    while let Some((addr, value)) = units.next_if(|(a, _)| a & !(LINE_BYTES - 1) == line) {
                        pending.push(Unit { addr, value, seq });
                    }
                    if let Some((latest, hash)) = &mut self.latest {
                        latest.swap_words(
                            pending[before..].iter().map(|u| (u.addr, u.value)),
                            |addr, old, new| {
                                *hash = rehash(*hash, addr, old, new);
                            },
                        );
                    }
                    relength(&mut self.lengths, before, pending.len());
                }
            }
            (_, Op::StoreNt { .. }) => {
                let units: Vec<Unit> =
                    self.trace.store_units(&event).map(|(addr, value)| Unit { addr, value, seq }).collect();
                for u in &units {
                    self.apply_latest(u.addr, u.value);
                }
                self.nt.extend(units);
            }
            (_, Op::Flush { addr, len, kind }) => self.flush(addr, len, kind),
            (_, Op::Fence) => self.fence(),
        }
    }

    fn flush(&mut self, addr: u64, len: u64, kind: FlushKind) {
        match kind {
            FlushKind::Clwb | FlushKind::Clflushopt => {
                for (&line, state) in self.lines.range_mut(addr..addr + len) {
                    if state.flushed == 0 {
                        self.flushed_lines.push(line);
                    }
                    state.flushed = state.pending.len();
                }
            }
            FlushKind::Clflush => {
                let lines: Vec<u64> = self.lines.range(addr..addr + len).map(|(&l, _)| l).collect();
                for line in lines {
                    let state = self.lines.remove(&line).expect("line listed");
                    relength(&mut self.lengths, state.pending.len(), 0);
                    for &u in state.pending.iter() {
                        self.make_durable(u);
                    }
                }
            }
        }
    }

    /// Flushed lines and NT units become durable. An NT unit's line was evicted by it, so the
    /// write-back units stored to that line before it become durable with it (see [`NtDep`]).
    fn fence(&mut self) {
        let evicted = self.evicted_by_nt();
        let mut durable: Vec<Unit> = Vec::new();
        // Only lines a flush covered or an NT store evicted change; every other line keeps its
        // pending units and has nothing flushed.
        let mut changed = std::mem::take(&mut self.flushed_lines);
        changed.extend(evicted.keys());
        changed.sort_unstable();
        changed.dedup();
        for line in changed {
            let Some(l) = self.lines.get_mut(&line) else { continue };
            let n = l.flushed.max(evicted.get(&line).copied().unwrap_or(0));
            let before = l.pending.len();
            durable.extend(Arc::make_mut(&mut l.pending).drain(..n));
            l.flushed = 0;
            relength(&mut self.lengths, before, l.pending.len());
            if l.pending.is_empty() {
                self.lines.remove(&line);
            }
        }
        // Program order matters only for units to the same address. A line's units are in
        // program order and lines do not overlap, so write-back units alone apply in line
        // order (which keeps a page's words together); NT units may share an address with
        // them, so with any, everything is sorted into program order.
        if !self.nt.is_empty() {
            durable.append(&mut self.nt);
            durable.sort_by_key(|u| u.seq);
        }
        // Nothing pending is superseded: every NT unit is in `durable`, and a line keeps only
        // units stored after everything it wrote back (a prefix in program order, or all
        // units before an NT store to it).
        let hash = &mut self.durable_hash;
        self.durable.swap_words(durable.iter().map(|u| (u.addr, u.value)), |addr, old, new| {
            *hash = rehash(*hash, addr, old, new);
        });
        if crate::self_check_due!() {
            for u in durable {
                assert!(!self.drop_superseded(u), "a fence left a unit older than {u:?} pending");
            }
        }
    }

    /// Per line, how many of its pending units the pending NT stores to it were stored after
    /// (the prefix their evictions wrote back).
    fn evicted_by_nt(&self) -> BTreeMap<u64, usize> {
        let mut evicted: BTreeMap<u64, usize> = BTreeMap::new();
        for u in &self.nt {
            let line = u.addr & !(LINE_BYTES - 1);
            if let Some(l) = self.lines.get(&line) {
                let before = l.pending.partition_point(|p| p.seq < u.seq);
                let n = evicted.entry(line).or_default();
                *n = (*n).max(before);
            }
        }
        evicted
    }

    fn make_durable(&mut self, u: Unit) {
        self.write_durable(u);
        self.drop_superseded(u);
    }

    fn write_durable(&mut self, u: Unit) {
        apply(&mut self.durable, &mut self.durable_hash, u.addr, u.value);
    }

    /// Stores to one address reach media in program order: once `u` is durable, a pending unit
    /// written to the same address earlier can no longer land after it, so it is dropped.
    /// Without this, a stale NT or write-back value could resurface over a newer durable one
    /// (WB store, NT store, fence; or NT store, WB store, clflush). Dropping such a unit loses no
    /// state: whenever it would have persisted, the newer durable value overwrote it.
    /// Whether it dropped anything.
    fn drop_superseded(&mut self, u: Unit) -> bool {
        let older = |p: &Unit| p.addr == u.addr && p.seq < u.seq;
        let nt_before = self.nt.len();
        self.nt.retain(|p| !older(p));
        let mut dropped = self.nt.len() != nt_before;
        let line = u.addr & !(LINE_BYTES - 1);
        if let Some(state) = self.lines.get_mut(&line).filter(|state| state.pending.iter().any(older)) {
            let flushed_dropped = state.pending[..state.flushed].iter().filter(|p| older(p)).count();
            let before = state.pending.len();
            Arc::make_mut(&mut state.pending).retain(|p| !older(p));
            state.flushed -= flushed_dropped;
            relength(&mut self.lengths, before, state.pending.len());
            dropped |= state.pending.len() != before;
            if state.pending.is_empty() {
                self.lines.remove(&line);
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    /// `rehash` (the address mixed once, equal words skipped) against the definition: take the
    /// old word's hash out and put the new one's in. Some changes keep the word, some flip
    /// one bit, some replace it.
    #[test]
    fn rehash_matches_the_plain_update() {
        let mut rng = crate::rng::rng_from_seed(11);
        let (mut fast, mut plain) = (0u128, 0u128);
        let mut words = [0u64; 64];
        for step in 0..20_000 {
            let k = rng.random_range(0..64usize);
            let addr = k as u64 * 8 + (step % 3) * 4096;
            let old = words[k];
            let new = match rng.random_range(0..3) {
                0 => old,
                1 => old ^ (1 << rng.random_range(0..64)),
                _ => rng.random(),
            };
            words[k] = new;
            fast = rehash(fast, addr, old, new);
            plain = plain.wrapping_sub(word_hash(addr, old)).wrapping_add(word_hash(addr, new));
            assert_eq!(fast, plain, "step {step}");
        }
    }
}
