//! The on-media format of daxfs (docs/design.md §4), byte for byte. Every structure is a fixed
//! little-endian layout with a crc32 (crc32fast) over its bytes; `docs/daxfs.md` has the
//! offset tables. Decoders never panic and never allocate by an untrusted size.
//!
//! Block map (absolute block numbers):
//! ```text
//! 0                      superblock: static header (line 0) + two checkpoint slots (lines 1, 2)
//! 1 ..                   journal: circular redo log of 64-byte slots
//! then, twice (copy 0, copy 1):
//!   home header block    magic, bitmap crc
//!   bitmap blocks        bit b = block b allocated
//!   INODES_MAX blocks    one inode (with its extent list) per block
//! data_start ..          data blocks, PMD-aligned when the device is large enough
//! ```
//! Checkpoints ping-pong between the two home copies and the two checkpoint slots, so a torn
//! checkpoint always leaves the previous one intact (the journal tail it names still holds
//! every transaction since).

use std::ops::Range;
use std::sync::Arc;

use super::tag::Poison;
use super::types::PMD_BLOCKS_DEFAULT;
use super::types::{
    BLOCK_BYTES, BlockNr, EXTENTS_PER_INODE_MAX, Extent, ExtentState, FsError, INODES_MAX, Ino,
};
use crate::pmem::{Background, Device, FlushKind, LINE_BYTES, PmemAddr};

/// Superblock magic ("DAXFS\0sb").
pub const SB_MAGIC: u64 = u64::from_le_bytes(*b"DAXFSsb\0");
/// On-media format version.
pub const FORMAT_VERSION: u32 = 1;
/// Checkpoint slot magic.
pub const CKPT_MAGIC: u32 = u32::from_le_bytes(*b"CKPT");
/// Home copy header magic.
pub const HOME_MAGIC: u64 = u64::from_le_bytes(*b"DAXhome\0");
/// Inode block magic.
pub const INODE_MAGIC: u32 = u32::from_le_bytes(*b"INOD");

/// Largest device daxfs formats: poison words name blocks in 32 bits, and the bitmap of the
/// largest device is 2 MiB.
pub const DEVICE_BYTES_MAX: u64 = 64 << 30;
/// Journal size bounds, in blocks.
pub const JOURNAL_BLOCKS_MIN: u64 = 16;
pub const JOURNAL_BLOCKS_MAX: u64 = 64;
/// Largest PMD geometry accepted (the faithful one).
pub const PMD_BLOCKS_MAX: u64 = PMD_BLOCKS_DEFAULT;
/// Fewest data blocks a geometry must leave.
pub const DATA_BLOCKS_MIN: u64 = 8;
/// Largest file, in blocks (bounds extent arithmetic; far above the workload bound).
pub const FILE_BLOCKS_MAX: u64 = 1 << 32;

/// Journal slot size: one cache line, so a slot never shares a line with another.
pub const SLOT_BYTES: u64 = LINE_BYTES;
/// Slots per journal block.
pub const SLOTS_PER_BLOCK: u64 = BLOCK_BYTES / SLOT_BYTES;
/// Byte offsets of the two checkpoint slots inside block 0.
pub const CKPT_SLOT_OFFSETS: [u64; 2] = [LINE_BYTES, 2 * LINE_BYTES];
/// Bytes of an encoded inode (header line + extents); the rest of its block is unused.
pub const INODE_BYTES: usize = INODE_HEADER_BYTES + EXTENTS_PER_INODE_MAX * EXTENT_BYTES;
const INODE_HEADER_BYTES: usize = 64;
const EXTENT_BYTES: usize = 32;
/// Bytes of the superblock header and of a checkpoint slot.
const SB_BYTES: usize = LINE_BYTES as usize;
const CKPT_BYTES: usize = LINE_BYTES as usize;

const _: () = assert!(INODE_BYTES as u64 <= BLOCK_BYTES);
const _: () = assert!(INODE_BYTES % LINE_BYTES as usize == 0);
const _: () = assert!(DEVICE_BYTES_MAX / BLOCK_BYTES <= 1 << 32, "poison names blocks in 32 bits");
const _: () = assert!(JOURNAL_BLOCKS_MIN <= JOURNAL_BLOCKS_MAX);

