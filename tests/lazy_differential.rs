//! Lazy enumeration with line-local verdicts against brute force.
//!
//! Lazy: what a sweep does by default — a pending line's choices are enumerated only when a
//! recovery reads it, the lines no recovery read are judged word by word, and equal recovered
//! states of a crash point share one verdict. Brute force: every choice of every crash point
//! (no read tracking, no decomposition, no reuse), each recovered on its own and judged by the
//! plain oracle. Both report every bad word (not only the first per file), and the two sets of
//! (class, crash point, word) must be equal, for every crash-only bug and for none.
//!
//! Points with more than `STATES_MAX` crash states are left out of the comparison (brute force
//! cannot enumerate them); the lazy side explores them anyway. A workload whose brute force
//! finds more than `VIOLATIONS_MAX` bad words is not compared either (both sides would hold
//! every one of them in memory: a bug that never zeroes shows each stale word at every crash
//! point, tens of millions under eADR); the full-range test then takes the next seed and says so.
//!
//! `cargo test` runs a slice; the full range is the ignored test:
//! `cargo test --release --test lazy_differential -- --ignored --nocapture`
//! (`LAZY_SEEDS=A..B`, `LAZY_BUGS=id,...`, `none` for no bug, `@eadr` appended for eADR,
//! `LAZY_VIOLATIONS_MAX=N`).

use std::collections::BTreeSet;
use std::sync::Arc;

use crashsim::check::{Violation, ViolationClass};
use crashsim::crash::{
    CrashConfig, RecoveryCrashConfig, Strategy, explore_workload, judge_image, replay_run,
};
use crashsim::daxfs::bugs::BugSet;
use crashsim::pmem::{
    Backing, CrashPoint, Device, LineWords, PersistenceModel, PmemAddr, SparseImage, Tracker, crash_points,
};
use crashsim::target::{ConfigError, RunOutcome, Target, TargetError, TargetOptions};
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;
use crashsim::targets::daxfs::exec::crash::Scope;

const BUGS: &[&str] = &[
    "none",
    "no-zero-on-alloc",
    "commit-before-zero-durable",
    "end-io-before-data-durable",
    "missing-end-io",
    "reuse-before-free-commit",
    "fsync-misses-dirty",
    "commit-before-log-fenced",
    "replay-skips-crc",
    "replay-not-idempotent",
    "map-sync-ignored",
    "none@eadr",
    "commit-before-zero-durable@eadr",
    "no-zero-on-alloc@eadr",
];

fn run_config(bugs: &str) -> RunConfig {
    let mut run = RunConfig {
        device_bytes: 16 << 20,
        pmd_blocks: 8,
        policy_per_workload: true,
        ..RunConfig::default()
    };
    run.mount.bugs = BugSet::parse_list(bugs).expect("catalogue ids");
    run
}

fn crash_config(model: PersistenceModel, strategy: Strategy, states_per_point: usize) -> CrashConfig {
    CrashConfig {
        model,
        granularity: CrashConfig::complete_granularity(model),
        strategy,
        states_per_point,
        recovery_crash: RecoveryCrashConfig { states_per_point: 0, crashes_per_state: 0 },
        media_faults_per_point: 0,
        violations_per_workload: usize::MAX,
        ..CrashConfig::default()
    }
}

/// (class, crash point, device address, file, offset): what a violation says, evidence aside.
type Key = (String, usize, Option<u64>, Option<String>, Option<u64>);

fn key(point: CrashPoint, v: &Violation) -> Key {
    (format!("{:?}", v.class), point.0, v.addr.map(|a| a.0), v.file.clone(), v.offset_bytes)
}

/// Bad words a compared workload may have at most (see the module comment).
fn violations_max() -> usize {
    std::env::var("LAZY_VIOLATIONS_MAX").ok().map_or(1 << 20, |n| n.parse().expect("a count"))
}

