//! The runtime half of daxfs: the DAX page cache (entries), user mappings and their PTEs, DMA
//! pins, and the file operations. Persistent metadata lives in [`MetaStore`].
//!
//! Concurrency: every operation is an `async fn`; each `.await` on the scheduler is a point
//! where the kernel could sleep or be preempted. State is in one `RefCell`, and no borrow is ever
//! held across an `.await`, so each step is atomic.
//!
//! Lock order (outer first): `i_rwsem` (`LockId::Inode`) → `invalidate_lock`
//! (`LockId::Invalidate`) → DAX entry lock (`LockId::Entry`). Faults take only the last two.

use std::cell::{RefCell, RefMut};
use std::collections::BTreeMap;
use std::rc::Rc;

use super::bugs::{Bug, BugSet};
use super::layout::Geometry;
use super::store::MetaStore;
use super::types::*;
use crate::pmem::{Device, FlushKind, PmemAddr};
use crate::sched::Sched;

/// Allocation policy, a mount option (docs/design.md §4). Both are correct in the fixed model.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AllocPolicy {
    /// Zero new blocks and make the zeroes durable before the allocation commits (XFS/ext4 DAX).
    #[default]
    ZeroBeforeCommit,
    /// Allocate unwritten, write/zero, flush + fence, then `end_io` converts to written.
    UnwrittenEndIo,
}

impl AllocPolicy {
    pub fn name(self) -> &'static str {
        match self {
            Self::ZeroBeforeCommit => "zero-before-commit",
            Self::UnwrittenEndIo => "unwritten-end-io",
        }
    }
}

impl std::str::FromStr for AllocPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "zero-before-commit" => Ok(Self::ZeroBeforeCommit),
            "unwritten-end-io" => Ok(Self::UnwrittenEndIo),
            _ => Err(format!(
                "unknown allocation policy `{s}` (expected zero-before-commit or unwritten-end-io)"
            )),
        }
    }
}

#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct MountOptions {
    pub policy: AllocPolicy,
    pub bugs: BugSet,
    /// Fault-around (`map_pages`) on read faults.
    pub fault_around: bool,
}

/// What a user-visible operation can fail with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Errno {
    #[error("ENOSPC")]
    NoSpace,
    #[error("ENOENT")]
    NoEntry,
    #[error("EINVAL: {0}")]
    Invalid(&'static str),
    #[error("EFBIG: {0}")]
    TooBig(&'static str),
    #[error("SIGBUS")]
    SigBus,
    #[error("SIGSEGV")]
    SigSegv,
    #[error("EIO: {0}")]
    Io(FsError),
}

impl From<FsError> for Errno {
    fn from(e: FsError) -> Self {
        match e {
            FsError::NoSpace => Errno::NoSpace,
            FsError::NoEntry(_) => Errno::NoEntry,
            FsError::TooBig(w) => Errno::TooBig(w),
            FsError::Invalid(w) => Errno::Invalid(w),
            other => Errno::Io(other),
        }
    }
}

impl From<crate::pmem::PmemError> for Errno {
    fn from(e: crate::pmem::PmemError) -> Self {
        Errno::Io(FsError::Device(e))
    }
}

pub type FsResult<T> = Result<T, Errno>;

/// A DAX entry in an inode's mapping tree (the kernel's xarray value).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// Locked placeholder inserted while a fault works on the index.
    Empty,
    /// The shared zero page is mapped read-only for this index.
    ZeroPage,
    /// A real block is mapped.
    Pfn(BlockNr),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Covers a whole PMD (keyed at the PMD-aligned index).
    pub pmd: bool,
    /// Written through a writable PTE since the last fsync/msync write-protected it.
    pub dirty: bool,
}

/// What a PTE points at.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PteTarget {
    ZeroPage,
    Block(BlockNr),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Pte {
    pub target: PteTarget,
    pub writable: bool,
}

/// A shared mapping of `len` bytes of `ino` from file offset `off` (both page aligned).
#[derive(Clone, Debug)]
pub struct Mapping {
    pub ino: Ino,
    pub off: u64,
    pub len: u64,
    pub map_sync: bool,
    /// PTEs by file page index.
    pub ptes: BTreeMap<u64, Pte>,
    /// The file was unlinked under the mapping: every access faults with SIGBUS.
    pub dead: bool,
}

/// A get_user_pages pin of a mapping range: the pinned blocks, by file page index.
#[derive(Clone, Debug)]
pub struct PinRec {
    pub ino: Ino,
    pub off: u64,
    pub len: u64,
    pub write: bool,
    pub pages: BTreeMap<u64, PteTarget>,
}

