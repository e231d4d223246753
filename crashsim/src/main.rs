//! `crashsim`: the command line over daxfs (the default target) and the toy log.

use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::toylog::ToyLog;
use crashsim_cli::{BenchRow, Cli};

fn main() -> std::process::ExitCode {
    let policy = |name| [("policy", name)];
    Cli::new()
        .target::<DaxfsTarget>()
        .bench_rows(vec![
            BenchRow::adr("adr zero-before-commit", &policy("zero-before-commit")),
            BenchRow::adr("adr unwritten-end-io", &policy("unwritten-end-io")),
            BenchRow::eadr("eadr per-workload", &[]),
        ])
        .target::<ToyLog>()
        .run()
}
