//! The `Target` contract as the engine enforces it: targets rebuild from their options and
//! configuration, a panicking generator is reported with its seed, and the minimizer never runs
//! a shrink candidate the target's own validation rejects.

use std::path::PathBuf;

use crashsim::artifact::{self, ArtifactSource, artifact_name, write_artifact};
use crashsim::check::{Violation, ViolationClass};
use crashsim::crash::{CrashConfig, explore_seed};
use crashsim::pmem::{CrashPoint, Device, FlushKind, PmemAddr};
use crashsim::sweep::{self, SeedRange, SweepConfig};
use crashsim::target::{ConfigError, RunOutcome, Target, TargetError, TargetOptions, WorkloadError};
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::toylog::ToyLog;

fn opts(bugs: &[&str], settings: &[(&str, &str)]) -> TargetOptions {
    let mut o = TargetOptions::with_bugs(bugs);
    for (k, v) in settings {
        o.settings.insert((*k).to_string(), (*v).to_string());
    }
    o
}

/// `from_options(options())` and `from_config(config_json())` give back the same target.
fn round_trips<T: Target>(options: &TargetOptions) {
    let t = T::from_options(options).expect("builds");
    assert_eq!(&t.options(), options, "options() gives back what built the target");
    let again = T::from_config(&t.config_json()).expect("rebuilds from its config");
    assert_eq!(again.config_json(), t.config_json());
    assert_eq!(again.options(), t.options());
    assert_eq!(again.bug_ids(), options.bugs);
}

#[test]
fn shipped_targets_rebuild_from_options_and_config() {
    round_trips::<DaxfsTarget>(&TargetOptions::default());
    round_trips::<DaxfsTarget>(&opts(
        &["no-zero-on-alloc", "replay-skips-crc"],
        &[("policy", "unwritten-end-io")],
    ));
    round_trips::<DaxfsTarget>(&opts(&[], &[("policy", "zero-before-commit"), ("pmd_blocks", "8")]));
    round_trips::<ToyLog>(&TargetOptions::default());
    round_trips::<ToyLog>(&opts(&["commit-before-slot-durable"], &[("device_bytes", "4096")]));
    // Every catalogue id builds.
    for b in DaxfsTarget::bug_catalogue() {
        round_trips::<DaxfsTarget>(&opts(&[b.id], &[]));
        assert!(!b.summary.is_empty() && !b.origin.is_empty(), "{b:?}");
    }
}

#[test]
fn bad_options_are_typed_errors_that_name_the_problem() {
    let e = |r: Result<DaxfsTarget, ConfigError>| r.expect_err("refused").to_string();
    assert!(e(DaxfsTarget::from_options(&opts(&["no-such-bug"], &[]))).contains("no-such-bug"));
    assert!(e(DaxfsTarget::from_options(&opts(&[], &[("policy", "fast")]))).contains("fast"));
    assert!(e(DaxfsTarget::from_options(&opts(&[], &[("pmd_blocks", "3")]))).contains("power of two"));
    assert!(e(DaxfsTarget::from_options(&opts(&[], &[("colour", "red")]))).contains("no setting `colour`"));
    let toy = ToyLog::from_options(&opts(&["no-zero-on-alloc"], &[])).expect_err("refused").to_string();
    assert!(toy.contains("commit-before-slot-durable"), "{toy}");
}

/// Values above this are out of the workload language's bounds.
const VALUE_MAX: u32 = 1000;

/// A target with a generator that panics on seed 3, a run that asserts its input's bounds (as
/// a real decoder-fed target may), and a shrinker whose first candidate is out of bounds.
struct Picky;

impl Target for Picky {
    type Workload = Vec<u32>;
    type Record = ();
    type Mounted = ();
    type Error = String;

