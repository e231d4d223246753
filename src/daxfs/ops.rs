//! File operations (docs/design.md §4): create, unlink, write/read (`dax_iomap_rw`), mmap/munmap, user
//! stores and loads, persist, fallocate, punch_hole, truncate, fsync/msync, pins and DMA, sync.

use super::bugs::Bug;
use super::fs::{
    DaxFs, Entry, EntryKind, Errno, Freed, FsResult, FsState, MapId, Mapping, PinId, PinRec, Pte, PteTarget,
};
use super::iomap;
use super::types::*;
use crate::pmem::{FlushKind, PmemAddr};
use crate::sched::{LockId, Mode};

const SITE_CREATE: &str = "daxfs::create";
const SITE_SIZE: &str = "daxfs::write::size";
const SITE_FREE: &str = "daxfs::punch::free";
const SITE_FSYNC: &str = "daxfs::fsync";
const SITE_PERSIST: &str = "user::persist";
const SITE_FALLOC: &str = "daxfs::fallocate";
const SITE_TRUNC_ZERO: &str = "daxfs::truncate::zero_tail";

/// One page of a data access, shown to the caller's observer in the step that performs it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PageIo<'a> {
    /// File page index.
    pub page: u64,
    /// The block (or zero page) the access went to.
    pub target: PteTarget,
    /// Trace index of the data store (for loads: the trace length at the load).
    pub at: usize,
    /// Byte offset in the file of `words[0]`.
    pub lo: u64,
    pub words: &'a [u64],
}

fn pages_of(off: u64, len: u64) -> std::ops::Range<u64> {
    off / BLOCK_BYTES..(off + len).div_ceil(BLOCK_BYTES)
}

fn check_data_range(off: u64, len: u64) -> FsResult<()> {
    if off % 8 != 0 || len % 8 != 0 || len == 0 {
        return Err(Errno::Invalid("data offsets and lengths are 8-byte aligned and non-zero"));
    }
    if off.checked_add(len).is_none_or(|end| end > FILE_BYTES_MAX) {
        return Err(Errno::TooBig("beyond the file size bound"));
    }
    Ok(())
}

/// Largest file the model allows (the workload bound, docs/design.md §10: 8 MiB).
pub const FILE_BYTES_MAX: u64 = 8 << 20;

impl DaxFs {
    pub async fn create(&self) -> FsResult<Ino> {
        let mut st = self.state();
        let ino = st.pick_inode()?;
        st.commit(&[Record::InodeCreate { ino }], SITE_CREATE)?;
        Ok(ino)
    }

    /// Unlink: truncate to zero (with every lock and `break_layouts`), then delete the inode.
    /// Mappings of the file stay but fault with SIGBUS (the model keeps no orphan list).
    pub async fn unlink(&self, ino: Ino, on_unmap: impl FnOnce()) -> FsResult<()> {
        self.state().store.inode(ino)?;
        self.shrink(ino, 0, u64::MAX, Some(0), true, on_unmap).await?;
        self.state().unlinked.push(ino.0);
        Ok(())
    }

    /// `write(2)` through `dax_iomap_rw`: allocate per policy, copy with write-back stores +
    /// clwb (memcpy_flushcache), extend the size. `on_copy` runs in the step that copies each
    /// block, so the caller's reference model changes atomically with the media.
    pub async fn write(
        &self,
        ino: Ino,
        off: u64,
        words: &[u64],
        mut on_copy: impl FnMut(&FsState, PageIo),
    ) -> FsResult<()> {
        check_data_range(off, words.len() as u64 * 8)?;
        self.sched.lock(LockId::Inode(ino.0), Mode::Exclusive).await;
        let r = self.write_locked(ino, off, words, &mut on_copy).await;
        self.sched.unlock(LockId::Inode(ino.0), Mode::Exclusive);
        r
    }

