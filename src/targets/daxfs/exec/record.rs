//! What a run leaves behind for the crash oracle: the history of every file word, with trace
//! positions, and the acknowledgements of durability (docs/design.md §6).

use std::collections::BTreeMap;

use crate::daxfs::tag::Word;
use crate::daxfs::{BlockNr, Ino};

/// A change to a range of file words, in the order the harness made them.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum DataEvent {
    /// Words `lo..hi` of `file_id` got `version`; their stores are at trace positions ≥ `at`.
    /// `block` is the physical block the stores went to (None: the zero page, data dropped).
    Write { at: usize, file_id: u32, lo: u64, hi: u64, version: u32, block: Option<BlockNr> },
    /// Words `lo..hi` of `file_id` became zero (punch, truncate, unlink) at trace position `at`.
    /// `done` is the trace position when the operation completed (its metadata committed);
    /// `usize::MAX` if it never did. Only an ack begun at or after `done` covers it.
    /// `freed`: the pages whose blocks it freed, and in which transaction (a recovered state
    /// that holds that transaction maps those pages, if at all, to a later allocation).
    Zero {
        at: usize,
        file_id: u32,
        lo: u64,
        hi: u64,
        done: usize,
        #[serde(default)]
        kind: ZeroKind,
        #[serde(default)]
        freed: Option<FreedPages>,
    },
}

/// The operation behind a [`DataEvent::Zero`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ZeroKind {
    #[default]
    Punch,
    /// Truncate down to `size_bytes`.
    Truncate {
        size_bytes: u64,
    },
    Unlink,
}

/// File pages `first..last` whose blocks transaction `tid` freed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FreedPages {
    pub first: u64,
    pub last: u64,
    pub tid: u64,
}

impl DataEvent {
    pub fn file_id(&self) -> u32 {
        match self {
            DataEvent::Write { file_id, .. } | DataEvent::Zero { file_id, .. } => *file_id,
        }
    }
    pub fn at(&self) -> usize {
        match self {
            DataEvent::Write { at, .. } | DataEvent::Zero { at, .. } => *at,
        }
    }
    pub fn covers(&self, word: u64) -> bool {
        match self {
            DataEvent::Write { lo, hi, .. } | DataEvent::Zero { lo, hi, .. } => *lo <= word && word < *hi,
        }
    }
}

/// "Everything of `file_id` in words `lo..hi` done before data event `events_before` is durable",
/// acknowledged at trace position `at` (fsync/msync/persist on MAP_SYNC/sync returned).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ack {
    pub at: usize,
    pub file_id: u32,
    pub lo: u64,
    pub hi: u64,
    pub events_before: usize,
    /// Trace position when the acknowledging call began.
    pub started_at: usize,
    /// Only the data written (not zeroing by punch/truncate, whose metadata a user-space
    /// persist does not make durable).
    pub data_only: bool,
    /// The call that acknowledged.
    #[serde(default)]
    pub kind: AckKind,
    /// The file's size when the call began, which it promises (fsync and sync only): the file
    /// exists after every later crash, at least this large unless a truncate not finished
    /// before the call began made it smaller, or an unlink removed it.
    #[serde(default)]
    pub size_bytes: Option<u64>,
}

/// Which call made an [`Ack`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AckKind {
    #[default]
    Fsync,
    Msync,
    /// A user-space flush on a MAP_SYNC mapping.
    Persist,
    Sync,
}

impl AckKind {
    pub fn name(self) -> &'static str {
        match self {
            AckKind::Fsync => "fsync",
            AckKind::Msync => "msync",
            AckKind::Persist => "persist on a MAP_SYNC mapping",
            AckKind::Sync => "sync",
        }
    }
}

/// One incarnation of a file: created at trace position `created_at` as inode `ino` with
/// generation `file_id`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileLife {
    pub file_id: u32,
    pub ino: Ino,
    pub created_at: usize,
    pub unlinked_at: Option<usize>,
}

#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// Process-unique id of this record, naming it in oracle caches; never part of a result.
    #[serde(skip)]
    pub id: u64,
    /// [`RunRecord::landed`], computed once (the crash check needs it for every state).
    #[serde(skip)]
    landed: std::sync::OnceLock<Landed>,
    /// Indexes of the zeroing events, computed once (few, and asked for in every state).
    #[serde(skip)]
    zeroings: std::sync::OnceLock<Vec<usize>>,
    pub files: Vec<FileLife>,
    pub events: Vec<DataEvent>,
    pub acks: Vec<Ack>,
}

