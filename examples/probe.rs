//! How often a bug fires at run time: `probe BUG[,BUG] N` runs seeds 0..N without crash
//! exploration (policy per workload) and prints the first hits and the count.
use crashsim::daxfs::bugs::BugSet;
use crashsim::targets::daxfs::exec::{RunConfig, run};
use crashsim::workload::Workload;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bugs = BugSet::parse_list(&args[1]).unwrap();
    let n: u64 = args[2].parse().unwrap();
    let mut cfg = RunConfig { policy_per_workload: true, ..RunConfig::default() };
    cfg.mount.bugs = bugs;
    let t = std::time::Instant::now();
    let mut hits = 0;
    for seed in 0..n {
        let w = Workload::from_seed(seed);
        let out = run(&w, &cfg).unwrap();
        if let Some(f) = out.findings.first() {
            hits += 1;
            if hits <= 3 {
                println!("seed {seed}: {:?} {}", f.class, f.message);
            }
        }
    }
    println!("{n} seeds, {hits} hits, {:?}", t.elapsed());
}
