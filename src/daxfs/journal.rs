//! The circular redo journal (docs/design.md §4): 64-byte slots, one cache line each.
//!
//! A transaction with tid T is its body records (each carrying T and its own crc) in consecutive
//! slots, then a commit record (T, body length, crc of the body slots). The commit record is
//! stored only after the body is flushed and fenced, so a durable commit implies a durable body.
//! Replay (`ReplayPass::Scan`, then `ReplayPass::Replay`) accepts transactions in tid order from
//! the checkpointed tail and stops quietly at the first one that does not verify: a torn tail is
//! normal after a crash.

use super::layout::{
    Checkpoint, Geometry, SLOT_BYTES, crc_with_hole, decode_state, encode_state, get_u32, get_u64, put_u32,
    put_u64,
};
use super::types::{BLOCK_BYTES, BlockNr, Extent, FsError, Ino, Record, Tid};
use crate::pmem::{Device, FlushKind, PmemAddr};

/// Journal slot magic.
pub const SLOT_MAGIC: u32 = u32::from_le_bytes(*b"JRNL");
/// Slot kind of a commit record (body record kinds are 1..=7).
pub const KIND_COMMIT: u8 = 0x80;
const SLOT: usize = SLOT_BYTES as usize;
const CRC_OFF: usize = 60;

const SITE_FORCE: &str = "daxfs::journal::force";

/// The two passes of recovery, in the kernel's words (jbd2 `PASS_SCAN`, `PASS_REPLAY`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ReplayPass {
    /// Find the committed transactions after the tail, verifying everything, changing nothing.
    Scan,
    /// Apply them to the metadata loaded from home.
    Replay,
}

/// One decoded journal slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Slot {
    Body { tid: Tid, record: Record },
    Commit { tid: Tid, body_len: u64, body_crc: u32 },
}

// Slot layout: 0 magic u32 | 4 kind u8 | 8 tid u64 | 16 ino u32 | 24 a | 32 b | 40 c | 48 d (u64)
// | 60 crc u32 over the slot with the crc field zero.

fn fields(r: &Record) -> (u8, u32, [u64; 4]) {
    match *r {
        Record::BitmapSet { start, len } => (1, 0, [start.0, len, 0, 0]),
        Record::BitmapClear { start, len } => (2, 0, [start.0, len, 0, 0]),
        Record::ExtentSet { ino, extent: e } => {
            (3, ino.0, [e.file_block, e.phys.0, e.len, encode_state(e.state)])
        }
        Record::ExtentRemove { ino, file_block, len } => (4, ino.0, [file_block, len, 0, 0]),
        Record::InodeSize { ino, size_bytes } => (5, ino.0, [size_bytes, 0, 0, 0]),
        Record::InodeCreate { ino } => (6, ino.0, [0; 4]),
        Record::InodeDelete { ino } => (7, ino.0, [0; 4]),
    }
}

fn encode_raw(kind: u8, tid: Tid, ino: u32, v: [u64; 4]) -> [u8; SLOT] {
    let mut b = [0u8; SLOT];
    put_u32(&mut b, 0, SLOT_MAGIC);
    b[4] = kind;
    put_u64(&mut b, 8, tid.0);
    put_u32(&mut b, 16, ino);
    for (i, x) in v.iter().enumerate() {
        put_u64(&mut b, 24 + 8 * i, *x);
    }
    let crc = crc_with_hole(&b, CRC_OFF);
    put_u32(&mut b, CRC_OFF, crc);
    b
}

pub fn encode_record(tid: Tid, r: &Record) -> [u8; SLOT] {
    let (kind, ino, v) = fields(r);
    encode_raw(kind, tid, ino, v)
}

pub fn encode_commit(tid: Tid, body_len: u64, body_crc: u32) -> [u8; SLOT] {
    encode_raw(KIND_COMMIT, tid, 0, [body_len, u64::from(body_crc), 0, 0])
}

/// Decodes a slot. `verify_crc == false` is `Bug::ReplaySkipsCrc`; structure is still checked.
pub fn decode_slot(b: &[u8; SLOT], verify_crc: bool) -> Option<Slot> {
    if get_u32(b, 0) != SLOT_MAGIC || (verify_crc && get_u32(b, CRC_OFF) != crc_with_hole(b, CRC_OFF)) {
        return None;
    }
    let tid = Tid(get_u64(b, 8));
    let ino = Ino(get_u32(b, 16));
    let v = |i: usize| get_u64(b, 24 + 8 * i);
    let record = match b[4] {
        KIND_COMMIT => {
            let body_crc = u32::try_from(v(1)).ok()?;
            return Some(Slot::Commit { tid, body_len: v(0), body_crc });
        }
        1 => Record::BitmapSet { start: BlockNr(v(0)), len: v(1) },
        2 => Record::BitmapClear { start: BlockNr(v(0)), len: v(1) },
        3 => Record::ExtentSet {
            ino,
            extent: Extent { file_block: v(0), phys: BlockNr(v(1)), len: v(2), state: decode_state(v(3))? },
        },
        4 => Record::ExtentRemove { ino, file_block: v(0), len: v(1) },
        5 => Record::InodeSize { ino, size_bytes: v(0) },
        6 => Record::InodeCreate { ino },
        7 => Record::InodeDelete { ino },
        _ => return None,
    };
    Some(Slot::Body { tid, record })
}

