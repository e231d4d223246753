//! Types shared by every daxfs layer: numbers with units, extent states, journal records,
//! errors. Layers: `layout` (on-media format), `journal`, `balloc`, `meta` (in-memory metadata
//! and its idempotent record application), `fsck`, `store` (the metadata store façade the
//! VFS layer uses), and above them the DAX runtime (`dax`, `ops`).

use crate::pmem::PmemError;

/// File-system block size.
pub const BLOCK_BYTES: u64 = 4096;
/// Faithful PMD size in blocks (2 MiB). Tests may use a smaller PMD geometry.
pub const PMD_BLOCKS_DEFAULT: u64 = 512;
/// Most inodes (files) a daxfs image holds.
pub const INODES_MAX: u32 = 16;
/// Most extents one inode holds (holes are not stored).
pub const EXTENTS_PER_INODE_MAX: usize = 64;

/// A block number on the device (block 0 is the superblock).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct BlockNr(pub u64);

/// An inode number, `0..INODES_MAX`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Ino(pub u32);

/// A journal transaction id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Tid(pub u64);

/// State of a mapped extent. Holes are the absence of an extent.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ExtentState {
    /// Allocated, contents undefined on media: reads must return zeros.
    Unwritten,
    /// Allocated and holding file data.
    Written,
}

/// `len` blocks of file starting at file block `file_block`, at `phys`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Extent {
    pub file_block: u64,
    pub phys: BlockNr,
    pub len: u64,
    pub state: ExtentState,
}

/// A journal body record. Every record states the new value, so replaying it twice is the
/// same as once (replay idempotence, docs/design.md §4).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Record {
    /// Mark `len` blocks from `start` allocated.
    BitmapSet {
        start: BlockNr,
        len: u64,
    },
    /// Mark `len` blocks from `start` free.
    BitmapClear {
        start: BlockNr,
        len: u64,
    },
    /// Map file blocks `extent.file_block..+len` of `ino` to `extent` (replacing whatever
    /// mapped that range).
    ExtentSet {
        ino: Ino,
        extent: Extent,
    },
    /// Unmap file blocks `file_block..+len` of `ino` (they become a hole).
    ExtentRemove {
        ino: Ino,
        file_block: u64,
        len: u64,
    },
    InodeSize {
        ino: Ino,
        size_bytes: u64,
    },
    InodeCreate {
        ino: Ino,
    },
    InodeDelete {
        ino: Ino,
    },
}

/// Errors daxfs returns to its caller. Media corruption found at mount is a typed error,
/// never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FsError {
    #[error("no space left on device")]
    NoSpace,
    #[error("file too large or too fragmented: {0}")]
    TooBig(&'static str),
    #[error("no such file: inode {0}")]
    NoEntry(u32),
    #[error("no free inode")]
    NoInodes,
    #[error("invalid argument: {0}")]
    Invalid(&'static str),
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    #[error("device: {0}")]
    Device(#[from] PmemError),
}