const SITE_MKFS: &str = "daxfs::layout::mkfs";
const SITE_HOME: &str = "daxfs::layout::write_home";
const SITE_CKPT: &str = "daxfs::layout::write_checkpoint";

/// The shape of a daxfs image. Everything else (areas, data start) is derived from it.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    pub size_bytes: u64,
    pub journal_blocks: u64,
    pub pmd_blocks: u64,
    /// Poison generation of this image (names the "old contents" of data blocks).
    pub generation: u8,
}

impl Geometry {
    /// Default geometry for a device of `size_bytes` (a multiple of the block size).
    pub fn new(size_bytes: u64) -> Result<Geometry, FsError> {
        let blocks = size_bytes / BLOCK_BYTES;
        let journal_blocks = (blocks / 64).clamp(JOURNAL_BLOCKS_MIN, JOURNAL_BLOCKS_MAX);
        let geom = Geometry { size_bytes, journal_blocks, pmd_blocks: PMD_BLOCKS_DEFAULT, generation: 0 };
        geom.check().map_err(FsError::Invalid)?;
        Ok(geom)
    }

    /// A smaller PMD (a power of two) for fast tests; checked again by [`mkfs`].
    pub fn with_pmd_blocks(self, pmd_blocks: u64) -> Geometry {
        Geometry { pmd_blocks, ..self }
    }

    /// A different journal size (tests of wrap-around); checked again by [`mkfs`].
    pub fn with_journal_blocks(self, journal_blocks: u64) -> Geometry {
        Geometry { journal_blocks, ..self }
    }

    pub fn with_generation(self, generation: u8) -> Geometry {
        Geometry { generation, ..self }
    }

    pub fn blocks(&self) -> u64 {
        self.size_bytes / BLOCK_BYTES
    }

    /// First journal block.
    pub fn journal_start(&self) -> BlockNr {
        BlockNr(1)
    }

    /// Number of 64-byte slots in the circular journal.
    pub fn journal_slots(&self) -> u64 {
        self.journal_blocks * SLOTS_PER_BLOCK
    }

    /// The journal area in bytes (for fuzz targets that corrupt it).
    pub fn journal_range(&self) -> Range<u64> {
        let start = self.journal_start().0 * BLOCK_BYTES;
        start..start + self.journal_blocks * BLOCK_BYTES
    }

    /// The superblock (header and checkpoint slots) in bytes.
    pub fn superblock_range(&self) -> Range<u64> {
        0..BLOCK_BYTES
    }

    /// Blocks of the allocation bitmap in one home copy.
    pub fn bitmap_blocks(&self) -> u64 {
        self.bitmap_bytes().div_ceil(BLOCK_BYTES)
    }

    /// Bytes of the bitmap that carry bits (whole 64-bit words).
    pub fn bitmap_bytes(&self) -> u64 {
        self.blocks().div_ceil(64) * 8
    }

    /// Blocks of one home copy: header, bitmap, inode table.
    pub fn home_blocks(&self) -> u64 {
        1 + self.bitmap_blocks() + u64::from(INODES_MAX)
    }

    /// First block of home copy `copy` (0 or 1).
    pub fn home_start(&self, copy: u8) -> BlockNr {
        BlockNr(1 + self.journal_blocks + u64::from(copy & 1) * self.home_blocks())
    }

    /// Both home copies, in bytes.
    pub fn home_range(&self) -> Range<u64> {
        let start = self.home_start(0).0 * BLOCK_BYTES;
        start..start + 2 * self.home_blocks() * BLOCK_BYTES
    }

    pub fn bitmap_addr(&self, copy: u8) -> PmemAddr {
        self.block_addr(BlockNr(self.home_start(copy).0 + 1))
    }

    pub fn inode_addr(&self, copy: u8, ino: Ino) -> PmemAddr {
        self.block_addr(BlockNr(self.home_start(copy).0 + 1 + self.bitmap_blocks() + u64::from(ino.0)))
    }

    fn metadata_end(&self) -> u64 {
        1 + self.journal_blocks + 2 * self.home_blocks()
    }

