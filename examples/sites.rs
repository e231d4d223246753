//! Trace events of one seed by (operation, call site): `sites SEED`.
use crashsim::targets::daxfs::exec::{RunConfig, run};
use crashsim::workload::Workload;
use std::collections::BTreeMap;

fn main() {
    let seed: u64 = std::env::args().nth(1).unwrap().parse().unwrap();
    let cfg = RunConfig { policy_per_workload: true, ..RunConfig::default() };
    let out = run(&Workload::from_seed(seed), &cfg).unwrap();
    let mut m: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for e in out.device.trace().events() {
        *m.entry((e.op.name(), e.site)).or_default() += 1;
    }
    for (k, v) in m {
        println!("{v:6} {} {}", k.0, k.1);
    }
}
