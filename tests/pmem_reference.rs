//! The persistence engine (Tracker + crash points + views) against the brute-force reference of
//! DESIGN §3, on seeded random traces and on hand-written corner cases.

use std::sync::Arc;

use crashsim::pmem::reference::{
    DECODE_PENDING_UNITS_MAX, check_trace, decode_initial, engine_states, reference_states, trace_from_bytes,
};
use crashsim::pmem::{Device, FlushKind, PersistenceModel, PmemAddr, Tracker, crash_points};
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
