//! Persistent Level Hashing (Zuo et al., OSDI'18) as a crashsim target, with two switchable
//! crash-consistency bugs from Witcher's bug list (Fu et al., SOSP'21). See README.md.
//!
//! Layout (8-byte words, 64-byte lines): a header line at 0 (`magic`, `n_top`, `seed_f`,
//! `seed_s`), then [`N_TOP`] top-level buckets and [`N_BOTTOM`] bottom-level buckets of 128
//! bytes each. Slot `j` of a bucket is 3 words {key, val0, val1} at byte `24 * j`; the token
//! word (one valid bit per slot) is at byte 120. Slots 0-1 sit in the bucket's first line,
//! slot 2 straddles both lines, slot 3 shares the second line with the token. Key/value words
//! nobody wrote hold a per-address poison word, so a stale slot is recognisable.
//!
//! Protocol (upstream after 5a6f9c1 and c3dcb9b): every operation writes its slot, makes it
//! durable (clwb + sfence), then publishes with ONE 8-byte token store, clwb + sfence, and is
//! acknowledged. Recovery checks the header and scans the tokens; nothing is replayed.

use crashsim::check::ViolationClass::{
    AllocatorInconsistent, ForeignData, IncoherentView, LostWrite, StaleData,
};
use crashsim::check::{Violation, ViolationClass};
use crashsim::fuzzing::FuzzWorkload;
use crashsim::fuzzing::codec::{CodecError, Reader, Writer};
use crashsim::pmem::{Background, CrashPoint, Device, FlushKind, PmemAddr};
use crashsim::rng::{Rng as _, RngExt as _, SimRng, rng_from_seed};
use crashsim::target::{BugInfo, ConfigError, RunOutcome, Target, TargetError, TargetOptions, WorkloadError};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Buckets of the top level; the bottom level has half as many.
pub const N_TOP: usize = 8;
pub const N_BOTTOM: usize = N_TOP / 2;
const BUCKETS: usize = N_TOP + N_BOTTOM;
const SLOTS: usize = 4;
const BUCKET_BYTES: u64 = 128;
const TOKEN_OFFSET: u64 = 120;
const TABLE_BASE: u64 = 128;
/// One page: the header and 12 buckets (1.5 KiB) fit.
pub const DEVICE_BYTES: u64 = 4096;
/// Keys are `1..=KEY_MAX` (0 marks nothing: it is never stored).
pub const KEY_MAX: u64 = 32;
/// Values are `1..=VALUE_MAX`; each is stored twice, tagged, so a torn value shows.
pub const VALUE_MAX: u64 = 0xffff;
/// Generated workloads have `OPS_MIN..=OPS_GEN_MAX` operations; any workload at most `OPS_MAX`.
pub const OPS_MIN: usize = 8;
pub const OPS_GEN_MAX: usize = 24;
pub const OPS_MAX: usize = 64;

const MAGIC: u64 = 0x4c56_4c48_4153_4801; // "LVLHASH" 1
const SEED_F: u64 = 0x9e37_79b9_7f4a_7c15;
const SEED_S: u64 = 0xc2b2_ae3d_27d4_eb4f;
const POISON_TOP: u64 = 0x5f << 56;
const VALUE_TOP: u64 = 0x56 << 56;

/// Bug id: the insert's token store comes before its key/value are flushed and fenced.
pub const TOKEN_BEFORE_KV_DURABLE: &str = "token-before-kv-durable";
/// Bug id: the log-free update clears the old bit and sets the new one in two stores.
pub const UPDATE_TWO_TOKEN_STORES: &str = "update-two-token-stores";

static CATALOGUE: [BugInfo; 2] = [
    BugInfo {
        id: TOKEN_BEFORE_KV_DURABLE,
        summary: "insert stores the token before its key/value are flushed and fenced",
        origin: "Witcher (SOSP'21) bug 7, level_insert at Level-Hashing 28eca31; fixed in 5a6f9c1",
    },
    BugInfo {
        id: UPDATE_TWO_TOKEN_STORES,
        summary: "update clears the old token bit and sets the new one in two separate stores",
        origin: "Witcher (SOSP'21) bugs 22/23, level_update at Level-Hashing 28eca31; fixed in 5a6f9c1/c3dcb9b",
    },
];

/// The poison word format leaves at `addr`.
pub fn poison(addr: u64) -> u64 {
    POISON_TOP | addr
}

fn value_word(key: u64, value: u64, half: u64) -> u64 {
    VALUE_TOP | half << 48 | key << 16 | value
}

fn bucket_addr(b: usize) -> u64 {
    TABLE_BASE + b as u64 * BUCKET_BYTES
}