    async fn write_locked(
        &self,
        ino: Ino,
        off: u64,
        words: &[u64],
        on_copy: &mut impl FnMut(&FsState, PageIo),
    ) -> FsResult<()> {
        let end = off + words.len() as u64 * 8;
        {
            // Extend the size first, so no allocation ever lies wholly past EOF; a crash in
            // between leaves zeros in the extension, never old data.
            let mut st = self.state();
            if end > st.size_of(ino)? {
                st.commit(&[Record::InodeSize { ino, size_bytes: end }], SITE_SIZE)?;
            }
        }
        for page in pages_of(off, end - off) {
            let lo = off.max(page * BLOCK_BYTES);
            let hi = end.min((page + 1) * BLOCK_BYTES);
            let chunk = &words[((lo - off) / 8) as usize..((hi - off) / 8) as usize];
            let (b, io, new) = iomap::iomap_write_block(&mut self.state(), ino, page)?;
            if new {
                // IomapFlags::NEW: unmap zero-page entries of the page before copying (waits
                // on the entry lock of a fault in progress).
                self.invalidate_zero_page(ino, page).await;
            }
            {
                let mut st = self.state();
                let at = st.dev.trace().len();
                st.store_words(b, lo % BLOCK_BYTES, chunk, super::fs::SITE_WRITE)?;
                st.flush_range(b, lo % BLOCK_BYTES, hi - lo, super::fs::SITE_WRITE)?;
                if let Some(io) = io {
                    iomap::end_io(&mut st, io)?;
                }
                on_copy(&st, PageIo { page, target: PteTarget::Block(b), at, lo, words: chunk });
            }
            self.sched.yield_now().await;
        }
        Ok(())
    }

    async fn invalidate_zero_page(&self, ino: Ino, page: u64) {
        // Any entry, even a locked placeholder: a read fault holding it may be about to
        // install the zero page, so wait for it like invalidate_inode_pages2_range does.
        let key = match self.state().entry_covering(ino, page) {
            Some((key, e)) if matches!(e.kind, EntryKind::ZeroPage | EntryKind::Empty) => key,
            _ => return,
        };
        self.sched.lock(LockId::Entry(ino.0, key), Mode::Exclusive).await;
        {
            let mut st = self.state();
            if st.entries.get(&(ino.0, key)).is_some_and(|e| e.kind == EntryKind::ZeroPage) {
                st.entries.remove(&(ino.0, key));
                st.unmap_range(ino, key, key + 1, |p| p.target == PteTarget::ZeroPage);
            }
        }
        self.sched.unlock(LockId::Entry(ino.0, key), Mode::Exclusive);
    }

    /// `read(2)`: holes and unwritten extents read as zeros; stops at EOF. One atomic copy.
    pub async fn read(&self, ino: Ino, off: u64, len: u64) -> FsResult<Vec<u64>> {
        check_data_range(off, len)?;
        self.sched.lock(LockId::Inode(ino.0), Mode::Shared).await;
        let r = self.state().read_now(ino, off, len);
        self.sched.unlock(LockId::Inode(ino.0), Mode::Shared);
        r
    }

    pub async fn mmap(&self, ino: Ino, off: u64, len: u64, map_sync: bool) -> FsResult<MapId> {
        if off % BLOCK_BYTES != 0 || len % BLOCK_BYTES != 0 || len == 0 {
            return Err(Errno::Invalid("mmap offset and length are page aligned"));
        }
        let mut st = self.state();
        st.store.inode(ino)?;
        let m = Mapping { ino, off, len, map_sync, ptes: Default::default(), dead: false };
        st.maps.push(Some(m));
        Ok(st.maps.len() - 1)
    }

    pub async fn munmap(&self, map: MapId) -> FsResult<()> {
        let mut st = self.state();
        st.mapping(map)?;
        st.maps[map] = None;
        Ok(())
    }

    /// User stores of `words` at byte `off` of mapping `map`. `on_page` runs in the step that
    /// stores each page (for the caller's reference model and UseAfterFree check).
    pub async fn store(
        &self,
        map: MapId,
        off: u64,
        words: &[u64],
        mut on_page: impl FnMut(&FsState, PageIo),
    ) -> FsResult<()> {
        check_data_range(off, words.len() as u64 * 8)?;
        let m = self.state().mapping(map)?.clone();
        let (start, end) = (m.off + off, m.off + off + words.len() as u64 * 8);
        for page in pages_of(start, end - start) {
            let lo = start.max(page * BLOCK_BYTES);
            let hi = end.min((page + 1) * BLOCK_BYTES);
            let chunk = &words[((lo - start) / 8) as usize..((hi - start) / 8) as usize];
            let pte = self.access(map, page, true).await?;
            {
                let mut st = self.state();
                let at = st.dev.trace().len();
                if let PteTarget::Block(b) = pte.target {
                    st.store_words(b, lo % BLOCK_BYTES, chunk, super::fs::SITE_STORE)?;
                }
                on_page(&st, PageIo { page, target: pte.target, at, lo, words: chunk });
            }
            self.sched.yield_now().await;
        }
        Ok(())
    }

