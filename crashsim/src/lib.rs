//! The crashsim command line, as a library: register your targets, get every subcommand.
//!
//! ```no_run
//! use crashsim::targets::toylog::ToyLog;
//!
//! fn main() -> std::process::ExitCode {
//!     crashsim_cli::Cli::new().target::<ToyLog>().run()
//! }
//! ```
//!
//! The binary then has `sweep`, `run`, `repro`, `show`, `minimize`, `merge`, `report`, `bugs`
//! and `bench`, with the same flags, output, exit codes, JUnit, partitions, resume and merge as
//! `crashsim` itself (which is such a binary: see its `main.rs`). The first registered target
//! is the default of `--target`; an artifact names its target, and `repro`, `show` and
//! `minimize` rebuild it with [`crashsim::target::Target::from_config`].
//!
//! Exit codes: 0 clean, 1 violation found, 2 usage error, 3 internal or input error, 130 or 143
//! interrupted by SIGINT or SIGTERM (1 if the interrupted sweep had found a violation).

#![deny(missing_docs, missing_debug_implementations)]

mod bench;
mod commands;
mod junit;
mod progress;
mod registry;
mod report;

pub use registry::BenchRow;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _, FromArgMatches as _, Parser, Subcommand, ValueEnum};
use crashsim::artifact::{ARTIFACTS_DEFAULT, ARTIFACTS_MAX, write_sweep_artifacts};
use crashsim::crash::{
    CrashConfig, RECOVERIES_PER_POINT_DEFAULT, STATES_PER_POINT_DEFAULT, STATES_PER_POINT_MAX, Strategy,
};
use crashsim::pmem::{Granularity, PersistenceModel};
use crashsim::sweep::{
    self, JOBS_MAX, Monitor, Partition, RESULTS_FILE, RunOptions, Sampling, SeedRange, SweepConfig,
    SweepError, SweepSummary,
};
use crashsim::target::{Target, TargetOptions};

