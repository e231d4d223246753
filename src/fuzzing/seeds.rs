//! Deterministic seed inputs for the committed corpora (`corpus/<target>/`), before
//! `cargo fuzz cmin` keeps the ones that add coverage.

use super::image::BaseImage;
use crate::pmem::PmemAddr;
use crate::rng::seed_bytes;
use crate::workload::Workload;

/// The fuzz targets with a corpus generated here.
pub const TARGETS: [&str; 3] = ["crash_workload", "mount_image", "journal_replay"];

/// `count` named seed inputs for `target`; `None` for an unknown target.
pub fn seed_inputs(target: &str, count: u64) -> Option<Vec<(String, Vec<u8>)>> {
    let make: fn(u64) -> Vec<u8> = match target {
        "crash_workload" => crash_workload_seed,
        "mount_image" => mount_seed,
        "journal_replay" => journal_seed,
        _ => return None,
    };
    Some((0..count).map(|s| (format!("seed-{s:05}"), make(s))).collect())
}

/// The compact form of sweep seed `seed`'s workload: the same workload as the seed's raw
/// bytes, in the form the structure-aware mutator reads and writes.
fn crash_workload_seed(seed: u64) -> Vec<u8> {
    Workload::from_seed(seed).encode_compact()
}

/// Mode byte, then corruption chunks; seed 2 (raw mode) is the base image's first block.
fn mount_seed(seed: u64) -> Vec<u8> {
    let mode = (seed % 3) as u8;
    if mode == 2 && seed % 2 == 0 {
        let mut block = vec![0u8; 4096];
        let _ = BaseImage::shared().device().read(PmemAddr(0), &mut block);
        return [vec![mode], block].concat();
    }
    let chunks = (seed / 3 % 8) as usize + 1;
    [vec![mode], seed_bytes(seed, chunks * 12)].concat()
}

/// Flags byte, then patches aimed at the journal's first slots, where the base image's
/// committed transactions are.
fn journal_seed(seed: u64) -> Vec<u8> {
    let flags = (seed % 8) as u8;
    let bytes = seed_bytes(seed, 10 * 8);
    let mut out = vec![flags];
    for (i, p) in bytes.chunks_exact(10).take((seed / 8 % 4) as usize + 1).enumerate() {
        let word = (u16::from_le_bytes([p[0], p[1]]) % 256).wrapping_add(i as u16);
        out.extend_from_slice(&word.to_le_bytes());
        out.extend_from_slice(&p[2..]);
    }
    out
}