fn slot_addr(b: usize, j: usize) -> u64 {
    bucket_addr(b) + 24 * j as u64
}

fn token_addr(b: usize) -> u64 {
    bucket_addr(b) + TOKEN_OFFSET
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The 4 candidate buckets of `key`, as two levels of (f, s): upstream's `F_IDX`/`S_IDX`, the
/// bottom level indexed with half the capacity.
fn candidates(key: u64, seed_f: u64, seed_s: u64) -> [[usize; 2]; 2] {
    let (hf, hs) = (mix(key ^ seed_f) as usize, mix(key ^ seed_s) as usize);
    let level = |base: usize, cap: usize| [base + hf % (cap / 2), base + hs % (cap / 2) + cap / 2];
    [level(0, N_TOP), level(N_TOP, N_BOTTOM)]
}

/// Search order: level by level, slot-major, bucket f before bucket s (upstream's loops).
fn probe_order(key: u64, seed_f: u64, seed_s: u64) -> impl Iterator<Item = (usize, usize)> {
    candidates(key, seed_f, seed_s)
        .into_iter()
        .flat_map(|pair| (0..SLOTS).flat_map(move |j| pair.map(|b| (b, j))))
}

/// One operation of a workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Insert { key: u64, value: u64 },
    Update { key: u64, value: u64 },
    Delete { key: u64 },
    Lookup { key: u64 },
}

impl Op {
    fn key(self) -> u64 {
        match self {
            Op::Insert { key, .. } | Op::Update { key, .. } | Op::Delete { key } | Op::Lookup { key } => key,
        }
    }
}

/// A workload: operations run in order on one thread.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LevelWorkload {
    pub ops: Vec<Op>,
}

/// Fuzz inputs decode to in-bounds workloads: keys 1..=KEY_MAX, values 1..=VALUE_MAX, up to
/// OPS_GEN_MAX operations (what `crashsim::fuzzing::TargetHarness` decodes with).
impl<'a> arbitrary::Arbitrary<'a> for LevelWorkload {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.int_in_range(1..=OPS_GEN_MAX)?;
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let key = u.int_in_range(1..=KEY_MAX)?;
            let value = u.int_in_range(1..=VALUE_MAX)?;
            ops.push(match u.int_in_range(0..=3u8)? {
                0 => Op::Insert { key, value },
                1 => Op::Update { key, value },
                2 => Op::Delete { key },
                _ => Op::Lookup { key },
            });
        }
        Ok(Self { ops })
    }
}

/// The first byte of a compact Level Hashing workload.
pub const COMPACT_MAGIC: u8 = 0x1e;
const COMPACT_VERSION: u8 = 1;

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Insert { .. } => 0,
            Op::Update { .. } => 1,
            Op::Delete { .. } => 2,
            Op::Lookup { .. } => 3,
        }
    }

    fn with(code: u8, key: u64, value: u64) -> Op {
        match code {
            0 => Op::Insert { key, value },
            1 => Op::Update { key, value },
            2 => Op::Delete { key },
            _ => Op::Lookup { key },
        }
    }

    fn value(self) -> u64 {
        match self {
            Op::Insert { value, .. } | Op::Update { value, .. } => value,
            Op::Delete { .. } | Op::Lookup { .. } => 1,
        }
    }
}

/// The structure-aware fuzzer's view of a workload. Compact form: magic, version, the op
/// count (1..=OPS_MAX), then per op its kind byte, its key byte and, for inserts and updates,
/// its value as a varint. Other bytes decode through `arbitrary`. Mutations insert, drop,
/// duplicate or swap operations and change a kind, a key (often to one already used, so
/// operations collide) or a value; crossover splices two op lists.
impl FuzzWorkload for LevelWorkload {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_header(COMPACT_MAGIC, COMPACT_VERSION);
        w.u8(self.ops.len() as u8);
        for &op in &self.ops {
            w.u8(op.code());
            w.u8(op.key() as u8);
            if op.code() < 2 {
                w.varint(op.value());
            }
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::with_header(bytes, COMPACT_MAGIC, COMPACT_VERSION)?;
        let count = r.u8_max("operations", OPS_MAX as u8)?;
        if count == 0 {
            return Err(CodecError::Invalid("no operations".into()));
        }
        let mut ops = Vec::new();
        for _ in 0..count {
            let code = r.u8_max("op kind", 3)?;
            let key = u64::from(r.u8_max("key", KEY_MAX as u8)?);
            let value = if code < 2 { r.varint_max("value", VALUE_MAX)? } else { 1 };
            if key == 0 || value == 0 {
                return Err(CodecError::Invalid("keys and values start at 1".into()));
            }
            ops.push(Op::with(code, key, value));
        }
        r.finish()?;
        Ok(LevelWorkload { ops })
    }

