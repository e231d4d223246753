//! The daxfs crash oracle fires on hand-made bad crash states: each test tampers with the media
//! a clean run left behind, recovers it through the target, and expects one violation class.

use std::sync::Arc;

use crashsim::check::ViolationClass;
use crashsim::daxfs::tag::{DataTag, Poison};
use crashsim::daxfs::{BlockNr, Ino};
use crashsim::pmem::{Backing, CrashPoint, Device, PmemAddr};
use crashsim::target::Target;
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;
use crashsim::targets::daxfs::exec::record::RunRecord;
use crashsim::workload::{FileSlot, Op, Workload, WorkloadOptions};

/// A clean run: create a file, write 8 words, fsync. Returns the final media, the record, the
/// crash point "after everything", and the block holding the file's first page.
fn clean_run() -> (DaxfsTarget, Arc<dyn Backing>, RunRecord, CrashPoint, BlockNr) {
    let target = DaxfsTarget::new(RunConfig { pmd_blocks: 8, ..RunConfig::default() });
    let f = FileSlot(0);
    let ops = vec![Op::Create { file: f }, Op::Write { file: f, off: 0, len: 64 }, Op::Fsync { file: f }];
    let workload = Workload { threads: vec![ops], schedule: vec![], options: WorkloadOptions::default() };
    let mut dev = target.format().expect("mkfs");
    let out = target.run(&workload, &mut dev).expect("run");
    assert!(out.violations.is_empty(), "clean run: {:?}", out.violations);
    let point = CrashPoint(dev.trace().len());
    let (_, image, _) = dev.into_parts();
    let media: Arc<dyn Backing> = Arc::new(image);
    let mut probe = Device::with_backing(Arc::clone(&media));
    let store = target.recover(&mut probe).expect("recover");
    let block = store.inode(Ino(0)).expect("file").lookup(0).expect("mapped").phys;
    (target, media, out.record, point, block)
}

/// Recovers `media` with `tamper` applied first, and returns the crash oracle's classes.
fn check_tampered(
    tamper: impl FnOnce(&mut Device, PmemAddr),
    point_override: Option<CrashPoint>,
) -> Vec<ViolationClass> {
    let (target, media, record, point, block) = clean_run();
    let mut dev = Device::with_backing(media);
    let store = target.recover(&mut Device::with_backing(Arc::clone(dev.initial()))).expect("recover");
    let addr = store.geometry().block_addr(block);
    tamper(&mut dev, addr);
    let mounted = target.recover(&mut dev).expect("recover tampered");
    target
        .check(&mounted, &dev, &record, point_override.unwrap_or(point))
        .into_iter()
        .map(|v| v.class)
        .collect()
}

#[test]
fn untouched_state_is_clean() {
    assert_eq!(check_tampered(|_, _| {}, None), vec![]);
}

#[test]
fn poisoned_word_in_a_file_is_stale_data() {
    let poison = Poison { generation: 0, block: 77, word_in_block: 3 }.encode();
    let classes =
        check_tampered(|d, a| d.store_u64(PmemAddr(a.0 + 3 * 8), poison, "test::tamper").unwrap(), None);
    assert_eq!(classes, vec![ViolationClass::StaleData]);
}

#[test]
fn missing_acknowledged_word_is_lost_write() {
    let classes = check_tampered(|d, a| d.store_u64(PmemAddr(a.0 + 2 * 8), 0, "test::tamper").unwrap(), None);
    assert_eq!(classes, vec![ViolationClass::LostWrite]);
}

#[test]
fn another_files_tag_is_foreign_data() {
    let foreign = DataTag { file_id: 99, word_off: 5, version: 1 }.encode();
    let classes =
        check_tampered(|d, a| d.store_u64(PmemAddr(a.0 + 5 * 8), foreign, "test::tamper").unwrap(), None);
    assert_eq!(classes, vec![ViolationClass::ForeignData]);
}

#[test]
fn another_offsets_tag_of_the_same_file_is_foreign_data() {
    let misplaced = DataTag { file_id: 1, word_off: 6, version: 1 }.encode();
    let classes =
        check_tampered(|d, a| d.store_u64(PmemAddr(a.0 + 5 * 8), misplaced, "test::tamper").unwrap(), None);
    assert_eq!(classes, vec![ViolationClass::ForeignData]);
}

#[test]
fn an_inode_that_was_never_created_before_the_crash_is_allocator_inconsistent() {
    // The same media judged as if power failed before the create: the live inode has no origin.
    let classes = check_tampered(|_, _| {}, Some(CrashPoint(0)));
    assert!(classes.contains(&ViolationClass::AllocatorInconsistent), "{classes:?}");
}