/// Brute force: every choice of every point with at most `states_max` states, recovered and
/// judged on its own. Returns the violations and the points compared, or `None` once more
/// than `violations_max` distinct violations are found.
fn brute_force<T: Target>(
    target: &T,
    model: PersistenceModel,
    workload: &T::Workload,
    states_max: u128,
    violations_max: usize,
) -> Option<(BTreeSet<Key>, BTreeSet<usize>)> {
    let replay = replay_run(target, workload).expect("the workload runs");
    let mut tracker = Tracker::new(&replay.trace, Arc::clone(&replay.initial), model);
    let mut found = BTreeSet::new();
    let mut compared = BTreeSet::new();
    for point in crash_points(&replay.trace, CrashConfig::complete_granularity(model)) {
        tracker.advance_to(point);
        if tracker.choice_count() > states_max {
            continue;
        }
        compared.insert(point.0);
        let state = tracker.crash_state();
        for choice in state.choices_exhaustive() {
            state.check_choice(&choice).expect("an enumerated choice fits");
            // No view: a private copy of the durable base with the persisted units written in.
            let base: Arc<dyn Backing> = Arc::new((*state.base).clone());
            let mut copy = SparseImage::new(base);
            for unit in state.persisted(&choice) {
                copy.write_u64(unit.addr, unit.value);
            }
            let image: Arc<dyn Backing> = Arc::new(copy);
            let torn = choice.torn > 0;
            let verdict = judge_image(target, model, image, &replay.record, (point, torn), None)
                .expect("no recovery crash asked for");
            found.extend(verdict.iter().map(|v| key(point, v)));
            if found.len() > violations_max {
                return None;
            }
        }
    }
    Some((found, compared))
}

/// Lazy: the engine's default exploration, violations restricted to `compared` points.
fn lazy<T: Target>(
    target: &T,
    model: PersistenceModel,
    workload: &T::Workload,
    compared: &BTreeSet<usize>,
) -> BTreeSet<Key> {
    let cfg = crash_config(model, Strategy::Lazy, 1);
    let report = explore_workload(target, &cfg, 0, workload, None).expect("the workload runs");
    // A point equal to an earlier one (image, pending units, expectations) is not explored
    // again: its violations are the earlier point's.
    let mut copies: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for &(point, first) in &report.duplicate_points {
        copies.entry(first).or_default().push(point);
    }
    let mut out = BTreeSet::new();
    for v in &report.violations {
        let Some(point) = v.evidence.crash_point else { continue };
        let same = copies.get(&point.0).into_iter().flatten().copied();
        for p in std::iter::once(point.0).chain(same) {
            if compared.contains(&p) {
                out.insert(key(CrashPoint(p), v));
            }
        }
    }
    out
}

/// Whether every crash point of `workload` has at most `states_max` crash states: a workload
/// brute force can enumerate in full.
fn small_enough<T: Target>(
    target: &T,
    model: PersistenceModel,
    workload: &T::Workload,
    states_max: u128,
) -> bool {
    let replay = replay_run(target, workload).expect("the workload runs");
    let mut tracker = Tracker::new(&replay.trace, Arc::clone(&replay.initial), model);
    crash_points(&replay.trace, CrashConfig::complete_granularity(model)).into_iter().all(|p| {
        tracker.advance_to(p);
        tracker.choice_count() <= states_max
    })
}

/// The differences between lazy and brute force for one (configuration, seed); `None` if the
/// seed's workload is too large to enumerate in full, or shows too many violations to compare.
fn differences(config: &str, seed: u64, states_max: u128) -> Option<Vec<String>> {
    let (bugs, model) = config.split_once('@').unwrap_or((config, "adr"));
    let bugs = if bugs == "none" { "" } else { bugs };
    let model = if model == "eadr" { PersistenceModel::Eadr } else { PersistenceModel::Adr };
    let mut fast = DaxfsTarget::new(run_config(bugs));
    fast.scope = Scope::EveryWord;
    let mut plain = DaxfsTarget::plain(run_config(bugs));
    plain.scope = Scope::EveryWord;
    let workload = fast.workload_from_seed(seed);
    // Seeds found too large under one configuration are not tried again under another (a
    // selection of inputs only: every compared seed is checked under its own configuration).
    static TOO_LARGE: std::sync::Mutex<BTreeSet<(bool, u64, u128)>> = std::sync::Mutex::new(BTreeSet::new());
    let eadr = model == PersistenceModel::Eadr;
    if TOO_LARGE.lock().unwrap().contains(&(eadr, seed, states_max)) {
        return None;
    }
    // `LAZY_ANY_SIZE`: any workload, compared at its points within `states_max`.
    let any_size = std::env::var_os("LAZY_ANY_SIZE").is_some();
    if !any_size && !small_enough(&plain, model, &workload, states_max) {
        TOO_LARGE.lock().unwrap().insert((eadr, seed, states_max));
        return None;
    }
    let Some((want, compared)) = brute_force(&plain, model, &workload, states_max, violations_max()) else {
        eprintln!("[{config}] seed {seed}: over {} violations, not compared", violations_max());
        return None;
    };
    let got = lazy(&fast, model, &workload, &compared);
    eprintln!(
        "[{config}] seed {seed}: {} violations over {} crash points compared",
        want.len(),
        compared.len()
    );
    let mut out = Vec::new();
    for k in want.difference(&got) {
        out.push(format!("[{config}] seed {seed}: brute force only: {k:?}"));
    }
    for k in got.difference(&want) {
        out.push(format!("[{config}] seed {seed}: lazy only: {k:?}"));
    }
    if bugs.is_empty() && !want.is_empty() {
        out.push(format!("[{config}] seed {seed}: the fixed model is not clean: {want:?}"));
    }
    Some(out)
}

