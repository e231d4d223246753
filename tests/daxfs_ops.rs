//! Every daxfs file operation through `DaxFs` directly, one thread, under both allocation
//! policies where the policy matters. Durability is judged on the power-cut image that keeps
//! only durable stores (`choice_none` of the final crash state), recovered by a fresh mount.

use std::cell::RefCell;
use std::future::Future;
use std::sync::Arc;

use crashsim::daxfs::dax::{FAULT_AROUND_PAGES, VmFault};
use crashsim::daxfs::fs::{AllocPolicy, DaxFs, EntryKind, Errno, MapId, MountOptions, PteTarget};
use crashsim::daxfs::tag::{Poison, Word};
use crashsim::daxfs::{
    BLOCK_BYTES, BlockNr, BugSet, ExtentState, Geometry, Ino, MetaStore, PMD_BLOCKS_DEFAULT, fsck, mkfs,
};
use crashsim::pmem::{CrashPoint, Device, PersistenceModel, PmemAddr, Tracker, View};
use crashsim::sched::{Executor, RunEnd, Sched};
use crashsim::workload::data_word;

const POLICIES: [AllocPolicy; 2] = [AllocPolicy::ZeroBeforeCommit, AllocPolicy::UnwrittenEndIo];
const PAGE: u64 = BLOCK_BYTES;
const WORDS_PER_PAGE: usize = (BLOCK_BYTES / 8) as usize;
/// The small PMD most tests use (8 blocks), so PMD paths stay cheap.
const PMD_SMALL: u64 = 8;

fn geom(device_bytes: u64, pmd_blocks: u64) -> Geometry {
    Geometry::new(device_bytes).unwrap().with_pmd_blocks(pmd_blocks)
}

fn mount_with(g: &Geometry, policy: AllocPolicy, fault_around: bool) -> DaxFs {
    let opts = MountOptions { policy, bugs: BugSet::NONE, fault_around };
    DaxFs::mount(mkfs(g).unwrap(), opts, Sched::new()).unwrap()
}

fn mount(policy: AllocPolicy) -> DaxFs {
    mount_with(&geom(8 << 20, PMD_SMALL), policy, false)
}

/// Runs `fut` as the only thread to completion and returns its output.
fn block_on<T>(fs: &DaxFs, fut: impl Future<Output = T>) -> T {
    let out = RefCell::new(None);
    let mut ex = Executor::new(std::rc::Rc::clone(&fs.sched));
    let slot = &out;
    ex.spawn(async move {
        *slot.borrow_mut() = Some(fut.await);
    });
    let end = ex.run(&[], |k| !fs.state().pinned(k));
    assert!(matches!(end, RunEnd::Done { .. }), "single thread did not finish: {end:?}");
    out.into_inner().expect("thread finished")
}

/// `n` distinct data words for word offsets `first..` of file 1, write `version`.
fn words(first_word: u64, n: usize, version: u32) -> Vec<u64> {
    (0..n as u64).map(|k| data_word(1, first_word + k, version)).collect()
}

fn create(fs: &DaxFs) -> Ino {
    block_on(fs, fs.create()).unwrap()
}

fn write(fs: &DaxFs, ino: Ino, off: u64, data: &[u64]) {
    block_on(fs, fs.write(ino, off, data, |_, _| {})).unwrap();
}

fn read(fs: &DaxFs, ino: Ino, off: u64, len: u64) -> Vec<u64> {
    block_on(fs, fs.read(ino, off, len)).unwrap()
}

fn truncate(fs: &DaxFs, ino: Ino, size: u64) {
    block_on(fs, fs.truncate(ino, size, || {})).unwrap();
}

fn mmap(fs: &DaxFs, ino: Ino, off: u64, len: u64, map_sync: bool) -> MapId {
    block_on(fs, fs.mmap(ino, off, len, map_sync)).unwrap()
}

fn store(fs: &DaxFs, map: MapId, off: u64, data: &[u64]) -> Result<(), Errno> {
    block_on(fs, fs.store(map, off, data, |_, _| {}))
}

fn load(fs: &DaxFs, map: MapId, off: u64, len: u64) -> Result<Vec<u64>, Errno> {
    let got = RefCell::new(Vec::new());
    block_on(fs, fs.load(map, off, len, |_, io| got.borrow_mut().extend_from_slice(io.words)))?;
    Ok(got.into_inner())
}