    /// User loads; `on_page` sees each page's words in the step that loads them.
    pub async fn load(
        &self,
        map: MapId,
        off: u64,
        len: u64,
        mut on_page: impl FnMut(&FsState, PageIo),
    ) -> FsResult<()> {
        check_data_range(off, len)?;
        let m = self.state().mapping(map)?.clone();
        let (start, end) = (m.off + off, m.off + off + len);
        for page in pages_of(start, end - start) {
            let lo = start.max(page * BLOCK_BYTES);
            let hi = end.min((page + 1) * BLOCK_BYTES);
            let pte = self.access(map, page, false).await?;
            {
                let st = self.state();
                let words = match pte.target {
                    PteTarget::ZeroPage => vec![0; ((hi - lo) / 8) as usize],
                    PteTarget::Block(b) => st.read_words(b, lo % BLOCK_BYTES, ((hi - lo) / 8) as usize)?,
                };
                let at = st.dev.trace().len();
                on_page(&st, PageIo { page, target: pte.target, at, lo, words: &words });
            }
            self.sched.yield_now().await;
        }
        Ok(())
    }

    /// User-space persist: clwb over the mapped lines of the range, then sfence. Returns the file
    /// pages flushed through a writable PTE (on MAP_SYNC, their metadata is already durable).
    pub async fn persist(&self, map: MapId, off: u64, len: u64) -> FsResult<Vec<u64>> {
        check_data_range(off, len)?;
        let mut st = self.state();
        let m = st.mapping(map)?.clone();
        let (start, end) = (m.off + off, (m.off + off + len).min(m.off + m.len));
        let mut writable = Vec::new();
        for page in pages_of(start, end.saturating_sub(start)) {
            if let Some(Pte { target: PteTarget::Block(b), writable: w }) = m.ptes.get(&page) {
                let lo = start.max(page * BLOCK_BYTES);
                let hi = end.min((page + 1) * BLOCK_BYTES);
                st.flush_range(*b, lo % BLOCK_BYTES, hi - lo, SITE_PERSIST)?;
                if *w {
                    writable.push(page);
                }
            }
        }
        st.fence(SITE_PERSIST)?;
        Ok(writable)
    }

    /// `fallocate(mode=0)`: unwritten preallocation of the holes in the range; extends the size.
    pub async fn fallocate(&self, ino: Ino, off: u64, len: u64) -> FsResult<()> {
        if off % BLOCK_BYTES != 0 || len % BLOCK_BYTES != 0 || len == 0 || off + len > FILE_BYTES_MAX {
            return Err(Errno::Invalid("fallocate range is block aligned and inside the size bound"));
        }
        self.sched.lock(LockId::Inode(ino.0), Mode::Exclusive).await;
        let r = self.state().fallocate_now(ino, off, len);
        self.sched.unlock(LockId::Inode(ino.0), Mode::Exclusive);
        r
    }

    /// Hole punch of block-aligned `off..off+len`.
    /// `on_unmap` runs in the step that unmaps the range (the caller's reference model forgets
    /// the data there); likewise for truncate and unlink.
    pub async fn punch_hole(&self, ino: Ino, off: u64, len: u64, on_unmap: impl FnOnce()) -> FsResult<()> {
        if off % BLOCK_BYTES != 0 || len % BLOCK_BYTES != 0 || len == 0 {
            return Err(Errno::Invalid("punch range is block aligned"));
        }
        self.shrink(ino, off / BLOCK_BYTES, (off + len) / BLOCK_BYTES, None, false, on_unmap).await
    }

    pub async fn truncate(&self, ino: Ino, size: u64, on_unmap: impl FnOnce()) -> FsResult<()> {
        if size % 8 != 0 || size > FILE_BYTES_MAX {
            return Err(Errno::Invalid("truncate size is 8-byte aligned and inside the size bound"));
        }
        // Grow or shrink is decided under i_rwsem: a size read before it may be stale.
        self.sched.lock(LockId::Inode(ino.0), Mode::Exclusive).await;
        let old = self.state().size_of(ino);
        let r = match old {
            Err(e) => Err(e),
            Ok(old) if size >= old => {
                self.state().commit(&[Record::InodeSize { ino, size_bytes: size }], SITE_SIZE).map(|_| ())
            }
            Ok(_) => {
                self.shrink_invalidated(
                    ino,
                    size.div_ceil(BLOCK_BYTES),
                    u64::MAX,
                    Some(size),
                    false,
                    on_unmap,
                )
                .await
            }
        };
        self.sched.unlock(LockId::Inode(ino.0), Mode::Exclusive);
        r
    }

