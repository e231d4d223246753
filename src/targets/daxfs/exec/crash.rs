//! The daxfs crash oracle: after recovery, read every file through the recovered metadata and
//! classify every word against the run record (docs/design.md §6); fsck the recovered allocator.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::Arc;

use crate::check::{Violation, ViolationClass};
use crate::daxfs::fsck::fsck;
use crate::daxfs::meta::Inode;
use crate::daxfs::store::MetaStore;
use crate::daxfs::tag::Word;
use crate::daxfs::{BLOCK_BYTES, BlockNr, ExtentState, Ino};
use crate::pmem::{Device, LineWords, PageIdentity, PmemAddr};

use super::record::{FileHistory, PageTable, RunRecord, WordVerdict};

/// Which findings a check reports.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// The first bad word of each file (what reports need).
    #[default]
    FirstPerFile,
    /// Every bad word (what differential tests compare).
    EveryWord,
}

/// Where the check reads data blocks from.
enum Data<'a> {
    /// The device, reusing the clean verdicts of pages every state of the point shares.
    Cached(&'a Device),
    /// The device, every word judged afresh.
    Plain(&'a Device),
    /// A lazily enumerated metadata state: the image's words and each word's other values.
    Lines(&'a LineWords<'a>),
}

/// Checks a recovered file system against the record, as of crash point `point`, reusing the
/// clean verdicts of pages that every state of the point shares. `torn` says the cut fell inside
/// the store at `point` (eADR): the operation that store belongs to had begun, so its data may
/// show; acknowledgements are those returned by `point` either way.
pub fn check(
    store: &MetaStore,
    dev: &Device,
    record: &RunRecord,
    point: usize,
    torn: bool,
    scope: Scope,
) -> Vec<Violation> {
    check_with(store, dev, record, (point, torn), Data::Cached(dev), scope)
}

/// [`check`] without the page-verdict cache: every word of every state judged afresh.
pub fn check_plain(
    store: &MetaStore,
    dev: &Device,
    record: &RunRecord,
    point: usize,
    torn: bool,
    scope: Scope,
) -> Vec<Violation> {
    check_with(store, dev, record, (point, torn), Data::Plain(dev), scope)
}

/// [`check`] of every crash state one lazily enumerated metadata state stands for: data words
/// are read through `words` and judged with each of their reachable values. The verdict on a
/// word depends only on its value, its block and the recovered metadata (line-local).
pub fn check_lines(
    store: &MetaStore,
    dev: &Device,
    record: &RunRecord,
    point: usize,
    torn: bool,
    words: &LineWords<'_>,
    scope: Scope,
) -> Vec<Violation> {
    check_with(store, dev, record, (point, torn), Data::Lines(words), scope)
}

/// The integrity part of [`check`] alone: fsck of the recovered metadata, and live inodes no
/// file created before the crash accounts for. Every `AllocatorInconsistent` violation `check`
/// reports comes from these two, in this form.
pub fn check_integrity(store: &MetaStore, record: &RunRecord, point: usize, torn: bool) -> Vec<Violation> {
    let begun = point + usize::from(torn);
    let mut out = fsck_violation(store);
    for (ino, inode) in store.meta().inodes.iter().enumerate() {
        let ino = Ino(ino as u32);
        if inode.live && record.candidates(ino, begun).next().is_none() {
            out.push(never_created(ino));
        }
    }
    out
}

fn fsck_violation(store: &MetaStore) -> Vec<Violation> {
    fsck(store.meta(), store.geometry())
        .into_iter()
        .map(|p| Violation::new(ViolationClass::AllocatorInconsistent, format!("fsck after recovery: {p}")))
        .take(1)
        .collect()
}

fn never_created(ino: Ino) -> Violation {
    Violation::new(
        ViolationClass::AllocatorInconsistent,
        format!("inode {} is live after recovery but was never created before the crash", ino.0),
    )
}

fn check_with(
    store: &MetaStore,
    dev: &Device,
    record: &RunRecord,
    (point, torn): (usize, bool),
    data: Data<'_>,
    scope: Scope,
) -> Vec<Violation> {
    let begun = point + usize::from(torn);
    let mut out = fsck_violation(store);
    out.extend(check_acked_files(store, record, point, begun));
    let landed = record.landed();
    let mounted_before = store.mounted_before().0;
    let shareable = Shareable {
        delta: match data {
            Data::Cached(dev) => dev.initial().view_delta(),
            _ => None,
        },
        recovery_pages: dev.image().written_page_indexes().collect(),
    };
    CLEAN.with(|c| {
        let mut c = c.borrow_mut();
        // Verdicts depend on what had begun: a torn cut's clean pages are not a whole cut's.
        if c.key != (record.id, point, torn) {
            c.key = (record.id, point, torn);
            c.pages.clear();
            c.free_pages.clear();
        }
        if c.across_record != record.id {
            c.across_record = record.id;
            c.across.clear();
            c.across_ids.clear();
            c.across_ids_len = 0;
            c.floors.clear();
            c.next_table = 0;
        }
    });
    for (ino, inode) in store.meta().inodes.iter().enumerate() {
        if !inode.live {
            continue;
        }
        let ino = Ino(ino as u32);
        let candidates: Vec<u32> = record.candidates(ino, begun).map(|f| f.file_id).collect();
        if candidates.is_empty() {
            out.push(never_created(ino));
            continue;
        }
        let histories: Vec<_> = candidates
            .iter()
            .map(|&f| (f, record.history(f, point, begun, landed, mounted_before)))
            .collect();
        let file = FileCheck { store, ino, words_end: inode.size_bytes / 8, histories: &histories, scope };
        out.extend(file.check(&data, &shareable));
    }
    out
}

/// Acknowledged existence and size: an fsync or sync that returned before `point` promised the
/// file, and its size as of the call's start, to every later crash. Exempt: an unlink of the
/// file that began before the crash, and a truncate below that size that had not finished when
/// the call began (the size it promised did not reflect it yet).
fn check_acked_files(store: &MetaStore, record: &RunRecord, point: usize, begun: usize) -> Vec<Violation> {
    let mut out = Vec::new();
    for ack in record.acks.iter().filter(|a| a.at <= point) {
        let Some(acked) = ack.size_bytes else { continue };
        let Some(life) = record.files.iter().find(|f| f.file_id == ack.file_id) else { continue };
        if record.unlink_began(ack.file_id, begun) {
            continue;
        }
        let inode = store.meta().inodes.get(life.ino.0 as usize).filter(|i| i.live);
        let size = inode.map(|i| i.size_bytes);
        let lost = match size {
            None => true,
            Some(s) => s < acked && !record.truncated_below(ack.file_id, acked, ack.started_at, begun),
        };
        if !lost {
            continue;
        }
        let found = size.map_or("no such file".to_string(), |s| format!("size {s}"));
        let message = format!(
            "file {} (inode {}) after recovery: {found}, but {} returned at trace event {} (began at {}) \
             with the file at size {acked}",
            ack.file_id,
            life.ino.0,
            ack.kind.name(),
            ack.at,
            ack.started_at
        );
        let allowed = format!("the file, at least {acked} bytes (acknowledged by {})", ack.kind.name());
        out.push(Violation::new(ViolationClass::LostWrite, message).found_allowed(found, allowed));
        break;
    }
    out
}

/// Pages whose verdict was "clean" at the current crash point, for one record: a data page
/// that neither the crash state's delta nor recovery wrote has the same bytes in every state of
/// a crash point (daxfs recovery writes only metadata), so its verdict is reused.
///
/// A page's verdict reads its bytes, the file's history as of the point (fixed by the inode,
/// whose candidate incarnations the point fixes), the block it is mapped to, how many of its
/// words lie below the recovered size, and which of the file's block frees on the page the
/// recovered state holds (the only part of its allocation epoch a page verdict reads): the key
/// is all of these but the bytes, which the point shares.
struct CleanPages {
    key: (u64, usize, bool),
    pages: HashSet<PageKey, WordHash>,
    /// Pages with pending units found clean with every other value of their words, in a leaf
    /// where all those units' cells were free: clean in every leaf where they are free.
    free_pages: HashSet<PageKey, WordHash>,
    /// Clean verdicts shared across the crash points of one record (`across_record`): pages
    /// judged clean with every value their words can hold, keyed by what the verdict reads of
    /// the page's history (`PageHistory`), the page key, the block's bytes and its pending
    /// units. Exact: bytes and units are part of the key. Emptied when it reaches
    /// `ACROSS_PAGES_MAX`.
    across: HashSet<AcrossKey, WordHash>,
    /// The same verdicts keyed by who holds the page's bytes and pending units
    /// (`LineWords::page_identity`: the durable page and its lines' unit lists) instead of by
    /// their contents: looked up first, since it needs no copy of the page. Filed under a hash
    /// of the history, the page key and the identity's digest, so a lookup builds nothing;
    /// every entry of the list is compared in full. Every entry's content key is in `across`
    /// (both are emptied together), which a debug build checks on every hit.
    across_ids: HashMap<u64, Vec<AcrossId>, WordHash>,
    /// Entries of `across_ids`, over all its lists.
    across_ids_len: usize,
    across_record: u64,
    /// (file id, page) → the page's acked floors for the file's first `acks` acks
    /// (`FileHistory::page_table`), kept across the crash points of `across_record` and
    /// extended as acks return. Emptied when it reaches `ACROSS_PAGES_MAX`.
    floors: HashMap<(u32, u64), SharedTable, WordHash>,
    /// The id the next distinct page table gets.
    next_table: u64,
}

/// The hasher of the clean-page sets: a multiply-and-rotate over 8-byte words, fixed (no
/// per-process seed). The sets are only asked what they contain and emptied by size, never
/// iterated, so their order reaches no result; a fixed hasher keeps even their timing the same
/// from run to run.
type WordHash = BuildHasherDefault<WordHasher>;

#[derive(Default)]
struct WordHasher(u64);

impl WordHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for WordHasher {
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weakest; the table indexes by them.
        self.0 ^ (self.0 >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.mix(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w) ^ (rest.len() as u64) << 59);
        }
    }
    fn write_u8(&mut self, i: u8) {
        self.mix(u64::from(i));
    }
    fn write_u32(&mut self, i: u32) {
        self.mix(u64::from(i));
    }
    fn write_u64(&mut self, i: u64) {
        self.mix(i);
    }
    fn write_usize(&mut self, i: usize) {
        self.mix(i as u64);
    }
}

