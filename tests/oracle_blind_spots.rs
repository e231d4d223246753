//! Regression tests for three places where the crash oracle once said "clean" over a real
//! exposure: the page-verdict cache keyed without the recovered size, a file's own punched-out
//! data resurfacing in a later allocation, and an acknowledged file or size that recovery lost.
//! Each hand-written workload reports the violation at the crash state that shows it with the
//! bug on, and is clean with the bug off.

use std::sync::Arc;

use crashsim::check::{Violation, ViolationClass};
use crashsim::crash::{CrashConfig, WorkloadReport, explore_workload, judge_image, replay_run};
use crashsim::daxfs::bugs::BugSet;
use crashsim::daxfs::fs::AllocPolicy;
use crashsim::pmem::{CrashPoint, PersistenceModel};
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;
use crashsim::workload::{FileSlot, Op, Workload, WorkloadOptions};

fn target(bugs: &str, policy: AllocPolicy) -> DaxfsTarget {
    let mut run = RunConfig { pmd_blocks: 8, ..RunConfig::default() };
    run.mount.bugs = BugSet::parse_list(bugs).expect("catalogue ids");
    run.mount.policy = policy;
    DaxfsTarget::new(run)
}

fn one_thread(ops: Vec<Op>) -> Workload {
    Workload { threads: vec![ops], schedule: vec![], options: WorkloadOptions::default() }
}

/// Every crash state of every fence point (the spaces here are small), every violation kept.
fn explore(bugs: &str, policy: AllocPolicy, workload: &Workload) -> WorkloadReport {
    let cfg =
        CrashConfig { states_per_point: 4096, violations_per_workload: usize::MAX, ..CrashConfig::default() };
    explore_workload(&target(bugs, policy), &cfg, 0, workload, None).expect("the workload runs")
}

fn crash_violations(report: &WorkloadReport, class: ViolationClass) -> Vec<&Violation> {
    report.violations.iter().filter(|v| v.class == class && v.evidence.crash_point.is_some()).collect()
}

const F0: FileSlot = FileSlot(0);
const F1: FileSlot = FileSlot(1);

/// 800 bytes in a fresh block that no-zero-on-alloc never zeroed, then a truncate up to 8 KiB:
/// where the truncate's size record persisted, the block's old words lie below EOF. A state of
/// the same crash point without that record (smaller size, same page and block) is judged
/// first; the page cache once let its clean verdict stand for the larger size too.
fn truncate_up_over_an_unzeroed_block() -> Workload {
    one_thread(vec![
        Op::Create { file: F0 },
        Op::Create { file: F1 },
        Op::Write { file: F0, off: 0, len: 800 },
        Op::Fsync { file: F0 },
        Op::Truncate { file: F0, size: 8192 },
        Op::Write { file: F1, off: 0, len: 8 },
    ])
}

#[test]
fn the_page_cache_never_hides_words_a_larger_size_exposes() {
    let w = truncate_up_over_an_unzeroed_block();
    let report = explore("no-zero-on-alloc", AllocPolicy::ZeroBeforeCommit, &w);
    let end =
        replay_run(&target("no-zero-on-alloc", AllocPolicy::ZeroBeforeCommit), &w).expect("runs").trace.len();
    let at_end: Vec<_> = crash_violations(&report, ViolationClass::StaleData)
        .into_iter()
        .filter(|v| v.evidence.crash_point == Some(CrashPoint(end)) && v.file.as_deref() == Some("file1"))
        .collect();
    assert!(!at_end.is_empty(), "no StaleData at the final crash point {end}: {:#?}", report.violations);
    for v in at_end {
        // File 0 (id 1): only the state whose size record persisted judges words past its
        // first 800 bytes.
        let off = v.offset_bytes.expect("a file offset");
        assert!((800..4096).contains(&off), "{v:?}");
    }
    let clean = explore("", AllocPolicy::ZeroBeforeCommit, &w);
    assert!(clean.violations.is_empty(), "{:#?}", clean.violations);
}

/// File 0's 4 KiB, made durable, punched out; file 1's fsync makes the free durable, so the block
/// can be allocated again; file 0 writes 8 bytes and gets it back. commit-before-zero-durable
/// commits that allocation before its zeroes are durable: where only the commit persisted, the
/// block is mapped written and still holds the 511 punched words of file 0 itself.
fn punch_then_reallocate_to_the_same_file() -> Workload {
    one_thread(vec![
        Op::Create { file: F0 },
        Op::Create { file: F1 },
        Op::Write { file: F0, off: 0, len: 4096 },
        Op::Fsync { file: F0 },
        Op::PunchHole { file: F0, off: 0, len: 4096 },
        Op::Write { file: F1, off: 0, len: 8 },
        Op::Fsync { file: F1 },
        Op::Write { file: F0, off: 0, len: 8 },
    ])
}