    /// First data block: PMD-aligned if that still leaves a whole PMD of data.
    pub fn data_start(&self) -> BlockNr {
        let end = self.metadata_end();
        let pmd = self.pmd_blocks.max(1);
        let aligned = end.next_multiple_of(pmd);
        BlockNr(if aligned + pmd <= self.blocks() { aligned } else { end })
    }

    pub fn data_blocks(&self) -> u64 {
        self.blocks().saturating_sub(self.data_start().0)
    }

    pub fn block_addr(&self, b: BlockNr) -> PmemAddr {
        PmemAddr(b.0 * BLOCK_BYTES)
    }

    /// Whether `len` blocks from `start` lie inside the data area.
    pub fn in_data_area(&self, start: u64, len: u64) -> bool {
        start >= self.data_start().0 && start.checked_add(len).is_some_and(|end| end <= self.blocks())
    }

    fn check(&self) -> Result<(), &'static str> {
        if self.size_bytes % BLOCK_BYTES != 0 {
            return Err("device size is not a multiple of the block size");
        }
        if self.size_bytes > DEVICE_BYTES_MAX {
            return Err("device larger than DEVICE_BYTES_MAX");
        }
        if !(JOURNAL_BLOCKS_MIN..=JOURNAL_BLOCKS_MAX).contains(&self.journal_blocks) {
            return Err("journal size outside JOURNAL_BLOCKS_MIN..=JOURNAL_BLOCKS_MAX");
        }
        if !self.pmd_blocks.is_power_of_two() || self.pmd_blocks > PMD_BLOCKS_MAX {
            return Err("PMD size is not a power of two up to PMD_BLOCKS_MAX");
        }
        if self.metadata_end() + DATA_BLOCKS_MIN > self.blocks() {
            return Err("device too small for metadata and DATA_BLOCKS_MIN data blocks");
        }
        Ok(())
    }
}

/// Reads a little-endian u64 at `off`. `buf` is a fixed-size structure, so `off` is in range.
pub(crate) fn get_u64(buf: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(buf[off..off + 8].try_into().expect("8 bytes"))
}

pub(crate) fn get_u32(buf: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(buf[off..off + 4].try_into().expect("4 bytes"))
}

