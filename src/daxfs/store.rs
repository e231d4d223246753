//! `MetaStore`: the metadata façade the DAX/VFS layer uses — mount and recovery, transactions,
//! durability, allocation and checkpoints. Single-threaded: the scheduler makes each call atomic.

use super::balloc::Balloc;
use super::bugs::{Bug, BugSet};
use super::fsck::{FsckProblem, fsck};
use super::journal::{CommitOrder, ReplayPass, ScanResult, flush_commits, scan, write_transaction};
use super::layout::{
    Checkpoint, Geometry, check_extent_count, decode_superblock, read_checkpoint, read_home,
    write_checkpoint, write_home,
};
use super::meta::{Inode, Metadata};
use super::types::{BlockNr, FsError, Ino, Record, Tid};
use crate::pmem::{Device, PmemAddr};

/// Commit records left unflushed at most (async commit). The journal forces the batch when it
/// reaches this many, so a crash loses at most the last few unsynced operations, as with jbd2,
/// where one transaction commits while the next runs. It also keeps the number of journal lines
/// a recovery may find pending (each one a branch of the crash-state space it reads) small.
pub const MAX_UNFLUSHED_COMMITS: usize = 4;

/// Journal slots in use above which a commit first checkpoints (writes the metadata home and
/// advances the tail). jbd2 checkpoints as the journal's free space runs low; daxfs does it
/// early, so a mount never replays more than this many slots. Every crash state runs a mount,
/// so this bounds the cost of each one.
pub const CHECKPOINT_SLOTS: u64 = 128;

/// The mounted metadata of one daxfs image.
#[derive(Debug)]
pub struct MetaStore {
    geom: Geometry,
    bugs: BugSet,
    meta: Metadata,
    balloc: Balloc,
    /// The newest durable checkpoint (what a mount would start from).
    ckpt: Checkpoint,
    /// Absolute journal position of the next slot to write.
    head: u64,
    next_tid: Tid,
    /// Mount found every transaction with a smaller tid (checkpointed or replayed) and no other:
    /// what a crash oracle needs to know which of a run's transactions this state holds.
    mounted_before: Tid,
    /// Every tid up to this one is durable.
    durable: Option<Tid>,
    /// Commit records stored but not yet flushed: (tid, slot position), ascending.
    unflushed: Vec<(Tid, u64)>,
}

/// What a recovery found, for reports and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryInfo {
    pub replayed: usize,
    pub torn: bool,
}

/// Reads superblock, checkpoint and home metadata, and scans the journal. Read-only.
fn load(dev: &Device, verify_crc: bool) -> Result<(Geometry, Checkpoint, Metadata, ScanResult), FsError> {
    let mut sb = [0u8; 64];
    dev.read(PmemAddr(0), &mut sb)?;
    let geom = decode_superblock(&sb, dev.size_bytes())?;
    let ckpt = read_checkpoint(dev)?;
    let meta = Metadata::from_home(&geom, read_home(dev, &geom, ckpt.home_copy)?)?;
    let scanned = scan(dev, &geom, &ckpt, verify_crc)?;
    Ok((geom, ckpt, meta, scanned))
}

/// `ReplayPass::Replay`: applies the scanned transactions in tid order.
fn replay(meta: &mut Metadata, scanned: &ScanResult, relative: bool) -> Result<(), FsError> {
    for txn in &scanned.transactions {
        for r in &txn.records {
            // Bug::ReplayNotIdempotent (`replay-not-idempotent`, docs/design.md §7): relative updates.
            let applied = if relative { meta.apply_relative(r) } else { meta.apply(r) };
            applied.map_err(|e| FsError::Corrupt {
                what: "journal",
                detail: format!("{:?} of tid {}: {r:?}: {e}", ReplayPass::Replay, txn.tid.0),
            })?;
        }
    }
    Ok(())
}

/// Whether a mount writes the replayed metadata back (see [`MetaStore::mount_to_judge`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WriteBack {
    Yes,
    No,
}

impl MetaStore {
    /// Mounts: verifies the superblock, loads home metadata, replays the journal, writes the
    /// result back through the device (checkpoint) and fscks. Corruption is `Err(Corrupt)`.
    pub fn mount(dev: &mut Device, bugs: BugSet) -> Result<MetaStore, FsError> {
        let (store, _, problems) = Self::mount_unchecked(dev, bugs)?;
        match problems.first() {
            None => Ok(store),
            Some(p) => Err(FsError::Corrupt {
                what: "metadata after recovery",
                detail: format!("{p} ({} problems)", problems.len()),
            }),
        }
    }

    /// Like [`Self::mount`] but returns fsck's findings instead of failing on them (oracles
    /// classify them as `AllocatorInconsistent`).
    pub fn mount_unchecked(
        dev: &mut Device,
        bugs: BugSet,
    ) -> Result<(MetaStore, RecoveryInfo, Vec<FsckProblem>), FsError> {
        let (store, info) = Self::recover(dev, bugs)?;
        let problems = fsck(&store.meta, &store.geom);
        Ok((store, info, problems))
    }

