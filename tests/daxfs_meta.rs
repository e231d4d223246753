//! The daxfs metadata layer through its public API: commit, mount/replay, crashes during
//! commit and during recovery, corruption, the allocator's busy extents, fsck on media.

use std::sync::Arc;

use crashsim::daxfs::journal::slot_addr;
use crashsim::daxfs::layout::{CKPT_SLOT_OFFSETS, INODE_BYTES};
use crashsim::daxfs::{
    Bug, BugSet, Extent, ExtentState, FsError, Geometry, Ino, MetaStore, Metadata, Record, Tid, fsck_media,
    mkfs,
};
use crashsim::pmem::{
    Backing, Choice, CrashPoint, Device, Granularity, Op, PersistenceModel, PmemAddr, Tracker, View,
    crash_points,
};

const SITE: &str = "tests::daxfs_meta";

fn small_geom() -> Geometry {
    Geometry::new(4 << 20).unwrap().with_pmd_blocks(8)
}

fn fresh(geom: &Geometry, bugs: BugSet) -> (Device, MetaStore) {
    let mut dev = mkfs(geom).unwrap();
    let store = MetaStore::mount(&mut dev, bugs).unwrap();
    (dev, store)
}

/// Creates inode `ino` with `blocks` written blocks; one transaction.
fn write_file(dev: &mut Device, s: &mut MetaStore, ino: u32, blocks: u64) -> Tid {
    let start = s.alloc(dev, blocks, 1).unwrap();
    let ino = Ino(ino);
    let records = [
        Record::InodeCreate { ino },
        Record::BitmapSet { start, len: blocks },
        Record::ExtentSet {
            ino,
            extent: Extent { file_block: 0, phys: start, len: blocks, state: ExtentState::Written },
        },
        Record::InodeSize { ino, size_bytes: blocks * 4096 },
    ];
    s.commit(dev, &records, SITE).unwrap()
}

/// Deletes inode `ino` and frees its blocks; one transaction.
fn delete_file(dev: &mut Device, s: &mut MetaStore, ino: u32) -> Tid {
    let extents = s.inode(Ino(ino)).unwrap().extents.clone();
    let mut records: Vec<Record> =
        extents.iter().map(|e| Record::BitmapClear { start: e.phys, len: e.len }).collect();
    records.push(Record::InodeDelete { ino: Ino(ino) });
    s.commit(dev, &records, SITE).unwrap()
}

/// The device as it would be after power loss, every pending store kept (`all`) or lost.
fn crash_image(dev: &Device, point: CrashPoint, all: bool) -> Device {
    let state = Tracker::state_at(dev.trace(), Arc::clone(dev.initial()), PersistenceModel::Adr, point);
    let choice = if all { state.choice_all() } else { state.choice_none() };
    Device::with_backing(Arc::new(View::new(&state, &choice).unwrap()))
}

fn end(dev: &Device) -> CrashPoint {
    CrashPoint(dev.trace().len())
}

fn remount(dev: &Device) -> (Device, Result<MetaStore, FsError>) {
    let mut d = Device::with_backing(Arc::new(dev.image().clone()));
    let s = MetaStore::mount(&mut d, BugSet::NONE);
    (d, s)
}

#[test]
fn commit_then_mount_replays_the_same_metadata() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    write_file(&mut dev, &mut s, 0, 3);
    write_file(&mut dev, &mut s, 1, 5);
    delete_file(&mut dev, &mut s, 0);
    let t = write_file(&mut dev, &mut s, 2, 2);
    s.force(&mut dev, t).unwrap();
    let (_, mounted) = remount(&dev);
    let m = mounted.unwrap();
    assert_eq!(m.meta(), s.meta());
    assert_eq!(m.last_tid(), Some(t));
    assert!(m.is_durable(t));
    assert_eq!(fsck_media(&dev).unwrap(), vec![]);
}

#[test]
fn async_commit_is_lost_without_force_and_kept_with_it() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let t1 = write_file(&mut dev, &mut s, 0, 2);
    s.force(&mut dev, t1).unwrap();
    let after_t1 = s.meta().clone();
    let t2 = write_file(&mut dev, &mut s, 1, 2);
    assert!(s.is_durable(t1) && !s.is_durable(t2));
    let lost = MetaStore::mount(&mut crash_image(&dev, end(&dev), false), BugSet::NONE).unwrap();
    assert_eq!(lost.meta(), &after_t1, "unflushed commit record: tid 2 is a torn tail");
    let kept = MetaStore::mount(&mut crash_image(&dev, end(&dev), true), BugSet::NONE).unwrap();
    assert_eq!(kept.meta(), s.meta());
}

