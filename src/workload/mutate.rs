//! Structure-aware mutation and crossover of a [`Workload`], for the fuzzer's custom mutator.
//!
//! A mutation edits the workload language itself: it inserts, deletes, duplicates, swaps or
//! moves operations (a copied run of operations in another thread is a new race), changes an
//! operation's slot, offset, length or kind, edits the schedule, flips an option, or adds or
//! drops a thread. New values lean towards what the generator finds interesting: hot blocks
//! and words, the workload's own files, mappings and offsets, whole PMDs.
//!
//! After every edit [`repair`] makes the workload valid again: ranges re-aligned and clamped,
//! slots in range, the pin rule ([`Workload::check_pin_discipline`]) restored by unpinning
//! before any operation a pinned thread may not run, and the op bound kept by dropping
//! operations outside pin brackets. A mutation that cannot be repaired, or changes nothing,
//! is rejected and the workload stays as it was, so a mutated workload is always valid.
//! All choices come from the caller's [`SimRng`].

use rand::RngExt as _;

use super::generator::{HOT_BLOCKS, HOT_WORD_BYTES};
use super::{
    FILE_BYTES_MAX, FILES_MAX, FileSlot, MAPS_MAX, MapSlot, OPS_MAX, Op, PAGE_BYTES, PINS_MAX, PMD_BYTES,
    PinSlot, SCHEDULE_MAX, THREADS_MAX, WORD_BYTES, Workload,
};
use crate::rng::SimRng;

#[derive(Copy, Clone, Debug)]
enum Mutation {
    InsertOps,
    DeleteOp,
    DuplicateOp,
    CopyRun,
    SwapOps,
    ChangeSlot,
    ChangeOffset,
    ChangeLength,
    ChangeKind,
    MoveOp,
    Schedule,
    FlipOption,
    AddThread,
    RemoveThread,
}

const MUTATIONS: [(u32, Mutation); 14] = [
    (14, Mutation::InsertOps),
    (8, Mutation::DeleteOp),
    (6, Mutation::DuplicateOp),
    (6, Mutation::CopyRun),
    (6, Mutation::SwapOps),
    (8, Mutation::ChangeSlot),
    (10, Mutation::ChangeOffset),
    (8, Mutation::ChangeLength),
    (6, Mutation::ChangeKind),
    (8, Mutation::MoveOp),
    (14, Mutation::Schedule),
    (2, Mutation::FlipOption),
    (2, Mutation::AddThread),
    (2, Mutation::RemoveThread),
];

/// Kinds of new operations, weighted like the generator's mix (map access first).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Kind {
    Create,
    Unlink,
    Write,
    Read,
    Mmap,
    Munmap,
    Store,
    Load,
    Persist,
    Msync,
    Fallocate,
    PunchHole,
    Truncate,
    Fsync,
    Dma,
    Sync,
}

const KINDS: [(u32, Kind); 16] = [
    (2, Kind::Create),
    (1, Kind::Unlink),
    (10, Kind::Write),
    (5, Kind::Read),
    (9, Kind::Mmap),
    (2, Kind::Munmap),
    (14, Kind::Store),
    (6, Kind::Load),
    (5, Kind::Persist),
    (5, Kind::Msync),
    (6, Kind::Fallocate),
    (7, Kind::PunchHole),
    (7, Kind::Truncate),
    (5, Kind::Fsync),
    (5, Kind::Dma),
    (3, Kind::Sync),
];

fn weighted<T: Copy>(rng: &mut SimRng, table: &[(u32, T)]) -> T {
    let total: u32 = table.iter().map(|&(w, _)| w).sum();
    let mut r = rng.random_range(0..total);
    for &(w, v) in table {
        if r < w {
            return v;
        }
        r -= w;
    }
    unreachable!("r < total")
}

fn chance(rng: &mut SimRng, percent: u32) -> bool {
    rng.random_range(0..100) < percent
}

impl Workload {
    /// Applies one random structural mutation and repairs the result; returns whether the
    /// workload changed. On `false` it is unchanged. A workload that passed
    /// [`Workload::validate`] and [`Workload::check_pin_discipline`] still passes both.
    pub fn mutate(&mut self, rng: &mut SimRng) -> bool {
        let mut c = self.clone();
        apply(&mut c, weighted(rng, &MUTATIONS), rng);
        if repair(&mut c) && c != *self {
            *self = c;
            return true;
        }
        false
    }

