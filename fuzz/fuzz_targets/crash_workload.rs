//! Workload → run-time oracle → lazy crash exploration of sampled points of daxfs. Any violation panics with
//! its summary and a one-line repro command. Bugs come from `CRASHSIM_BUGS` only.
//!
//! Inputs are compact workloads (or the generator's raw bytes); the custom mutator and
//! crossover edit them in the workload language (`crashsim::fuzzing::mutate`), with
//! libFuzzer's byte mutation for a fraction of calls.
#![no_main]

use std::sync::LazyLock;

use crashsim::fuzzing::{CappedAlloc, FuzzConfig};
use crashsim::workload::Workload;
use libfuzzer_sys::{fuzz_crossover, fuzz_mutator, fuzz_target, fuzzer_mutate};

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

/// Read once at init; an unknown bug id stops the run before any input.
static CONFIG: LazyLock<FuzzConfig> =
    LazyLock::new(|| FuzzConfig::from_env().unwrap_or_else(|e| panic!("{e}")));

fuzz_target!(
    init: {
        LazyLock::force(&CONFIG);
    },
    |data: &[u8]| {
        if let Err(failure) = crashsim::fuzzing::crash_workload(data, &CONFIG) {
            panic!("crash_workload: {failure}");
        }
    }
);

fuzz_mutator!(|data: &mut [u8], size: usize, max_size: usize, seed: u32| {
    crashsim::fuzzing::mutate::<Workload>(data, size, max_size, seed, fuzzer_mutate)
});

fuzz_crossover!(|a: &[u8], b: &[u8], out: &mut [u8], seed: u32| {
    crashsim::fuzzing::crossover::<Workload>(a, b, out, seed)
});
