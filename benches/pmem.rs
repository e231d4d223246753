//! pmem micro-benchmarks (hand-rolled, no criterion): `cargo bench --bench pmem`.
//!
//! (a) trace-recording cost per 8-byte `store_u64`, sequential and scattered over 1 MiB, with a
//!     clwb + sfence every 8 stores;
//! (b) crash-state cost: `Tracker::crash_state()` (snapshot) and `View::new` for a state with ~50
//!     pending units, on 16 MiB and 256 MiB devices — both independent of device size: they
//!     grow with the written pages (and how they cluster into page-table chunks), not the device.
//!
//! Every figure is the median of several repetitions.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crashsim::pmem::{CrashPoint, Device, FlushKind, PAGE_BYTES, PersistenceModel, PmemAddr, Tracker, View};
use crashsim::rng::*;

const SITE: &str = "bench::pmem";
const REGION_BYTES: u64 = 1 << 20;
const STORES_PER_REP: usize = 1 << 20;
const STORE_REPS: usize = 7;
const STORES_PER_FLUSH: usize = 8;
const STATE_REPS: usize = 2001;
const PENDING_UNITS: usize = 50;
const DURABLE_STORES: usize = 4096;
const DURABLE_PAGES: u64 = 1024;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One repetition of `STORES_PER_REP` stores at `addrs` (cycled), flushing every 8 stores.
fn record_stores(addrs: &[u64]) -> Duration {
    let mut dev = Device::new(16 << 20);
    let start = Instant::now();
    for (i, &a) in addrs.iter().cycle().take(STORES_PER_REP).enumerate() {
        dev.store_u64(PmemAddr(a), i as u64, SITE).expect("in range");
        if i % STORES_PER_FLUSH == STORES_PER_FLUSH - 1 {
            dev.flush(PmemAddr(a), 8, FlushKind::Clwb, SITE).expect("in range");
            dev.fence(SITE).expect("room");
        }
    }
    let elapsed = start.elapsed();
    black_box(dev.trace().len());
    elapsed
}

fn bench_store(label: &str, addrs: &[u64]) {
    record_stores(addrs); // warm-up
    let samples: Vec<Duration> = (0..STORE_REPS).map(|_| record_stores(addrs)).collect();
    let ns = median(samples).as_nanos() as f64 / STORES_PER_REP as f64;
    println!("store_u64 {label:<10} {ns:>8.1} ns/store (incl. clwb+sfence every {STORES_PER_FLUSH})");
}

/// Where the durable pages of the crash-state benchmark lie.
#[derive(Copy, Clone, Debug)]
enum Layout {
    /// `DURABLE_PAGES` consecutive pages at the start of the device: same on every size.
    Dense,
    /// `DURABLE_PAGES` pages spread evenly over the whole device.
    Spread,
}

/// A device of `size_bytes` with durable data on `DURABLE_PAGES` pages and `PENDING_UNITS`
/// pending units.
fn device_with_pending(size_bytes: u64, layout: Layout) -> Device {
    let mut dev = Device::new(size_bytes);
    let stride_bytes = match layout {
        Layout::Dense => PAGE_BYTES,
        Layout::Spread => size_bytes / DURABLE_PAGES,
    };
    for k in 0..DURABLE_STORES as u64 {
        let a = (k % DURABLE_PAGES) * stride_bytes + (k / DURABLE_PAGES) * 8;
        dev.store_u64(PmemAddr(a), a, SITE).expect("in range");
        dev.flush(PmemAddr(a), 8, FlushKind::Clwb, SITE).expect("in range");
    }
    dev.fence(SITE).expect("room");
    for i in 0..PENDING_UNITS as u64 {
        // Ten lines, five units each, in the middle of the device.
        let a = size_bytes / 2 + (i % 10) * 64 + (i / 10) * 8;
        dev.store_u64(PmemAddr(a), i, SITE).expect("in range");
    }
    dev
}

fn time_each<T>(mut f: impl FnMut() -> T) -> Duration {
    let samples: Vec<Duration> = (0..STATE_REPS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    median(samples)
}

fn bench_crash_state(size_bytes: u64, layout: Layout) {
    let dev = device_with_pending(size_bytes, layout);
    let trace = dev.trace();
    let mut tracker = Tracker::new(trace, Arc::clone(dev.initial()), PersistenceModel::Adr);
    tracker.advance_to(CrashPoint(trace.len()));
    let state = tracker.crash_state();
    assert_eq!(state.pending_units(), PENDING_UNITS);
    let choice = state.choice_all();
    let snapshot = time_each(|| tracker.crash_state());
    let view = time_each(|| View::new(&state, &choice).expect("valid choice"));
    let both = time_each(|| {
        let s = tracker.crash_state();
        let c = s.choice_all();
        View::new(&s, &c).expect("valid choice")
    });
    println!(
        "{:>4} MiB device, {:<6} {} durable pages: crash_state {:>6.2} us, View::new {:>5.2} us, both {:>6.2} us",
        size_bytes >> 20,
        format!("{layout:?},"),
        state.base.pages_written(),
        snapshot.as_nanos() as f64 / 1e3,
        view.as_nanos() as f64 / 1e3,
        both.as_nanos() as f64 / 1e3,
    );
}

fn main() {
    let sequential: Vec<u64> = (0..REGION_BYTES / 8).map(|i| i * 8).collect();
    let mut rng = rng_from_seed(1);
    let scattered: Vec<u64> =
        (0..REGION_BYTES / 8).map(|_| rng.random_range(0..REGION_BYTES / 8) * 8).collect();
    bench_store("sequential", &sequential);
    bench_store("scattered", &scattered);
    for layout in [Layout::Dense, Layout::Spread] {
        for size_bytes in [16u64 << 20, 256 << 20] {
            bench_crash_state(size_bytes, layout);
        }
    }
}