    fn generate(bytes: &[u8]) -> Option<Self> {
        arbitrary::Arbitrary::arbitrary_take_rest(arbitrary::Unstructured::new(bytes)).ok()
    }

    fn mutate(&mut self, rng: &mut SimRng) -> bool {
        let before = self.ops.clone();
        let ops = &mut self.ops;
        let i = rng.random_range(0..ops.len());
        let key = |rng: &mut SimRng, ops: &[Op]| {
            if rng.random_bool(0.6) {
                ops[rng.random_range(0..ops.len())].key()
            } else {
                rng.random_range(1..=KEY_MAX)
            }
        };
        match rng.random_range(0..6) {
            0 if ops.len() < OPS_MAX => {
                let op = Op::with(rng.random_range(0..4), key(rng, ops), rng.random_range(1..=VALUE_MAX));
                ops.insert(rng.random_range(0..=ops.len()), op);
            }
            1 if ops.len() > 1 => {
                ops.remove(i);
            }
            2 if ops.len() < OPS_MAX => ops.insert(rng.random_range(0..=ops.len()), ops[i]),
            3 => {
                let j = rng.random_range(0..ops.len());
                ops.swap(i, j);
            }
            4 => ops[i] = Op::with(rng.random_range(0..4), ops[i].key(), ops[i].value()),
            _ => {
                let k = key(rng, ops);
                ops[i] = Op::with(ops[i].code(), k, rng.random_range(1..=VALUE_MAX));
            }
        }
        self.ops != before
    }

    fn crossover(&self, other: &Self, rng: &mut SimRng) -> Self {
        let cut_a = rng.random_range(1..=self.ops.len());
        let cut_b = rng.random_range(0..=other.ops.len());
        LevelWorkload {
            ops: self.ops[..cut_a].iter().chain(&other.ops[cut_b..]).copied().take(OPS_MAX).collect(),
        }
    }
}

/// What an operation did to the key/value set once acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    Unchanged,
    Put(u64),
    Remove,
}

#[derive(Clone, Debug)]
struct OpRecord {
    key: u64,
    effect: Effect,
    /// Trace length when the operation started / returned (acknowledged).
    start: usize,
    ack: usize,
    /// The token word the operation published through.
    token: Option<u64>,
}

/// What a run leaves for the crash oracle.
#[derive(Clone, Debug)]
pub struct LevelRecord {
    ops: Vec<OpRecord>,
    /// The live set after each acknowledged prefix: `states[i]` holds after `i` operations.
    states: Vec<BTreeMap<u64, u64>>,
    /// Every complete slot record stored at each slot address.
    written: BTreeMap<u64, Vec<[u64; 3]>>,
}

impl LevelRecord {
    /// Acknowledged operations at `point`, and whether the next one (a mutation) had begun.
    fn progress(&self, point: CrashPoint) -> (usize, bool) {
        let acked = self.ops.iter().take_while(|o| o.ack <= point.0).count();
        let next = self.ops.get(acked);
        (acked, next.is_some_and(|o| o.start <= point.0 && o.effect != Effect::Unchanged))
    }

    /// The values `key` may show after a crash at `point` (`None`: absent).
    fn allowed(&self, key: u64, point: CrashPoint) -> Vec<Option<u64>> {
        let (acked, in_flight) = self.progress(point);
        let before = self.states[acked].get(&key).copied();
        let mut allowed = vec![before];
        if let Some(op) = self.ops.get(acked).filter(|o| in_flight && o.key == key) {
            allowed.push(if let Effect::Put(v) = op.effect { Some(v) } else { None });
        }
        allowed
    }
}

/// A valid slot as recovery found it.
#[derive(Clone, Debug)]
struct LiveSlot {
    bucket: usize,
    slot: usize,
    words: [u64; 3],
}

/// A recovered table: the header's seeds and every slot whose token bit is set.
#[derive(Clone, Debug)]
pub struct Mounted {
    seed_f: u64,
    seed_s: u64,
    live: Vec<LiveSlot>,
}

impl Mounted {
    /// The normal search path (what a lookup would return).
    fn lookup(&self, key: u64) -> Option<&LiveSlot> {
        probe_order(key, self.seed_f, self.seed_s)
            .find_map(|(b, j)| self.live.iter().find(|s| (s.bucket, s.slot) == (b, j) && s.words[0] == key))
    }

    /// The recovered key/value set, as (key, value) pairs in key order (duplicates kept).
    pub fn pairs(&self) -> Vec<(u64, u64)> {
        let mut pairs: Vec<(u64, u64)> =
            self.live.iter().map(|s| (s.words[0], s.words[1] & VALUE_MAX)).collect();
        pairs.sort_unstable();
        pairs
    }
}