    /// A child of `self` and `other`: threads picked from either or spliced from both, the
    /// schedule of either or spliced, then repaired. Always valid.
    pub fn crossover(&self, other: &Workload, rng: &mut SimRng) -> Workload {
        let mut c = self.clone();
        match rng.random_range(0..3) {
            0 => {
                let n = rng.random_range(1..=self.threads.len().max(other.threads.len()));
                c.threads = (0..n)
                    .map(|i| match (self.threads.get(i), other.threads.get(i)) {
                        (Some(a), Some(b)) => if chance(rng, 50) { a } else { b }.clone(),
                        (a, b) => a.or(b).cloned().unwrap_or_default(),
                    })
                    .collect();
            }
            1 => {
                let i = rng.random_range(0..self.threads.len().min(other.threads.len()));
                let (a, b) = (&self.threads[i], &other.threads[i]);
                let (cut_a, cut_b) = (rng.random_range(0..=a.len()), rng.random_range(0..=b.len()));
                c.threads[i] = a[..cut_a].iter().chain(&b[cut_b..]).copied().collect();
            }
            _ => {
                let donor = other.threads[rng.random_range(0..other.threads.len())].clone();
                if c.threads.len() < THREADS_MAX {
                    c.threads.push(donor);
                } else {
                    let i = rng.random_range(0..c.threads.len());
                    c.threads[i] = donor;
                }
            }
        }
        c.schedule = match rng.random_range(0..3) {
            0 => self.schedule.clone(),
            1 => other.schedule.clone(),
            _ => {
                let (k_a, k_b) =
                    (rng.random_range(0..=self.schedule.len()), rng.random_range(0..=other.schedule.len()));
                self.schedule[..k_a].iter().chain(&other.schedule[k_b..]).copied().collect()
            }
        };
        if chance(rng, 50) {
            c.options = other.options;
        }
        if repair(&mut c) { c } else { self.clone() }
    }
}

fn apply(w: &mut Workload, m: Mutation, rng: &mut SimRng) {
    let n = w.threads.len();
    let t = rng.random_range(0..n);
    match m {
        Mutation::InsertOps => {
            let pos = rng.random_range(0..=w.threads[t].len());
            let ops = fresh_ops(w, t, rng);
            w.threads[t].splice(pos..pos, ops);
        }
        Mutation::DeleteOp => {
            if let Some((t, i)) = pick_op(w, rng) {
                w.threads[t].remove(i);
            }
        }
        Mutation::DuplicateOp => {
            if let Some((from, i)) = pick_op(w, rng) {
                let op = w.threads[from][i];
                let pos = rng.random_range(0..=w.threads[t].len());
                w.threads[t].insert(pos, op);
            }
        }
        Mutation::CopyRun => copy_run(w, t, rng),
        Mutation::SwapOps => {
            let len = w.threads[t].len();
            if len >= 2 {
                let i = rng.random_range(0..len - 1);
                let j = if chance(rng, 50) { i + 1 } else { rng.random_range(0..len) };
                w.threads[t].swap(i, j);
            }
        }
        Mutation::ChangeSlot => {
            if let Some((t, i)) = pick_op(w, rng) {
                let op = w.threads[t][i];
                w.threads[t][i] = with_new_slot(w, t, op, rng);
            }
        }
        Mutation::ChangeOffset => {
            if let Some((t, i)) = pick_op(w, rng) {
                let offsets = all_offsets(w);
                if let Some(off) = off_mut(&mut w.threads[t][i]) {
                    *off = tweak_offset(*off, &offsets, rng);
                }
            }
        }
        Mutation::ChangeLength => {
            if let Some((t, i)) = pick_op(w, rng) {
                if let Some(len) = len_mut(&mut w.threads[t][i]) {
                    *len = tweak_length(*len, rng);
                }
            }
        }
        Mutation::ChangeKind => {
            if let Some((t, i)) = pick_op(w, rng) {
                let old = w.threads[t][i];
                let mut new = fresh_ops(w, t, rng)[0];
                inherit(&mut new, &old);
                w.threads[t][i] = new;
            }
        }
        Mutation::MoveOp => {
            if let Some((from, i)) = pick_op(w, rng) {
                let op = w.threads[from].remove(i);
                let to = if n < THREADS_MAX && chance(rng, 15) {
                    w.threads.push(Vec::new());
                    n
                } else {
                    rng.random_range(0..n)
                };
                // Near the same position, so the moved op runs at about the same time.
                let pos = (i + rng.random_range(0..3)).saturating_sub(1).min(w.threads[to].len());
                w.threads[to].insert(pos, op);
            }
        }
        Mutation::Schedule => perturb_schedule(&mut w.schedule, n, rng),
        Mutation::FlipOption => w.options.fault_around = !w.options.fault_around,
        Mutation::AddThread => {
            if n < THREADS_MAX {
                w.threads.push(Vec::new());
                if chance(rng, 50) {
                    copy_run(w, n, rng);
                } else {
                    let ops = fresh_ops(w, n, rng);
                    w.threads[n] = ops;
                }
            }
        }
        Mutation::RemoveThread => {
            if n > 1 {
                w.threads.remove(t);
            }
        }
    }
}

