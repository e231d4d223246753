//! In-memory metadata: the allocation bitmap and the inode table with extent maps.
//!
//! Invariant: [`Metadata::apply`] is the single place a journal record changes metadata; commit
//! and replay both go through it, so the run-time state and the replayed state cannot drift.
//! Every record states a new value (an assignment), so applying a record twice equals once.

use super::layout::{FILE_BLOCKS_MAX, Geometry, HomeImage, InodeImage};
use super::types::{BLOCK_BYTES, BlockNr, EXTENTS_PER_INODE_MAX, Extent, FsError, INODES_MAX, Ino, Record};

/// Largest file size in bytes a record may state.
pub const FILE_BYTES_MAX: u64 = FILE_BLOCKS_MAX * BLOCK_BYTES;

/// One file. `extents` is sorted by `file_block`, non-overlapping, and adjacent compatible
/// extents (contiguous in file and on media, same state) are merged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Inode {
    pub live: bool,
    pub size_bytes: u64,
    pub extents: Vec<Extent>,
}

impl Inode {
    /// The extent covering `file_block`, if any (a hole otherwise).
    pub fn lookup(&self, file_block: u64) -> Option<Extent> {
        let i = self.extents.partition_point(|e| e.file_block + e.len <= file_block);
        self.extents.get(i).copied().filter(|e| e.file_block <= file_block)
    }

    /// The first extent starting after `file_block` (sizes the hole at `file_block`).
    pub fn next_extent_after(&self, file_block: u64) -> Option<Extent> {
        let i = self.extents.partition_point(|e| e.file_block <= file_block);
        self.extents.get(i).copied()
    }

    /// Removes file blocks `start..start + len` from the map, splitting extents at the edges.
    fn unmap(&mut self, start: u64, len: u64) {
        let end = start + len;
        let mut out = Vec::with_capacity(self.extents.len() + 1);
        for e in self.extents.drain(..) {
            let e_end = e.file_block + e.len;
            if e_end <= start || e.file_block >= end {
                out.push(e);
                continue;
            }
            if e.file_block < start {
                out.push(Extent { len: start - e.file_block, ..e });
            }
            if e_end > end {
                let skip = end - e.file_block;
                out.push(Extent {
                    file_block: end,
                    phys: BlockNr(e.phys.0 + skip),
                    len: e_end - end,
                    state: e.state,
                });
            }
        }
        self.extents = out;
    }

    /// Maps `ext`, replacing whatever mapped its range, and merges neighbours.
    fn map(&mut self, ext: Extent) {
        self.unmap(ext.file_block, ext.len);
        let i = self.extents.partition_point(|e| e.file_block < ext.file_block);
        self.extents.insert(i, ext);
        self.merge();
    }

    fn merge(&mut self) {
        let mut out: Vec<Extent> = Vec::with_capacity(self.extents.len());
        for e in self.extents.drain(..) {
            match out.last_mut() {
                Some(p)
                    if p.file_block + p.len == e.file_block
                        && p.phys.0 + p.len == e.phys.0
                        && p.state == e.state =>
                {
                    p.len += e.len
                }
                _ => out.push(e),
            }
        }
        self.extents = out;
    }
}

/// The allocation bitmap: bit `b` set = block `b` allocated. Bits outside the data area stay
/// clear.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bitmap {
    words: Vec<u64>,
}

/// Word by word (a derived `Hash` writes the words as one byte slice, which a word-fed hasher
/// takes a byte at a time): the count, then each word.
impl std::hash::Hash for Bitmap {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.words.len());
        for &w in &self.words {
            state.write_u64(w);
        }
    }
}

impl Bitmap {
    pub fn words(&self) -> &[u64] {
        &self.words
    }
    pub fn get(&self, b: u64) -> bool {
        self.words.get((b / 64) as usize).is_some_and(|w| w >> (b % 64) & 1 == 1)
    }
    /// Sets or clears `len` bits from `start`; the caller has range-checked them.
    fn assign(&mut self, start: u64, len: u64, value: bool) {
        for b in start..start + len {
            let w = &mut self.words[(b / 64) as usize];
            if value { *w |= 1 << (b % 64) } else { *w &= !(1 << (b % 64)) }
        }
    }
    fn toggle(&mut self, start: u64, len: u64) {
        for b in start..start + len {
            self.words[(b / 64) as usize] ^= 1 << (b % 64);
        }
    }
}

/// All file-system metadata in memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Metadata {
    pub inodes: Vec<Inode>,
    pub bitmap: Bitmap,
    geom: Geometry,
}

fn corrupt(detail: String) -> FsError {
    FsError::Corrupt { what: "journal record", detail }
}

