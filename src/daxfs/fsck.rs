//! fsck: the allocator and extent-map invariants (docs/design.md §6, `AllocatorInconsistent`).
//!
//! Invariants checked: the bitmap equals the union of all live inodes' extents; no block is
//! mapped twice; every extent lies in the data area; no extent lies entirely past EOF (rounded up
//! to a block); free inodes have no extents or size; extent lists are sorted and disjoint.

use std::fmt;

use super::journal::scan;
use super::layout::{Geometry, decode_superblock, read_checkpoint, read_home};
use super::meta::Metadata;
use super::types::{BLOCK_BYTES, BlockNr, Extent, FsError, Ino};
use crate::pmem::{Device, PmemAddr};

/// Most problems one fsck reports (bounded output on a badly corrupt image).
pub const FSCK_PROBLEMS_MAX: usize = 64;

/// One inconsistency.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FsckProblem {
    /// Bitmap bits set for blocks no extent maps.
    Leak { start: BlockNr, len: u64 },
    /// An extent maps blocks the bitmap says are free.
    NotAllocated { ino: Ino, start: BlockNr, len: u64 },
    /// A block mapped by two extents (of one inode or two).
    DoubleAllocation { block: BlockNr, ino: Ino },
    /// An extent outside the data area.
    OutOfRange { ino: Ino, extent: Extent },
    /// An extent entirely past EOF rounded up to a block.
    BeyondSize { ino: Ino, extent: Extent, size_bytes: u64 },
    /// A free inode with extents or a size.
    FreeInodeNotEmpty { ino: Ino },
    /// Extent list not sorted, overlapping, or holding an empty extent.
    BadExtentList { ino: Ino },
    /// Bitmap bits set outside the data area.
    BitmapOutsideData { start: BlockNr, len: u64 },
}

impl fmt::Display for FsckProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Leak { start, len } => write!(f, "leak: blocks {}+{len} allocated but not mapped", start.0),
            Self::NotAllocated { ino, start, len } => {
                write!(f, "inode {}: blocks {}+{len} mapped but free in the bitmap", ino.0, start.0)
            }
            Self::DoubleAllocation { block, ino } => {
                write!(f, "double allocation: block {} mapped again by inode {}", block.0, ino.0)
            }
            Self::OutOfRange { ino, extent } => {
                write!(f, "inode {}: extent {extent:?} outside the data area", ino.0)
            }
            Self::BeyondSize { ino, extent, size_bytes } => {
                write!(f, "inode {}: extent {extent:?} entirely past EOF {size_bytes}", ino.0)
            }
            Self::FreeInodeNotEmpty { ino } => write!(f, "inode {}: free but has extents or size", ino.0),
            Self::BadExtentList { ino } => write!(f, "inode {}: extent list unsorted or overlapping", ino.0),
            Self::BitmapOutsideData { start, len } => {
                write!(f, "bitmap: blocks {}+{len} outside the data area marked allocated", start.0)
            }
        }
    }
}

/// Checks in-memory metadata. Cost O(blocks / 64 + mapped blocks).
pub fn fsck(meta: &Metadata, geom: &Geometry) -> Vec<FsckProblem> {
    let mut out = Vec::new();
    let mut mapped = vec![0u64; geom.blocks().div_ceil(64) as usize];
    for (i, inode) in meta.inodes.iter().enumerate() {
        let ino = Ino(i as u32);
        if !inode.live && (inode.size_bytes != 0 || !inode.extents.is_empty()) {
            out.push(FsckProblem::FreeInodeNotEmpty { ino });
        }
        check_extent_list(ino, &inode.extents, &mut out);
        let eof_blocks = inode.size_bytes.div_ceil(BLOCK_BYTES);
        for e in &inode.extents {
            if !geom.in_data_area(e.phys.0, e.len) {
                out.push(FsckProblem::OutOfRange { ino, extent: *e });
                continue;
            }
            if e.file_block >= eof_blocks {
                out.push(FsckProblem::BeyondSize { ino, extent: *e, size_bytes: inode.size_bytes });
            }
            claim(meta, ino, e, &mut mapped, &mut out);
        }
    }
    compare_bitmap(meta, geom, &mapped, &mut out);
    out.truncate(FSCK_PROBLEMS_MAX);
    out
}

fn check_extent_list(ino: Ino, extents: &[Extent], out: &mut Vec<FsckProblem>) {
    let sorted = extents.windows(2).all(|w| w[0].file_block.saturating_add(w[0].len) <= w[1].file_block);
    if !sorted || extents.iter().any(|e| e.len == 0) {
        out.push(FsckProblem::BadExtentList { ino });
    }
}

/// Marks the extent's blocks mapped; reports blocks mapped twice and blocks the bitmap lacks.
fn claim(meta: &Metadata, ino: Ino, e: &Extent, mapped: &mut [u64], out: &mut Vec<FsckProblem>) {
    let mut missing: Option<(u64, u64)> = None;
    for b in e.phys.0..e.phys.0 + e.len {
        let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
        if mapped[w] & bit != 0 && out.len() < FSCK_PROBLEMS_MAX {
            out.push(FsckProblem::DoubleAllocation { block: BlockNr(b), ino });
        }
        mapped[w] |= bit;
        if !meta.bitmap.get(b) {
            missing = Some(missing.map_or((b, 1), |(s, n)| (s, n + 1)));
        }
    }
    if let Some((s, n)) = missing {
        out.push(FsckProblem::NotAllocated { ino, start: BlockNr(s), len: n });
    }
}