/// A page table shared across crash points.
struct SharedTable {
    acks: usize,
    table: Arc<PageTable>,
    /// Names the table's contents among the record's tables: equal ids, equal floors.
    id: u64,
}

/// (inode, page, block, words judged, freed blocks the recovered state holds on the page):
/// everything but the shared bytes.
type PageKey = (u32, u64, u64, u64, u64);

/// (page history, page key, the block's bytes, its pending units): see `CleanPages::across`.
/// Hashed by its history, page key and a digest of bytes and units (hashing every word would
/// cost as much as the comparison it saves); compared field by field, digest first, so equal
/// means equal bytes and units.
#[derive(PartialEq, Eq)]
struct AcrossKey {
    history: PageHistory,
    key: PageKey,
    digest: u64,
    bytes: Box<[u8]>,
    units: Box<[(u64, u64)]>,
}

impl AcrossKey {
    fn new(history: PageHistory, key: PageKey, bytes: &[u8], units: Box<[(u64, u64)]>) -> Self {
        let digest = page_digest(bytes, &units);
        Self { history, key, digest, bytes: Box::from(bytes), units }
    }
}

impl std::hash::Hash for AcrossKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.history.hash(state);
        self.key.hash(state);
        state.write_u64(self.digest);
    }
}

/// A digest of a page's bytes and pending units: four independent multiply-rotate lanes, so
/// it runs at several bytes per cycle. Equal inputs, equal digests; nothing else is promised.
fn page_digest(bytes: &[u8], units: &[(u64, u64)]) -> u64 {
    const M: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut lanes = [1u64, 2, 3, 4];
    let mut mix = |j: usize, w: u64| lanes[j] = (lanes[j] ^ w).wrapping_mul(M).rotate_left(29);
    let mut words = bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
    let mut j = 0;
    for w in &mut words {
        mix(j & 3, w);
        j += 1;
    }
    let rest = bytes.len() % 8;
    if rest != 0 {
        let mut w = [0u8; 8];
        w[..rest].copy_from_slice(&bytes[bytes.len() - rest..]);
        mix(j & 3, u64::from_le_bytes(w));
    }
    for &(a, v) in units {
        mix(0, a);
        mix(1, v);
    }
    let (n, u) = (bytes.len() as u64, units.len() as u64);
    lanes.iter().fold(n ^ u.rotate_left(32), |h, &l| (h ^ l).wrapping_mul(M).rotate_left(23))
}