/// Longest accepted `--budget`.
const BUDGET_MAX: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Parser, Debug)]
#[command(name = "crashsim", version, about = "Crash-consistency fuzzing harness for persistent-memory code")]
struct CliArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Explore the crash states of a range of seeded workloads.
    ///
    /// The summary says whether the sweep was complete (every seed, every crash state of every
    /// crash point) or what share it sampled. The first SIGINT or SIGTERM stops the sweep: seeds
    /// in flight are abandoned and the summary, marked interrupted, lists the seeds not done;
    /// --resume continues from OUT/results.jsonl. A second signal (1 s or more later) exits at once.
    ///
    /// Exit codes: 0 clean, 1 violation found, 2 usage error, 3 input or internal error (also
    /// --strategy exhaustive over budget), 130/143 interrupted by SIGINT/SIGTERM (1 if a
    /// violation was found before).
    Sweep(SweepArgs),
    /// List a target's switchable bugs.
    Bugs(BugsArgs),
    /// Explore one workload (input.bin, a fuzz artifact or a JSON workload) through all its crash states.
    Run(RunArgs),
    /// Replay an artifact: re-judge crash.img and rebuild it from input.bin (exit 1 if reproduced).
    Repro(ReproArgs),
    /// Shrink an artifact's workload and persisted set while the violation class still holds.
    Minimize(MinimizeArgs),
    /// Explain an artifact: workload, trace around the crash point, persisted/lost units, words.
    Show(ShowArgs),
    /// Combine shard summaries (JSON) or results.jsonl files into one summary.
    Merge(MergeArgs),
    /// Write an HTML report of a sweep's --out directory (or of shard directories), with a
    /// page per artifact.
    Report(ReportArgs),
    Bench(bench::BenchArgs),
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Junit,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum ModelArg {
    Adr,
    Eadr,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum CrashPointsArg {
    Fence,
    Store,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum StrategyArg {
    Lazy,
    Exhaustive,
    Bounded,
}

/// What runs and how it is crashed: shared by `sweep` and `run`.
#[derive(Args, Debug)]
struct ExploreArgs {
    /// System under test [default: the first registered].
    #[arg(long)]
    target: Option<String>,
    /// Persistence model.
    #[arg(long, value_enum, default_value_t = ModelArg::Adr)]
    model: ModelArg,
    /// Crash-point granularity [default: fence for adr, store for eadr].
    #[arg(long, value_enum)]
    crash_points: Option<CrashPointsArg>,
    /// Crash-state enumeration strategy.
    ///
    /// lazy (the default) covers every crash state: a pending line's choices are enumerated
    /// only when recovery reads it, and the lines no recovery reads are judged word by word
    /// (line-local verdicts). A crash point needing more than --recoveries-per-point
    /// recoveries is counted over budget.
    /// exhaustive and bounded recover each crash state on its own; both cover every state of
    /// a crash point whose space fits --states-per-point. Over it, bounded samples the point
    /// (systematic choices, then seeded random ones) and counts it over budget; exhaustive
    /// stops with an error naming the point and its state count, unless --exhaustive-cap.
    #[arg(long, value_enum, default_value_t = StrategyArg::Lazy, verbatim_doc_comment)]
    strategy: StrategyArg,
    /// With --strategy lazy: recoveries per crash point, at most (the budget).
    #[arg(long, default_value_t = RECOVERIES_PER_POINT_DEFAULT, value_parser = parse_recoveries_per_point)]
    recoveries_per_point: usize,
    /// With --strategy exhaustive or bounded: crash states per crash point, at most.
    #[arg(long, default_value_t = STATES_PER_POINT_DEFAULT, value_parser = parse_states_per_point)]
    states_per_point: usize,
    /// With --strategy exhaustive: sample a crash point whose state space exceeds
    /// --states-per-point, as bounded does, instead of stopping with an error (the summary
    /// counts and names such points, and the sweep is then not complete).
    #[arg(long)]
    exhaustive_cap: bool,
    /// Enable one of the target's switchable bugs by id (repeatable; `bugs --target NAME`
    /// lists them).
    #[arg(long = "bug", value_name = "ID")]
    bugs: Vec<String>,
    /// Set a target option (repeatable; the target's documentation lists its settings).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Shorthand for --set policy=VALUE (the allocation policy of the file-system target:
    /// per-workload, zero-before-commit or unwritten-end-io).
    #[arg(long, value_name = "VALUE")]
    policy: Option<String>,
    /// Shorthand for --set pmd_blocks=N (the file-system target's PMD size in 4 KiB blocks).
    #[arg(long, value_name = "N")]
    pmd_blocks: Option<String>,
    /// Stop at the first violation.
    ///
    /// The sweep checks the run-time oracles over every seed first (a run is about a
    /// thousandth of its crash exploration); if any seed fails them, the smallest such seed is
    /// explored and ends the sweep. Otherwise the smallest seed with a crash violation does
    /// (seeds below it are still explored), so the result never depends on --jobs.
    #[arg(long)]
    fail_fast: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Directory for artifacts and the sweep's results.jsonl (always written; --resume
    /// continues from it).
    #[arg(long, default_value = "crashsim-artifacts")]
    out: PathBuf,
    /// Artifacts written at most (one per distinct class and call site).
    #[arg(long, default_value_t = ARTIFACTS_DEFAULT, value_parser = parse_max_artifacts)]
    max_artifacts: usize,
}

#[derive(Args, Debug)]
struct SweepArgs {
    #[command(flatten)]
    explore: ExploreArgs,
    /// Seed range A..B (half-open).
    #[arg(long, default_value = "0..100", value_parser = parse_seeds)]
    seeds: SeedRange,
    /// Worker threads [default: available cores].
    #[arg(long, value_parser = parse_jobs)]
    jobs: Option<usize>,
    /// Start no new seed after this long (e.g. 30s, 5m, 1h).
    #[arg(long, value_parser = parse_duration)]
    budget: Option<Duration>,
    /// Run only shard I of N: the seeds s with (s - A) % N == I.
    #[arg(long, value_name = "slice:I/N", value_parser = parse_partition)]
    partition: Option<Partition>,
    /// Continue a killed or interrupted sweep from OUT/results.jsonl (same options required).
    #[arg(long)]
    resume: bool,
    /// Print a progress line to stderr this often when it is not a terminal (e.g. 30s, 5m; 0
    /// turns progress off, the bar on a terminal too). A line gives seeds done of the total,
    /// crash states, states/s, violations, the slowest seed in flight and an ETA.
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    progress_interval: Duration,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    explore: ExploreArgs,
    /// input.bin, a fuzz artifact (raw bytes) or a JSON workload.
    input: PathBuf,
}

#[derive(Args, Debug)]
struct ReproArgs {
    /// Artifact directory.
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

#[derive(Args, Debug)]
struct MinimizeArgs {
    /// Artifact directory.
    dir: PathBuf,
    /// Where to write the minimized artifact [default: DIR-min].
    #[arg(short = 'o', long = "out")]
    out: Option<PathBuf>,
    /// Write no crash.img: a rebuild-only artifact, small enough to commit.
    #[arg(long)]
    no_image: bool,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// Artifact directory.
    dir: PathBuf,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write a self-contained HTML page (timeline, pending lines, violation, workload, repro)
    /// to this file instead of printing.
    #[arg(long, value_name = "OUT.html")]
    html: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ReportArgs {
    /// A sweep's --out directory (results.jsonl and artifacts), or a directory of shard
    /// directories (each with its results.jsonl), whose results are merged.
    dir: PathBuf,
    /// The HTML report to write; each artifact's page goes to OUT.d/ next to it.
    #[arg(short = 'o', long = "out", value_name = "OUT.html")]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// Shard summaries (`sweep --format json` output) or results.jsonl files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
}

#[derive(Args, Debug)]
struct BugsArgs {
    /// Whose bugs [default: the first registered target].
    #[arg(long)]
    target: Option<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// A usage error found after parsing (exit 2).
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A `crashsim` command line over the targets registered with [`Cli::target`].
#[derive(Default)]
pub struct Cli {
    registry: registry::Registry,
}

impl std::fmt::Debug for Cli {
    /// The registered targets by name, the default (`--target`) first.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cli").field("targets", &self.registry.names()).finish_non_exhaustive()
    }
}

impl Cli {
    /// A command line that knows no target yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers target type `T` under its own [`Target::name`] (built from default options);
    /// the first registered is the default `--target`.
    pub fn target<T: Target + 'static>(mut self) -> Self {
        self.registry.add::<T>();
        self
    }

    /// The rows `bench` times for the target registered last (eADR rows only with `--eadr`);
    /// without them, one row of default options per model.
    pub fn bench_rows(mut self, rows: Vec<BenchRow>) -> Self {
        let entry = self.registry.entries.last_mut().expect("bench_rows follows a target");
        entry.bench_rows = rows;
        self
    }

    /// Parses the process's arguments, runs the command, and returns its exit code.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// [`Cli::run`] on the given arguments (the first is the program name).
    pub fn run_from<I, A>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = A>,
        A: Into<std::ffi::OsString> + Clone,
    {
        // Output piped into `head` and closed early ends the process quietly, as a Unix filter
        // should, instead of a print panicking on EPIPE. (Rust ignores SIGPIPE by default.)
        // SAFETY: restoring a signal's default disposition; no other thread changes it.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
        keep_freed_memory();
        let registry = registry::install(self.registry);
        let names = registry.names();
        let mut cmd = CliArgs::command();
        for sub in ["sweep", "run", "bugs", "bench"] {
            let names = names.clone();
            cmd = cmd.mut_subcommand(sub, |s| {
                s.mut_arg("target", |a| a.value_parser(clap::builder::PossibleValuesParser::new(names)))
            });
        }
        let cli = match cmd.try_get_matches_from(args).and_then(|m| CliArgs::from_arg_matches(&m)) {
            Ok(cli) => cli,
            Err(e) => {
                let _ = e.print();
                return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
            }
        };
        match run(cli) {
            Ok(code) => code,
            Err(e) if e.downcast_ref::<UsageError>().is_some() => {
                eprintln!("crashsim: usage error: {e}");
                ExitCode::from(2)
            }
            Err(e) => {
                eprintln!("crashsim: error: {e:#}");
                ExitCode::from(3)
            }
        }
    }
}

fn run(cli: CliArgs) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Sweep(args) => sweep_command(&args),
        Command::Bugs(args) => bugs_command(&args),
        Command::Run(args) => commands::run_command(&args),
        Command::Repro(args) => commands::repro_command(&args),
        Command::Minimize(args) => commands::minimize_command(&args),
        Command::Show(args) => commands::show_command(&args),
        Command::Merge(args) => commands::merge_command(&args),
        Command::Report(args) => report::report_command(&args),
        Command::Bench(args) => bench::bench_command(&args),
    }
}

fn sweep_command(args: &SweepArgs) -> anyhow::Result<ExitCode> {
    let e = &args.explore;
    registry::registry().get(e.target.as_deref())?.target.sweep(&target_options(e)?, args)
}

/// The target options `--bug`, `--set` and the shorthands ask for.
pub(crate) fn target_options(args: &ExploreArgs) -> anyhow::Result<TargetOptions> {
    let mut options = TargetOptions::with_bugs(&args.bugs);
    let shorthands = [("policy", &args.policy), ("pmd_blocks", &args.pmd_blocks)];
    let pairs = args
        .settings
        .iter()
        .map(|(k, v)| (k.as_str(), v))
        .chain(shorthands.into_iter().filter_map(|(k, v)| v.as_ref().map(|v| (k, v))));
    for (key, value) in pairs {
        if options.settings.insert(key.to_string(), value.clone()).is_some() {
            return Err(UsageError(format!("target option `{key}` given twice")).into());
        }
    }
    Ok(options)
}

/// `--out` names a directory, or nothing yet.
pub(crate) fn check_out_dir(flag: &str, out: &Path) -> anyhow::Result<()> {
    if out.exists() && !out.is_dir() {
        return Err(UsageError(format!("{flag} must be a directory; {} is a file", out.display())).into());
    }
    Ok(())
}

pub(crate) fn sweep_target<T: Target>(target: &T, args: &SweepArgs) -> anyhow::Result<ExitCode> {
    let cfg = sweep_config(args)?;
    let e = &args.explore;
    check_out_dir("--out", &e.out)?;
    if args.resume && args.budget.is_some() {
        // Allowed, but say what a resumed budget means.
        eprintln!("crashsim: note: --budget counts from the resume, not from the first start");
    }
    let signals = progress::Signals::install().context("installing the SIGINT/SIGTERM handlers")?;
    let monitor = Arc::new(Monitor::new());
    let opts = RunOptions {
        partition: args.partition,
        results: Some(e.out.join(RESULTS_FILE)),
        resume: args.resume,
        cancel: Some(Arc::clone(&signals.cancel)),
        monitor: Some(Arc::clone(&monitor)),
    };
    let reporter = progress::Reporter::start(monitor, args.progress_interval, &signals);
    let result = sweep::run_with(target, &cfg, &opts, &|_| {});
    reporter.finish();
    let mut summary = result.map_err(|e| match e {
        SweepError::OverBudget { .. } => anyhow::anyhow!(
            "sweep: {e}; raise --states-per-point, or pass --exhaustive-cap to sample such points"
        ),
        e => anyhow::Error::new(e).context("sweep"),
    })?;
    write_sweep_artifacts(target, &mut summary, &e.out, e.max_artifacts).context("writing artifacts")?;
    print_summary(&summary, e.format, |seed| repro_command(&summary, e, seed))?;
    if resumable(&summary) && e.format != Format::Text {
        // JSON and JUnit go to stdout whole; the way on goes to stderr.
        eprintln!("crashsim: continue with: {}", resume_command(args));
    } else if resumable(&summary) {
        println!("continue with: {}", resume_command(args));
    }
    match (summary.interrupted, signals.received()) {
        (true, Some(signal)) if summary.violations.is_empty() => Ok(ExitCode::from(128 + signal as u8)),
        (true, _) if !summary.violations.is_empty() => Ok(ExitCode::from(1)),
        _ => Ok(summary_exit(&summary)),
    }
}

/// The command line that continues this sweep where it stopped.
fn resume_command(args: &SweepArgs) -> String {
    let mut words: Vec<String> = std::env::args().collect();
    if let Some(first) = words.first_mut() {
        *first = bin_name();
    }
    if !args.resume {
        words.push("--resume".to_string());
    }
    words.join(" ")
}

/// Whether the summary has seeds that a resumed sweep would explore.
fn resumable(s: &SweepSummary) -> bool {
    (s.interrupted || s.budget_exhausted) && s.results_file.is_some()
}

/// Prints a summary in `format`; `repro` gives the one-line command for a seed (text only).
pub(crate) fn print_summary(
    summary: &SweepSummary,
    format: Format,
    repro: impl Fn(u64) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(summary).context("encoding the summary")?)
        }
        Format::Junit => println!("{}", junit::report(summary).context("encoding JUnit")?),
        Format::Text => print_text(summary, repro),
    }
    Ok(())
}