#[test]
fn every_crash_point_of_a_workload_recovers_to_a_committed_prefix() {
    let g = small_geom().with_journal_blocks(16);
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let mut prefixes: Vec<Metadata> = vec![s.meta().clone()];
    for i in 0..6 {
        write_file(&mut dev, &mut s, i, 1 + u64::from(i));
        prefixes.push(s.meta().clone());
        if i % 2 == 1 {
            delete_file(&mut dev, &mut s, i - 1);
            prefixes.push(s.meta().clone());
        }
        if i == 3 {
            s.checkpoint(&mut dev).unwrap();
        }
    }
    for p in crash_points(dev.trace(), Granularity::Fence) {
        for all in [false, true] {
            let mut d = crash_image(&dev, p, all);
            let m = MetaStore::mount(&mut d, BugSet::NONE).unwrap_or_else(|e| panic!("point {p:?}: {e}"));
            assert!(prefixes.contains(m.meta()), "point {p:?} all={all}: not a committed prefix");
        }
    }
}

#[test]
fn torn_tail_stops_quietly_and_its_tid_is_not_reused() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let t1 = write_file(&mut dev, &mut s, 0, 1);
    s.force(&mut dev, t1).unwrap();
    let before = s.meta().clone();
    write_file(&mut dev, &mut s, 1, 1);
    // Crash after the body of tid 2 is fenced, before its commit record persists.
    let mut d = crash_image(&dev, end(&dev), false);
    let (mut m, info, problems) = MetaStore::mount_unchecked(&mut d, BugSet::NONE).unwrap();
    assert!(info.torn && info.replayed == 1 && problems.is_empty(), "{info:?}");
    assert_eq!(m.meta(), &before);
    let t = write_file(&mut d, &mut m, 3, 1);
    assert_eq!(t, Tid(3), "tid 2 is skipped after a torn tail");
    m.force(&mut d, t).unwrap();
    let (_, again) = remount(&d);
    assert_eq!(again.unwrap().meta(), m.meta());
}

#[test]
fn circular_wrap_forces_checkpoints_and_replays() {
    let g = small_geom().with_journal_blocks(16);
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let slots = g.journal_slots();
    let mut t = Tid(0);
    for round in 0..(3 * slots / 4) {
        let ino = (round % 4) as u32;
        if s.inode(Ino(ino)).is_ok() {
            delete_file(&mut dev, &mut s, ino);
        }
        t = write_file(&mut dev, &mut s, ino, 1 + round % 3);
    }
    assert!(s.checkpoint_state().seq >= 2, "journal of {slots} slots wrapped");
    assert!(s.checkpoint_state().tail % slots != 0 || s.journal_used_slots() > 0);
    s.force(&mut dev, t).unwrap();
    let (_, m) = remount(&dev);
    assert_eq!(m.unwrap().meta(), s.meta());
    assert!(matches!(
        s.commit(&mut dev, &vec![Record::InodeCreate { ino: Ino(9) }; slots as usize], SITE),
        Err(FsError::TooBig(_))
    ));
}

fn flip(dev: &Device, addr: u64, mask: u8) -> Device {
    let mut d = Device::with_backing(Arc::new(dev.image().clone()));
    let word = addr & !7;
    let v = d.read_u64(PmemAddr(word)).unwrap() ^ (u64::from(mask) << ((addr - word) * 8));
    d.store_u64(PmemAddr(word), v, SITE).unwrap();
    d
}

