//! One named scenario per mailing-list thread (docs/design.md §7), run through `exec::run` with a
//! hand-chosen schedule: the fixed model must behave (no findings, expected results), and the
//! thread's bugs, switched on one at a time, must show at run time as their catalogue class.
//!
//! Schedules are thread picks among the *runnable* threads (docs/design.md §5); each comment says what
//! interleaving the schedule produces. A thread's first step only reaches its first operation.

use crashsim::check::ViolationClass;
use crashsim::daxfs::fs::{AllocPolicy, Errno};
use crashsim::daxfs::{BLOCK_BYTES, Bug, BugSet};
use crashsim::pmem::{FlushKind, Op as Ev};
use crashsim::sched::RunEnd;
use crashsim::targets::daxfs::exec::{RunConfig, RunOutput, run};
use crashsim::workload::{FileSlot, MapSlot, Op, PinSlot, Workload, WorkloadOptions};

const PAGE: u64 = BLOCK_BYTES;
const POLICIES: [AllocPolicy; 2] = [AllocPolicy::ZeroBeforeCommit, AllocPolicy::UnwrittenEndIo];
/// Small PMD for the scenarios (8 blocks); the PMD logic is the same at 512.
const PMD_SMALL: u64 = 8;

const F0: FileSlot = FileSlot(0);
const F1: FileSlot = FileSlot(1);
const M0: MapSlot = MapSlot(0);
const M2: MapSlot = MapSlot(2);
const P0: PinSlot = PinSlot(0);

fn config(policy: AllocPolicy, bugs: BugSet) -> RunConfig {
    let mut c = RunConfig { device_bytes: 8 << 20, pmd_blocks: PMD_SMALL, ..RunConfig::default() };
    c.mount.policy = policy;
    c.mount.bugs = bugs;
    c
}

fn workload(threads: Vec<Vec<Op>>, schedule: &[u8]) -> Workload {
    let w = Workload { threads, schedule: schedule.to_vec(), options: WorkloadOptions::default() };
    w.validate().expect("scenario is a valid workload");
    w
}

/// A schedule of runs: `(thread, picks)`; afterwards the lowest-index runnable thread runs.
fn runs(segments: &[(u8, usize)]) -> Vec<u8> {
    segments.iter().flat_map(|&(t, n)| std::iter::repeat_n(t, n)).collect()
}

fn exec(w: &Workload, policy: AllocPolicy, bugs: BugSet) -> RunOutput {
    run(w, &config(policy, bugs)).expect("formatted device mounts")
}

/// The fixed model: no findings, every thread done, every op's result as `expected` says.
fn assert_clean(out: &RunOutput, expected: &[Vec<Result<(), Errno>>]) {
    assert_eq!(out.findings, vec![], "fixed model must not be flagged");
    assert!(matches!(out.end, RunEnd::Done { .. }), "{:?}", out.end);
    assert_eq!(out.results, expected);
}

fn all_ok(w: &Workload) -> Vec<Vec<Result<(), Errno>>> {
    w.threads.iter().map(|ops| vec![Ok(()); ops.len()]).collect()
}

/// `bug` alone shows at run time as one of `classes`.
fn assert_fires(w: &Workload, policy: AllocPolicy, bug: Bug, classes: &[ViolationClass]) {
    let out = exec(w, policy, BugSet::NONE.with(bug));
    assert!(
        out.findings.iter().any(|f| classes.contains(&f.class)),
        "{} under {policy:?} should show as {classes:?}; findings: {:?}",
        bug.id(),
        out.findings
    );
}

/// Trace index of the first event from `site` at or after `from` for which `pick` holds.
fn find_event(out: &RunOutput, from: usize, site: &str, pick: impl Fn(&Ev) -> bool) -> Option<usize> {
    let events = out.device.trace().events();
    (from..events.len()).find(|&i| events[i].site == site && pick(&events[i].op))
}

fn store(map: MapSlot, off: u64, len: u64) -> Op {
    Op::Store { map, off, len }
}

fn load(map: MapSlot, off: u64, len: u64) -> Op {
    Op::Load { map, off, len }
}

