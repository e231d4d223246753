//! The persistence engine (Tracker + crash points + views) against the brute-force reference of
//! `docs/persistence-model.md`, on seeded random traces and on hand-written corner cases.

use std::collections::BTreeSet;
use std::sync::Arc;

use crashsim::crash::{Strategy, choices, random_choice};
use crashsim::pmem::reference::{
    DECODE_PENDING_UNITS_MAX, WIDE_DEVICE_BYTES, check_trace, check_trace_model, decode_initial,
    engine_states, reference_states, trace_from_bytes, wide_trace_from_bytes,
};
use crashsim::pmem::{
    Choice, CrashPoint, CrashState, Device, FlushKind, PersistenceModel, PmemAddr, PmemError, Tracker, View,
    crash_points,
};
use crashsim::rng::*;

/// Random traces checked per run; each costs a few milliseconds.
const RANDOM_TRACES: u64 = 3000;
const SITE: &str = "tests::pmem_reference";

#[test]
fn random_traces_match_the_reference() {
    let mut rng = rng_from_seed(0x5eed_0001);
    let mut events_total = 0usize;
    for seed in 0..RANDOM_TRACES {
        let len = rng.random_range(8..96usize);
        let bytes = seed_bytes(seed, len);
        let case = trace_from_bytes(&bytes);
        events_total += case.trace.len();
        if let Err(e) = check_trace(&case.initial, &case.trace) {
            panic!("seed {seed} (input {len} bytes): {e}\ntrace: {:?}", case.trace.events());
        }
    }
    // The decoder must produce real traces, not trivially short ones.
    assert!(events_total > RANDOM_TRACES as usize * 10, "traces too short: {events_total} events");
}

/// Wide-store traces checked under eADR per run; each costs a few milliseconds to a few tens.
const WIDE_TRACES: u64 = 200;

#[test]
fn wide_store_traces_match_the_reference_under_eadr() {
    let mut rng = rng_from_seed(0x5eed_0002);
    let (mut units_total, mut widest) = (0usize, 0usize);
    for seed in 0..WIDE_TRACES {
        let len = rng.random_range(3..30usize);
        let case = wide_trace_from_bytes(&seed_bytes(seed, len));
        for e in case.trace.events() {
            let n = case.trace.store_data(e).len() / 8;
            units_total += n;
            widest = widest.max(n);
        }
        if let Err(e) = check_trace_model(&case.initial, &case.trace, PersistenceModel::Eadr) {
            panic!("seed {seed} (input {len} bytes): {e}\ntrace: {:?}", case.trace.events());
        }
    }
    // Real wide stores, up to a whole 4 KiB page, not just a few words.
    assert_eq!(widest, 512, "no 4 KiB store decoded");
    assert!(units_total > WIDE_TRACES as usize * 100, "stores too narrow: {units_total} units");
}

#[test]
fn decoded_traces_respect_the_pending_cap() {
    for seed in 0..200 {
        let case = trace_from_bytes(&seed_bytes(seed, 128));
        let points = crash_points(&case.trace, crashsim::pmem::Granularity::Store);
        let mut t = Tracker::new(&case.trace, Arc::clone(&case.initial), PersistenceModel::Adr);
        for p in points {
            t.advance_to(p);
            let pending = t.crash_state().pending_units();
            assert!(pending <= DECODE_PENDING_UNITS_MAX, "seed {seed}: {pending} pending at {}", p.0);
        }
    }
}

#[test]
fn decoding_is_deterministic() {
    let bytes = seed_bytes(99, 80);
    assert_eq!(trace_from_bytes(&bytes).trace.digest(), trace_from_bytes(&bytes).trace.digest());
}

/// A device over the decoder's initial pattern, so hand-written traces share its word values.
fn device() -> Device {
    Device::with_backing(decode_initial(256))
}

fn check(dev: Device) {
    let (initial, _, trace) = dev.into_parts();
    check_trace(&initial, &trace).unwrap_or_else(|e| panic!("{e}\ntrace: {:?}", trace.events()));
}

