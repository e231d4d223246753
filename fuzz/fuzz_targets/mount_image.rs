//! A valid daxfs image with arbitrary corruptions, or raw bytes, is mounted: Ok or a typed error,
//! never a panic or an allocation sized by on-media fields; fsck agrees with what mount reports.
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
        if let Err(failure) = crashsim::fuzzing::mount_image(data, &CONFIG) {
            panic!("mount_image: {failure}");
        }
    }
);