fn fsync(fs: &DaxFs, ino: Ino) {
    block_on(fs, fs.fsync(ino)).unwrap();
}

fn pte(fs: &DaxFs, map: MapId, page: u64) -> Option<crashsim::daxfs::fs::Pte> {
    fs.state().mapping(map).unwrap().ptes.get(&page).copied()
}

fn block_of(fs: &DaxFs, ino: Ino, page: u64) -> Option<(BlockNr, ExtentState)> {
    fs.state().lookup(ino, page).unwrap()
}

/// The device a power cut now would leave if no pending store survived.
fn durable_only(fs: &DaxFs) -> Device {
    let st = fs.state();
    let trace = st.dev.trace();
    let state = Tracker::state_at(
        trace,
        Arc::clone(st.dev.initial()),
        PersistenceModel::Adr,
        CrashPoint(trace.len()),
    );
    Device::with_backing(Arc::new(View::new(&state, &state.choice_none()).unwrap()))
}

/// Recovers the durable-only image and reads `len` bytes at `off` of `ino` through the recovered
/// metadata (holes and unwritten extents read zero, reads stop at EOF). fsck must be clean.
fn read_after_power_cut(fs: &DaxFs, ino: Ino, off: u64, len: u64) -> Vec<u64> {
    let mut dev = durable_only(fs);
    let store = MetaStore::mount(&mut dev, BugSet::NONE).unwrap();
    assert_eq!(fsck(store.meta(), store.geometry()), vec![]);
    let inode = store.inode(ino).unwrap();
    let end = (off + len).min(inode.size_bytes);
    let mut out = Vec::new();
    for pos in (off..end).step_by(8) {
        let page = pos / PAGE;
        let word = match inode.lookup(page) {
            Some(e) if e.state == ExtentState::Written => {
                let b = e.phys.0 + page - e.file_block;
                dev.read_u64(PmemAddr(b * BLOCK_BYTES + pos % PAGE)).unwrap()
            }
            _ => 0,
        };
        out.push(word);
    }
    out
}

#[test]
fn create_and_unlink_free_the_inode_and_its_blocks() {
    for policy in POLICIES {
        let fs = mount(policy);
        let (a, b) = (create(&fs), create(&fs));
        assert_ne!(a, b);
        write(&fs, a, 0, &words(0, 8, 1));
        let (blk, _) = block_of(&fs, a, 0).unwrap();
        block_on(&fs, fs.unlink(a, || {})).unwrap();
        assert!(fs.state().store.inode(a).is_err(), "{policy:?}: inode still live");
        assert!(!fs.state().store.meta().is_allocated(blk), "{policy:?}: block still allocated");
        assert_eq!(block_on(&fs, fs.unlink(a, || {})), Err(Errno::NoEntry));
        let c = create(&fs);
        assert!(c != a && c != b, "{policy:?}: an unlinked inode number is reused last");
        let st = fs.state();
        assert_eq!(fsck(st.store.meta(), &st.geom), vec![]);
    }
}

#[test]
fn unlink_under_a_mapping_makes_every_access_sigbus() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        write(&fs, ino, 0, &words(0, 8, 1));
        let map = mmap(&fs, ino, 0, PAGE, false);
        assert_eq!(load(&fs, map, 0, 64).unwrap(), words(0, 8, 1));
        block_on(&fs, fs.unlink(ino, || {})).unwrap();
        assert!(fs.state().mapping(map).unwrap().dead);
        assert!(fs.state().mapping(map).unwrap().ptes.is_empty(), "{policy:?}: PTEs survive unlink");
        assert_eq!(load(&fs, map, 0, 8), Err(Errno::SigBus));
        assert_eq!(store(&fs, map, 0, &[data_word(1, 0, 2)]), Err(Errno::SigBus));
    }
}