/// Address of absolute slot position `pos`.
pub fn slot_addr(geom: &Geometry, pos: u64) -> PmemAddr {
    PmemAddr(geom.journal_start().0 * BLOCK_BYTES + (pos % geom.journal_slots()) * SLOT_BYTES)
}

fn read_slot(dev: &Device, geom: &Geometry, pos: u64) -> Result<[u8; SLOT], FsError> {
    let mut b = [0u8; SLOT];
    dev.read(slot_addr(geom, pos), &mut b)?;
    Ok(b)
}

/// Ordering of a transaction write: the fixed one, or `Bug::CommitBeforeLogFenced`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum CommitOrder {
    /// Body stored, flushed, fenced; then the commit record is stored.
    BodyFencedFirst,
    /// Body and commit record stored, then the body flushed and fenced (the bug).
    CommitBeforeLogFenced,
}

/// Writes transaction `tid` at absolute position `pos`. Returns the commit record's position.
/// The commit record is stored but not flushed (async commit; see [`flush_commits`]).
pub fn write_transaction(
    dev: &mut Device,
    geom: &Geometry,
    pos: u64,
    tid: Tid,
    records: &[Record],
    order: CommitOrder,
    site: &'static str,
) -> Result<u64, FsError> {
    let body: Vec<u8> = records.iter().flat_map(|r| encode_record(tid, r)).collect();
    let commit_pos = pos + records.len() as u64;
    let commit = encode_commit(tid, records.len() as u64, crc32fast::hash(&body));
    let runs = slot_runs(geom, pos, records.len() as u64);
    for &(at, first, n) in &runs {
        dev.store(at, &body[first * SLOT..(first + n) * SLOT], site)?;
    }
    if order == CommitOrder::CommitBeforeLogFenced {
        // Bug::CommitBeforeLogFenced (docs/design.md §4, §7): the commit record
        // is stored while the body is still only in the cache, so it may persist first.
        dev.store(slot_addr(geom, commit_pos), &commit, site)?;
    }
    for &(at, _, n) in &runs {
        dev.flush(at, n as u64 * SLOT_BYTES, FlushKind::Clwb, site)?;
    }
    if !runs.is_empty() {
        dev.fence(site)?;
    }
    if order == CommitOrder::BodyFencedFirst {
        dev.store(slot_addr(geom, commit_pos), &commit, site)?;
    }
    Ok(commit_pos)
}

/// Splits `n` slots from `pos` into runs contiguous on media: (address, first index, count).
fn slot_runs(geom: &Geometry, pos: u64, n: u64) -> Vec<(PmemAddr, usize, usize)> {
    let slots = geom.journal_slots();
    let mut runs = Vec::new();
    let mut done = 0u64;
    while done < n {
        let at = (pos + done) % slots;
        let take = (slots - at).min(n - done);
        runs.push((slot_addr(geom, pos + done), done as usize, take as usize));
        done += take;
    }
    runs
}

/// Flushes the commit records at `positions` and fences: those transactions become durable.
pub fn flush_commits(dev: &mut Device, geom: &Geometry, positions: &[u64]) -> Result<(), FsError> {
    for &pos in positions {
        dev.flush(slot_addr(geom, pos), SLOT_BYTES, FlushKind::Clwb, SITE_FORCE)?;
    }
    dev.fence(SITE_FORCE)?;
    Ok(())
}

/// A committed transaction found by the scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transaction {
    pub tid: Tid,
    pub records: Vec<Record>,
}

/// What `ReplayPass::Scan` found after the tail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScanResult {
    pub transactions: Vec<Transaction>,
    /// Absolute position after the last accepted commit record (the new head).
    pub end: u64,
    /// Tid the next transaction will get.
    pub next_tid: Tid,
    /// The slot at `end` carries the expected tid: a torn transaction is there. Its tid must
    /// not be reused, or its leftovers could pair with a later transaction's slots.
    pub torn: bool,
}

/// `ReplayPass::Scan`: reads committed transactions from the checkpoint's tail, read-only.
/// Bounded by the journal size; never panics on any journal content.
pub fn scan(
    dev: &Device,
    geom: &Geometry,
    ckpt: &Checkpoint,
    verify_crc: bool,
) -> Result<ScanResult, FsError> {
    let slots = geom.journal_slots();
    let mut pos = ckpt.tail;
    let mut tid = Tid(ckpt.next_tid);
    let mut transactions = Vec::new();
    while let Some((txn, next)) = scan_one(dev, geom, pos, ckpt.tail + slots, tid, verify_crc)? {
        transactions.push(txn);
        pos = next;
        tid = Tid(tid.0.wrapping_add(1));
    }
    let at_end = read_slot(dev, geom, pos)?;
    let torn = pos < ckpt.tail + slots && get_u32(&at_end, 0) == SLOT_MAGIC && get_u64(&at_end, 8) == tid.0;
    Ok(ScanResult { transactions, end: pos, next_tid: tid, torn })
}

