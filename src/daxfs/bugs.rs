//! The switchable bug catalogue (docs/design.md §7). Every bug is off by default; each changes only
//! the behaviour its row describes. Ids are stable: they appear in artifacts and CI configs.

/// One switchable bug in daxfs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Bug {
    NoZeroOnAlloc,
    CommitBeforeZeroDurable,
    EndIoBeforeDataDurable,
    MissingEndIo,
    ReadMapsUnwritten,
    DoubleZeroUnwritten,
    NoEntryLock,
    ZeroPageNotUnmapped,
    PmdPartialZero,
    MapPagesUnlocked,
    FreeBeforeUnmap,
    TruncateIgnoresPin,
    ReuseBeforeFreeCommit,
    PinWithoutWriteFault,
    FsyncMissesDirty,
    CommitBeforeLogFenced,
    ReplaySkipsCrc,
    ReplayNotIdempotent,
    MapSyncIgnored,
}

/// Catalogue row: id, thread tag (docs/design.md §7), what the buggy model does, classes expected.
pub struct BugInfo {
    pub bug: Bug,
    pub id: &'static str,
    pub seed: &'static str,
    pub description: &'static str,
    pub classes: &'static [&'static str],
}

pub const CATALOGUE: &[BugInfo] = &[
    row(
        Bug::NoZeroOnAlloc,
        "no-zero-on-alloc",
        "000",
        "maps/uses a newly allocated block without zeroing it",
        &["StaleData"],
    ),
    row(
        Bug::CommitBeforeZeroDurable,
        "commit-before-zero-durable",
        "000",
        "zeroes a new block but commits the allocation before the zeroes are flushed and fenced",
        &["StaleData"],
    ),
    row(
        Bug::EndIoBeforeDataDurable,
        "end-io-before-data-durable",
        "000",
        "end_io commits unwritten->written before data/zeroes are durable",
        &["StaleData"],
    ),
    row(
        Bug::MissingEndIo,
        "missing-end-io",
        "000",
        "never converts unwritten extents after writing them",
        &["LostWrite"],
    ),
    row(
        Bug::ReadMapsUnwritten,
        "read-maps-unwritten",
        "000",
        "a read fault or read() on an unwritten extent returns the physical block",
        &["StaleData"],
    ),
    row(
        Bug::DoubleZeroUnwritten,
        "double-zero-unwritten",
        "000",
        "two write faults on one unwritten extent both zero and convert; the second wipes the first's data",
        &["IncoherentView", "LostWrite"],
    ),
    row(
        Bug::NoEntryLock,
        "no-entry-lock",
        "002",
        "read fault loads a hole without the entry lock while a write fault allocates",
        &["IncoherentView"],
    ),
    row(
        Bug::ZeroPageNotUnmapped,
        "zero-page-not-unmapped",
        "002",
        "inserting the real entry leaves zero-page mappings in place",
        &["IncoherentView"],
    ),
    row(
        Bug::PmdPartialZero,
        "pmd-partial-zero",
        "002",
        "a PMD fault zeroes only part of the 2 MiB extent",
        &["StaleData"],
    ),
    row(
        Bug::MapPagesUnlocked,
        "map-pages-unlocked",
        "003",
        "fault-around maps entries without invalidate_lock or revalidation during a punch",
        &["UseAfterFree", "ForeignData"],
    ),
    row(
        Bug::FreeBeforeUnmap,
        "free-before-unmap",
        "003",
        "punch/truncate frees blocks before unmapping them",
        &["UseAfterFree", "ForeignData"],
    ),
    row(
        Bug::TruncateIgnoresPin,
        "truncate-ignores-pin",
        "004",
        "truncate/punch does not wait for DMA pins",
        &["UseAfterFree", "ForeignData"],
    ),
    row(
        Bug::ReuseBeforeFreeCommit,
        "reuse-before-free-commit",
        "004",
        "freed blocks are reallocated before the free is committed and durable",
        &["ForeignData"],
    ),
    row(
        Bug::PinWithoutWriteFault,
        "pin-without-write-fault",
        "001",
        "a write pin on a hole maps the zero page; allocation deferred to unpin, ENOSPC dropped",
        &["LostWrite", "IncoherentView"],
    ),
    row(
        Bug::FsyncMissesDirty,
        "fsync-misses-dirty",
        "001",
        "fsync/msync clears dirty state without write-protecting, so later stores are never flushed",
        &["LostWrite"],
    ),
    row(
        Bug::CommitBeforeLogFenced,
        "commit-before-log-fenced",
        "journal",
        "commit record written before the body is fenced",
        &["AllocatorInconsistent", "StaleData"],
    ),
    row(
        Bug::ReplaySkipsCrc,
        "replay-skips-crc",
        "journal",
        "replay applies records without verifying checksums",
        &["AllocatorInconsistent", "RecoveryFailed"],
    ),
    row(
        Bug::ReplayNotIdempotent,
        "replay-not-idempotent",
        "journal",
        "replay applies relative (non-idempotent) updates",
        &["RecoveryNotIdempotent"],
    ),
    row(
        Bug::MapSyncIgnored,
        "map-sync-ignored",
        "002/000",
        "MAP_SYNC fault installs a writable PTE before allocation metadata is durable",
        &["LostWrite"],
    ),
];