#[test]
fn write_read_round_trip_holes_and_eof() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        let data = words(PAGE / 8 + 1, 16, 1);
        write(&fs, ino, PAGE + 8, &data);
        assert_eq!(fs.state().size_of(ino).unwrap(), PAGE + 8 + 128, "{policy:?}: size extended");
        let got = read(&fs, ino, 0, 3 * PAGE);
        assert_eq!(got.len(), (PAGE + 8 + 128) as usize / 8, "{policy:?}: short read at EOF");
        assert!(got[..WORDS_PER_PAGE + 1].iter().all(|&w| w == 0), "{policy:?}: hole reads zero");
        assert_eq!(&got[WORDS_PER_PAGE + 1..], &data[..]);
        assert_eq!(read(&fs, ino, 4 * PAGE, 64), Vec::<u64>::new(), "{policy:?}: read past EOF");
        assert!(block_of(&fs, ino, 0).is_none(), "{policy:?}: the hole stays a hole");
        assert_eq!(block_of(&fs, ino, 1).unwrap().1, ExtentState::Written);
        // A write inside the file does not shrink it; new words of a fresh block are zero.
        write(&fs, ino, 8, &words(1, 1, 2));
        assert_eq!(fs.state().size_of(ino).unwrap(), PAGE + 8 + 128);
        assert_eq!(read(&fs, ino, 0, 24), vec![0, data_word(1, 1, 2), 0]);
        assert_eq!(
            block_on(&fs, fs.write(ino, 4, &[1], |_, _| {})),
            Err(Errno::Invalid("data offsets and lengths are 8-byte aligned and non-zero"))
        );
    }
}

#[test]
fn mmap_checks_alignment_and_munmap_removes_the_mapping() {
    let fs = mount(AllocPolicy::ZeroBeforeCommit);
    let ino = create(&fs);
    truncate(&fs, ino, 4 * PAGE);
    assert!(matches!(block_on(&fs, fs.mmap(ino, 8, PAGE, false)), Err(Errno::Invalid(_))));
    assert!(matches!(block_on(&fs, fs.mmap(Ino(9), 0, PAGE, false)), Err(Errno::NoEntry)));
    let map = mmap(&fs, ino, PAGE, 2 * PAGE, false);
    assert_eq!(store(&fs, map, 2 * PAGE, &[data_word(1, 0, 1)]), Err(Errno::SigSegv), "past the mapping");
    store(&fs, map, 8, &[data_word(1, PAGE / 8 + 1, 1)]).unwrap();
    assert_eq!(read(&fs, ino, PAGE, 16), vec![0, data_word(1, PAGE / 8 + 1, 1)], "mapping offset applies");
    block_on(&fs, fs.munmap(map)).unwrap();
    assert!(matches!(load(&fs, map, 0, 8), Err(Errno::Invalid(_))));
    assert!(matches!(block_on(&fs, fs.munmap(map)), Err(Errno::Invalid(_))));
}

#[test]
fn read_fault_maps_the_zero_page_and_write_fault_replaces_it() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, 2 * PAGE);
        let map = mmap(&fs, ino, 0, 2 * PAGE, false);
        assert_eq!(load(&fs, map, 0, 64).unwrap(), vec![0; 8]);
        assert_eq!(pte(&fs, map, 0).unwrap().target, PteTarget::ZeroPage);
        assert!(!pte(&fs, map, 0).unwrap().writable);
        assert_eq!(fs.state().entries[&(ino.0, 0)].kind, EntryKind::ZeroPage);
        assert!(block_of(&fs, ino, 0).is_none(), "{policy:?}: a read fault never allocates");
        store(&fs, map, 64, &words(8, 2, 1)).unwrap();
        let (b, state) = block_of(&fs, ino, 0).unwrap();
        assert_eq!(state, ExtentState::Written, "{policy:?}: the write fault converted (end_io)");
        assert_eq!(
            pte(&fs, map, 0).unwrap(),
            crashsim::daxfs::fs::Pte { target: PteTarget::Block(b), writable: true }
        );
        let e = fs.state().entries[&(ino.0, 0)];
        assert_eq!((e.kind, e.dirty), (EntryKind::Pfn(b), true));
        let mut expect = vec![0; 8];
        expect.extend(words(8, 2, 1));
        expect.extend([0; 6]);
        assert_eq!(load(&fs, map, 0, 128).unwrap(), expect, "{policy:?}: new block zeroed");
        assert_eq!(read(&fs, ino, 0, 128), expect, "{policy:?}: read() agrees with the mapping");
    }
}