/// Distinct images the engine yields at the final crash point under ADR.
fn final_states(dev: &Device) -> usize {
    let trace = dev.trace();
    let states = engine_states(dev.initial(), trace, PersistenceModel::Adr).expect("small trace");
    states
        .iter()
        .filter(|s| s.point == trace.len())
        .map(|s| &s.image)
        .collect::<std::collections::BTreeSet<_>>()
        .len()
}

#[test]
fn clflush_mid_epoch_is_durable_without_a_fence() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.store_u64(PmemAddr(64), 0xb1, SITE).unwrap();
    dev.flush(PmemAddr(0), 8, FlushKind::Clflush, SITE).unwrap();
    dev.store_u64(PmemAddr(8), 0xa2, SITE).unwrap();
    // Line A's first store is durable; B and A's second store are each optional.
    assert_eq!(final_states(&dev), 4);
    check(dev);
}

#[test]
fn store_after_clwb_is_not_covered_by_the_fence() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.flush(PmemAddr(0), 64, FlushKind::Clwb, SITE).unwrap();
    dev.store_u64(PmemAddr(8), 0xa2, SITE).unwrap();
    dev.fence(SITE).unwrap();
    // 0xa1 durable, 0xa2 still optional.
    assert_eq!(final_states(&dev), 2);
    check(dev);
}

#[test]
fn clflushopt_needs_a_fence() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.flush(PmemAddr(0), 64, FlushKind::Clflushopt, SITE).unwrap();
    assert_eq!(final_states(&dev), 2);
    dev.fence(SITE).unwrap();
    assert_eq!(final_states(&dev), 1);
    check(dev);
}

#[test]
fn nt_then_wb_to_the_same_address() {
    let mut dev = device();
    dev.store_nt(PmemAddr(16), &0x11u64.to_le_bytes(), SITE).unwrap();
    dev.store_u64(PmemAddr(16), 0x22, SITE).unwrap();
    dev.flush(PmemAddr(16), 8, FlushKind::Clflush, SITE).unwrap();
    // The WB store is durable through clflush; the older NT store must not resurface over it.
    assert_eq!(final_states(&dev), 1);
    dev.fence(SITE).unwrap();
    check(dev);
}

#[test]
fn wb_then_nt_to_the_same_address() {
    let mut dev = device();
    dev.store_u64(PmemAddr(16), 0x22, SITE).unwrap();
    dev.store_nt(PmemAddr(16), &0x11u64.to_le_bytes(), SITE).unwrap();
    dev.fence(SITE).unwrap();
    // The NT store is durable; the older, unflushed WB store must not resurface over it.
    assert_eq!(final_states(&dev), 1);
    check(dev);
}

#[test]
fn same_line_stores_persist_as_a_prefix() {
    let mut dev = device();
    for (i, v) in [0xa1u64, 0xa2, 0xa3].into_iter().enumerate() {
        dev.store_u64(PmemAddr(i as u64 * 8), v, SITE).unwrap();
    }
    // Prefixes of three stores: 4 states, not 8.
    assert_eq!(final_states(&dev), 4);
    check(dev);
}

#[test]
fn nt_units_persist_in_any_subset() {
    let mut dev = device();
    let words: Vec<u8> = [0xa1u64, 0xa2, 0xa3].iter().flat_map(|v| v.to_le_bytes()).collect();
    dev.store_nt(PmemAddr(0), &words, SITE).unwrap();
    assert_eq!(final_states(&dev), 8);
    check(dev);
}

#[test]
fn store_spanning_two_lines_splits_into_two_line_orders() {
    let mut dev = device();
    let words: Vec<u8> = [0xa1u64, 0xb1].iter().flat_map(|v| v.to_le_bytes()).collect();
    dev.store(PmemAddr(56), &words, SITE).unwrap();
    // Each half is on its own line: 4 states.
    assert_eq!(final_states(&dev), 4);
    dev.flush(PmemAddr(56), 8, FlushKind::Clwb, SITE).unwrap();
    dev.fence(SITE).unwrap();
    assert_eq!(final_states(&dev), 2);
    check(dev);
}