/// Records are equal when their histories are; the cache id is not part of a record's value.
impl PartialEq for RunRecord {
    fn eq(&self, other: &Self) -> bool {
        (&self.files, &self.events, &self.acks) == (&other.files, &other.events, &other.acks)
    }
}

impl Eq for RunRecord {}

/// The verdict on one word found after recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WordVerdict {
    Ok,
    /// Found an older value than the acknowledged one (or zero instead of it).
    Lost {
        acked_version: u32,
    },
    /// A tag of another file or offset that never lived in this block.
    Foreign,
    /// Poison, garbage, or a tag that lived in this block before its latest allocation.
    Stale,
}

/// Per-file index of the record as of one crash point: writes by page, so judging a word looks
/// only at the writes that touched its page; zeroing ranges (few, possibly huge) kept as ranges.
pub struct FileHistory<'r> {
    events: &'r [DataEvent],
    /// page → indexes into `events` (ascending) of this file's writes before the point.
    by_page: BTreeMap<u64, Vec<usize>>,
    /// Indexes of this file's zeroing events before the point.
    zeros: Vec<usize>,
    acks: Vec<&'r Ack>,
    /// Are this history's page tables the file's canonical ones, shareable with other crash
    /// points ([`Self::tables_shareable`])?
    tables_shareable: bool,
    /// Every write ever recorded, by (version, block): a block's earlier contents.
    landed: &'r Landed,
    /// The recovered state holds exactly the transactions with smaller tids.
    mounted_before: u64,
}

const WORDS_PER_PAGE: u64 = crate::daxfs::BLOCK_BYTES / 8;

const NO_FLOOR: u32 = u32::MAX;

/// One page's lookups for [`FileHistory::judge_in`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageTable {
    /// The acked floor of each word of the page.
    /// (`NO_FLOOR` for none; event indexes are far below it.)
    floors: Box<[u32]>,
}

/// (version, block) → (event index, file id, first word, end word) of the writes that landed there.
pub type Landed = BTreeMap<(u32, u64), Vec<(usize, u32, u64, u64)>>;

impl RunRecord {
    /// Where every write landed, for telling a block's old contents from foreign data. Computed
    /// on first use; the record must not change afterwards (it does not once the run is over).
    pub fn landed(&self) -> &Landed {
        self.landed.get_or_init(|| {
            let mut landed = Landed::new();
            for (i, e) in self.events.iter().enumerate() {
                if let DataEvent::Write { version, block: Some(b), file_id, lo, hi, .. } = e {
                    landed.entry((*version, b.0)).or_default().push((i, *file_id, *lo, *hi));
                }
            }
            landed
        })
    }

