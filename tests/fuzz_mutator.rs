//! The structure-aware mutator and the compact encoding: round trips and validity over many
//! seeds and mutations (daxfs and toylog; levelhash checks its own in its tests), the byte
//! fallback, determinism, what it reaches from an empty input, and that sweep artifacts'
//! raw inputs still decode through the generator while compact inputs replay as themselves.

use crashsim::daxfs::{Bug, BugSet};
use crashsim::fuzzing::{
    BYTE_FALLBACK_ONE_IN, FuzzConfig, FuzzWorkload, check_fuzz_workload, crossover, mutate,
};
use crashsim::target::Target;
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;
use crashsim::targets::toylog::{ToyLog, ToyWorkload};
use crashsim::workload::{COMPACT_MAGIC, Op, Workload};

fn daxfs_valid(w: &Workload) -> Result<(), String> {
    DaxfsTarget::new(RunConfig::default()).validate_workload(w).map_err(|e| e.to_string())
}

#[test]
fn daxfs_workloads_round_trip_and_stay_valid_under_mutation() {
    check_fuzz_workload(Workload::from_seed, 0..80, 48, daxfs_valid).unwrap();
}

#[test]
fn toylog_workloads_round_trip_and_stay_valid_under_mutation() {
    let t = ToyLog::fixed();
    let valid = |w: &ToyWorkload| t.validate_workload(w).map_err(|e| e.to_string());
    check_fuzz_workload(|s| t.workload_from_seed(s), 0..200, 48, valid).unwrap();
}

#[test]
fn generated_workloads_keep_the_pin_rule() {
    for seed in 0..2000 {
        assert_eq!(Workload::from_seed(seed).check_pin_discipline(), Ok(()), "seed {seed}");
    }
}

/// A pin rule broken by hand is rejected by the daxfs target's validation (so the fuzzer's
/// decoder skips it) and by the compact decoder.
#[test]
fn a_truncate_under_a_pin_is_invalid() {
    let mut w = Workload::from_seed(0);
    let pin = crashsim::workload::PinSlot(0);
    let map = crashsim::workload::MapSlot(0);
    w.threads[0].extend([
        Op::Pin { pin, map, off: 0, len: 4096, write: true },
        Op::Truncate { file: crashsim::workload::FileSlot(0), size: 0 },
        Op::Unpin { pin },
    ]);
    assert!(daxfs_valid(&w).unwrap_err().contains("holds a pin"));
    w.threads[0].pop();
    assert!(daxfs_valid(&w).is_err());
}

#[test]
fn about_one_call_in_eight_falls_back_to_byte_mutation() {
    let input = Workload::from_seed(5).encode();
    let mut fallbacks = 0u32;
    let calls = 800u32;
    for seed in 0..calls {
        let mut buf = vec![0u8; 4096];
        buf[..input.len()].copy_from_slice(&input);
        mutate::<Workload>(&mut buf, input.len(), 4096, seed, |_, s, _| {
            fallbacks += 1;
            s
        });
    }
    let expected = calls / BYTE_FALLBACK_ONE_IN;
    assert!((expected / 2..expected * 2).contains(&fallbacks), "{fallbacks} of {calls} fell back");
}

#[test]
fn output_never_exceeds_max_size() {
    let input = Workload::from_seed(5).encode();
    for seed in 0..64 {
        let mut buf = vec![0u8; 4096];
        buf[..input.len()].copy_from_slice(&input);
        let max = input.len() / 2;
        let mut fell_back = false;
        let n = mutate::<Workload>(&mut buf, input.len(), max, seed, |_, _, m| {
            fell_back = true;
            m
        });
        assert!(n <= max && (fell_back || Workload::decode(&buf[..n]).is_ok()), "seed {seed}: {n} > {max}");
    }
    assert_eq!(crossover::<Workload>(&input, &input, &mut [0u8; 4], 1), 0, "no child fits 4 bytes");
}

/// From an empty input, the mutator alone (libFuzzer's byte mutation switched off, each output
/// fed back in) reaches every kind of operation, several threads and a schedule.
#[test]
fn the_mutator_reaches_the_whole_language_from_an_empty_input() {
    let mut input = Vec::new();
    let mut kinds = std::collections::BTreeSet::new();
    let (mut threads_max, mut schedule_max) = (0, 0);
    for seed in 0..3000u32 {
        let mut buf = vec![0u8; 4096];
        buf[..input.len()].copy_from_slice(&input);
        let n = mutate::<Workload>(&mut buf, input.len(), 4096, seed, |_, s, _| s);
        let Ok(w) = Workload::decode(&buf[..n]) else { continue };
        for op in w.threads.iter().flatten() {
            kinds.insert(format!("{op:?}").split([' ', '{']).next().unwrap().to_string());
        }
        threads_max = threads_max.max(w.threads.len());
        schedule_max = schedule_max.max(w.schedule.len());
        input = buf[..n].to_vec();
    }
    assert_eq!(kinds.len(), 18, "op kinds reached: {kinds:?}");
    assert!(threads_max >= 3 && schedule_max >= 16, "{threads_max} threads, schedule {schedule_max}");
}

/// Sweep artifacts keep replaying: a seed's raw input (an artifact's `input.bin`) decodes
/// through the generator exactly as before, even when its first byte is the compact magic.
/// (The committed regressions hold minimized workloads as JSON, which the artifact loader
/// reads; `tests/fuzz_corpus.rs` and the artifact tests replay them.)
#[test]
fn raw_inputs_still_decode_through_the_generator() {
    let t = DaxfsTarget::new(RunConfig::default());
    for seed in 0..300 {
        let mut bytes = t.input_for_seed(seed);
        assert_eq!(t.workload_from_bytes(&bytes), Ok(Workload::from_seed(seed)), "seed {seed}");
        bytes[0] = COMPACT_MAGIC;
        bytes[1] = crashsim::workload::COMPACT_VERSION;
        assert_eq!(t.workload_from_bytes(&bytes), Ok(Workload::from_bytes(&bytes).unwrap()), "seed {seed}");
    }
}

/// A compact crash file replays with `crashsim run FILE`: the target decodes it to the same
/// workload, and the harness's repro line names the crash file, not a saved JSON.
#[test]
fn a_compact_crash_input_replays_as_itself() {
    let w = Workload::from_seed(136);
    let bytes = w.encode();
    assert_eq!(bytes[0], COMPACT_MAGIC);
    assert!(bytes.len() < 1024, "{} bytes", bytes.len());
    let t = DaxfsTarget::new(RunConfig::default());
    assert_eq!(t.workload_from_bytes(&bytes), Ok(w));
    let cfg = FuzzConfig::new(BugSet::NONE.with(Bug::NoEntryLock));
    let f = crashsim::fuzzing::crash_workload(&bytes, &cfg).expect_err("the race fires");
    assert!(f.repro.contains("fuzz/artifacts/crash_workload/<crash-file"), "{f}");
    assert!(f.repro.contains("--bug no-entry-lock"), "{f}");
}