#[test]
fn eadr_leaves_exactly_the_executed_prefix() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.store_nt(PmemAddr(64), &0xb1u64.to_le_bytes(), SITE).unwrap();
    dev.store_u64(PmemAddr(8), 0xa2, SITE).unwrap();
    let trace = dev.trace();
    let reference = reference_states(&**dev.initial(), trace, PersistenceModel::Eadr).unwrap();
    assert!(reference.values().all(|s| s.len() == 1), "eADR allows exactly one state per point");
    let engine = engine_states(dev.initial(), trace, PersistenceModel::Eadr).unwrap();
    assert_eq!(engine.len(), trace.len() + 1);
    check(dev);
}

#[test]
fn identity_store_keeps_the_state_hash() {
    // Word 2 initially holds pattern 2; storing it again must not change the state's name.
    let mut dev = device();
    dev.store_u64(PmemAddr(16), 0x0202_0202_0202_0202, SITE).unwrap();
    let states = engine_states(dev.initial(), dev.trace(), PersistenceModel::Adr).unwrap();
    let at_end: Vec<_> = states.iter().filter(|s| s.point == 1).collect();
    assert_eq!(at_end.len(), 2);
    assert_eq!(at_end[0].hash, at_end[1].hash);
    assert_eq!(at_end[0].image, at_end[1].image);
    check(dev);
}

#[test]
fn committed_corpus_inputs_decode_to_the_cases_they_name() {
    let names = |bytes: &[u8]| -> Vec<&'static str> {
        trace_from_bytes(bytes).trace.events().iter().map(|e| e.op.name()).collect()
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/pmem_model");
    let read = |name: &str| std::fs::read(root.join(name)).expect("committed corpus file");
    assert_eq!(names(&read("wb-then-nt-same-address")), ["store", "store_nt", "sfence"]);
    assert_eq!(names(&read("nt-then-wb-clflush")), ["store_nt", "store", "clflush", "sfence"]);
}

/// Distinct images the engine yields at `point` under `model`.
fn states_at(dev: &Device, model: PersistenceModel, point: usize) -> usize {
    let states = engine_states(dev.initial(), dev.trace(), model).expect("small trace");
    states.iter().filter(|s| s.point == point).map(|s| &s.image).collect::<BTreeSet<_>>().len()
}

fn state_at(dev: &Device, model: PersistenceModel, point: usize) -> CrashState {
    Tracker::state_at(dev.trace(), Arc::clone(dev.initial()), model, CrashPoint(point))
}

fn words(values: impl IntoIterator<Item = u64>) -> Vec<u8> {
    values.into_iter().flat_map(|v| v.to_le_bytes()).collect()
}

#[test]
fn eadr_crash_inside_a_4k_store_leaves_any_unit_prefix() {
    let mut dev = Device::with_backing(decode_initial(WIDE_DEVICE_BYTES));
    dev.store(PmemAddr(0), &words((0..512).map(|i| 0xc0de_0000 + i)), SITE).unwrap();
    // Before the store completes: 0..=511 of its 512 units (all 512 is the next point).
    let state = state_at(&dev, PersistenceModel::Eadr, 0);
    assert_eq!((state.torn.len(), state.choice_count()), (511, 512));
    assert_eq!(states_at(&dev, PersistenceModel::Eadr, 0), 512);
    assert_eq!(states_at(&dev, PersistenceModel::Eadr, 1), 1);
    let (initial, _, trace) = dev.into_parts();
    check_trace_model(&initial, &trace, PersistenceModel::Eadr).unwrap();
}