const fn row(
    bug: Bug,
    id: &'static str,
    seed: &'static str,
    description: &'static str,
    classes: &'static [&'static str],
) -> BugInfo {
    BugInfo { bug, id, seed, description, classes }
}

const _: () = assert!(CATALOGUE.len() == 19);

/// The catalogue as every target lists its bugs ([`crate::target::Target::bug_catalogue`]):
/// id, what the buggy model does, and the thread it comes from.
pub static TARGET_CATALOGUE: [crate::target::BugInfo; CATALOGUE.len()] = {
    let mut out = [crate::target::BugInfo { id: "", summary: "", origin: "" }; CATALOGUE.len()];
    let mut i = 0;
    while i < CATALOGUE.len() {
        let r = &CATALOGUE[i];
        out[i] = crate::target::BugInfo { id: r.id, summary: r.description, origin: thread_of(r.seed) };
        i += 1;
    }
    out
};

/// The mailing-list thread (or other origin) a catalogue tag stands for (docs/design.md §7).
const fn thread_of(tag: &str) -> &'static str {
    const THREADS: [(&str, &str); 7] = [
        ("000", "thread 000: Dave Chinner's 2014 review of the DAX page-fault handler"),
        ("001", "thread 001: the 2018 put_user_page() discussion (GUP pins and DAX)"),
        ("002", "thread 002: Jan Kara's 2016 \"dax: fix data corruption race\""),
        ("003", "thread 003: Jan Kara's 2020 reply on \"xfs: ->map_pages needs MMAPLOCK_SHARED\""),
        ("004", "thread 004: Jeff Layton's 2017 review of the DAX truncate-vs-DMA series"),
        ("002/000", "threads 002 and 000: the zero-page race and the unzeroed allocation together"),
        ("journal", "classic journaling mistakes (no thread)"),
    ];
    let mut i = 0;
    while i < THREADS.len() {
        if same(THREADS[i].0, tag) {
            return THREADS[i].1;
        }
        i += 1;
    }
    panic!("a catalogue tag without a thread");
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

impl Bug {
    pub fn info(self) -> &'static BugInfo {
        CATALOGUE.iter().find(|r| r.bug == self).expect("every bug has a catalogue row")
    }
    pub fn id(self) -> &'static str {
        self.info().id
    }
    pub fn from_id(id: &str) -> Option<Bug> {
        CATALOGUE.iter().find(|r| r.id == id).map(|r| r.bug)
    }
}

/// A set of enabled bugs. Empty (the fixed model) by default.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct BugSet(u32);

/// An id not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown bug id `{id}`; known ids: {known}")]
pub struct UnknownBug {
    pub id: String,
    pub known: String,
}

impl BugSet {
    pub const NONE: BugSet = BugSet(0);

    pub fn with(mut self, bug: Bug) -> Self {
        self.0 |= 1 << bug as u32;
        self
    }
    pub fn contains(self, bug: Bug) -> bool {
        self.0 & (1 << bug as u32) != 0
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Bug> {
        CATALOGUE.iter().map(|r| r.bug).filter(move |b| self.contains(*b))
    }
    pub fn ids(self) -> Vec<&'static str> {
        self.iter().map(Bug::id).collect()
    }

    /// Parses a comma-separated id list, as in `CRASHSIM_BUGS=id,id`. Empty items are ignored.
    pub fn parse_list(list: &str) -> Result<BugSet, UnknownBug> {
        let mut set = BugSet::NONE;
        for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            set = set.with(Bug::from_id(id).ok_or_else(|| UnknownBug {
                id: id.to_string(),
                known: CATALOGUE.iter().map(|r| r.id).collect::<Vec<_>>().join(", "),
            })?);
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_are_unique() {
        for r in CATALOGUE {
            assert_eq!(Bug::from_id(r.id), Some(r.bug));
            assert_eq!(r.bug.id(), r.id);
        }
        let mut ids: Vec<_> = CATALOGUE.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CATALOGUE.len());
    }

    #[test]
    fn parse_list_rejects_unknown_ids() {
        let set = BugSet::parse_list("no-zero-on-alloc, missing-end-io").unwrap();
        assert!(set.contains(Bug::NoZeroOnAlloc) && set.contains(Bug::MissingEndIo));
        assert!(!set.contains(Bug::NoEntryLock));
        let err = BugSet::parse_list("no-such-bug").unwrap_err();
        assert_eq!(err.id, "no-such-bug");
        assert!(err.known.contains("replay-skips-crc"));
    }
}
