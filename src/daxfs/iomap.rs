//! `iomap_begin` for writes and `end_io`: allocation, zeroing and unwritten conversion under the
//! two allocation policies (docs/design.md §4). Each function here is one atomic step.
//!
//! Ordering that keeps old block contents from ever becoming file data after a crash. Zeroes
//! and data are written back with clwb, and the journal's own pre-commit fence (body flushed and
//! fenced, *then* the commit record) orders them before the commit record — one fence, as the
//! kernel orders data before the log with a cache flush:
//! - `zero-before-commit`: zero stores → clwb → commit(BitmapSet + ExtentSet Written).
//! - `unwritten-end-io`: commit(BitmapSet + ExtentSet Unwritten) → zero/data stores → clwb →
//!   `end_io` commit(ExtentSet Written). An unwritten extent reads as zeros, so until the
//!   conversion is durable nothing old is visible.

use super::bugs::Bug;
use super::fs::{AllocPolicy, FsResult, FsState};
use super::types::*;

const SITE_ALLOC: &str = "daxfs::iomap_begin::alloc";
const SITE_CONVERT: &str = "daxfs::iomap_begin::convert";
const SITE_END_IO: &str = "daxfs::end_io";

/// Work an `unwritten-end-io` allocation still owes: after the caller's data stores, `end_io`
/// must fence and convert these blocks.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct EndIo {
    pub ino: Ino,
    pub file_block: u64,
    pub phys: BlockNr,
    pub len: u64,
}

/// Zeroes newly allocated blocks (write-back stores, not flushed). The kernel's IomapFlags::NEW
/// handling. Switches: `no-zero-on-alloc` skips it, `pmd-partial-zero` zeroes only half a PMD.
fn zero_new(st: &mut FsState, b: BlockNr, count: u64) -> FsResult<()> {
    // no-zero-on-alloc: "allocating a block without zeroing it exposes its old contents".
    if st.bug(Bug::NoZeroOnAlloc) {
        return Ok(());
    }
    // pmd-partial-zero: a PMD fault must zero the whole 2 MiB extent it maps.
    let count = if count > 1 && st.bug(Bug::PmdPartialZero) { count / 2 } else { count };
    let zeros = vec![0u8; (count * BLOCK_BYTES) as usize];
    st.dev.store(st.block_addr(b), &zeros, super::fs::SITE_ZERO)?;
    Ok(())
}

/// clwb over `count` blocks from `b`. The next fence — at the latest the journal's pre-commit
/// fence — makes them durable.
fn write_back(st: &mut FsState, b: BlockNr, count: u64, site: &'static str) -> FsResult<()> {
    st.dev.flush(st.block_addr(b), count * BLOCK_BYTES, crate::pmem::FlushKind::Clwb, site)?;
    Ok(())
}

/// Zero, write back, then commit `records` (whose pre-commit fence makes the zeroes durable
/// first) — or, with `commit-before-zero-durable`, commit first and write back after (the
/// allocation reaches the log before the zeroes do).
fn zero_then_commit(
    st: &mut FsState,
    b: BlockNr,
    count: u64,
    records: &[Record],
    site: &'static str,
) -> FsResult<()> {
    zero_new(st, b, count)?;
    if st.bug(Bug::CommitBeforeZeroDurable) {
        st.commit(records, site)?;
        write_back(st, b, count, site)?;
        return st.fence(site);
    }
    write_back(st, b, count, site)?;
    st.commit(records, site)?;
    Ok(())
}

/// Allocates `count` blocks (aligned to `align`) for the hole at `file_block` of `ino`, for a
/// write. Under `zero-before-commit` the blocks are zeroed, durable and committed written on
/// return; under `unwritten-end-io` they are committed unwritten and zeroed (not durable), and
/// the returned [`EndIo`] must be completed after the caller's data stores.
pub fn alloc_for_write(
    st: &mut FsState,
    ino: Ino,
    file_block: u64,
    count: u64,
    align: u64,
) -> FsResult<(BlockNr, Option<EndIo>)> {
    let b = st.store.alloc(&mut st.dev, count, align)?;
    let bitmap = Record::BitmapSet { start: b, len: count };
    match st.opts.policy {
        AllocPolicy::ZeroBeforeCommit => {
            let extent = Extent { file_block, phys: b, len: count, state: ExtentState::Written };
            zero_then_commit(st, b, count, &[bitmap, Record::ExtentSet { ino, extent }], SITE_ALLOC)?;
            Ok((b, None))
        }
        AllocPolicy::UnwrittenEndIo => {
            let extent = Extent { file_block, phys: b, len: count, state: ExtentState::Unwritten };
            st.commit(&[bitmap, Record::ExtentSet { ino, extent }], SITE_ALLOC)?;
            zero_new(st, b, count)?;
            Ok((b, Some(EndIo { ino, file_block, phys: b, len: count })))
        }
    }
}

/// Prepares the unwritten blocks `phys..+len` at `file_block` for a write: zero them, and under
/// `zero-before-commit` convert them at once; under `unwritten-end-io` return the conversion owed.
pub fn convert_for_write(
    st: &mut FsState,
    ino: Ino,
    file_block: u64,
    phys: BlockNr,
    len: u64,
) -> FsResult<Option<EndIo>> {
    match st.opts.policy {
        AllocPolicy::ZeroBeforeCommit => {
            let extent = Extent { file_block, phys, len, state: ExtentState::Written };
            zero_then_commit(st, phys, len, &[Record::ExtentSet { ino, extent }], SITE_CONVERT)?;
            Ok(None)
        }
        AllocPolicy::UnwrittenEndIo => {
            zero_new(st, phys, len)?;
            Ok(Some(EndIo { ino, file_block, phys, len }))
        }
    }
}

/// I/O completion: make the blocks' zeroes and data durable, then commit the conversion.
pub fn end_io(st: &mut FsState, io: EndIo) -> FsResult<()> {
    let extent =
        Extent { file_block: io.file_block, phys: io.phys, len: io.len, state: ExtentState::Written };
    let convert = [Record::ExtentSet { ino: io.ino, extent }];
    // missing-end-io: never converting leaves written data reading as zeros after remount.
    if st.bug(Bug::MissingEndIo) {
        write_back(st, io.phys, io.len, SITE_END_IO)?;
        return st.fence(SITE_END_IO);
    }
    // end-io-before-data-durable: converting before the data is durable exposes old contents after a crash.
    if st.bug(Bug::EndIoBeforeDataDurable) {
        st.commit(&convert, SITE_END_IO)?;
        write_back(st, io.phys, io.len, SITE_END_IO)?;
        return st.fence(SITE_END_IO);
    }
    write_back(st, io.phys, io.len, SITE_END_IO)?;
    st.commit(&convert, SITE_END_IO)?;
    Ok(())
}

/// `iomap_begin(WRITE)` for one block: returns the block backing `file_block`, allocating or
/// converting as the policy says, plus any `end_io` owed and whether the block is new.
pub fn iomap_write_block(
    st: &mut FsState,
    ino: Ino,
    file_block: u64,
) -> FsResult<(BlockNr, Option<EndIo>, bool)> {
    match st.lookup(ino, file_block)? {
        Some((b, ExtentState::Written)) => Ok((b, None, false)),
        Some((b, ExtentState::Unwritten)) => Ok((b, convert_for_write(st, ino, file_block, b, 1)?, true)),
        None => {
            let (b, io) = alloc_for_write(st, ino, file_block, 1, 1)?;
            Ok((b, io, true))
        }
    }
}