pub type MapId = usize;
pub type PinId = usize;

/// All mutable daxfs state. Fields are protected by the scheduler's atomic steps; the lock that
/// orders each against other threads is named per field.
pub struct FsState {
    pub dev: Device,
    pub store: MetaStore,
    pub opts: MountOptions,
    pub geom: Geometry,
    /// DAX entries keyed by (ino, page index); PMD entries at the aligned index. Entry lock.
    pub entries: BTreeMap<(u32, u64), Entry>,
    /// Mappings by id (ids never reused in one mount). PTEs change under the entry lock or
    /// `invalidate_lock` exclusive.
    pub maps: Vec<Option<Mapping>>,
    /// Pins by id.
    pub pins: Vec<Option<PinRec>>,
    /// Last transaction that changed each inode's metadata (MAP_SYNC / fsync need it durable).
    pub last_tid: BTreeMap<u32, Tid>,
    /// The blocks the latest truncate, punch or unlink of each inode freed: pages
    /// `first..last` in transaction `tid` (absent: it freed nothing). Written under the inode's
    /// `i_rwsem` held exclusive, so it names that operation until the inode's next shrink.
    pub last_freed: BTreeMap<u32, Freed>,
    /// Inodes unlinked in this mount, oldest first. The model has no open count, so instead of
    /// an orphan list `create` reuses these numbers last: an operation that resolved the old
    /// file before the unlink must not land in a new file that got the same number.
    pub unlinked: Vec<u32>,
}

/// File pages `first..last` whose blocks transaction `tid` freed.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Freed {
    pub first: u64,
    pub last: u64,
    pub tid: Tid,
}

/// A mounted daxfs.
pub struct DaxFs {
    pub sched: Rc<Sched>,
    st: RefCell<FsState>,
}

pub(crate) const SITE_ZERO: &str = "daxfs::iomap::zero_range";
pub(crate) const SITE_WRITE: &str = "daxfs::dax_iomap_rw::copy";
pub(crate) const SITE_STORE: &str = "user::store";
pub(crate) const SITE_DMA: &str = "dma::write";

impl DaxFs {
    /// Mounts `dev` (journal replay included).
    pub fn mount(mut dev: Device, opts: MountOptions, sched: Rc<Sched>) -> Result<DaxFs, FsError> {
        let store = MetaStore::mount(&mut dev, opts.bugs)?;
        let geom = *store.geometry();
        let st = FsState {
            dev,
            store,
            opts,
            geom,
            entries: BTreeMap::new(),
            maps: Vec::new(),
            pins: Vec::new(),
            last_tid: BTreeMap::new(),
            last_freed: BTreeMap::new(),
            unlinked: Vec::new(),
        };
        Ok(DaxFs { sched, st: RefCell::new(st) })
    }

    /// The state, for one atomic step. Never hold it across an `.await`.
    pub fn state(&self) -> RefMut<'_, FsState> {
        self.st.borrow_mut()
    }

    pub fn into_state(self) -> FsState {
        self.st.into_inner()
    }

    pub fn bug(&self, bug: Bug) -> bool {
        self.st.borrow().opts.bugs.contains(bug)
    }
}

impl FsState {
    pub fn bug(&self, bug: Bug) -> bool {
        self.opts.bugs.contains(bug)
    }

    /// The inode `create` takes: the lowest free one never unlinked in this mount, else the
    /// free one unlinked longest ago.
    pub fn pick_inode(&mut self) -> FsResult<Ino> {
        let fresh = self.store.free_inode()?;
        let free = |i: u32| self.store.inode(Ino(i)).is_err();
        if let Some(i) = (fresh.0..INODES_MAX).find(|&i| free(i) && !self.unlinked.contains(&i)) {
            return Ok(Ino(i));
        }
        // Every free inode was unlinked here (`fresh` among them): take the oldest.
        let pos = self.unlinked.iter().position(|&i| free(i)).expect("the free inode was unlinked");
        Ok(Ino(self.unlinked.remove(pos)))
    }

    pub fn pmd_pages(&self) -> u64 {
        self.geom.pmd_blocks
    }

    pub fn size_of(&self, ino: Ino) -> FsResult<u64> {
        Ok(self.store.inode(ino)?.size_bytes)
    }

    pub fn block_addr(&self, b: BlockNr) -> PmemAddr {
        self.geom.block_addr(b)
    }