pub(crate) fn put_u64(buf: &mut [u8], off: usize, v: u64) {
    buf[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

pub(crate) fn put_u32(buf: &mut [u8], off: usize, v: u32) {
    buf[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// crc32 of `buf` with the 4-byte crc field at `crc_off` taken as zero.
pub(crate) fn crc_with_hole(buf: &[u8], crc_off: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..crc_off]);
    h.update(&[0; 4]);
    h.update(&buf[crc_off + 4..]);
    h.finalize()
}

fn corrupt(what: &'static str, detail: impl Into<String>) -> FsError {
    FsError::Corrupt { what, detail: detail.into() }
}

// ---- superblock header (block 0, line 0) ----
// 0 magic u64 | 8 version u32 | 12 crc u32 | 16 size_bytes u64 | 24 journal_blocks u64
// 32 pmd_blocks u64 | 40 generation u8 | 41..64 zero

pub fn encode_superblock(g: &Geometry) -> [u8; SB_BYTES] {
    let mut b = [0u8; SB_BYTES];
    put_u64(&mut b, 0, SB_MAGIC);
    put_u32(&mut b, 8, FORMAT_VERSION);
    put_u64(&mut b, 16, g.size_bytes);
    put_u64(&mut b, 24, g.journal_blocks);
    put_u64(&mut b, 32, g.pmd_blocks);
    b[40] = g.generation;
    let crc = crc_with_hole(&b, 12);
    put_u32(&mut b, 12, crc);
    b
}

/// Decodes and checks the superblock against the device size.
pub fn decode_superblock(b: &[u8; SB_BYTES], device_bytes: u64) -> Result<Geometry, FsError> {
    if get_u64(b, 0) != SB_MAGIC {
        return Err(corrupt("superblock", format!("bad magic {:#x}", get_u64(b, 0))));
    }
    if get_u32(b, 12) != crc_with_hole(b, 12) {
        return Err(corrupt("superblock", "crc mismatch"));
    }
    if get_u32(b, 8) != FORMAT_VERSION {
        return Err(corrupt("superblock", format!("unknown format version {}", get_u32(b, 8))));
    }
    let geom = Geometry {
        size_bytes: get_u64(b, 16),
        journal_blocks: get_u64(b, 24),
        pmd_blocks: get_u64(b, 32),
        generation: b[40],
    };
    if geom.size_bytes != device_bytes {
        return Err(corrupt(
            "superblock",
            format!("image size {} but device is {device_bytes} bytes", geom.size_bytes),
        ));
    }
    geom.check().map_err(|why| corrupt("superblock", why))?;
    Ok(geom)
}

/// A checkpoint: where replay starts. The newest valid slot of the two wins.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Checkpoint sequence number, from 0 at mkfs.
    pub seq: u64,
    /// Absolute journal slot position of the tail (slot index = tail % journal_slots).
    pub tail: u64,
    /// Tid of the first transaction at the tail.
    pub next_tid: u64,
    /// Which home copy holds the metadata as of the tail.
    pub home_copy: u8,
}

// ---- checkpoint slot (block 0, lines 1 and 2) ----
// 0 magic u32 | 4 crc u32 | 8 seq u64 | 16 tail u64 | 24 next_tid u64 | 32 home_copy u8 | zero

pub fn encode_checkpoint(c: &Checkpoint) -> [u8; CKPT_BYTES] {
    let mut b = [0u8; CKPT_BYTES];
    put_u32(&mut b, 0, CKPT_MAGIC);
    put_u64(&mut b, 8, c.seq);
    put_u64(&mut b, 16, c.tail);
    put_u64(&mut b, 24, c.next_tid);
    b[32] = c.home_copy;
    let crc = crc_with_hole(&b, 4);
    put_u32(&mut b, 4, crc);
    b
}

pub fn decode_checkpoint(b: &[u8; CKPT_BYTES]) -> Option<Checkpoint> {
    if get_u32(b, 0) != CKPT_MAGIC || get_u32(b, 4) != crc_with_hole(b, 4) || b[32] > 1 {
        return None;
    }
    Some(Checkpoint { seq: get_u64(b, 8), tail: get_u64(b, 16), next_tid: get_u64(b, 24), home_copy: b[32] })
}

/// Reads both checkpoint slots; the valid one with the larger seq wins.
pub fn read_checkpoint(dev: &Device) -> Result<Checkpoint, FsError> {
    let mut best: Option<Checkpoint> = None;
    for off in CKPT_SLOT_OFFSETS {
        let mut b = [0u8; CKPT_BYTES];
        dev.read(PmemAddr(off), &mut b)?;
        if let Some(c) = decode_checkpoint(&b) {
            if best.is_none_or(|x| c.seq > x.seq) {
                best = Some(c);
            }
        }
    }
    best.ok_or_else(|| corrupt("checkpoint", "neither checkpoint slot is valid"))
}

/// Stores checkpoint `c` into slot `c.seq % 2`, flush, fence: the commit point of a checkpoint.
pub fn write_checkpoint(dev: &mut Device, c: &Checkpoint) -> Result<(), FsError> {
    let addr = PmemAddr(CKPT_SLOT_OFFSETS[(c.seq % 2) as usize]);
    dev.store(addr, &encode_checkpoint(c), SITE_CKPT)?;
    dev.flush(addr, CKPT_BYTES as u64, FlushKind::Clwb, SITE_CKPT)?;
    dev.fence(SITE_CKPT)?;
    Ok(())
}

// ---- home copy header (first line of its first block) ----
// 0 magic u64 | 8 bitmap_crc u32 | 12 crc u32 | zero

fn encode_home_header(bitmap_crc: u32) -> [u8; 64] {
    let mut b = [0u8; 64];
    put_u64(&mut b, 0, HOME_MAGIC);
    put_u32(&mut b, 8, bitmap_crc);
    let crc = crc_with_hole(&b, 12);
    put_u32(&mut b, 12, crc);
    b
}

// ---- inode (one per block, INODE_BYTES used) ----
// 0 magic u32 | 4 crc u32 (over INODE_BYTES) | 8 live u8 | 12 extent_count u32 | 16 size_bytes u64
// 64 + 32*i: file_block u64 | phys u64 | len u64 | state u64 (1 unwritten, 2 written)

/// An inode as stored at home.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InodeImage {
    pub live: bool,
    pub size_bytes: u64,
    pub extents: Vec<Extent>,
}

