//! Arbitrary bytes in the journal area of a valid image: replay never panics and applies exactly
//! the transactions an independent decoding of the journal accepts.
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
        if let Err(failure) = crashsim::fuzzing::journal_replay(data, &CONFIG) {
            panic!("journal_replay: {failure}");
        }
    }
);
