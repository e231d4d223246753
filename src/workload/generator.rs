//! The generator: `arbitrary::Arbitrary` for [`Workload`], written by hand so every fuzz input
//! and every sweep seed goes through the same biased decoding (the mix is described in the
//! module doc of [`super`]).

use arbitrary::{Arbitrary, Unstructured};

use super::pick::{below, chance, in_range, weighted};
use super::{
    FILE_BYTES_MAX, FileSlot, MAPS_MAX, OPS_MAX, Op, PAGE_BYTES, PMD_BYTES, SEED_BYTES, WORD_BYTES, Workload,
    WorkloadError, WorkloadOptions, schedule,
};

/// Hot file blocks: the edges of the first PMD-aligned region and the start of the next.
pub(super) const HOT_BLOCKS: [u64; 8] = [0, 1, 2, 7, 8, 511, 512, 513];
/// Hot byte offsets inside a block: first words, a line edge, the middle, the last word.
pub(super) const HOT_WORD_BYTES: [u64; 6] = [0, 8, 56, 64, 2048, 4088];
const BLOCK_BYTES: u64 = PAGE_BYTES;
const FILE_BLOCKS: u64 = FILE_BYTES_MAX / BLOCK_BYTES;
const PMD_BLOCKS: u64 = PMD_BYTES / BLOCK_BYTES;
/// Sizes the prelude (and re-creation) extends a file to: sparse hot regions.
const REGION_BYTES: [(u32, u64); 4] =
    [(50, 2 * PMD_BYTES), (25, PMD_BYTES), (10, PMD_BYTES + 2 * BLOCK_BYTES), (15, 16 * BLOCK_BYTES)];

const _: () = assert!(HOT_BLOCKS[7] + 2 * PMD_BLOCKS < FILE_BLOCKS, "shifted hot blocks stay in range");

#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Burst {
    MapAccess,
    FileIo,
    Prealloc,
    Shrink,
    Dma,
    Durable,
    Churn,
}

/// Primary bursts: what a thread does next.
const PRIMARY: [(u32, Burst); 7] = [
    (30, Burst::MapAccess),
    (15, Burst::FileIo),
    (10, Burst::Prealloc),
    (12, Burst::Shrink),
    (10, Burst::Dma),
    (8, Burst::Durable),
    (3, Burst::Churn),
];

/// Racer bursts: what another thread does to the same range at about the same time.
const RACER: [(u32, Burst); 6] = [
    (30, Burst::MapAccess),
    (15, Burst::FileIo),
    (25, Burst::Shrink),
    (10, Burst::Dma),
    (10, Burst::Prealloc),
    (10, Burst::Durable),
];

/// A byte range of a file.
#[derive(Copy, Clone, Debug)]
struct Range {
    off: u64,
    len: u64,
}

/// Where the next burst points: shared by all threads so they collide.
#[derive(Copy, Clone, Debug)]
struct Focus {
    file: FileSlot,
    block: u64,
}

/// The generator's view of a mapping slot, in emission order.
#[derive(Copy, Clone, Debug)]
struct MapView {
    owner: usize,
    file: FileSlot,
    range: Range,
    map_sync: bool,
}

struct Gen {
    threads: Vec<Vec<Op>>,
    /// Length of the prelude at the start of thread 0.
    prelude_ops: usize,
    ops: usize,
    files: Vec<FileSlot>,
    sizes: Vec<u64>,
    maps: [Option<MapView>; MAPS_MAX as usize],
    focus: Focus,
}

impl<'a> Arbitrary<'a> for Workload {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(decode(u))
    }
}

impl Workload {
    /// The workload of sweep seed `seed`: PRNG bytes decoded like a fuzz input.
    pub fn from_seed(seed: u64) -> Workload {
        decode(&mut Unstructured::new(&Workload::seed_input(seed)))
    }

    /// The input bytes seed `seed` stands for: what an artifact's `input.bin` holds, so a
    /// sweep failure replays as a fuzz input.
    pub fn seed_input(seed: u64) -> Vec<u8> {
        crate::rng::seed_bytes(seed, SEED_BYTES)
    }

    /// The workload a fuzz input decodes to (the same path libFuzzer's `fuzz_target!` takes).
    pub fn from_bytes(bytes: &[u8]) -> Result<Workload, WorkloadError> {
        Workload::arbitrary_take_rest(Unstructured::new(bytes))
            .map_err(|e| WorkloadError::Decode(e.to_string()))
    }
}