    /// Truncate down / punch / unlink: `i_rwsem` → `invalidate_lock` exclusive →
    /// `break_layouts` (wait for DMA pins) → unmap and delete entries → free the blocks.
    async fn shrink(
        &self,
        ino: Ino,
        first: u64,
        last: u64,
        size: Option<u64>,
        delete: bool,
        on_unmap: impl FnOnce(),
    ) -> FsResult<()> {
        self.sched.lock(LockId::Inode(ino.0), Mode::Exclusive).await;
        let r = self.shrink_invalidated(ino, first, last, size, delete, on_unmap).await;
        self.sched.unlock(LockId::Inode(ino.0), Mode::Exclusive);
        r
    }

    /// [`Self::shrink_locked`] under `invalidate_lock` exclusive; the caller holds `i_rwsem`.
    async fn shrink_invalidated(
        &self,
        ino: Ino,
        first: u64,
        last: u64,
        size: Option<u64>,
        delete: bool,
        on_unmap: impl FnOnce(),
    ) -> FsResult<()> {
        self.sched.assert_held(LockId::Inode(ino.0));
        self.sched.lock(LockId::Invalidate(ino.0), Mode::Exclusive).await;
        let r = self.shrink_locked(ino, first, last, size, delete, on_unmap).await;
        self.sched.unlock(LockId::Invalidate(ino.0), Mode::Exclusive);
        r
    }

    async fn shrink_locked(
        &self,
        ino: Ino,
        first: u64,
        last: u64,
        size: Option<u64>,
        delete: bool,
        on_unmap: impl FnOnce(),
    ) -> FsResult<()> {
        self.state().store.inode(ino)?;
        // truncate-ignores-pin: truncate must wait until no DMA pin covers the range (break_layouts).
        if !self.bug(Bug::TruncateIgnoresPin) {
            self.break_layouts(ino, first, last).await;
        }
        // free-before-unmap: blocks are freed only after every mapping of them is gone.
        if self.bug(Bug::FreeBeforeUnmap) {
            // The observer still runs as the range starts going away (here: at the free).
            on_unmap();
            self.state().free_range(ino, first, last, size, delete)?;
            self.sched.yield_now().await;
            self.state().unmap_and_delete(ino, first, last, size, delete)?;
        } else {
            // The observer runs first in this step, so it sees the trace position before the
            // truncate's tail-zeroing stores.
            on_unmap();
            self.state().unmap_and_delete(ino, first, last, size, delete)?;
            self.sched.yield_now().await;
            self.state().free_range(ino, first, last, size, delete)?;
        }
        Ok(())
    }

    /// `break_layouts`: waits until no DMA pin overlaps pages `first..last`. Like XFS, it drops
    /// `invalidate_lock` while sleeping (so the pin holder's faults can finish) and rechecks
    /// after retaking it.
    async fn break_layouts(&self, ino: Ino, first: u64, last: u64) {
        let key = layout_key(ino, first, last);
        while self.state().pinned(key) {
            self.sched.unlock(LockId::Invalidate(ino.0), Mode::Exclusive);
            self.sched.wait_until(key, || !self.state().pinned(key)).await;
            self.sched.lock(LockId::Invalidate(ino.0), Mode::Exclusive).await;
        }
    }

    /// fsync: write back every dirty entry of the file, then fence and commit the journal.
    pub async fn fsync(&self, ino: Ino) -> FsResult<()> {
        self.state().store.inode(ino)?;
        self.state().writeback(ino, 0, u64::MAX)?;
        self.sched.yield_now().await;
        let mut st = self.state();
        st.fence(SITE_FSYNC)?;
        st.force_all()?;
        Ok(())
    }

    /// msync of a mapping range: write back dirty entries in it, then fence and commit.
    pub async fn msync(&self, map: MapId, off: u64, len: u64) -> FsResult<()> {
        let m = self.state().mapping(map)?.clone();
        let pages = pages_of(m.off + off, len.min(m.len.saturating_sub(off)).max(1));
        self.state().writeback(m.ino, pages.start, pages.end)?;
        self.sched.yield_now().await;
        let mut st = self.state();
        st.fence(SITE_FSYNC)?;
        st.force_all()?;
        Ok(())
    }