fn mmap(map: MapSlot, file: FileSlot, pages: u64) -> Op {
    Op::Mmap { map, file, off: 0, len: pages * PAGE, map_sync: false }
}

/// Thread 0's prelude: create file 0 with `pages` of hole, map it at M0.
fn prelude(pages: u64) -> Vec<Op> {
    vec![Op::Create { file: F0 }, Op::Truncate { file: F0, size: pages * PAGE }, mmap(M0, F0, pages)]
}

// ---------------------------------------------------------------------------------------------
// Unzeroed allocation: a write fault allocates a block; its old contents must never become file data.

fn seed_000_workload() -> Workload {
    let mut t0 = prelude(4);
    t0.extend([
        store(M0, PAGE + 64, 64),
        load(M0, PAGE, PAGE),
        Op::Fsync { file: F0 },
        Op::Fallocate { file: F0, off: 2 * PAGE, len: PAGE },
        Op::Read { file: F0, off: 2 * PAGE, len: PAGE },
        load(M0, 2 * PAGE, PAGE),
    ]);
    workload(vec![t0], &[])
}

#[test]
fn seed_000_write_fault_into_a_hole_zeroes_before_commit() {
    let w = seed_000_workload();
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &all_ok(&w));
        // The faulting store's block: every word but the 8 stored ones is zero on media.
        let block = out.record.events.iter().find_map(|e| match e {
            crashsim::targets::daxfs::exec::record::DataEvent::Write { block: Some(b), .. } => Some(*b),
            _ => None,
        });
        let b = block.expect("the store landed in a block");
        let mut buf = vec![0u8; PAGE as usize];
        out.device.read(crashsim::pmem::PmemAddr(b.0 * PAGE), &mut buf).unwrap();
        let nonzero = buf.chunks_exact(8).filter(|c| c.iter().any(|&x| x != 0)).count();
        assert_eq!(nonzero, 8, "{policy:?}: the new block was zeroed around the data");
        // Trace order: zero stores, their clwb, a fence, and only then the commit record that
        // makes the block file data (written extent).
        let addr = b.0 * PAGE;
        let zero = find_event(
            &out,
            0,
            "daxfs::iomap::zero_range",
            |op| matches!(*op, Ev::Store { addr: a, .. } if a == addr),
        )
        .expect("zero store of the new block");
        let written_site = match policy {
            AllocPolicy::ZeroBeforeCommit => "daxfs::iomap_begin::alloc",
            AllocPolicy::UnwrittenEndIo => "daxfs::end_io",
        };
        let clwb = (zero..out.device.trace().len())
            .find(|&i| {
                matches!(out.device.trace().event(i).op,
                    Ev::Flush { addr: a, kind: FlushKind::Clwb, .. } if a == addr)
            })
            .expect("zeroes written back");
        let fence = (clwb..out.device.trace().len())
            .find(|&i| out.device.trace().event(i).op == Ev::Fence)
            .expect("a fence after the write-back");
        let commit = find_event(&out, zero, written_site, |op| matches!(op, Ev::Store { .. }))
            .expect("the commit making the block written");
        // The journal body precedes the commit record; the commit record is the last store of
        // that transaction, which must follow the fence.
        let last_store = (commit..out.device.trace().len())
            .take_while(|&i| out.device.trace().event(i).site == written_site)
            .filter(|&i| matches!(out.device.trace().event(i).op, Ev::Store { .. }))
            .last()
            .unwrap();
        assert!(
            zero < clwb && clwb < fence && fence < last_store,
            "{policy:?}: zero {zero} clwb {clwb} fence {fence} commit {last_store}"
        );
    }
}

#[test]
fn seed_000_bugs_fire_at_run_time() {
    let w = seed_000_workload();
    for policy in POLICIES {
        assert_fires(&w, policy, Bug::NoZeroOnAlloc, &[ViolationClass::StaleData]);
        assert_fires(&w, policy, Bug::ReadMapsUnwritten, &[ViolationClass::StaleData]);
    }
}