/// Reports bitmap bits set with no mapping (inside the data area: leaks; outside: misuse).
fn compare_bitmap(meta: &Metadata, geom: &Geometry, mapped: &[u64], out: &mut Vec<FsckProblem>) {
    let data_start = geom.data_start().0;
    let mut run: Option<(u64, u64)> = None;
    let flush = |run: &mut Option<(u64, u64)>, out: &mut Vec<FsckProblem>| {
        if let Some((s, n)) = run.take() {
            out.push(if s < data_start {
                FsckProblem::BitmapOutsideData { start: BlockNr(s), len: n }
            } else {
                FsckProblem::Leak { start: BlockNr(s), len: n }
            });
        }
    };
    for (w, (&bits, &m)) in meta.bitmap.words().iter().zip(mapped).enumerate() {
        let extra = bits & !m;
        if extra == 0 {
            flush(&mut run, out);
            continue;
        }
        for bit in 0..64u64 {
            let b = w as u64 * 64 + bit;
            let leaked = extra >> bit & 1 == 1;
            match (&mut run, leaked) {
                (Some((s, n)), true) if *s + *n == b && b != data_start => *n += 1,
                (_, true) => {
                    flush(&mut run, out);
                    run = Some((b, 1));
                }
                (_, false) => flush(&mut run, out),
            }
        }
        if out.len() >= FSCK_PROBLEMS_MAX {
            return;
        }
    }
    flush(&mut run, out);
}

/// Read-only fsck of a device: superblock, newest checkpoint, its home copy, plus the committed
/// journal transactions not yet checkpointed, replayed in memory only. Nothing is written.
pub fn fsck_media(dev: &Device) -> Result<Vec<FsckProblem>, FsError> {
    let mut sb = [0u8; 64];
    dev.read(PmemAddr(0), &mut sb)?;
    let geom = decode_superblock(&sb, dev.size_bytes())?;
    let ckpt = read_checkpoint(dev)?;
    let mut meta = Metadata::from_home(&geom, read_home(dev, &geom, ckpt.home_copy)?)?;
    for txn in scan(dev, &geom, &ckpt, true)?.transactions {
        for r in &txn.records {
            meta.apply(r)?;
        }
    }
    Ok(fsck(&meta, &geom))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daxfs::types::{ExtentState, Record};

    fn setup() -> (Geometry, Metadata) {
        let g = Geometry::new(4 << 20).unwrap().with_pmd_blocks(8);
        let mut m = Metadata::new(&g);
        m.apply(&Record::InodeCreate { ino: Ino(0) }).unwrap();
        m.apply(&Record::InodeSize { ino: Ino(0), size_bytes: 4 * BLOCK_BYTES }).unwrap();
        m.apply(&Record::InodeCreate { ino: Ino(1) }).unwrap();
        m.apply(&Record::InodeSize { ino: Ino(1), size_bytes: 4 * BLOCK_BYTES }).unwrap();
        (g, m)
    }

    fn ext(file_block: u64, phys: u64, len: u64) -> Extent {
        Extent { file_block, phys: BlockNr(phys), len, state: ExtentState::Written }
    }

    #[test]
    fn consistent_metadata_is_clean() {
        let (g, mut m) = setup();
        let d = g.data_start().0;
        m.apply(&Record::BitmapSet { start: BlockNr(d), len: 4 }).unwrap();
        m.apply(&Record::ExtentSet { ino: Ino(0), extent: ext(0, d, 4) }).unwrap();
        assert_eq!(fsck(&m, &g), vec![]);
    }

    #[test]
    fn detects_leak_double_allocation_range_and_size() {
        let (g, mut m) = setup();
        let d = g.data_start().0;
        m.apply(&Record::BitmapSet { start: BlockNr(d), len: 6 }).unwrap();
        m.apply(&Record::ExtentSet { ino: Ino(0), extent: ext(0, d, 2) }).unwrap();
        m.apply(&Record::ExtentSet { ino: Ino(1), extent: ext(0, d + 1, 2) }).unwrap();
        let p = fsck(&m, &g);
        assert!(p.contains(&FsckProblem::Leak { start: BlockNr(d + 3), len: 3 }), "{p:?}");
        assert!(p.contains(&FsckProblem::DoubleAllocation { block: BlockNr(d + 1), ino: Ino(1) }), "{p:?}");

        let (g, mut m) = setup();
        m.inodes[0].extents.push(ext(0, 1, 1)); // Into the journal: only a corrupt image does this.
        m.inodes[1].extents.push(ext(9, d, 1));
        m.apply(&Record::BitmapSet { start: BlockNr(d), len: 1 }).unwrap();
        let p = fsck(&m, &g);
        assert!(p.contains(&FsckProblem::OutOfRange { ino: Ino(0), extent: ext(0, 1, 1) }), "{p:?}");
        assert!(p.iter().any(|x| matches!(x, FsckProblem::BeyondSize { ino: Ino(1), .. })), "{p:?}");
        assert!(p.iter().all(|x| !x.to_string().is_empty()));
    }

    #[test]
    fn detects_mapped_but_free() {
        let (g, mut m) = setup();
        let d = g.data_start().0;
        m.apply(&Record::ExtentSet { ino: Ino(0), extent: ext(0, d, 2) }).unwrap();
        assert_eq!(fsck(&m, &g), vec![FsckProblem::NotAllocated { ino: Ino(0), start: BlockNr(d), len: 2 }]);
    }
}