impl Metadata {
    /// Empty metadata (as after mkfs).
    pub fn new(geom: &Geometry) -> Metadata {
        Metadata {
            inodes: vec![Inode::default(); INODES_MAX as usize],
            bitmap: Bitmap { words: vec![0; (geom.bitmap_bytes() / 8) as usize] },
            geom: *geom,
        }
    }

    /// Metadata from a home copy (already crc-checked and bounds-checked by the decoder).
    pub fn from_home(geom: &Geometry, home: HomeImage) -> Result<Metadata, FsError> {
        if home.bitmap.len() as u64 * 8 != geom.bitmap_bytes() || home.inodes.len() != INODES_MAX as usize {
            return Err(FsError::Corrupt { what: "home metadata", detail: "wrong table sizes".into() });
        }
        let inodes = home
            .inodes
            .into_iter()
            .map(|i| Inode { live: i.live, size_bytes: i.size_bytes, extents: i.extents })
            .collect();
        Ok(Metadata { inodes, bitmap: Bitmap { words: home.bitmap }, geom: *geom })
    }

    /// The home image of this metadata (what a checkpoint writes).
    pub fn to_home(&self) -> HomeImage {
        HomeImage {
            bitmap: self.bitmap.words.clone(),
            inodes: self
                .inodes
                .iter()
                .map(|i| InodeImage { live: i.live, size_bytes: i.size_bytes, extents: i.extents.clone() })
                .collect(),
        }
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    pub fn is_allocated(&self, b: BlockNr) -> bool {
        self.bitmap.get(b.0)
    }

    /// Applies one record. Idempotent. Impossible records (out of range, on a free inode) are
    /// `Corrupt`; an extent map over `EXTENTS_PER_INODE_MAX` is `TooBig`. On error nothing changed.
    pub fn apply(&mut self, r: &Record) -> Result<(), FsError> {
        self.apply_inner(r, false)
    }

    /// The buggy replay of `Bug::ReplayNotIdempotent`: bitmap records toggle bits (a relative
    /// update) instead of assigning them. Right once from the tail state; wrong when repeated.
    pub fn apply_relative(&mut self, r: &Record) -> Result<(), FsError> {
        self.apply_inner(r, true)
    }

    fn apply_inner(&mut self, r: &Record, relative: bool) -> Result<(), FsError> {
        match *r {
            Record::BitmapSet { start, len } | Record::BitmapClear { start, len } => {
                self.check_blocks(start, len)?;
                match (relative, matches!(r, Record::BitmapSet { .. })) {
                    (true, _) => self.bitmap.toggle(start.0, len),
                    (false, value) => self.bitmap.assign(start.0, len, value),
                }
            }
            Record::ExtentSet { ino, extent } => {
                self.check_blocks(extent.phys, extent.len)?;
                check_file_range(extent.file_block, extent.len)?;
                let inode = self.live_inode_mut(ino)?;
                let mut next = inode.clone();
                next.map(extent);
                commit_inode(inode, next)?;
            }
            Record::ExtentRemove { ino, file_block, len } => {
                check_file_range(file_block, len)?;
                let inode = self.live_inode_mut(ino)?;
                let mut next = inode.clone();
                next.unmap(file_block, len);
                commit_inode(inode, next)?;
            }
            Record::InodeSize { ino, size_bytes } => {
                if size_bytes > FILE_BYTES_MAX {
                    return Err(corrupt(format!("inode {} size {size_bytes} over FILE_BYTES_MAX", ino.0)));
                }
                self.live_inode_mut(ino)?.size_bytes = size_bytes;
            }
            Record::InodeCreate { ino } => *self.inode_mut(ino)? = Inode { live: true, ..Inode::default() },
            Record::InodeDelete { ino } => *self.inode_mut(ino)? = Inode::default(),
        }
        Ok(())
    }

    fn check_blocks(&self, start: BlockNr, len: u64) -> Result<(), FsError> {
        if len == 0 || !self.geom.in_data_area(start.0, len) {
            return Err(corrupt(format!("blocks {}+{len} outside the data area", start.0)));
        }
        Ok(())
    }

    fn inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, FsError> {
        self.inodes.get_mut(ino.0 as usize).ok_or_else(|| corrupt(format!("inode {} out of range", ino.0)))
    }

    fn live_inode_mut(&mut self, ino: Ino) -> Result<&mut Inode, FsError> {
        let inode = self.inode_mut(ino)?;
        if !inode.live {
            return Err(corrupt(format!("inode {} is not live", ino.0)));
        }
        Ok(inode)
    }
}

fn check_file_range(file_block: u64, len: u64) -> Result<(), FsError> {
    match file_block.checked_add(len) {
        Some(end) if len > 0 && end <= FILE_BLOCKS_MAX => Ok(()),
        _ => Err(corrupt(format!("file blocks {file_block}+{len} out of range"))),
    }
}

fn commit_inode(inode: &mut Inode, next: Inode) -> Result<(), FsError> {
    if next.extents.len() > EXTENTS_PER_INODE_MAX {
        return Err(FsError::TooBig("more than EXTENTS_PER_INODE_MAX extents"));
    }
    *inode = next;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daxfs::types::ExtentState::{Unwritten, Written};

    fn geom() -> Geometry {
        Geometry::new(4 << 20).unwrap().with_pmd_blocks(8)
    }

    fn ext(file_block: u64, phys: u64, len: u64, state: crate::daxfs::ExtentState) -> Extent {
        Extent { file_block, phys: BlockNr(phys), len, state }
    }

    #[test]
    fn extent_set_splits_replaces_and_merges() {
        let g = geom();
        let d = g.data_start().0;
        let mut m = Metadata::new(&g);
        m.apply(&Record::InodeCreate { ino: Ino(1) }).unwrap();
        m.apply(&Record::ExtentSet { ino: Ino(1), extent: ext(0, d, 8, Unwritten) }).unwrap();
        m.apply(&Record::ExtentSet { ino: Ino(1), extent: ext(2, d + 2, 2, Written) }).unwrap();
        let i = &m.inodes[1];
        assert_eq!(
            i.extents,
            vec![ext(0, d, 2, Unwritten), ext(2, d + 2, 2, Written), ext(4, d + 4, 4, Unwritten)]
        );
        assert_eq!(i.lookup(3), Some(ext(2, d + 2, 2, Written)));
        assert_eq!(i.lookup(8), None);
        assert_eq!(i.next_extent_after(2), Some(ext(4, d + 4, 4, Unwritten)));
        let before = m.clone();
        m.apply(&Record::ExtentSet { ino: Ino(1), extent: ext(2, d + 2, 2, Written) }).unwrap();
        assert_eq!(m, before, "idempotent");
        for fb in [0, 4] {
            m.apply(&Record::ExtentSet {
                ino: Ino(1),
                extent: ext(fb, d + fb, if fb == 0 { 2 } else { 4 }, Written),
            })
            .unwrap();
        }
        assert_eq!(m.inodes[1].extents, vec![ext(0, d, 8, Written)], "merged");
        m.apply(&Record::ExtentRemove { ino: Ino(1), file_block: 3, len: 2 }).unwrap();
        assert_eq!(m.inodes[1].extents, vec![ext(0, d, 3, Written), ext(5, d + 5, 3, Written)]);
    }

    #[test]
    fn impossible_records_are_rejected_without_change() {
        let g = geom();
        let mut m = Metadata::new(&g);
        let before = m.clone();
        let bad = [
            Record::BitmapSet { start: BlockNr(0), len: 1 },
            Record::BitmapSet { start: BlockNr(g.blocks() - 1), len: 2 },
            Record::BitmapClear { start: g.data_start(), len: u64::MAX },
            Record::ExtentSet { ino: Ino(0), extent: ext(0, g.data_start().0, 1, Written) },
            Record::InodeSize { ino: Ino(INODES_MAX), size_bytes: 1 },
            Record::InodeCreate { ino: Ino(u32::MAX) },
        ];
        for r in bad {
            assert!(matches!(m.apply(&r), Err(FsError::Corrupt { .. })), "{r:?}");
        }
        assert_eq!(m, before);
    }

    #[test]
    fn too_many_extents_is_too_big() {
        let g = geom();
        let d = g.data_start().0;
        let mut m = Metadata::new(&g);
        m.apply(&Record::InodeCreate { ino: Ino(0) }).unwrap();
        for i in 0..EXTENTS_PER_INODE_MAX as u64 {
            m.apply(&Record::ExtentSet { ino: Ino(0), extent: ext(2 * i, d + 2 * i, 1, Written) }).unwrap();
        }
        let r = Record::ExtentSet { ino: Ino(0), extent: ext(1000, d + 200, 1, Written) };
        assert!(matches!(m.apply(&r), Err(FsError::TooBig(_))));
        assert_eq!(m.inodes[0].extents.len(), EXTENTS_PER_INODE_MAX);
    }

    #[test]
    fn relative_bitmap_apply_is_not_idempotent() {
        let g = geom();
        let mut m = Metadata::new(&g);
        let r = Record::BitmapSet { start: g.data_start(), len: 3 };
        m.apply_relative(&r).unwrap();
        assert!(m.is_allocated(g.data_start()));
        m.apply_relative(&r).unwrap();
        assert!(!m.is_allocated(g.data_start()), "toggled back");
    }
}