pub fn encode_state(s: ExtentState) -> u64 {
    match s {
        ExtentState::Unwritten => 1,
        ExtentState::Written => 2,
    }
}

pub fn decode_state(v: u64) -> Option<ExtentState> {
    match v {
        1 => Some(ExtentState::Unwritten),
        2 => Some(ExtentState::Written),
        _ => None,
    }
}

pub fn encode_inode(ino: &InodeImage) -> Result<Vec<u8>, FsError> {
    let mut b = vec![0u8; INODE_BYTES];
    encode_inode_into(ino, &mut b)?;
    Ok(b)
}

/// The error [`encode_inode`] gives for an inode of `extents` extents, if any.
pub fn check_extent_count(extents: usize) -> Result<(), FsError> {
    if extents > EXTENTS_PER_INODE_MAX {
        return Err(FsError::TooBig("more than EXTENTS_PER_INODE_MAX extents"));
    }
    Ok(())
}

/// [`encode_inode`] into `b` (`INODE_BYTES` long, any contents).
fn encode_inode_into(ino: &InodeImage, b: &mut [u8]) -> Result<(), FsError> {
    check_extent_count(ino.extents.len())?;
    let b = &mut b[..INODE_BYTES];
    b.fill(0);
    put_u32(b, 0, INODE_MAGIC);
    b[8] = u8::from(ino.live);
    put_u32(b, 12, ino.extents.len() as u32);
    put_u64(b, 16, ino.size_bytes);
    for (i, e) in ino.extents.iter().enumerate() {
        let off = INODE_HEADER_BYTES + i * EXTENT_BYTES;
        put_u64(b, off, e.file_block);
        put_u64(b, off + 8, e.phys.0);
        put_u64(b, off + 16, e.len);
        put_u64(b, off + 24, encode_state(e.state));
    }
    let crc = crc_with_hole(b, 4);
    put_u32(b, 4, crc);
    Ok(())
}

/// Decodes an inode; checks crc, bounds, and that extents are sorted and non-overlapping.
pub fn decode_inode(b: &[u8], ino: Ino) -> Result<InodeImage, FsError> {
    let bad = |d: String| corrupt("inode", format!("inode {}: {d}", ino.0));
    if b.len() != INODE_BYTES || get_u32(b, 0) != INODE_MAGIC {
        return Err(bad("bad magic".into()));
    }
    if get_u32(b, 4) != crc_with_hole(b, 4) {
        return Err(bad("crc mismatch".into()));
    }
    let count = get_u32(b, 12) as usize;
    if count > EXTENTS_PER_INODE_MAX || b[8] > 1 {
        return Err(bad(format!("extent count {count} or live flag {} out of range", b[8])));
    }
    let mut extents = Vec::with_capacity(count);
    for i in 0..count {
        let off = INODE_HEADER_BYTES + i * EXTENT_BYTES;
        let state =
            decode_state(get_u64(b, off + 24)).ok_or_else(|| bad(format!("extent {i}: bad state")))?;
        let e = Extent {
            file_block: get_u64(b, off),
            phys: BlockNr(get_u64(b, off + 8)),
            len: get_u64(b, off + 16),
            state,
        };
        let end_ok = e.file_block.checked_add(e.len).is_some_and(|end| end <= FILE_BLOCKS_MAX);
        let sorted = extents.last().is_none_or(|p: &Extent| p.file_block + p.len <= e.file_block);
        if e.len == 0 || !end_ok || !sorted {
            return Err(bad(format!("extent {i} empty, too large or out of order")));
        }
        extents.push(e);
    }
    Ok(InodeImage { live: b[8] == 1, size_bytes: get_u64(b, 16), extents })
}

/// Home metadata as loaded from (or written to) one copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HomeImage {
    /// Bitmap words, `bitmap_bytes / 8` of them.
    pub bitmap: Vec<u64>,
    pub inodes: Vec<InodeImage>,
}