/// For each configuration, the first `per_config` seeds from `seeds` small enough to
/// enumerate; fails on any difference, or if no seed qualified.
fn sweep(configs: &[String], seeds: std::ops::Range<u64>, per_config: usize, states_max: u128) {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let worker = || {
        let mut found = Vec::new();
        while let Some(config) = configs.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) {
            let mut done = 0;
            for seed in seeds.clone() {
                if done == per_config {
                    break;
                }
                let t = std::time::Instant::now();
                if let Some(d) = differences(config, seed, states_max) {
                    eprintln!(
                        "[{config}] seed {seed}: {} differences, {:.1}s",
                        d.len(),
                        t.elapsed().as_secs_f64()
                    );
                    found.extend(d);
                    done += 1;
                }
            }
            if done == 0 {
                found.push(format!("[{config}] no seed in {seeds:?} is small enough"));
            }
        }
        found
    };
    let mut all: Vec<String> = std::thread::scope(|s| {
        let a = s.spawn(worker);
        let b = s.spawn(worker);
        [a, b].into_iter().flat_map(|h| h.join().expect("a worker")).collect()
    });
    all.sort();
    assert!(all.is_empty(), "{} differences:\n{}", all.len(), all[..all.len().min(20)].join("\n"));
}

#[test]
fn lazy_and_brute_force_agree_on_a_slice() {
    let configs: Vec<String> = BUGS.iter().map(|b| b.to_string()).collect();
    sweep(&configs, 0..200, 2, 1 << 10);
}

#[test]
#[ignore = "the full range: minutes; run with --ignored in release"]
fn lazy_and_brute_force_agree_on_the_full_range() {
    let seeds = std::env::var("LAZY_SEEDS").ok().map_or(0..2000, |s| {
        let (a, b) = s.split_once("..").expect("LAZY_SEEDS=A..B");
        a.parse().expect("a seed")..b.parse().expect("a seed")
    });
    let per_config = std::env::var("LAZY_PER_CONFIG").ok().map_or(20, |n| n.parse().expect("a count"));
    let configs: Vec<String> = std::env::var("LAZY_BUGS").ok().map_or_else(
        || BUGS.iter().map(|b| b.to_string()).collect(),
        |s| s.split(',').map(str::to_string).collect(),
    );
    sweep(&configs, seeds, per_config, 1 << 16);
}

// ---- A target that breaks the line-local promise, two ways. ----

/// Two words in two cache lines, stored and never flushed: a "valid" flag at `FLAG` and a
/// value at `DATA`. The value must be 7 whenever the flag is set.
const FLAG: u64 = 0;
const DATA: u64 = 64;

#[derive(Clone, Copy)]
enum Flaw {
    /// Reads the flag through `words` (untracked) instead of `dev`: it judges the value only
    /// against the image's flag, so it misses the states with the flag set.
    FlagReadUntracked,
    /// Reports a violation for a value its own plain check accepts (its test needs debug
    /// assertions).
    #[cfg_attr(not(debug_assertions), allow(dead_code))]
    ClaimsMoreThanCheck,
}

struct Broken(Flaw);

impl Target for Broken {
    type Workload = u8;
    type Record = ();
    type Mounted = ();
    type Error = String;