    /// The history of `file_id` as of crash point `point`: events begun before `begun` (`point`,
    /// or `point + 1` when the cut fell inside the store at `point`), acks returned by `point`,
    /// judged against a recovered state that holds the transactions below `mounted_before`.
    pub fn history<'r>(
        &'r self,
        file_id: u32,
        point: usize,
        begun: usize,
        landed: &'r Landed,
        mounted_before: u64,
    ) -> FileHistory<'r> {
        let mut by_page: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut zeros = Vec::new();
        for (i, e) in self.events.iter().enumerate().filter(|(_, e)| e.file_id() == file_id && e.at() < begun)
        {
            match e {
                DataEvent::Write { lo, hi, .. } => {
                    for page in lo / WORDS_PER_PAGE..hi.div_ceil(WORDS_PER_PAGE) {
                        by_page.entry(page).or_default().push(i);
                    }
                }
                DataEvent::Zero { .. } => zeros.push(i),
            }
        }
        let mut acks = Vec::new();
        // Are the acks returned by `point` the file's first ones (as a run records them)?
        let (mut acks_prefix, mut seen_later) = (true, false);
        for a in self.acks.iter().filter(|a| a.file_id == file_id) {
            if a.at <= point {
                acks_prefix &= !seen_later;
                acks.push(a);
            } else {
                seen_later = true;
            }
        }
        let sorted = self.events.is_sorted_by_key(DataEvent::at);
        let tables_shareable = sorted
            && acks_prefix
            && acks.iter().all(|a| {
                a.at < begun
                    && a.events_before
                        .min(self.events.len())
                        .checked_sub(1)
                        .is_none_or(|i| self.events[i].at() < begun)
            });
        FileHistory { events: &self.events, by_page, zeros, acks, tables_shareable, landed, mounted_before }
    }

    /// Digest of what the crash oracle expects at `point`: states with equal images and equal
    /// expectations get equal verdicts.
    pub fn expectations_at(&self, point: usize) -> u64 {
        let events = self.events.partition_point(|e| e.at() < point) as u64;
        let acks = self.acks.iter().filter(|a| a.at <= point).count() as u64;
        let files = self.files.iter().filter(|f| f.created_at < point).count() as u64;
        let unlinks = self.files.iter().filter(|f| f.unlinked_at.is_some_and(|u| u < point)).count() as u64;
        events | acks << 20 | files << 40 | unlinks << 52
    }

    /// The zeroing events (punch, truncate, unlink), in record order.
    fn zeroings(&self) -> impl Iterator<Item = &DataEvent> {
        let indexes = self.zeroings.get_or_init(|| {
            (0..self.events.len()).filter(|&i| matches!(self.events[i], DataEvent::Zero { .. })).collect()
        });
        indexes.iter().map(|&i| &self.events[i])
    }

    /// Had an unlink of `file_id` begun (reached its unmap step) before `point`?
    pub fn unlink_began(&self, file_id: u32, point: usize) -> bool {
        self.zeroings().any(|e| {
            matches!(e, DataEvent::Zero { file_id: f, kind: ZeroKind::Unlink, at, .. } if *f == file_id && *at < point)
        })
    }

    /// Did a truncate of `file_id` below `size_bytes` begin its unmap step before `point`
    /// without having finished by trace position `since`?
    pub fn truncated_below(&self, file_id: u32, size_bytes: u64, since: usize, point: usize) -> bool {
        self.zeroings().any(|e| match *e {
            DataEvent::Zero { file_id: f, kind: ZeroKind::Truncate { size_bytes: s }, at, done, .. } => {
                f == file_id && s < size_bytes && at < point && done > since
            }
            _ => false,
        })
    }

    /// The incarnations that may own inode `ino` after a crash with the events before `begun`
    /// begun.
    pub fn candidates(&self, ino: Ino, begun: usize) -> impl Iterator<Item = &FileLife> {
        self.files.iter().filter(move |f| f.ino == ino && f.created_at < begun)
    }
}