fn assert_corrupt(dev: &Device, what: &str) {
    let mut d = Device::with_backing(Arc::new(dev.image().clone()));
    match MetaStore::mount(&mut d, BugSet::NONE) {
        Err(FsError::Corrupt { .. }) => {}
        other => panic!("{what}: expected Corrupt, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn corrupt_superblock_and_home_metadata_are_typed_errors() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    write_file(&mut dev, &mut s, 0, 4);
    s.checkpoint(&mut dev).unwrap();
    let copy = s.checkpoint_state().home_copy;
    for off in 0..64 {
        assert_corrupt(&flip(&dev, off, 0x01), &format!("superblock byte {off}"));
        assert_corrupt(&flip(&dev, off, 0x80), &format!("superblock byte {off}"));
    }
    for off in 0..64 {
        let d = flip(&flip(&dev, CKPT_SLOT_OFFSETS[0] + off, 0x04), CKPT_SLOT_OFFSETS[1] + off, 0x04);
        assert_corrupt(&d, &format!("both checkpoint slots, byte {off}"));
    }
    let home = g.block_addr(g.home_start(copy)).0;
    for off in (0..16).chain((0..g.bitmap_bytes()).step_by(7).map(|o| 4096 + o)) {
        assert_corrupt(&flip(&dev, home + off, 0x10), &format!("home header/bitmap byte {off}"));
    }
    let inode0 = g.inode_addr(copy, Ino(0)).0;
    for off in (0..INODE_BYTES as u64).step_by(5) {
        assert_corrupt(&flip(&dev, inode0 + off, 0x20), &format!("inode byte {off}"));
    }
}

#[test]
fn a_torn_checkpoint_slot_falls_back_to_the_previous_checkpoint() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    write_file(&mut dev, &mut s, 0, 4);
    s.checkpoint(&mut dev).unwrap();
    let newest = CKPT_SLOT_OFFSETS[(s.checkpoint_state().seq % 2) as usize];
    let (_, m) = remount(&flip(&dev, newest + 9, 0xff));
    assert_eq!(m.unwrap().meta(), s.meta(), "older checkpoint + journal replay give the same state");
}

#[test]
fn garbage_in_the_journal_never_panics() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    for i in 0..4 {
        write_file(&mut dev, &mut s, i, 2);
    }
    s.force_all(&mut dev).unwrap();
    let journal = g.journal_range();
    let mut rng = crashsim::rng::rng_from_seed(7);
    use rand::RngExt as _;
    for _ in 0..200 {
        let addr = rng.random_range(journal.start..journal.start + 1024);
        let d = flip(&dev, addr, rng.random_range(1..=255u8));
        for bugs in [BugSet::NONE, BugSet::NONE.with(Bug::ReplaySkipsCrc)] {
            let mut dd = Device::with_backing(Arc::new(d.image().clone()));
            let _ = MetaStore::mount_unchecked(&mut dd, bugs);
        }
        assert!(fsck_media(&d).is_ok());
    }
}

#[test]
fn replay_skips_crc_applies_a_corrupt_record() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    write_file(&mut dev, &mut s, 0, 2);
    s.force_all(&mut dev).unwrap();
    // Slot 3 is tid 1's InodeSize record; its size field is at byte 24.
    let d = flip(&dev, slot_addr(&g, 3).0 + 25, 0x01);
    let (_, fixed) = remount(&d);
    assert!(fixed.unwrap().inode(Ino(0)).is_err(), "crc mismatch: tid 1 is not replayed");
    let mut dd = Device::with_backing(Arc::new(d.image().clone()));
    let (buggy, _, _) = MetaStore::mount_unchecked(&mut dd, BugSet::NONE.with(Bug::ReplaySkipsCrc)).unwrap();
    assert_eq!(buggy.inode(Ino(0)).unwrap().size_bytes, 2 * 4096 + 256, "garbage size replayed");
}

#[test]
fn commit_before_log_fenced_stores_the_commit_record_before_the_body_fence() {
    let g = small_geom();
    for (bugs, expect_early) in [(BugSet::NONE, false), (BugSet::NONE.with(Bug::CommitBeforeLogFenced), true)]
    {
        let (mut dev, mut s) = fresh(&g, bugs);
        write_file(&mut dev, &mut s, 0, 1);
        let commit_addr = slot_addr(&g, 4).0;
        let ev = dev.trace().events();
        let commit_at =
            ev.iter().position(|e| matches!(e.op, Op::Store { addr, .. } if addr == commit_addr)).unwrap();
        let fence_at = ev.iter().position(|e| e.op == Op::Fence).unwrap();
        assert_eq!(commit_at < fence_at, expect_early, "{bugs:?}");
    }
}

#[test]
fn freed_blocks_stay_busy_until_the_free_is_durable() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let t = write_file(&mut dev, &mut s, 0, 2);
    s.force(&mut dev, t).unwrap();
    let freed = s.inode(Ino(0)).unwrap().extents[0].phys;
    let tf = delete_file(&mut dev, &mut s, 0);
    let b = s.alloc(&mut dev, 1, 1).unwrap();
    assert_ne!(b, freed, "busy block handed out");
    assert!(!s.is_durable(tf));
    s.release(b, 1);
    s.force(&mut dev, tf).unwrap();
    assert_eq!(s.alloc(&mut dev, 1, 1).unwrap(), freed, "durable free: reusable");

    let (mut dev, mut s) = fresh(&g, BugSet::NONE.with(Bug::ReuseBeforeFreeCommit));
    let t = write_file(&mut dev, &mut s, 0, 2);
    s.force(&mut dev, t).unwrap();
    let freed = s.inode(Ino(0)).unwrap().extents[0].phys;
    let tf = delete_file(&mut dev, &mut s, 0);
    assert_eq!(s.alloc(&mut dev, 1, 1).unwrap(), freed, "bug: reused before the free is durable");
    assert!(!s.is_durable(tf));
}