/// Two write faults on one two-block unwritten extent: thread 1's `iomap_begin` sees the extent
/// still unwritten while thread 0 is between `iomap_begin` and installing its PTE.
fn seed_000_double_zero_workload(schedule: &[u8]) -> Workload {
    let mut t0 = prelude(2);
    t0.extend([Op::Fallocate { file: F0, off: 0, len: 2 * PAGE }, store(M0, 0, 64), load(M0, 0, 64)]);
    let t1 = vec![store(M0, PAGE, 64), load(M0, 0, 64)];
    workload(vec![t0, t1], schedule)
}

// ---------------------------------------------------------------------------------------------
// The GUP write-pin problem: a write pin must go through the write fault (allocation, ENOSPC) before any DMA.

/// Pin page 0 of a hole for writing, DMA into it, unpin, read it back.
fn seed_001_workload() -> Workload {
    let mut t0 = prelude(2);
    t0.extend([
        Op::Pin { pin: P0, map: M0, off: 0, len: PAGE, write: true },
        Op::DmaWrite { pin: P0, off: 64, len: 64 },
        Op::Unpin { pin: P0 },
        Op::Read { file: F0, off: 0, len: 256 },
        load(M0, 0, 256),
    ]);
    workload(vec![t0], &[])
}

/// A device with `data_pages` data blocks, all preallocated to file 1 before the pin of file 0.
fn seed_001_enospc_workload(data_pages: u64) -> Workload {
    let mut t0 = prelude(2);
    t0.extend([
        Op::Create { file: F1 },
        Op::Fallocate { file: F1, off: 0, len: data_pages * PAGE },
        Op::Pin { pin: P0, map: M0, off: 0, len: PAGE, write: true },
        Op::DmaWrite { pin: P0, off: 0, len: 64 },
        Op::Unpin { pin: P0 },
        Op::Read { file: F0, off: 0, len: 64 },
    ]);
    workload(vec![t0], &[])
}

// ---------------------------------------------------------------------------------------------
// The zero-page race: a read fault maps a hole while a write fault allocates it.

/// Thread 0 read-faults page 0 through M0 while thread 1 write-faults it through its own
/// mapping M2; both then load it again.
fn seed_002_workload(schedule: &[u8]) -> Workload {
    let mut t0 = prelude(2);
    t0.extend([load(M0, 0, 64), load(M0, 0, 64), Op::Read { file: F0, off: 0, len: 64 }]);
    let t1 = vec![mmap(M2, F0, 2), store(M2, 0, 64), load(M2, 0, 64)];
    workload(vec![t0, t1], schedule)
}

/// A PMD write fault, then loads of the whole PMD.
fn seed_002_pmd_workload() -> Workload {
    let mut t0 = prelude(PMD_SMALL);
    t0.extend([store(M0, 0, 64), load(M0, 0, PMD_SMALL * PAGE)]);
    workload(vec![t0], &[])
}

// ---------------------------------------------------------------------------------------------
// The fault-around race: fault-around (map_pages) races a hole punch.

/// Thread 0 writes pages 0..4, maps real entries for pages 1 and 2, then punches them, makes
/// the free durable and reuses the blocks for file 1. Thread 1 read-faults page 0 through M2
/// (fault-around maps 1 and 2 if it may) and loads pages 1 and 2 afterwards.
fn seed_003_workload(schedule: &[u8]) -> Workload {
    let t0 = vec![
        Op::Create { file: F0 },
        Op::Write { file: F0, off: 0, len: 4 * PAGE },
        mmap(M0, F0, 4),
        store(M0, PAGE, 64),
        store(M0, 2 * PAGE, 64),
        Op::PunchHole { file: F0, off: PAGE, len: 2 * PAGE },
        Op::Fsync { file: F0 },
        Op::Create { file: F1 },
        Op::Write { file: F1, off: 0, len: 2 * PAGE },
    ];
    let t1 = vec![mmap(M2, F0, 4), load(M2, 0, 8), load(M2, PAGE, 64), load(M2, 2 * PAGE, 64)];
    let mut w = workload(vec![t0, t1], schedule);
    w.options.fault_around = true;
    w
}

