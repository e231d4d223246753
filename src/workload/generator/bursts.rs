//! The bursts: short operation patterns around the focus. Each is general (map access, file
//! I/O, preallocation, shrink, DMA, durability, churn); none targets one bug.

use arbitrary::Unstructured;

use super::super::pick::{below, chance, in_range, weighted};
use super::{
    BLOCK_BYTES, FILE_BYTES_MAX, Gen, HOT_BLOCKS, MapView, PMD_BLOCKS, PMD_BYTES, REGION_BYTES, Range, clamp,
    hot_word, pmd_base,
};
use crate::workload::{FileSlot, MapSlot, Op, PAGE_BYTES, PinSlot, WORD_BYTES};

#[derive(Copy, Clone, PartialEq, Eq)]
enum Access {
    Store,
    Load,
    Persist,
    Msync,
}

const ACCESS_MAP_SYNC: [(u32, Access); 4] =
    [(40, Access::Store), (25, Access::Load), (25, Access::Persist), (10, Access::Msync)];
const ACCESS_PLAIN: [(u32, Access); 4] =
    [(45, Access::Store), (35, Access::Load), (5, Access::Persist), (15, Access::Msync)];

impl Gen {
    /// A mapping of the focus file (mapping one if needed), then stores, loads, persists and
    /// msyncs on it, often closed by making the stores durable.
    pub(super) fn map_access(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let Some(map) = self.ensure_map(u, t) else { return };
        let count = weighted(u, &[(20, 1), (35, 2), (30, 3), (15, 4)]);
        let mut range = self.data_range(u, true);
        let mut stored = None;
        for i in 0..count {
            if i > 0 && chance(u, 50) {
                range = self.data_range(u, true);
            }
            let table = if self.view(map).map_sync { &ACCESS_MAP_SYNC } else { &ACCESS_PLAIN };
            let access = weighted(u, table);
            self.access(t, map, access, range);
            if access == Access::Store {
                stored = Some(range);
            }
        }
        if let Some(range) = stored.filter(|_| chance(u, 40)) {
            self.make_durable(t, map, range);
        }
    }

    /// write(2)/read(2) near the focus, often followed by fsync.
    pub(super) fn file_io(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let file = self.focus.file;
        let count = weighted(u, &[(40, 1), (40, 2), (20, 3)]);
        let mut range = self.data_range(u, true);
        let mut wrote = false;
        for i in 0..count {
            if i > 0 && chance(u, 50) {
                range = self.data_range(u, true);
            }
            if chance(u, 45) {
                self.emit(t, Op::Read { file, off: range.off, len: range.len });
            } else {
                wrote |= self.write(t, file, range);
            }
        }
        if wrote && chance(u, 40) {
            self.emit(t, Op::Fsync { file });
        }
    }

    /// Fallocate at the focus, then stores (or writes) into the unwritten range, sometimes a
    /// load of another block of it, sometimes made durable.
    pub(super) fn prealloc(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let file = self.focus.file;
        let range = self.block_range(u);
        self.emit(t, Op::Fallocate { file, off: range.off, len: range.len });
        match weighted(u, &[(60, 0), (25, 1), (15, 2)]) {
            0 => self.store_into(u, t, range),
            1 => self.write_into(u, t, range),
            _ => {}
        }
    }

    /// Punch a hole at the focus, or truncate through it and often extend back.
    pub(super) fn shrink(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let file = self.focus.file;
        if chance(u, 45) {
            let old = self.size_of(file);
            let size = self.truncate_size(u);
            self.truncate(t, file, size);
            if old > size && chance(u, 55) {
                self.truncate(t, file, old);
            }
        } else {
            let range = self.block_range(u);
            self.emit(t, Op::PunchHole { file, off: range.off, len: range.len });
        }
    }

    /// Write pin at the focus, 1-2 DMA writes, unpin; then often a load or msync of the range.
    /// Only DMA writes happen between pin and unpin (the no-deadlock invariant).
    pub(super) fn dma(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let Some(map) = self.ensure_map(u, t) else { return };
        let writes = weighted(u, &[(60, 1), (40, 2)]);
        if self.room() < 2 + writes {
            return;
        }
        let pin = PinSlot(t as u8);
        let range = self.pin_range(u, map);
        let write = !chance(u, 10);
        self.emit(t, Op::Pin { pin, map, off: range.off, len: range.len, write });
        for _ in 0..writes {
            let dma = dma_range(u, range.len);
            self.emit(t, Op::DmaWrite { pin, off: dma.off, len: dma.len });
        }
        self.emit(t, Op::Unpin { pin });
        let head = Range { off: range.off, len: range.len.min(BLOCK_BYTES) };
        if chance(u, 40) {
            self.emit(t, Op::Load { map, off: head.off, len: head.len });
        }
        if chance(u, 30) {
            self.emit(t, Op::Msync { map, off: head.off, len: head.len });
        }
    }

