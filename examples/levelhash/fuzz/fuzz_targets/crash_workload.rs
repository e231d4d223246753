//! Level Hashing through crashsim's generic fuzz harness: input (compact, or raw bytes through
//! `arbitrary`) → workload → run-time oracles → bounded crash exploration, with crashsim's
//! structure-aware mutator and crossover. Bugs come from `CRASHSIM_BUGS` only.
#![no_main]

use std::sync::LazyLock;

use crashsim::fuzzing::TargetHarness;
use levelhash::{LevelHash, LevelWorkload};
use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target, fuzzer_mutate};

static HARNESS: LazyLock<TargetHarness<LevelHash>> = LazyLock::new(|| {
    let harness = TargetHarness::compact_from_env("crash_workload").unwrap_or_else(|e| panic!("{e}"));
    harness.bin("levelhash")
});

fuzz_target!(
    init: {
        LazyLock::force(&HARNESS);
    },
    |data: &[u8]| {
        if let Err(failure) = HARNESS.check(data) {
            panic!("crash_workload: {failure}");
        }
    }
);

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    crashsim::fuzzing::mutate::<LevelWorkload>(data, size, max_size, seed, fuzzer_mutate)
});

fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
    crashsim::fuzzing::crossover::<LevelWorkload>(a, b, out, seed)
});
