//! `bench`: times the ordinary crash sweep of a target once per row its registration names
//! (for `crashsim`'s default target: one per allocation policy, and with `--eadr` one under
//! eADR) and prints one table row per sweep; `--bandwidth` adds this machine's memory
//! bandwidth, for scale.
//!
//! The sweep summary does not aggregate the lazy-enumeration counters of `WorkloadReport`
//! (`recoveries`, `others_judged`, `verdicts_reused`), so each sweep writes its results file
//! to a temporary directory and the counters are summed from its per-seed reports.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Args;
use crashsim::crash::{CrashConfig, WorkloadReport};
use crashsim::pmem::PersistenceModel;
use crashsim::sweep::{RESULTS_FILE, RunOptions, SeedRange, SweepConfig};

use crate::registry::{BenchRow, Registered, registry};
use crate::{Format, UsageError, grouped, parse_jobs, parse_seeds};

/// Time the crash sweep of a target: one row per configuration its registration names.
///
/// Each row runs the ordinary sweep (`crashsim sweep`, default crash config: ADR, fence crash
/// points, --strategy lazy; eADR rows: store crash points) of the target over --seeds with
/// --jobs workers. For crashsim's default target the rows fix the allocation policy to
/// zero-before-commit, then to unwritten-end-io; --eadr adds a third row, --model eadr with
/// the policy chosen per workload as `sweep` does. A target registered without rows gets one
/// row of default options (and one under eADR with --eadr). Violations do not stop a row (they
/// are counted in the JSON); the exit code is 3 if a seed could not run, else 0.
///
/// Columns:
///   row          the row's name: persistence model and target settings of the sweep
///   wall_s       wall-clock seconds of the whole sweep (run-time pass, crash exploration,
///                and one fsync'd results line per seed)
///   recoveries   recoveries run, summed over workloads (WorkloadReport::recoveries)
///   line_verd    word values judged line-locally beyond each recovered image's own, i.e.
///                line verdicts computed (WorkloadReport::others_judged)
///   reused       recoveries whose verdict was reused from an equal recovered state of the
///                same crash point (WorkloadReport::verdicts_reused)
///   states       crash states covered: the size of the crash-state space summed over every
///                crash point (coverage.state_space); `≥` marks a lower bound, and `≥3.4e38`
///                a count that saturated 128 bits
///   complete     yes if every crash state of every crash point was covered
///                (Coverage::complete), no if some were sampled or skipped
///   rec/s/core   recoveries / wall_s / jobs
///   st/s/core    states / wall_s / jobs (covered crash states per second per core; `≥`
///                when states is a lower bound)
///   peak_MiB     peak resident memory of the process during the row (VmHWM of
///                /proc/self/status, reset before each row through /proc/self/clear_refs;
///                marked `*` when the reset failed and the peak is the process's so far)
///
/// Numbers of a million or more print in scientific notation. --format json prints the same
/// rows as JSON (`rows`), with exact counts (state_space as a decimal string).
///
/// --bandwidth then measures memory bandwidth on one thread over a 1 GiB buffer: read (sum of
/// its u64 words) and copy (copy_from_slice of 512 MiB into a second buffer; bytes copied per
/// second, so the memory traffic is twice that), best of 3, in GB/s (10^9 bytes).
#[derive(Args, Debug)]
#[command(verbatim_doc_comment)]
pub(crate) struct BenchArgs {
    /// Target to time [default: the first registered].
    #[arg(long)]
    target: Option<String>,
    /// Seed range A..B (half-open) of every row.
    #[arg(long, default_value = "0..50", value_parser = parse_seeds)]
    seeds: SeedRange,
    /// Worker threads [default: available cores]. The per-core rates divide by this.
    #[arg(long, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Add a row under the eADR persistence model (store crash points).
    #[arg(long)]
    eadr: bool,
    /// Output format (text table or JSON).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also measure this machine's memory bandwidth (read and copy, GB/s).
    #[arg(long)]
    bandwidth: bool,
}

/// One sweep of the benchmark.
#[derive(Clone, Debug, serde::Serialize)]
struct Row {
    /// "adr zero-before-commit", ...
    row: String,
    model: String,
    /// The target settings of the row, `KEY=VALUE` separated by spaces ("" for defaults).
    settings: String,
    seeds: String,
    jobs: usize,
    workloads: u64,
    wall_s: f64,
    recoveries: u64,
    line_verdicts: u64,
    verdicts_reused: u64,
    /// Decimal string: a u128 that saturates at u128::MAX.
    state_space: String,
    state_space_exact: bool,
    state_space_saturated: bool,
    complete: bool,
    recoveries_per_s_per_core: f64,
    states_per_s_per_core: f64,
    peak_rss_mib: Option<f64>,
    /// False when VmHWM could not be reset before the row (the peak is the process's so far).
    peak_rss_reset: bool,
    crash_states: u64,
    violations: usize,
    errors: usize,
}

#[derive(Clone, Debug, serde::Serialize)]
struct Bandwidth {
    buffer_bytes: u64,
    read_gb_s: f64,
    copy_bytes: u64,
    copy_gb_s: f64,
}