/// Decodes a workload; never fails, always valid.
fn decode(u: &mut Unstructured<'_>) -> Workload {
    let thread_count = weighted(u, &[(15, 1), (50, 2), (20, 3), (15, 4)]);
    let file_count = weighted(u, &[(30, 1), (45, 2), (25, 3)]);
    let options = WorkloadOptions { fault_around: chance(u, 50) };
    let mut g = Gen::new(thread_count, file_count);
    g.prelude(u);
    let target = weighted(u, &[(30, 12), (45, 32), (25, OPS_MAX)]);
    while g.ops < target && !u.is_empty() {
        g.step(u);
    }
    let schedule = schedule::generate(u, thread_count, g.ops, g.prelude_ops);
    let w = Workload { threads: g.threads, schedule, options };
    debug_assert_eq!(w.validate(), Ok(()));
    w
}

impl Gen {
    fn new(thread_count: usize, file_count: u8) -> Gen {
        Gen {
            threads: vec![Vec::new(); thread_count],
            prelude_ops: 0,
            ops: 0,
            files: (0..file_count).map(FileSlot).collect(),
            sizes: vec![0; usize::from(file_count)],
            maps: [None; MAPS_MAX as usize],
            focus: Focus { file: FileSlot(0), block: 0 },
        }
    }

    fn room(&self) -> usize {
        OPS_MAX - self.ops
    }

    /// Appends `op` to thread `t` if the op budget allows; returns whether it did.
    fn emit(&mut self, t: usize, op: Op) -> bool {
        if self.ops >= OPS_MAX {
            return false;
        }
        self.threads[t].push(op);
        self.ops += 1;
        true
    }

    /// Thread 0 creates every file and usually extends it to a sparse hot region.
    fn prelude(&mut self, u: &mut Unstructured<'_>) {
        for file in self.files.clone() {
            self.emit(0, Op::Create { file });
            if !chance(u, 15) {
                let size = weighted(u, &REGION_BYTES);
                self.truncate(0, file, size);
            }
        }
        self.prelude_ops = self.ops;
    }

    /// One primary burst and, with 2+ threads, often a racer on the same range elsewhere.
    fn step(&mut self, u: &mut Unstructured<'_>) {
        let t = self.pick_thread(u);
        if chance(u, 35) {
            self.focus = self.new_focus(u);
        }
        let kind = weighted(u, &PRIMARY);
        self.burst(u, t, kind);
        let n = self.threads.len();
        if n >= 2 && chance(u, 50) {
            let other = (t + 1 + below(u, n as u64 - 1) as usize) % n;
            let kind = weighted(u, &RACER);
            self.burst(u, other, kind);
        }
    }

    /// Mostly the thread with the fewest ops after the prelude, so equal positions in
    /// different threads run at about the same time.
    fn pick_thread(&self, u: &mut Unstructured<'_>) -> usize {
        if chance(u, 30) {
            return below(u, self.threads.len() as u64) as usize;
        }
        let len = |t: usize| self.threads[t].len() - if t == 0 { self.prelude_ops } else { 0 };
        (0..self.threads.len()).min_by_key(|&t| len(t)).expect("a workload has a thread")
    }

    fn burst(&mut self, u: &mut Unstructured<'_>, t: usize, kind: Burst) {
        match kind {
            Burst::MapAccess => self.map_access(u, t),
            Burst::FileIo => self.file_io(u, t),
            Burst::Prealloc => self.prealloc(u, t),
            Burst::Shrink => self.shrink(u, t),
            Burst::Dma => self.dma(u, t),
            Burst::Durable => self.durable(u, t),
            Burst::Churn => self.churn(u, t),
        }
    }

    fn new_focus(&self, u: &mut Unstructured<'_>) -> Focus {
        let file = self.files[below(u, self.files.len() as u64) as usize];
        let block = match weighted(u, &[(75, 0), (12, 1), (13, 2)]) {
            0 => HOT_BLOCKS[below(u, 8) as usize],
            1 => HOT_BLOCKS[below(u, 8) as usize] + PMD_BLOCKS * in_range(u, 1, 2),
            _ => below(u, FILE_BLOCKS),
        };
        Focus { file, block }
    }

