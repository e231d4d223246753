//! The DAX page-fault handler (`dax_iomap_fault`), PTE and PMD, and fault-around
//! (`map_pages`). The sequence is in `docs/daxfs.md`; in short:
//! `invalidate_lock` shared → lock the DAX entry → `iomap_begin` (allocate / zero / convert) →
//! *preemption point* → unmap zero-page PTEs the new entry replaces → MAP_SYNC `NeedDsync` →
//! install the PTE → unlock.

use super::bugs::Bug;
use super::fs::{DaxFs, Entry, EntryKind, Errno, FsResult, FsState, MapId, Pte, PteTarget};
use super::iomap;
use super::types::*;
use crate::sched::{LockId, Mode};

/// Pages on each side of a read fault that fault-around may map.
pub const FAULT_AROUND_PAGES: u64 = 8;

/// The fault handler's result (the kernel's `vm_fault_t`, reduced to what the model needs).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum VmFault {
    /// A PTE/PMD was installed.
    NoPage,
    /// A block was allocated for the fault.
    Major,
    /// MAP_SYNC: allocation metadata was not durable; the handler committed it before mapping.
    NeedDsync,
    SigBus,
    /// PMD fault not possible here; retry with PTEs.
    Fallback,
}

const SITE_DSYNC: &str = "daxfs::dax_iomap_fault::dsync";

impl DaxFs {
    /// Makes file page `page` accessible through mapping `map` (writable if `write`), faulting as
    /// needed, and returns the PTE. The caller's access follows in the same step.
    pub async fn access(&self, map: MapId, page: u64, write: bool) -> FsResult<Pte> {
        for _ in 0..8 {
            if let Some(pte) = self.state().present_pte(map, page, write)? {
                return Ok(pte);
            }
            if self.dax_iomap_fault(map, page, write).await? == VmFault::SigBus {
                return Err(Errno::SigBus);
            }
            if let Some(pte) = self.state().present_pte(map, page, write)? {
                return Ok(pte);
            }
        }
        // A fault that keeps being undone by truncate: report it like the kernel's retry limit.
        Err(Errno::SigBus)
    }

    /// `dax_iomap_fault` for file page `page` of mapping `map`.
    pub async fn dax_iomap_fault(&self, map: MapId, page: u64, write: bool) -> FsResult<VmFault> {
        let ino = self.state().mapping(map)?.ino;
        self.sched.lock(LockId::Invalidate(ino.0), Mode::Shared).await;
        let result = self.fault_locked(map, ino, page, write).await;
        let around = !write && matches!(result, Ok(VmFault::NoPage | VmFault::Major));
        if around && self.state().opts.fault_around && !self.bug(Bug::MapPagesUnlocked) {
            self.state().map_pages(map, ino, page);
        }
        self.sched.unlock(LockId::Invalidate(ino.0), Mode::Shared);
        if around && self.state().opts.fault_around && self.bug(Bug::MapPagesUnlocked) {
            self.map_pages_unlocked(map, ino, page).await;
        }
        result
    }

    async fn fault_locked(&self, map: MapId, ino: Ino, page: u64, write: bool) -> FsResult<VmFault> {
        if self.state().beyond_eof(ino, page)? {
            return Ok(VmFault::SigBus);
        }
        if self.state().pmd_candidate(map, ino, page) {
            let r = self.pmd_fault(map, ino, page, write).await?;
            if r != VmFault::Fallback {
                return Ok(r);
            }
        }
        self.pte_fault(map, ino, page, write).await
    }

    /// Locks the DAX entry for `page` (or the PMD entry covering it), inserting a locked empty
    /// entry if none exists. Returns the locked index.
    async fn grab_entry(&self, ino: Ino, page: u64) -> u64 {
        loop {
            let key = self.state().entry_covering(ino, page).map_or(page, |(k, _)| k);
            self.sched.lock(LockId::Entry(ino.0, key), Mode::Exclusive).await;
            let mut st = self.state();
            // Revalidate: a PMD entry may have appeared, or ours been deleted, while we slept.
            if st.entry_covering(ino, page).map_or(page, |(k, _)| k) == key {
                let pmd = key != page;
                st.entries.entry((ino.0, key)).or_insert(Entry { kind: EntryKind::Empty, pmd, dirty: false });
                return key;
            }
            drop(st);
            self.sched.unlock(LockId::Entry(ino.0, key), Mode::Exclusive);
        }
    }