/// 3 if a seed could not run, 1 if a violation was found, else 0.
pub(crate) fn summary_exit(summary: &SweepSummary) -> ExitCode {
    ExitCode::from(match (summary.errors.is_empty(), summary.violations.is_empty()) {
        (false, _) => 3,
        (true, false) => 1,
        (true, true) => 0,
    })
}

pub(crate) fn crash_config(args: &ExploreArgs) -> anyhow::Result<CrashConfig> {
    if args.exhaustive_cap && args.strategy != StrategyArg::Exhaustive {
        return Err(UsageError(
            "--exhaustive-cap caps --strategy exhaustive; bounded always samples over budget".to_string(),
        )
        .into());
    }
    let model = match args.model {
        ModelArg::Adr => PersistenceModel::Adr,
        ModelArg::Eadr => PersistenceModel::Eadr,
    };
    let granularity = match args.crash_points {
        None => CrashConfig::complete_granularity(model),
        Some(CrashPointsArg::Fence) => Granularity::Fence,
        Some(CrashPointsArg::Store) => Granularity::Store,
    };
    let strategy = match args.strategy {
        StrategyArg::Exhaustive => Strategy::Exhaustive,
        StrategyArg::Bounded => Strategy::Bounded,
        StrategyArg::Lazy => Strategy::Lazy,
    };
    Ok(CrashConfig {
        model,
        granularity,
        strategy,
        states_per_point: args.states_per_point,
        exhaustive_cap: args.exhaustive_cap,
        recoveries_per_point: args.recoveries_per_point,
        // --fail-fast: a seed's first violation ends its exploration too.
        violations_per_workload: if args.fail_fast {
            1
        } else {
            CrashConfig::default().violations_per_workload
        },
        ..CrashConfig::default()
    })
}