    /// The focus block or a neighbour.
    fn near_block(&self, u: &mut Unstructured<'_>) -> u64 {
        match weighted(u, &[(70, 0), (15, 1), (15, 2)]) {
            0 => self.focus.block,
            1 => (self.focus.block + 1).min(FILE_BLOCKS - 1),
            _ => self.focus.block.saturating_sub(1),
        }
    }

    /// An 8-aligned file range near the focus: mostly 8 B..2 blocks, sometimes a whole PMD
    /// (rarely for stores and writes, which cost one traced store per word).
    fn data_range(&self, u: &mut Unstructured<'_>, writes: bool) -> Range {
        let block = self.near_block(u);
        let word = if chance(u, 20) { below(u, BLOCK_BYTES / WORD_BYTES) * WORD_BYTES } else { hot_word(u) };
        let off = block * BLOCK_BYTES + word;
        let len = match weighted(u, &[(25, 0), (20, 1), (15, 2), (15, 3), (10, 4), (10, 5), (5, 6)]) {
            0 => WORD_BYTES,
            1 => 64,
            2 => BLOCK_BYTES - word,
            3 => BLOCK_BYTES,
            4 => 2 * BLOCK_BYTES,
            5 => in_range(u, 1, 2 * BLOCK_BYTES / WORD_BYTES) * WORD_BYTES,
            _ if writes && !chance(u, 20) => BLOCK_BYTES,
            _ => return clamp(Range { off: pmd_base(off), len: PMD_BYTES }, WORD_BYTES),
        };
        clamp(Range { off, len }, WORD_BYTES)
    }

    /// A block-aligned file range at the focus: a few blocks or a whole aligned PMD.
    fn block_range(&self, u: &mut Unstructured<'_>) -> Range {
        let off = self.near_block(u) * BLOCK_BYTES;
        let blocks = match weighted(u, &[(35, 0), (20, 1), (10, 2), (10, 3), (15, 4), (10, 5)]) {
            0 => 1,
            1 => 2,
            2 => 4,
            3 => 8,
            4 => return clamp(Range { off: pmd_base(off), len: PMD_BYTES }, BLOCK_BYTES),
            _ => in_range(u, 1, 16),
        };
        clamp(Range { off, len: blocks * BLOCK_BYTES }, BLOCK_BYTES)
    }

    fn truncate(&mut self, t: usize, file: FileSlot, size: u64) {
        if self.emit(t, Op::Truncate { file, size }) {
            self.sizes[usize::from(file.0)] = size;
        }
    }

    fn size_of(&self, file: FileSlot) -> u64 {
        self.sizes.get(usize::from(file.0)).copied().unwrap_or(0)
    }
}

/// A hot byte offset inside a block.
fn hot_word(u: &mut Unstructured<'_>) -> u64 {
    HOT_WORD_BYTES[below(u, HOT_WORD_BYTES.len() as u64) as usize]
}

/// The start of the PMD-aligned region holding `off`.
fn pmd_base(off: u64) -> u64 {
    off / PMD_BYTES * PMD_BYTES
}

/// `r` aligned down to `grain`, non-empty and inside `FILE_BYTES_MAX`.
fn clamp(r: Range, grain: u64) -> Range {
    let off = (r.off / grain * grain).min(FILE_BYTES_MAX - grain);
    let len = (r.len / grain * grain).clamp(grain, FILE_BYTES_MAX - off);
    Range { off, len }
}

mod bursts;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_bytes_are_never_exhausted() {
        for seed in 0..1000 {
            let bytes = crate::rng::seed_bytes(seed, SEED_BYTES);
            let mut u = Unstructured::new(&bytes);
            decode(&mut u);
            assert!(
                u.len() > SEED_BYTES / 4,
                "seed {seed} used {} of {SEED_BYTES} bytes",
                SEED_BYTES - u.len()
            );
        }
    }

    #[test]
    fn clamp_keeps_ranges_aligned_and_inside() {
        let r = clamp(Range { off: FILE_BYTES_MAX + 5, len: 3 * PMD_BYTES }, PAGE_BYTES);
        assert_eq!((r.off, r.len), (FILE_BYTES_MAX - PAGE_BYTES, PAGE_BYTES));
        let r = clamp(Range { off: 13, len: 0 }, WORD_BYTES);
        assert_eq!((r.off, r.len), (8, 8));
    }
}