pub(crate) fn bench_command(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    if args.format == Format::Junit {
        return Err(UsageError("bench prints text or json".to_string()).into());
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let registry = registry();
    let entry = registry.get(args.target.as_deref())?;
    let target = entry.target.as_ref();
    let rows = if entry.bench_rows.is_empty() {
        vec![BenchRow::adr("adr", &[]), BenchRow::eadr("eadr", &[])]
    } else {
        entry.bench_rows.clone()
    };
    let plans: Vec<BenchRow> =
        rows.into_iter().filter(|r| args.eadr || r.model == PersistenceModel::Adr).collect();
    let scratch = ScratchDir::new()?;
    let text = args.format == Format::Text;
    if text {
        println!(
            "crashsim bench: {}, seeds {}, --jobs {jobs}, default crash config (strategy {})",
            target.name(),
            args.seeds,
            CrashConfig::default().strategy
        );
        println!("{}", header_line());
    }
    let mut rows = Vec::new();
    for (i, plan) in plans.iter().enumerate() {
        let row = run_row(target, plan, args.seeds, jobs, &scratch.0.join(format!("row{i}")))?;
        if text {
            println!("{}", text_line(&row));
        }
        rows.push(row);
    }
    let bandwidth = if args.bandwidth { Some(measure_bandwidth()) } else { None };
    if text {
        if rows.iter().any(|r| !r.peak_rss_reset) {
            println!("* peak_MiB not reset before the row: the process's peak so far");
        }
        let bad: usize = rows.iter().map(|r| r.errors).sum();
        if bad > 0 {
            println!("{bad} seeds could not run (`crashsim sweep` with the row's options tells why)");
        }
        if let Some(b) = &bandwidth {
            println!(
                "memory bandwidth (1 thread, best of 3): read {:.2} GB/s over {} MiB; copy {:.2} GB/s over {} MiB",
                b.read_gb_s,
                b.buffer_bytes >> 20,
                b.copy_gb_s,
                b.copy_bytes >> 20
            );
        }
    } else {
        let out = serde_json::json!({
            "target": target.name(),
            "seeds": args.seeds.to_string(),
            "jobs": jobs,
            "strategy": CrashConfig::default().strategy.to_string(),
            "rows": rows,
            "bandwidth": bandwidth,
        });
        println!("{}", serde_json::to_string_pretty(&out).context("encoding the rows")?);
    }
    Ok(ExitCode::from(if rows.iter().any(|r| r.errors > 0) { 3 } else { 0 }))
}

fn run_row(
    target: &dyn Registered,
    plan: &BenchRow,
    seeds: SeedRange,
    jobs: usize,
    dir: &Path,
) -> anyhow::Result<Row> {
    let crash = CrashConfig {
        model: plan.model,
        granularity: CrashConfig::complete_granularity(plan.model),
        ..CrashConfig::default()
    };
    let cfg = SweepConfig { seeds, crash, jobs, budget: None, fail_fast: false };
    let results = dir.join(RESULTS_FILE);
    let opts = RunOptions { results: Some(results.clone()), ..RunOptions::default() };
    let peak_rss_reset = reset_peak_rss();
    let start = Instant::now();
    let summary = target
        .sweep_summary(&plan.options, &cfg, &opts)
        .with_context(|| format!("bench row {}", plan.name))?;
    let wall = start.elapsed();
    let peak_rss_mib = peak_rss_mib();
    let totals = sum_reports(&results)?;
    let wall_s = wall.as_secs_f64();
    let per_core = |n: f64| if wall > Duration::ZERO { n / wall_s / jobs as f64 } else { 0.0 };
    let space = summary.coverage.state_space.0;
    Ok(Row {
        row: plan.name.to_string(),
        model: plan.model.to_string(),
        settings: plan.options.settings.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        seeds: seeds.to_string(),
        jobs,
        workloads: summary.workloads,
        wall_s,
        recoveries: totals.recoveries,
        line_verdicts: totals.others_judged,
        verdicts_reused: totals.verdicts_reused,
        state_space: space.to_string(),
        state_space_exact: summary.coverage.state_space_exact,
        state_space_saturated: space == u128::MAX,
        complete: summary.coverage.complete(),
        recoveries_per_s_per_core: per_core(totals.recoveries as f64),
        states_per_s_per_core: per_core(space as f64),
        peak_rss_mib,
        peak_rss_reset,
        crash_states: summary.crash_states,
        violations: summary.violations.len(),
        errors: summary.errors.len(),
    })
}

/// The lazy-enumeration counters, summed over the seeds of a results file.
#[derive(Default, Debug)]
struct Totals {
    recoveries: u64,
    others_judged: u64,
    verdicts_reused: u64,
}

/// A seed line of a results file (the header line and error lines have no `report`).
#[derive(serde::Deserialize)]
struct SeedLine {
    #[serde(default)]
    report: Option<WorkloadReport>,
}

fn sum_reports(path: &Path) -> anyhow::Result<Totals> {
    let file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let mut t = Totals::default();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}", path.display()))?;
        if n == 0 || line.trim().is_empty() {
            continue; // the header
        }
        let seed: SeedLine =
            serde_json::from_str(&line).with_context(|| format!("{}: line {}", path.display(), n + 1))?;
        if let Some(r) = seed.report {
            t.recoveries += r.recoveries;
            t.others_judged += r.others_judged;
            t.verdicts_reused += r.verdicts_reused;
        }
    }
    Ok(t)
}