/// Reads the transaction with `tid` at `pos` (not past `limit`); `None` if it does not verify.
fn scan_one(
    dev: &Device,
    geom: &Geometry,
    pos: u64,
    limit: u64,
    tid: Tid,
    verify_crc: bool,
) -> Result<Option<(Transaction, u64)>, FsError> {
    let mut records = Vec::new();
    let mut body = crc32fast::Hasher::new();
    let mut p = pos;
    while p < limit {
        let raw = read_slot(dev, geom, p)?;
        match decode_slot(&raw, verify_crc) {
            Some(Slot::Body { tid: t, record }) if t == tid => {
                body.update(&raw);
                records.push(record);
            }
            Some(Slot::Commit { tid: t, body_len, body_crc }) if t == tid => {
                let len_ok = body_len == records.len() as u64;
                // Bug::ReplaySkipsCrc (`replay-skips-crc`, docs/design.md §7) also skips the body crc.
                let crc_ok = !verify_crc || body_crc == body.finalize();
                return Ok((len_ok && crc_ok).then_some((Transaction { tid, records }, p + 1)));
            }
            _ => return Ok(None),
        }
        p += 1;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daxfs::layout::mkfs;
    use crate::daxfs::types::ExtentState;

    fn sample_records() -> Vec<Record> {
        vec![
            Record::BitmapSet { start: BlockNr(64), len: 3 },
            Record::BitmapClear { start: BlockNr(70), len: 1 },
            Record::ExtentSet {
                ino: Ino(2),
                extent: Extent { file_block: 7, phys: BlockNr(64), len: 3, state: ExtentState::Unwritten },
            },
            Record::ExtentRemove { ino: Ino(2), file_block: 1, len: 2 },
            Record::InodeSize { ino: Ino(2), size_bytes: 40960 },
            Record::InodeCreate { ino: Ino(15) },
            Record::InodeDelete { ino: Ino(0) },
        ]
    }

    #[test]
    fn record_round_trip_and_crc_rejection() {
        for r in sample_records() {
            let mut b = encode_record(Tid(9), &r);
            assert_eq!(decode_slot(&b, true), Some(Slot::Body { tid: Tid(9), record: r }));
            for off in [5, 9, 17, 30, 50, 61] {
                b[off] ^= 0x10;
                assert_eq!(decode_slot(&b, true), None, "flip at {off} of {r:?}");
                b[off] ^= 0x10;
            }
        }
        let c = encode_commit(Tid(3), 7, 0xdead_beef);
        assert_eq!(
            decode_slot(&c, true),
            Some(Slot::Commit { tid: Tid(3), body_len: 7, body_crc: 0xdead_beef })
        );
    }

    #[test]
    fn scan_stops_quietly_at_a_torn_tail() {
        let g = Geometry::new(4 << 20).unwrap();
        let mut dev = mkfs(&g).unwrap();
        let ckpt = Checkpoint { seq: 0, tail: 0, next_tid: 1, home_copy: 0 };
        let recs = sample_records();
        let c1 = write_transaction(&mut dev, &g, 0, Tid(1), &recs[..2], CommitOrder::BodyFencedFirst, "test")
            .unwrap();
        let c2 =
            write_transaction(&mut dev, &g, c1 + 1, Tid(2), &recs[2..], CommitOrder::BodyFencedFirst, "test")
                .unwrap();
        let full = scan(&dev, &g, &ckpt, true).unwrap();
        assert_eq!(full.transactions.len(), 2);
        assert_eq!((full.end, full.next_tid, full.torn), (c2 + 1, Tid(3), false));

        // Commit record missing.
        let mut d = Device::with_backing(std::sync::Arc::new(dev.image().clone()));
        d.store(slot_addr(&g, c2), &[0u8; SLOT], "test").unwrap();
        let s = scan(&d, &g, &ckpt, true).unwrap();
        assert_eq!((s.transactions.len(), s.end, s.next_tid, s.torn), (1, c1 + 1, Tid(2), true));

        // Body crc bad: a body slot of tid 2 replaced by a valid record of tid 2 with other content.
        let mut d = Device::with_backing(std::sync::Arc::new(dev.image().clone()));
        d.store(slot_addr(&g, c1 + 1), &encode_record(Tid(2), &recs[0]), "test").unwrap();
        assert_eq!(scan(&d, &g, &ckpt, true).unwrap().transactions.len(), 1);

        // Tid gap: the checkpoint expects tid 2 at the tail.
        let gap = Checkpoint { next_tid: 2, ..ckpt };
        let s = scan(&dev, &g, &gap, true).unwrap();
        assert!(s.transactions.is_empty());
    }
}
