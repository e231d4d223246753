//! Cost of the crash_workload fuzz harness per input: `fuzzcost STATES RECOVERY_STATES POINTS`
//! over 60 seed inputs (total, median, slowest).
use crashsim::fuzzing::FuzzConfig;
use crashsim::workload::Workload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spp: usize = args[1].parse().unwrap();
    let rc: usize = args[2].parse().unwrap();
    let mut cfg = FuzzConfig::from_bug_list("").unwrap();
    cfg.crash.states_per_point = spp;
    cfg.crash.recovery_crash.states_per_point = rc;
    cfg.crash.points_per_workload = args[3].parse().unwrap();
    let mut times = Vec::new();
    for seed in 0..60u64 {
        let bytes = Workload::seed_input(seed);
        let t = std::time::Instant::now();
        let _ = crashsim::fuzzing::crash_workload(&bytes, &cfg);
        times.push(t.elapsed().as_secs_f64());
    }
    let total: f64 = times.iter().sum();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("spp {spp} rc {rc}: total {total:.2}s median {:.4}s max {:.2}s", times[30], times[59]);
}
