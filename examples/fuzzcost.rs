//! Cost and yield of the crash_workload fuzz harness per input:
//! `fuzzcost STATES RECOVERY_STATES POINTS [RECOVERY_CRASHES [MEDIA_FAULTS [EXPLORE_ONE_IN]]]`
//! over 60 seed inputs, or over the files of `FUZZCOST_DIR`; `CRASHSIM_BUGS` enables bugs.
//! `FUZZCOST_LAZY=N` explores lazily with at most N recoveries per point. Prints total, median and slowest seconds per input, and how many inputs the harness failed,
//! by headline class.
use crashsim::fuzzing::FuzzConfig;
use crashsim::workload::Workload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let spp: usize = args[1].parse().unwrap();
    let rc: usize = args[2].parse().unwrap();
    let mut cfg = FuzzConfig::from_env().unwrap();
    cfg.crash.states_per_point = spp;
    cfg.crash.recovery_crash.states_per_point = rc;
    cfg.crash.points_per_workload = args[3].parse().unwrap();
    if let Some(a) = args.get(4) {
        cfg.crash.recovery_crash.crashes_per_state = a.parse().unwrap();
    }
    if let Some(a) = args.get(5) {
        cfg.crash.media_faults_per_point = a.parse().unwrap();
    }
    if let Some(a) = args.get(6) {
        cfg.explore_one_in = a.parse().unwrap();
    }
    // `FUZZCOST_LAZY=N`: the sweep's lazy enumeration with at most N recoveries per point.
    if let Some(n) = std::env::var("FUZZCOST_LAZY").ok().and_then(|v| v.parse().ok()) {
        cfg.crash.strategy = crashsim::crash::Strategy::Lazy;
        cfg.crash.recoveries_per_point = n;
    }
    let inputs: Vec<Vec<u8>> = match std::env::var("FUZZCOST_DIR") {
        Ok(dir) => {
            let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
            files.sort();
            files.iter().map(|f| std::fs::read(f).unwrap()).collect()
        }
        Err(_) => (0..60u64).map(Workload::seed_input).collect(),
    };
    let mut times = Vec::new();
    let mut failed = 0usize;
    let mut classes = std::collections::BTreeMap::<String, usize>::new();
    for bytes in &inputs {
        let t = std::time::Instant::now();
        if let Err(f) = crashsim::fuzzing::crash_workload(bytes, &cfg) {
            failed += 1;
            let class = f.summary.split("headline: ").nth(1).and_then(|r| r.split(':').next()).unwrap_or("?");
            *classes.entry(class.to_string()).or_default() += 1;
        }
        times.push(t.elapsed().as_secs_f64());
    }
    let total: f64 = times.iter().sum();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = times.len();
    println!(
        "spp {spp} rc {rc}: {n} inputs, total {total:.2}s median {:.4}s max {:.2}s, failed {failed} {classes:?}",
        times[n / 2],
        times[n - 1]
    );
}
