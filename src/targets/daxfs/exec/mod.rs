//! Runs a workload on daxfs under the deterministic scheduler, with the run-time oracle: a plain
//! reference model of every file's words, compared at every read and load (docs/design.md §6).
//!
//! Architecture Invariant: this is the only place that knows both the workload language and
//! daxfs; daxfs itself knows neither workloads nor oracles.

pub mod crash;
pub mod record;

use std::cell::RefCell;
use std::rc::Rc;

use crate::check::{Violation, ViolationClass};
use crate::daxfs::fs::{AllocPolicy, DaxFs, Errno, FsState, MapId, MountOptions, PinId, PteTarget};
use crate::daxfs::layout::{Geometry, mkfs};
use crate::daxfs::ops::PageIo;
use crate::daxfs::tag::{DataTag, Word};
use crate::daxfs::{BLOCK_BYTES, FsError, Ino};
use crate::pmem::Device;
use crate::sched::{Executor, Picks, Ran, RunEnd, Sched, Step};
use crate::workload::{Op, Workload};
use record::{Ack, AckKind, DataEvent, FileLife, FreedPages, RunRecord, ZeroKind};

/// A run-time violation of operation `op` of thread `thread`.
fn violation(class: ViolationClass, thread: usize, op: usize, message: impl std::fmt::Display) -> Violation {
    Violation::new(class, format!("thread {thread} op {op}: {message}"))
}

/// Device and file-system setup for runs.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunConfig {
    pub device_bytes: u64,
    /// PMD size in blocks (512 = 2 MiB, the faithful default).
    pub pmd_blocks: u64,
    pub mount: MountOptions,
    /// Pick the allocation policy per workload (from a hash of the workload) instead of
    /// `mount.policy`, so one sweep covers both policies' code paths.
    pub policy_per_workload: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            device_bytes: 64 << 20,
            pmd_blocks: crate::daxfs::PMD_BLOCKS_DEFAULT,
            mount: MountOptions::default(),
            policy_per_workload: false,
        }
    }
}

/// FNV-1a: a hash whose value is fixed by its definition, for choices derived from data.
struct Fnv(u64);

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

impl RunConfig {
    /// The mount options `workload` runs with.
    pub fn mount_for(&self, workload: &Workload) -> MountOptions {
        use std::hash::{Hash, Hasher};
        let mut mount = self.mount;
        mount.fault_around |= workload.options.fault_around;
        if self.policy_per_workload {
            let mut h = Fnv(0xcbf2_9ce4_8422_2325);
            workload.hash(&mut h);
            mount.policy =
                if h.finish() & 1 == 0 { AllocPolicy::ZeroBeforeCommit } else { AllocPolicy::UnwrittenEndIo };
        }
        mount
    }

    pub fn geometry(&self) -> Result<Geometry, FsError> {
        Ok(Geometry::new(self.device_bytes)?.with_pmd_blocks(self.pmd_blocks))
    }

    /// A freshly formatted device (its trace is empty).
    pub fn format(&self) -> Result<Device, FsError> {
        mkfs(&self.geometry()?)
    }
}

/// What a run produced.
pub struct RunOutput {
    pub device: Device,
    pub findings: Vec<Violation>,
    pub record: RunRecord,
    pub end: RunEnd,
    /// Result of every operation, by thread, for tests and `show`.
    pub results: Vec<Vec<Result<(), Errno>>>,
    /// Every scheduling step: its thread, labelled with the index of the operation it ran in.
    pub steps: Vec<Step>,
    /// The indexed schedule that repeats this run (the workload's own, up to where it was used
    /// up, unless the run was steered).
    pub schedule: Vec<u8>,
}

struct FileRef {
    file_id: u32,
    ino: Ino,
    /// Expected value of every word (0 where never written or zeroed).
    words: Vec<u64>,
}

#[derive(Default)]
struct World {
    files: Vec<Option<FileRef>>,
    maps: Vec<Option<(MapId, usize, bool)>>,
    pins: Vec<Option<(PinId, usize)>>,
    next_file_id: u32,
    next_version: u32,
    findings: Vec<Violation>,
    record: RunRecord,
}

struct Harness {
    fs: DaxFs,
    world: RefCell<World>,
}

/// Runs `workload` on a freshly formatted device.
pub fn run(workload: &Workload, config: &RunConfig) -> Result<RunOutput, FsError> {
    run_on(workload, config, config.format()?)
}

