//! The generic fuzz harness on Level Hashing, without libFuzzer: seed inputs decoded through
//! `arbitrary` are clean on the fixed table, and each bug is caught with a repro line for the
//! `levelhash` binary (`.ci/run` also runs the cargo-fuzz target itself).

use crashsim::fuzzing::{TargetHarness, seed_input};
use levelhash::{LevelHash, LevelWorkload, TOKEN_BEFORE_KV_DURABLE, UPDATE_TWO_TOKEN_STORES};

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

/// The compact encoding round-trips and mutation and crossover keep workloads valid, over many
/// seeds and mutations.
#[test]
fn compact_workloads_round_trip_and_stay_valid_under_mutation() {
    use crashsim::target::Target;
    let t = LevelHash::with_bugs(&[]).expect("builds");
    let valid = |w: &LevelWorkload| t.validate_workload(w).map_err(|e| e.to_string());
    crashsim::fuzzing::check_fuzz_workload(|s| t.workload_from_seed(s), 0..200, 48, valid).unwrap();
}

/// Through the compact decoder, a bug is caught on the seeds' compact forms and the repro line
/// names the crash file itself: `levelhash run` reads compact inputs.
#[test]
fn compact_inputs_are_caught_and_replay_as_themselves() {
    use crashsim::fuzzing::FuzzWorkload;
    use crashsim::target::Target;
    let mut h = TargetHarness::compact(
        LevelHash::with_bugs(&[TOKEN_BEFORE_KV_DURABLE]).expect("builds"),
        "crash_workload",
    )
    .bin("levelhash");
    h.explore_one_in = 1;
    let inputs: Vec<Vec<u8>> = (0..50).map(|s| h.target.workload_from_seed(s).encode()).collect();
    let f = inputs.iter().find_map(|b| h.check(b).err()).expect("a compact seed input is caught");
    assert!(f.repro.starts_with("levelhash run fuzz/artifacts/crash_workload/"), "{f}");
    let w = h.target.workload_from_seed(3);
    assert_eq!(h.target.workload_from_bytes(&w.encode()), Ok(w));
}
