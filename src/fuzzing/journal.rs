//! `journal_replay`: arbitrary bytes in the journal area of a valid image with committed
//! transactions. Replay must never panic, and must apply exactly the transactions an
//! independent decoding of the journal accepts (docs/design.md §4: tid order from the checkpointed
//! tail, every slot crc, the commit's body length and body crc), no more and no fewer.

use super::image::{BaseImage, mount_checked};
use super::{Failure, FuzzConfig};
use crate::daxfs::layout::{Geometry, decode_state, read_checkpoint, read_home};
use crate::daxfs::{BlockNr, Extent, FsError, Ino, Metadata, Record};
use crate::pmem::{Device, PmemAddr};

/// Journal words patched per input (further input bytes are ignored).
pub const PATCHES_MAX: usize = 64;
/// Body slots a commit's body crc is re-sealed over, at most.
const RESEAL_BODY_SLOTS_MAX: u64 = 64;

const SLOT: usize = 64;
const MAGIC: u32 = u32::from_le_bytes(*b"JRNL");
const KIND_COMMIT: u8 = 0x80;
const CRC_AT: usize = 60;
const SITE_PATCH: &str = "crashsim::fuzzing::journal_replay";

/// Input flags (first byte).
const RESEAL_SLOTS: u8 = 1;
const RESEAL_COMMITS: u8 = 2;
const BREAK_ALL_CRCS: u8 = 4;

/// The transactions an independent decoding of the journal accepts, in replay order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JournalView {
    /// Each committed transaction as (tid, its body records in journal order), in replay
    /// order from the checkpointed tail.
    pub transactions: Vec<(u64, Vec<Record>)>,
}

