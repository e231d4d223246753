use crashsim::daxfs::fs::AllocPolicy;
use crashsim::targets::daxfs::exec::{RunConfig, run};
use crashsim::workload::Workload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("dump") {
        let seed = args[2].parse().unwrap();
        dump(seed);
        let out = run(&Workload::from_seed(seed), &RunConfig::default()).unwrap();
        for (t, r) in out.results.iter().enumerate() {
            println!("results t{t}: {r:?}");
        }
        for f in &out.findings {
            println!("{f:?}");
        }
        return;
    }
    let n: u64 = args.get(1).map_or(200, |s| s.parse().unwrap());
    let pmd: u64 = args.get(2).map_or(512, |s| s.parse().unwrap());
    for policy in [AllocPolicy::ZeroBeforeCommit, AllocPolicy::UnwrittenEndIo] {
        let mut cfg = RunConfig { pmd_blocks: pmd, ..RunConfig::default() };
        cfg.mount.policy = policy;
        let t = std::time::Instant::now();
        let (mut bad, mut events, mut errs) = (0, 0usize, 0usize);
        for seed in 0..n {
            let w = Workload::from_seed(seed);
            let out = run(&w, &cfg).unwrap();
            events += out.device.trace().len();
            errs += out.results.iter().flatten().filter(|r| r.is_err()).count();
            if !out.findings.is_empty() {
                bad += 1;
                if bad <= 5 {
                    println!("seed {seed}: {:?}", out.findings[0]);
                }
            }
        }
        println!(
            "{policy:?}: {n} workloads, {bad} with findings, {events} trace events, {errs} op errors, {:?}",
            t.elapsed()
        );
    }
}

#[allow(dead_code)]
pub fn dump(seed: u64) {
    let w = Workload::from_seed(seed);
    for (t, ops) in w.threads.iter().enumerate() {
        for (i, op) in ops.iter().enumerate() {
            println!("t{t}.{i}: {op:?}");
        }
    }
}