#[test]
fn a_corrupt_superblock_fails_recovery_with_a_typed_error() {
    let (target, media, _, _, _) = clean_run();
    let mut dev = Device::with_backing(media);
    dev.store_u64(PmemAddr(0), 0xdead_beef, "test::tamper").unwrap();
    let err = target.recover(&mut dev).expect_err("mount must refuse a corrupt superblock");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

/// Under eADR a crash can cut a wide user store between two units. The oracle must then count
/// that store's write as begun (its data may show), though the crash point is its own index.
#[test]
fn torn_user_store_under_eadr_is_judged_as_begun() {
    use crashsim::crash::{judge_image, replay_run};
    use crashsim::pmem::{PersistenceModel, View};
    use crashsim::workload::MapSlot;

    let target = DaxfsTarget::new(RunConfig { pmd_blocks: 8, ..RunConfig::default() });
    let (f, m) = (FileSlot(0), MapSlot(0));
    let ops = vec![
        Op::Create { file: f },
        Op::Write { file: f, off: 0, len: 4096 },
        Op::Mmap { map: m, file: f, off: 0, len: 4096, map_sync: true },
        Op::Store { map: m, off: 0, len: 4096 },
    ];
    let workload = Workload { threads: vec![ops], schedule: vec![], options: WorkloadOptions::default() };
    let replay = replay_run(&target, &workload).expect("run");
    let events = replay.trace.events();
    let point = (0..events.len()).rev().find(|&i| events[i].site == "user::store").expect("a user store");
    let point = CrashPoint(point);
    let state = replay.state_at(PersistenceModel::Eadr, point);
    assert_eq!(state.torn.len(), 511, "a 4 KiB store tears into 512 states");
    let choice = state.choice_all();
    let judge = |torn: bool| -> Vec<ViolationClass> {
        let view: Arc<dyn Backing> = Arc::new(View::new(&state, &choice).expect("valid"));
        let found = judge_image(&target, PersistenceModel::Eadr, view, &replay.record, (point, torn), None);
        found.expect("no recovery crash").into_iter().map(|v| v.class).collect()
    };
    assert_eq!(judge(true), vec![], "the torn store's own data is not foreign");
    // Judged as a cut before the store began, the same image shows data not yet written.
    assert_eq!(judge(false), vec![ViolationClass::ForeignData]);
}

/// An msync whose range runs past the end of its mapping writes back, and so acknowledges, only
/// the mapped part: a store beyond it through another, longer mapping of the same file is not
/// promised durable. `crash_workload` found this on the fixed model (minimized to the workload
/// below): the acknowledgement covered the whole range asked for, so the crash oracle called the
/// unflushed store a lost write.
#[test]
fn an_msync_past_its_mapping_acknowledges_only_the_mapped_range() {
    use crashsim::crash::{CrashConfig, explore_workload};
    use crashsim::daxfs::fs::AllocPolicy;
    use crashsim::workload::MapSlot;
    let (f0, m0, m1) = (FileSlot(0), MapSlot(0), MapSlot(1));
    let at = 2_088_960; // page 510 of a 2 MiB file, outside the 8 KiB mapping
    let w = Workload {
        threads: vec![
            vec![
                Op::Create { file: f0 },
                Op::Mmap { map: m0, file: f0, off: 0, len: 8192, map_sync: false },
                Op::Mmap { map: m1, file: f0, off: 0, len: 4 << 20, map_sync: false },
                Op::Load { map: m1, off: at, len: 8 },
                Op::Store { map: m1, off: at, len: 8 },
            ],
            vec![Op::Truncate { file: f0, size: 2 << 20 }, Op::Msync { map: m0, off: 0, len: 4 << 20 }],
        ],
        schedule: vec![0, 0, 0, 1, 1, 1],
        options: WorkloadOptions::default(),
    };
    w.validate().expect("a valid workload");
    for policy in [AllocPolicy::ZeroBeforeCommit, AllocPolicy::UnwrittenEndIo] {
        let mut config = RunConfig::default();
        config.mount.policy = policy;
        let report = explore_workload(&DaxfsTarget::new(config), &CrashConfig::default(), 0, &w, None)
            .expect("the workload runs");
        assert!(report.crash_points > 0, "{policy:?}: crash points explored");
        assert_eq!(report.violations, vec![], "{policy:?}: the fixed model is clean");
    }
}