/// Thread 1 keeps a writable PTE on page 1 and stores through it while thread 0 punches.
fn seed_003_store_workload(schedule: &[u8]) -> Workload {
    let t0 = vec![
        Op::Create { file: F0 },
        Op::Write { file: F0, off: 0, len: 2 * PAGE },
        Op::PunchHole { file: F0, off: PAGE, len: PAGE },
        Op::Read { file: F0, off: PAGE, len: 64 },
    ];
    let t1 = vec![mmap(M2, F0, 2), store(M2, PAGE, 64), store(M2, PAGE, 64), store(M2, PAGE, 64)];
    workload(vec![t0, t1], schedule)
}

// ---------------------------------------------------------------------------------------------
// The DMA-pin truncate race: truncate must wait for DMA pins (break_layouts).

/// Thread 0 write-pins page 2 and DMAs into it twice; thread 1 truncates the file to one page.
fn seed_004_workload(schedule: &[u8]) -> Workload {
    let mut t0 = prelude(4);
    t0.extend([
        Op::Pin { pin: P0, map: M0, off: 2 * PAGE, len: PAGE, write: true },
        Op::DmaWrite { pin: P0, off: 0, len: 64 },
        Op::DmaWrite { pin: P0, off: 64, len: 64 },
        Op::Unpin { pin: P0 },
    ]);
    let t1 = vec![Op::Truncate { file: F0, size: PAGE }, Op::Read { file: F0, off: 0, len: 64 }];
    workload(vec![t0, t1], schedule)
}

// ---------------------------------------------------------------------------------------------
// The tests for seeds 000 (double zero), 001-004.

/// t0 runs its prelude and fallocate and enters the store fault on page 0, which sleeps between
/// `iomap_begin` and installing the PTE; t1's fault on page 1 then runs `iomap_begin` on the
/// same, still unwritten, extent.
fn seed_000_double_zero_schedule() -> Vec<u8> {
    runs(&[(0, 7), (1, 4)])
}

#[test]
fn seed_000_double_zero_unwritten_two_faults_on_one_extent() {
    let w = seed_000_double_zero_workload(&seed_000_double_zero_schedule());
    for policy in POLICIES {
        assert_clean(&exec(&w, policy, BugSet::NONE), &all_ok(&w));
        assert_fires(&w, policy, Bug::DoubleZeroUnwritten, &[ViolationClass::IncoherentView]);
    }
}

#[test]
fn seed_001_write_pin_allocates_before_dma() {
    let w = seed_001_workload();
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &all_ok(&w));
        let written_site = match policy {
            AllocPolicy::ZeroBeforeCommit => "daxfs::iomap_begin::alloc",
            AllocPolicy::UnwrittenEndIo => "daxfs::end_io",
        };
        let commit = find_event(&out, 0, written_site, |op| matches!(op, Ev::Store { .. }))
            .expect("the pin's allocation commits");
        let dma = find_event(&out, 0, "dma::write", |op| matches!(op, Ev::StoreNt { .. }))
            .expect("the DMA reached the device");
        assert!(commit < dma, "{policy:?}: allocation commit {commit} must precede the DMA {dma}");
        assert_fires(&w, policy, Bug::PinWithoutWriteFault, &[ViolationClass::IncoherentView]);
    }
}

#[test]
fn seed_001_enospc_is_reported_at_pin_time() {
    let data_pages = config(AllocPolicy::default(), BugSet::NONE).geometry().unwrap().data_blocks();
    let w = seed_001_enospc_workload(data_pages);
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        let mut expected = all_ok(&w);
        expected[0][5] = Err(Errno::NoSpace);
        expected[0][6] = Err(Errno::Invalid("no pin in slot"));
        expected[0][7] = Err(Errno::Invalid("no pin in slot"));
        assert_clean(&out, &expected);
        assert!(out.device.trace().events().iter().all(|e| e.site != "dma::write"), "no DMA happened");
        // The buggy pin maps the zero page, the DMA is dropped and the ENOSPC with it.
        let buggy = exec(&w, policy, BugSet::NONE.with(Bug::PinWithoutWriteFault));
        assert_eq!(buggy.results[0][5], Ok(()), "{policy:?}: the buggy pin hides ENOSPC");
        assert_fires(&w, policy, Bug::PinWithoutWriteFault, &[ViolationClass::IncoherentView]);
    }
}

