//! `run`, `repro`, `minimize`, `show` and `merge`: thin wrappers over `crashsim::artifact` and
//! `crashsim::sweep`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use crashsim::artifact::{
    self, ArtifactSource, INPUT_BYTES_MAX, InputKind, Loaded, artifact_name, render_text, write_artifact,
};
use crashsim::crash::explore_workload;
use crashsim::sweep::{SweepSummary, merge_summaries, summary_from_results};
use crashsim::target::Target;

use crate::registry::registry;
use crate::{
    Format, MergeArgs, MinimizeArgs, ReproArgs, RunArgs, ShowArgs, UsageError, coverage_text, crash_config,
    print_summary, summary_exit, target_options,
};

fn load(dir: &Path) -> anyhow::Result<Loaded> {
    Ok(artifact::load(dir)?)
}

pub fn run_command(args: &RunArgs) -> anyhow::Result<ExitCode> {
    if args.explore.format == Format::Junit {
        return Err(UsageError("run prints text or json; junit is for sweeps".to_string()).into());
    }
    let e = &args.explore;
    registry().get(e.target.as_deref())?.target.run(&target_options(e)?, args)
}

/// A JSON workload if the bytes parse as one, else raw bytes through the target's decoder.
fn decode_input<T: Target>(
    t: &T,
    bytes: &[u8],
) -> Result<(T::Workload, InputKind), crashsim::target::WorkloadError> {
    if let Ok(w) = serde_json::from_slice::<T::Workload>(bytes) {
        t.validate_workload(&w)?;
        return Ok((w, InputKind::Json));
    }
    Ok((t.workload_from_bytes(bytes)?, InputKind::Raw))
}

pub(crate) fn run_input<T: Target>(t: &T, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let path = &args.input;
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    if bytes.len() as u64 > INPUT_BYTES_MAX {
        anyhow::bail!("{}: {} bytes, at most {INPUT_BYTES_MAX}", path.display(), bytes.len());
    }
    let (workload, kind) = decode_input(t, &bytes).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let e = &args.explore;
    crate::check_out_dir("--out", &e.out)?;
    let cfg = crash_config(e)?;
    let report = explore_workload(t, &cfg, 0, &workload, None).map_err(|e| match e {
        crashsim::target::TargetError::OverBudget { .. } => anyhow::anyhow!(
            "run: {e}; raise --states-per-point, or pass --exhaustive-cap to sample such points"
        ),
        e => anyhow::Error::new(e).context("run"),
    })?;
    let src = ArtifactSource { seed: None, stream_seed: 0, kind, input: bytes, hold_image: true };
    let mut seen = BTreeSet::new();
    let mut artifacts = Vec::new();
    for v in &report.violations {
        let site = v.evidence.last_writer.as_ref().map(|w| w.site.clone());
        if artifacts.len() >= e.max_artifacts || !seen.insert((v.class, site)) {
            continue;
        }
        let name = artifact_name(None, v);
        artifacts
            .push(write_artifact(t, &cfg, &src, &workload, v, &e.out, &name).context("writing artifact")?);
    }
    let artifacts: Vec<String> = artifacts.iter().map(|p| p.display().to_string()).collect();
    match e.format {
        Format::Json => {
            let out = serde_json::json!({
                "target": t.name(), "input": path.display().to_string(), "kind": kind,
                "config": cfg, "report": report, "artifacts": artifacts,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        _ => {
            println!(
                "run {} on {}: {} crash points, {} crash states ({} unique)",
                t.name(),
                path.display(),
                report.crash_points,
                report.crash_states,
                report.unique_states
            );
            println!("coverage: {}", coverage_text(&report.coverage));
            for v in &report.violations {
                println!("VIOLATION {v}");
            }
            for a in &artifacts {
                println!("  artifact: {a} ({} repro {a})", crate::bin_name());
            }
            let verdict = match (report.violations.is_empty(), report.coverage.complete()) {
                (false, _) => "VIOLATIONS FOUND",
                (true, true) => "clean",
                (true, false) => "no violation found in the sampled states",
            };
            println!("{verdict}: {} violations", report.violations.len());
        }
    }
    Ok(ExitCode::from(if report.violations.is_empty() { 0 } else { 1 }))
}

pub fn repro_command(args: &ReproArgs) -> anyhow::Result<ExitCode> {
    let loaded = load(&args.dir)?;
    let report = registry().for_artifact(&loaded)?.repro(&loaded)?;
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        _ => {
            println!("artifact {}: {}", args.dir.display(), report.expected);
            match report.found.iter().find(|v| v.class == report.expected.class) {
                Some(v) => println!("REPRODUCED: {v}"),
                None => println!("not reproduced ({} other violations)", report.found.len()),
            }
            println!(
                "{}",
                match report.image_identical {
                    Some(true) => "crash.img is byte-identical to the image rebuilt from input.bin",
                    Some(false) =>
                        "WARNING: crash.img differs from the image rebuilt from input.bin (nondeterminism?)",
                    None => "no crash.img held (run-time violation or rebuild-only artifact)",
                }
            );
        }
    }
    Ok(ExitCode::from(if report.reproduced { 1 } else { 0 }))
}

pub fn minimize_command(args: &MinimizeArgs) -> anyhow::Result<ExitCode> {
    if let Some(out) = &args.out {
        crate::check_out_dir("-o/--out", out)?;
    }
    let loaded = load(&args.dir)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let mut name = args.dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        name.push("-min");
        args.dir.with_file_name(name)
    });
    let m = registry().for_artifact(&loaded)?.minimize(&loaded, &out, !args.no_image)?;
    println!("minimized {} -> {} ({} explorations)", args.dir.display(), m.path.display(), m.runs);
    println!("{:<18} {:>8} {:>8}", "", "before", "after");
    println!("{:<18} {:>8} {:>8}", "operations", m.before.ops, m.after.ops);
    println!("{:<18} {:>8} {:>8}", "trace events", m.before.trace_events, m.after.trace_events);
    println!("{:<18} {:>8} {:>8}", "persisted units", m.before.persisted_units, m.after.persisted_units);
    println!("still: {}", m.violation);
    Ok(ExitCode::SUCCESS)
}

/// Loads and explains the artifact in `dir`.
pub(crate) fn explain_dir(dir: &Path) -> anyhow::Result<artifact::Explanation> {
    let loaded = load(dir)?;
    registry().for_artifact(&loaded)?.explain(&loaded)
}

pub fn show_command(args: &ShowArgs) -> anyhow::Result<ExitCode> {
    let x = explain_dir(&args.dir)?;
    if let Some(out) = &args.html {
        let page = artifact::render_html(&x, &format!("{} repro {}", crate::bin_name(), args.dir.display()));
        std::fs::write(out, page).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&x)?),
        _ => print!("{}", render_text(&x)),
    }
    Ok(ExitCode::SUCCESS)
}

/// A results.jsonl file starts with a header line; anything else is read as a JSON summary.
fn read_summary(path: &PathBuf) -> anyhow::Result<SweepSummary> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    if text.trim_start().starts_with("{\"header\"") {
        return Ok(summary_from_results(path)?);
    }
    serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: not a sweep summary: {e}", path.display()))
}

pub fn merge_command(args: &MergeArgs) -> anyhow::Result<ExitCode> {
    let parts = args.files.iter().map(read_summary).collect::<anyhow::Result<Vec<_>>>()?;
    let merged = merge_summaries(parts)?;
    print_summary(&merged, args.format, |seed| {
        format!("{} sweep --target {} --seeds {seed}..{}", crate::bin_name(), merged.target, seed + 1)
    })?;
    Ok(summary_exit(&merged))
}