fn u32_at(s: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(s: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"))
}

fn slot_crc(s: &[u8]) -> u32 {
    let mut sealed = [0u8; SLOT];
    sealed.copy_from_slice(s);
    sealed[CRC_AT..].fill(0);
    crc32fast::hash(&sealed)
}

enum Decoded {
    Body(u64, Record),
    Commit(u64, u64, u64),
}

/// One slot as the format defines it; `None` for anything that must stop replay.
fn decode(s: &[u8]) -> Option<Decoded> {
    if u32_at(s, 0) != MAGIC || u32_at(s, CRC_AT) != slot_crc(s) {
        return None;
    }
    let (tid, ino, a, b, c, d) =
        (u64_at(s, 8), Ino(u32_at(s, 16)), u64_at(s, 24), u64_at(s, 32), u64_at(s, 40), u64_at(s, 48));
    let record = match s[4] {
        KIND_COMMIT if b <= u64::from(u32::MAX) => return Some(Decoded::Commit(tid, a, b)),
        1 => Record::BitmapSet { start: BlockNr(a), len: b },
        2 => Record::BitmapClear { start: BlockNr(a), len: b },
        3 => Record::ExtentSet {
            ino,
            extent: Extent { file_block: a, phys: BlockNr(b), len: c, state: decode_state(d)? },
        },
        4 => Record::ExtentRemove { ino, file_block: a, len: b },
        5 => Record::InodeSize { ino, size_bytes: a },
        6 => Record::InodeCreate { ino },
        7 => Record::InodeDelete { ino },
        _ => return None,
    };
    Some(Decoded::Body(tid, record))
}

impl JournalView {
    /// Decodes the journal of `dev` from its checkpoint. The area is read whole once: its size
    /// comes from the geometry, which is bounded by `JOURNAL_BLOCKS_MAX`.
    pub fn read(dev: &Device, geom: &Geometry) -> Result<JournalView, FsError> {
        let ckpt = read_checkpoint(dev)?;
        let range = geom.journal_range();
        let mut area = vec![0u8; (range.end - range.start) as usize];
        dev.read(PmemAddr(range.start), &mut area)?;
        Ok(JournalView::decode(&area, ckpt.tail, ckpt.next_tid))
    }

    /// Walks `area` (whole slots, circular) from absolute position `tail` expecting `tid`.
    pub fn decode(area: &[u8], tail: u64, tid: u64) -> JournalView {
        let slots: Vec<&[u8]> = area.chunks_exact(SLOT).collect();
        let n = slots.len() as u64;
        let mut view = JournalView::default();
        let (mut pos, mut tid) = (tail, tid);
        let mut body: Vec<(Record, &[u8])> = Vec::new();
        while pos < tail + n {
            let raw = slots[(pos % n) as usize];
            match decode(raw) {
                Some(Decoded::Body(t, r)) if t == tid => body.push((r, raw)),
                Some(Decoded::Commit(t, len, crc)) if t == tid => {
                    let bytes: Vec<u8> = body.iter().flat_map(|(_, s)| s.iter().copied()).collect();
                    if len != body.len() as u64 || crc != u64::from(crc32fast::hash(&bytes)) {
                        break;
                    }
                    view.transactions.push((tid, body.drain(..).map(|(r, _)| r).collect()));
                    tid = tid.wrapping_add(1);
                }
                _ => break,
            }
            pos += 1;
        }
        view
    }

    /// The metadata replay must produce from `dev`'s home copy, or `Err` if a record that
    /// verifies does not apply (replay must then fail the mount).
    pub fn expected_meta(&self, dev: &Device, geom: &Geometry) -> Result<Result<Metadata, FsError>, FsError> {
        let ckpt = read_checkpoint(dev)?;
        let mut meta = Metadata::from_home(geom, read_home(dev, geom, ckpt.home_copy)?)?;
        for (_, records) in &self.transactions {
            for r in records {
                if let Err(e) = meta.apply(r) {
                    return Ok(Err(e));
                }
            }
        }
        Ok(Ok(meta))
    }
}

/// Applies the input to the base image's journal: flags byte, then 10-byte patches (word index
/// in the journal area, u64 value), then the flags' re-sealing and crc breaking.
fn patched_device(bytes: &[u8]) -> Result<Device, FsError> {
    let base = BaseImage::shared();
    let range = base.geom.journal_range();
    let mut area = vec![0u8; (range.end - range.start) as usize];
    base.device().read(PmemAddr(range.start), &mut area)?;
    let (flags, patches) = bytes.split_first().map_or((0, &[][..]), |(f, p)| (*f, p));
    let mut touched = Vec::new();
    for p in patches.chunks_exact(10).take(PATCHES_MAX) {
        let word = usize::from(u16::from_le_bytes([p[0], p[1]])) % (area.len() / 8);
        area[word * 8..word * 8 + 8].copy_from_slice(&p[2..]);
        touched.push(word * 8 / SLOT);
    }
    touched.sort_unstable();
    touched.dedup();
    if flags & RESEAL_SLOTS != 0 {
        reseal(&mut area, &touched, flags & RESEAL_COMMITS != 0);
    }
    if flags & BREAK_ALL_CRCS != 0 {
        for slot in area.chunks_exact_mut(SLOT) {
            slot[CRC_AT] ^= 0xff;
        }
    }
    let mut dev = base.device();
    dev.store(PmemAddr(range.start), &area, SITE_PATCH)?;
    Ok(dev)
}

/// Recomputes the crc of every touched slot; with `commits`, also the body crc of touched
/// commit records over the body slots before them (then their slot crc again).
fn reseal(area: &mut [u8], touched: &[usize], commits: bool) {
    let n = area.len() / SLOT;
    for &i in touched {
        let s = &mut area[i * SLOT..(i + 1) * SLOT];
        let crc = slot_crc(s);
        s[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
    }
    if !commits {
        return;
    }
    for &i in touched {
        let at = i * SLOT;
        if u32_at(area, at) != MAGIC || area[at + 4] != KIND_COMMIT {
            continue;
        }
        let len = u64_at(area, at + 24).min(RESEAL_BODY_SLOTS_MAX) as usize % n;
        let body: Vec<u8> = (0..len)
            .flat_map(|k| {
                let j = (i + n - len + k) % n;
                area[j * SLOT..(j + 1) * SLOT].to_vec()
            })
            .collect();
        area[at + 24..at + 32].copy_from_slice(&(len as u64).to_le_bytes());
        area[at + 32..at + 40].copy_from_slice(&u64::from(crc32fast::hash(&body)).to_le_bytes());
        let crc = slot_crc(&area[at..at + SLOT]);
        area[at + CRC_AT..at + SLOT].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Replays the patched journal and compares the mount with the independent decoding.
pub fn journal_replay(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    let fail = |summary: String| Failure { summary, repro: cfg.repro("journal_replay") };
    let geom = BaseImage::shared().geom;
    let mut dev = patched_device(bytes).map_err(|e| fail(format!("harness: {e}")))?;
    let view = JournalView::read(&dev, &geom).map_err(|e| fail(format!("harness: {e}")))?;
    let expected = view.expected_meta(&dev, &geom).map_err(|e| fail(format!("harness: {e}")))?;
    let mounted = mount_checked(&mut dev, cfg, "journal_replay")?;
    match (expected, mounted) {
        (Err(_), None) => Ok(()),
        (Err(e), Some(_)) => {
            Err(fail(format!("replay accepted a journal with a record that does not apply: {e}")))
        }
        (Ok(_), None) => Err(fail(format!(
            "mount failed on a journal whose {} transactions all verify and apply",
            view.transactions.len()
        ))),
        (Ok(meta), Some((store, info))) => {
            if info.replayed != view.transactions.len() {
                return Err(fail(format!(
                    "replay applied {} transactions; the journal holds {} that verify",
                    info.replayed,
                    view.transactions.len()
                )));
            }
            if *store.meta() != meta {
                return Err(fail(
                    "replayed metadata differs from the verified records applied to home".into(),
                ));
            }
            Ok(())
        }
    }
}