/// t0 enters its load's read fault (`iomap_begin` sees the hole) and sleeps; t1 maps the file
/// and its store's write fault allocates page 0; t0 then installs its PTE and loads.
fn seed_002_entry_lock_schedule() -> Vec<u8> {
    runs(&[(0, 7), (1, 6)])
}

/// t0's load maps the zero page; t1's store then replaces the entry with a real block while
/// t0's zero-page PTE must go; t0 loads again.
fn seed_002_zero_page_schedule() -> Vec<u8> {
    runs(&[(0, 8), (1, 8)])
}

#[test]
fn seed_002_read_fault_races_write_fault() {
    for schedule in [seed_002_entry_lock_schedule(), seed_002_zero_page_schedule()] {
        let w = seed_002_workload(&schedule);
        for policy in POLICIES {
            // Both loads of t0 after the race, its read() and t1's load are compared with the
            // reference: the views agree.
            assert_clean(&exec(&w, policy, BugSet::NONE), &all_ok(&w));
        }
    }
    let locking = seed_002_workload(&seed_002_entry_lock_schedule());
    let unmapping = seed_002_workload(&seed_002_zero_page_schedule());
    for policy in POLICIES {
        assert_fires(&locking, policy, Bug::NoEntryLock, &[ViolationClass::IncoherentView]);
        assert_fires(&unmapping, policy, Bug::ZeroPageNotUnmapped, &[ViolationClass::IncoherentView]);
    }
}

#[test]
fn seed_002_pmd_fault_zeroes_the_whole_pmd() {
    let w = seed_002_pmd_workload();
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &all_ok(&w));
        let zero = find_event(&out, 0, "daxfs::iomap::zero_range", |op| matches!(op, Ev::Store { .. }))
            .expect("PMD zeroing");
        let Ev::Store { len, addr, .. } = out.device.trace().event(zero).op else { unreachable!() };
        assert_eq!(u64::from(len), PMD_SMALL * PAGE, "{policy:?}: one zeroing store of the whole PMD");
        assert_eq!(addr % (PMD_SMALL * PAGE), 0, "PMD-aligned block");
        assert_fires(&w, policy, Bug::PmdPartialZero, &[ViolationClass::StaleData]);
    }
}

/// t0 creates and writes file 0; t1 maps it and its read fault on page 0 starts fault-around
/// (the buggy one looks up the entries of pages 1 and 2 and sleeps); t0 maps those entries,
/// punches them, makes the free durable and writes file 1 into the freed blocks.
fn seed_003_schedule() -> Vec<u8> {
    runs(&[(0, 1), (1, 1), (0, 3), (1, 3)])
}

#[test]
fn seed_003_fault_around_races_punch() {
    let w = seed_003_workload(&seed_003_schedule());
    for policy in POLICIES {
        // t1's loads of the punched pages compare with zeros: nothing freed stays mapped.
        assert_clean(&exec(&w, policy, BugSet::NONE), &all_ok(&w));
        assert_fires(
            &w,
            policy,
            Bug::MapPagesUnlocked,
            &[ViolationClass::UseAfterFree, ViolationClass::ForeignData],
        );
    }
}

/// t0 writes two pages; t1 maps page 1 and stores (a writable PTE); t0 punches page 1 and the
/// buggy punch sleeps between freeing and unmapping; t1 stores through its PTE.
fn seed_003_store_schedule() -> Vec<u8> {
    runs(&[(0, 4), (1, 4), (0, 8), (1, 2)])
}

#[test]
fn seed_003_store_races_punch_free() {
    let w = seed_003_store_workload(&seed_003_store_schedule());
    for policy in POLICIES {
        assert_clean(&exec(&w, policy, BugSet::NONE), &all_ok(&w));
        assert_fires(
            &w,
            policy,
            Bug::FreeBeforeUnmap,
            &[ViolationClass::UseAfterFree, ViolationClass::ForeignData],
        );
    }
}