/// Runs `workload` on `device` (already formatted).
pub fn run_on(workload: &Workload, config: &RunConfig, device: Device) -> Result<RunOutput, FsError> {
    run_picked(workload, config, device, Picks::Indexed(&workload.schedule))
}

/// Runs `workload` steered by thread indexes instead of its schedule ([`Picks::Named`]); the
/// output's `schedule` is the indexed schedule that repeats the run.
pub fn run_steered(workload: &Workload, config: &RunConfig, threads: &[u8]) -> Result<RunOutput, FsError> {
    run_picked(workload, config, config.format()?, Picks::Named(threads))
}

fn run_picked(
    workload: &Workload,
    config: &RunConfig,
    device: Device,
    picks: Picks<'_>,
) -> Result<RunOutput, FsError> {
    let sched = Sched::new();
    let fs = DaxFs::mount(device, config.mount_for(workload), Rc::clone(&sched))?;
    let world = World {
        files: (0..crate::workload::FILES_MAX).map(|_| None).collect(),
        maps: (0..crate::workload::MAPS_MAX).map(|_| None).collect(),
        pins: (0..crate::workload::PINS_MAX).map(|_| None).collect(),
        next_file_id: 1,
        next_version: 1,
        ..World::default()
    };
    let h = Harness { fs, world: RefCell::new(world) };
    let results: Vec<RefCell<Vec<Result<(), Errno>>>> =
        workload.threads.iter().map(|_| RefCell::new(Vec::new())).collect();
    let end = {
        let mut ex = Executor::new(Rc::clone(&sched));
        for (t, ops) in workload.threads.iter().enumerate() {
            let (h, out) = (&h, &results[t]);
            ex.spawn(async move {
                for (i, op) in ops.iter().enumerate() {
                    h.fs.sched.yield_now().await;
                    let r = h.exec(t, i, op).await;
                    out.borrow_mut().push(r);
                }
            });
        }
        // Each step is labelled with the operation it runs in, and so is the trace (for `show`).
        let op_of = |t: usize| {
            let op = results[t].borrow().len() as u32;
            h.fs.state().dev.begin_step(t as u8, op);
            op
        };
        ex.run_logged(picks, |key| !h.fs.state().pinned(key), op_of)
    };
    let Ran { end, steps, schedule } = end;
    let Harness { fs, world } = h;
    let mut world = world.into_inner();
    static RECORD_IDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    world.record.id = RECORD_IDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    if let RunEnd::Deadlock { blocked, .. } = &end {
        let thread = blocked.first().map_or(0, |b| b.0);
        let message = format!("every unfinished thread is blocked: {blocked:?}");
        world.findings.push(violation(ViolationClass::Deadlock, thread, 0, message));
    }
    let device = fs.into_state().dev;
    Ok(RunOutput {
        device,
        findings: world.findings,
        record: world.record,
        end,
        results: results.into_iter().map(RefCell::into_inner).collect(),
        steps,
        schedule,
    })
}

impl Harness {
    fn trace_pos(&self) -> usize {
        self.fs.state().dev.trace().len()
    }

    async fn exec(&self, t: usize, i: usize, op: &Op) -> Result<(), Errno> {
        match *op {
            Op::Create { file } => self.create(file.0 as usize).await,
            Op::Unlink { file } => self.unlink(file.0 as usize).await,
            Op::Write { file, off, len } => self.write(t, i, file.0 as usize, off, len).await,
            Op::Read { file, off, len } => self.read(t, i, file.0 as usize, off, len).await,
            Op::Mmap { map, file, off, len, map_sync } => {
                self.mmap(map.0 as usize, file.0 as usize, off, len, map_sync).await
            }
            Op::Munmap { map } => self.munmap(map.0 as usize).await,
            Op::Store { map, off, len } => self.store(t, i, map.0 as usize, off, len).await,
            Op::Load { map, off, len } => self.load(t, i, map.0 as usize, off, len).await,
            Op::Persist { map, off, len } => self.persist(map.0 as usize, off, len).await,
            Op::Msync { map, off, len } => self.msync(map.0 as usize, off, len).await,
            Op::Fallocate { file, off, len } => {
                let (ino, _) = self.file(file.0 as usize)?;
                self.fs.fallocate(ino, off, len).await
            }
            Op::PunchHole { file, off, len } => self.punch(file.0 as usize, off, len).await,
            Op::Truncate { file, size } => self.truncate(file.0 as usize, size).await,
            Op::Fsync { file } => self.fsync(file.0 as usize).await,
            Op::Pin { pin, map, off, len, write } => {
                self.pin(pin.0 as usize, map.0 as usize, off, len, write).await
            }
            Op::DmaWrite { pin, off, len } => self.dma_write(t, i, pin.0 as usize, off, len).await,
            Op::Unpin { pin } => self.unpin(pin.0 as usize).await,
            Op::Sync => self.sync().await,
        }
    }