    fn put_entry(&self, ino: Ino, key: u64) {
        let mut st = self.state();
        if st.entries.get(&(ino.0, key)).is_some_and(|e| e.kind == EntryKind::Empty) {
            st.entries.remove(&(ino.0, key));
        }
        drop(st);
        self.sched.unlock(LockId::Entry(ino.0, key), Mode::Exclusive);
    }

    async fn pte_fault(&self, map: MapId, ino: Ino, page: u64, write: bool) -> FsResult<VmFault> {
        // no-entry-lock: the read path once loaded holes without the entry lock.
        let unlocked_read = !write && self.bug(Bug::NoEntryLock);
        let key = if unlocked_read { None } else { Some(self.grab_entry(ino, page).await) };
        let r = self.pte_fault_entry(map, ino, page, write).await;
        if let Some(key) = key {
            self.put_entry(ino, key);
        }
        r
    }

    async fn pte_fault_entry(&self, map: MapId, ino: Ino, page: u64, write: bool) -> FsResult<VmFault> {
        // iomap_begin, under the entry lock: one atomic step.
        let (target, io, stale, allocated) = {
            let mut st = self.state();
            match st.entry_covering(ino, page) {
                Some((key, Entry { kind: EntryKind::Pfn(b), pmd, .. }))
                    if !write || st.page_written(ino, page)? =>
                {
                    let b = if pmd { BlockNr(b.0 + page - key) } else { b };
                    (PteTarget::Block(b), None, None, false)
                }
                _ => st.iomap_for_fault(ino, page, write)?,
            }
        };
        // Preemption point between iomap_begin and installing the PTE.
        self.sched.yield_now().await;
        let mut st = self.state();
        if let Some(extent) = stale {
            // double-zero-unwritten: zero and convert the whole extent seen before
            // sleeping, wiping data another fault stored since.
            let io = iomap::convert_for_write(&mut st, ino, extent.file_block, extent.phys, extent.len)?;
            if let Some(io) = io {
                iomap::end_io(&mut st, io)?;
            }
        }
        if let Some(io) = io {
            iomap::end_io(&mut st, io)?;
        }
        let new = allocated || io.is_some() || stale.is_some();
        st.install(map, ino, page, target, write)?;
        if st.need_dsync(map, ino, write)? {
            return Ok(VmFault::NeedDsync);
        }
        Ok(if new { VmFault::Major } else { VmFault::NoPage })
    }

    async fn pmd_fault(&self, map: MapId, ino: Ino, page: u64, write: bool) -> FsResult<VmFault> {
        let n = self.state().pmd_pages();
        let base = page & !(n - 1);
        self.sched.lock(LockId::Entry(ino.0, base), Mode::Exclusive).await;
        let r = self.pmd_fault_locked(map, ino, base, write).await;
        self.put_entry(ino, base);
        r
    }

    async fn pmd_fault_locked(&self, map: MapId, ino: Ino, base: u64, write: bool) -> FsResult<VmFault> {
        let (b, new) = {
            let mut st = self.state();
            let n = st.pmd_pages();
            let conflict =
                st.entries.range((ino.0, base)..(ino.0, base + n)).any(|(&(_, k), e)| k != base || !e.pmd);
            if conflict || st.beyond_eof(ino, base + n - 1)? {
                return Ok(VmFault::Fallback);
            }
            let existing = match st.entries.get(&(ino.0, base)) {
                Some(Entry { kind: EntryKind::Pfn(b), .. }) => Some(*b),
                _ => None,
            };
            let found = match existing {
                Some(b) => Some((b, None)),
                None => st.pmd_iomap(ino, base, write)?,
            };
            let Some((b, io)) = found else { return Ok(VmFault::Fallback) };
            // A placeholder only where no entry exists: an existing (possibly dirty) entry stays
            // visible to writeback while this fault sleeps.
            st.entries.entry((ino.0, base)).or_insert(Entry {
                kind: EntryKind::Empty,
                pmd: true,
                dirty: false,
            });
            if let Some(io) = io {
                iomap::end_io(&mut st, io)?;
            }
            (b, existing.is_none())
        };
        self.sched.yield_now().await;
        let mut st = self.state();
        let n = st.pmd_pages();
        {
            let m = st.mapping_mut(map)?;
            for p in base..base + n {
                if p * BLOCK_BYTES >= m.off && p * BLOCK_BYTES < m.off + m.len {
                    m.ptes.insert(
                        p,
                        Pte { target: PteTarget::Block(BlockNr(b.0 + p - base)), writable: write },
                    );
                }
            }
        }
        let e = st.entries.get_mut(&(ino.0, base)).expect("locked PMD entry");
        *e = Entry { kind: EntryKind::Pfn(b), pmd: true, dirty: e.dirty || write };
        if st.need_dsync(map, ino, write)? {
            return Ok(VmFault::NeedDsync);
        }
        Ok(if new { VmFault::Major } else { VmFault::NoPage })
    }