/// Why recovery refused an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecoverError {
    Device(String),
    BadHeader { field: &'static str, found: u64, expected: u64 },
    BadToken { bucket: usize, found: u64 },
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device(e) => write!(f, "levelhash: device: {e}"),
            Self::BadHeader { field, found, expected } => {
                write!(f, "levelhash: header {field} is {found:#x}, expected {expected:#x}")
            }
            Self::BadToken { bucket, found } => {
                write!(f, "levelhash: bucket {bucket} token {found:#x} has bits beyond its {SLOTS} slots")
            }
        }
    }
}

/// The Level Hashing target. [`LevelHash::fixed`] must sweep clean; each bug must be found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LevelHash {
    /// Enabled bug ids, in catalogue order.
    bugs: Vec<&'static str>,
}

type Flow = Result<(), TargetError>;

/// What an operation did: its effect, and the slot it wrote or cleared.
type Done = Result<(Effect, Option<(usize, usize)>), TargetError>;

impl LevelHash {
    /// The correct protocol.
    pub fn fixed() -> Self {
        Self::default()
    }

    /// The target with the bugs `ids` switched on (ids from [`Target::bug_catalogue`]).
    pub fn with_bugs(ids: &[&str]) -> Result<Self, ConfigError> {
        Self::from_options(&TargetOptions::with_bugs(ids))
    }

    fn has(&self, bug: &str) -> bool {
        self.bugs.contains(&bug)
    }

    fn token(dev: &Device, b: usize) -> Result<u64, TargetError> {
        Ok(dev.read_u64(PmemAddr(token_addr(b)))?)
    }

    fn find(dev: &Device, key: u64) -> Result<Option<(usize, usize)>, TargetError> {
        for (b, j) in probe_order(key, SEED_F, SEED_S) {
            if Self::token(dev, b)? & 1 << j != 0 && dev.read_u64(PmemAddr(slot_addr(b, j)))? == key {
                return Ok(Some((b, j)));
            }
        }
        Ok(None)
    }

    /// Stores a slot's record.
    fn write_slot(dev: &mut Device, b: usize, j: usize, key: u64, value: u64, site: &'static str) -> Done {
        let words = [key, value_word(key, value, 0), value_word(key, value, 1)];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        dev.store(PmemAddr(slot_addr(b, j)), &bytes, site)?;
        Ok((Effect::Put(value), Some((b, j))))
    }

    /// clwb of `addr..addr + len`, then sfence (both labelled `site`).
    fn persist(dev: &mut Device, addr: u64, len: u64, site: &'static str) -> Flow {
        dev.flush(PmemAddr(addr), len, FlushKind::Clwb, site)?;
        Ok(dev.fence(site)?)
    }

    /// Upstream's `level_insert` with `level_slot_flush` (5a6f9c1): the key/value durable, then
    /// the token. The bug stores the token first and fences both together (28eca31).
    fn insert(&self, dev: &mut Device, key: u64, value: u64) -> Done {
        if Self::find(dev, key)?.is_some() {
            return Ok((Effect::Unchanged, None));
        }
        for (b, j) in probe_order(key, SEED_F, SEED_S) {
            let token = Self::token(dev, b)?;
            if token & 1 << j != 0 {
                continue;
            }
            let (slot, tok) = (slot_addr(b, j), token_addr(b));
            let done = Self::write_slot(dev, b, j, key, value, "levelhash::insert::kv")?;
            if self.has(TOKEN_BEFORE_KV_DURABLE) {
                dev.store_u64(PmemAddr(tok), token | 1 << j, "levelhash::insert::token")?;
                Self::persist(dev, slot, 24, "levelhash::insert::persist_kv")?;
            } else {
                Self::persist(dev, slot, 24, "levelhash::insert::persist_kv")?;
                dev.store_u64(PmemAddr(tok), token | 1 << j, "levelhash::insert::token")?;
            }
            Self::persist(dev, tok, 8, "levelhash::insert::persist_token")?;
            return Ok(done);
        }
        Ok((Effect::Unchanged, None)) // all four candidate buckets full (no movement, no resize)
    }