fn sweep_config(args: &SweepArgs) -> anyhow::Result<SweepConfig> {
    let crash = crash_config(&args.explore)?;
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    Ok(SweepConfig { seeds: args.seeds, crash, jobs, budget: args.budget, fail_fast: args.explore.fail_fast })
}

fn print_text(s: &SweepSummary, repro: impl Fn(u64) -> String) {
    let c = &s.config;
    let shard = s.partition.map(|p| format!(" ({p})")).unwrap_or_default();
    println!(
        "sweep {} seeds {}{shard}: model {}, crash points {}, strategy {}, {}",
        s.target,
        s.seeds,
        c.model,
        granularity_name(c.granularity),
        c.strategy,
        match c.strategy {
            Strategy::Lazy => format!("{} recoveries/point", c.recoveries_per_point),
            _ => format!("{} states/point", c.states_per_point),
        }
    );
    println!(
        "{} workloads, {} crash points, {} crash states ({} unique, {} inside recovery) in {:.2}s ({:.0} states/s){}",
        s.workloads,
        s.crash_points,
        s.crash_states,
        s.unique_states,
        s.recovery_crash_states,
        s.elapsed_s,
        s.states_per_s,
        if s.seeds_skipped == 0 { String::new() } else { format!("; {} seeds skipped", s.seeds_skipped) }
    );
    println!("{}", coverage_line(s));
    if let Some(line) = not_done_line(s) {
        println!("{line}");
    }
    if let Some(path) = &s.results_file {
        println!("results: {path}");
    }
    // One line per failing seed (the first violation it found); JSON lists them all.
    for (i, v) in s.violations.iter().enumerate() {
        if i > 0 && s.violations[i - 1].seed == v.seed {
            continue;
        }
        let more = s.violations[i..].iter().take_while(|w| w.seed == v.seed).count() - 1;
        let more = if more > 0 { format!(" (+{more} more)") } else { String::new() };
        println!("VIOLATION seed {}: {}{more}", v.seed, v.violation);
        println!("  repro: {}", repro(v.seed));
    }
    for v in s.violations.iter().filter(|v| v.artifact.is_some()) {
        println!(
            "  artifact: {} ({}; {} repro {0})",
            v.artifact.as_deref().unwrap_or(""),
            v.violation.class,
            bin_name()
        );
    }
    for e in &s.errors {
        println!("ERROR seed {}: {}", e.seed, e.message);
    }
    println!("{}: {} violations, {} errors", verdict(s), s.violations.len(), s.errors.len());
}