/// (page history, page key, who holds the page's bytes and units): see `CleanPages::across_ids`.
type AcrossId = (PageHistory, PageKey, PageIdentity);

/// What a page's verdict reads of the record's history as of a crash point, for each of the
/// inode's candidate incarnations (which the list names): the id of its page table and how
/// many of its events touch the page (`FileHistory::page_events`). A word's verdict reads
/// nothing else of the history but the block's earlier writers, which only tell one kind of
/// bad word from another and never make a word good. Held inline for one candidate (nearly
/// every page), boxed for more; each length is built one way only, so equal lists are equal
/// values.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum PageHistory {
    One(HistoryEntry),
    Many(Box<[HistoryEntry]>),
}

/// (file id, page table id, events touching the page): one candidate's part of a `PageHistory`.
type HistoryEntry = (u32, u64, usize);

impl PageHistory {
    fn new(mut entries: impl ExactSizeIterator<Item = HistoryEntry>) -> Self {
        match entries.len() {
            1 => Self::One(entries.next().expect("one entry")),
            _ => Self::Many(entries.collect()),
        }
    }

    fn entries(&self) -> &[HistoryEntry] {
        match self {
            Self::One(e) => std::slice::from_ref(e),
            Self::Many(es) => es,
        }
    }
}

/// Entries of `CleanPages::across` at most (each holds a page of bytes).
const ACROSS_PAGES_MAX: usize = 4096;

