//! The workload language and its seeded generator (docs/design.md §5, §11).
//!
//! A [`Workload`] is pure data: per-thread operation lists, a schedule and a few options. One
//! hand-written `arbitrary::Arbitrary` implementation is the generator: fuzz inputs
//! ([`Workload::from_bytes`]), sweep seeds ([`Workload::from_seed`]: seed → PRNG bytes →
//! `Unstructured`) and replayed artifacts all decode through the same biased path, so a sweep
//! failure is a fuzz input and vice versa. Decoding never fails and always yields a workload that
//! passes [`Workload::validate`]; exhausted input reads as zeros, and zero always selects the
//! simplest choice, so short inputs make small workloads.
//!
//! # Operations
//! Offsets and lengths are bytes. Data ranges (write, read, store, load, persist, msync, DMA)
//! are 8-byte aligned so every word is a decodable tag; page ranges (mmap, fallocate, punch,
//! pin) are 4096-byte aligned. Store/load/persist/msync/pin offsets are relative to the mapping,
//! DMA offsets relative to the pin. Slots name files, mappings (one address space shared by all
//! threads) and pins. Runtime misuse (an unmapped slot, a store past the mapping, a fault past
//! EOF) is not a validation error: the interpreter reports it the way the kernel would
//! (EBADF, SIGSEGV, SIGBUS) and goes on.
//!
//! # Schedule semantics
//! At each scheduling step the interpreter lists the runnable threads in thread-index order and
//! runs one atomic step of the `(schedule[i] as usize) % runnable.len()`-th of them, consuming
//! one entry per step. Once the schedule is exhausted it always picks the lowest-index runnable
//! thread. So the schedule is data: same workload, same trace.
//!
//! # The generated mix
//! No mode is chosen for any one bug; the mix makes every catalogue window common at once:
//! - *Prelude*: thread 0 starts with `Create` of the 1-3 files used (slots 0..3, so threads
//!   collide) and usually a `Truncate` that extends each to a sparse hot region (4 MiB, 2 MiB,
//!   2 MiB + 8 KiB or 64 KiB), so faults land inside EOF and on holes. The schedule starts with
//!   a run of thread 0 long enough for the prelude.
//! - *Focus*: bursts of operations share a focus (file, block) that drifts. Blocks come from a
//!   hot set relative to PMD-aligned regions (0, 1, 2, 7, 8, 511, 512, 513, sometimes shifted by
//!   a PMD, sometimes random); words inside a block from 0, 8, 56, 64, 2048, 4088 or random.
//!   Lengths are mostly 8 B..2 blocks, sometimes a whole aligned PMD (2 MiB).
//! - *Bursts*: map access (mmap of the whole hot region or a few pages, `map_sync` about a
//!   third of the time, then store/load/persist/msync on that mapping), file I/O (write/read,
//!   then often fsync), preallocation (fallocate, then stores or writes into the range), shrink
//!   (punch hole, or truncate through the focus and often back up), DMA (write pin, 1-2 DMA
//!   writes, unpin, then often a load/read or msync of the range), durability (fsync, msync,
//!   persist, sync) and rare churn (munmap, unlink + re-create).
//! - *Races*: with 2+ threads, half of the bursts get a racer: another burst on the same focus
//!   range in another thread at about the same position (threads are kept the same length), so
//!   faults race punches, truncates race pins, reads race allocating writes.
//! - *Threads*: 1-4, two most often. Each thread owns map slots `2t, 2t+1` (it maps and unmaps
//!   only those, but may use another thread's) and pin slot `t`.
//! - *Schedules*: mostly round-robin segments (a switch at every step), with runs of one
//!   thread and random picks mixed in.
//!
//! `tests/workload.rs` measures the mix over 2000 seeds and pins a floor under each window's
//! share (two threads on one block, pin vs truncate/punch, fallocate then store, MAP_SYNC
//! persist, aligned 2 MiB ranges, faults vs shrinks, durability after writes).
//!
//! Architecture Invariant: the generator never leaves a pin held at the end of a thread and a
//! thread never truncates, punches or faults while it holds a pin (only DMA writes happen between
//! pin and unpin), so a correct file system never deadlocks on a generated workload.

mod compact;
mod generator;
mod mutate;
mod op;
mod pick;
mod schedule;

