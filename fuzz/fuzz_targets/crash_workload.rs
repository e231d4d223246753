//! Workload → run-time oracle → bounded crash exploration of daxfs. Any violation panics with
//! its summary and a one-line repro command. Bugs come from `CRASHSIM_BUGS` only.
#![no_main]

use std::sync::LazyLock;

use crashsim::fuzzing::{CappedAlloc, FuzzConfig};
use libfuzzer_sys::fuzz_target;

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