#[test]
fn fsync_write_protects_and_the_next_store_refaults() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, PAGE);
        let map = mmap(&fs, ino, 0, PAGE, false);
        store(&fs, map, 0, &words(0, 4, 1)).unwrap();
        fsync(&fs, ino);
        assert!(!pte(&fs, map, 0).unwrap().writable, "{policy:?}: fsync write-protects");
        assert!(!fs.state().entries[&(ino.0, 0)].dirty);
        assert_eq!(read_after_power_cut(&fs, ino, 0, 32), words(0, 4, 1), "{policy:?}: fsync durable");
        // pfn_mkwrite: the store faults, gets a writable PTE again and re-dirties the entry.
        let trace_before = fs.state().dev.trace().len();
        store(&fs, map, 0, &words(0, 4, 2)).unwrap();
        assert!(pte(&fs, map, 0).unwrap().writable);
        assert!(fs.state().entries[&(ino.0, 0)].dirty, "{policy:?}: pfn_mkwrite re-dirties");
        assert!(fs.state().dev.trace().len() > trace_before);
        assert_eq!(read_after_power_cut(&fs, ino, 0, 32), words(0, 4, 1), "not flushed yet");
        block_on(&fs, fs.msync(map, 0, PAGE)).unwrap();
        assert_eq!(read_after_power_cut(&fs, ino, 0, 32), words(0, 4, 2), "{policy:?}: msync durable");
        assert!(!pte(&fs, map, 0).unwrap().writable);
    }
}

#[test]
fn write_then_fsync_is_durable() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        let data = words(0, 2 * WORDS_PER_PAGE, 1);
        write(&fs, ino, 0, &data);
        fsync(&fs, ino);
        assert_eq!(read_after_power_cut(&fs, ino, 0, 2 * PAGE), data, "{policy:?}");
    }
}

#[test]
fn persist_on_map_sync_is_durable_and_the_fault_was_dsync() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, 2 * PAGE);
        fsync(&fs, ino);
        let map = mmap(&fs, ino, 0, 2 * PAGE, true);
        let fault = block_on(&fs, fs.dax_iomap_fault(map, 1, true)).unwrap();
        assert_eq!(fault, VmFault::NeedDsync, "{policy:?}");
        assert!(fs.state().inode_meta_durable(ino), "{policy:?}: allocation durable before the PTE is used");
        store(&fs, map, PAGE, &words(PAGE / 8, 4, 1)).unwrap();
        block_on(&fs, fs.persist(map, PAGE, 32)).unwrap();
        assert_eq!(read_after_power_cut(&fs, ino, PAGE, 32), words(PAGE / 8, 4, 1), "{policy:?}");
        // Without MAP_SYNC the same fault commits asynchronously.
        let plain = mmap(&fs, ino, 0, 2 * PAGE, false);
        assert_eq!(block_on(&fs, fs.dax_iomap_fault(plain, 0, true)).unwrap(), VmFault::Major);
        assert!(!fs.state().inode_meta_durable(ino), "{policy:?}: plain fault commits async");
    }
}

#[test]
fn fallocate_reads_zero_and_a_store_converts() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        block_on(&fs, fs.fallocate(ino, 0, 2 * PAGE)).unwrap();
        assert_eq!(fs.state().size_of(ino).unwrap(), 2 * PAGE);
        let (b, state) = block_of(&fs, ino, 0).unwrap();
        assert_eq!(state, ExtentState::Unwritten);
        let media = fs.state().read_words(b, 0, 1).unwrap()[0];
        assert!(matches!(Word::decode(media), Word::Poison(Poison { .. })), "old contents on media");
        assert!(read(&fs, ino, 0, 2 * PAGE).iter().all(|&w| w == 0), "{policy:?}: unwritten reads zero");
        let map = mmap(&fs, ino, 0, 2 * PAGE, false);
        assert_eq!(load(&fs, map, 0, 64).unwrap(), vec![0; 8]);
        assert_eq!(pte(&fs, map, 0).unwrap().target, PteTarget::ZeroPage, "{policy:?}");
        store(&fs, map, 8, &words(1, 1, 1)).unwrap();
        assert_eq!(block_of(&fs, ino, 0), Some((b, ExtentState::Written)), "{policy:?}: converted in place");
        assert_eq!(block_of(&fs, ino, 1).unwrap().1, ExtentState::Unwritten, "{policy:?}: only the page");
        let got = read(&fs, ino, 0, PAGE);
        assert_eq!(got[1], data_word(1, 1, 1));
        assert!(got.iter().enumerate().all(|(i, &w)| i == 1 || w == 0), "{policy:?}: rest zeroed");
        // write(2) into the other unwritten page converts it too.
        write(&fs, ino, PAGE + 16, &words(PAGE / 8 + 2, 1, 2));
        assert_eq!(block_of(&fs, ino, 1).unwrap().1, ExtentState::Written);
        assert_eq!(read(&fs, ino, PAGE, 32), vec![0, 0, data_word(1, PAGE / 8 + 2, 2), 0]);
        fsync(&fs, ino);
        assert_eq!(read_after_power_cut(&fs, ino, 0, 16), vec![0, data_word(1, 1, 1)], "{policy:?}");
    }
}