    /// Commits `records`, remembering the tid for every inode they touch.
    pub fn commit(&mut self, records: &[Record], site: &'static str) -> FsResult<Tid> {
        let tid = self.store.commit(&mut self.dev, records, site)?;
        for r in records {
            let ino = match r {
                Record::ExtentSet { ino, .. }
                | Record::ExtentRemove { ino, .. }
                | Record::InodeSize { ino, .. }
                | Record::InodeCreate { ino }
                | Record::InodeDelete { ino } => ino,
                Record::BitmapSet { .. } | Record::BitmapClear { .. } => continue,
            };
            self.last_tid.insert(ino.0, tid);
        }
        Ok(tid)
    }

    /// Makes every committed transaction durable (flush + fence the commit records).
    pub fn force_all(&mut self) -> FsResult<()> {
        Ok(self.store.force_all(&mut self.dev)?)
    }

    pub fn checkpoint(&mut self) -> FsResult<()> {
        Ok(self.store.checkpoint(&mut self.dev)?)
    }

    /// Is every metadata change of `ino` durable?
    pub fn inode_meta_durable(&self, ino: Ino) -> bool {
        self.last_tid.get(&ino.0).is_none_or(|&t| self.store.is_durable(t))
    }

    /// The physical block backing file page `page` of `ino`, with its extent state.
    pub fn lookup(&self, ino: Ino, page: u64) -> FsResult<Option<(BlockNr, ExtentState)>> {
        let inode = self.store.inode(ino)?;
        Ok(inode.lookup(page).map(|e| (BlockNr(e.phys.0 + (page - e.file_block)), e.state)))
    }

    /// Does the in-memory metadata say block `b` backs page `page` of `ino`? (UseAfterFree
    /// oracle input: a store or DMA through a stale PTE or pin lands elsewhere.)
    pub fn block_backs(&self, ino: Ino, page: u64, b: BlockNr) -> bool {
        matches!(self.lookup(ino, page), Ok(Some((phys, _))) if phys == b)
    }

    /// Stores `words` at block `b` from word `word_in_block` and clwb's the lines (the kernel's
    /// memcpy_flushcache without the trailing fence).
    pub fn store_words(
        &mut self,
        b: BlockNr,
        byte_in_block: u64,
        words: &[u64],
        site: &'static str,
    ) -> FsResult<()> {
        let addr = PmemAddr(self.block_addr(b).0 + byte_in_block);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        self.dev.store(addr, &bytes, site)?;
        Ok(())
    }

    pub fn flush_range(
        &mut self,
        b: BlockNr,
        byte_in_block: u64,
        len: u64,
        site: &'static str,
    ) -> FsResult<()> {
        let addr = PmemAddr(self.block_addr(b).0 + byte_in_block);
        self.dev.flush(addr, len, FlushKind::Clwb, site)?;
        Ok(())
    }

    pub fn read_words(&self, b: BlockNr, byte_in_block: u64, count: usize) -> FsResult<Vec<u64>> {
        let mut buf = vec![0u8; count * 8];
        self.dev.read(PmemAddr(self.block_addr(b).0 + byte_in_block), &mut buf)?;
        Ok(buf.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect())
    }

    /// Zeroes `count` blocks from `b` with write-back stores + clwb (no fence).
    pub fn zero_blocks(&mut self, b: BlockNr, count: u64) -> FsResult<()> {
        let len = count * BLOCK_BYTES;
        let zeros = vec![0u8; len as usize];
        self.dev.store(self.block_addr(b), &zeros, SITE_ZERO)?;
        self.dev.flush(self.block_addr(b), len, FlushKind::Clwb, SITE_ZERO)?;
        Ok(())
    }

    pub fn fence(&mut self, site: &'static str) -> FsResult<()> {
        self.dev.fence(site)?;
        Ok(())
    }

    /// The entry covering page `page` of `ino`: its own, or a PMD entry at the aligned index.
    pub fn entry_covering(&self, ino: Ino, page: u64) -> Option<(u64, Entry)> {
        if let Some(e) = self.entries.get(&(ino.0, page)) {
            return Some((page, *e));
        }
        let base = page & !(self.pmd_pages() - 1);
        self.entries.get(&(ino.0, base)).filter(|e| e.pmd).map(|e| (base, *e))
    }

    /// Removes every PTE of every mapping of `ino` in file pages `first..last` for which
    /// `which(pte)` holds.
    pub fn unmap_range(&mut self, ino: Ino, first: u64, last: u64, which: impl Fn(&Pte) -> bool) {
        for m in self.maps.iter_mut().flatten().filter(|m| m.ino == ino) {
            m.ptes.retain(|&p, pte| p < first || p >= last || !which(pte));
        }
    }
}