/// A uniformly chosen operation, as (thread, index).
fn pick_op(w: &Workload, rng: &mut SimRng) -> Option<(usize, usize)> {
    let count = w.op_count();
    if count == 0 {
        return None;
    }
    let mut k = rng.random_range(0..count);
    for (t, ops) in w.threads.iter().enumerate() {
        if k < ops.len() {
            return Some((t, k));
        }
        k -= ops.len();
    }
    unreachable!("k < op_count")
}

/// Copies a run of 1-4 operations of one thread into thread `to`, at about the same position:
/// the generator's racer, made from the workload's own operations.
fn copy_run(w: &mut Workload, to: usize, rng: &mut SimRng) {
    let Some((from, start)) = pick_op(w, rng) else { return };
    let end = (start + rng.random_range(1..=4)).min(w.threads[from].len());
    let run: Vec<Op> = w.threads[from][start..end].to_vec();
    let pos = start.min(w.threads[to].len());
    w.threads[to].splice(pos..pos, run);
}

/// New operations for thread `t`: one, or a pin bracket (pin, DMA writes, unpin).
fn fresh_ops(w: &Workload, t: usize, rng: &mut SimRng) -> Vec<Op> {
    let file = pick_file(w, rng);
    let map = pick_map(w, rng);
    let data = |rng: &mut SimRng| (pick_offset(w, rng), pick_length(rng));
    let op = match weighted(rng, &KINDS) {
        Kind::Create => Op::Create { file },
        Kind::Unlink => Op::Unlink { file },
        Kind::Write => {
            let (off, len) = data(rng);
            Op::Write { file, off, len }
        }
        Kind::Read => {
            let (off, len) = data(rng);
            Op::Read { file, off, len }
        }
        Kind::Mmap => {
            let (off, len) = if chance(rng, 50) { (0, 2 * PMD_BYTES) } else { data(rng) };
            let own = MapSlot((2 * t as u8 + rng.random_range(0..2)) % MAPS_MAX);
            Op::Mmap { map: own, file, off, len, map_sync: chance(rng, 35) }
        }
        Kind::Munmap => Op::Munmap { map },
        Kind::Store => {
            let (off, len) = data(rng);
            Op::Store { map, off, len }
        }
        Kind::Load => {
            let (off, len) = data(rng);
            Op::Load { map, off, len }
        }
        Kind::Persist => {
            let (off, len) = data(rng);
            Op::Persist { map, off, len }
        }
        Kind::Msync => {
            let (off, len) = data(rng);
            Op::Msync { map, off, len }
        }
        Kind::Fallocate => {
            let (off, len) = data(rng);
            Op::Fallocate { file, off, len }
        }
        Kind::PunchHole => {
            let (off, len) = data(rng);
            Op::PunchHole { file, off, len }
        }
        Kind::Truncate => Op::Truncate { file, size: pick_offset(w, rng) },
        Kind::Fsync => Op::Fsync { file },
        Kind::Dma => return dma_bracket(t, map, rng),
        Kind::Sync => Op::Sync,
    };
    vec![normalize(op)]
}

