//! toylog: a tiny persistent append-only key-value log, the crash engine's canary.
//!
//! Layout: line 0 holds the header (`magic`, `count`); slot `i` is line `i + 1` and holds
//! `key`, `value`, `tag(i)`. An append writes its slot, then publishes it by storing
//! `count = i + 1`; it is acknowledged when the commit is flushed and fenced. Unwritten slots
//! hold a per-address poison pattern from format, the "old contents" that must never show.
//!
//! Correct protocol: slot store → clwb → sfence → count store → clwb → sfence.
//! The `broken` variant stores the count before the slot is flushed and fenced (one fence for
//! both lines), so under ADR a crash may persist the count without the slot: `StaleData`.
//! Under eADR the same code is correct (stores persist in program order).

use std::sync::Arc;

use crate::check::{Violation, ViolationClass};
use crate::fuzzing::FuzzWorkload;
use crate::fuzzing::codec::{CodecError, Reader, Writer};
use crate::pmem::PmemError;
use crate::pmem::{Background, CrashPoint, Device, FlushKind, LINE_BYTES, PmemAddr};
use crate::rng::{Rng as _, RngExt as _, SimRng, rng_from_seed};
use crate::target::{BugInfo, ConfigError, RunOutcome, Target, TargetError, TargetOptions, WorkloadError};

/// Appends per workload, at most.
pub const APPENDS_MAX: usize = 8;
/// Default device size: small, so a state's overlay stays tiny.
pub const DEVICE_BYTES_DEFAULT: u64 = 64 * 1024;
/// The smallest device that holds the header and `APPENDS_MAX` slots.
pub const DEVICE_BYTES_MIN: u64 = (APPENDS_MAX as u64 + 1) * LINE_BYTES;

const MAGIC: u64 = 0x544f_594c_4f47_0001;
const MAGIC_ADDR: PmemAddr = PmemAddr(0);
const COUNT_ADDR: PmemAddr = PmemAddr(8);
const TAG_TOP: u64 = 0x70 << 56;
const POISON_TOP: u64 = 0x5e << 56;
const SLOT_WORDS: usize = 3;

/// The poison word format leaves at `addr`.
pub fn poison(addr: u64) -> u64 {
    POISON_TOP | addr
}

fn tag(index: usize) -> u64 {
    TAG_TOP | index as u64
}

fn slot_addr(index: usize) -> PmemAddr {
    PmemAddr((index as u64 + 1) * LINE_BYTES)
}

/// The toy log target. [`ToyLog::fixed`] must sweep clean; [`ToyLog::broken`] must not (ADR).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ToyLog {
    broken: bool,
    device_bytes: u64,
}

/// A workload: the appends, in order.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, arbitrary::Arbitrary)]
pub struct ToyWorkload {
    pub appends: Vec<(u64, u64)>,
}

/// The first byte of a compact toylog workload.
pub const COMPACT_MAGIC: u8 = 0x71;
const COMPACT_VERSION: u8 = 1;