#[test]
fn a_files_own_punched_data_in_a_later_allocation_is_stale() {
    let w = punch_then_reallocate_to_the_same_file();
    let report = explore("commit-before-zero-durable", AllocPolicy::ZeroBeforeCommit, &w);
    let stale = crash_violations(&report, ViolationClass::StaleData);
    assert!(!stale.is_empty(), "the resurfaced words went unreported: {:#?}", report.violations);
    // The word found is file 0's own data (file id 1; not poison, not another file's): the epoch rule.
    assert!(
        stale
            .iter()
            .any(|v| v.message.contains("(file 1)") && v.found.as_deref().unwrap_or("").contains("Data")),
        "{stale:#?}"
    );
    let clean = explore("", AllocPolicy::ZeroBeforeCommit, &w);
    assert!(clean.violations.is_empty(), "{:#?}", clean.violations);
}

/// A state recovery could not have produced from a correct daxfs: the media as it was before
/// `fsync` (the file's creation and size not yet durable), judged as a crash after `fsync`
/// returned. The oracle must name the lost file and the fsync that acknowledged it.
#[test]
fn an_acknowledged_file_that_recovery_lost_is_a_lost_write() {
    let t = target("", AllocPolicy::ZeroBeforeCommit);
    let w = one_thread(vec![
        Op::Create { file: F0 },
        Op::Write { file: F0, off: 0, len: 4096 },
        Op::Fsync { file: F0 },
        Op::Create { file: F1 },
    ]);
    let replay = replay_run(&t, &w).expect("runs");
    let end = CrashPoint(replay.trace.len());
    // Power cut before anything was durable: nothing of file 0 survives.
    let early = replay.state_at(PersistenceModel::Adr, CrashPoint(0));
    let (_, lost_image) =
        replay.view_at(PersistenceModel::Adr, CrashPoint(0), &early.choice_none()).expect("fits");
    let found =
        judge_image(&t, PersistenceModel::Adr, Arc::new(lost_image), &replay.record, (end, false), None)
            .expect("judged");
    let lost: Vec<_> = found.iter().filter(|v| v.class == ViolationClass::LostWrite).collect();
    assert_eq!(lost.len(), 1, "{found:#?}");
    assert!(lost[0].message.contains("no such file") && lost[0].message.contains("fsync"), "{:?}", lost[0]);
    // The real final state keeps the file: clean.
    let last = replay.state_at(PersistenceModel::Adr, end);
    let (_, kept) = replay.view_at(PersistenceModel::Adr, end, &last.choice_all()).expect("fits");
    let found = judge_image(&t, PersistenceModel::Adr, Arc::new(kept), &replay.record, (end, false), None)
        .expect("judged");
    assert!(found.is_empty(), "{found:#?}");
}

/// The size an fsync acknowledged must survive: the media from before a size-extending write
/// was made durable, judged after the fsync that covered it, is a LostWrite naming the size.
#[test]
fn an_acknowledged_size_that_recovery_shrank_is_a_lost_write() {
    let t = target("", AllocPolicy::ZeroBeforeCommit);
    let w = one_thread(vec![
        Op::Create { file: F0 },
        Op::Fsync { file: F0 },
        Op::Truncate { file: F0, size: 8192 },
        Op::Fsync { file: F0 },
    ]);
    let replay = replay_run(&t, &w).expect("runs");
    let end = CrashPoint(replay.trace.len());
    let first_fsync_done = replay.record.acks.first().expect("the first fsync").at;
    // Right after the first fsync: the file is durable at size 0, the truncate not yet.
    let point = CrashPoint(first_fsync_done);
    let state = replay.state_at(PersistenceModel::Adr, point);
    let (_, small) = replay.view_at(PersistenceModel::Adr, point, &state.choice_none()).expect("fits");
    let found = judge_image(&t, PersistenceModel::Adr, Arc::new(small), &replay.record, (end, false), None)
        .expect("judged");
    assert!(
        found.iter().any(|v| v.class == ViolationClass::LostWrite
            && v.message.contains("size 0")
            && v.message.contains("8192")),
        "{found:#?}"
    );
    // Judged at its own crash point the same state is clean: only the second fsync promised 8192.
    let found = judge_image(
        &t,
        PersistenceModel::Adr,
        Arc::new(replay.view_at(PersistenceModel::Adr, point, &state.choice_none()).expect("fits").1),
        &replay.record,
        (point, false),
        None,
    )
    .expect("judged");
    assert!(found.is_empty(), "{found:#?}");
}