    /// Fault-around with the bug `map-pages-unlocked`: entries are looked up without
    /// `invalidate_lock`, the thread sleeps, and the PTEs are installed without revalidation.
    async fn map_pages_unlocked(&self, map: MapId, ino: Ino, page: u64) {
        let candidates = self.state().map_pages_candidates(map, ino, page);
        self.sched.yield_now().await;
        let mut st = self.state();
        if let Ok(m) = st.mapping_mut(map) {
            for (p, b) in candidates {
                m.ptes.entry(p).or_insert(Pte { target: PteTarget::Block(b), writable: false });
            }
        }
    }
}

impl FsState {
    pub fn mapping(&self, map: MapId) -> FsResult<&super::fs::Mapping> {
        self.maps.get(map).and_then(Option::as_ref).ok_or(Errno::Invalid("no such mapping"))
    }

    pub fn mapping_mut(&mut self, map: MapId) -> FsResult<&mut super::fs::Mapping> {
        self.maps.get_mut(map).and_then(Option::as_mut).ok_or(Errno::Invalid("no such mapping"))
    }

    /// MAP_SYNC (`VmFault::NeedDsync`): a write fault whose inode metadata is not yet durable
    /// commits and fences it before the writable PTE is used. Returns whether it had to.
    fn need_dsync(&mut self, map: MapId, ino: Ino, write: bool) -> FsResult<bool> {
        // map-sync-ignored: the writable PTE is used before the metadata is durable.
        if !write
            || !self.mapping(map)?.map_sync
            || self.inode_meta_durable(ino)
            || self.bug(Bug::MapSyncIgnored)
        {
            return Ok(false);
        }
        self.force_all()?;
        self.fence(SITE_DSYNC)?;
        Ok(true)
    }

    /// The PTE for `page` if present (and writable when `write`).
    pub fn present_pte(&self, map: MapId, page: u64, write: bool) -> FsResult<Option<Pte>> {
        let m = self.mapping(map)?;
        if m.dead {
            return Err(Errno::SigBus);
        }
        if page * BLOCK_BYTES < m.off || page * BLOCK_BYTES >= m.off + m.len {
            return Err(Errno::SigSegv);
        }
        Ok(m.ptes.get(&page).copied().filter(|p| p.writable || !write))
    }

    pub fn beyond_eof(&self, ino: Ino, page: u64) -> FsResult<bool> {
        Ok(page * BLOCK_BYTES >= self.size_of(ino)?)
    }

    fn page_written(&self, ino: Ino, page: u64) -> FsResult<bool> {
        Ok(matches!(self.lookup(ino, page)?, Some((_, ExtentState::Written))))
    }

    /// `iomap_begin` for a PTE fault: returns the PTE target, the `end_io` owed, — with
    /// `double-zero-unwritten` — the whole unwritten extent to zero after sleeping, and whether
    /// the block is new (IomapFlags::NEW: the fault is `Major`).
    fn iomap_for_fault(
        &mut self,
        ino: Ino,
        page: u64,
        write: bool,
    ) -> FsResult<(PteTarget, Option<iomap::EndIo>, Option<Extent>, bool)> {
        let found = self.lookup(ino, page)?;
        if !write {
            let target = match found {
                Some((b, ExtentState::Written)) => PteTarget::Block(b),
                // read-maps-unwritten: reads of unwritten extents must return zeros, not the block.
                Some((b, ExtentState::Unwritten)) if self.bug(Bug::ReadMapsUnwritten) => PteTarget::Block(b),
                _ => PteTarget::ZeroPage,
            };
            return Ok((target, None, None, false));
        }
        if let Some((b, ExtentState::Unwritten)) = found
            && self.bug(Bug::DoubleZeroUnwritten)
        {
            let extent = self.store.inode(ino)?.lookup(page).expect("extent just found");
            return Ok((PteTarget::Block(b), None, Some(extent), true));
        }
        let (b, io, new) = iomap::iomap_write_block(self, ino, page)?;
        Ok((PteTarget::Block(b), io, None, new))
    }