pub use compact::{COMPACT_BYTES_MAX, COMPACT_MAGIC, COMPACT_VERSION};
pub use op::{FileSlot, MapSlot, Op, PinSlot, Workload, WorkloadOptions};

use crate::daxfs::tag::{DataTag, WORD_OFF_BITS};
use crate::daxfs::{BLOCK_BYTES, INODES_MAX, PMD_BLOCKS_DEFAULT};

/// Most operations in a workload, summed over all threads.
pub const OPS_MAX: usize = 64;
/// Most threads in a workload.
pub const THREADS_MAX: usize = 4;
/// File slots `0..FILES_MAX`.
pub const FILES_MAX: u8 = 16;
/// Mapping slots `0..MAPS_MAX`, shared by all threads like one address space.
pub const MAPS_MAX: u8 = 8;
/// DMA pin slots `0..PINS_MAX`.
pub const PINS_MAX: u8 = 4;
/// Largest file offset (exclusive) any operation may touch.
pub const FILE_BYTES_MAX: u64 = 8 << 20;
/// Longest schedule.
pub const SCHEDULE_MAX: usize = 512;
/// Alignment of data ranges: the failure-atomic word.
pub const WORD_BYTES: u64 = 8;
/// Alignment of page ranges (mmap, fallocate, punch, pin).
pub const PAGE_BYTES: u64 = BLOCK_BYTES;
/// A PMD mapping, in bytes (the faithful 2 MiB geometry).
pub const PMD_BYTES: u64 = PMD_BLOCKS_DEFAULT * BLOCK_BYTES;
/// Bytes of PRNG output a seed expands to; more than the generator ever consumes.
pub const SEED_BYTES: usize = 4096;

const _: () = assert!(FILE_BYTES_MAX / WORD_BYTES <= 1 << WORD_OFF_BITS, "every word offset fits a tag");
const _: () = assert!(FILES_MAX as u32 <= INODES_MAX, "every file slot can be a live inode");
const _: () = assert!(MAPS_MAX as usize >= 2 * THREADS_MAX, "each thread owns two map slots");
const _: () = assert!(PINS_MAX as usize >= THREADS_MAX, "each thread owns a pin slot");
const _: () = assert!(FILE_BYTES_MAX % PMD_BYTES == 0);

/// Bad workload input: a decoded artifact or JSON manifest that breaks a bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkloadError {
    #[error("workload bytes do not decode: {0}")]
    Decode(String),
    #[error("{count} threads: a workload has 1..={max} threads", max = THREADS_MAX)]
    ThreadCount { count: usize },
    #[error("{count} operations: a workload has at most {max}", max = OPS_MAX)]
    TooManyOps { count: usize },
    #[error("schedule of {len} entries: at most {max}", max = SCHEDULE_MAX)]
    ScheduleTooLong { len: usize },
    #[error("thread {thread} op {index}: {kind} slot {slot} out of range (max {max})")]
    SlotOutOfRange { thread: usize, index: usize, kind: &'static str, slot: u8, max: u8 },
    #[error("thread {thread} op {index}: {what} {value} is not a multiple of {align}")]
    Misaligned { thread: usize, index: usize, what: &'static str, value: u64, align: u64 },
    #[error("thread {thread} op {index}: empty range")]
    EmptyRange { thread: usize, index: usize },
    #[error("thread {thread} op {index}: range ends past {max} bytes", max = FILE_BYTES_MAX)]
    OutOfRange { thread: usize, index: usize },
    #[error("thread {thread} op {index}: only DMA writes and unpins may run while the thread holds a pin")]
    WhilePinned { thread: usize, index: usize },
    #[error("thread {thread} ends holding pin slot {pin}")]
    PinLeftHeld { thread: usize, pin: u8 },
    #[error("thread {thread} op {index}: pins slot {pin}, but a thread pins only its own slot (its index)")]
    ForeignPin { thread: usize, index: usize, pin: u8 },
}

/// The data word the harness writes at `word_off` (in words) of file incarnation `file_id`,
/// write `version`. A thin wrapper: the encoding lives in [`crate::daxfs::tag`].
pub fn data_word(file_id: u32, word_off: u64, version: u32) -> u64 {
    DataTag { file_id, word_off, version }.encode()
}