    /// sync(2): write back everything, then checkpoint the journal.
    pub async fn sync(&self) -> FsResult<()> {
        let inos: Vec<u32> = self.state().entries.keys().map(|&(i, _)| i).collect();
        for ino in inos {
            self.state().writeback(Ino(ino), 0, u64::MAX)?;
        }
        self.sched.yield_now().await;
        let mut st = self.state();
        st.fence(SITE_FSYNC)?;
        st.checkpoint()?;
        Ok(())
    }

    /// get_user_pages on `len` bytes at `off` of mapping `map`. A write pin takes the write-fault
    /// path first, so allocation (and ENOSPC) happen before any DMA (`pin-without-write-fault`).
    pub async fn pin(&self, map: MapId, off: u64, len: u64, write: bool) -> FsResult<PinId> {
        let m = self.state().mapping(map)?.clone();
        if off % BLOCK_BYTES != 0 || len % BLOCK_BYTES != 0 || len == 0 {
            return Err(Errno::Invalid("pin range is page aligned"));
        }
        let mut rec = PinRec { ino: m.ino, off: m.off + off, len, write, pages: Default::default() };
        let id = {
            let mut st = self.state();
            st.pins.push(None);
            st.pins.len() - 1
        };
        for page in pages_of(m.off + off, len) {
            // pin-without-write-fault: the buggy pin maps the zero page and defers allocation to unpin.
            let fault_write = write && !self.bug(Bug::PinWithoutWriteFault);
            match self.access(map, page, fault_write).await {
                Ok(pte) => {
                    rec.pages.insert(page, pte.target);
                    // Pages pinned so far hold off truncate from now on.
                    self.state().pins[id] = Some(rec.clone());
                }
                Err(e) => {
                    self.state().pins[id] = None;
                    return Err(e);
                }
            }
        }
        self.state().pins[id] = Some(rec);
        Ok(id)
    }

    /// A device write into pinned pages: non-temporal stores completed by a fence (durable when
    /// the DMA completes). `on_page` runs in the step that writes each page.
    pub async fn dma_write(
        &self,
        pin: PinId,
        off: u64,
        words: &[u64],
        mut on_page: impl FnMut(&FsState, PageIo),
    ) -> FsResult<()> {
        check_data_range(off, words.len() as u64 * 8)?;
        let rec = self.state().pins.get(pin).cloned().flatten().ok_or(Errno::Invalid("no such pin"))?;
        if off + words.len() as u64 * 8 > rec.len {
            return Err(Errno::Invalid("DMA beyond the pinned range"));
        }
        if !rec.write {
            return Err(Errno::Invalid("DMA write into pages pinned for reading"));
        }
        let (start, end) = (rec.off + off, rec.off + off + words.len() as u64 * 8);
        for page in pages_of(start, end - start) {
            let lo = start.max(page * BLOCK_BYTES);
            let hi = end.min((page + 1) * BLOCK_BYTES);
            let chunk = &words[((lo - start) / 8) as usize..((hi - start) / 8) as usize];
            let target = rec.pages[&page];
            {
                let mut st = self.state();
                let at = st.dev.trace().len();
                if let PteTarget::Block(b) = target {
                    let addr = PmemAddr(st.block_addr(b).0 + lo % BLOCK_BYTES);
                    let bytes: Vec<u8> = chunk.iter().flat_map(|w| w.to_le_bytes()).collect();
                    st.dev.store_nt(addr, &bytes, super::fs::SITE_DMA)?;
                    st.fence(super::fs::SITE_DMA)?;
                }
                on_page(&st, PageIo { page, target, at, lo, words: chunk });
            }
            self.sched.yield_now().await;
        }
        Ok(())
    }