impl FileHistory<'_> {
    /// Indexes of this file's writes covering `word`, ascending.
    fn writes_on(&self, word: u64) -> impl DoubleEndedIterator<Item = usize> + '_ {
        let page = self.by_page.get(&(word / WORDS_PER_PAGE)).map_or(&[][..], Vec::as_slice);
        page.iter().copied().filter(move |&i| self.events[i].covers(word))
    }

    /// Indexes of this file's zeroing events covering `word`, ascending.
    fn zeros_on(&self, word: u64) -> impl DoubleEndedIterator<Item = usize> + '_ {
        self.zeros.iter().copied().filter(move |&i| self.events[i].covers(word))
    }

    /// Index of the newest event on `word` that an ack covers.
    fn acked_floor(&self, word: u64) -> Option<usize> {
        self.floor_among(self.acks.iter().copied(), word)
    }

    /// The acked floor of every word of page `page` (this file's words `page * 512..`), looking
    /// only at the acks that reach the page. Crash checks share it between the states of a
    /// crash point, and across crash points ([`Self::extend_page_table`]); the plain check
    /// looks each word up afresh.
    pub fn page_table(&self, page: u64) -> PageTable {
        let mut floors = vec![NO_FLOOR; WORDS_PER_PAGE as usize].into_boxed_slice();
        self.fold_acks(&mut floors, page, 0);
        PageTable { floors }
    }

    /// The page table of page `page` from `table`, the table of the same page in a history of
    /// this file whose acks were this one's first `acks_in_table`: each word's floor is the
    /// newest of its floors under each ack, so the later acks are folded in. `None` if this
    /// history's tables are not shareable or `table` holds more acks than this history.
    pub fn extend_page_table(&self, table: &PageTable, page: u64, acks_in_table: usize) -> Option<PageTable> {
        if !self.tables_shareable || acks_in_table > self.acks.len() {
            return None;
        }
        let mut floors = table.floors.clone();
        self.fold_acks(&mut floors, page, acks_in_table);
        Some(PageTable { floors })
    }

    /// Are this history's page tables functions of the file, the page and the number of acks
    /// alone, so that histories at other crash points with as many acks share them? They are
    /// when the acks are the file's first ones and every ack returned before the cut and counts
    /// only events begun before it: an ack's floors then read exactly the events it would read
    /// in any history that holds it. (A run records events and acks in trace order, so this
    /// fails only for an ack returned at the very position of an untorn cut.)
    pub fn tables_shareable(&self) -> bool {
        self.tables_shareable
    }

    /// How many acks this history holds.
    pub fn acks_returned(&self) -> usize {
        self.acks.len()
    }

    /// How many of this history's events touch page `page`: its writes on the page and its
    /// zeroings overlapping it. With the page's table, names what a verdict on the page's
    /// words reads of the history (both are threshold sets by trace position).
    pub fn page_events(&self, page: u64) -> usize {
        let (lo, hi) = (page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
        let writes = self.by_page.get(&page).map_or(0, Vec::len);
        let zeros = self
            .zeros
            .iter()
            .filter(|&&j| matches!(self.events[j], DataEvent::Zero { lo: a, hi: b, .. } if a < hi && lo < b))
            .count();
        writes + zeros
    }

    /// Folds the floors under acks `from..` into `floors`, page `page`'s table.
    ///
    /// Each ack's floors come from one pass over the page's events in history order, a range
    /// of words at a time: a write the ack counts sets its words' write floor, a zeroing begun
    /// before the ack returned clears the write floors it covers (it discarded those writes),
    /// and a zeroing the ack promises sets its words' zero floor. That is [`Self::floor_under`]
    /// for every word of the page at once; `floor_table_matches_the_per_word_floors` checks it.
    fn fold_acks(&self, floors: &mut [u32], page: u64, from: usize) {
        let (lo, hi) = (page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
        let writes = self.by_page.get(&page).map_or(&[][..], Vec::as_slice);
        let zeros: Vec<usize> = (self.zeros.iter().copied())
            .filter(|&j| matches!(self.events[j], DataEvent::Zero { lo: a, hi: b, .. } if a < hi && lo < b))
            .collect();
        let mut write = [NO_FLOOR; WORDS_PER_PAGE as usize];
        let mut zero = [NO_FLOOR; WORDS_PER_PAGE as usize];
        for a in self.acks[from..].iter().filter(|a| a.lo < hi && lo < a.hi) {
            let (alo, ahi) = (a.lo.max(lo), a.hi.min(hi));
            // The words of event `i` under this ack, as indexes into the page.
            let words = |i: usize| match self.events[i] {
                DataEvent::Write { lo: l, hi: h, .. } | DataEvent::Zero { lo: l, hi: h, .. } => {
                    let (l, h) = (l.clamp(alo, ahi), h.clamp(alo, ahi));
                    (l - lo) as usize..(h.max(l) - lo) as usize
                }
            };
            let mine = (alo - lo) as usize..(ahi - lo) as usize;
            write[mine.clone()].fill(NO_FLOOR);
            zero[mine.clone()].fill(NO_FLOOR);
            let index = |i: usize| u32::try_from(i).expect("fewer than 2^32 - 1 events");
            let (mut w, mut z) = (writes.iter().copied().take_while(|&i| i < a.events_before).peekable(), 0);
            loop {
                let next_zero = zeros.get(z).copied();
                match (w.peek().copied(), next_zero) {
                    (Some(i), j) if j.is_none_or(|j| i < j) => {
                        w.next();
                        write[words(i)].fill(index(i));
                    }
                    (_, Some(j)) => {
                        z += 1;
                        let DataEvent::Zero { at, done, .. } = self.events[j] else {
                            unreachable!("a zeroing")
                        };
                        if at <= a.at {
                            write[words(j)].fill(NO_FLOOR);
                        }
                        if !a.data_only && j < a.events_before && done <= a.started_at {
                            zero[words(j)].fill(index(j));
                        }
                    }
                    (None, None) => break,
                    (Some(_), None) => unreachable!("matched above"),
                }
            }
            for k in mine {
                let f = match (write[k], zero[k]) {
                    (NO_FLOOR, NO_FLOOR) => continue,
                    (NO_FLOOR, f) | (f, NO_FLOOR) => f,
                    (w, z) => w.max(z),
                };
                if floors[k] == NO_FLOOR || floors[k] < f {
                    floors[k] = f;
                }
            }
        }
    }

    /// Index of this file's first write on `word` with `version`.
    fn write_of(&self, word: u64, version: u32) -> Option<usize> {
        self.writes_on(word)
            .find(|&i| matches!(self.events[i], DataEvent::Write { version: v, .. } if v == version))
    }

    /// The newest event on `word` that one of `acks` covers.
    fn floor_among<'a>(&self, acks: impl Iterator<Item = &'a Ack>, word: u64) -> Option<usize> {
        acks.filter(|a| a.lo <= word && word < a.hi).filter_map(|a| self.floor_under(a, word)).max()
    }

    /// The newest event on `word` that ack `a` (which covers it) promises.
    fn floor_under(&self, a: &Ack, word: u64) -> Option<usize> {
        // A write that a truncate or punch began discarding before the ack returned is not the
        // ack's to promise: the unmap dropped its dirty state.
        let write = self
            .writes_on(word)
            .rev()
            .find(|&i| i < a.events_before)
            .filter(|&i| !self.zeros_on(word).any(|j| j > i && self.events[j].at() <= a.at));
        let zero = if a.data_only {
            None
        } else {
            self.zeros_on(word).rev().find(|&i| {
                i < a.events_before
                    && matches!(self.events[i], DataEvent::Zero { done, .. } if done <= a.started_at)
            })
        };
        write.max(zero)
    }

    /// Did a zeroing after event `i` free the block of `word`'s page, in a transaction the
    /// recovered state holds? Then a mapped page is a later allocation than event `i`'s.
    fn freed_after(&self, word: u64, i: usize) -> bool {
        let page = word / WORDS_PER_PAGE;
        self.zeros_on(word).any(|j| {
            j > i
                && matches!(self.events[j], DataEvent::Zero { freed: Some(f), .. }
                    if f.tid < self.mounted_before && (f.first..f.last).contains(&page))
        })
    }

    /// How many of this file's zeroings on page `page` freed its block in a transaction the
    /// recovered state holds: the only way the recovered state's allocation epoch
    /// (`mounted_before`) reaches a verdict on the page's words ([`Self::freed_after`]). Each
    /// one counts iff its tid is below `mounted_before`, so of two recovered states the earlier
    /// holds a subset of the later's, and equal counts mean equal sets.
    pub fn freed_held_on(&self, page: u64) -> u64 {
        let (lo, hi) = (page * WORDS_PER_PAGE, (page + 1) * WORDS_PER_PAGE);
        self.zeros
            .iter()
            .filter(|&&j| match self.events[j] {
                DataEvent::Zero { lo: a, hi: b, freed: Some(f), .. } => {
                    a < hi && lo < b && f.tid < self.mounted_before && (f.first..f.last).contains(&page)
                }
                _ => false,
            })
            .count() as u64
    }

    /// Index of this file's first write into block `b`, if any.
    fn first_write_to(&self, b: BlockNr) -> Option<usize> {
        self.by_page
            .values()
            .flatten()
            .copied()
            .filter(|&i| matches!(self.events[i], DataEvent::Write { block: Some(x), .. } if x == b))
            .min()
    }

    /// The first page at or after `page` this file wrote on, if any.
    pub fn next_written_page(&self, page: u64) -> Option<u64> {
        self.by_page.range(page..).next().map(|(&p, _)| p)
    }

    /// Did this file write nothing on the page of `word` (so zero is the only expected content,
    /// and an all-zero page needs no word-by-word judging)?
    pub fn page_unwritten(&self, word: u64) -> bool {
        !self.by_page.contains_key(&(word / WORDS_PER_PAGE))
    }

    /// Judges the word found at offset `word` (in words) of `file_id`, read from `block`.
    pub fn judge(&self, file_id: u32, word: u64, found: Word, block: Option<BlockNr>) -> WordVerdict {
        self.judge_in(file_id, word, None, found, block)
    }

    /// [`Self::judge`], looking up in `table` (the [`Self::page_table`] of the word's page) if
    /// given.
    pub fn judge_in(
        &self,
        file_id: u32,
        word: u64,
        table: Option<&PageTable>,
        found: Word,
        block: Option<BlockNr>,
    ) -> WordVerdict {
        let floor = match table {
            Some(t) => Some(t.floors[(word % WORDS_PER_PAGE) as usize])
                .filter(|&f| f != NO_FLOOR)
                .map(|f| f as usize),
            None => self.acked_floor(word),
        };
        let floor_version = floor.and_then(|i| match &self.events[i] {
            DataEvent::Write { version, .. } => Some(*version),
            DataEvent::Zero { .. } => None,
        });
        match found {
            Word::Zero => match floor_version {
                None => WordVerdict::Ok,
                Some(acked_version) => {
                    let zeroed_later = self.zeros_on(word).any(|i| Some(i) > floor);
                    if zeroed_later { WordVerdict::Ok } else { WordVerdict::Lost { acked_version } }
                }
            },
            Word::Data(t) if t.file_id == file_id && t.word_off == word => {
                let written = self.write_of(word, t.version);
                match (written, floor) {
                    (None, _) => WordVerdict::Foreign,
                    // Written into an earlier allocation of this offset, which the recovered
                    // state has freed: the block's old contents, like poison.
                    (Some(i), _) if self.freed_after(word, i) => WordVerdict::Stale,
                    (Some(i), Some(f)) if i < f => {
                        WordVerdict::Lost { acked_version: floor_version.unwrap_or(0) }
                    }
                    _ => WordVerdict::Ok,
                }
            }
            // Stale only if this very word of this block held that tag before: a write of that
            // file and offset landed in this block at this position.
            // ...and only if that write came before this file first wrote the block: data a
            // later owner wrote there is foreign, not the block's earlier contents.
            Word::Data(t) => {
                let Some(b) = block else { return WordVerdict::Foreign };
                let mine_from = self.first_write_to(b);
                let here = self.landed.get(&(t.version, b.0)).is_some_and(|writes| {
                    writes.iter().any(|&(i, f, lo, hi)| {
                        f == t.file_id && (lo..hi).contains(&t.word_off) && mine_from.is_none_or(|m| i < m)
                    }) && t.word_off % WORDS_PER_PAGE == word % WORDS_PER_PAGE
                });
                if here { WordVerdict::Stale } else { WordVerdict::Foreign }
            }
            Word::Poison(_) | Word::Other(_) => WordVerdict::Stale,
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;

    /// A random history of file 1 over three pages: writes and zeroings of random spans (some
    /// wider than a page), acks that count a random prefix of the events, begun a little before
    /// they return, some for data only; zeroings that finish or never do.
    fn random_record(seed: u64) -> RunRecord {
        let mut rng = crate::rng::rng_from_seed(seed);
        let mut record = RunRecord::default();
        let words = 3 * WORDS_PER_PAGE;
        for step in 0..rng.random_range(2..40usize) {
            let at = step * 10;
            let lo = rng.random_range(0..words);
            let width = [8, 64, 700][rng.random_range(0..3usize)];
            let hi = rng.random_range(lo + 1..=(lo + width).min(words));
            match rng.random_range(0..5) {
                0 | 1 => {
                    let version = step as u32;
                    record.events.push(DataEvent::Write { at, file_id: 1, lo, hi, version, block: None });
                }
                2 => {
                    let done = if rng.random_bool(0.8) { at + rng.random_range(1..30) } else { usize::MAX };
                    let kind = ZeroKind::Punch;
                    record.events.push(DataEvent::Zero { at, file_id: 1, lo, hi, done, kind, freed: None });
                }
                _ => record.acks.push(Ack {
                    at: at + rng.random_range(0..25),
                    file_id: 1,
                    lo,
                    hi,
                    events_before: rng.random_range(0..=record.events.len()),
                    started_at: at.saturating_sub(rng.random_range(0..25)),
                    data_only: rng.random_bool(0.3),
                    kind: AckKind::Fsync,
                    size_bytes: None,
                }),
            }
        }
        record
    }

    #[test]
    fn floor_table_matches_the_per_word_floors() {
        let (mut floors_seen, mut killed) = (0u64, 0u64);
        for seed in 0..300 {
            let record = random_record(seed);
            let landed = record.landed();
            for point in (0..=400).step_by(7) {
                let h = record.history(1, point, point, landed, 0);
                for page in 0..3 {
                    let table = h.page_table(page);
                    for k in 0..WORDS_PER_PAGE {
                        let word = page * WORDS_PER_PAGE + k;
                        let plain = h.acked_floor(word);
                        let tabled = table.floors[k as usize];
                        assert_eq!(
                            (tabled != NO_FLOOR).then_some(tabled as usize),
                            plain,
                            "seed {seed} point {point} word {word}"
                        );
                        floors_seen += u64::from(plain.is_some());
                        // A write an ack counts but a later zeroing discarded.
                        killed += u64::from(h.acks.iter().any(|a| {
                            a.lo <= word
                                && word < a.hi
                                && h.writes_on(word).any(|i| i < a.events_before)
                                && h.floor_under(a, word).is_none()
                        }));
                    }
                }
            }
        }
        assert!(floors_seen > 100_000, "{floors_seen} words with a floor");
        assert!(killed > 10_000, "{killed} words whose counted write a zeroing discarded");
    }
}