/// Why seeds were not done, and which: `INTERRUPTED: 40 of 100 seeds not done: 12..40, 60..100`.
pub(crate) fn not_done_line(s: &SweepSummary) -> Option<String> {
    if s.skipped.is_empty() {
        return None;
    }
    let why = if s.interrupted {
        "INTERRUPTED"
    } else if s.budget_exhausted {
        "budget exhausted"
    } else {
        // Fail-fast, or a merge of results files that lack some seeds.
        "not explored"
    };
    let total = s.workloads + s.seeds_skipped + s.errors.len() as u64;
    Some(format!(
        "{why}: {} of {} seeds not done: {}",
        grouped(s.seeds_skipped),
        grouped(total),
        seed_ranges(s)
    ))
}

/// The seeds not done as ranges, at most 20 of them.
pub(crate) fn seed_ranges(s: &SweepSummary) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = s
        .skipped_ranges
        .iter()
        .take(SHOWN)
        .map(|r| if r.len() == 1 { r.start.to_string() } else { r.to_string() })
        .collect();
    if s.skipped_ranges.len() > SHOWN {
        text.push(format!("and {} more ranges", s.skipped_ranges.len() - SHOWN));
    }
    let shard = s.partition.map(|p| format!(" (the seeds of shard {p} in them)")).unwrap_or_default();
    format!("{}{shard}", text.join(", "))
}

