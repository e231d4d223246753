//! The worked examples of `docs/persistence-model.md`, recomputed with the engine: each listing in
//! the doc must be exactly what the engine enumerates, so the doc cannot drift from the code.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::Arc;

use crashsim::pmem::{
    Backing, CrashPoint, Device, FlushKind, Granularity, PersistenceModel, PmemAddr, Tracker, View,
    crash_points,
};

const SITE: &str = "docs::example";
const LINE_A: u64 = 0x00;
const LINE_B: u64 = 0x40;
const DOC: &str = include_str!("../docs/persistence-model.md");

/// The example trace: three stores to line A, one to line B, clwb/sfence/clflush between.
fn example() -> Device {
    let mut d = Device::new(128);
    d.store_u64(PmemAddr(LINE_A), 0xa1, SITE).unwrap(); // 0
    d.store_u64(PmemAddr(LINE_A + 8), 0xa2, SITE).unwrap(); // 1
    d.flush(PmemAddr(LINE_A), 64, FlushKind::Clwb, SITE).unwrap(); // 2
    d.store_u64(PmemAddr(LINE_A + 16), 0xa3, SITE).unwrap(); // 3
    d.store_u64(PmemAddr(LINE_B), 0xb1, SITE).unwrap(); // 4
    d.fence(SITE).unwrap(); // 5
    d.flush(PmemAddr(LINE_B), 64, FlushKind::Clflush, SITE).unwrap(); // 6
    d
}

/// `a1`-style name of a stored word, `--` for the initial zero.
fn word_name(v: &dyn Backing, addr: u64) -> String {
    let mut w = [0u8; 8];
    v.read_at(addr, &mut w);
    match u64::from_le_bytes(w) {
        0 => "--".to_string(),
        x => format!("{x:x}"),
    }
}

/// A torn store under eADR: one 32-byte store (a journal slot) to line A, one word to line B.
fn example_wide() -> Device {
    let mut d = Device::new(128);
    let slot: Vec<u8> = [0xa1u64, 0xa2, 0xa3, 0xa4].iter().flat_map(|v| v.to_le_bytes()).collect();
    d.store(PmemAddr(LINE_A), &slot, SITE).unwrap(); // 0
    d.store_u64(PmemAddr(LINE_B), 0xb1, SITE).unwrap(); // 1
    d.fence(SITE).unwrap(); // 2
    d
}

/// An NT store to a line holding a pending write-back store, then a later write-back store.
fn example_nt() -> Device {
    let mut d = Device::new(128);
    d.store_u64(PmemAddr(LINE_A), 0xa1, SITE).unwrap(); // 0
    d.store_nt(PmemAddr(LINE_A + 8), &0xc1u64.to_le_bytes(), SITE).unwrap(); // 1
    d.store_u64(PmemAddr(LINE_A + 16), 0xa2, SITE).unwrap(); // 2
    d.fence(SITE).unwrap(); // 3
    d
}

/// `A=[...] B=[...]`: the first `a_words` words of line A and the first word of line B.
fn render_image(v: &dyn Backing, a_words: u64) -> String {
    let a: Vec<String> = (0..a_words).map(|i| word_name(v, LINE_A + i * 8)).collect();
    format!("A=[{}] B=[{}]", a.join(" "), word_name(v, LINE_B))
}

/// The listing for one model: per crash point, every distinct state in enumeration order, with
/// the pending units that persisted to make it.
fn listing(dev: &Device, a_words: u64, model: PersistenceModel, granularity: Granularity) -> String {
    let trace = dev.trace();
    let mut t = Tracker::new(trace, Arc::clone(dev.initial()), model);
    let mut out = String::new();
    let mut distinct = BTreeSet::new();
    for point in crash_points(trace, granularity) {
        t.advance_to(point);
        let state = t.crash_state();
        let what = match trace.events().get(point.0) {
            Some(e) => format!("before {}", e.op.name()),
            None => "end of trace".to_string(),
        };
        let mut seen = BTreeSet::new();
        let mut lines = String::new();
        for choice in state.choices_exhaustive() {
            let view = View::new(&state, &choice).unwrap();
            if !seen.insert(view.state_hash()) {
                continue;
            }
            distinct.insert(view.state_hash());
            let persisted: Vec<String> =
                state.persisted(&choice).iter().map(|u| format!("{:x}", u.value)).collect();
            let persisted = if persisted.is_empty() { "nothing".to_string() } else { persisted.join(" ") };
            writeln!(lines, "    {}   pending persisted: {persisted}", render_image(&view, a_words)).unwrap();
        }
        let n = seen.len();
        writeln!(out, "  crash point {} ({what}): {n} state{}", point.0, if n == 1 { "" } else { "s" })
            .unwrap();
        out.push_str(&lines);
    }
    writeln!(out, "  distinct states over all crash points: {}", distinct.len()).unwrap();
    format!("{model}\n{out}")
}

#[test]
fn doc_lists_exactly_the_adr_states() {
    let got = listing(&example(), 3, PersistenceModel::Adr, Granularity::Fence);
    assert!(DOC.contains(&got), "docs/persistence-model.md must contain this ADR listing:\n{got}");
}

#[test]
fn doc_lists_exactly_the_eadr_states() {
    let got = listing(&example(), 3, PersistenceModel::Eadr, Granularity::Store);
    assert!(DOC.contains(&got), "docs/persistence-model.md must contain this eADR listing:\n{got}");
}

#[test]
fn doc_lists_exactly_the_torn_store_states() {
    let got = listing(&example_wide(), 4, PersistenceModel::Eadr, Granularity::Store);
    assert!(DOC.contains(&got), "docs/persistence-model.md must contain this torn-store listing:\n{got}");
}

#[test]
fn doc_lists_exactly_the_nt_on_a_pending_line_states() {
    let got = listing(&example_nt(), 3, PersistenceModel::Adr, Granularity::Fence);
    assert!(DOC.contains(&got), "docs/persistence-model.md must contain this NT-store listing:\n{got}");
}

#[test]
fn example_has_pending_units_at_every_adr_crash_point() {
    let dev = example();
    for point in [5, 6, 7] {
        let s = Tracker::state_at(
            dev.trace(),
            Arc::clone(dev.initial()),
            PersistenceModel::Adr,
            CrashPoint(point),
        );
        assert!(s.pending_units() > 0, "crash point {point}");
    }
}
