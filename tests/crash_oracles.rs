//! Each oracle class's plumbing, fired by a one-word target that is bad in a chosen way.
//! It also shows that a target outside the crate can implement `Target`.

use crashsim::check::{Violation, ViolationClass};
use crashsim::crash::{CrashConfig, explore_seed};
use crashsim::pmem::{CrashPoint, Device, FlushKind, PmemAddr};
use crashsim::target::{ConfigError, RunOutcome, Target, TargetError, TargetOptions};

const WORD: PmemAddr = PmemAddr(64);
const COUNTER: PmemAddr = PmemAddr(128);
const POISON: u64 = 0x5e5e_5e5e_5e5e_5e5e;
const VALUE: u64 = 0xda00_0000_0000_0001;

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Flaw {
    /// Stores the word without flushing it; the oracle calls a poisoned word stale.
    NoFlush,
    /// Acknowledges after a fence but never flushes: the acknowledged word can be lost.
    AckWithoutFlush,
    /// Recovery panics when it sees the word.
    PanicOnWord,
    /// Recovery increments a counter: crash after its store, recover again, count twice.
    Increment,
    /// The run itself reports a deadlock.
    RunTimeDeadlock,
}

struct OneWord(Flaw);

impl Target for OneWord {
    type Workload = u64;
    type Record = Option<usize>;
    type Mounted = (u64, u64);
    type Error = String;

    fn name(&self) -> &'static str {
        "one-word"
    }
    // Built only by the tests themselves, never from options.
    fn from_options(_: &TargetOptions) -> Result<Self, ConfigError> {
        Err(ConfigError::new("a test target"))
    }
    fn options(&self) -> TargetOptions {
        TargetOptions::default()
    }
    fn workload_from_seed(&self, seed: u64) -> u64 {
        seed
    }
    fn format(&self) -> Result<Device, TargetError> {
        let mut dev = Device::new(4096);
        dev.store_u64(WORD, POISON, "oneword::format")?;
        dev.flush(WORD, 8, FlushKind::Clflush, "oneword::format")?;
        dev.rebase();
        Ok(dev)
    }
    fn run(&self, _w: &u64, dev: &mut Device) -> Result<RunOutcome<Option<usize>>, TargetError> {
        dev.store_u64(WORD, VALUE, "oneword::run::store")?;
        dev.fence("oneword::run::fence")?;
        let acked = (self.0 == Flaw::AckWithoutFlush).then(|| dev.trace().len());
        let violations = match self.0 {
            Flaw::RunTimeDeadlock => vec![Violation::new(ViolationClass::Deadlock, "all threads blocked")],
            _ => Vec::new(),
        };
        Ok(RunOutcome { record: acked, violations })
    }
    fn recover(&self, dev: &mut Device) -> Result<(u64, u64), String> {
        let word = dev.read_u64(WORD).map_err(|e| e.to_string())?;
        assert!(!(self.0 == Flaw::PanicOnWord && word == VALUE), "replay tripped over {word:#x}");
        let mut counter = dev.read_u64(COUNTER).map_err(|e| e.to_string())?;
        if self.0 == Flaw::Increment {
            counter += 1;
            dev.store_u64(COUNTER, counter, "oneword::recover::increment").map_err(|e| e.to_string())?;
            dev.flush(COUNTER, 8, FlushKind::Clwb, "oneword::recover::flush").map_err(|e| e.to_string())?;
            dev.fence("oneword::recover::fence").map_err(|e| e.to_string())?;
        }
        Ok((word, counter))
    }
    fn check(
        &self,
        m: &(u64, u64),
        _dev: &Device,
        acked: &Option<usize>,
        point: CrashPoint,
    ) -> Vec<Violation> {
        let word = m.0;
        let acked = acked.is_some_and(|at| at <= point.0);
        let class = match (self.0, word) {
            (Flaw::NoFlush, POISON) => ViolationClass::StaleData,
            (Flaw::AckWithoutFlush, w) if acked && w != VALUE => ViolationClass::LostWrite,
            _ => return Vec::new(),
        };
        vec![
            Violation::new(class, "the word is wrong")
                .in_file("f", 0)
                .at_addr(WORD)
                .found_allowed(format!("{word:#x}"), format!("{VALUE:#x}")),
        ]
    }
    fn fingerprint(&self, m: &(u64, u64), _dev: &Device) -> u64 {
        m.0 ^ m.1.rotate_left(17)
    }
    fn expectations_at(&self, acked: &Option<usize>, point: CrashPoint) -> u64 {
        u64::from(acked.is_some_and(|at| at <= point.0))
    }
}

fn explore(flaw: Flaw) -> Vec<Violation> {
    explore_seed(&OneWord(flaw), &CrashConfig::default(), 1).unwrap().violations
}

fn only(flaw: Flaw, class: ViolationClass) -> Violation {
    let found = explore(flaw);
    assert!(!found.is_empty(), "{flaw:?} found nothing");
    assert!(found.iter().all(|v| v.class == class), "{flaw:?}: {found:?}");
    found[0].clone()
}

#[test]
fn stale_data_carries_crash_point_last_writer_and_lost_store() {
    let v = only(Flaw::NoFlush, ViolationClass::StaleData);
    let e = &v.evidence;
    assert!(e.crash_point.is_some());
    assert_eq!(e.last_writer.as_ref().unwrap().site, "oneword::run::store");
    assert_eq!((e.lost.len(), e.lost_count, e.persisted_count), (1, 1, 0));
    assert_eq!(e.lost[0].value, VALUE);
    assert_eq!((v.file.as_deref(), v.offset_bytes, v.addr), (Some("f"), Some(0), Some(WORD)));
}

#[test]
fn lost_write_fires_only_after_the_acknowledgement() {
    let v = only(Flaw::AckWithoutFlush, ViolationClass::LostWrite);
    assert_eq!(v.found.as_deref(), Some(format!("{POISON:#x}").as_str()));
    assert_eq!(v.evidence.crash_point, Some(CrashPoint(2)), "the end of the run, after the ack");
}

#[test]
fn recovery_panic_is_a_recovery_failed_violation_and_the_sweep_goes_on() {
    let v = only(Flaw::PanicOnWord, ViolationClass::RecoveryFailed);
    assert!(v.message.contains("panicked: replay tripped over"), "{}", v.message);
    assert!(v.evidence.persisted.iter().any(|u| u.value == VALUE));
}

#[test]
fn non_idempotent_recovery_is_caught_by_crashing_inside_it() {
    let v = only(Flaw::Increment, ViolationClass::RecoveryNotIdempotent);
    assert!(v.evidence.recovery_crash_point.is_some());
    assert!(v.found.is_some() && v.found != v.allowed);
}

#[test]
fn run_time_violations_pass_through_without_a_crash_point() {
    let found = explore(Flaw::RunTimeDeadlock);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].class, ViolationClass::Deadlock);
    assert_eq!(found[0].evidence.crash_point, None);
}