thread_local! {
    static CLEAN: RefCell<CleanPages> = const {
        RefCell::new(CleanPages {
            key: (0, 0, false),
            pages: HashSet::with_hasher(BuildHasherDefault::new()),
            free_pages: HashSet::with_hasher(BuildHasherDefault::new()),
            across: HashSet::with_hasher(BuildHasherDefault::new()),
            across_ids: HashMap::with_hasher(BuildHasherDefault::new()),
            across_ids_len: 0,
            across_record: 0,
            floors: HashMap::with_hasher(BuildHasherDefault::new()),
            next_table: 0,
        })
    };
}

/// Can the verdict on `block` be shared by every state of this crash point?
struct Shareable<'a> {
    delta: Option<&'a [(u64, u64)]>,
    recovery_pages: BTreeSet<u64>,
}

impl Shareable<'_> {
    fn block(&self, addr: u64) -> bool {
        let Some(delta) = self.delta else { return false };
        let end = addr + BLOCK_BYTES;
        let i = delta.partition_point(|&(a, _)| a < addr);
        let untouched_by_delta = delta.get(i).is_none_or(|&(a, _)| a >= end);
        untouched_by_delta && !self.recovery_pages.contains(&(addr / crate::pmem::PAGE_BYTES))
    }
}

/// One file's data check.
struct FileCheck<'a> {
    store: &'a MetaStore,
    ino: Ino,
    /// Words below the recovered size.
    words_end: u64,
    histories: &'a [(u32, FileHistory<'a>)],
    scope: Scope,
}