/// "clean" only for a complete sweep; otherwise what was searched.
pub(crate) fn verdict(s: &SweepSummary) -> &'static str {
    if !s.violations.is_empty() {
        "VIOLATIONS FOUND"
    } else if s.interrupted {
        "interrupted, no violation found so far"
    } else if !s.states_complete {
        "no violation found in the sampled states"
    } else if !s.seeds_complete {
        "no violation found in the seeds explored"
    } else {
        "clean"
    }
}

/// One line: whether the sweep was complete, or what share it sampled.
pub(crate) fn coverage_line(s: &SweepSummary) -> String {
    let mut parts = Vec::new();
    if s.seeds_skipped > 0 {
        let total = s.workloads + s.seeds_skipped + s.errors.len() as u64;
        parts.push(format!("{} of {} seeds not explored", grouped(s.seeds_skipped), grouped(total)));
    }
    if !s.errors.is_empty() {
        parts.push(format!("{} seeds could not run", grouped(s.errors.len() as u64)));
    }
    let states = coverage_text(&s.coverage);
    let mut line = match (s.complete, s.states_complete) {
        (true, _) => format!("coverage: {states}"),
        (false, true) => {
            // Every state of the workloads explored, but not every seed.
            let explored = states.trim_start_matches("complete: ");
            if s.workloads > 0 {
                parts.push(explored.replace("every crash state of", "every crash state of the explored"));
            }
            format!("coverage: incomplete: {}", parts.join("; "))
        }
        (false, false) => {
            parts.insert(0, states.trim_start_matches("sampled: ").to_string());
            format!("coverage: sampled: {}", parts.join("; "))
        }
    };
    let extras: Vec<&str> = [("recovery crashes", s.recovery_crashes), ("media faults", s.media_faults)]
        .into_iter()
        .filter(|(_, how)| *how == Sampling::Sampled)
        .map(|(what, _)| what)
        .collect();
    if !extras.is_empty() {
        line.push_str(&format!("; {} sampled", extras.join(" and ")));
    }
    line
}