    /// [`Self::mount_unchecked`] without its fsck: the mount the crash engine runs, whose
    /// oracle runs fsck on the metadata it judges.
    pub fn recover(dev: &mut Device, bugs: BugSet) -> Result<(MetaStore, RecoveryInfo), FsError> {
        Self::mount_with(dev, bugs, WriteBack::Yes)
    }

    /// Like [`Self::recover`], for a mount whose metadata is judged and then dropped: the
    /// replayed metadata is not written back (no home copy, no checkpoint slot), so the device
    /// is left as the crash left it. Everything else is the same, including every error the
    /// write-back could raise: the metadata and the replay counts are those of `recover`.
    pub fn mount_to_judge(dev: &mut Device, bugs: BugSet) -> Result<(MetaStore, RecoveryInfo), FsError> {
        Self::mount_with(dev, bugs, WriteBack::No)
    }

    /// Loads, replays and (`write_back`) writes the result back; no fsck.
    fn mount_with(
        dev: &mut Device,
        bugs: BugSet,
        write_back: WriteBack,
    ) -> Result<(MetaStore, RecoveryInfo), FsError> {
        // Bug::ReplaySkipsCrc (`replay-skips-crc`, docs/design.md §7): no record or body crc checks.
        let (geom, ckpt, mut meta, scanned) = load(dev, !bugs.contains(Bug::ReplaySkipsCrc))?;
        let relative = bugs.contains(Bug::ReplayNotIdempotent);
        replay(&mut meta, &scanned, relative)?;
        let info = RecoveryInfo { replayed: scanned.transactions.len(), torn: scanned.torn };
        // A torn transaction's tid is skipped so its leftover slots can never verify later.
        let next_tid = Tid(scanned.next_tid.0 + u64::from(scanned.torn));
        let mut store = MetaStore {
            geom,
            bugs,
            meta,
            balloc: Balloc::default(),
            ckpt,
            head: scanned.end,
            next_tid,
            mounted_before: scanned.next_tid,
            durable: next_tid.0.checked_sub(1).filter(|&t| t > 0).map(Tid),
            unflushed: Vec::new(),
        };
        if info.replayed > 0 || info.torn {
            // The fixed recovery writes the other home copy, so a crash here restarts from the
            // same tail state. Bug::ReplayNotIdempotent writes back in place: a replay that
            // believes it runs once sees no need for the second copy, and a crash between the
            // home write and the checkpoint slot replays the relative updates twice.
            let copy = if relative { ckpt.home_copy } else { 1 - ckpt.home_copy };
            match write_back {
                WriteBack::Yes => store.write_checkpoint_to(dev, copy)?,
                // The write-back's only failure that depends on the metadata.
                WriteBack::No => {
                    store.meta.inodes.iter().try_for_each(|i| check_extent_count(i.extents.len()))?
                }
            }
        }
        Ok((store, info))
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geom
    }

    pub fn meta(&self) -> &Metadata {
        &self.meta
    }

    pub fn bugs(&self) -> BugSet {
        self.bugs
    }

    /// The live inode `ino`; `NoEntry` if out of range or free.
    pub fn inode(&self, ino: Ino) -> Result<&Inode, FsError> {
        self.meta.inodes.get(ino.0 as usize).filter(|i| i.live).ok_or(FsError::NoEntry(ino.0))
    }

    /// Lowest free inode number.
    pub fn free_inode(&self) -> Result<Ino, FsError> {
        self.meta.inodes.iter().position(|i| !i.live).map(|i| Ino(i as u32)).ok_or(FsError::NoInodes)
    }

    /// Reserves `count` contiguous free blocks whose first block is a multiple of
    /// `align_blocks`. The caller commits `BitmapSet` + `ExtentSet` for them next (or
    /// [`Self::release`]s them). Busy blocks wait for their free to be durable.
    pub fn alloc(&mut self, dev: &mut Device, count: u64, align_blocks: u64) -> Result<BlockNr, FsError> {
        if count == 0 || align_blocks == 0 {
            return Err(FsError::Invalid("alloc of zero blocks or zero alignment"));
        }
        // Bug::ReuseBeforeFreeCommit (`reuse-before-free-commit`, docs/design.md §7): busy
        // extents are ignored, so blocks freed by a not-yet-durable transaction are handed out.
        let honor_busy = !self.bugs.contains(Bug::ReuseBeforeFreeCommit);
        let mut found = self.balloc.find(&self.meta, &self.geom, count, align_blocks, honor_busy);
        if found.is_none()
            && honor_busy
            && self.balloc.find(&self.meta, &self.geom, count, align_blocks, false).is_some()
        {
            self.force_all(dev)?;
            found = self.balloc.find(&self.meta, &self.geom, count, align_blocks, true);
        }
        let start = found.ok_or(FsError::NoSpace)?;
        self.balloc.reserve(start, count);
        Ok(start)
    }