#[test]
fn punch_hole_unmaps_reads_zero_and_frees_after_the_free_is_durable() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        let data = words(0, 3 * WORDS_PER_PAGE, 1);
        write(&fs, ino, 0, &data);
        let map = mmap(&fs, ino, 0, 3 * PAGE, false);
        assert_eq!(load(&fs, map, 0, 3 * PAGE).unwrap(), data);
        let (mid, _) = block_of(&fs, ino, 1).unwrap();
        assert_eq!(pte(&fs, map, 1).unwrap().target, PteTarget::Block(mid));
        block_on(&fs, fs.punch_hole(ino, PAGE, PAGE, || {})).unwrap();
        assert!(pte(&fs, map, 1).is_none(), "{policy:?}: PTE of the punched page is gone");
        assert!(!fs.state().entries.contains_key(&(ino.0, 1)));
        assert!(pte(&fs, map, 0).is_some() && pte(&fs, map, 2).is_some(), "neighbours stay mapped");
        assert!(block_of(&fs, ino, 1).is_none());
        let got = read(&fs, ino, 0, 3 * PAGE);
        assert!(got[WORDS_PER_PAGE..2 * WORDS_PER_PAGE].iter().all(|&w| w == 0), "{policy:?}");
        assert_eq!(&got[..WORDS_PER_PAGE], &data[..WORDS_PER_PAGE]);
        assert_eq!(&got[2 * WORDS_PER_PAGE..], &data[2 * WORDS_PER_PAGE..]);
        assert_eq!(load(&fs, map, PAGE, 64).unwrap(), vec![0; 8], "{policy:?}: refault maps the zero page");
        // The block is free in the bitmap but busy until the freeing transaction is durable.
        assert!(!fs.state().store.meta().is_allocated(mid));
        let busy = |fs: &DaxFs| {
            fs.state().store.busy().iter().any(|x| x.start.0 <= mid.0 && mid.0 < x.start.0 + x.len)
        };
        assert!(busy(&fs), "{policy:?}: freed block busy before the free is durable");
        fsync(&fs, ino);
        assert!(!busy(&fs), "{policy:?}: free durable, block allocatable");
        assert_eq!(fs.state().size_of(ino).unwrap(), 3 * PAGE, "punch keeps the size");
    }
}

#[test]
fn truncate_down_zeroes_the_tail_and_sigbus_beyond_eof() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        let data = words(0, 3 * WORDS_PER_PAGE, 1);
        write(&fs, ino, 0, &data);
        let map = mmap(&fs, ino, 0, 3 * PAGE, false);
        assert_eq!(load(&fs, map, 0, 3 * PAGE).unwrap(), data);
        let (last, _) = block_of(&fs, ino, 2).unwrap();
        let size = PAGE + 64;
        truncate(&fs, ino, size);
        assert_eq!(fs.state().size_of(ino).unwrap(), size);
        assert_eq!(read(&fs, ino, 0, 3 * PAGE), data[..size as usize / 8].to_vec(), "{policy:?}");
        assert!(pte(&fs, map, 2).is_none() && block_of(&fs, ino, 2).is_none(), "{policy:?}");
        assert!(!fs.state().store.meta().is_allocated(last));
        assert_eq!(load(&fs, map, 2 * PAGE, 8), Err(Errno::SigBus), "{policy:?}: beyond EOF");
        assert_eq!(store(&fs, map, 2 * PAGE, &[data_word(1, 2 * PAGE / 8, 2)]), Err(Errno::SigBus));
        // The page holding EOF keeps its PTE; the tail on media is zero.
        assert_eq!(load(&fs, map, size, 64).unwrap(), vec![0; 8], "{policy:?}: tail zeroed");
        truncate(&fs, ino, 3 * PAGE);
        let got = read(&fs, ino, 0, 3 * PAGE);
        assert_eq!(&got[..size as usize / 8], &data[..size as usize / 8]);
        assert!(got[size as usize / 8..].iter().all(|&w| w == 0), "{policy:?}: truncate up reads zero");
        assert_eq!(load(&fs, map, 2 * PAGE, 8).unwrap(), vec![0], "inside EOF again: zero page");
        fsync(&fs, ino);
        assert_eq!(read_after_power_cut(&fs, ino, 0, 3 * PAGE), got, "{policy:?}");
    }
}