/// "complete: ..." or "sampled: ..." for one coverage record.
pub(crate) fn coverage_text(c: &crashsim::crash::Coverage) -> String {
    if c.complete() {
        let bound = if c.state_space_exact { "" } else { "≥ " };
        return format!(
            "complete: every crash state of {} crash points ({bound}{} states)",
            grouped(c.points),
            big_count(c.state_space.0)
        );
    }
    let mut parts = Vec::new();
    if c.points_over_budget > 0 {
        parts.push(format!(
            "{} of {} crash points over budget",
            grouped(c.points_over_budget),
            grouped(c.points)
        ));
    }
    if c.points_skipped > 0 {
        parts.push(format!(
            "{} of {} crash points not explored or cut short (point sample or violation limit)",
            grouped(c.points_skipped),
            grouped(c.points)
        ));
    }
    let bound = if c.state_space_exact { "" } else { "≥ " };
    let share = c.share() * 100.0;
    let share = match share {
        x if x > 0.0 && x < 0.1 => "<0.1%".to_string(),
        x if x >= 99.95 => ">99.9%".to_string(),
        x => format!("{x:.1}%"),
    };
    parts.push(format!(
        "{} of {bound}{} crash states explored ({share})",
        grouped(c.states_explored),
        big_count(c.state_space.0)
    ));
    format!("sampled: {}", parts.join("; "))
}

/// `n` with thousands separators: 1,567.
pub(crate) use crashsim::artifact::html::grouped;

/// A state count: grouped digits below a billion, else two significant digits (2.1e9).
fn big_count(n: u128) -> String {
    match u64::try_from(n) {
        Ok(small) if small < 1_000_000_000 => grouped(small),
        _ => format!("{:.1e}", n as f64),
    }
}

/// The name of the running binary (`crashsim`, or a user's own), for the commands it prints.
pub(crate) fn bin_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| std::path::Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "crashsim".to_string())
}

/// The one-line command that re-runs just `seed` with the same options.
fn repro_command(s: &SweepSummary, args: &ExploreArgs, seed: u64) -> String {
    let c = &s.config;
    let granularity = granularity_name(c.granularity);
    let mut cmd = format!(
        "{} sweep --target {} --seeds {}..{} --model {} --crash-points {granularity} --strategy {} --states-per-point {}",
        bin_name(),
        s.target,
        seed,
        seed + 1,
        c.model,
        c.strategy,
        c.states_per_point
    );
    if c.exhaustive_cap {
        cmd.push_str(" --exhaustive-cap");
    }
    for bug in &args.bugs {
        cmd.push_str(&format!(" --bug {bug}"));
    }
    for (key, value) in &args.settings {
        cmd.push_str(&format!(" --set {key}={value}"));
    }
    if let Some(policy) = &args.policy {
        cmd.push_str(&format!(" --policy {policy}"));
    }
    if let Some(pmd) = &args.pmd_blocks {
        cmd.push_str(&format!(" --pmd-blocks {pmd}"));
    }
    cmd
}