fn dma_bracket(t: usize, map: MapSlot, rng: &mut SimRng) -> Vec<Op> {
    let pin = PinSlot(t as u8 % PINS_MAX);
    let block = HOT_BLOCKS[rng.random_range(0..HOT_BLOCKS.len())];
    let pages = rng.random_range(1..=4);
    let mut ops =
        vec![Op::Pin { pin, map, off: block * PAGE_BYTES, len: pages * PAGE_BYTES, write: !chance(rng, 10) }];
    for _ in 0..rng.random_range(1..=2) {
        let off = HOT_WORD_BYTES[rng.random_range(0..HOT_WORD_BYTES.len())];
        let len = [WORD_BYTES, 64, PAGE_BYTES][rng.random_range(0..3)];
        ops.push(Op::DmaWrite { pin, off, len });
    }
    ops.push(Op::Unpin { pin });
    ops.into_iter().map(normalize).collect()
}

/// Mostly a file the workload creates, else one of the first few slots, rarely any.
fn pick_file(w: &Workload, rng: &mut SimRng) -> FileSlot {
    let created: Vec<FileSlot> = w
        .threads
        .iter()
        .flatten()
        .filter_map(|op| if let Op::Create { file } = op { Some(*file) } else { None })
        .collect();
    match rng.random_range(0..100) {
        0..80 if !created.is_empty() => created[rng.random_range(0..created.len())],
        0..95 => FileSlot(rng.random_range(0..4)),
        _ => FileSlot(rng.random_range(0..FILES_MAX)),
    }
}

/// Mostly a slot the workload maps, else any.
fn pick_map(w: &Workload, rng: &mut SimRng) -> MapSlot {
    let mapped: Vec<MapSlot> = w
        .threads
        .iter()
        .flatten()
        .filter_map(|op| if let Op::Mmap { map, .. } = op { Some(*map) } else { None })
        .collect();
    if !mapped.is_empty() && chance(rng, 80) {
        return mapped[rng.random_range(0..mapped.len())];
    }
    MapSlot(rng.random_range(0..MAPS_MAX))
}

fn all_offsets(w: &Workload) -> Vec<u64> {
    w.threads.iter().flatten().filter_map(off_of).collect()
}

/// An offset: one the workload already uses, a hot block and word (sometimes a PMD later), or
/// any.
fn pick_offset(w: &Workload, rng: &mut SimRng) -> u64 {
    let used = all_offsets(w);
    match rng.random_range(0..100) {
        0..40 if !used.is_empty() => used[rng.random_range(0..used.len())],
        0..88 => hot_offset(rng),
        _ => rng.random_range(0..FILE_BYTES_MAX / WORD_BYTES) * WORD_BYTES,
    }
}

fn hot_offset(rng: &mut SimRng) -> u64 {
    let block = HOT_BLOCKS[rng.random_range(0..HOT_BLOCKS.len())];
    let shift = if chance(rng, 15) { PMD_BYTES } else { 0 };
    block * PAGE_BYTES + shift + HOT_WORD_BYTES[rng.random_range(0..HOT_WORD_BYTES.len())]
}

fn pick_length(rng: &mut SimRng) -> u64 {
    match rng.random_range(0..100) {
        0..20 => WORD_BYTES,
        20..40 => 64,
        40..60 => PAGE_BYTES,
        60..70 => 2 * PAGE_BYTES,
        70..78 => PMD_BYTES,
        _ => rng.random_range(1..=2 * PAGE_BYTES / WORD_BYTES) * WORD_BYTES,
    }
}

fn tweak_offset(off: u64, used: &[u64], rng: &mut SimRng) -> u64 {
    let step = [WORD_BYTES, 64, PAGE_BYTES, PMD_BYTES][rng.random_range(0..4)];
    match rng.random_range(0..6) {
        0 => off.saturating_add(step),
        1 => off.saturating_sub(step),
        2 if !used.is_empty() => used[rng.random_range(0..used.len())],
        3 => off / PMD_BYTES * PMD_BYTES,
        4 => 0,
        _ => hot_offset(rng),
    }
}

fn tweak_length(len: u64, rng: &mut SimRng) -> u64 {
    match rng.random_range(0..5) {
        0 => len.saturating_mul(2),
        1 => len / 2,
        2 => len.saturating_add(WORD_BYTES),
        3 => len.saturating_sub(WORD_BYTES),
        _ => pick_length(rng),
    }
}

