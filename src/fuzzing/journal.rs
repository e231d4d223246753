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
                    let mut bytes = crc32fast::Hasher::new();
                    body.iter().for_each(|(_, s)| bytes.update(s));
                    if len != body.len() as u64 || crc != u64::from(bytes.finalize()) {
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

/// The base image's journal area with the input applied (see [`patch_area`]), and the slots
/// the input may have changed, ascending (`None`: every slot).
fn patched_area(base: &BaseImage, bytes: &[u8]) -> (Vec<u8>, Option<Vec<usize>>) {
    let range = base.geom.journal_range();
    let mut area = base.bytes()[range.start as usize..range.end as usize].to_vec();
    let changed = patch_area(&mut area, bytes);
    (area, changed)
}

/// Applies the input to a copy of the journal area: flags byte, then 10-byte patches (word
/// index in the journal area, u64 value), then the flags' re-sealing and crc breaking. Returns
/// the slots it wrote, ascending, or `None` when it wrote every slot; no other byte changes.
fn patch_area(area: &mut [u8], bytes: &[u8]) -> Option<Vec<usize>> {
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
        // Writes only the touched slots.
        reseal(area, &touched, flags & RESEAL_COMMITS != 0);
    }
    if flags & BREAK_ALL_CRCS != 0 {
        for slot in area.chunks_exact_mut(SLOT) {
            slot[CRC_AT] ^= 0xff;
        }
        return None;
    }
    Some(touched)
}

/// A device holding `base` with the input applied to its journal. Only the slots the input
/// wrote are stored (a run of adjacent ones at once): the device holds the same bytes as if
/// the whole area had been stored, without copying the unchanged rest of it.
fn patched_device(base: &BaseImage, bytes: &[u8]) -> Result<Device, FsError> {
    let (area, changed) = patched_area(base, bytes);
    let start = base.geom.journal_range().start;
    let mut dev = base.device();
    let Some(changed) = changed else {
        dev.store(PmemAddr(start), &area, SITE_PATCH)?;
        return Ok(dev);
    };
    let mut rest = &changed[..];
    while let Some(&first) = rest.first() {
        let run = rest.iter().enumerate().take_while(|&(k, &slot)| slot == first + k).count();
        let bytes = &area[first * SLOT..(first + run) * SLOT];
        dev.store(PmemAddr(start + (first * SLOT) as u64), bytes, SITE_PATCH)?;
        rest = &rest[run..];
    }
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
        let mut body = crc32fast::Hasher::new();
        for k in 0..len {
            let j = (i + n - len + k) % n;
            body.update(&area[j * SLOT..(j + 1) * SLOT]);
        }
        area[at + 24..at + 32].copy_from_slice(&(len as u64).to_le_bytes());
        area[at + 32..at + 40].copy_from_slice(&u64::from(body.finalize()).to_le_bytes());
        let crc = slot_crc(&area[at..at + SLOT]);
        area[at + CRC_AT..at + SLOT].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Replays the patched journal and compares the mount with the independent decoding.
pub fn journal_replay(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    let fail = |summary: String| Failure { summary, repro: cfg.repro("journal_replay") };
    let base = BaseImage::shared();
    let geom = base.geom;
    let mut dev = patched_device(base, bytes).map_err(|e| fail(format!("harness: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::super::image::tests::{inputs, media, mount_outcome};
    use super::*;
    use crate::daxfs::{Bug, BugSet};

    /// The plain path: the journal area read through the device of the layered base image,
    /// patched, and stored whole.
    fn patched_device_whole(base: &BaseImage, bytes: &[u8]) -> Device {
        let range = base.geom.journal_range();
        let mut area = vec![0u8; (range.end - range.start) as usize];
        base.device().read(PmemAddr(range.start), &mut area).unwrap();
        patch_area(&mut area, bytes);
        let mut dev = base.device();
        dev.store(PmemAddr(range.start), &area, SITE_PATCH).unwrap();
        dev
    }

    /// The shortcut (flat base image, only the slots the input wrote stored) against the plain
    /// path: the same bytes on the device, the same independent decoding and expected
    /// metadata, the same mount.
    #[test]
    fn patched_device_matches_storing_the_whole_area() {
        let (flat, layered) = (BaseImage::build().unwrap(), BaseImage::build_layered().unwrap());
        let geom = flat.geom;
        let mut inputs = inputs("journal_replay", 256, 10 * PATCHES_MAX + 1);
        // Runs of adjacent slots, the first and last slot, every flag.
        let slots = (geom.journal_range().end - geom.journal_range().start) as usize / SLOT;
        for flags in 0..8u8 {
            let mut b = vec![flags];
            for slot in [0, 1, 2, 5, slots - 1, 7, 6, 0] {
                b.extend_from_slice(&((slot * SLOT / 8 + 3) as u16).to_le_bytes());
                b.extend_from_slice(&[0x5a; 8]);
            }
            inputs.push(b);
        }
        for (k, bytes) in inputs.iter().enumerate() {
            let mut fast = patched_device(&flat, bytes).unwrap();
            let mut plain = patched_device_whole(&layered, bytes);
            assert!(media(&fast) == media(&plain), "input {k}: the devices differ");
            let view = JournalView::read(&fast, &geom).unwrap();
            assert_eq!(view, JournalView::read(&plain, &geom).unwrap(), "input {k}");
            assert_eq!(view.expected_meta(&fast, &geom).unwrap(), view.expected_meta(&plain, &geom).unwrap());
            let bugs = if k % 3 == 0 { BugSet::NONE.with(Bug::ReplaySkipsCrc) } else { BugSet::NONE };
            assert!(
                mount_outcome(&mut fast, bugs) == mount_outcome(&mut plain, bugs),
                "input {k}: mounts differ"
            );
        }
    }
}