/// t0 creates, sizes and maps the file and pins page 2; t1 starts the truncate (it must block in
/// `break_layouts`); t0 then DMAs and unpins.
fn seed_004_schedule() -> Vec<u8> {
    runs(&[(0, 1), (1, 1), (0, 6), (1, 7)])
}

#[test]
fn seed_004_truncate_waits_for_unpin() {
    let w = seed_004_workload(&seed_004_schedule());
    let free_site = "daxfs::punch::free";
    let dma = |out: &RunOutput| {
        let events = out.device.trace().events();
        (0..events.len()).filter(|&i| events[i].site == "dma::write").collect::<Vec<_>>()
    };
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &all_ok(&w));
        let free =
            find_event(&out, 0, free_site, |op| matches!(op, Ev::Store { .. })).expect("truncate frees");
        assert!(dma(&out).iter().all(|&d| d < free), "{policy:?}: every DMA precedes the free");
        // The same schedule with break_layouts skipped frees the block between the DMAs: the
        // truncating thread really ran inside the pin window and was held off above.
        let buggy = exec(&w, policy, BugSet::NONE.with(Bug::TruncateIgnoresPin));
        let free = find_event(&buggy, 0, free_site, |op| matches!(op, Ev::Store { .. })).expect("frees");
        assert!(dma(&buggy).iter().any(|&d| d > free), "{policy:?}: schedule puts truncate in the window");
        assert_fires(
            &w,
            policy,
            Bug::TruncateIgnoresPin,
            &[ViolationClass::UseAfterFree, ViolationClass::ForeignData],
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions for model bugs these scenarios found.

/// truncate once read the size before taking i_rwsem: t1's truncate saw size 0, decided to
/// "grow" to one page, slept on the lock while t0 sized the file to 4 pages and wrote page 2,
/// then set the size to one page without freeing page 2 (fsck BeyondSize, a debug assert).
#[test]
fn regression_truncate_decides_grow_or_shrink_under_i_rwsem() {
    let t0 = vec![
        Op::Create { file: F0 },
        Op::Truncate { file: F0, size: 4 * PAGE },
        Op::Write { file: F0, off: 2 * PAGE, len: 64 },
    ];
    let t1 = vec![Op::Truncate { file: F0, size: PAGE }, Op::Read { file: F0, off: 0, len: 4 * PAGE }];
    let w = workload(vec![t0, t1], &runs(&[(0, 2), (1, 2)]));
    for policy in POLICIES {
        let mut out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &all_ok(&w));
        out.device.rebase();
        let store = crashsim::daxfs::MetaStore::mount(&mut out.device, BugSet::NONE).unwrap();
        let inode = store.inode(crashsim::daxfs::Ino(0)).unwrap();
        assert_eq!(inode.size_bytes, PAGE, "{policy:?}: t1's truncate ran last and shrank");
        assert!(inode.extents.is_empty(), "{policy:?}: page 2's block was freed");
    }
}

/// An unlinked inode number was reused at once: t0's write resolved file 0 (inode 0), slept on
/// i_rwsem while t1 unlinked and re-created the slot (inode 0 again), then wrote file 1's tags
/// into the new file (ForeignData). Now the new file gets another inode; the stale write finds
/// its inode gone.
#[test]
fn regression_unlinked_inode_not_reused_under_a_racing_write() {
    let t0 = vec![Op::Create { file: F0 }, Op::Write { file: F0, off: 0, len: 64 }];
    let t1 = vec![Op::Unlink { file: F0 }, Op::Create { file: F0 }, Op::Read { file: F0, off: 0, len: 64 }];
    let w = workload(vec![t0, t1], &runs(&[(0, 3), (1, 20)]));
    for policy in POLICIES {
        let out = exec(&w, policy, BugSet::NONE);
        assert_clean(&out, &[vec![Ok(()), Err(Errno::NoEntry)], vec![Ok(()); 3]]);
        assert_eq!(out.record.files.len(), 2);
        assert_ne!(out.record.files[0].ino, out.record.files[1].ino, "{policy:?}: inode number reused");
    }
}