impl FileCheck<'_> {
    /// The file's bad words: the first one, or all of them (`scope`).
    fn check(&self, data: &Data<'_>, shareable: &Shareable<'_>) -> Vec<Violation> {
        let Ok(inode) = self.store.inode(self.ino) else { return Vec::new() };
        let (histories, words_end) = (self.histories, self.words_end);
        let words_per_page = BLOCK_BYTES / 8;
        let mut buf = vec![0u8; BLOCK_BYTES as usize];
        let mut out = Vec::new();
        let pages = words_end.div_ceil(words_per_page);
        let mut next_page = 0;
        while next_page < pages {
            let page = next_page;
            next_page += 1;
            let lo = page * words_per_page;
            let hi = (lo + words_per_page).min(words_end);
            let unwritten = histories.iter().all(|(_, h)| h.page_unwritten(lo));
            let floors = std::cell::OnceCell::new();
            let floors = || floors.get_or_init(|| Floors::of(histories, page, data));
            // Names the page's history among those of other crash points, if its tables are
            // shared (see `CleanPages::across`). Reads the shared tables' ids without taking
            // the tables: a page found clean by it never needs them.
            let page_history = || page_history(histories, page, data);
            let mapped = inode.lookup(page).map(|e| (BlockNr(e.phys.0 + page - e.file_block), e.state));
            // Other values a word of the page may hold (lazy enumeration): (word, value).
            let mut others: Vec<(u64, u64)> = Vec::new();
            // Set when this page's verdict, if clean, holds for every leaf whose cells here are
            // free (see `CleanPages::free_pages`).
            let mut free_key = None;
            // Set when this page's verdict, if clean, holds at every crash point of the record
            // with the same history epoch, bytes and pending units.
            let mut across_key: Option<AcrossKey> = None;
            let mut across_id: Option<(u64, AcrossId)> = None;
            let block = match mapped {
                Some((b, ExtentState::Written)) => {
                    let addr = self.store.geometry().block_addr(b);
                    match data {
                        Data::Cached(dev) => {
                            let shared = shareable.block(addr.0);
                            let key = (self.ino.0, page, b.0, hi - lo, freed_held(histories, page));
                            if shared && CLEAN.with(|c| c.borrow().pages.contains(&key)) {
                                continue;
                            }
                            if dev.read(addr, &mut buf).is_err() {
                                return out;
                            }
                            let k = page_history().map(|h| AcrossKey::new(h, key, &buf, Box::from([])));
                            if k.as_ref().is_some_and(|k| CLEAN.with(|c| c.borrow().across.contains(k))) {
                                continue;
                            }
                            if page_clean(histories, floors, lo, words_end, &buf, Some(b)) {
                                CLEAN.with(|c| {
                                    let mut c = c.borrow_mut();
                                    if shared {
                                        c.pages.insert(key);
                                    }
                                    insert_across(&mut c, k, None);
                                });
                                continue;
                            }
                        }
                        Data::Plain(dev) => {
                            if dev.read(addr, &mut buf).is_err() {
                                return out;
                            }
                        }
                        Data::Lines(words) => {
                            if addr.0 + BLOCK_BYTES > self.store.geometry().size_bytes {
                                return out;
                            }
                            // A block no pending unit touches holds its durable bytes in every
                            // state of the point, and recovery writes no data: its clean
                            // verdict is shared like the cached path's.
                            let block = addr.0..addr.0 + BLOCK_BYTES;
                            let by_recovery =
                                shareable.recovery_pages.contains(&(addr.0 / crate::pmem::PAGE_BYTES));
                            let shared = !words.pending_in(block.clone()) && !by_recovery;
                            let key = (self.ino.0, page, b.0, hi - lo, freed_held(histories, page));
                            if shared && CLEAN.with(|c| c.borrow().pages.contains(&key)) {
                                continue;
                            }
                            // Pending units whose cells are all free: the same bytes and the
                            // same other values in every leaf where they are free.
                            if !shared && !by_recovery && words.all_free(block.clone()) {
                                if CLEAN.with(|c| c.borrow().free_pages.contains(&key)) {
                                    words.touch(block);
                                    continue;
                                }
                                free_key = Some(key);
                            }
                            let history = page_history().filter(|_| shared || free_key.is_some());
                            // Looked up without building the identity; built only to be kept.
                            let lookup = (history.as_ref()).and_then(|h| {
                                let digest = words.page_identity_digest(block.clone())?;
                                Some(WordHash::default().hash_one((h, key, digest)))
                            });
                            let known = |c: &CleanPages, lookup: u64| {
                                c.across_ids.get(&lookup).is_some_and(|ids| {
                                    ids.iter().any(|(h, k, id)| {
                                        Some(h) == history.as_ref()
                                            && *k == key
                                            && words.is_page_identity(block.clone(), id)
                                    })
                                })
                            };
                            if lookup.is_some_and(|l| CLEAN.with(|c| known(&c.borrow(), l))) {
                                if crate::self_check_due!() {
                                    words.read(addr.0, &mut buf);
                                    let h = history.expect("an id has a history");
                                    let units = words.units_in(block.clone()).into_boxed_slice();
                                    let k = AcrossKey::new(h, key, &buf, units);
                                    let by_bytes = CLEAN.with(|c| c.borrow().across.contains(&k));
                                    assert!(
                                        by_bytes,
                                        "a page known clean by its identity is not by its bytes"
                                    );
                                }
                                CLEAN.with(|c| {
                                    let mut c = c.borrow_mut();
                                    if shared { c.pages.insert(key) } else { c.free_pages.insert(key) }
                                });
                                words.touch(block);
                                continue;
                            }
                            across_id = lookup.and_then(|l| {
                                let id = (history.clone()?, key, words.page_identity(block.clone())?);
                                debug_assert_eq!(
                                    l,
                                    WordHash::default().hash_one((&id.0, key, id.2.digest())),
                                    "a page identity's digest, built and borrowed"
                                );
                                Some((l, id))
                            });
                            words.read(addr.0, &mut buf);
                            if let Some(h) = history {
                                let units = words.units_in(block.clone()).into_boxed_slice();
                                let k = AcrossKey::new(h, key, &buf, units);
                                if CLEAN.with(|c| c.borrow().across.contains(&k)) {
                                    CLEAN.with(|c| {
                                        let mut c = c.borrow_mut();
                                        if shared {
                                            c.pages.insert(key)
                                        } else {
                                            c.free_pages.insert(key)
                                        };
                                        if let Some(id) = across_id.take() {
                                            if c.across_ids_len >= ACROSS_PAGES_MAX {
                                                c.across_ids.clear();
                                                c.across_ids_len = 0;
                                            }
                                            insert_id(&mut c, id);
                                        }
                                    });
                                    words.touch(block);
                                    continue;
                                }
                                across_key = Some(k);
                            }
                            if shared && page_clean(histories, floors, lo, words_end, &buf, Some(b)) {
                                CLEAN.with(|c| {
                                    let mut c = c.borrow_mut();
                                    c.pages.insert(key);
                                    insert_across(&mut c, across_key.take(), across_id.take());
                                });
                                continue;
                            }
                            others = words
                                .others(addr.0..addr.0 + (hi - lo) * 8)
                                .into_iter()
                                .map(|(a, v)| (lo + (a - addr.0) / 8, v))
                                .collect();
                        }
                    }
                    Some(b)
                }
                // A hole or unwritten extent reads as zeros; only acknowledged writes can fail.
                // So do the pages after it up to the next written block or written page; the
                // plain check still takes them one by one.
                _ if unwritten => {
                    if !matches!(data, Data::Plain(_)) {
                        next_page = unwritten_run_end(inode, histories, page, pages);
                    }
                    continue;
                }
                _ => {
                    buf.fill(0);
                    None
                }
            };
            // Fast path: a page this file never wrote may hold only zeros.
            if unwritten && others.is_empty() && buf.iter().all(|&b| b == 0) {
                continue;
            }
            let found_before = out.len();
            let mut others = others.into_iter().peekable();
            for word in lo..hi {
                let k = ((word - lo) * 8) as usize;
                let here = u64::from_le_bytes(buf[k..k + 8].try_into().expect("8 bytes"));
                let mut next_other = || others.next_if(|&(w, _)| w == word).map(|(_, v)| v);
                for raw in std::iter::once(here).chain(std::iter::from_fn(&mut next_other)) {
                    let found = Word::decode(raw);
                    if let Some(bad) = judge_word(histories, floors(), word, found, block) {
                        if self.scope == Scope::FirstPerFile {
                            out.push(finding(self.store, self.ino, word, lo, found, block, bad));
                            return out;
                        }
                        out.push(bare_finding(self.store, word, lo, block, bad));
                    }
                }
            }
            if let Some(key) = free_key.filter(|_| out.len() == found_before) {
                CLEAN.with(|c| {
                    let mut c = c.borrow_mut();
                    c.free_pages.insert(key);
                    insert_across(&mut c, across_key.take(), across_id.take());
                });
            }
        }
        out
    }
}

