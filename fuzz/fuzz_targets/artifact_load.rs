//! Arbitrary bytes as an artifact's manifest.json, input.bin and crash.img, loaded as `repro`
//! loads them: Ok or a typed error, never a panic or an allocation sized by an input field.
#![no_main]

use std::sync::LazyLock;

use crashsim::fuzzing::{CappedAlloc, FuzzConfig};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

static CONFIG: LazyLock<FuzzConfig> =
    LazyLock::new(|| FuzzConfig::from_env().unwrap_or_else(|e| panic!("{e}")));

fuzz_target!(
    init: {
        LazyLock::force(&CONFIG);
    },
    |data: &[u8]| {
        if let Err(failure) = crashsim::fuzzing::artifact_load(data, &CONFIG) {
            panic!("artifact_load: {failure}");
        }
    }
);