fn with_new_slot(w: &Workload, t: usize, op: Op, rng: &mut SimRng) -> Op {
    let mut op = op;
    match &mut op {
        Op::Mmap { map, file, .. } => {
            if chance(rng, 50) {
                *map = MapSlot((2 * t as u8 + rng.random_range(0..2)) % MAPS_MAX);
            } else {
                *file = pick_file(w, rng);
            }
        }
        Op::Pin { pin, map, .. } => {
            if chance(rng, 50) {
                *pin = PinSlot(rng.random_range(0..PINS_MAX));
            } else {
                *map = pick_map(w, rng);
            }
        }
        Op::Create { file }
        | Op::Unlink { file }
        | Op::Write { file, .. }
        | Op::Read { file, .. }
        | Op::Fallocate { file, .. }
        | Op::PunchHole { file, .. }
        | Op::Truncate { file, .. }
        | Op::Fsync { file } => *file = pick_file(w, rng),
        Op::Munmap { map }
        | Op::Store { map, .. }
        | Op::Load { map, .. }
        | Op::Persist { map, .. }
        | Op::Msync { map, .. } => *map = pick_map(w, rng),
        Op::DmaWrite { pin, .. } | Op::Unpin { pin } => *pin = PinSlot(rng.random_range(0..PINS_MAX)),
        Op::Sync => {}
    }
    op
}

/// `new` takes `old`'s file, mapping, offset and length where it has them.
fn inherit(new: &mut Op, old: &Op) {
    let (file, map) = (old.file(), old.map());
    match new {
        Op::Mmap { file: f, .. }
        | Op::Create { file: f }
        | Op::Unlink { file: f }
        | Op::Fsync { file: f } => *f = file.unwrap_or(*f),
        Op::Write { file: f, .. }
        | Op::Read { file: f, .. }
        | Op::Fallocate { file: f, .. }
        | Op::PunchHole { file: f, .. }
        | Op::Truncate { file: f, .. } => *f = file.unwrap_or(*f),
        Op::Store { map: m, .. }
        | Op::Load { map: m, .. }
        | Op::Persist { map: m, .. }
        | Op::Msync { map: m, .. } => *m = map.unwrap_or(*m),
        _ => {}
    }
    if let (Some(off), Some(o)) = (off_of(old), off_mut(new)) {
        *o = off;
    }
    if let (Some(len), Some(l)) = (len_of(old), len_mut(new)) {
        *l = len;
    }
    *new = normalize(*new);
}

fn off_of(op: &Op) -> Option<u64> {
    off_mut(&mut op.clone()).map(|o| *o)
}

fn len_of(op: &Op) -> Option<u64> {
    len_mut(&mut op.clone()).map(|l| *l)
}

/// The op's offset (a truncate's size counts as one).
fn off_mut(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::Write { off, .. }
        | Op::Read { off, .. }
        | Op::Mmap { off, .. }
        | Op::Store { off, .. }
        | Op::Load { off, .. }
        | Op::Persist { off, .. }
        | Op::Msync { off, .. }
        | Op::Fallocate { off, .. }
        | Op::PunchHole { off, .. }
        | Op::Pin { off, .. }
        | Op::DmaWrite { off, .. } => Some(off),
        Op::Truncate { size, .. } => Some(size),
        _ => None,
    }
}

fn len_mut(op: &mut Op) -> Option<&mut u64> {
    match op {
        Op::Write { len, .. }
        | Op::Read { len, .. }
        | Op::Mmap { len, .. }
        | Op::Store { len, .. }
        | Op::Load { len, .. }
        | Op::Persist { len, .. }
        | Op::Msync { len, .. }
        | Op::Fallocate { len, .. }
        | Op::PunchHole { len, .. }
        | Op::Pin { len, .. }
        | Op::DmaWrite { len, .. } => Some(len),
        _ => None,
    }
}