    fn name(&self) -> &'static str {
        "broken-line-local"
    }
    // Built only by the tests themselves, never from options.
    fn from_options(_: &TargetOptions) -> Result<Self, ConfigError> {
        Err(ConfigError::new("a test target"))
    }
    fn options(&self) -> TargetOptions {
        TargetOptions::default()
    }
    fn workload_from_seed(&self, _seed: u64) -> u8 {
        0
    }
    fn format(&self) -> Result<Device, TargetError> {
        Ok(Device::new(4096))
    }
    fn run(&self, _w: &u8, dev: &mut Device) -> Result<RunOutcome<()>, TargetError> {
        dev.store_u64(PmemAddr(DATA), 5, "data")?;
        dev.store_u64(PmemAddr(FLAG), 1, "flag")?;
        Ok(RunOutcome { record: (), violations: Vec::new() })
    }
    fn recover(&self, _dev: &mut Device) -> Result<(), String> {
        Ok(())
    }
    fn check(&self, _m: &(), dev: &Device, _r: &(), _p: CrashPoint) -> Vec<Violation> {
        let flag = dev.read_u64(PmemAddr(FLAG)).expect("in range");
        let data = dev.read_u64(PmemAddr(DATA)).expect("in range");
        if flag == 1 && data != 7 {
            vec![Violation::new(ViolationClass::StaleData, "flag set, value not 7").at_addr(PmemAddr(DATA))]
        } else {
            Vec::new()
        }
    }
    fn check_lines(
        &self,
        m: &(),
        dev: &Device,
        r: &(),
        p: CrashPoint,
        _torn: bool,
        words: &LineWords<'_>,
    ) -> Vec<Violation> {
        match self.0 {
            Flaw::FlagReadUntracked => {
                let mut flag = [0u8; 8];
                words.read(FLAG, &mut flag);
                let mut data = [0u8; 8];
                words.read(DATA, &mut data);
                let values = std::iter::once(u64::from_le_bytes(data))
                    .chain(words.others(DATA..DATA + 8).into_iter().map(|(_, v)| v));
                let bad = u64::from_le_bytes(flag) == 1 && values.into_iter().any(|v| v != 7);
                if bad {
                    return vec![Violation::new(ViolationClass::StaleData, "bad").at_addr(PmemAddr(DATA))];
                }
                Vec::new()
            }
            Flaw::ClaimsMoreThanCheck => {
                let _ = (m, dev, r, p);
                let mut found = Vec::new();
                if words.others(DATA..DATA + 8).iter().any(|&(_, v)| v == 5) {
                    found.push(
                        Violation::new(ViolationClass::LostWrite, "not a real violation")
                            .at_addr(PmemAddr(DATA)),
                    );
                }
                found
            }
        }
    }
    fn line_local(&self) -> bool {
        true
    }
    fn fingerprint(&self, _m: &(), _dev: &Device) -> u64 {
        0
    }
    fn expectations_at(&self, _r: &(), _p: CrashPoint) -> u64 {
        0
    }
}

#[test]
fn a_line_local_oracle_that_reads_metadata_untracked_is_caught_by_the_differential() {
    let honest = Broken(Flaw::FlagReadUntracked);
    let (want, compared) =
        brute_force(&honest, PersistenceModel::Adr, &0, 1 << 16, usize::MAX).expect("no cap");
    assert!(!want.is_empty(), "brute force sees the flag set with a stale value");
    let got = lazy(&honest, PersistenceModel::Adr, &0, &compared);
    assert_ne!(got, want, "the broken promise changes the verdict: the differential must catch it");
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "reproduced by no crash state")]
fn a_line_local_verdict_no_crash_state_shows_panics_in_debug_builds() {
    let _ = lazy(&Broken(Flaw::ClaimsMoreThanCheck), PersistenceModel::Adr, &0, &BTreeSet::new());
}

// ---- A target whose recovery for judging breaks its promise. ----

/// daxfs, but its `recover_to_judge` mounts a device whose journal reads as zeros: it
/// recovers the checkpointed metadata only, as a shortcut that dropped the replay would.
struct JudgesWithoutJournal(DaxfsTarget);

/// `inner` with the bytes of `journal` read as zeros.
struct JournalZeroed {
    inner: Arc<dyn Backing>,
    journal: std::ops::Range<u64>,
}

impl JournalZeroed {
    fn zero(&self, addr: u64, buf: &mut [u8]) {
        let end = addr + buf.len() as u64;
        let (lo, hi) = (addr.max(self.journal.start), end.min(self.journal.end));
        if lo < hi {
            buf[(lo - addr) as usize..(hi - addr) as usize].fill(0);
        }
    }
}