    fn file(&self, slot: usize) -> Result<(Ino, u32), Errno> {
        let w = self.world.borrow();
        w.files[slot].as_ref().map(|f| (f.ino, f.file_id)).ok_or(Errno::NoEntry)
    }

    async fn create(&self, slot: usize) -> Result<(), Errno> {
        if self.world.borrow().files[slot].is_some() {
            return Err(Errno::Invalid("file slot in use"));
        }
        let at = self.trace_pos();
        let ino = self.fs.create().await?;
        let mut w = self.world.borrow_mut();
        let file_id = w.next_file_id;
        w.next_file_id += 1;
        w.files[slot] = Some(FileRef { file_id, ino, words: Vec::new() });
        w.record.files.push(FileLife { file_id, ino, created_at: at, unlinked_at: None });
        Ok(())
    }

    async fn unlink(&self, slot: usize) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let zero = std::cell::Cell::new(None);
        self.fs
            .unlink(ino, || zero.set(Some(self.zero_words(file_id, 0, u64::MAX, ZeroKind::Unlink))))
            .await?;
        self.zero_done(&zero, ino);
        let mut w = self.world.borrow_mut();
        w.files[slot] = None;
        if let Some(life) = w.record.files.iter_mut().rev().find(|f| f.file_id == file_id) {
            life.unlinked_at = Some(self.trace_pos());
        }
        Ok(())
    }

    /// Zeroes the reference words `lo..hi` (bytes) of `file_id`: the moment the file stops
    /// mapping them (the unmap step of punch/truncate/unlink).
    /// Marks the Zero event `index` as committed now (its operation on `ino` returned), with
    /// the blocks it freed.
    fn zero_done(&self, index: &std::cell::Cell<Option<usize>>, ino: Ino) {
        let now = self.trace_pos();
        let last_freed = self.fs.state().last_freed.get(&ino.0).copied();
        let mut w = self.world.borrow_mut();
        if let Some(i) = index.get()
            && let DataEvent::Zero { done, freed, .. } = &mut w.record.events[i]
        {
            *done = now;
            *freed = last_freed.map(|f| FreedPages { first: f.first, last: f.last, tid: f.tid.0 });
        }
    }

    fn zero_words(&self, file_id: u32, lo: u64, hi: u64, kind: ZeroKind) -> usize {
        let at = self.fs.state().dev.trace().len();
        let mut w = self.world.borrow_mut();
        if let Some(f) = w.files.iter_mut().flatten().find(|f| f.file_id == file_id) {
            let (a, b) = ((lo / 8) as usize, ((hi / 8) as usize).min(f.words.len()));
            if a < b {
                f.words[a..b].fill(0);
            }
        }
        w.record.events.push(DataEvent::Zero {
            at,
            file_id,
            lo: lo / 8,
            hi: hi.saturating_add(7) / 8,
            done: usize::MAX,
            kind,
            freed: None,
        });
        w.record.events.len() - 1
    }

    fn new_words(&self, file_id: u32, off: u64, len: u64) -> (u32, Vec<u64>) {
        let mut w = self.world.borrow_mut();
        let version = w.next_version;
        w.next_version += 1;
        let words =
            (0..len / 8).map(|k| DataTag { file_id, word_off: off / 8 + k, version }.encode()).collect();
        (version, words)
    }

    /// Records words `lo..` of `file_id` as written with `version` in the reference model.
    fn apply_write(
        &self,
        file_id: u32,
        lo: u64,
        words: &[u64],
        version: u32,
        at: usize,
        block: Option<crate::daxfs::BlockNr>,
    ) {
        let mut w = self.world.borrow_mut();
        if let Some(f) = w.files.iter_mut().flatten().find(|f| f.file_id == file_id) {
            let a = (lo / 8) as usize;
            if f.words.len() < a + words.len() {
                f.words.resize(a + words.len(), 0);
            }
            f.words[a..a + words.len()].copy_from_slice(words);
        }
        let (lo, hi) = (lo / 8, lo / 8 + words.len() as u64);
        w.record.events.push(DataEvent::Write { at, file_id, lo, hi, version, block });
    }

    async fn write(&self, t: usize, i: usize, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let (version, words) = self.new_words(file_id, off, len);
        self.fs
            .write(ino, off, &words, |st, io| self.land(st, t, i, ino, file_id, version, io, "a write()"))
            .await
    }

    /// A data access landed: check it went to the block backing the page (UseAfterFree), then
    /// record it in the reference model and the run record.
    #[allow(clippy::too_many_arguments)]
    fn land(
        &self,
        st: &FsState,
        t: usize,
        i: usize,
        ino: Ino,
        file_id: u32,
        version: u32,
        io: PageIo,
        what: &str,
    ) {
        if self.check_landing(st, t, i, ino, file_id, &io, what) {
            let block = match io.target {
                PteTarget::Block(b) => Some(b),
                PteTarget::ZeroPage => None,
            };
            self.apply_write(file_id, io.lo, io.words, version, io.at, block);
        }
    }

    async fn read(&self, t: usize, i: usize, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let words = self.fs.read(ino, off, len).await?;
        let st = self.fs.state();
        self.compare(&st, t, i, file_id, off, &words, None);
        Ok(())
    }

    /// Run-time oracle: `found` words at byte `off` of `file_id` against the reference.
    #[allow(clippy::too_many_arguments)]
    fn compare(
        &self,
        st: &FsState,
        t: usize,
        i: usize,
        file_id: u32,
        off: u64,
        found: &[u64],
        via: Option<&PageIo>,
    ) {
        let mut w = self.world.borrow_mut();
        let Some(f) = w.files.iter().flatten().find(|f| f.file_id == file_id) else { return };
        let mut first_bad = None;
        for (k, &v) in found.iter().enumerate() {
            let word = off / 8 + k as u64;
            let expected = f.words.get(word as usize).copied().unwrap_or(0);
            if v != expected {
                first_bad = Some((word, v, expected));
                break;
            }
        }
        let Some((word, v, expected)) = first_bad else { return };
        let ino = f.ino;
        let class = match Word::decode(v) {
            Word::Poison(_) | Word::Other(_) => ViolationClass::StaleData,
            Word::Data(tag) if tag.file_id != file_id || tag.word_off != word => {
                // Another file's (or offset's) word. Foreign only if it is that word's current
                // home, so the block is shared right now; otherwise it is what the block held
                // before this file got it: stale, like the crash oracle's split. (A store that
                // put it there after this file got the block was caught as UseAfterFree.)
                let ours = match via {
                    Some(PageIo { target: PteTarget::Block(b), .. }) => Some(*b),
                    Some(_) => None,
                    None => st.lookup(ino, word * 8 / BLOCK_BYTES).ok().flatten().map(|(b, _)| b),
                };
                let home = w
                    .files
                    .iter()
                    .flatten()
                    .find(|g| g.file_id == tag.file_id)
                    .and_then(|g| st.lookup(g.ino, tag.word_off * 8 / BLOCK_BYTES).ok().flatten())
                    .map(|(b, _)| b);
                if ours.is_some() && ours == home {
                    ViolationClass::ForeignData
                } else {
                    ViolationClass::StaleData
                }
            }
            _ => ViolationClass::IncoherentView,
        };
        let how = match via {
            None => "read()".to_string(),
            Some(a) => format!("a load through the mapping (page {}, {:?})", a.page, a.target),
        };
        let message =
            format!("{how} of file {file_id} word {word} returned {v:#018x}, reference has {expected:#018x}");
        let found = (format!("{:?}", Word::decode(v)), format!("{:?}", Word::decode(expected)));
        let v = violation(class, t, i, message).in_file(format!("file{file_id}"), word * 8);
        w.findings.push(v.found_allowed(found.0, found.1));
    }

    fn map(&self, slot: usize) -> Result<(MapId, usize, bool), Errno> {
        self.world.borrow().maps[slot].ok_or(Errno::Invalid("no mapping in slot"))
    }

    async fn mmap(&self, slot: usize, fslot: usize, off: u64, len: u64, map_sync: bool) -> Result<(), Errno> {
        if self.world.borrow().maps[slot].is_some() {
            return Err(Errno::Invalid("mapping slot in use"));
        }
        let (ino, _) = self.file(fslot)?;
        let id = self.fs.mmap(ino, off, len, map_sync).await?;
        self.world.borrow_mut().maps[slot] = Some((id, fslot, map_sync));
        Ok(())
    }

    async fn munmap(&self, slot: usize) -> Result<(), Errno> {
        let (id, _, _) = self.map(slot)?;
        self.fs.munmap(id).await?;
        self.world.borrow_mut().maps[slot] = None;
        Ok(())
    }

    /// The file behind a mapping; stale if the slot's file was unlinked (then accesses SIGBUS).
    fn map_file(&self, slot: usize) -> Result<(MapId, u32, Ino, bool), Errno> {
        let (id, _, map_sync) = self.map(slot)?;
        let ino = self.fs.state().mapping(id)?.ino;
        Ok((id, self.latest_file_id(ino)?, ino, map_sync))
    }

    /// The newest incarnation created on inode `ino` (a mapping or pin names the inode, not the
    /// slot, so it follows the file it was made on).
    fn latest_file_id(&self, ino: Ino) -> Result<u32, Errno> {
        let w = self.world.borrow();
        w.record.files.iter().rev().find(|f| f.ino == ino).map(|f| f.file_id).ok_or(Errno::NoEntry)
    }

    /// UseAfterFree oracle: a load, store or DMA through page `a` must reach the block that backs
    /// it.
    #[allow(clippy::too_many_arguments)]
    fn check_landing(
        &self,
        st: &FsState,
        t: usize,
        i: usize,
        ino: Ino,
        file_id: u32,
        a: &PageIo,
        what: &str,
    ) -> bool {
        let PteTarget::Block(b) = a.target else { return true };
        if st.block_backs(ino, a.page, b) {
            return true;
        }
        let message = format!(
            "{what} at file {file_id} page {} reached block {} which no longer backs it ({})",
            a.page,
            b.0,
            if st.store.meta().is_allocated(b) { "it belongs to another file" } else { "it is free" }
        );
        let v = violation(ViolationClass::UseAfterFree, t, i, message)
            .in_file(format!("file{file_id}"), a.page * BLOCK_BYTES);
        self.world.borrow_mut().findings.push(v);
        false
    }

    async fn store(&self, t: usize, i: usize, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (id, file_id, ino, _) = self.map_file(slot)?;
        let base = self.fs.state().mapping(id)?.off;
        let (version, _) = self.new_words(file_id, 0, 8);
        let words = tagged_words(file_id, (base + off) / 8, len / 8, version);
        self.fs
            .store(id, off, &words, |st, io| self.land(st, t, i, ino, file_id, version, io, "a store"))
            .await
    }

    async fn load(&self, t: usize, i: usize, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (id, file_id, ino, _) = self.map_file(slot)?;
        self.fs
            .load(id, off, len, |st, io| {
                if self.check_landing(st, t, i, ino, file_id, &io, "a load") {
                    self.compare(st, t, i, file_id, io.lo, io.words, Some(&io));
                }
            })
            .await
    }

    fn ack(
        &self,
        file_id: u32,
        lo: u64,
        hi: u64,
        before: (usize, usize),
        kind: AckKind,
        size_bytes: Option<u64>,
    ) {
        let at = self.trace_pos();
        let (events_before, started_at) = before;
        self.world.borrow_mut().record.acks.push(Ack {
            at,
            file_id,
            lo,
            hi,
            events_before,
            started_at,
            data_only: kind == AckKind::Persist,
            kind,
            size_bytes,
        });
    }

    /// (record events, trace position) as an acknowledging call begins.
    fn events_len(&self) -> (usize, usize) {
        (self.world.borrow().record.events.len(), self.trace_pos())
    }

    async fn persist(&self, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (id, file_id, _, map_sync) = self.map_file(slot)?;
        let base = self.fs.state().mapping(id)?.off;
        let before = self.events_len();
        let pages = self.fs.persist(id, off, len).await?;
        // Only MAP_SYNC makes user-space flushing a durability promise, and only for pages
        // written through a writable PTE: their write fault made the metadata durable.
        if map_sync {
            let (lo, hi) = ((base + off) / 8, (base + off + len) / 8);
            for page in pages {
                let (plo, phi) = (page * BLOCK_BYTES / 8, (page + 1) * BLOCK_BYTES / 8);
                self.ack(file_id, lo.max(plo), hi.min(phi), before, AckKind::Persist, None);
            }
        }
        Ok(())
    }

    async fn msync(&self, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (id, file_id, _, _) = self.map_file(slot)?;
        let (base, mapped) = {
            let st = self.fs.state();
            let m = st.mapping(id)?;
            (m.off, m.len)
        };
        let before = self.events_len();
        self.fs.msync(id, off, len).await?;
        // msync writes back the mapping's pages in the range, so only those are promised: a
        // range running past the mapping's end says nothing of the file beyond it.
        let len = len.min(mapped.saturating_sub(off));
        self.ack(file_id, (base + off) / 8, (base + off + len) / 8, before, AckKind::Msync, None);
        Ok(())
    }

    async fn fsync(&self, slot: usize) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let before = self.events_len();
        let size = self.fs.state().size_of(ino).ok();
        self.fs.fsync(ino).await?;
        self.ack(file_id, 0, u64::MAX, before, AckKind::Fsync, size);
        Ok(())
    }

    async fn sync(&self) -> Result<(), Errno> {
        let live: Vec<(u32, Ino)> =
            self.world.borrow().files.iter().flatten().map(|f| (f.file_id, f.ino)).collect();
        let before = self.events_len();
        let sizes: Vec<Option<u64>> =
            live.iter().map(|&(_, ino)| self.fs.state().size_of(ino).ok()).collect();
        self.fs.sync().await?;
        for (&(file_id, _), size) in live.iter().zip(sizes) {
            self.ack(file_id, 0, u64::MAX, before, AckKind::Sync, size);
        }
        Ok(())
    }

    async fn punch(&self, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let zero = std::cell::Cell::new(None);
        self.fs
            .punch_hole(ino, off, len, || {
                zero.set(Some(self.zero_words(file_id, off, off + len, ZeroKind::Punch)))
            })
            .await?;
        self.zero_done(&zero, ino);
        Ok(())
    }

    async fn truncate(&self, slot: usize, size: u64) -> Result<(), Errno> {
        let (ino, file_id) = self.file(slot)?;
        let zero = std::cell::Cell::new(None);
        let kind = ZeroKind::Truncate { size_bytes: size };
        self.fs
            .truncate(ino, size, || zero.set(Some(self.zero_words(file_id, size, u64::MAX, kind))))
            .await?;
        self.zero_done(&zero, ino);
        Ok(())
    }

    fn pin_slot(&self, slot: usize) -> Result<(PinId, usize), Errno> {
        self.world.borrow().pins[slot].ok_or(Errno::Invalid("no pin in slot"))
    }

    async fn pin(&self, slot: usize, mslot: usize, off: u64, len: u64, write: bool) -> Result<(), Errno> {
        if self.world.borrow().pins[slot].is_some() {
            return Err(Errno::Invalid("pin slot in use"));
        }
        let (id, _, _) = self.map(mslot)?;
        let pin = self.fs.pin(id, off, len, write).await?;
        self.world.borrow_mut().pins[slot] = Some((pin, mslot));
        Ok(())
    }

    async fn dma_write(&self, t: usize, i: usize, slot: usize, off: u64, len: u64) -> Result<(), Errno> {
        let (pin, _) = self.pin_slot(slot)?;
        let (rec_ino, rec_off) = {
            let st = self.fs.state();
            let rec = st.pins.get(pin).cloned().flatten().ok_or(Errno::Invalid("no such pin"))?;
            (rec.ino, rec.off)
        };
        let file_id = self.latest_file_id(rec_ino)?;
        let (version, _) = self.new_words(file_id, 0, 8);
        let words = tagged_words(file_id, (rec_off + off) / 8, len / 8, version);
        self.fs
            .dma_write(pin, off, &words, |st, io| {
                self.land(st, t, i, rec_ino, file_id, version, io, "a DMA write")
            })
            .await
    }

    async fn unpin(&self, slot: usize) -> Result<(), Errno> {
        let (pin, _) = self.pin_slot(slot)?;
        self.fs.unpin(pin).await?;
        self.world.borrow_mut().pins[slot] = None;
        Ok(())
    }
}

/// Data words for `count` words of `file_id` from word `first`. A range relative to a mapping or
/// pin may reach past the file size bound; words there are never stored (the access faults
/// SIGSEGV or is rejected first), so they get zero instead of an unencodable tag.
fn tagged_words(file_id: u32, first: u64, count: u64, version: u32) -> Vec<u64> {
    let words_max = crate::workload::FILE_BYTES_MAX / 8;
    (first..first + count)
        .map(
            |word_off| {
                if word_off < words_max { DataTag { file_id, word_off, version }.encode() } else { 0 }
            },
        )
        .collect()
}
