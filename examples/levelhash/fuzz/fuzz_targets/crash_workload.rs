//! Level Hashing through crashsim's generic fuzz harness: input → workload (`arbitrary`) →
//! run-time oracles → bounded crash exploration. Bugs come from `CRASHSIM_BUGS` only.
#![no_main]

use std::sync::LazyLock;

use crashsim::fuzzing::TargetHarness;
use levelhash::LevelHash;
use libfuzzer_sys::fuzz_target;

static HARNESS: LazyLock<TargetHarness<LevelHash>> = LazyLock::new(|| {
    let harness = TargetHarness::from_env("crash_workload").unwrap_or_else(|e| panic!("{e}"));
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