    fn name(&self) -> &'static str {
        "picky"
    }
    fn from_options(_: &TargetOptions) -> Result<Self, ConfigError> {
        Ok(Picky)
    }
    fn options(&self) -> TargetOptions {
        TargetOptions::default()
    }
    fn workload_from_seed(&self, seed: u64) -> Vec<u32> {
        assert!(seed != 3, "the generator has a bug at seed 3");
        vec![2 * seed as u32 + 1, 2, 4]
    }
    fn format(&self) -> Result<Device, TargetError> {
        Ok(Device::new(4096))
    }
    fn run(&self, w: &Vec<u32>, dev: &mut Device) -> Result<RunOutcome<()>, TargetError> {
        assert!(w.len() <= 3 && w.iter().all(|&x| x < VALUE_MAX), "run given an out-of-bounds workload");
        for (i, &x) in w.iter().enumerate() {
            dev.store_u64(PmemAddr(i as u64 * 8), u64::from(x), "picky::run")?;
        }
        dev.fence("picky::run")?;
        let violations = w
            .iter()
            .filter(|&&x| x % 2 == 1)
            .map(|x| Violation::new(ViolationClass::StaleData, format!("odd value {x}")))
            .take(1)
            .collect();
        Ok(RunOutcome { record: (), violations })
    }
    fn recover(&self, _dev: &mut Device) -> Result<(), String> {
        Ok(())
    }
    fn check(&self, _m: &(), _dev: &Device, _r: &(), _p: CrashPoint) -> Vec<Violation> {
        Vec::new()
    }
    fn fingerprint(&self, _m: &(), _dev: &Device) -> u64 {
        0
    }
    fn validate_workload(&self, w: &Vec<u32>) -> Result<(), WorkloadError> {
        match w.iter().find(|&&x| x >= VALUE_MAX) {
            Some(x) => Err(WorkloadError::new(format!("value {x} over {VALUE_MAX}"))),
            None if w.len() > 3 => Err(WorkloadError::new("more than 3 values")),
            None => Ok(()),
        }
    }
    fn workload_ops(&self, w: &Vec<u32>) -> usize {
        w.len()
    }
    fn shrink(&self, w: &Vec<u32>) -> Vec<Vec<u32>> {
        let mut out = vec![vec![u32::MAX]];
        out.extend((0..w.len()).map(|i| {
            let mut c = w.clone();
            c.remove(i);
            c
        }));
        out
    }
}

#[test]
fn a_panicking_generator_is_reported_with_its_seed() {
    let cfg = SweepConfig {
        seeds: SeedRange { start: 0, end: 5 },
        crash: CrashConfig::default(),
        jobs: 1,
        budget: None,
        fail_fast: false,
    };
    let s = sweep::run(&Picky, &cfg, &|_| {}).expect("the sweep itself runs");
    assert_eq!(s.errors.len(), 1, "{:?}", s.errors);
    assert_eq!(s.errors[0].seed, 3);
    assert!(
        s.errors[0].message.contains("workload_from_seed(3) panicked: the generator has a bug at seed 3"),
        "{}",
        s.errors[0].message
    );
    assert_eq!(s.workloads, 4, "the other seeds ran");
}