    /// Upstream's log-free `level_update`: the new record in a free slot of the same bucket,
    /// durable, then one token store that sets the new bit and clears the old (c3dcb9b's intent).
    /// The bug clears and sets in two stores (28eca31's `token[j] = 0; token[k] = 1`). With no
    /// free slot upstream falls back to an undo log; the model refuses (no acknowledgement).
    fn update(&self, dev: &mut Device, key: u64, value: u64) -> Done {
        let Some((b, j)) = Self::find(dev, key)? else { return Ok((Effect::Unchanged, None)) };
        let token = Self::token(dev, b)?;
        let Some(k) = (0..SLOTS).find(|&k| token & 1 << k == 0) else {
            return Ok((Effect::Unchanged, None));
        };
        let tok = token_addr(b);
        let done = Self::write_slot(dev, b, k, key, value, "levelhash::update::kv")?;
        Self::persist(dev, slot_addr(b, k), 24, "levelhash::update::persist_kv")?;
        let (cleared, swapped) = (token & !(1 << j), (token | 1 << k) & !(1 << j));
        if self.has(UPDATE_TWO_TOKEN_STORES) {
            dev.store_u64(PmemAddr(tok), cleared, "levelhash::update::clear_old")?;
            dev.store_u64(PmemAddr(tok), swapped, "levelhash::update::set_new")?;
        } else {
            dev.store_u64(PmemAddr(tok), swapped, "levelhash::update::token")?;
        }
        Self::persist(dev, tok, 8, "levelhash::update::persist_token")?;
        Ok(done)
    }

    fn delete(dev: &mut Device, key: u64) -> Done {
        let Some((b, j)) = Self::find(dev, key)? else { return Ok((Effect::Unchanged, None)) };
        let tok = token_addr(b);
        dev.store_u64(PmemAddr(tok), Self::token(dev, b)? & !(1 << j), "levelhash::delete::token")?;
        Self::persist(dev, tok, 8, "levelhash::delete::persist_token")?;
        Ok((Effect::Remove, Some((b, j))))
    }

    fn lookup(dev: &Device, key: u64) -> Result<Option<u64>, TargetError> {
        let Some((b, j)) = Self::find(dev, key)? else { return Ok(None) };
        Ok(Some(dev.read_u64(PmemAddr(slot_addr(b, j) + 8))? & VALUE_MAX))
    }

    /// Check 1: a valid slot holds a whole record some operation stored there, for a key whose
    /// candidate buckets include it.
    fn check_slot(s: &LiveSlot, m: &Mounted, rec: &LevelRecord) -> Option<Violation> {
        let base = slot_addr(s.bucket, s.slot);
        let at = |w: usize| base + 8 * w as u64;
        let place = format!("bucket {} slot {}", s.bucket, s.slot);
        if let Some(w) = (0..3).find(|&w| s.words[w] == poison(at(w))) {
            let msg =
                format!("valid {place} shows never-written media (its token is durable, its record not)");
            let found = format!("{:#018x} (poison)", s.words[w]);
            return Some(violation(StaleData, msg, at(w), found, "a whole record".into()));
        }
        let key = s.words[0];
        if !(1..=KEY_MAX).contains(&key)
            || !candidates(key, m.seed_f, m.seed_s).as_flattened().contains(&s.bucket)
        {
            let msg = format!("valid {place} holds key {key:#x}, which cannot live in bucket {}", s.bucket);
            let allowed = format!("a key in 1..={KEY_MAX} hashing to bucket {}", s.bucket);
            return Some(violation(AllocatorInconsistent, msg, at(0), format!("key {key:#x}"), allowed));
        }
        let owner = |w: u64| (w >> 56 == VALUE_TOP >> 56).then_some(w >> 16 & 0xffff_ffff);
        if let Some(w) = (1..3).find(|&w| owner(s.words[w]).is_some_and(|k| k != key)) {
            let msg = format!("valid {place} holds key {key} with a value word of another key");
            let found = format!("{:#018x} (key {})", s.words[w], owner(s.words[w]).unwrap_or(0));
            return Some(violation(ForeignData, msg, at(w), found, format!("a value word of key {key}")));
        }
        let written = rec.written.get(&base).map_or(&[][..], Vec::as_slice);
        if written.contains(&s.words) {
            return None;
        }
        // Torn: words of different stores. Blame the first word that differs from the last
        // record stored with this key (the key word itself if there is none).
        let want = written.iter().rev().find(|r| r[0] == key);
        let w = want.map_or(0, |r| (0..3).find(|&w| r[w] != s.words[w]).unwrap_or(0));
        let msg = format!("valid {place} mixes words of different stores (a torn record)");
        let allowed = want.map_or("a whole record".to_string(), |r| format!("{:#018x}", r[w]));
        Some(violation(StaleData, msg, at(w), format!("{:#018x}", s.words[w]), allowed))
    }