/// Compact form: magic, version, the append count (at most [`APPENDS_MAX`]), then each key and
/// value as a varint. Other bytes go through `arbitrary` (what [`crate::fuzzing::TargetHarness::new`]
/// decodes with). Mutations insert, drop, duplicate or swap appends and change keys and values.
impl FuzzWorkload for ToyWorkload {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_header(COMPACT_MAGIC, COMPACT_VERSION);
        w.u8(self.appends.len() as u8);
        for &(k, v) in &self.appends {
            w.varint(k);
            w.varint(v);
        }
        w.finish()
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::with_header(bytes, COMPACT_MAGIC, COMPACT_VERSION)?;
        let count = r.u8_max("appends", APPENDS_MAX as u8)?;
        let mut appends = Vec::new();
        for _ in 0..count {
            appends.push((r.varint()?, r.varint()?));
        }
        r.finish()?;
        Ok(ToyWorkload { appends })
    }

    fn generate(bytes: &[u8]) -> Option<Self> {
        let w: ToyWorkload =
            arbitrary::Arbitrary::arbitrary_take_rest(arbitrary::Unstructured::new(bytes)).ok()?;
        (w.appends.len() <= APPENDS_MAX).then_some(w)
    }

    fn mutate(&mut self, rng: &mut SimRng) -> bool {
        let before = self.appends.clone();
        let a = &mut self.appends;
        let pick = |rng: &mut SimRng, n: usize| rng.random_range(0..n.max(1));
        match rng.random_range(0..5) {
            0 if a.len() < APPENDS_MAX => {
                let i = rng.random_range(0..=a.len());
                a.insert(i, (rng.next_u64(), rng.next_u64()));
            }
            1 if !a.is_empty() => {
                a.remove(pick(rng, a.len()));
            }
            2 if !a.is_empty() && a.len() < APPENDS_MAX => {
                let kv = a[pick(rng, a.len())];
                a.insert(rng.random_range(0..=a.len()), kv);
            }
            3 if a.len() >= 2 => {
                let (i, j) = (pick(rng, a.len()), pick(rng, a.len()));
                a.swap(i, j);
            }
            _ if !a.is_empty() => {
                let i = pick(rng, a.len());
                let word = if rng.random_bool(0.5) { &mut a[i].0 } else { &mut a[i].1 };
                *word = match rng.random_range(0..3) {
                    0 => *word ^ 1 << rng.random_range(0..64),
                    1 => word.wrapping_add(1),
                    _ => rng.next_u64(),
                };
            }
            _ => a.push((rng.next_u64(), rng.next_u64())),
        }
        self.appends != before
    }

    fn crossover(&self, other: &Self, rng: &mut SimRng) -> Self {
        let cut_a = rng.random_range(0..=self.appends.len());
        let cut_b = rng.random_range(0..=other.appends.len());
        let appends =
            self.appends[..cut_a].iter().chain(&other.appends[cut_b..]).copied().take(APPENDS_MAX).collect();
        ToyWorkload { appends }
    }
}

/// What a run leaves for the crash oracle.
#[derive(Clone, Debug)]
pub struct ToyRecord {
    appends: Vec<(u64, u64)>,
    /// Trace length when append `i` returned: a crash at or after it must keep entry `i`.
    acked_at: Vec<usize>,
}

/// A recovered log: the committed slots' raw words.
#[derive(Clone, Debug)]
pub struct ToyMounted {
    slots: Vec<[u64; SLOT_WORDS]>,
}

impl ToyLog {
    pub fn fixed() -> Self {
        Self { broken: false, device_bytes: DEVICE_BYTES_DEFAULT }
    }

    /// The canary: commits before the slot is durable.
    pub fn broken() -> Self {
        Self { broken: true, ..Self::fixed() }
    }

    /// The same log on a device of `device_bytes` (benchmarks use 64 MiB).
    pub fn with_device_bytes(self, device_bytes: u64) -> Self {
        Self { device_bytes, ..self }
    }

    fn append(&self, dev: &mut Device, index: usize, kv: (u64, u64)) -> Result<(), TargetError> {
        let slot = slot_addr(index);
        let words = [kv.0, kv.1, tag(index)];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        dev.store(slot, &bytes, "toylog::append::record")?;
        if self.broken {
            dev.store_u64(COUNT_ADDR, index as u64 + 1, "toylog::append::commit")?;
            dev.flush(slot, bytes.len() as u64, FlushKind::Clwb, "toylog::append::flush_record")?;
            dev.flush(COUNT_ADDR, 8, FlushKind::Clwb, "toylog::append::flush_commit")?;
            return Ok(dev.fence("toylog::append::fence_commit")?);
        }
        dev.flush(slot, bytes.len() as u64, FlushKind::Clwb, "toylog::append::flush_record")?;
        dev.fence("toylog::append::fence_record")?;
        dev.store_u64(COUNT_ADDR, index as u64 + 1, "toylog::append::commit")?;
        dev.flush(COUNT_ADDR, 8, FlushKind::Clwb, "toylog::append::flush_commit")?;
        Ok(dev.fence("toylog::append::fence_commit")?)
    }