    /// Installs the PTE for a completed fault and updates the entry. A real entry replacing a
    /// zero-page entry first unmaps every zero-page PTE of the index (`zero-page-not-unmapped`).
    fn install(&mut self, map: MapId, ino: Ino, page: u64, target: PteTarget, write: bool) -> FsResult<()> {
        if let PteTarget::Block(b) = target {
            let replaces_zero =
                self.entries.get(&(ino.0, page)).is_some_and(|e| e.kind == EntryKind::ZeroPage);
            if replaces_zero && !self.bug(Bug::ZeroPageNotUnmapped) {
                self.unmap_range(ino, page, page + 1, |p| p.target == PteTarget::ZeroPage);
            }
            let covered = self.entry_covering(ino, page).filter(|(k, e)| e.pmd && *k != page);
            match covered {
                Some((key, _)) if write => {
                    self.entries.get_mut(&(ino.0, key)).expect("pmd entry").dirty = true
                }
                Some(_) => {}
                None => {
                    let e = self.entries.entry((ino.0, page)).or_insert(Entry {
                        kind: EntryKind::Empty,
                        pmd: false,
                        dirty: false,
                    });
                    e.kind = EntryKind::Pfn(b);
                    e.dirty |= write;
                }
            }
        } else {
            let e = self.entries.entry((ino.0, page)).or_insert(Entry {
                kind: EntryKind::Empty,
                pmd: false,
                dirty: false,
            });
            if e.kind == EntryKind::Empty {
                e.kind = EntryKind::ZeroPage;
            }
        }
        self.mapping_mut(map)?.ptes.insert(page, Pte { target, writable: write });
        Ok(())
    }

    /// Could a fault at `page` be served by a PMD? (Mapping covers the aligned range.)
    fn pmd_candidate(&self, map: MapId, ino: Ino, page: u64) -> bool {
        let n = self.pmd_pages();
        let base = page & !(n - 1);
        let Ok(m) = self.mapping(map) else { return false };
        let _ = ino;
        n > 1 && base * BLOCK_BYTES >= m.off && (base + n) * BLOCK_BYTES <= m.off + m.len
    }

    /// `iomap_begin` for a PMD: an aligned written extent covering the range, or (for a write) a
    /// fresh aligned allocation of the whole hole. `None` means fall back to PTEs.
    fn pmd_iomap(
        &mut self,
        ino: Ino,
        base: u64,
        write: bool,
    ) -> FsResult<Option<(BlockNr, Option<iomap::EndIo>)>> {
        let n = self.pmd_pages();
        let inode = self.store.inode(ino)?;
        if let Some(e) = inode.lookup(base) {
            let aligned = e.state == ExtentState::Written
                && e.file_block <= base
                && e.file_block + e.len >= base + n
                && (e.phys.0 + base - e.file_block) % n == 0;
            return Ok(aligned.then_some((BlockNr(e.phys.0 + base - e.file_block), None)));
        }
        let hole = inode.next_extent_after(base).is_none_or(|e| e.file_block >= base + n);
        if !write || !hole {
            return Ok(None);
        }
        match iomap::alloc_for_write(self, ino, base, n, n) {
            Ok((b, io)) => Ok(Some((b, io))),
            Err(Errno::NoSpace) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Pages around `page` that fault-around may map: valid real entries with no PTE yet.
    fn map_pages_candidates(&self, map: MapId, ino: Ino, page: u64) -> Vec<(u64, BlockNr)> {
        let Ok(m) = self.mapping(map) else { return Vec::new() };
        let first = page.saturating_sub(FAULT_AROUND_PAGES).max(m.off / BLOCK_BYTES);
        let last = (page + FAULT_AROUND_PAGES + 1).min((m.off + m.len) / BLOCK_BYTES);
        (first..last)
            .filter(|p| *p != page && !m.ptes.contains_key(p))
            .filter_map(|p| match self.entry_covering(ino, p) {
                Some((k, Entry { kind: EntryKind::Pfn(b), pmd, .. })) => {
                    Some((p, if pmd { BlockNr(b.0 + p - k) } else { b }))
                }
                _ => None,
            })
            .collect()
    }

    /// Fault-around (`map_pages`), fixed: under `invalidate_lock` shared, maps only existing
    /// valid entries inside EOF, read-only; never instantiates an entry or allocates.
    fn map_pages(&mut self, map: MapId, ino: Ino, page: u64) {
        let size = self.size_of(ino).unwrap_or(0);
        let candidates = self.map_pages_candidates(map, ino, page);
        let Ok(m) = self.mapping_mut(map) else { return };
        for (p, b) in candidates {
            if p * BLOCK_BYTES < size {
                m.ptes.insert(p, Pte { target: PteTarget::Block(b), writable: false });
            }
        }
    }
}