#[test]
fn eadr_torn_nt_store_and_narrow_stores() {
    let mut dev = device();
    dev.store_nt(PmemAddr(0), &words([0xa1, 0xa2, 0xa3]), SITE).unwrap();
    dev.store_u64(PmemAddr(64), 0xb1, SITE).unwrap();
    dev.fence(SITE).unwrap();
    // Inside the NT store: none, a1, a1 a2. An 8-byte store cannot tear; a fence stores nothing.
    assert_eq!(states_at(&dev, PersistenceModel::Eadr, 0), 3);
    assert_eq!(states_at(&dev, PersistenceModel::Eadr, 1), 1);
    assert_eq!(states_at(&dev, PersistenceModel::Eadr, 2), 1);
    check(dev);
}

#[test]
fn eadr_torn_choice_is_checked_and_serialized_only_when_set() {
    let mut dev = device();
    dev.store(PmemAddr(0), &words([1, 2, 3, 4]), SITE).unwrap();
    let state = state_at(&dev, PersistenceModel::Eadr, 0);
    let mut c = state.choice_all();
    assert_eq!(c.torn, 3);
    let view = View::new(&state, &c).unwrap();
    assert_eq!(view.delta().iter().map(|&(a, v)| (a, v)).collect::<Vec<_>>(), [(0, 1), (8, 2), (16, 3)]);
    assert_eq!(state.persisted(&c).len(), 3);
    c.torn = 4;
    assert!(matches!(View::new(&state, &c), Err(PmemError::BadChoice { .. })));
    let json = serde_json::to_string(&Choice { torn: 2, ..Choice::default() }).unwrap();
    assert_eq!(json, r#"{"line_prefix":[],"nt_mask":[],"torn":2}"#);
    assert_eq!(serde_json::to_string(&Choice::default()).unwrap(), r#"{"line_prefix":[],"nt_mask":[]}"#);
    let old: Choice = serde_json::from_str(r#"{"line_prefix":[],"nt_mask":[]}"#).unwrap();
    assert_eq!(old.torn, 0, "manifests written before torn prefixes load as an untorn crash");
}

#[test]
fn eadr_bounded_strategy_spreads_torn_prefixes() {
    let mut dev = Device::with_backing(decode_initial(WIDE_DEVICE_BYTES));
    dev.store(PmemAddr(0), &words(1..=512), SITE).unwrap();
    let state = state_at(&dev, PersistenceModel::Eadr, 0);
    let got: Vec<u32> = choices(&state, Strategy::Bounded, 8, rng_from_seed(3)).map(|c| c.torn).collect();
    // None, all, then halves and quarters of the store before finer cuts.
    assert_eq!(got, [0, 511, 256, 128, 384, 64, 192, 320]);
    let all: BTreeSet<u32> =
        choices(&state, Strategy::Exhaustive, 512, rng_from_seed(3)).map(|c| c.torn).collect();
    assert_eq!(all.len(), 512);
}

#[test]
fn nt_store_waits_for_earlier_wb_stores_to_its_line() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.store_nt(PmemAddr(8), &0x11u64.to_le_bytes(), SITE).unwrap();
    // None; a1; a1 and the NT unit. Never the NT unit without a1.
    assert_eq!(final_states(&dev), 3);
    let state = state_at(&dev, PersistenceModel::Adr, 2);
    assert_eq!(state.choice_count(), 3);
    assert_eq!(state.choices_exhaustive().count(), 3);
    let stranded = Choice { line_prefix: vec![0], nt_mask: vec![true], torn: 0 };
    assert!(matches!(View::new(&state, &stranded), Err(PmemError::BadChoice { .. })));
    dev.fence(SITE).unwrap();
    // The fence makes the NT unit durable, and with it the line it evicted.
    assert_eq!(final_states(&dev), 1);
    assert_eq!(state_at(&dev, PersistenceModel::Adr, 3).pending_units(), 0);
    check(dev);
}

#[test]
fn later_wb_stores_are_not_held_by_an_nt_store() {
    let mut dev = device();
    dev.store_nt(PmemAddr(8), &0x11u64.to_le_bytes(), SITE).unwrap();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    assert_eq!(final_states(&dev), 4);
    dev.fence(SITE).unwrap();
    // The NT unit is durable; the later write-back store is still optional.
    assert_eq!(final_states(&dev), 2);
    check(dev);
}

#[test]
fn nt_store_waits_for_the_whole_earlier_prefix_of_its_line_only() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.store_u64(PmemAddr(8), 0xa2, SITE).unwrap();
    dev.store_nt(PmemAddr(16), &0x11u64.to_le_bytes(), SITE).unwrap();
    dev.store_u64(PmemAddr(24), 0xa3, SITE).unwrap();
    dev.store_u64(PmemAddr(64), 0xb1, SITE).unwrap();
    // Line A: prefixes 0, 1 without the NT unit, prefixes 2, 3 with or without it: 6; line B: 2.
    assert_eq!(final_states(&dev), 12);
    assert_eq!(state_at(&dev, PersistenceModel::Adr, 5).choice_count(), 12);
    dev.fence(SITE).unwrap();
    // a1, a2 and the NT unit durable; a3 and b1 each optional.
    assert_eq!(final_states(&dev), 4);
    check(dev);
}

#[test]
fn nt_store_after_clflush_or_to_another_line_is_free() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.flush(PmemAddr(0), 64, FlushKind::Clflush, SITE).unwrap();
    dev.store_nt(PmemAddr(8), &0x11u64.to_le_bytes(), SITE).unwrap();
    dev.store_u64(PmemAddr(64), 0xb1, SITE).unwrap();
    dev.store_nt(PmemAddr(128), &0x22u64.to_le_bytes(), SITE).unwrap();
    assert_eq!(final_states(&dev), 8);
    check(dev);
}