    /// Recovery's write: zero the slot after the last committed one, so a torn append never
    /// mixes with the next. Idempotent by construction.
    fn scrub(dev: &mut Device, index: usize) -> Result<(), ToyError> {
        let slot = slot_addr(index);
        if slot.0 + LINE_BYTES > dev.size_bytes() {
            return Ok(());
        }
        let zeros = [0u8; SLOT_WORDS * 8];
        dev.store(slot, &zeros, "toylog::recover::scrub")?;
        dev.flush(slot, zeros.len() as u64, FlushKind::Clwb, "toylog::recover::scrub")?;
        Ok(dev.fence("toylog::recover::scrub")?)
    }

    fn check_slot(&self, index: usize, words: &[u64; SLOT_WORDS], rec: &ToyRecord) -> Option<Violation> {
        let expected: [Option<u64>; SLOT_WORDS] = match rec.appends.get(index) {
            Some(&(k, v)) => [Some(k), Some(v), Some(tag(index))],
            None => [None; SLOT_WORDS],
        };
        let (w, found, want) =
            (0..SLOT_WORDS).map(|w| (w, words[w], expected[w])).find(|&(_, f, e)| Some(f) != e)?;
        let addr = slot_addr(index).0 + w as u64 * 8;
        let class =
            if found == poison(addr) { ViolationClass::StaleData } else { ViolationClass::ForeignData };
        let allowed = want.map_or("no entry".to_string(), |v| format!("{v:#018x}"));
        Some(
            Violation::new(
                class,
                format!("committed entry {index} word {w} is not what append {index} wrote"),
            )
            .in_file("toylog", (index * SLOT_WORDS + w) as u64 * 8)
            .at_addr(PmemAddr(addr))
            .found_allowed(format!("{found:#018x}"), allowed),
        )
    }
}

/// Why recovery refused an image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToyError {
    #[error("toylog: {0}")]
    Device(#[from] PmemError),
    #[error("toylog: bad magic {0:#018x}")]
    BadMagic(u64),
    #[error("toylog: count {0} over the bound {APPENDS_MAX}")]
    CountOverBound(u64),
}

/// The one switchable bug: the canary.
pub const BUG_COMMIT_BEFORE_SLOT_DURABLE: &str = "commit-before-slot-durable";

const BUGS: [BugInfo; 1] = [BugInfo {
    id: BUG_COMMIT_BEFORE_SLOT_DURABLE,
    summary: "stores the count before the slot is flushed and fenced (one fence for both)",
    origin: "the textbook publish-before-persist mistake; the engine's canary",
}];

impl Target for ToyLog {
    type Workload = ToyWorkload;
    type Record = ToyRecord;
    type Mounted = ToyMounted;

    type Error = ToyError;