fn bitmap_bytes_of(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// Reads and checks home copy `copy`. Sizes come from the (already validated) geometry.
pub fn read_home(dev: &Device, geom: &Geometry, copy: u8) -> Result<HomeImage, FsError> {
    let mut hdr = [0u8; 64];
    dev.read(geom.block_addr(geom.home_start(copy)), &mut hdr)?;
    if get_u64(&hdr, 0) != HOME_MAGIC || get_u32(&hdr, 12) != crc_with_hole(&hdr, 12) {
        return Err(corrupt("home metadata", format!("copy {copy}: bad header")));
    }
    let mut raw = vec![0u8; geom.bitmap_bytes() as usize];
    dev.read(geom.bitmap_addr(copy), &mut raw)?;
    if crc32fast::hash(&raw) != get_u32(&hdr, 8) {
        return Err(corrupt("home metadata", format!("copy {copy}: bitmap crc mismatch")));
    }
    let bitmap = raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8"))).collect();
    let mut inodes = Vec::with_capacity(INODES_MAX as usize);
    let mut buf = vec![0u8; INODE_BYTES];
    for i in 0..INODES_MAX {
        dev.read(geom.inode_addr(copy, Ino(i)), &mut buf)?;
        inodes.push(decode_inode(&buf, Ino(i))?);
    }
    Ok(HomeImage { bitmap, inodes })
}

/// Writes `home` into copy `copy`: only lines that differ from what the copy holds are stored,
/// then flushed, then one fence. Does not touch the checkpoint slots.
pub fn write_home(dev: &mut Device, geom: &Geometry, copy: u8, home: &HomeImage) -> Result<(), FsError> {
    let raw = bitmap_bytes_of(&home.bitmap);
    debug_assert_eq!(raw.len() as u64, geom.bitmap_bytes());
    // One buffer for what the copy holds, one for an encoded inode: no allocation per inode.
    let mut old = vec![0u8; raw.len().max(INODE_BYTES)];
    let mut changed = store_changed_lines(dev, geom.bitmap_addr(copy), &raw, &mut old)?;
    let mut bytes = vec![0u8; INODE_BYTES];
    for (i, inode) in home.inodes.iter().enumerate() {
        encode_inode_into(inode, &mut bytes)?;
        changed |= store_changed_lines(dev, geom.inode_addr(copy, Ino(i as u32)), &bytes, &mut old)?;
    }
    let hdr_addr = geom.block_addr(geom.home_start(copy));
    changed |= store_changed_lines(dev, hdr_addr, &encode_home_header(crc32fast::hash(&raw)), &mut old)?;
    if changed {
        dev.fence(SITE_HOME)?;
    }
    Ok(())
}

/// Stores and flushes each run of 64-byte lines of `bytes` that differs from the device.
/// Returns whether anything was stored. `bytes.len()` is a multiple of 8; `scratch` is at
/// least as long.
fn store_changed_lines(
    dev: &mut Device,
    addr: PmemAddr,
    bytes: &[u8],
    scratch: &mut [u8],
) -> Result<bool, FsError> {
    let old = &mut scratch[..bytes.len()];
    // Only to skip identical lines: every line ends up holding `bytes` either way.
    dev.read_blind(addr, old)?;
    let line = LINE_BYTES as usize;
    let mut any = false;
    let mut i = 0;
    while i < bytes.len() {
        let same = |k: usize| bytes[k..(k + line).min(bytes.len())] == old[k..(k + line).min(bytes.len())];
        if same(i) {
            i += line;
            continue;
        }
        let start = i;
        while i < bytes.len() && !same(i) {
            i += line;
        }
        let end = i.min(bytes.len());
        let at = PmemAddr(addr.0 + start as u64);
        dev.store(at, &bytes[start..end], SITE_HOME)?;
        dev.flush(at, (end - start) as u64, FlushKind::Clwb, SITE_HOME)?;
        any = true;
    }
    Ok(any)
}

/// The poison word mkfs leaves at `addr`: zero in metadata areas, a per-block pattern in data.
pub fn background_word(geom: &Geometry, addr: u64) -> u64 {
    poison_word(geom.data_start().0 * BLOCK_BYTES, geom.generation, addr)
}

/// [`background_word`] with the data area's start precomputed (it is called per word).
fn poison_word(data_bytes: u64, generation: u8, addr: u64) -> u64 {
    if addr < data_bytes {
        return 0;
    }
    Poison { generation, block: addr / BLOCK_BYTES, word_in_block: ((addr % BLOCK_BYTES) / 8) as u16 }
        .encode()
}

/// Formats a fresh device: poisoned data blocks, superblock, checkpoint 0 naming an empty home
/// copy 0 and an empty journal. The trace starts empty afterwards. Cost is independent of size.
pub fn mkfs(geom: &Geometry) -> Result<Device, FsError> {
    geom.check().map_err(FsError::Invalid)?;
    let g = *geom;
    let (data_bytes, generation) = (g.data_start().0 * BLOCK_BYTES, g.generation);
    let background = Background::procedural_above(g.size_bytes, data_bytes, move |addr| {
        poison_word(data_bytes, generation, addr)
    });
    let mut dev = Device::with_backing(Arc::new(background));
    dev.store(PmemAddr(0), &encode_superblock(geom), SITE_MKFS)?;
    dev.flush(PmemAddr(0), SB_BYTES as u64, FlushKind::Clwb, SITE_MKFS)?;
    let empty = HomeImage {
        bitmap: vec![0; (geom.bitmap_bytes() / 8) as usize],
        inodes: vec![InodeImage::default(); INODES_MAX as usize],
    };
    write_home(&mut dev, geom, 0, &empty)?;
    write_checkpoint(&mut dev, &Checkpoint { seq: 0, tail: 0, next_tid: 1, home_copy: 0 })?;
    dev.rebase();
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daxfs::tag::Word;

    #[test]
    fn geometry_defaults_are_sane_and_pmd_aligned() {
        let g = Geometry::new(256 << 20).unwrap();
        assert_eq!(g.blocks(), 65536);
        assert!((JOURNAL_BLOCKS_MIN..=JOURNAL_BLOCKS_MAX).contains(&g.journal_blocks));
        assert_eq!(g.data_start().0 % PMD_BLOCKS_DEFAULT, 0);
        assert!(g.journal_range().end <= g.home_range().start);
        assert!(g.home_range().end <= g.data_start().0 * BLOCK_BYTES);
        assert!(matches!(Geometry::new(64 << 10), Err(FsError::Invalid(_))));
        assert!(matches!(Geometry::new((1 << 20) + 1), Err(FsError::Invalid(_))));
    }

    #[test]
    fn mkfs_is_cheap_and_poisons_only_data() {
        let g = Geometry::new(256 << 20).unwrap();
        let t = std::time::Instant::now();
        let dev = mkfs(&g).unwrap();
        eprintln!("mkfs of 256 MiB: {:?}", t.elapsed());
        assert!(t.elapsed().as_millis() < 200, "mkfs took {:?}", t.elapsed());
        assert!(dev.trace().is_empty());
        let last = g.blocks() - 1;
        let w = dev.read_u64(g.block_addr(BlockNr(last))).unwrap();
        assert_eq!(Word::decode(w), Word::Poison(Poison { generation: 0, block: last, word_in_block: 0 }));
        assert_eq!(dev.read_u64(PmemAddr(g.journal_range().start)).unwrap(), 0);
        let mut sb = [0u8; 64];
        dev.read(PmemAddr(0), &mut sb).unwrap();
        assert_eq!(decode_superblock(&sb, g.size_bytes).unwrap(), g);
    }

    #[test]
    fn inode_round_trip_and_crc_rejection() {
        let img = InodeImage {
            live: true,
            size_bytes: 12345,
            extents: vec![
                Extent { file_block: 0, phys: BlockNr(100), len: 2, state: ExtentState::Written },
                Extent { file_block: 5, phys: BlockNr(200), len: 1, state: ExtentState::Unwritten },
            ],
        };
        let mut b = encode_inode(&img).unwrap();
        assert_eq!(decode_inode(&b, Ino(3)).unwrap(), img);
        b[70] ^= 1;
        assert!(matches!(decode_inode(&b, Ino(3)), Err(FsError::Corrupt { .. })));
    }
}
