//! Structure-aware mutation for libFuzzer's custom mutator hooks, generic over a target's
//! workload type through [`FuzzWorkload`].
//!
//! The library does not link libFuzzer: a fuzz target calls [`mutate`] from
//! `libfuzzer_sys::fuzz_mutator!` (passing `libfuzzer_sys::fuzzer_mutate` as the byte-level
//! fallback) and [`crossover`] from `libfuzzer_sys::fuzz_crossover!`:
//!
//! ```text
//! fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
//!     crashsim::fuzzing::mutate::<MyWorkload>(data, size, max_size, seed, libfuzzer_sys::fuzzer_mutate)
//! });
//! fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
//!     crashsim::fuzzing::crossover::<MyWorkload>(a, b, out, seed)
//! });
//! ```
//!
//! An input is decoded ([`decode_input`]: the compact form when it is one, else the target's
//! generator), mutated one to [`STACKED_MAX`] times in the workload language, and written back
//! in the compact form. One call in [`BYTE_FALLBACK_ONE_IN`] (and any call whose result would
//! not fit `max_size`) hands the bytes to libFuzzer's own byte mutation instead, so the
//! decoders' edges keep being explored. Every random choice comes from libFuzzer's `seed`
//! through [`crate::rng`], so a seed gives the same mutation on every platform.

use super::codec::CodecError;
use crate::rng::{SimRng, rng_from_seed};
use crate::workload::Workload;
use rand::RngExt as _;

/// One mutator call in this many uses libFuzzer's byte mutation.
pub const BYTE_FALLBACK_ONE_IN: u32 = 8;
/// Most structural mutations stacked in one mutator call.
pub const STACKED_MAX: u32 = 4;
/// Mutations tried per call before falling back to bytes (a mutation may change nothing or
/// not fit `max_size`).
pub const ATTEMPTS_MAX: usize = 8;

/// Separates the mutator's and crossover's random streams from each other for one seed.
const MUTATE_STREAM: u64 = 0x6d75_7461_7465_0000;
const CROSSOVER_STREAM: u64 = 0x6372_6f73_7300_0000;

/// A workload type the structure-aware mutator can work on: a compact byte encoding that
/// round-trips (`decode(&w.encode()) == Ok(w)` for every valid `w`), a generator for other
/// bytes, and mutation and crossover that keep workloads valid.
pub trait FuzzWorkload: Clone + PartialEq + std::fmt::Debug + Sized {
    /// The compact bytes: a leading magic and format version, then only what the workload
    /// uses. Only called on valid workloads.
    fn encode(&self) -> Vec<u8>;

    /// The workload compact bytes encode; a typed error for any other bytes. Never panics and
    /// never allocates by a decoded number; an `Ok` workload is valid.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError>;

    /// The workload bytes that are not compact stand for (the target's generator, so an empty
    /// or raw input is a start too); `None` when they stand for none.
    fn generate(bytes: &[u8]) -> Option<Self>;

    /// Applies one random mutation, keeping the workload valid; false (and unchanged) when it
    /// could not.
    fn mutate(&mut self, rng: &mut SimRng) -> bool;

    /// A valid child of `self` and `other`.
    fn crossover(&self, other: &Self, rng: &mut SimRng) -> Self;
}

/// The workload input bytes stand for: compact when they decode as such, else the generator's.
pub fn decode_input<W: FuzzWorkload>(bytes: &[u8]) -> Option<W> {
    W::decode(bytes).ok().or_else(|| W::generate(bytes))
}

/// libFuzzer's custom mutator on `data[..size]`: the new input's length (at most `max_size`)
/// with its bytes in `data`. `byte_fallback(data, size, max_size)` is libFuzzer's byte
/// mutation (`libfuzzer_sys::fuzzer_mutate`).
pub fn mutate<W: FuzzWorkload>(
    data: &mut [u8],
    size: usize,
    max_size: usize,
    seed: u32,
    byte_fallback: impl FnOnce(&mut [u8], usize, usize) -> usize,
) -> usize {
    let size = size.min(data.len());
    let max_size = max_size.min(data.len());
    let mut rng = rng_from_seed(MUTATE_STREAM | u64::from(seed));
    if rng.random_range(0..BYTE_FALLBACK_ONE_IN) == 0 {
        return byte_fallback(data, size, max_size);
    }
    let Some(start) = decode_input::<W>(&data[..size]) else {
        return byte_fallback(data, size, max_size);
    };
    for _ in 0..ATTEMPTS_MAX {
        let mut w = start.clone();
        for _ in 0..rng.random_range(1..=STACKED_MAX) {
            w.mutate(&mut rng);
        }
        let bytes = w.encode();
        // A generator input re-encoded unchanged is still new bytes: its compact form.
        if bytes.len() <= max_size && bytes != data[..size] {
            data[..bytes.len()].copy_from_slice(&bytes);
            return bytes.len();
        }
    }
    byte_fallback(data, size, max_size)
}