#[test]
fn busy_blocks_standing_in_the_way_force_the_journal() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let data = g.data_blocks();
    write_file(&mut dev, &mut s, 0, data - 2);
    let t = write_file(&mut dev, &mut s, 1, 2);
    s.force(&mut dev, t).unwrap();
    assert_eq!(s.alloc(&mut dev, 1, 1), Err(FsError::NoSpace));
    let tf = delete_file(&mut dev, &mut s, 1);
    assert!(!s.is_durable(tf));
    let b = s.alloc(&mut dev, 2, 1).unwrap();
    assert!(s.is_durable(tf), "alloc forced the freeing transaction");
    assert_eq!(b.0, g.data_start().0 + data - 2);
}

#[test]
fn enospc_and_aligned_contiguous_allocation() {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    assert_eq!(s.alloc(&mut dev, g.data_blocks() + 1, 1), Err(FsError::NoSpace));
    assert!(matches!(s.alloc(&mut dev, 0, 1), Err(FsError::Invalid(_))));
    let a = s.alloc(&mut dev, 1, 1).unwrap();
    assert_eq!(a, g.data_start());
    let b = s.alloc(&mut dev, 8, 8).unwrap();
    assert_eq!(b.0 % 8, 0);
    assert!(b.0 > a.0);
    let c = s.alloc(&mut dev, 3, 1).unwrap();
    assert_eq!(c.0, a.0 + 1, "first fit fills the gap before the aligned run");
    let rest = g.blocks() - (b.0 + 8);
    let d = s.alloc(&mut dev, rest, 1).unwrap();
    assert_eq!(d.0, b.0 + 8);
    assert_eq!(s.alloc(&mut dev, 8, 8), Err(FsError::NoSpace));
}

/// Builds a committed-but-unreplayed image, mounts it (replay), and returns the mount's device.
fn recovery_run(bugs: BugSet) -> (Device, Metadata) {
    let g = small_geom();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    write_file(&mut dev, &mut s, 0, 3);
    write_file(&mut dev, &mut s, 1, 2);
    delete_file(&mut dev, &mut s, 0);
    write_file(&mut dev, &mut s, 2, 4);
    s.force_all(&mut dev).unwrap();
    let image: Arc<dyn Backing> = Arc::new(crash_image(&dev, end(&dev), false).image().clone());
    let mut rec = Device::with_backing(image);
    let (m, info, problems) = MetaStore::mount_unchecked(&mut rec, bugs).unwrap();
    assert_eq!(info.replayed, 4);
    assert!(problems.is_empty());
    assert_eq!(m.meta(), s.meta());
    (rec, s.meta().clone())
}

/// Every crash point of the recovery, with none / all / (few enough) every pending choice.
fn recover_after_crash_in_recovery(rec: &Device, bugs: BugSet) -> Vec<Result<Metadata, FsError>> {
    let mut out = Vec::new();
    for p in crash_points(rec.trace(), Granularity::Fence) {
        let state = Tracker::state_at(rec.trace(), Arc::clone(rec.initial()), PersistenceModel::Adr, p);
        let choices: Vec<Choice> = if state.choice_count() <= 64 {
            state.choices_exhaustive().collect()
        } else {
            vec![state.choice_none(), state.choice_all()]
        };
        for c in choices {
            let mut d = Device::with_backing(Arc::new(View::new(&state, &c).unwrap()));
            out.push(MetaStore::mount_unchecked(&mut d, bugs).map(|(m, _, _)| m.meta().clone()));
        }
    }
    out
}

#[test]
fn replay_goes_through_the_device_and_is_idempotent() {
    let (rec, clean) = recovery_run(BugSet::NONE);
    let ops: Vec<&str> = rec.trace().events().iter().map(|e| e.op.name()).collect();
    assert!(ops.contains(&"store") && ops.contains(&"sfence"), "{ops:?}");
    let outcomes = recover_after_crash_in_recovery(&rec, BugSet::NONE);
    assert!(outcomes.len() > 4);
    for o in outcomes {
        assert_eq!(o.as_ref(), Ok(&clean));
    }
}

#[test]
fn replay_not_idempotent_differs_after_a_crash_during_recovery() {
    let bugs = BugSet::NONE.with(Bug::ReplayNotIdempotent);
    let (rec, clean) = recovery_run(bugs);
    let outcomes = recover_after_crash_in_recovery(&rec, bugs);
    assert!(
        outcomes.iter().any(|o| o.as_ref() != Ok(&clean)),
        "some crash during recovery must expose the bug"
    );
}

#[test]
fn faithful_geometry_gives_pmd_aligned_extents() {
    let g = Geometry::new(256 << 20).unwrap();
    let (mut dev, mut s) = fresh(&g, BugSet::NONE);
    let a = s.alloc(&mut dev, 512, 512).unwrap();
    assert_eq!((a, a.0 % 512), (g.data_start(), 0));
    let b = s.alloc(&mut dev, 512, 512).unwrap();
    assert_eq!(b.0, a.0 + 512);
    assert_eq!(fsck_media(&dev).unwrap(), vec![]);
}