/// The end of the run of pages from `page` that are, like `page`, neither mapped to a written
/// block nor written by any candidate history: a hole or unwritten extent's end, or the next
/// extent's start, or the next page a history wrote, whichever comes first.
fn unwritten_run_end(inode: &Inode, histories: &[(u32, FileHistory<'_>)], page: u64, pages: u64) -> u64 {
    let span_end = match inode.lookup(page) {
        Some(e) => e.file_block + e.len,
        None => inode.next_extent_after(page).map_or(u64::MAX, |e| e.file_block),
    };
    let written = histories.iter().filter_map(|(_, h)| h.next_written_page(page)).min();
    let end = span_end.min(written.unwrap_or(u64::MAX)).min(pages);
    if crate::self_check_due!() {
        for p in page..end {
            let mapped = inode.lookup(p).map(|e| e.state);
            assert!(
                mapped != Some(ExtentState::Written)
                    && histories.iter().all(|(_, h)| h.page_unwritten(p * (BLOCK_BYTES / 8))),
                "page {p} skipped with the unwritten run from page {page}"
            );
        }
    }
    end
}

/// See `page_history` in `FileCheck::check`: the page's table ids and event counts, if every
/// candidate's tables are shared (never with the plain check). An id comes from the shared
/// table's entry when that entry holds as many acks as the history, without touching the
/// table; otherwise as `Floors::of` gets it.
fn page_history(histories: &[(u32, FileHistory<'_>)], page: u64, data: &Data<'_>) -> Option<PageHistory> {
    if matches!(data, Data::Plain(_)) || !histories.iter().all(|(_, h)| h.tables_shareable()) {
        return None;
    }
    let ids = CLEAN.with(|c| {
        let mut c = c.borrow_mut();
        let c = &mut *c;
        PageHistory::new(histories.iter().map(|(f, h)| {
            let id = match c.floors.get(&(*f, page)) {
                Some(e) if e.acks == h.acks_returned() => e.id,
                _ => shared_table(c, *f, h, page).1,
            };
            (*f, id, h.page_events(page))
        }))
    });
    if crate::self_check_due!() {
        let Floors::Shared { ids: Some(by_floors), .. } = Floors::of(histories, page, data) else {
            panic!("shareable tables without ids");
        };
        assert!(
            ids.entries().iter().map(|&(_, id, _)| id).eq(by_floors.iter().copied()),
            "page {page}: table ids read without the tables"
        );
    }
    Some(ids)
}

fn insert_across(c: &mut CleanPages, key: Option<AcrossKey>, id: Option<(u64, AcrossId)>) {
    let Some(key) = key else { return };
    if c.across.len() >= ACROSS_PAGES_MAX || c.across_ids_len >= ACROSS_PAGES_MAX {
        c.across.clear();
        c.across_ids.clear();
        c.across_ids_len = 0;
    }
    c.across.insert(key);
    if let Some(id) = id {
        insert_id(c, id);
    }
}

/// Files `id` under its lookup hash (see `CleanPages::across_ids`).
fn insert_id(c: &mut CleanPages, (lookup, id): (u64, AcrossId)) {
    let ids = c.across_ids.entry(lookup).or_default();
    if !ids.contains(&id) {
        ids.push(id);
        c.across_ids_len += 1;
    }
}

/// What a page's verdict takes from the recovered state's allocation epoch (see
/// `FileHistory::freed_held_on`): summed over the candidates, each of which only grows with the
/// epoch, so equal sums mean equal counts.
fn freed_held(histories: &[(u32, FileHistory<'_>)], page: u64) -> u64 {
    histories.iter().map(|(_, h)| h.freed_held_on(page)).sum()
}

/// Is every word of the page at word `lo` acceptable?
fn page_clean<'f>(
    histories: &[(u32, FileHistory<'_>)],
    floors: impl Fn() -> &'f Floors,
    lo: u64,
    words_end: u64,
    buf: &[u8],
    block: Option<BlockNr>,
) -> bool {
    let words_per_page = BLOCK_BYTES / 8;
    if histories.iter().all(|(_, h)| h.page_unwritten(lo)) && buf.iter().all(|&b| b == 0) {
        return true;
    }
    (lo..(lo + words_per_page).min(words_end)).all(|word| {
        let k = ((word - lo) * 8) as usize;
        let found = Word::decode(u64::from_le_bytes(buf[k..k + 8].try_into().expect("8 bytes")));
        judge_word(histories, floors(), word, found, block).is_none()
    })
}

/// Where a page's words get their lookups (acked floors, writes by version).
enum Floors {
    /// Computed word by word as each is judged (the plain check).
    Direct,
    /// One table per candidate history, shared by every state of the crash point and across
    /// crash points; with their ids if every one is shared (see `shared_table`).
    Shared { tables: Vec<Arc<PageTable>>, ids: Option<Box<[u64]>> },
}

impl Floors {
    fn of(histories: &[(u32, FileHistory<'_>)], page: u64, data: &Data<'_>) -> Floors {
        if matches!(data, Data::Plain(_)) {
            return Floors::Direct;
        }
        let mut ids = Some(Vec::with_capacity(histories.len()));
        let tables = histories
            .iter()
            .map(|(f, h)| {
                if !h.tables_shareable() {
                    ids = None;
                    return Arc::new(h.page_table(page));
                }
                let (table, id) = CLEAN.with(|c| shared_table(&mut c.borrow_mut(), *f, h, page));
                if let Some(ids) = &mut ids {
                    ids.push(id);
                }
                table
            })
            .collect();
        Floors::Shared { tables, ids: ids.map(Vec::into_boxed_slice) }
    }
}

/// The page table of `page` in history `h` of file `file`, and its id, from the tables shared
/// across crash points: the same table if `h` holds as many acks as it, extended if `h` holds
/// more, built afresh if fewer. A debug build compares it with the table built from nothing.
fn shared_table(c: &mut CleanPages, file: u32, h: &FileHistory<'_>, page: u64) -> (Arc<PageTable>, u64) {
    if c.floors.len() >= ACROSS_PAGES_MAX {
        c.floors.clear();
    }
    let acks = h.acks_returned();
    // `known`: the entry already holds this table with these acks, and is not written again.
    let (table, id, known) = match c.floors.get(&(file, page)) {
        Some(e) if e.acks == acks => (Arc::clone(&e.table), e.id, true),
        Some(e) if e.acks < acks => {
            let table = h.extend_page_table(&e.table, page, e.acks).expect("a shareable history extends");
            if table == *e.table {
                (Arc::clone(&e.table), e.id, false)
            } else {
                c.next_table += 1;
                (Arc::new(table), c.next_table, false)
            }
        }
        _ => {
            c.next_table += 1;
            (Arc::new(h.page_table(page)), c.next_table, false)
        }
    };
    if crate::self_check_due!() {
        assert_eq!(
            *table,
            h.page_table(page),
            "the shared table of file {file} page {page} with {acks} acks"
        );
    }
    if !known {
        c.floors.insert((file, page), SharedTable { acks, table: Arc::clone(&table), id });
    }
    (table, id)
}

/// The verdict on one word across the candidate incarnations: `None` if any accepts it.
fn judge_word(
    histories: &[(u32, FileHistory<'_>)],
    floors: &Floors,
    word: u64,
    found: Word,
    block: Option<BlockNr>,
) -> Option<(u32, WordVerdict)> {
    let mut last = None;
    for (k, (f, h)) in histories.iter().enumerate() {
        let verdict = match floors {
            Floors::Direct => h.judge(*f, word, found, block),
            Floors::Shared { tables, .. } => h.judge_in(*f, word, Some(&tables[k]), found, block),
        };
        match verdict {
            WordVerdict::Ok => return None,
            v => last = Some((*f, v)),
        }
    }
    last
}

fn finding(
    store: &MetaStore,
    ino: Ino,
    word: u64,
    lo: u64,
    found: Word,
    block: Option<BlockNr>,
    bad: (u32, WordVerdict),
) -> Violation {
    let file_id = bad.0;
    let allowed = match bad.1 {
        WordVerdict::Lost { acked_version } => {
            format!("file {file_id} word {word} version >= {acked_version} (acknowledged durable)")
        }
        _ => format!("zero or a version of file {file_id} word {word} written before the crash"),
    };
    let mut v = bare_finding(store, word, lo, block, bad).found_allowed(format!("{found:?}"), allowed);
    v.message = format!("inode {} (file {file_id}) word {word} after recovery: {found:?}", ino.0);
    v
}

/// The class of a bad word's verdict.
fn verdict_class(verdict: &WordVerdict) -> ViolationClass {
    match verdict {
        WordVerdict::Lost { .. } => ViolationClass::LostWrite,
        WordVerdict::Foreign => ViolationClass::ForeignData,
        _ => ViolationClass::StaleData,
    }
}

/// [`finding`] without its texts: differential tests compare every bad word of thousands of
/// states by class and place, and formatting each would dominate their time.
fn bare_finding(
    store: &MetaStore,
    word: u64,
    lo: u64,
    block: Option<BlockNr>,
    bad: (u32, WordVerdict),
) -> Violation {
    let (file_id, verdict) = bad;
    let v =
        Violation::new(verdict_class(&verdict), String::new()).in_file(format!("file{file_id}"), word * 8);
    match block {
        Some(b) => v.at_addr(PmemAddr(store.geometry().block_addr(b).0 + (word - lo) * 8)),
        None => v,
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{BuildHasher, Hasher};

    use super::*;

    /// The clean-page sets index by the hash's low bits and filter by its top seven: page keys
    /// of one file (consecutive pages, one block each) must spread over both, or every lookup
    /// walks a long probe sequence. Equal keys hash equal whatever their allocation.
    #[test]
    fn page_keys_spread_over_the_hash_bits_the_sets_use() {
        let build = WordHash::default();
        let keys: Vec<PageKey> = (0..4096u64).map(|p| (3, p, 1000 + p, 512, 0)).collect();
        let hashes: Vec<u64> = keys.iter().map(|k| build.hash_one(k)).collect();
        let low: BTreeSet<u64> = hashes.iter().map(|h| h & 4095).collect();
        let top: BTreeSet<u64> = hashes.iter().map(|h| h >> 57).collect();
        assert!(low.len() > 2500, "{} distinct low 12-bit buckets of 4096 keys", low.len());
        assert_eq!(top.len(), 128, "every top-7-bit tag is used");
        let bytes: Box<[u8]> = (0..4096u32).map(|i| i as u8).collect();
        let copy: Box<[u8]> = bytes.to_vec().into_boxed_slice();
        assert_eq!(build.hash_one(&bytes), build.hash_one(&copy));
        let mut a = WordHasher::default();
        a.write(&[1, 2, 3]);
        let mut b = WordHasher::default();
        b.write(&[1, 2, 3, 0]);
        assert_ne!(a.finish(), b.finish(), "a short tail is not its zero-padded self");
    }
}