impl Backing for JournalZeroed {
    fn size_bytes(&self) -> u64 {
        self.inner.size_bytes()
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        self.inner.read_at(addr, buf);
        self.zero(addr, buf);
    }
    fn read_blind(&self, addr: u64, buf: &mut [u8]) {
        self.inner.read_blind(addr, buf);
        self.zero(addr, buf);
    }
    fn note_read(&self, addr: u64, len: u64) {
        self.inner.note_read(addr, len);
    }
}

impl Target for JudgesWithoutJournal {
    type Workload = <DaxfsTarget as Target>::Workload;
    type Record = <DaxfsTarget as Target>::Record;
    type Mounted = <DaxfsTarget as Target>::Mounted;
    type Error = <DaxfsTarget as Target>::Error;

    fn name(&self) -> &'static str {
        "daxfs-judges-without-journal"
    }
    fn from_options(_: &TargetOptions) -> Result<Self, ConfigError> {
        Err(ConfigError::new("a test target"))
    }
    fn options(&self) -> TargetOptions {
        self.0.options()
    }
    fn workload_from_seed(&self, seed: u64) -> Self::Workload {
        self.0.workload_from_seed(seed)
    }
    fn format(&self) -> Result<Device, TargetError> {
        self.0.format()
    }
    fn run(&self, w: &Self::Workload, dev: &mut Device) -> Result<RunOutcome<Self::Record>, TargetError> {
        self.0.run(w, dev)
    }
    fn recover(&self, dev: &mut Device) -> Result<Self::Mounted, Self::Error> {
        self.0.recover(dev)
    }
    fn recover_to_judge(&self, dev: &mut Device) -> Result<Self::Mounted, Self::Error> {
        let journal = self.0.media_fault_ranges().remove(0);
        let zeroed = JournalZeroed { inner: Arc::clone(dev.initial()), journal };
        self.0.recover_to_judge(&mut Device::with_backing(Arc::new(zeroed)))
    }
    fn check(&self, m: &Self::Mounted, dev: &Device, r: &Self::Record, p: CrashPoint) -> Vec<Violation> {
        self.0.check(m, dev, r, p)
    }
    fn check_torn(&self, m: &Self::Mounted, dev: &Device, r: &Self::Record, p: CrashPoint) -> Vec<Violation> {
        self.0.check_torn(m, dev, r, p)
    }
    fn check_lines(
        &self,
        m: &Self::Mounted,
        dev: &Device,
        r: &Self::Record,
        p: CrashPoint,
        torn: bool,
        words: &LineWords<'_>,
    ) -> Vec<Violation> {
        self.0.check_lines(m, dev, r, p, torn, words)
    }
    fn line_local(&self) -> bool {
        self.0.line_local()
    }
    fn verdict_key(&self, m: &Self::Mounted, dev: &Device) -> Option<u128> {
        self.0.verdict_key(m, dev)
    }
    fn fingerprint(&self, m: &Self::Mounted, dev: &Device) -> u64 {
        self.0.fingerprint(m, dev)
    }
    fn expectations_at(&self, r: &Self::Record, p: CrashPoint) -> u64 {
        self.0.expectations_at(r, p)
    }
}

/// The lazy side runs `recover_to_judge` on every state it does not crash again; brute force
/// runs `recover`. A `recover_to_judge` that skips part of recovery changes verdicts, and the
/// differential sees it (a debug build also fails the state's own comparison of the two,
/// which the engine reports as a failed recovery: a difference all the same).
#[test]
fn a_recovery_for_judging_that_skips_replay_is_caught_by_the_differential() {
    let model = PersistenceModel::Adr;
    let mut plain = DaxfsTarget::plain(run_config(""));
    plain.scope = Scope::EveryWord;
    let mut fast = DaxfsTarget::new(run_config(""));
    fast.scope = Scope::EveryWord;
    let broken = JudgesWithoutJournal(fast);
    let caught = (0..200).any(|seed| {
        let workload = plain.workload_from_seed(seed);
        if !small_enough(&plain, model, &workload, 1 << 10) {
            return false;
        }
        let (want, compared) = brute_force(&plain, model, &workload, 1 << 10, usize::MAX).expect("no cap");
        assert!(want.is_empty(), "the fixed model is clean: {want:?}");
        let got = lazy(&broken, model, &workload, &compared);
        eprintln!("seed {seed}: {} compared, {} lazy", compared.len(), got.len());
        got != want
    });
    assert!(caught, "no seed shows the skipped replay");
}