/// Resets VmHWM to the current RSS (Linux 4.0+); false if it could not.
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// VmHWM of /proc/self/status, in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A temporary directory for the rows' results files, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new() -> anyhow::Result<Self> {
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("crashsim-bench-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const COLUMNS: [(&str, usize); 10] = [
    ("row", 24),
    ("wall_s", 8),
    ("recoveries", 10),
    ("line_verd", 10),
    ("reused", 10),
    ("states", 10),
    ("complete", 8),
    ("rec/s/core", 10),
    ("st/s/core", 10),
    ("peak_MiB", 9),
];

fn header_line() -> String {
    let cells: Vec<String> = COLUMNS.into_iter().map(|(name, _)| name.to_string()).collect();
    join_cells(&cells)
}

fn text_line(r: &Row) -> String {
    let cells = vec![
        r.row.clone(),
        format!("{:.2}", r.wall_s),
        count(r.recoveries as u128),
        count(r.line_verdicts as u128),
        count(r.verdicts_reused as u128),
        state_count(r.state_space.parse().unwrap_or(u128::MAX), r.state_space_exact),
        if r.complete { "yes" } else { "no" }.to_string(),
        rate(r.recoveries_per_s_per_core),
        format!("{}{}", if r.state_space_exact { "" } else { "≥" }, rate(r.states_per_s_per_core)),
        match r.peak_rss_mib {
            Some(m) => format!("{m:.1}{}", if r.peak_rss_reset { "" } else { "*" }),
            None => "?".to_string(),
        },
    ];
    join_cells(&cells)
}

/// The row name left-aligned, the numbers right-aligned.
fn join_cells(cells: &[String]) -> String {
    let mut line = String::new();
    for (i, (cell, (_, width))) in cells.iter().zip(COLUMNS).enumerate() {
        if i == 0 {
            line.push_str(&format!("{cell:<width$}"));
        } else {
            line.push_str(&format!("  {cell:>width$}"));
        }
    }
    line
}

/// Grouped digits below a million, else scientific notation (2.1e9).
fn count(n: u128) -> String {
    match u64::try_from(n) {
        Ok(small) if small < 1_000_000 => grouped(small),
        _ => format!("{:.1e}", n as f64),
    }
}

/// A state-space size: `≥3.4e38` when saturated, `≥` before a lower bound.
fn state_count(n: u128, exact: bool) -> String {
    let bound = if exact && n != u128::MAX { "" } else { "≥" };
    format!("{bound}{}", count(n))
}

/// A rate: one decimal below 1000, grouped below a million, else scientific.
fn rate(x: f64) -> String {
    match x {
        x if !x.is_finite() => "-".to_string(),
        x if x < 1000.0 => format!("{x:.1}"),
        x if x < 1e6 => grouped(x.round() as u64),
        x => format!("{x:.1e}"),
    }
}

/// Best-of-3 read and copy bandwidth over a 1 GiB buffer, on this thread.
fn measure_bandwidth() -> Bandwidth {
    const BUFFER: usize = 1 << 30;
    const COPY: usize = 512 << 20;
    const WORD: usize = std::mem::size_of::<u64>();
    // Non-zero contents, so that every page is really mapped (not the shared zero page).
    let src: Vec<u64> = (0..(BUFFER / WORD) as u64).map(|i| i | 1).collect();
    let mut dst: Vec<u64> = vec![1; COPY / WORD];
    let best = |f: &mut dyn FnMut()| {
        (0..3)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    let read_s = best(&mut || {
        let sum = src.iter().fold(0u64, |a, &w| a.wrapping_add(w));
        std::hint::black_box(sum);
    });
    let copy_s = best(&mut || {
        dst.copy_from_slice(std::hint::black_box(&src[..COPY / WORD]));
        std::hint::black_box(&mut dst);
    });
    Bandwidth {
        buffer_bytes: BUFFER as u64,
        read_gb_s: BUFFER as f64 / read_s / 1e9,
        copy_bytes: COPY as u64,
        copy_gb_s: COPY as f64 / copy_s / 1e9,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates_print_short() {
        assert_eq!(count(999_999), "999,999");
        assert_eq!(count(2_100_000_000), "2.1e9");
        assert_eq!(state_count(u128::MAX, true), "≥3.4e38");
        assert_eq!(state_count(1_500, false), "≥1,500");
        assert_eq!(state_count(1_500, true), "1,500");
        assert_eq!(rate(12.34), "12.3");
        assert_eq!(rate(12_345.6), "12,346");
        assert_eq!(rate(3.2e7), "3.2e7");
    }
}