/// Schedule edits; new entries are thread indexes below `threads`.
fn perturb_schedule(s: &mut Vec<u8>, threads: usize, rng: &mut SimRng) {
    let entry = |rng: &mut SimRng| rng.random_range(0..threads) as u8;
    let at = |s: &Vec<u8>, rng: &mut SimRng| rng.random_range(0..=s.len());
    match rng.random_range(0..8) {
        0 if !s.is_empty() => {
            let i = rng.random_range(0..s.len());
            s[i] = entry(rng);
        }
        1 => {
            let i = at(s, rng);
            s.insert(i, entry(rng));
        }
        2 if !s.is_empty() => {
            let i = rng.random_range(0..s.len());
            s.remove(i);
        }
        3 => {
            let (i, e, k) = (at(s, rng), entry(rng), rng.random_range(2..=12));
            s.splice(i..i, std::iter::repeat_n(e, k));
        }
        4 => {
            let (i, first, k) = (at(s, rng), rng.random_range(0..threads), rng.random_range(4..=32));
            s.splice(i..i, (0..k).map(|j| ((first + j) % threads) as u8));
        }
        5 if s.len() >= 2 => {
            let (i, j) = (rng.random_range(0..s.len()), rng.random_range(0..s.len()));
            s.swap(i, j);
        }
        6 => {
            let i = at(s, rng);
            s.truncate(i);
        }
        _ if !s.is_empty() => {
            let start = rng.random_range(0..s.len());
            let end = (start + rng.random_range(1..=16)).min(s.len());
            let run = s[start..end].to_vec();
            let i = at(s, rng);
            s.splice(i..i, run);
        }
        _ => s.push(entry(rng)),
    }
    s.truncate(SCHEDULE_MAX);
}

/// Slots in range, ranges aligned and inside the file bound.
fn normalize(op: Op) -> Op {
    let mut op = op;
    let grain = match op {
        Op::Mmap { .. } | Op::Fallocate { .. } | Op::PunchHole { .. } | Op::Pin { .. } => PAGE_BYTES,
        _ => WORD_BYTES,
    };
    if let Op::Truncate { size, .. } = &mut op {
        *size = (*size / WORD_BYTES * WORD_BYTES).min(FILE_BYTES_MAX);
    } else if let Some(off) = off_mut(&mut op) {
        *off = (*off / grain * grain).min(FILE_BYTES_MAX - grain);
        let end_room = FILE_BYTES_MAX - *off;
        if let Some(len) = len_mut(&mut op) {
            *len = (*len / grain * grain).clamp(grain, end_room);
        }
    }
    match &mut op {
        Op::Create { file }
        | Op::Unlink { file }
        | Op::Write { file, .. }
        | Op::Read { file, .. }
        | Op::Fallocate { file, .. }
        | Op::PunchHole { file, .. }
        | Op::Truncate { file, .. }
        | Op::Fsync { file } => file.0 %= FILES_MAX,
        Op::Mmap { map, file, .. } => {
            map.0 %= MAPS_MAX;
            file.0 %= FILES_MAX;
        }
        Op::Pin { pin, map, .. } => {
            pin.0 %= PINS_MAX;
            map.0 %= MAPS_MAX;
        }
        Op::Munmap { map }
        | Op::Store { map, .. }
        | Op::Load { map, .. }
        | Op::Persist { map, .. }
        | Op::Msync { map, .. } => map.0 %= MAPS_MAX,
        Op::DmaWrite { pin, .. } | Op::Unpin { pin } => pin.0 %= PINS_MAX,
        Op::Sync => {}
    }
    op
}

/// Makes `w` valid (see the module doc); false when the op bound cannot be kept.
pub(super) fn repair(w: &mut Workload) -> bool {
    if w.threads.is_empty() {
        w.threads.push(Vec::new());
    }
    w.threads.truncate(THREADS_MAX);
    for (t, ops) in w.threads.iter_mut().enumerate() {
        let fixed: Vec<Op> = ops.iter().copied().map(normalize).map(|op| own_pin(op, t)).collect();
        *ops = close_pins(fixed);
    }
    while w.op_count() > OPS_MAX {
        // Outside a pin bracket an op can go without breaking the pin rule.
        let longest = (0..w.threads.len()).max_by_key(|&t| w.threads[t].len()).expect("a thread");
        let ops = &mut w.threads[longest];
        let Some(i) =
            ops.iter().rposition(|op| !matches!(op, Op::Pin { .. } | Op::DmaWrite { .. } | Op::Unpin { .. }))
        else {
            return false;
        };
        ops.remove(i);
    }
    w.schedule.truncate(SCHEDULE_MAX);
    let valid = w.validate().is_ok() && w.check_pin_discipline().is_ok();
    debug_assert!(valid, "repair left an invalid workload: {w:?}");
    valid
}