#[test]
fn write_pin_allocates_dma_is_durable_and_unpin_dirties() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, 2 * PAGE);
        let map = mmap(&fs, ino, 0, 2 * PAGE, false);
        let pin = block_on(&fs, fs.pin(map, 0, PAGE, true)).unwrap();
        let (b, state) = block_of(&fs, ino, 0).expect("a write pin allocates before any DMA");
        assert_eq!(state, ExtentState::Written, "{policy:?}");
        assert_eq!(fs.state().pins[pin].as_ref().unwrap().pages[&0], PteTarget::Block(b));
        let data = words(2, 4, 1);
        block_on(&fs, fs.dma_write(pin, 16, &data, |_, _| {})).unwrap();
        assert_eq!(read(&fs, ino, 16, 32), data, "{policy:?}");
        // DMA is durable when it completes: the NT stores are on media without any flush.
        let dev = durable_only(&fs);
        for (k, &w) in data.iter().enumerate() {
            assert_eq!(dev.read_u64(PmemAddr(b.0 * BLOCK_BYTES + 16 + 8 * k as u64)).unwrap(), w);
        }
        fs.state().entries.get_mut(&(ino.0, 0)).unwrap().dirty = false;
        block_on(&fs, fs.unpin(pin)).unwrap();
        assert!(fs.state().entries[&(ino.0, 0)].dirty, "{policy:?}: unpin dirties written pages");
        assert!(fs.state().pins[pin].is_none());
        assert!(matches!(block_on(&fs, fs.unpin(pin)), Err(Errno::Invalid(_))));
        fsync(&fs, ino);
        assert_eq!(read_after_power_cut(&fs, ino, 16, 32), data, "{policy:?}");
        // A read pin of a hole maps the zero page and refuses DMA.
        let rpin = block_on(&fs, fs.pin(map, PAGE, PAGE, false)).unwrap();
        assert_eq!(fs.state().pins[rpin].as_ref().unwrap().pages[&1], PteTarget::ZeroPage);
        assert!(block_of(&fs, ino, 1).is_none());
        assert!(matches!(block_on(&fs, fs.dma_write(rpin, 0, &data, |_, _| {})), Err(Errno::Invalid(_))));
        assert!(matches!(block_on(&fs, fs.dma_write(pin, 0, &data, |_, _| {})), Err(Errno::Invalid(_))));
        block_on(&fs, fs.unpin(rpin)).unwrap();
    }
}

#[test]
fn sync_checkpoints_and_everything_is_durable() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        write(&fs, ino, 0, &words(0, 8, 1));
        let map = mmap(&fs, ino, PAGE, PAGE, false);
        truncate(&fs, ino, 2 * PAGE);
        store(&fs, map, 0, &words(PAGE / 8, 8, 2)).unwrap();
        assert!(fs.state().store.journal_used_slots() > 0);
        block_on(&fs, fs.sync()).unwrap();
        assert_eq!(fs.state().store.journal_used_slots(), 0, "{policy:?}: checkpoint advanced the tail");
        assert!(!pte(&fs, map, 1).unwrap().writable, "sync writes back dirty entries");
        assert_eq!(read_after_power_cut(&fs, ino, 0, 64), words(0, 8, 1), "{policy:?}");
        assert_eq!(read_after_power_cut(&fs, ino, PAGE, 64), words(PAGE / 8, 8, 2), "{policy:?}");
    }
}