pub(crate) fn granularity_name(g: Granularity) -> &'static str {
    match g {
        Granularity::Fence => "fence",
        Granularity::Store => "store",
    }
}

fn bugs_command(args: &BugsArgs) -> anyhow::Result<ExitCode> {
    let registry = registry::registry();
    let entry = registry.get(args.target.as_deref())?;
    let catalogue = entry.target.catalogue();
    match args.format {
        Format::Junit => return Err(UsageError("bugs prints text or json".to_string()).into()),
        Format::Json => {
            println!("{}", serde_json::to_string_pretty(catalogue).context("encoding the catalogue")?);
        }
        Format::Text if catalogue.is_empty() => {
            println!("target {} has no switchable bugs", entry.target.name())
        }
        Format::Text => {
            let width = catalogue.iter().map(|b| b.id.len()).max().unwrap_or(0);
            for b in catalogue {
                println!("{:<width$}  {}", b.id, b.summary);
                println!("{:<width$}  from: {}", "", b.origin);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn parse_partition(s: &str) -> Result<Partition, String> {
    s.parse::<Partition>().map_err(|e| e.to_string())
}

fn parse_max_artifacts(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n <= ARTIFACTS_MAX => Ok(n),
        _ => Err(format!("max artifacts must be an integer in 0..={ARTIFACTS_MAX}")),
    }
}

fn parse_seeds(s: &str) -> Result<SeedRange, String> {
    s.parse::<SeedRange>().map_err(|e| e.to_string())
}

fn parse_setting(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

fn parse_bounded(s: &str, what: &str, max: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("{what} must be an integer in 1..={max}")),
    }
}

fn parse_jobs(s: &str) -> Result<usize, String> {
    parse_bounded(s, "jobs", JOBS_MAX)
}

fn parse_states_per_point(s: &str) -> Result<usize, String> {
    parse_bounded(s, "states per point", STATES_PER_POINT_MAX)
}

fn parse_recoveries_per_point(s: &str) -> Result<usize, String> {
    parse_bounded(s, "recoveries per point", STATES_PER_POINT_MAX)
}

/// `90`, `90s`, `500ms`, `5m`, `2h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("bad duration `{s}`: expected e.g. 30s, 5m, 1h, 500ms, at most 7 days");
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let ms_per = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let d = Duration::from_millis(n.checked_mul(ms_per).ok_or_else(bad)?);
    if d > BUDGET_MAX {
        return Err(bad());
    }
    Ok(d)
}

/// Tells glibc's allocator to keep the memory a crash point frees for the next one. Each crash
/// point builds and drops buffers of a few MiB (pending units, cells, views); by default glibc
/// maps those afresh and hands them back to the kernel when freed, so every point paid for page
/// faults on fresh memory (a quarter of a heavy workload's time, measured). Peak memory does
/// not change: the kept memory is what the last point used.
fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only tunes the allocator's thresholds, under the allocator's own lock.
    unsafe {
        // Allocations up to 32 MiB (glibc's largest mmap threshold) come from the heap, and
        // the heap is trimmed only when 256 MiB at its top are free.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        for bad in ["", "s", "5x", "-1s", "999999h", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_print_grouped_or_scientific() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(356_000), "356,000");
        assert_eq!(grouped(1_567), "1,567");
        assert_eq!(big_count(999_999_999), "999,999,999");
        assert_eq!(big_count(2_100_000_000), "2.1e9");
        assert_eq!(big_count(u128::MAX), "3.4e38");
    }
}

/// The guide's code blocks, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../docs/guide.md")]
#[derive(Debug)]
pub struct GuideDoctests;