/// `op` of thread `t` with its pin slot, if it names one, set to the thread's own slot `t`.
fn own_pin(mut op: Op, t: usize) -> Op {
    if let Op::Pin { pin, .. } | Op::DmaWrite { pin, .. } | Op::Unpin { pin } = &mut op {
        *pin = PinSlot(t as u8);
    }
    op
}

/// One thread's ops with an unpin inserted before any op a pinned thread may not run, and at
/// the end while a pin is held.
fn close_pins(ops: Vec<Op>) -> Vec<Op> {
    let mut out = Vec::with_capacity(ops.len());
    let mut held: Option<PinSlot> = None;
    for op in ops {
        match (op, held) {
            (Op::Unpin { pin }, Some(h)) if pin == h => held = None,
            (Op::Unpin { .. } | Op::DmaWrite { .. }, _) => {}
            (_, Some(h)) => {
                out.push(Op::Unpin { pin: h });
                held = None;
            }
            (_, None) => {}
        }
        if let Op::Pin { pin, .. } = op {
            held = Some(pin);
        }
        out.push(op);
    }
    if let Some(pin) = held {
        out.push(Op::Unpin { pin });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::rng_from_seed;

    #[test]
    fn repair_unpins_before_a_forbidden_op_and_at_the_end() {
        let (pin, map, file) = (PinSlot(0), MapSlot(0), FileSlot(0));
        let pinned = Op::Pin { pin, map, off: 0, len: PAGE_BYTES, write: true };
        let mut w = Workload {
            threads: vec![vec![
                pinned,
                Op::DmaWrite { pin, off: 0, len: 8 },
                Op::Truncate { file, size: 0 },
                pinned,
            ]],
            schedule: vec![],
            options: Default::default(),
        };
        assert!(w.check_pin_discipline().is_err());
        assert!(repair(&mut w));
        let want = vec![
            pinned,
            Op::DmaWrite { pin, off: 0, len: 8 },
            Op::Unpin { pin },
            Op::Truncate { file, size: 0 },
            pinned,
            Op::Unpin { pin },
        ];
        assert_eq!(w.threads[0], want);
    }

    #[test]
    fn repair_keeps_the_op_bound_outside_pin_brackets() {
        let mut w = Workload::from_seed(1);
        w.threads[0].extend(vec![Op::Sync; OPS_MAX]);
        assert!(repair(&mut w));
        assert_eq!(w.op_count(), OPS_MAX);
        let pin = PinSlot(0);
        let bracket =
            [Op::Pin { pin, map: MapSlot(0), off: 0, len: PAGE_BYTES, write: true }, Op::Unpin { pin }];
        let mut only_pins = Workload {
            threads: vec![bracket.repeat(OPS_MAX)],
            schedule: vec![],
            options: Default::default(),
        };
        assert!(!repair(&mut only_pins), "nothing outside a bracket to drop");
    }

    #[test]
    fn normalize_aligns_and_clamps_every_range() {
        let op = normalize(Op::Fallocate { file: FileSlot(17), off: FILE_BYTES_MAX + 5, len: 3 });
        assert_eq!(
            op,
            Op::Fallocate { file: FileSlot(1), off: FILE_BYTES_MAX - PAGE_BYTES, len: PAGE_BYTES }
        );
        let op = normalize(Op::Truncate { file: FileSlot(0), size: u64::MAX });
        assert_eq!(op, Op::Truncate { file: FileSlot(0), size: FILE_BYTES_MAX });
    }

    #[test]
    fn every_mutation_kind_keeps_workloads_valid() {
        for (seed, &(_, m)) in MUTATIONS.iter().enumerate() {
            let mut rng = rng_from_seed(seed as u64);
            for s in 0..40 {
                let mut w = Workload::from_seed(s);
                apply(&mut w, m, &mut rng);
                if repair(&mut w) {
                    assert_eq!(w.validate(), Ok(()), "{m:?} on seed {s}");
                    assert_eq!(w.check_pin_discipline(), Ok(()), "{m:?} on seed {s}");
                }
            }
        }
    }
}