    /// fsync, msync or persist of an own mapping, or a checkpoint.
    pub(super) fn durable(&mut self, u: &mut Unstructured<'_>, t: usize) {
        let choice = weighted(u, &[(40, 0), (30, 1), (15, 2), (15, 3)]);
        let own = self.own_live_map(t);
        match (choice, own) {
            (1 | 2, Some(map)) => {
                let whole = Range { off: 0, len: self.view(map).range.len };
                let range =
                    if chance(u, 40) { whole } else { self.map_range(map, self.data_range(u, false)) };
                let op = if choice == 1 {
                    Op::Msync { map, off: range.off, len: range.len }
                } else {
                    Op::Persist { map, off: range.off, len: range.len }
                };
                self.emit(t, op);
            }
            (3, _) => {
                self.emit(t, Op::Sync);
            }
            _ => {
                self.emit(t, Op::Fsync { file: self.focus.file });
            }
        }
    }

    /// Rare lifecycle changes: munmap an own mapping, or unlink and re-create the focus file.
    pub(super) fn churn(&mut self, u: &mut Unstructured<'_>, t: usize) {
        if chance(u, 50) {
            if let Some(map) = self.own_live_map(t) {
                self.munmap(t, map);
            }
            return;
        }
        if self.room() < 3 {
            return;
        }
        let file = self.focus.file;
        self.emit(t, Op::Unlink { file });
        self.emit(t, Op::Create { file });
        self.sizes[usize::from(file.0)] = 0;
        let size = weighted(u, &REGION_BYTES);
        self.truncate(t, file, size);
    }

    /// A mapping of the focus file for thread `t`: sometimes another thread's, usually an own
    /// one covering the focus, else a fresh mmap into an own slot. None if out of budget.
    fn ensure_map(&mut self, u: &mut Unstructured<'_>, t: usize) -> Option<MapSlot> {
        let file = self.focus.file;
        let focus_off = self.focus.block * BLOCK_BYTES;
        if chance(u, 20)
            && let Some(map) = self.find_map(|v| v.owner != t && v.file == file)
        {
            return Some(map);
        }
        let covers = |v: &MapView| v.owner == t && v.file == file && v.range.contains(focus_off);
        if let Some(map) = self.find_map(covers).filter(|_| !chance(u, 12)) {
            return Some(map);
        }
        let slot = self.own_slot(u, t);
        if self.maps[usize::from(slot.0)].is_some() {
            self.munmap(t, slot);
        }
        let map_sync = chance(u, 33);
        let range = self.mmap_range(u);
        let op = Op::Mmap { map: slot, file, off: range.off, len: range.len, map_sync };
        if !self.emit(t, op) {
            return None;
        }
        self.maps[usize::from(slot.0)] = Some(MapView { owner: t, file, range, map_sync });
        Some(slot)
    }

    /// An own slot of thread `t` (`2t` or `2t + 1`): a free one if any.
    fn own_slot(&self, u: &mut Unstructured<'_>, t: usize) -> MapSlot {
        let slots = [MapSlot(2 * t as u8), MapSlot(2 * t as u8 + 1)];
        let free = slots.iter().copied().find(|s| self.maps[usize::from(s.0)].is_none());
        free.unwrap_or(slots[below(u, 2) as usize])
    }

    fn own_live_map(&self, t: usize) -> Option<MapSlot> {
        self.find_map(|v| v.owner == t)
    }

    fn find_map(&self, want: impl Fn(&MapView) -> bool) -> Option<MapSlot> {
        let hit = self.maps.iter().position(|v| v.as_ref().is_some_and(&want))?;
        Some(MapSlot(hit as u8))
    }

    fn view(&self, map: MapSlot) -> MapView {
        self.maps[usize::from(map.0)].expect("bursts only use slots the generator mapped")
    }

    fn munmap(&mut self, t: usize, map: MapSlot) {
        if self.emit(t, Op::Munmap { map }) {
            self.maps[usize::from(map.0)] = None;
        }
    }

    /// Mostly the whole hot region from offset 0 (2-8 MiB), or a few pages at the focus.
    fn mmap_range(&self, u: &mut Unstructured<'_>) -> Range {
        let focus_off = self.focus.block * BLOCK_BYTES;
        let len =
            weighted(u, &[(35, 2 * PMD_BYTES), (30, PMD_BYTES), (10, FILE_BYTES_MAX), (20, 0), (5, 16)]);
        let (off, len) = match len {
            0 => (focus_off, in_range(u, 1, 4) * PAGE_BYTES),
            16 => (focus_off, 16 * PAGE_BYTES),
            len if focus_off < len => (0, len),
            len => (pmd_base(focus_off), len),
        };
        clamp(Range { off, len }, PAGE_BYTES)
    }

    /// `file_range` translated into mapping-relative offsets; a range the mapping does not
    /// cover wraps into it.
    fn map_range(&self, map: MapSlot, file_range: Range) -> Range {
        let view = self.view(map).range;
        let rel = if view.contains(file_range.off) {
            file_range.off - view.off
        } else {
            file_range.off % view.len / WORD_BYTES * WORD_BYTES
        };
        Range { off: rel, len: file_range.len.min(view.len - rel) }
    }