#[test]
fn enospc_on_a_small_device_at_write_fault_fallocate_and_pin() {
    for policy in POLICIES {
        let g = geom(1 << 20, 1);
        let fs = mount_with(&g, policy, false);
        let ino = create(&fs);
        let data_blocks = g.data_blocks();
        for page in 0..data_blocks {
            write(&fs, ino, page * PAGE, &words(page * PAGE / 8, 1, 1));
        }
        let full = data_blocks * PAGE;
        assert_eq!(block_on(&fs, fs.write(ino, full, &[1], |_, _| {})), Err(Errno::NoSpace), "{policy:?}");
        assert_eq!(block_on(&fs, fs.fallocate(ino, full + PAGE, PAGE)), Err(Errno::NoSpace));
        truncate(&fs, ino, full + 4 * PAGE);
        let map = mmap(&fs, ino, full, 2 * PAGE, false);
        assert_eq!(store(&fs, map, 0, &[data_word(1, full / 8, 2)]), Err(Errno::NoSpace), "{policy:?}");
        assert_eq!(block_on(&fs, fs.pin(map, PAGE, PAGE, true)), Err(Errno::NoSpace), "ENOSPC at pin time");
        assert!(fs.state().pins.iter().all(Option::is_none), "a failed pin holds nothing");
        assert_eq!(load(&fs, map, 0, 8).unwrap(), vec![0], "reads still work");
        assert_eq!(fsck(fs.state().store.meta(), &g), vec![], "{policy:?}: ENOSPC left metadata sound");
        // Freeing space makes allocation work again once the free is durable.
        block_on(&fs, fs.punch_hole(ino, 0, PAGE, || {})).unwrap();
        fsync(&fs, ino);
        store(&fs, map, 0, &[data_word(1, full / 8, 3)]).unwrap();
        assert_eq!(read(&fs, ino, full, 8), vec![data_word(1, full / 8, 3)]);
    }
}

/// A write fault in an aligned PMD maps `n` contiguous, aligned, zeroed blocks.
fn check_pmd_fault(pmd_blocks: u64, device_bytes: u64, policy: AllocPolicy) {
    let fs = mount_with(&geom(device_bytes, pmd_blocks), policy, false);
    let ino = create(&fs);
    let n = pmd_blocks;
    truncate(&fs, ino, 2 * n * PAGE);
    let map = mmap(&fs, ino, 0, 2 * n * PAGE, false);
    store(&fs, map, PAGE + 8, &words(PAGE / 8 + 1, 1, 1)).unwrap();
    let e = fs.state().entries[&(ino.0, 0)];
    assert!(e.pmd && e.dirty, "{policy:?}: PMD entry at the aligned index");
    let EntryKind::Pfn(b) = e.kind else { panic!("PMD entry is not mapped: {e:?}") };
    assert_eq!(b.0 % n, 0, "PMD block aligned");
    assert_eq!(fs.state().entries.range((ino.0, 0)..(ino.0, n)).count(), 1, "one entry covers the PMD");
    for p in 0..n {
        assert_eq!(pte(&fs, map, p).unwrap().target, PteTarget::Block(BlockNr(b.0 + p)));
        assert_eq!(block_of(&fs, ino, p), Some((BlockNr(b.0 + p), ExtentState::Written)), "{policy:?}");
    }
    let got = load(&fs, map, 0, n * PAGE).unwrap();
    assert_eq!(got[WORDS_PER_PAGE + 1], data_word(1, PAGE / 8 + 1, 1));
    assert_eq!(got.iter().filter(|&&w| w != 0).count(), 1, "{policy:?}: the whole PMD was zeroed");
    fsync(&fs, ino);
    assert!(!pte(&fs, map, n - 1).unwrap().writable, "fsync write-protects the whole PMD");
    assert_eq!(read_after_power_cut(&fs, ino, PAGE, 16), vec![0, data_word(1, PAGE / 8 + 1, 1)]);
}

#[test]
fn pmd_write_fault_small_pmd() {
    for policy in POLICIES {
        check_pmd_fault(PMD_SMALL, 8 << 20, policy);
    }
}

#[test]
fn pmd_write_fault_faithful_2mib() {
    for policy in POLICIES {
        check_pmd_fault(PMD_BLOCKS_DEFAULT, 16 << 20, policy);
    }
}

#[test]
fn pmd_fault_falls_back_when_a_pte_entry_exists_or_the_pmd_crosses_eof() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, 2 * PMD_SMALL * PAGE);
        // A PTE entry at page 3, made through a mapping that cannot take a PMD.
        let small = mmap(&fs, ino, 3 * PAGE, PAGE, false);
        store(&fs, small, 0, &words(3 * PAGE / 8, 1, 1)).unwrap();
        let map = mmap(&fs, ino, 0, 2 * PMD_SMALL * PAGE, false);
        store(&fs, map, 0, &words(0, 1, 2)).unwrap();
        let st = fs.state();
        assert!(!st.entries[&(ino.0, 0)].pmd, "{policy:?}: fell back to a PTE entry");
        assert!(!st.entries[&(ino.0, 3)].pmd);
        assert_eq!(st.mapping(map).unwrap().ptes.len(), 1, "only the faulting page is mapped");
        drop(st);
        // A read fault on a hole never takes a PMD either.
        assert_eq!(load(&fs, map, PMD_SMALL * PAGE, 8).unwrap(), vec![0]);
        assert!(!fs.state().entries[&(ino.0, PMD_SMALL)].pmd);
        // A PMD that crosses EOF falls back.
        let ino2 = create(&fs);
        truncate(&fs, ino2, (PMD_SMALL - 1) * PAGE);
        let m2 = mmap(&fs, ino2, 0, PMD_SMALL * PAGE, false);
        store(&fs, m2, 0, &words(0, 1, 3)).unwrap();
        assert!(!fs.state().entries[&(ino2.0, 0)].pmd, "{policy:?}: PMD beyond EOF fell back");
    }
}

