//! Random sweep of the fixed model: 10,000 generated workloads (5,000 per allocation policy)
//! must give no run-time finding, end without deadlock, and leave a final image that mounts and
//! fscks clean. A sample is run twice: same workload, byte-identical trace and same outcome.

use crashsim::daxfs::fs::AllocPolicy;
use crashsim::daxfs::{BugSet, MetaStore, fsck};
use crashsim::sched::RunEnd;
use crashsim::targets::daxfs::exec::{RunConfig, run};
use crashsim::workload::Workload;

/// Workloads per policy.
const SEEDS_PER_POLICY: u64 = 5_000;
/// Every this many seeds, the run is repeated for the determinism check.
const DETERMINISM_EVERY: u64 = 25;
/// The faithful 2 MiB PMD: the whole sweep takes a few seconds, so no smaller geometry is needed.
const PMD_BLOCKS: u64 = crashsim::daxfs::PMD_BLOCKS_DEFAULT;

fn config(policy: AllocPolicy) -> RunConfig {
    let mut c = RunConfig { pmd_blocks: PMD_BLOCKS, ..RunConfig::default() };
    c.mount.policy = policy;
    c
}

/// Runs seeds `first..first + count` under `policy`; panics with a repro line on the first bad one.
fn sweep(policy: AllocPolicy, first: u64, count: u64) {
    let cfg = config(policy);
    let started = std::time::Instant::now();
    for seed in first..first + count {
        let w = Workload::from_seed(seed);
        let repro = format!("seed {seed}, policy {}, pmd_blocks {PMD_BLOCKS}", policy.name());
        let out = run(&w, &cfg).unwrap_or_else(|e| panic!("{repro}: run failed: {e}"));
        assert_eq!(out.findings, vec![], "{repro}: fixed model flagged");
        assert!(matches!(out.end, RunEnd::Done { .. }), "{repro}: {:?}", out.end);
        if seed % DETERMINISM_EVERY == 0 {
            let again = run(&w, &cfg).unwrap();
            assert_eq!(again.device.trace().digest(), out.device.trace().digest(), "{repro}: digest");
            assert!(again.device.trace() == out.device.trace(), "{repro}: traces differ");
            assert_eq!(again.results, out.results, "{repro}: results differ");
            assert_eq!(again.record, out.record, "{repro}: run records differ");
        }
        let mut dev = out.device;
        dev.rebase();
        let store = MetaStore::mount(&mut dev, BugSet::NONE)
            .unwrap_or_else(|e| panic!("{repro}: final image does not mount: {e}"));
        assert_eq!(fsck(store.meta(), store.geometry()), vec![], "{repro}: fsck");
    }
    eprintln!("{policy:?}: {count} workloads in {:?}", started.elapsed());
}

#[test]
fn random_workloads_zero_before_commit() {
    sweep(AllocPolicy::ZeroBeforeCommit, 0, SEEDS_PER_POLICY);
}

#[test]
fn random_workloads_unwritten_end_io() {
    sweep(AllocPolicy::UnwrittenEndIo, SEEDS_PER_POLICY, SEEDS_PER_POLICY);
}

/// A shorter sweep with an 8-block PMD, where PMD faults, fallbacks and PMD-wide punches
/// happen far more often than with 2 MiB.
#[test]
fn random_workloads_small_pmd() {
    for policy in [AllocPolicy::ZeroBeforeCommit, AllocPolicy::UnwrittenEndIo] {
        let mut cfg = config(policy);
        cfg.pmd_blocks = 8;
        for seed in 20_000..21_000 {
            let out = run(&Workload::from_seed(seed), &cfg).unwrap();
            assert_eq!(out.findings, vec![], "seed {seed}, policy {}, pmd_blocks 8", policy.name());
            let mut dev = out.device;
            dev.rebase();
            let store = MetaStore::mount(&mut dev, BugSet::NONE).unwrap();
            assert_eq!(fsck(store.meta(), store.geometry()), vec![], "seed {seed}");
        }
    }
}