#[test]
fn the_minimizer_skips_shrink_candidates_the_target_rejects() {
    let out: PathBuf = std::env::temp_dir().join(format!("crashsim-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let cfg = CrashConfig::default();
    let report = explore_seed(&Picky, &cfg, 0).unwrap();
    let v = report.violations.first().expect("seed 0 has an odd value");
    let src = ArtifactSource::seed(&Picky, 0);
    let w = Picky.workload_from_seed(0);
    let dir = write_artifact(&Picky, &cfg, &src, &w, v, &out, &artifact_name(Some(0), v)).unwrap();
    let loaded = artifact::load(&dir).unwrap();
    // Without the check, the first candidate reaches `run`, whose assertion makes the
    // minimization fail.
    let m = artifact::minimize(&Picky, &loaded, &out.join("min"), false).expect("minimizes");
    assert_eq!((m.before.ops, m.after.ops), (3, 1), "{m:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn the_generic_fuzz_harness_catches_a_target_bug_and_saves_a_replayable_workload() {
    use crashsim::fuzzing::{TargetHarness, seed_input};
    let mut broken = TargetHarness::new(ToyLog::broken(), "toy_crash");
    broken.explore_one_in = 1;
    let mut fixed = TargetHarness::new(ToyLog::fixed(), "toy_crash");
    fixed.explore_one_in = 1;
    let mut caught = 0;
    for seed in 0..40 {
        let input = seed_input(seed);
        assert_eq!(fixed.check(&input), Ok(()), "seed {seed}: the fixed log is clean");
        let Err(f) = broken.check(&input) else { continue };
        caught += 1;
        assert!(f.summary.contains("headline: StaleData"), "{f}");
        assert!(
            f.repro.starts_with("crashsim run ")
                && f.repro.contains("--target toylog --bug commit-before-slot-durable"),
            "{f}"
        );
        // The saved workload replays: the same violation on the same target.
        let path = f.repro.split_whitespace().nth(2).expect("a path");
        let w: <ToyLog as Target>::Workload =
            serde_json::from_slice(&std::fs::read(path).expect("saved workload")).expect("JSON workload");
        let r = crashsim::crash::explore_workload(&ToyLog::broken(), &CrashConfig::default(), 0, &w, None)
            .unwrap();
        assert!(r.violations.iter().any(|v| v.class == ViolationClass::StaleData), "{path}");
    }
    assert!(caught >= 5, "the broken log is caught on {caught} of 40 seed inputs");
}

/// A target with one checksummed record at address 0 that recovery "applies" whatever it
/// holds: a media fault there is an `AllocatorInconsistent` violation of its whole check.
/// `honest_integrity: false` makes its `check_integrity` miss it.
struct Sealed {
    honest_integrity: bool,
}

const SEAL: u64 = 0x5ea1_5ea1_5ea1_5ea1;

impl Target for Sealed {
    type Workload = ();
    type Record = ();
    type Mounted = u64;
    type Error = String;

    fn name(&self) -> &'static str {
        "sealed"
    }
    fn from_options(_: &TargetOptions) -> Result<Self, ConfigError> {
        Ok(Sealed { honest_integrity: true })
    }
    fn options(&self) -> TargetOptions {
        TargetOptions::default()
    }
    fn workload_from_seed(&self, _seed: u64) {}
    fn format(&self) -> Result<Device, TargetError> {
        Ok(Device::new(4096))
    }
    fn run(&self, _w: &(), dev: &mut Device) -> Result<RunOutcome<()>, TargetError> {
        dev.store_u64(PmemAddr(0), SEAL, "sealed::record")?;
        dev.flush(PmemAddr(0), 8, FlushKind::Clwb, "sealed::record")?;
        dev.fence("sealed::record")?;
        dev.store_u64(PmemAddr(64), 1, "sealed::other")?;
        dev.fence("sealed::other")?;
        Ok(RunOutcome { record: (), violations: Vec::new() })
    }
    fn recover(&self, dev: &mut Device) -> Result<u64, String> {
        dev.read_u64(PmemAddr(0)).map_err(|e| e.to_string())
    }
    fn check(&self, m: &u64, _dev: &Device, _r: &(), _p: CrashPoint) -> Vec<Violation> {
        let mut out = Vec::new();
        if *m != 0 && *m != SEAL {
            out.push(Violation::new(ViolationClass::AllocatorInconsistent, "a damaged record was applied"));
        }
        out
    }
    fn check_integrity(&self, m: &u64, dev: &Device, r: &(), p: CrashPoint, _torn: bool) -> Vec<Violation> {
        if self.honest_integrity { self.check(m, dev, r, p) } else { Vec::new() }
    }
    fn media_fault_ranges(&self) -> Vec<std::ops::Range<u64>> {
        std::iter::once(0..64).collect()
    }
    fn fingerprint(&self, m: &u64, _dev: &Device) -> u64 {
        *m
    }
}

#[test]
fn media_faults_are_judged_by_the_integrity_check() {
    let report = explore_seed(&Sealed { honest_integrity: true }, &CrashConfig::default(), 0).expect("runs");
    assert!(
        report
            .violations
            .iter()
            .any(|v| v.class == ViolationClass::AllocatorInconsistent && v.evidence.media_fault.is_some()),
        "a flipped bit in the record is applied: {:?}",
        report.violations.iter().map(|v| v.to_string()).collect::<Vec<_>>()
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "disagrees with the whole check")]
fn an_integrity_check_that_misses_what_the_whole_check_sees_panics_in_debug_builds() {
    let _ = explore_seed(&Sealed { honest_integrity: false }, &CrashConfig::default(), 0);
}