/// libFuzzer's custom crossover: a child of the workloads `a` and `b` stand for, written to
/// `out`; its length, or 0 (no child) when either does not decode or no child fits.
pub fn crossover<W: FuzzWorkload>(a: &[u8], b: &[u8], out: &mut [u8], seed: u32) -> usize {
    let (Some(wa), Some(wb)) = (decode_input::<W>(a), decode_input::<W>(b)) else {
        return 0;
    };
    let mut rng = rng_from_seed(CROSSOVER_STREAM | u64::from(seed));
    for _ in 0..ATTEMPTS_MAX {
        let bytes = wa.crossover(&wb, &mut rng).encode();
        if bytes.len() <= out.len() {
            out[..bytes.len()].copy_from_slice(&bytes);
            return bytes.len();
        }
    }
    0
}

/// A property check for a [`FuzzWorkload`] implementation, for its tests: from the start
/// workload of each of `seeds`, `steps` mutations and crossovers (with the next seed's
/// workload) through the byte-level [`mutate`] and [`crossover`]; every workload met must
/// round-trip through the encoding and pass `valid`, every output must decode, and the same
/// seed must give the same bytes. Also decodes every prefix and a bit flip of every byte of
/// each encoding (each must be an error or a valid workload). The first problem, described.
pub fn check_fuzz_workload<W: FuzzWorkload>(
    start: impl Fn(u64) -> W,
    seeds: std::ops::Range<u64>,
    steps: usize,
    valid: impl Fn(&W) -> Result<(), String>,
) -> Result<(), String> {
    for seed in seeds {
        let (mut w, mate) = (start(seed), start(seed + 1));
        check_one(&w, &valid).map_err(|e| format!("seed {seed} start: {e}"))?;
        for step in 0..steps {
            let at = |e: String| format!("seed {seed} step {step}: {e}");
            let input = w.encode();
            let mut buf = vec![0u8; 4096.max(2 * input.len())];
            buf[..input.len()].copy_from_slice(&input);
            let mut again = buf.clone();
            let call_seed = (seed as u32).wrapping_mul(0x9e37_79b9) ^ step as u32;
            let fell_back = std::cell::Cell::new(false);
            let fallback = |d: &mut [u8], s: usize, _: usize| {
                fell_back.set(true);
                d[..s].reverse();
                s
            };
            let len = mutate::<W>(&mut buf, input.len(), 4096, call_seed, fallback);
            let len_again = mutate::<W>(&mut again, input.len(), 4096, call_seed, fallback);
            if buf[..len] != again[..len_again] {
                return Err(at("the same seed mutated differently".into()));
            }
            if !fell_back.get() {
                w = W::decode(&buf[..len]).map_err(|e| at(format!("mutated bytes do not decode: {e}")))?;
                check_one(&w, &valid).map_err(at)?;
            }
            if step % 4 == 3 {
                let mut out = vec![0u8; 4096];
                let n = crossover::<W>(&w.encode(), &mate.encode(), &mut out, call_seed);
                if n > 0 {
                    w = W::decode(&out[..n])
                        .map_err(|e| at(format!("crossover bytes do not decode: {e}")))?;
                    check_one(&w, &valid).map_err(at)?;
                }
            }
        }
    }
    Ok(())
}

/// Round trip, validity, and damaged copies that decode to an error or a valid workload.
fn check_one<W: FuzzWorkload>(w: &W, valid: &impl Fn(&W) -> Result<(), String>) -> Result<(), String> {
    valid(w).map_err(|e| format!("invalid workload {w:?}: {e}"))?;
    let bytes = w.encode();
    match W::decode(&bytes) {
        Ok(back) if back == *w => {}
        other => return Err(format!("{w:?} encodes to {bytes:?}, which decodes to {other:?}")),
    }
    for end in 0..bytes.len() {
        if let Ok(d) = W::decode(&bytes[..end]) {
            valid(&d).map_err(|e| format!("prefix {end} of {bytes:?} decodes invalid: {e}"))?;
        }
    }
    for i in 0..bytes.len() {
        let mut damaged = bytes.clone();
        damaged[i] ^= 1 << (i % 8);
        if let Ok(d) = W::decode(&damaged) {
            valid(&d).map_err(|e| format!("{damaged:?} decodes invalid: {e}"))?;
        }
    }
    Ok(())
}

impl FuzzWorkload for Workload {
    fn encode(&self) -> Vec<u8> {
        self.encode_compact()
    }

    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        Workload::decode_compact(bytes)
    }

    fn generate(bytes: &[u8]) -> Option<Self> {
        Workload::from_bytes(bytes).ok()
    }

    fn mutate(&mut self, rng: &mut SimRng) -> bool {
        Workload::mutate(self, rng)
    }

    fn crossover(&self, other: &Self, rng: &mut SimRng) -> Self {
        Workload::crossover(self, other, rng)
    }
}
