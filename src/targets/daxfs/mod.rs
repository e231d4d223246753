//! daxfs as a crash-engine target: the default system under test.
//!
//! This is the one place where the generic engine meets daxfs; the engine itself never names
//! daxfs types (Architecture Invariant).

#[doc(hidden)]
pub mod exec;

use crate::check::Violation;
use crate::daxfs::bugs::{BugSet, TARGET_CATALOGUE};
use crate::daxfs::fs::AllocPolicy;
use crate::daxfs::store::MetaStore;
use crate::daxfs::tag::Word;
use crate::daxfs::types::FsError;
use crate::pmem::{CrashPoint, Device, LineWords};
use crate::sched::Step;
use crate::target::{BugInfo, ConfigError, RunOutcome, Target, TargetError, TargetOptions, WorkloadError};
use crate::workload::Workload;
use exec::RunConfig;
use exec::crash::Scope;
use exec::record::RunRecord;

/// daxfs with a device geometry, mount options and enabled bugs.
#[derive(Clone, Debug, Default)]
pub struct DaxfsTarget {
    pub config: RunConfig,
    /// How the crash oracle reaches its verdicts; never part of a manifest (both give the same).
    pub oracle: OracleMode,
    /// Which findings the crash oracle reports: the first bad word per file, or every one
    /// (differential tests). Never part of a manifest.
    pub scope: Scope,
}

/// The crash oracle's two paths to one verdict.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum OracleMode {
    /// Reuses a page's clean verdict across the states of a crash point (the engine's path).
    #[default]
    Cached,
    /// Judges every word of every state afresh: the baseline differential tests compare with.
    Plain,
}

impl DaxfsTarget {
    pub fn new(config: RunConfig) -> Self {
        Self { config, oracle: OracleMode::Cached, scope: Scope::FirstPerFile }
    }

    /// The crash oracle on the path `self.oracle` names; `torn`: the cut fell inside the store
    /// at `point`.
    fn judge(
        &self,
        store: &MetaStore,
        dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
        torn: bool,
    ) -> Vec<Violation> {
        match self.oracle {
            OracleMode::Cached => exec::crash::check(store, dev, record, point.0, torn, self.scope),
            OracleMode::Plain => exec::crash::check_plain(store, dev, record, point.0, torn, self.scope),
        }
    }

    /// The same target with the crash oracle's page cache off.
    pub fn plain(config: RunConfig) -> Self {
        Self { config, oracle: OracleMode::Plain, scope: Scope::FirstPerFile }
    }

    /// The target a manifest's `target_config` describes.
    pub fn from_config_json(value: &serde_json::Value) -> Result<Self, String> {
        serde_json::from_value(value.clone()).map(Self::new).map_err(|e| format!("daxfs config: {e}"))
    }
}