#[test]
fn nt_store_with_a_clwb_pending_line() {
    let mut dev = device();
    dev.store_u64(PmemAddr(0), 0xa1, SITE).unwrap();
    dev.flush(PmemAddr(0), 64, FlushKind::Clwb, SITE).unwrap();
    dev.store_u64(PmemAddr(8), 0xa2, SITE).unwrap();
    dev.store_nt(PmemAddr(16), &words([0x11, 0x12]), SITE).unwrap();
    dev.store_u64(PmemAddr(32), 0xa3, SITE).unwrap();
    dev.fence(SITE).unwrap();
    // The clwb covers a1 only, the NT store's eviction a2 too; a3 stays optional.
    assert_eq!(final_states(&dev), 2);
    check(dev);
}

#[test]
fn bounded_and_random_choices_respect_nt_waits() {
    let mut dev = device();
    for (i, v) in [0xa1u64, 0xa2, 0xa3].into_iter().enumerate() {
        dev.store_u64(PmemAddr(i as u64 * 8), v, SITE).unwrap();
        dev.store_nt(PmemAddr(24 + i as u64 * 8), &(0x11 + v).to_le_bytes(), SITE).unwrap();
    }
    dev.store_u64(PmemAddr(64), 0xb1, SITE).unwrap();
    let state = state_at(&dev, PersistenceModel::Adr, dev.trace().len());
    // Line A: prefix p frees the first p NT units: 1 + 2 + 4 + 8; line B: 2.
    assert_eq!(state.choice_count(), 30);
    let exhaustive: BTreeSet<String> = state.choices_exhaustive().map(|c| format!("{c:?}")).collect();
    assert_eq!(exhaustive.len(), 30);
    for budget in [4, 12, 30, 100] {
        let got: Vec<Choice> = choices(&state, Strategy::Bounded, budget, rng_from_seed(5)).collect();
        assert_eq!(got.len(), budget.min(30));
        for c in &got {
            state.check_choice(c).unwrap_or_else(|e| panic!("budget {budget}: {c:?}: {e}"));
        }
        // Each NT unit alone comes with the write-back units it waits on.
        if budget >= 30 {
            assert!(got.contains(&Choice {
                line_prefix: vec![3, 0],
                nt_mask: vec![false, false, true],
                torn: 0
            }));
        }
    }
    let mut rng = rng_from_seed(9);
    for _ in 0..200 {
        state.check_choice(&random_choice(&state, &mut rng)).unwrap();
    }
}