    /// Gives back a reservation from [`Self::alloc`] that will not be committed.
    pub fn release(&mut self, start: BlockNr, count: u64) {
        self.balloc.release(start, count);
    }

    /// Blocks freed by transactions not yet durable.
    pub fn busy(&self) -> &[super::balloc::BusyExtent] {
        self.balloc.busy()
    }

    /// Commits one transaction: body stored, flushed, fenced; commit record stored (not
    /// flushed: async commit; see [`Self::force`]); records applied in memory. All or nothing:
    /// records that do not apply are rejected before anything is written.
    pub fn commit(
        &mut self,
        dev: &mut Device,
        records: &[Record],
        site: &'static str,
    ) -> Result<Tid, FsError> {
        if records.len() as u64 + 1 > self.geom.journal_slots() {
            return Err(FsError::TooBig("transaction larger than the journal"));
        }
        let mut next = self.meta.clone();
        for r in records {
            next.apply(r)?;
        }
        let used = self.head + records.len() as u64 + 1 - self.ckpt.tail;
        if used > self.geom.journal_slots().min(CHECKPOINT_SLOTS) {
            self.checkpoint(dev)?;
        }
        let tid = self.next_tid;
        let order = if self.bugs.contains(Bug::CommitBeforeLogFenced) {
            CommitOrder::CommitBeforeLogFenced
        } else {
            CommitOrder::BodyFencedFirst
        };
        let commit_pos = write_transaction(dev, &self.geom, self.head, tid, records, order, site)?;
        self.head = commit_pos + 1;
        self.next_tid = Tid(tid.0 + 1);
        self.unflushed.push((tid, commit_pos));
        self.meta = next;
        self.balloc.on_commit(records, tid);
        if self.unflushed.len() >= MAX_UNFLUSHED_COMMITS {
            // The batch is full: its commit records go to media together, as jbd2 commits the
            // running transaction when it fills or its interval ends.
            self.force_all(dev)?;
        }
        if crate::self_check_due!() {
            let problems = fsck(&self.meta, &self.geom);
            assert!(
                problems.is_empty(),
                "harness bug: tid {} from {site} broke metadata: {problems:?}",
                tid.0
            );
        }
        Ok(tid)
    }

    /// Makes every transaction up to `tid` durable (flush + fence of their commit records).
    pub fn force(&mut self, dev: &mut Device, tid: Tid) -> Result<(), FsError> {
        if self.is_durable(tid) {
            return Ok(());
        }
        if tid >= self.next_tid {
            return Err(FsError::Invalid("force of a transaction not yet committed"));
        }
        let n = self.unflushed.partition_point(|&(t, _)| t <= tid);
        let positions: Vec<u64> = self.unflushed.drain(..n).map(|(_, p)| p).collect();
        flush_commits(dev, &self.geom, &positions)?;
        self.durable = Some(tid);
        self.balloc.prune(self.durable);
        Ok(())
    }

    pub fn force_all(&mut self, dev: &mut Device) -> Result<(), FsError> {
        match self.last_tid() {
            Some(t) => self.force(dev, t),
            None => Ok(()),
        }
    }

    pub fn is_durable(&self, tid: Tid) -> bool {
        self.durable.is_some_and(|d| tid <= d)
    }

    /// Every transaction of the mounted image's history with a tid below this one is in the
    /// metadata (checkpointed or replayed at mount), and none at or above it.
    pub fn mounted_before(&self) -> Tid {
        self.mounted_before
    }

    /// The newest committed transaction, if any.
    pub fn last_tid(&self) -> Option<Tid> {
        self.next_tid.0.checked_sub(1).filter(|&t| t > 0).map(Tid)
    }

    /// Journal slots in use (between the checkpointed tail and the head).
    pub fn journal_used_slots(&self) -> u64 {
        self.head - self.ckpt.tail
    }

    /// The newest durable checkpoint.
    pub fn checkpoint_state(&self) -> Checkpoint {
        self.ckpt
    }

    /// Forces the journal, writes the metadata to the inactive home copy, flushes, fences, then
    /// advances the checkpoint (tail) in the other slot, flush, fence. No-op if nothing changed.
    pub fn checkpoint(&mut self, dev: &mut Device) -> Result<(), FsError> {
        self.force_all(dev)?;
        if self.head == self.ckpt.tail && self.next_tid.0 == self.ckpt.next_tid {
            return Ok(());
        }
        self.write_checkpoint_to(dev, 1 - self.ckpt.home_copy)
    }

    fn write_checkpoint_to(&mut self, dev: &mut Device, copy: u8) -> Result<(), FsError> {
        write_home(dev, &self.geom, copy, &self.meta.to_home())?;
        let next = Checkpoint {
            seq: self.ckpt.seq + 1,
            tail: self.head,
            next_tid: self.next_tid.0,
            home_copy: copy,
        };
        write_checkpoint(dev, &next)?;
        self.ckpt = next;
        Ok(())
    }
}