    fn access(&mut self, t: usize, map: MapSlot, access: Access, file_range: Range) {
        let Range { off, len } = self.map_range(map, file_range);
        let op = match access {
            Access::Store => Op::Store { map, off, len },
            Access::Load => Op::Load { map, off, len },
            Access::Persist => Op::Persist { map, off, len },
            Access::Msync => Op::Msync { map, off, len },
        };
        self.emit(t, op);
    }

    /// Persist on a MAP_SYNC mapping, msync otherwise.
    fn make_durable(&mut self, t: usize, map: MapSlot, file_range: Range) {
        let access = if self.view(map).map_sync { Access::Persist } else { Access::Msync };
        self.access(t, map, access, file_range);
    }

    fn write(&mut self, t: usize, file: FileSlot, range: Range) -> bool {
        let done = self.emit(t, Op::Write { file, off: range.off, len: range.len });
        if done {
            let size = &mut self.sizes[usize::from(file.0)];
            *size = (*size).max(range.off + range.len);
        }
        done
    }

    /// 1-3 small stores at distinct blocks of `range` through a mapping of the focus file,
    /// sometimes a load of another of its blocks, sometimes made durable.
    fn store_into(&mut self, u: &mut Unstructured<'_>, t: usize, range: Range) {
        let Some(map) = self.ensure_map(u, t) else { return };
        let mut last = range;
        for _ in 0..in_range(u, 1, 3) {
            last = small_range_in(u, range);
            self.access(t, map, Access::Store, last);
        }
        if chance(u, 40) {
            let other = small_range_in(u, range);
            self.access(t, map, Access::Load, other);
        }
        if chance(u, 35) {
            self.make_durable(t, map, last);
        }
    }

    /// 1-2 writes into `range`, sometimes a read of it.
    fn write_into(&mut self, u: &mut Unstructured<'_>, t: usize, range: Range) {
        let file = self.focus.file;
        for _ in 0..in_range(u, 1, 2) {
            let w = small_range_in(u, range);
            self.write(t, file, w);
        }
        if chance(u, 30) {
            let r = small_range_in(u, range);
            self.emit(t, Op::Read { file, off: r.off, len: r.len });
        }
    }

    /// A truncate size that cuts at or inside the focus block, or at a region edge.
    fn truncate_size(&self, u: &mut Unstructured<'_>) -> u64 {
        let focus_off = self.focus.block * BLOCK_BYTES;
        let size = match weighted(u, &[(40, 0), (20, 1), (15, 2), (15, 3), (10, 4)]) {
            0 => focus_off,
            1 => focus_off + hot_word(u),
            2 => 0,
            3 => PMD_BYTES,
            _ => pmd_base(focus_off) + BLOCK_BYTES,
        };
        size.min(FILE_BYTES_MAX)
    }

    /// A page range of mapping `map` at the focus: 1-4 pages or an aligned PMD.
    fn pin_range(&mut self, u: &mut Unstructured<'_>, map: MapSlot) -> Range {
        let view = self.view(map).range;
        let file_off = self.near_block(u) * BLOCK_BYTES;
        let rel = if view.contains(file_off) { file_off - view.off } else { file_off % view.len };
        let rel = rel / PAGE_BYTES * PAGE_BYTES;
        let (off, len) = match weighted(u, &[(50, 1), (25, 2), (15, 4), (10, PMD_BLOCKS)]) {
            PMD_BLOCKS => (pmd_base(rel), PMD_BYTES),
            pages => (rel, pages * PAGE_BYTES),
        };
        Range { off, len: len.min(view.len - off) }
    }
}

impl Range {
    fn contains(&self, off: u64) -> bool {
        off >= self.off && off < self.off + self.len
    }
}

/// A word, a line or a block at a hot block of `range` (a block-aligned file range).
fn small_range_in(u: &mut Unstructured<'_>, range: Range) -> Range {
    let blocks = range.len / BLOCK_BYTES;
    let index = match weighted(u, &[(35, 0), (25, 1), (20, 2), (20, 3)]) {
        0 => 0,
        1 => 1,
        2 => blocks - 1,
        _ => HOT_BLOCKS[below(u, 8) as usize],
    } % blocks;
    let word = hot_word(u);
    let len = weighted(u, &[(60, WORD_BYTES), (25, 64), (15, BLOCK_BYTES)]).min(BLOCK_BYTES - word);
    clamp(Range { off: range.off + index * BLOCK_BYTES + word, len }, WORD_BYTES)
}

/// A DMA range inside a pin of `pin_len` bytes.
fn dma_range(u: &mut Unstructured<'_>, pin_len: u64) -> Range {
    let off = (hot_word(u) + below(u, pin_len / BLOCK_BYTES) * BLOCK_BYTES) % pin_len;
    let len = weighted(u, &[(40, WORD_BYTES), (30, 64), (30, BLOCK_BYTES)]).min(pin_len - off);
    Range { off, len }
}
