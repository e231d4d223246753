use crashsim::crash::{CrashConfig, explore_seed};
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seed: u64 = args.get(1).map_or(4, |s| s.parse().unwrap());
    let pmd: u64 = args.get(2).map_or(512, |s| s.parse().unwrap());
    let t = DaxfsTarget::new(RunConfig { pmd_blocks: pmd, ..RunConfig::default() });
    let start = std::time::Instant::now();
    let r = explore_seed(&t, &CrashConfig::default(), seed).unwrap();
    println!(
        "seed {seed}: {:?} points {} states {} unique {} violations {}",
        start.elapsed(),
        r.crash_points,
        r.crash_states,
        r.unique_states,
        r.violations.len()
    );
}