    /// Checks 2-6 for one key, given the valid slots that hold it (see [`Target::check`]).
    fn check_key(
        key: u64,
        slots: &[&LiveSlot],
        m: &Mounted,
        rec: &LevelRecord,
        point: CrashPoint,
    ) -> Option<Violation> {
        let allowed = rec.allowed(key, point);
        let shown = allowed.iter().map(|v| describe_value(*v)).collect::<Vec<_>>().join(" or ");
        let tok = |s: &LiveSlot| token_addr(s.bucket);
        let s = match slots {
            [] if allowed.contains(&None) => return None,
            [] => {
                // Blame the token of the last acknowledged operation on the key.
                let last = rec.ops[..rec.progress(point).0].iter().rev().find(|o| o.key == key);
                let msg = format!("acknowledged key {key} is gone");
                let v = Violation::new(LostWrite, msg).found_allowed("absent", shown);
                return Some(match last.and_then(|o| o.token) {
                    Some(t) => v.at_addr(PmemAddr(t)),
                    None => v,
                });
            }
            [s] => s,
            [_, second, ..] => {
                let places: Vec<String> =
                    slots.iter().map(|s| format!("bucket {} slot {}", s.bucket, s.slot)).collect();
                let msg = format!("key {key} is valid in {} slots: {}", slots.len(), places.join(", "));
                let found = format!("{} copies", slots.len());
                return Some(violation(AllocatorInconsistent, msg, tok(second), found, "one".into()));
            }
        };
        let (value, base) = (s.words[1] & VALUE_MAX, slot_addr(s.bucket, s.slot));
        if !allowed.contains(&Some(value)) {
            let (class, what, at) = if allowed.contains(&None) {
                (StaleData, "must be absent, but an earlier record of it is valid", base)
            } else {
                (LostWrite, "shows a value older than its acknowledged one", base + 8)
            };
            let msg = format!("key {key} {what} (bucket {} slot {})", s.bucket, s.slot);
            return Some(violation(class, msg, at, format!("value {value}"), shown));
        }
        // Check 6: the normal search path finds the slot the scan found.
        let hit = m.lookup(key).map(|l| (l.bucket, l.slot));
        (hit != Some((s.bucket, s.slot))).then(|| {
            let msg =
                format!("a lookup of key {key} finds {hit:?}, the scan bucket {} slot {}", s.bucket, s.slot);
            violation(AllocatorInconsistent, msg, tok(s), format!("{hit:?}"), "the scan's slot".into())
        })
    }
}

fn describe_value(v: Option<u64>) -> String {
    v.map_or("absent".to_string(), |v| format!("value {v}"))
}

fn violation(class: ViolationClass, msg: String, at: u64, found: String, allowed: String) -> Violation {
    Violation::new(class, msg).at_addr(PmemAddr(at)).found_allowed(found, allowed)
}

impl Target for LevelHash {
    type Workload = LevelWorkload;
    type Record = LevelRecord;
    type Mounted = Mounted;
    type Error = RecoverError;