#[test]
fn map_sync_write_fault_makes_the_allocation_durable_first() {
    for policy in POLICIES {
        let fs = mount(policy);
        let ino = create(&fs);
        truncate(&fs, ino, PMD_SMALL * PAGE);
        fsync(&fs, ino);
        let map = mmap(&fs, ino, 0, PMD_SMALL * PAGE, true);
        // A PMD write fault, and then a PTE one in a second mapping of one page.
        assert_eq!(block_on(&fs, fs.dax_iomap_fault(map, 0, true)).unwrap(), VmFault::NeedDsync);
        assert!(fs.state().inode_meta_durable(ino), "{policy:?}: PMD MAP_SYNC fault");
        let ino2 = create(&fs);
        truncate(&fs, ino2, PAGE);
        let m2 = mmap(&fs, ino2, 0, PAGE, true);
        store(&fs, m2, 0, &words(0, 1, 1)).unwrap();
        assert!(fs.state().inode_meta_durable(ino2), "{policy:?}: PTE MAP_SYNC fault");
        // The allocation survives a power cut with nothing pending kept.
        let mut dev = durable_only(&fs);
        let store2 = MetaStore::mount(&mut dev, BugSet::NONE).unwrap();
        assert!(store2.inode(ino2).unwrap().lookup(0).is_some_and(|e| e.state == ExtentState::Written));
        assert!(store2.inode(ino).unwrap().lookup(PMD_SMALL - 1).is_some());
    }
}

#[test]
fn fault_around_maps_only_existing_entries() {
    let fs = mount_with(&geom(8 << 20, PMD_SMALL), AllocPolicy::ZeroBeforeCommit, true);
    let ino = create(&fs);
    let pages = 2 * FAULT_AROUND_PAGES;
    write(&fs, ino, 0, &words(0, 6 * WORDS_PER_PAGE, 1));
    truncate(&fs, ino, pages * PAGE);
    // Entries: real ones at 2 and 5 (stores), a zero-page one at 6 (a load of a hole).
    let a = mmap(&fs, ino, 0, pages * PAGE, false);
    store(&fs, a, 2 * PAGE, &words(2 * PAGE / 8, 1, 2)).unwrap();
    store(&fs, a, 5 * PAGE, &words(5 * PAGE / 8, 1, 3)).unwrap();
    load(&fs, a, 6 * PAGE, 8).unwrap();
    let entries_before: Vec<u64> = fs.state().entries.keys().map(|k| k.1).collect();
    // A read fault through another mapping at page 3 maps 2 and 5 around it, nothing else.
    let b = mmap(&fs, ino, 0, pages * PAGE, false);
    let blocks_before = fs.state().store.meta().clone();
    load(&fs, b, 3 * PAGE, 8).unwrap();
    let mapped: Vec<u64> = fs.state().mapping(b).unwrap().ptes.keys().copied().collect();
    assert_eq!(mapped, vec![2, 3, 5]);
    for p in [2, 5] {
        let pte = pte(&fs, b, p).unwrap();
        assert!(!pte.writable, "fault-around maps read-only");
        assert_eq!(pte.target, PteTarget::Block(block_of(&fs, ino, p).unwrap().0));
    }
    let mut expect = entries_before.clone();
    expect.push(3);
    expect.sort();
    let entries_after: Vec<u64> = fs.state().entries.keys().map(|k| k.1).collect();
    assert_eq!(entries_after, expect, "fault-around instantiates no entry");
    assert_eq!(fs.state().store.meta(), &blocks_before, "fault-around never allocates");
    assert_eq!(load(&fs, b, 5 * PAGE, 8).unwrap(), words(5 * PAGE / 8, 1, 3));
}