/// FNV-1a over 128 bits, fed whole words: a portable, deterministic [`std::hash::Hasher`]
/// (`Hash` writes lengths and fields in a fixed order).
struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Self(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl std::hash::Hasher for Fnv128 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 = (self.0 ^ u128::from(x)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    fn write_u32(&mut self, x: u32) {
        self.write_u64(u64::from(x));
    }
    fn write_u8(&mut self, x: u8) {
        self.write_u64(u64::from(x));
    }
    fn write_usize(&mut self, x: usize) {
        self.write_u64(x as u64);
    }
    fn finish(&self) -> u64 {
        self.0 as u64
    }
}

/// Shrinking candidates, most aggressive first: drop a thread, cut the schedule, drop chunks
/// of operations per thread (halves down to single operations), drop chunks of the step order,
/// clear options. Only valid ones.
///
/// A schedule entry picks among the threads runnable at its step, so dropping an operation
/// shifts every later entry onto other steps and the interleaving that showed the violation is
/// lost. Each removal is therefore offered first *steered*: the candidate runs with the
/// original's step order minus the removed steps ([`exec::run_steered`]) and takes the indexed
/// schedule that repeats that run. The plain removal follows, for when the shifted schedule is
/// what keeps the violation.
fn shrink_workload(config: &RunConfig, w: &Workload) -> Vec<Workload> {
    let order: Vec<Step> = exec::run(w, config).map(|o| o.steps).unwrap_or_default();
    let mut removals = Vec::new();
    if w.threads.len() > 1 {
        for t in 0..w.threads.len() {
            let mut c = w.clone();
            c.threads.remove(t);
            removals.push(Removal { candidate: c, thread: t, ops: None });
        }
    }
    for (t, ops) in w.threads.iter().enumerate() {
        let mut chunk = ops.len().div_ceil(2);
        while chunk >= 1 {
            for start in (0..ops.len()).step_by(chunk) {
                let end = (start + chunk).min(ops.len());
                let mut c = w.clone();
                c.threads[t].drain(start..end);
                removals.push(Removal { candidate: c, thread: t, ops: Some(start as u32..end as u32) });
            }
            if chunk == 1 {
                break;
            }
            chunk = chunk.div_ceil(2);
        }
    }
    let mut out = Vec::new();
    if !order.is_empty() {
        for r in &removals {
            out.push(steered(config, r.candidate.clone(), &r.step_order(&order)));
        }
    }
    if !w.schedule.is_empty() {
        for keep in [0, w.schedule.len() / 2] {
            let mut c = w.clone();
            c.schedule.truncate(keep);
            out.push(c);
        }
    }
    out.extend(removals.into_iter().map(|r| r.candidate));
    // The step order itself: drop halves, then quarters of it.
    if w.threads.len() > 1 {
        let named: Vec<u8> = order.iter().map(|s| s.thread).collect();
        for parts in [2, 4] {
            let chunk = named.len().div_ceil(parts).max(1);
            for start in (0..named.len()).step_by(chunk) {
                let mut left = named.clone();
                left.drain(start..(start + chunk).min(named.len()));
                out.push(steered(config, w.clone(), &left));
            }
        }
    }
    if w.options.fault_around {
        let mut c = w.clone();
        c.options.fault_around = false;
        out.push(c);
    }
    out.retain(|c| c.validate().is_ok() && c.check_pin_discipline().is_ok() && c != w);
    let mut seen = std::collections::HashSet::new();
    out.retain(|c| seen.insert(c.clone()));
    out
}

/// A workload without one thread (`ops: None`) or without a range of one thread's operations.
struct Removal {
    candidate: Workload,
    thread: usize,
    ops: Option<std::ops::Range<u32>>,
}

impl Removal {
    /// The original's step order as thread indexes of the candidate, without the removed steps.
    /// A thread's first step only reaches the yield before its first operation; it stays
    /// unless the whole thread goes.
    fn step_order(&self, order: &[Step]) -> Vec<u8> {
        let t = self.thread as u8;
        let first = order.iter().position(|s| s.thread == t);
        let gone = |(i, s): &(usize, &Step)| {
            s.thread == t
                && match &self.ops {
                    None => true,
                    Some(ops) => ops.contains(&s.label) && Some(*i) != first,
                }
        };
        let renumber =
            |(_, s): (usize, &Step)| if self.ops.is_none() && s.thread > t { s.thread - 1 } else { s.thread };
        order.iter().enumerate().filter(|x| !gone(x)).map(renumber).collect()
    }
}

/// `c` with the indexed schedule that repeats its run steered by `threads`; trailing zero
/// entries are dropped (a used-up schedule picks the lowest runnable thread, as entry 0 does).
fn steered(config: &RunConfig, mut c: Workload, threads: &[u8]) -> Workload {
    if c.threads.len() < 2 {
        c.schedule.clear();
        return c;
    }
    if let Ok(out) = exec::run_steered(&c, config, threads) {
        let mut schedule = out.schedule;
        while schedule.last() == Some(&0) {
            schedule.pop();
        }
        c.schedule = schedule;
    }
    c
}

/// What a daxfs media word is: a file's data tag or a block's poison.
fn describe(value: u64) -> String {
    match Word::decode(value) {
        Word::Zero => "zero".to_string(),
        Word::Data(t) => format!(
            "data of file incarnation {} at byte {:#x}, version {}",
            t.file_id,
            t.word_off * 8,
            t.version
        ),
        Word::Poison(p) => format!(
            "poison of block {} word {} (generation {}): the block's contents before it was (re)allocated",
            p.block, p.word_in_block, p.generation
        ),
        Word::Other(w) => format!("not a data or poison word ({w:#018x}): metadata or torn"),
    }
}

/// The settings daxfs takes (`--set KEY=VALUE`).
const SETTINGS: [&str; 2] = ["policy", "pmd_blocks"];

impl Target for DaxfsTarget {
    type Workload = Workload;
    type Record = RunRecord;
    type Mounted = MetaStore;
    type Error = FsError;

    fn name(&self) -> &'static str {
        "daxfs"
    }

    /// Settings: `policy` = `per-workload` (the default: a hash of the workload picks, so a
    /// sweep covers both), `zero-before-commit` or `unwritten-end-io`; `pmd_blocks` = the PMD
    /// size in 4 KiB blocks, a power of two in 2..=512 (default 512, the faithful 2 MiB).
    fn from_options(options: &TargetOptions) -> Result<Self, ConfigError> {
        options.check_settings("daxfs", &SETTINGS)?;
        let mut config = RunConfig::default();
        config.mount.bugs = BugSet::parse_list(&options.bugs.join(",")).map_err(ConfigError::new)?;
        match options.settings.get("policy").map(String::as_str) {
            None | Some("per-workload") => config.policy_per_workload = true,
            Some("zero-before-commit") => config.mount.policy = AllocPolicy::ZeroBeforeCommit,
            Some("unwritten-end-io") => config.mount.policy = AllocPolicy::UnwrittenEndIo,
            Some(other) => {
                return Err(ConfigError::new(format!(
                    "daxfs policy `{other}`: one of per-workload, zero-before-commit, unwritten-end-io"
                )));
            }
        }
        if let Some(pmd) = options.settings.get("pmd_blocks") {
            config.pmd_blocks = match pmd.parse::<u64>() {
                Ok(n) if n.is_power_of_two() && (2..=512).contains(&n) => n,
                _ => {
                    return Err(ConfigError::new(format!(
                        "daxfs pmd_blocks `{pmd}`: a power of two in 2..=512"
                    )));
                }
            };
        }
        Ok(Self::new(config))
    }

    fn options(&self) -> TargetOptions {
        let mut options = TargetOptions::with_bugs(&self.config.mount.bugs.ids());
        if !self.config.policy_per_workload {
            let policy = match self.config.mount.policy {
                AllocPolicy::ZeroBeforeCommit => "zero-before-commit",
                AllocPolicy::UnwrittenEndIo => "unwritten-end-io",
            };
            options.settings.insert("policy".to_string(), policy.to_string());
        }
        if self.config.pmd_blocks != RunConfig::default().pmd_blocks {
            options.settings.insert("pmd_blocks".to_string(), self.config.pmd_blocks.to_string());
        }
        options
    }

    fn bug_catalogue() -> &'static [BugInfo] {
        &TARGET_CATALOGUE
    }

    /// The whole run configuration (geometry too), so an artifact rebuilds exactly.
    fn config_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or(serde_json::Value::Null)
    }

    fn from_config(config: &serde_json::Value) -> Result<Self, ConfigError> {
        Self::from_config_json(config).map_err(ConfigError::new)
    }

    fn workload_from_seed(&self, seed: u64) -> Workload {
        Workload::from_seed(seed)
    }

    fn format(&self) -> Result<Device, TargetError> {
        self.config.format().map_err(|e| TargetError::Other(format!("mkfs: {e}")))
    }

    fn run(&self, workload: &Workload, dev: &mut Device) -> Result<RunOutcome<RunRecord>, TargetError> {
        let fresh = std::mem::replace(dev, Device::new(0));
        let out = exec::run_on(workload, &self.config, fresh)
            .map_err(|e| TargetError::Other(format!("mount: {e}")))?;
        *dev = out.device;
        Ok(RunOutcome { record: out.record, violations: out.findings })
    }

    fn recover(&self, dev: &mut Device) -> Result<MetaStore, FsError> {
        // fsck problems are not a mount failure here, and recovery does not look for them:
        // `check` runs fsck and reports them as AllocatorInconsistent, a truer class than
        // RecoveryFailed.
        MetaStore::recover(dev, self.config.mount.bugs).map(|(store, _)| store)
    }

    /// Recovery without writing the replayed metadata back: the check reads the metadata
    /// recovery returns and the data through `words`, never the device's metadata blocks.
    fn recover_to_judge(&self, dev: &mut Device) -> Result<MetaStore, FsError> {
        MetaStore::mount_to_judge(dev, self.config.mount.bugs).map(|(store, _)| store)
    }

    /// The journal: every record and commit carries a crc, and replay must reject a damaged one
    /// (docs/design.md §4). Superblock and home metadata are checksummed too, but damage there is a
    /// typed mount error, not something to survive.
    fn media_fault_ranges(&self) -> Vec<std::ops::Range<u64>> {
        let Ok(geom) = self.config.geometry() else { return Vec::new() };
        let start = geom.journal_start().0 * crate::daxfs::BLOCK_BYTES;
        let end = start + geom.journal_slots() * crate::daxfs::layout::SLOT_BYTES;
        std::iter::once(start..end).collect()
    }

    fn check(
        &self,
        store: &MetaStore,
        dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
    ) -> Vec<Violation> {
        self.judge(store, dev, record, point, false)
    }

    /// fsck and live inodes nobody created: the data checks, the expensive part, never report
    /// `AllocatorInconsistent`.
    fn check_integrity(
        &self,
        store: &MetaStore,
        _dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
        torn: bool,
    ) -> Vec<Violation> {
        exec::crash::check_integrity(store, record, point.0, torn)
    }

    fn check_torn(
        &self,
        store: &MetaStore,
        dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
    ) -> Vec<Violation> {
        self.judge(store, dev, record, point, true)
    }

    /// Line-local: recovery and the metadata checks read metadata through `dev`; data blocks
    /// are read through `words`, and each word's verdict depends only on its value, the block
    /// it is mapped to and the recovered metadata. With [`OracleMode::Plain`] data is read
    /// through `dev` too (every line it reads is enumerated): the plain baseline.
    fn check_lines(
        &self,
        store: &MetaStore,
        dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
        torn: bool,
        words: &LineWords<'_>,
    ) -> Vec<Violation> {
        if self.oracle == OracleMode::Plain {
            return self.judge(store, dev, record, point, torn);
        }
        exec::crash::check_lines(store, dev, record, point.0, torn, words, self.scope)
    }

    fn line_local(&self) -> bool {
        self.oracle != OracleMode::Plain
    }

    /// The check reads the recovered metadata, the geometry and the first tid recovery did
    /// not find (the allocation epoch); nothing else but data words.
    fn verdict_key(&self, store: &MetaStore, _dev: &Device) -> Option<u128> {
        use std::hash::Hash as _;
        let mut h = Fnv128::default();
        (store.meta(), store.geometry(), store.mounted_before().0).hash(&mut h);
        Some(h.0)
    }

    /// A digest of the recovered logical state, for comparing recoveries
    /// (RecoveryNotIdempotent). Metadata only: daxfs replay writes only metadata (the journal
    /// holds no data), so two recoveries of one crash image see the same data blocks and differ
    /// only if their metadata does.
    fn fingerprint(&self, store: &MetaStore, _dev: &Device) -> u64 {
        let mut h = Fnv128::default();
        std::hash::Hash::hash(store.meta(), &mut h);
        (h.0 >> 64) as u64 ^ h.0 as u64
    }

    fn expectations_at(&self, record: &RunRecord, point: CrashPoint) -> u64 {
        record.expectations_at(point.0)
    }

    fn input_for_seed(&self, seed: u64) -> Vec<u8> {
        Workload::seed_input(seed)
    }

    /// A compact input (the fuzzer's, starting with [`crate::workload::COMPACT_MAGIC`]) when it
    /// decodes as one, else the generator's raw bytes (sweep seeds' `input.bin`).
    fn workload_from_bytes(&self, bytes: &[u8]) -> Result<Workload, WorkloadError> {
        match Workload::decode_compact(bytes) {
            Ok(w) => Ok(w),
            Err(_) => Workload::from_bytes(bytes).map_err(WorkloadError::new),
        }
    }

    /// Bounds and alignment, and the pin rule ([`Workload::check_pin_discipline`]).
    fn validate_workload(&self, workload: &Workload) -> Result<(), WorkloadError> {
        workload.validate().map_err(WorkloadError::new)?;
        workload.check_pin_discipline().map_err(WorkloadError::new)
    }

    fn bug_ids(&self) -> Vec<String> {
        self.config.mount.bugs.ids().into_iter().map(str::to_string).collect()
    }

    fn workload_ops(&self, workload: &Workload) -> usize {
        workload.op_count()
    }

    fn shrink(&self, workload: &Workload) -> Vec<Workload> {
        shrink_workload(&self.config, workload)
    }

    /// The allocation policy a workload hashes to, fixed: shrinking changes the hash.
    fn fixed_for(&self, workload: &Workload) -> Option<Self> {
        let mut config = self.config.clone();
        if !config.policy_per_workload {
            return None;
        }
        config.mount.policy = config.mount_for(workload).policy;
        config.policy_per_workload = false;
        Some(Self::new(config))
    }

    fn describe_word(&self, _addr: u64, value: u64) -> Option<String> {
        Some(describe(value))
    }
}