    fn name(&self) -> &'static str {
        "levelhash"
    }

    /// No settings; bugs by id.
    fn from_options(options: &TargetOptions) -> Result<Self, ConfigError> {
        options.check_bugs("levelhash", &CATALOGUE)?;
        options.check_settings("levelhash", &[])?;
        let on = |id: &&str| options.bugs.iter().any(|b| b == id);
        Ok(Self { bugs: CATALOGUE.iter().map(|b| b.id).filter(on).collect() })
    }

    fn options(&self) -> TargetOptions {
        TargetOptions::with_bugs(&self.bugs)
    }

    fn bug_catalogue() -> &'static [BugInfo] {
        &CATALOGUE
    }

    /// 8-24 operations: inserts (45%), updates (25%), deletes (15%), lookups (15%); updates,
    /// deletes and lookups pick a key inserted earlier three times in four.
    fn workload_from_seed(&self, seed: u64) -> LevelWorkload {
        let mut rng = rng_from_seed(seed);
        let mut below = |n: u64| rng.next_u64() % n;
        let n = OPS_MIN + below((OPS_GEN_MAX - OPS_MIN + 1) as u64) as usize;
        let mut inserted: Vec<u64> = Vec::new();
        let mut ops = Vec::with_capacity(n);
        for _ in 0..n {
            let roll = below(100);
            let reuse = roll >= 45 && !inserted.is_empty() && below(4) != 0;
            let key =
                if reuse { inserted[below(inserted.len() as u64) as usize] } else { 1 + below(KEY_MAX) };
            let value = 1 + below(VALUE_MAX);
            ops.push(match roll {
                0..45 => Op::Insert { key, value },
                45..70 => Op::Update { key, value },
                70..85 => Op::Delete { key },
                _ => Op::Lookup { key },
            });
            if roll < 45 {
                inserted.push(key);
            }
        }
        LevelWorkload { ops }
    }

    /// The header (durable), zeroed tokens; key/value words keep the poison background.
    fn format(&self) -> Result<Device, TargetError> {
        let mut dev = Device::with_backing(Arc::new(Background::procedural(DEVICE_BYTES, poison)));
        let header: Vec<u8> =
            [MAGIC, N_TOP as u64, SEED_F, SEED_S].iter().flat_map(|w| w.to_le_bytes()).collect();
        dev.store(PmemAddr(0), &header, "levelhash::format")?;
        for b in 0..BUCKETS {
            dev.store_u64(PmemAddr(token_addr(b)), 0, "levelhash::format")?;
        }
        dev.flush(PmemAddr(0), bucket_addr(BUCKETS), FlushKind::Clwb, "levelhash::format")?;
        dev.fence("levelhash::format")?;
        dev.rebase();
        Ok(dev)
    }

    /// Runs the operations with a run-time oracle: each result must agree with a plain map.
    fn run(&self, w: &LevelWorkload, dev: &mut Device) -> Result<RunOutcome<LevelRecord>, TargetError> {
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut rec = LevelRecord { ops: Vec::new(), states: vec![model.clone()], written: BTreeMap::new() };
        let mut violations = Vec::new();
        for (i, &op) in w.ops.iter().enumerate() {
            dev.begin_step(0, i as u32);
            let start = dev.trace().len();
            let key = op.key();
            let present = model.get(&key).copied();
            let ((effect, slot), found) = match op {
                Op::Insert { value, .. } => (self.insert(dev, key, value)?, None),
                Op::Update { value, .. } => (self.update(dev, key, value)?, None),
                Op::Delete { .. } => (Self::delete(dev, key)?, None),
                Op::Lookup { .. } => ((Effect::Unchanged, None), Some(Self::lookup(dev, key)?)),
            };
            // Only a full neighbourhood (insert) or bucket (update) may refuse on top of the map.
            let wrong = match op {
                Op::Insert { .. } => present.is_some() && effect != Effect::Unchanged,
                Op::Update { .. } => present.is_none() && effect != Effect::Unchanged,
                Op::Delete { .. } => present.is_some() != (effect == Effect::Remove),
                Op::Lookup { .. } => found.flatten() != present,
            };
            if wrong {
                let msg = format!(
                    "run-time: operation {i} ({op:?}) disagrees with the map, which holds {present:?}"
                );
                violations.push(Violation::new(IncoherentView, msg));
            }
            match (effect, slot) {
                (Effect::Put(v), Some((b, j))) => {
                    model.insert(key, v);
                    let words = [key, value_word(key, v, 0), value_word(key, v, 1)];
                    rec.written.entry(slot_addr(b, j)).or_default().push(words);
                }
                (Effect::Remove, _) => drop(model.remove(&key)),
                _ => {}
            }
            let token = slot.map(|(b, _)| token_addr(b));
            rec.ops.push(OpRecord { key, effect, start, ack: dev.trace().len(), token });
            rec.states.push(model.clone());
        }
        Ok(RunOutcome { record: rec, violations })
    }

    fn recover(&self, dev: &mut Device) -> Result<Mounted, RecoverError> {
        let read = |addr: u64| dev.read_u64(PmemAddr(addr)).map_err(|e| RecoverError::Device(e.to_string()));
        for (field, addr, expected) in [("magic", 0, MAGIC), ("n_top", 8, N_TOP as u64)] {
            let found = read(addr)?;
            if found != expected {
                return Err(RecoverError::BadHeader { field, found, expected });
            }
        }
        let (seed_f, seed_s) = (read(16)?, read(24)?);
        let mut live = Vec::new();
        for bucket in 0..BUCKETS {
            let token = read(token_addr(bucket))?;
            if token >> SLOTS != 0 {
                return Err(RecoverError::BadToken { bucket, found: token });
            }
            for slot in (0..SLOTS).filter(|j| token & 1 << j != 0) {
                let base = slot_addr(bucket, slot);
                live.push(LiveSlot { bucket, slot, words: [read(base)?, read(base + 8)?, read(base + 16)?] });
            }
        }
        Ok(Mounted { seed_f, seed_s, live })
    }

    /// The oracle (README.md lists its six checks). Classes, as `ViolationClass` documents
    /// them for structures that are not file systems:
    /// - `StaleData`: a valid slot shows poison or a torn record, or a key that must be absent
    ///   (deleted, or never acknowledged) shows again.
    /// - `LostWrite`: an acknowledged key is absent, or shows a value other than its last
    ///   acknowledged one (or the in-flight operation's new value).
    /// - `ForeignData`: a key shows a value word of another key.
    /// - `AllocatorInconsistent`: a key valid in two slots, a key in a bucket it cannot hash
    ///   to, or a lookup that disagrees with the scan.
    fn check(&self, m: &Mounted, _dev: &Device, rec: &LevelRecord, point: CrashPoint) -> Vec<Violation> {
        let mut found: Vec<Violation> = Vec::new();
        let mut by_key: BTreeMap<u64, Vec<&LiveSlot>> = BTreeMap::new();
        for s in &m.live {
            match Self::check_slot(s, m, rec) {
                Some(v) => found.push(v),
                None => by_key.entry(s.words[0]).or_default().push(s),
            }
        }
        for key in 1..=KEY_MAX {
            let slots = by_key.get(&key).map_or(&[][..], Vec::as_slice);
            found.extend(Self::check_key(key, slots, m, rec, point));
        }
        found
    }

    /// A digest of the live key/value set.
    fn fingerprint(&self, m: &Mounted, _dev: &Device) -> u64 {
        m.pairs().iter().fold(m.live.len() as u64, |h, &(k, v)| mix(h ^ mix(k << 32 | v)))
    }

    fn expectations_at(&self, rec: &LevelRecord, point: CrashPoint) -> u64 {
        let (acked, in_flight) = rec.progress(point);
        (acked as u64) << 1 | u64::from(in_flight)
    }

    /// A compact fuzz input when it decodes as one (so a fuzz crash file replays with
    /// `levelhash run FILE`), else the workload as JSON.
    fn workload_from_bytes(&self, bytes: &[u8]) -> Result<LevelWorkload, WorkloadError> {
        let w = match LevelWorkload::decode(bytes) {
            Ok(w) => w,
            Err(_) => serde_json::from_slice(bytes).map_err(WorkloadError::new)?,
        };
        self.validate_workload(&w)?;
        Ok(w)
    }

    fn validate_workload(&self, w: &LevelWorkload) -> Result<(), WorkloadError> {
        if w.ops.is_empty() || w.ops.len() > OPS_MAX {
            return Err(WorkloadError::new(format!("{} operations: need 1..={OPS_MAX}", w.ops.len())));
        }
        for (i, op) in w.ops.iter().enumerate() {
            let value = match *op {
                Op::Insert { value, .. } | Op::Update { value, .. } => value,
                Op::Delete { .. } | Op::Lookup { .. } => 1,
            };
            if !(1..=KEY_MAX).contains(&op.key()) || !(1..=VALUE_MAX).contains(&value) {
                let msg = format!("operation {i} ({op:?}): keys are 1..={KEY_MAX}, values 1..={VALUE_MAX}");
                return Err(WorkloadError::new(msg));
            }
        }
        Ok(())
    }

    fn workload_ops(&self, w: &LevelWorkload) -> usize {
        w.ops.len()
    }

    /// Drop runs of operations, halves first, down to single operations; later runs first.
    fn shrink(&self, w: &LevelWorkload) -> Vec<LevelWorkload> {
        let n = w.ops.len();
        let mut out = Vec::new();
        let mut size = n / 2;
        while size >= 1 {
            for start in (0..=n - size).rev().step_by(size) {
                let ops: Vec<Op> = w.ops[..start].iter().chain(&w.ops[start + size..]).copied().collect();
                out.push(LevelWorkload { ops });
            }
            size /= 2;
        }
        out
    }

    fn describe_word(&self, addr: u64, value: u64) -> Option<String> {
        if addr.is_multiple_of(8) && value == poison(addr) {
            return Some("poison (never written)".to_string());
        }
        if let Some(field) =
            ["magic", "n_top", "seed_f", "seed_s"].get(addr as usize / 8).filter(|_| addr < 32)
        {
            return Some(format!("header {field} = {value:#x}"));
        }
        let b =
            usize::try_from(addr.checked_sub(TABLE_BASE)? / BUCKET_BYTES).ok().filter(|&b| b < BUCKETS)?;
        let off = addr - bucket_addr(b);
        let level = if b < N_TOP { "top" } else { "bottom" };
        if off == TOKEN_OFFSET {
            let valid: Vec<String> =
                (0..SLOTS).filter(|j| value & 1 << j != 0).map(|j| j.to_string()).collect();
            return Some(format!("{level} bucket {b} token: slots [{}] valid", valid.join(", ")));
        }
        let (j, w) = (off / 24, off % 24 / 8);
        Some(match w {
            0 => format!("{level} bucket {b} slot {j} key {value}"),
            _ if value >> 56 == VALUE_TOP >> 56 => format!(
                "{level} bucket {b} slot {j} val{}: key {} value {}",
                value >> 48 & 0xff,
                value >> 16 & 0xffff_ffff,
                value & VALUE_MAX
            ),
            _ => format!("{level} bucket {b} slot {j} val{} {value:#018x}", w - 1),
        })
    }
}