    fn name(&self) -> &'static str {
        "toylog"
    }

    /// Bugs: `commit-before-slot-durable`. Settings: `device_bytes`.
    fn from_options(options: &TargetOptions) -> Result<Self, ConfigError> {
        options.check_bugs("toylog", &BUGS)?;
        options.check_settings("toylog", &["device_bytes"])?;
        let mut t = Self { broken: !options.bugs.is_empty(), ..Self::fixed() };
        if let Some(bytes) = options.settings.get("device_bytes") {
            t.device_bytes = bytes
                .parse()
                .map_err(|_| ConfigError::new(format!("toylog device_bytes `{bytes}`: not a number")))?;
        }
        Ok(t)
    }

    fn options(&self) -> TargetOptions {
        let mut options =
            TargetOptions::with_bugs(if self.broken { &[BUG_COMMIT_BEFORE_SLOT_DURABLE][..] } else { &[] });
        if self.device_bytes != DEVICE_BYTES_DEFAULT {
            options.settings.insert("device_bytes".to_string(), self.device_bytes.to_string());
        }
        options
    }

    fn bug_catalogue() -> &'static [BugInfo] {
        &BUGS
    }

    fn workload_from_seed(&self, seed: u64) -> ToyWorkload {
        let mut rng = rng_from_seed(seed);
        let n = 1 + (rng.next_u64() % APPENDS_MAX as u64) as usize;
        ToyWorkload { appends: (0..n).map(|_| (rng.next_u64(), rng.next_u64())).collect() }
    }

    fn format(&self) -> Result<Device, TargetError> {
        if self.device_bytes < DEVICE_BYTES_MIN || self.device_bytes % LINE_BYTES != 0 {
            return Err(TargetError::Other(format!(
                "toylog device of {} bytes: need a multiple of {LINE_BYTES} of at least {DEVICE_BYTES_MIN}",
                self.device_bytes
            )));
        }
        let mut dev = Device::with_backing(Arc::new(Background::procedural(self.device_bytes, poison)));
        dev.store(MAGIC_ADDR, &[MAGIC.to_le_bytes(), 0u64.to_le_bytes()].concat(), "toylog::format")?;
        dev.flush(MAGIC_ADDR, 16, FlushKind::Clwb, "toylog::format")?;
        dev.fence("toylog::format")?;
        dev.rebase();
        Ok(dev)
    }

    fn run(&self, workload: &ToyWorkload, dev: &mut Device) -> Result<RunOutcome<ToyRecord>, TargetError> {
        let appends: Vec<(u64, u64)> = workload.appends.iter().copied().take(APPENDS_MAX).collect();
        let mut acked_at = Vec::with_capacity(appends.len());
        for (index, &kv) in appends.iter().enumerate() {
            dev.begin_step(0, index as u32);
            self.append(dev, index, kv)?;
            acked_at.push(dev.trace().len());
        }
        Ok(RunOutcome { record: ToyRecord { appends, acked_at }, violations: Vec::new() })
    }

    fn recover(&self, dev: &mut Device) -> Result<ToyMounted, ToyError> {
        let magic = dev.read_u64(MAGIC_ADDR)?;
        if magic != MAGIC {
            return Err(ToyError::BadMagic(magic));
        }
        let count = dev.read_u64(COUNT_ADDR)?;
        if count > APPENDS_MAX as u64 {
            return Err(ToyError::CountOverBound(count));
        }
        let mut slots = Vec::with_capacity(count as usize);
        for index in 0..count as usize {
            let mut words = [0u64; SLOT_WORDS];
            for (w, word) in words.iter_mut().enumerate() {
                *word = dev.read_u64(PmemAddr(slot_addr(index).0 + w as u64 * 8))?;
            }
            slots.push(words);
        }
        Self::scrub(dev, count as usize)?;
        Ok(ToyMounted { slots })
    }

    fn check(&self, m: &ToyMounted, _dev: &Device, rec: &ToyRecord, point: CrashPoint) -> Vec<Violation> {
        let mut found: Vec<Violation> =
            m.slots.iter().enumerate().filter_map(|(i, words)| self.check_slot(i, words, rec)).collect();
        let acked = self.expectations_at(rec, point) as usize;
        if m.slots.len() < acked {
            found.push(
                Violation::new(
                    ViolationClass::LostWrite,
                    format!("acknowledged entry {} is gone", m.slots.len()),
                )
                .at_addr(COUNT_ADDR)
                .found_allowed(format!("count {}", m.slots.len()), format!("count >= {acked}")),
            );
        }
        found
    }

    fn fingerprint(&self, m: &ToyMounted, _dev: &Device) -> u64 {
        let mut h = crc32fast::Hasher::new();
        for words in &m.slots {
            for w in words {
                h.update(&w.to_le_bytes());
            }
        }
        (m.slots.len() as u64) << 32 | u64::from(h.finalize())
    }

    fn expectations_at(&self, rec: &ToyRecord, point: CrashPoint) -> u64 {
        rec.acked_at.iter().filter(|&&at| at <= point.0).count() as u64
    }

    fn validate_workload(&self, w: &ToyWorkload) -> Result<(), WorkloadError> {
        if w.appends.len() > APPENDS_MAX {
            return Err(WorkloadError::new(format!("{} appends: at most {APPENDS_MAX}", w.appends.len())));
        }
        Ok(())
    }

    fn workload_ops(&self, w: &ToyWorkload) -> usize {
        w.appends.len()
    }

    /// Drop one append (the last first: a prefix keeps the same slots).
    fn shrink(&self, w: &ToyWorkload) -> Vec<ToyWorkload> {
        (0..w.appends.len())
            .rev()
            .map(|i| {
                let mut c = w.clone();
                c.appends.remove(i);
                c
            })
            .collect()
    }
}