    /// put_user_page: drops the pin; written pages are dirtied (set_page_dirty).
    pub async fn unpin(&self, pin: PinId) -> FsResult<()> {
        let rec = {
            let mut st = self.state();
            let rec = st.pins.get_mut(pin).and_then(Option::take).ok_or(Errno::Invalid("no such pin"))?;
            for (&page, target) in &rec.pages {
                if let (true, PteTarget::Block(_)) = (rec.write, target)
                    && let Some((key, _)) = st.entry_covering(rec.ino, page)
                {
                    st.entries.get_mut(&(rec.ino.0, key)).expect("entry").dirty = true;
                }
            }
            rec
        };
        if rec.write && self.bug(Bug::PinWithoutWriteFault) {
            // pin-without-write-fault: allocation deferred to set_page_dirty after DMA; errors dropped.
            for (&page, target) in &rec.pages {
                if *target == PteTarget::ZeroPage {
                    let mut st = self.state();
                    if st.store.inode(rec.ino).is_ok() {
                        let _ = iomap::iomap_write_block(&mut st, rec.ino, page)
                            .and_then(|(_, io, _)| io.map_or(Ok(()), |io| iomap::end_io(&mut st, io)));
                    }
                }
            }
        }
        Ok(())
    }
}

/// Condition key for `break_layouts`: inode and page range packed into a u64.
fn layout_key(ino: Ino, first: u64, last: u64) -> u64 {
    let last = last.min(FILE_BYTES_MAX / BLOCK_BYTES + 1);
    (u64::from(ino.0) << 48) | (first.min(0xff_ffff) << 24) | last.min(0xff_ffff)
}

impl FsState {
    /// Does any DMA pin cover the range named by a `break_layouts` condition key?
    pub fn pinned(&self, key: u64) -> bool {
        let (ino, first, last) = ((key >> 48) as u32, (key >> 24) & 0xff_ffff, key & 0xff_ffff);
        self.pins.iter().flatten().any(|p| {
            let r = pages_of(p.off, p.len);
            p.ino.0 == ino && r.start < last && r.end > first
        })
    }

    pub fn read_now(&self, ino: Ino, off: u64, len: u64) -> FsResult<Vec<u64>> {
        let size = self.size_of(ino)?;
        let end = (off + len).min(size);
        let mut out = Vec::new();
        let mut pos = off;
        while pos < end {
            let page = pos / BLOCK_BYTES;
            let hi = end.min((page + 1) * BLOCK_BYTES);
            let count = ((hi - pos) / 8) as usize;
            match self.lookup(ino, page)? {
                Some((b, ExtentState::Written)) => {
                    out.extend(self.read_words(b, pos % BLOCK_BYTES, count)?)
                }
                // read-maps-unwritten: read() of an unwritten extent must return zeros.
                Some((b, ExtentState::Unwritten)) if self.bug(Bug::ReadMapsUnwritten) => {
                    out.extend(self.read_words(b, pos % BLOCK_BYTES, count)?)
                }
                _ => out.extend(std::iter::repeat_n(0, count)),
            }
            pos = hi;
        }
        Ok(out)
    }

    fn fallocate_now(&mut self, ino: Ino, off: u64, len: u64) -> FsResult<()> {
        // The size grows in the first allocating transaction, so no extent ever lies wholly
        // past EOF (fsck's BeyondSize), and an ENOSPC on the first run changes nothing.
        let mut grow =
            (off + len > self.size_of(ino)?).then_some(Record::InodeSize { ino, size_bytes: off + len });
        let mut page = off / BLOCK_BYTES;
        let last = (off + len) / BLOCK_BYTES;
        while page < last {
            if self.lookup(ino, page)?.is_some() {
                page += 1;
                continue;
            }
            let mut run = 1;
            while page + run < last && self.lookup(ino, page + run)?.is_none() {
                run += 1;
            }
            let b = self.store.alloc(&mut self.dev, run, 1)?;
            let extent = Extent { file_block: page, phys: b, len: run, state: ExtentState::Unwritten };
            let mut records =
                vec![Record::BitmapSet { start: b, len: run }, Record::ExtentSet { ino, extent }];
            records.extend(grow.take());
            self.commit(&records, SITE_FALLOC)?;
            page += run;
        }
        if let Some(size) = grow {
            self.commit(&[size], SITE_FALLOC)?;
        }
        Ok(())
    }

