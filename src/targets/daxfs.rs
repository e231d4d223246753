//! daxfs as a crash-engine target: the default system under test.
//!
//! This is the one place where the generic engine meets daxfs; the engine itself never names
//! daxfs types (Architecture Invariant).

use crate::check::{Violation, ViolationClass};
use crate::daxfs::store::MetaStore;
use crate::exec::crash::{CrashClass, CrashFinding};
use crate::exec::record::RunRecord;
use crate::exec::{self, Finding, FindingClass, RunConfig};
use crate::pmem::{CrashPoint, Device, PmemAddr};
use crate::target::{RunOutcome, Target, TargetError};
use crate::workload::Workload;

/// daxfs with a device geometry, mount options and enabled bugs.
#[derive(Clone, Debug, Default)]
pub struct DaxfsTarget {
    pub config: RunConfig,
}

impl DaxfsTarget {
    pub fn new(config: RunConfig) -> Self {
        Self { config }
    }
}

fn runtime_violation(f: Finding) -> Violation {
    let class = match f.class {
        FindingClass::StaleData => ViolationClass::StaleData,
        FindingClass::ForeignData => ViolationClass::ForeignData,
        FindingClass::IncoherentView => ViolationClass::IncoherentView,
        FindingClass::UseAfterFree => ViolationClass::UseAfterFree,
        FindingClass::Deadlock => ViolationClass::Deadlock,
    };
    let mut v = Violation::new(class, format!("thread {} op {}: {}", f.thread, f.op_index, f.message));
    if let (Some(file), Some(word)) = (f.file_id, f.word_off) {
        v = v.in_file(format!("file{file}"), word * 8);
    }
    if let (Some(found), Some(expected)) = (f.found, f.expected) {
        v = v.found_allowed(found, expected);
    }
    v
}

fn crash_violation(f: CrashFinding) -> Violation {
    let class = match f.class {
        CrashClass::StaleData => ViolationClass::StaleData,
        CrashClass::ForeignData => ViolationClass::ForeignData,
        CrashClass::LostWrite => ViolationClass::LostWrite,
        CrashClass::AllocatorInconsistent => ViolationClass::AllocatorInconsistent,
    };
    let mut v = Violation::new(class, f.message);
    if let (Some(file), Some(word)) = (f.file_id, f.word_off) {
        v = v.in_file(format!("file{file}"), word * 8);
    }
    if let Some(addr) = f.pmem_addr {
        v = v.at_addr(PmemAddr(addr));
    }
    if let (Some(found), Some(allowed)) = (f.found, f.allowed) {
        v = v.found_allowed(found, allowed);
    }
    v
}

impl Target for DaxfsTarget {
    type Workload = Workload;
    type Record = RunRecord;
    type Mounted = MetaStore;

    fn name(&self) -> &'static str {
        "daxfs"
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
        Ok(RunOutcome {
            record: out.record,
            violations: out.findings.into_iter().map(runtime_violation).collect(),
        })
    }

    fn recover(&self, dev: &mut Device) -> Result<MetaStore, String> {
        // fsck problems are not a mount failure here: `check` reports them as
        // AllocatorInconsistent, a truer class than RecoveryFailed.
        MetaStore::mount_unchecked(dev, self.config.mount.bugs)
            .map(|(store, _, _)| store)
            .map_err(|e| e.to_string())
    }

    fn check(
        &self,
        store: &MetaStore,
        dev: &Device,
        record: &RunRecord,
        point: CrashPoint,
    ) -> Vec<Violation> {
        exec::crash::check(store, dev, record, point.0).into_iter().map(crash_violation).collect()
    }

    fn fingerprint(&self, store: &MetaStore, dev: &Device) -> u64 {
        exec::crash::fingerprint(store, dev)
    }

    fn expectations_at(&self, record: &RunRecord, point: CrashPoint) -> u64 {
        record.expectations_at(point.0)
    }
}
