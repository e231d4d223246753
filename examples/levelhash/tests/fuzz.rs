//! The generic fuzz harness on Level Hashing, without libFuzzer: seed inputs decoded through
//! `arbitrary` are clean on the fixed table, and each bug is caught with a repro line for the
//! `levelhash` binary (`.ci/run` also runs the cargo-fuzz target itself).

use crashsim::fuzzing::{TargetHarness, seed_input};
use levelhash::{LevelHash, TOKEN_BEFORE_KV_DURABLE, UPDATE_TWO_TOKEN_STORES};

fn harness(bugs: &[&str]) -> TargetHarness<LevelHash> {
    let mut h =
        TargetHarness::new(LevelHash::with_bugs(bugs).expect("builds"), "crash_workload").bin("levelhash");
    h.explore_one_in = 1;
    h
}

#[test]
fn seed_inputs_are_clean_on_the_fixed_table_and_each_bug_is_caught() {
    let fixed = harness(&[]);
    for seed in 0..50 {
        assert_eq!(fixed.check(&seed_input(seed)), Ok(()), "seed input {seed}");
    }
    for (bug, class) in [(TOKEN_BEFORE_KV_DURABLE, "StaleData"), (UPDATE_TWO_TOKEN_STORES, "LostWrite")] {
        let h = harness(&[bug]);
        let failures: Vec<_> = (0..50).filter_map(|s| h.check(&seed_input(s)).err()).collect();
        assert!(!failures.is_empty(), "{bug}: no seed input caught");
        assert!(
            failures.iter().any(|f| f.summary.contains(&format!("headline: {class}"))),
            "{bug}: {failures:?}"
        );
        let f = &failures[0];
        assert!(f.repro.starts_with("levelhash run ") && f.repro.contains(&format!("--bug {bug}")), "{f}");
    }
}
