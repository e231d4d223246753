//! Crash-engine throughput on the toy log, and the overlay-vs-copy ratio on a 64 MiB device.
//!
//! Run: `cargo bench --bench crash`. Prints crash states/s (enumerated) and checked states/s
//! (recovered + checked, distinct), one core.

use std::time::Instant;

use crashsim::crash::{CrashConfig, ImageMode, RecoveryCrashConfig};
use crashsim::sweep::{self, SweepConfig, SweepSummary};
use crashsim::targets::toylog::ToyLog;

const DEVICE_BYTES: u64 = 64 << 20;

fn run(seeds: &str, image_mode: ImageMode, recovery_crashes: bool) -> (SweepSummary, f64) {
    let target = ToyLog::fixed().with_device_bytes(DEVICE_BYTES);
    let cfg = SweepConfig {
        seeds: seeds.parse().expect("seed range"),
        crash: CrashConfig {
            image_mode,
            recovery_crash: RecoveryCrashConfig {
                states_per_point: if recovery_crashes {
                    RecoveryCrashConfig::default().states_per_point
                } else {
                    0
                },
                ..RecoveryCrashConfig::default()
            },
            ..CrashConfig::default()
        },
        jobs: 1,
        budget: None,
        fail_fast: false,
    };
    let start = Instant::now();
    let s = sweep::run(&target, &cfg, &|_| {}).expect("sweep");
    assert!(s.violations.is_empty() && s.errors.is_empty(), "the fixed toy log must sweep clean");
    (s, start.elapsed().as_secs_f64())
}

fn report(label: &str, s: &SweepSummary, secs: f64) -> f64 {
    let checked = s.unique_states as f64 / secs;
    println!(
        "{label:<8} {:>5} workloads {:>8} crash states {:>7} checked {:>6} recovery crashes {:>8.3}s  \
         {:>10.0} crash states/s {:>10.0} checked states/s",
        s.workloads,
        s.crash_states,
        s.unique_states,
        s.recovery_crash_states,
        secs,
        s.crash_states as f64 / secs,
        checked
    );
    checked
}

fn main() {
    println!("toylog on a {} MiB device, bounded strategy, 1 core", DEVICE_BYTES >> 20);
    let (s, secs) = run("0..2000", ImageMode::Overlay, true);
    report("overlay", &s, secs);
    println!("(without crashes inside recovery)");
    let (s, secs) = run("0..2000", ImageMode::Overlay, false);
    let overlay = report("overlay", &s, secs);
    let (s, secs) = run("0..1", ImageMode::Copy, false);
    let copy = report("copy", &s, secs);
    println!("overlay / copy, checked states per second: {:.0}x", overlay / copy);
}