    /// Unmaps every PTE of the range (a PMD entry overlapping it goes whole) and deletes the
    /// entries; for truncate, zeroes the tail of the new last block.
    fn unmap_and_delete(
        &mut self,
        ino: Ino,
        first: u64,
        last: u64,
        size: Option<u64>,
        delete: bool,
    ) -> FsResult<()> {
        let n = self.pmd_pages();
        let (lo, hi) = (first & !(n - 1), last);
        let doomed: Vec<(u64, Entry)> = self
            .entries
            .range((ino.0, lo)..(ino.0, hi))
            .map(|(&(_, k), e)| (k, *e))
            .filter(|&(k, e)| if e.pmd { k + n > first } else { k >= first })
            .collect();
        for (k, entry) in doomed {
            let pmd = entry.pmd;
            // A dirty PMD entry that goes whole although part of it stays in the file: write
            // its lines back first, or stores to the kept part would never be flushed.
            if let (true, EntryKind::Pfn(b)) = (entry.dirty && pmd, entry.kind) {
                self.dev.flush(self.block_addr(b), n * BLOCK_BYTES, FlushKind::Clwb, SITE_FSYNC)?;
            }
            self.entries.remove(&(ino.0, k));
            let end = if pmd { k + n } else { k + 1 };
            self.unmap_range(ino, k, end, |_| true);
        }
        self.unmap_range(ino, first, last, |_| true);
        if delete {
            for m in self.maps.iter_mut().flatten().filter(|m| m.ino == ino) {
                m.dead = true;
            }
        }
        if let Some(size) = size
            && size % BLOCK_BYTES != 0
            && let Some((b, ExtentState::Written)) = self.lookup(ino, size / BLOCK_BYTES)?
        {
            let in_block = size % BLOCK_BYTES;
            let zeros = vec![0u8; (BLOCK_BYTES - in_block) as usize];
            let addr = PmemAddr(self.block_addr(b).0 + in_block);
            self.dev.store(addr, &zeros, SITE_TRUNC_ZERO)?;
            self.dev.flush(addr, BLOCK_BYTES - in_block, FlushKind::Clwb, SITE_TRUNC_ZERO)?;
            self.fence(SITE_TRUNC_ZERO)?;
        }
        Ok(())
    }

    /// Frees the blocks of file pages `first..last` in one transaction (with the size change or
    /// the inode deletion). The freed blocks stay busy until it is durable.
    fn free_range(
        &mut self,
        ino: Ino,
        first: u64,
        last: u64,
        size: Option<u64>,
        delete: bool,
    ) -> FsResult<()> {
        let inode = self.store.inode(ino)?;
        let mut records = Vec::new();
        for e in inode.extents.iter().filter(|e| e.file_block + e.len > first && e.file_block < last) {
            let lo = e.file_block.max(first);
            let hi = (e.file_block + e.len).min(last);
            records.push(Record::BitmapClear { start: BlockNr(e.phys.0 + lo - e.file_block), len: hi - lo });
        }
        let extents_end = inode.extents.last().map_or(0, |e| e.file_block + e.len);
        if extents_end > first {
            let hi = last.min(extents_end);
            records.push(Record::ExtentRemove { ino, file_block: first, len: hi - first });
        }
        if let Some(size) = size {
            records.push(Record::InodeSize { ino, size_bytes: size });
        }
        if delete {
            records.push(Record::InodeDelete { ino });
        }
        self.last_freed.remove(&ino.0);
        if !records.is_empty() {
            let tid = self.commit(&records, SITE_FREE)?;
            self.last_freed.insert(ino.0, Freed { first, last, tid });
        }
        Ok(())
    }

    /// Writes back dirty entries of `ino` in pages `first..last`: write-protect their PTEs, clwb
    /// their lines, mark them clean. The caller fences and commits.
    fn writeback(&mut self, ino: Ino, first: u64, last: u64) -> FsResult<()> {
        let n = self.pmd_pages();
        let dirty: Vec<(u64, bool, BlockNr)> = self
            .entries
            .range((ino.0, first & !(n - 1))..(ino.0, last))
            .filter_map(|(&(_, k), e)| match e.kind {
                EntryKind::Pfn(b) if e.dirty => Some((k, e.pmd, b)),
                _ => None,
            })
            .collect();
        for (k, pmd, b) in dirty {
            let pages = if pmd { n } else { 1 };
            // fsync-misses-dirty: skipping write-protect means later stores never re-dirty the entry.
            if !self.bug(Bug::FsyncMissesDirty) {
                for m in self.maps.iter_mut().flatten().filter(|m| m.ino == ino) {
                    for (_, pte) in m.ptes.range_mut(k..k + pages) {
                        pte.writable = false;
                    }
                }
            }
            self.dev.flush(self.block_addr(b), pages * BLOCK_BYTES, FlushKind::Clwb, SITE_FSYNC)?;
            self.entries.get_mut(&(ino.0, k)).expect("dirty entry").dirty = false;
        }
        Ok(())
    }
}
