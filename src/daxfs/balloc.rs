//! The block allocator (docs/design.md §4): lowest-address first fit over the bitmap, honouring
//! in-memory reservations (handed out, not yet committed) and busy extents (freed by a
//! transaction that is not yet durable; jbd2's rule, the fix for `reuse-before-free-commit`).

use super::layout::Geometry;
use super::meta::Metadata;
use super::types::{BlockNr, Record, Tid};

/// Blocks freed by transaction `tid`: not allocatable until `tid` is durable.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct BusyExtent {
    pub start: BlockNr,
    pub len: u64,
    pub tid: Tid,
}

/// Allocator state that lives only in memory.
#[derive(Clone, Debug, Default)]
pub struct Balloc {
    /// Ranges handed out by `alloc` whose `BitmapSet` has not been committed yet.
    reserved: Vec<(u64, u64)>,
    busy: Vec<BusyExtent>,
}

fn overlaps(a: u64, a_len: u64, b: u64, b_len: u64) -> bool {
    a < b + b_len && b < a + a_len
}

impl Balloc {
    pub fn busy(&self) -> &[BusyExtent] {
        &self.busy
    }

    pub fn reserved(&self) -> &[(u64, u64)] {
        &self.reserved
    }

    /// First `count` contiguous blocks starting at a multiple of `align`, free in the bitmap,
    /// not reserved and (if `honor_busy`) not busy.
    pub fn find(
        &self,
        meta: &Metadata,
        geom: &Geometry,
        count: u64,
        align: u64,
        honor_busy: bool,
    ) -> Option<BlockNr> {
        let align = align.max(1);
        let mut start = geom.data_start().0.next_multiple_of(align);
        while start.checked_add(count)? <= geom.blocks() {
            match (start..start + count).rev().find(|&b| !self.available(meta, b, honor_busy)) {
                None => return Some(BlockNr(start)),
                Some(b) => start = (b + 1).next_multiple_of(align),
            }
        }
        None
    }

    fn available(&self, meta: &Metadata, b: u64, honor_busy: bool) -> bool {
        let reserved = self.reserved.iter().any(|&(s, n)| overlaps(b, 1, s, n));
        let busy = honor_busy && self.busy.iter().any(|e| overlaps(b, 1, e.start.0, e.len));
        !(meta.bitmap.get(b) || reserved || busy)
    }

    pub fn reserve(&mut self, start: BlockNr, count: u64) {
        self.reserved.push((start.0, count));
    }

    /// Drops reservations overlapping `start..start + count` (committed, or given back).
    pub fn release(&mut self, start: BlockNr, count: u64) {
        self.reserved.retain(|&(s, n)| !overlaps(s, n, start.0, count));
    }

    /// Bookkeeping after transaction `tid` applied `records`.
    pub fn on_commit(&mut self, records: &[Record], tid: Tid) {
        for r in records {
            match *r {
                Record::BitmapSet { start, len } => self.release(start, len),
                Record::BitmapClear { start, len } => self.busy.push(BusyExtent { start, len, tid }),
                _ => {}
            }
        }
    }

    /// Forgets busy extents whose freeing transaction is durable.
    pub fn prune(&mut self, durable: Option<Tid>) {
        self.busy.retain(|e| durable.is_none_or(|d| e.tid > d));
    }
}
