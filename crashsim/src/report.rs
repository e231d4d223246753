//! `crashsim report DIR -o OUT.html`: one self-contained HTML page over a sweep's `--out`
//! directory (or a directory of shard directories, merged): options, coverage, violations by
//! class and by call site linking to a page per artifact (written to `OUT.d/`), seeds per second
//! over the run, and the slowest seeds. The results files are the source; a `summary.json` beside
//! one (a saved `sweep --format json`) adds whether that run was interrupted or out of budget.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use crashsim::artifact::html::{escape, grouped, page};
use crashsim::artifact::{MANIFEST_FILE, render_html};
use crashsim::sweep::{RESULTS_FILE, SweepSummary, merge_summaries, summary_from_results};

use crate::{ReportArgs, UsageError, coverage_line, granularity_name, not_done_line, verdict};

/// A sweep's JSON summary, when saved beside its results.
const SUMMARY_FILE: &str = "summary.json";
/// Slowest seeds listed.
const SLOWEST: usize = 10;
/// Bars of the seeds-per-second chart, at most.
const RATE_BINS: usize = 48;

/// One sweep directory: the root, or one shard.
struct Part {
    /// "" for the root, else the shard directory's name.
    label: String,
    dir: PathBuf,
}

/// A finished seed as its results line tells.
struct SeedRow {
    part: usize,
    seed: u64,
    elapsed_s: Option<f64>,
    session: u32,
    at_s: Option<f64>,
    crash_states: u64,
    violations: usize,
    error: bool,
}

/// An artifact found in a sweep directory, with its page.
struct ArtifactRow {
    name: String,
    /// The page, relative to the report.
    link: String,
    class: String,
    site: String,
    seed: Option<u64>,
    crash_point: Option<usize>,
}

pub fn report_command(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    let dir = &args.dir;
    if !dir.exists() {
        anyhow::bail!("no sweep directory at {}", dir.display());
    }
    if !dir.is_dir() {
        anyhow::bail!("{} is a file; expected a sweep's --out directory (results.jsonl)", dir.display());
    }
    if args.out.is_dir() {
        return Err(
            UsageError(format!("-o/--out must be a file; {} is a directory", args.out.display())).into()
        );
    }
    let parts = find_parts(dir)?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let summaries = parts.iter().map(part_summary).collect::<anyhow::Result<Vec<_>>>()?;
    let partitions: Vec<String> =
        summaries.iter().filter_map(|s| s.partition.map(|p| p.to_string())).collect();
    let summary = if summaries.len() == 1 {
        summaries.into_iter().next().expect("one")
    } else {
        merge_summaries(summaries).context("merging the shard results")?
    };
    let mut seeds = Vec::new();
    let mut headers = Vec::new();
    for (i, p) in parts.iter().enumerate() {
        let (header, rows) = read_rows(&p.dir.join(RESULTS_FILE), i)?;
        headers.push(header);
        seeds.extend(rows);
    }
    let pages_dir = pages_dir(&args.out);
    let artifacts = write_artifact_pages(&parts, &pages_dir)?;
    let html = render(&summary, &parts, &partitions, &headers, &seeds, &artifacts, dir);
    std::fs::write(&args.out, html).with_context(|| format!("writing {}", args.out.display()))?;
    match artifacts.len() {
        0 => println!("wrote {} (no artifacts)", args.out.display()),
        n => println!("wrote {} ({n} artifact pages in {})", args.out.display(), pages_dir.display()),
    }
    Ok(ExitCode::SUCCESS)
}

/// A part's summary from its results file; a `summary.json` beside it (`sweep --format json`
/// output) adds what the results file cannot tell: whether the run was interrupted or ran out of
/// budget.
fn part_summary(p: &Part) -> anyhow::Result<SweepSummary> {
    let mut s = summary_from_results(&p.dir.join(RESULTS_FILE))?;
    let path = p.dir.join(SUMMARY_FILE);
    if path.is_file() {
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let given: SweepSummary = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not a sweep summary: {e}", path.display()))?;
        if given.target != s.target || given.seeds != s.seeds || given.config != s.config {
            anyhow::bail!("{}: the summary of another sweep than {RESULTS_FILE}", path.display());
        }
        s.interrupted |= given.interrupted;
        s.budget_exhausted |= given.budget_exhausted;
    }
    Ok(s)
}

/// `OUT.d` next to `OUT.html`.
fn pages_dir(out: &Path) -> PathBuf {
    let stem = out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "report".into());
    out.with_file_name(format!("{stem}.d"))
}

/// The root directory if it holds results.jsonl, else every subdirectory that does (shards).
fn find_parts(dir: &Path) -> anyhow::Result<Vec<Part>> {
    if dir.join(RESULTS_FILE).is_file() {
        return Ok(vec![Part { label: String::new(), dir: dir.to_path_buf() }]);
    }
    let mut parts = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let e = e.with_context(|| format!("{}", dir.display()))?;
        let path = e.path();
        if path.join(RESULTS_FILE).is_file() {
            parts.push(Part { label: e.file_name().to_string_lossy().into_owned(), dir: path });
        }
    }
    parts.sort_by(|a, b| a.label.cmp(&b.label));
    if parts.is_empty() {
        anyhow::bail!(
            "{}: no {RESULTS_FILE} (a sweep's --out directory holds one; a directory of shards holds one per shard)",
            dir.display()
        );
    }
    Ok(parts)
}

/// The header and finished seeds of a results file.
fn read_rows(path: &Path, part: usize) -> anyhow::Result<(serde_json::Value, Vec<SeedRow>)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let mut lines = text.lines();
    let header: serde_json::Value = lines
        .next()
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .and_then(|v| v.get("header").cloned())
        .ok_or_else(|| anyhow::anyhow!("{}: line 1 is not a header", path.display()))?;
    let mut rows = Vec::new();
    // The last line may be torn by a kill; summary_from_results already accepted the file.
    let complete = if text.ends_with('\n') { usize::MAX } else { text.lines().count().saturating_sub(2) };
    for (i, line) in lines.enumerate().take(complete) {
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{}: line {}: {e}", path.display(), i + 2))?;
        let num = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let report = v.get("report");
        rows.push(SeedRow {
            part,
            seed: v.get("seed").and_then(serde_json::Value::as_u64).unwrap_or(0),
            elapsed_s: num("elapsed_s"),
            session: v.get("session").and_then(serde_json::Value::as_u64).unwrap_or(0) as u32,
            at_s: num("at_s"),
            crash_states: report
                .and_then(|r| r.get("crash_states"))
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            violations: report
                .and_then(|r| r.get("violations"))
                .and_then(serde_json::Value::as_array)
                .map_or(0, Vec::len),
            error: v.get("error").is_some(),
        });
    }
    Ok((header, rows))
}

/// Writes a page for every artifact directory of every part; returns them in order.
fn write_artifact_pages(parts: &[Part], pages: &Path) -> anyhow::Result<Vec<ArtifactRow>> {
    let mut rows = Vec::new();
    for p in parts {
        let mut dirs: Vec<PathBuf> = std::fs::read_dir(&p.dir)
            .with_context(|| format!("{}", p.dir.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|d| d.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
        if dirs.is_empty() {
            continue;
        }
        std::fs::create_dir_all(pages).with_context(|| format!("creating {}", pages.display()))?;
        for d in dirs {
            let name = d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let file =
                if p.label.is_empty() { format!("{name}.html") } else { format!("{}-{name}.html", p.label) };
            let x = crate::commands::explain_dir(&d)?;
            let seed = crashsim::artifact::load(&d)?.manifest.seed;
            let html = render_html(&x, &format!("{} repro {}", crate::bin_name(), d.display()));
            let path = pages.join(&file);
            std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
            let dir_name = pages.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            rows.push(ArtifactRow {
                name: if p.label.is_empty() { name } else { format!("{}/{name}", p.label) },
                link: format!("{}/{}", url_part(&dir_name), url_part(&file)),
                class: x.violation.class.to_string(),
                site: site_of(x.violation.evidence.last_writer.as_ref().map(|w| w.site.as_str())),
                seed,
                crash_point: x.crash_point,
            });
        }
    }
    Ok(rows)
}

fn site_of(site: Option<&str>) -> String {
    site.unwrap_or("(no last writer)").to_string()
}

/// A path segment percent-encoded for a relative URL.
fn url_part(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

fn links(artifacts: &[ArtifactRow], keep: impl Fn(&ArtifactRow) -> bool) -> String {
    let l: Vec<String> = artifacts
        .iter()
        .filter(|a| keep(a))
        .map(|a| format!("<a href=\"{}\">{}</a>", escape(&a.link), escape(&a.name)))
        .collect();
    if l.is_empty() { "no artifact written (see --max-artifacts)".to_string() } else { l.join("<br>") }
}

/// The distinct seeds, the first few of them.
fn seeds_text(seeds: &[u64]) -> String {
    let distinct: std::collections::BTreeSet<u64> = seeds.iter().copied().collect();
    let mut s: Vec<String> = distinct.iter().take(8).map(u64::to_string).collect();
    if distinct.len() > 8 {
        s.push(format!("and {} more", distinct.len() - 8));
    }
    s.join(", ")
}

/// A state count: grouped digits below a billion, else two significant digits (2.1e9).
fn big_count(n: u128) -> String {
    match u64::try_from(n) {
        Ok(small) if small < 1_000_000_000 => grouped(small),
        _ => format!("{:.1e}", n as f64),
    }
}

fn render(
    s: &SweepSummary,
    parts: &[Part],
    partitions: &[String],
    headers: &[serde_json::Value],
    seeds: &[SeedRow],
    artifacts: &[ArtifactRow],
    dir: &Path,
) -> String {
    let verdict = verdict(s);
    let title = format!("crashsim sweep report: {} seeds {}: {verdict}", s.target, s.seeds);
    let mut b = String::new();
    let cls = if s.violations.is_empty() { "ok" } else { "bad" };
    let _ = writeln!(
        b,
        "<h1>{}</h1>\n<p id=\"verdict\" class=\"{cls}\" data-complete=\"{}\" data-violations=\"{}\">{}: {} violations, {} errors</p>",
        escape(&format!("crashsim sweep: {} seeds {}", s.target, s.seeds)),
        s.complete,
        s.violations.len(),
        escape(verdict),
        grouped(s.violations.len() as u64),
        grouped(s.errors.len() as u64)
    );
    let shards = if parts.len() > 1 {
        format!(", merged from {} shards ({})", parts.len(), partitions.join(", "))
    } else {
        String::new()
    };
    let _ = writeln!(
        b,
        "<p class=\"note\">from <code>{}</code>{}</p>",
        escape(&dir.display().to_string()),
        escape(&shards)
    );
    if let Some(line) = not_done_line(s) {
        let _ = writeln!(b, "<p class=\"bad\">{}</p>", escape(&line));
    }
    options(&mut b, s, headers);
    coverage(&mut b, s);
    violations(&mut b, s, artifacts);
    rate_chart(&mut b, s, parts, seeds);
    slowest(&mut b, parts, seeds);
    if !s.errors.is_empty() {
        let _ = writeln!(b, "<h2>Errors</h2>\n<table><tr><th>seed</th><th>message</th></tr>");
        for e in &s.errors {
            let _ = writeln!(b, "<tr><td>{}</td><td>{}</td></tr>", e.seed, escape(&e.message));
        }
        let _ = writeln!(b, "</table>");
    }
    page(&title, &b)
}

fn options(b: &mut String, s: &SweepSummary, headers: &[serde_json::Value]) {
    let c = &s.config;
    let _ = writeln!(b, "<h2>Options</h2>\n<table id=\"options\">");
    let mut row = |k: &str, v: String| {
        let _ = writeln!(b, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    };
    row("target", s.target.clone());
    row("seeds", s.seeds.to_string());
    row("model", c.model.to_string());
    row("crash points", granularity_name(c.granularity).to_string());
    row("strategy", c.strategy.to_string());
    row("states per point", c.states_per_point.to_string());
    if c.exhaustive_cap {
        row("exhaustive cap", "on".to_string());
    }
    row("violations per workload", c.violations_per_workload.to_string());
    row("media faults per point", c.media_faults_per_point.to_string());
    if c.points_per_workload > 0 {
        row("crash points per workload (sample)", c.points_per_workload.to_string());
    }
    let fail_fast =
        headers.iter().any(|h| h.get("fail_fast").and_then(serde_json::Value::as_bool) == Some(true));
    row("fail fast", if fail_fast { "on" } else { "off" }.to_string());
    let _ = writeln!(b, "</table>");
}

fn coverage(b: &mut String, s: &SweepSummary) {
    let c = &s.coverage;
    let how = if s.complete {
        "complete"
    } else if s.states_complete {
        "incomplete"
    } else {
        "sampled"
    };
    let _ = writeln!(
        b,
        "<h2>Coverage</h2>\n<p id=\"coverage\" data-coverage=\"{how}\"><strong>{}</strong></p>\n<table>",
        escape(&coverage_line(s))
    );
    let mut row = |k: &str, v: String| {
        let _ = writeln!(b, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(&v));
    };
    let yes = |x: bool| if x { "yes" } else { "no" }.to_string();
    row("complete (every seed and every crash state)", yes(s.complete));
    row("seeds complete", yes(s.seeds_complete));
    row("states complete", yes(s.states_complete));
    row("workloads explored", grouped(s.workloads));
    row("seeds not explored", grouped(s.seeds_skipped));
    row("crash points", grouped(c.points));
    row("crash points over budget (sampled)", grouped(c.points_over_budget));
    row("crash points not explored or cut short", grouped(c.points_skipped));
    row("crash states explored", grouped(c.states_explored));
    let bound = if c.state_space_exact { "" } else { "≥ " };
    row("crash-state space", format!("{bound}{}", big_count(c.state_space.0)));
    row("crash states run (with recovery crashes)", grouped(s.crash_states));
    row("unique crash states", grouped(s.unique_states));
    row("crash states inside recovery", grouped(s.recovery_crash_states));
    row("recovery crashes", s.recovery_crashes.to_string());
    row("media faults", s.media_faults.to_string());
    row("elapsed", format!("{:.1} s ({:.0} states/s)", s.elapsed_s, s.states_per_s));
    if !s.over_budget_points.is_empty() {
        let pts: Vec<String> =
            s.over_budget_points.iter().map(|p| format!("seed {} point {}", p.seed, p.point)).collect();
        row("first crash points over budget", pts.join(", "));
    }
    let _ = writeln!(b, "</table>");
}

fn violations(b: &mut String, s: &SweepSummary, artifacts: &[ArtifactRow]) {
    let _ = writeln!(b, "<h2>Violations</h2>");
    if s.violations.is_empty() && artifacts.is_empty() {
        let _ = writeln!(b, "<p id=\"no-violations\">None: {}.</p>", escape(verdict(s)));
        return;
    }
    let mut by_class: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut by_site: BTreeMap<String, (Vec<String>, Vec<u64>)> = BTreeMap::new();
    for v in &s.violations {
        let class = v.violation.class.to_string();
        by_class.entry(class.clone()).or_default().push(v.seed);
        let site = site_of(v.violation.evidence.last_writer.as_ref().map(|w| w.site.as_str()));
        let e = by_site.entry(site).or_default();
        if !e.0.contains(&class) {
            e.0.push(class);
        }
        e.1.push(v.seed);
    }
    let _ = writeln!(
        b,
        "<h3>By class</h3>\n<table id=\"by-class\"><tr><th>class</th><th>violations</th><th>seeds</th><th>artifacts</th></tr>"
    );
    for (class, seeds) in &by_class {
        let _ = writeln!(
            b,
            "<tr><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(class),
            seeds.len(),
            escape(&seeds_text(seeds)),
            links(artifacts, |a| a.class == *class)
        );
    }
    let _ = writeln!(
        b,
        "</table>\n<h3>By call site (last writer of the offending word)</h3>\n<table id=\"by-site\"><tr><th>call site</th><th>classes</th><th>violations</th><th>seeds</th><th>artifacts</th></tr>"
    );
    for (site, (classes, seeds)) in &by_site {
        let _ = writeln!(
            b,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(site),
            escape(&classes.join(", ")),
            seeds.len(),
            escape(&seeds_text(seeds)),
            links(artifacts, |a| a.site == *site && classes.contains(&a.class))
        );
    }
    let _ = writeln!(
        b,
        "</table>\n<h3>Artifacts</h3>\n<table id=\"artifacts\"><tr><th>artifact (its page)</th><th>class</th><th>seed</th><th>crash point</th><th>call site</th></tr>"
    );
    for a in artifacts {
        let _ = writeln!(
            b,
            "<tr><td><a href=\"{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            escape(&a.link),
            escape(&a.name),
            escape(&a.class),
            a.seed.map_or("-".to_string(), |s| s.to_string()),
            a.crash_point.map_or("run time".to_string(), |p| p.to_string()),
            escape(&a.site)
        );
    }
    let _ = writeln!(b, "</table>");
}

/// Seeds finished per second over the run, from the per-seed `at_s` of results.jsonl (shards
/// are taken to start together; a resumed run continues where the earlier one ended).
fn rate_chart(b: &mut String, s: &SweepSummary, parts: &[Part], seeds: &[SeedRow]) {
    let _ = writeln!(b, "<h2>Seeds per second over the run</h2>");
    // Where each run (part, session) starts on the sweep's clock: after the earlier sessions.
    let mut span: BTreeMap<(usize, u32), f64> = BTreeMap::new();
    for r in seeds {
        if let Some(at) = r.at_s {
            let e = span.entry((r.part, r.session)).or_insert(0.0);
            *e = e.max(at);
        }
    }
    let mut offset: BTreeMap<(usize, u32), f64> = BTreeMap::new();
    let mut acc: BTreeMap<usize, f64> = BTreeMap::new();
    for (&(part, session), &len) in &span {
        let a = acc.entry(part).or_insert(0.0);
        offset.insert((part, session), *a);
        *a += len;
    }
    let times: Vec<f64> = seeds
        .iter()
        .filter_map(|r| r.at_s.map(|at| offset.get(&(r.part, r.session)).copied().unwrap_or(0.0) + at))
        .collect();
    if times.is_empty() {
        let _ = writeln!(b, "<p>No per-seed timings in the results file.</p>");
        return;
    }
    let total = times.iter().copied().fold(0.0_f64, f64::max).max(1e-3);
    let bins = RATE_BINS.min(times.len()).max(1);
    let width_s = total / bins as f64;
    let mut counts = vec![0u64; bins];
    for t in &times {
        counts[((t / width_s) as usize).min(bins - 1)] += 1;
    }
    let rates: Vec<f64> = counts.iter().map(|&c| c as f64 / width_s).collect();
    let max = rates.iter().copied().fold(0.0_f64, f64::max).max(1e-9);
    let (w, h, left, bottom) = (1000usize, 220usize, 70usize, 40usize);
    let plot_w = w - left - 20;
    let plot_h = h - bottom - 20;
    let bar_w = plot_w as f64 / bins as f64;
    let mean = times.len() as f64 / total;
    let _ = writeln!(
        b,
        "<p>{} seeds finished in {:.1} s of wall clock{}: {:.2} seeds/s on average, at most {:.2} seeds/s \
         (bars: seeds finished per {:.2} s interval).</p>",
        grouped(times.len() as u64),
        total,
        if parts.len() > 1 { " (shards side by side, each from its start)" } else { "" },
        mean,
        max,
        width_s
    );
    let _ = writeln!(
        b,
        "<svg id=\"rate-chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" \
         role=\"img\" aria-label=\"seeds per second over the run\">\
         <line x1=\"{left}\" y1=\"20\" x2=\"{left}\" y2=\"{}\" stroke=\"#111\"/>\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#111\"/>\
         <text x=\"{}\" y=\"26\" font-size=\"12\" text-anchor=\"end\">{max:.2}</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">0</text>\
         <text x=\"{left}\" y=\"{}\" font-size=\"12\">0 s</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"12\" text-anchor=\"end\">{total:.1} s</text>\
         <text x=\"12\" y=\"{}\" font-size=\"12\" transform=\"rotate(-90 12 {})\" text-anchor=\"middle\">seeds/s</text>",
        20 + plot_h,
        20 + plot_h,
        left + plot_w,
        20 + plot_h,
        left - 6,
        left - 6,
        20 + plot_h,
        20 + plot_h + 18,
        left + plot_w,
        20 + plot_h + 18,
        20 + plot_h / 2,
        20 + plot_h / 2,
    );
    for (i, r) in rates.iter().enumerate() {
        let bh = (r / max * plot_h as f64).round();
        let x = left as f64 + i as f64 * bar_w;
        let _ = writeln!(
            b,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{bh:.1}\" fill=\"#0b3d91\" stroke=\"#fff\"><title>{:.1}-{:.1} s: {:.2} seeds/s</title></rect>",
            x,
            20.0 + plot_h as f64 - bh,
            bar_w.max(1.0),
            i as f64 * width_s,
            (i + 1) as f64 * width_s,
            r
        );
    }
    let _ = writeln!(b, "</svg>");
    let _ = s;
}

fn slowest(b: &mut String, parts: &[Part], seeds: &[SeedRow]) {
    let _ = writeln!(b, "<h2>Slowest seeds</h2>");
    let mut timed: Vec<&SeedRow> = seeds.iter().filter(|r| r.elapsed_s.is_some()).collect();
    if timed.is_empty() {
        let _ = writeln!(b, "<p>No per-seed timings in the results file.</p>");
        return;
    }
    timed.sort_by(|a, b| {
        b.elapsed_s.unwrap_or(0.0).total_cmp(&a.elapsed_s.unwrap_or(0.0)).then(a.seed.cmp(&b.seed))
    });
    let shard_col = parts.len() > 1;
    let _ = writeln!(
        b,
        "<table id=\"slowest\"><tr><th>seed</th><th>seconds</th><th>crash states</th><th>violations</th>{}</tr>",
        if shard_col { "<th>shard</th>" } else { "" }
    );
    for r in timed.into_iter().take(SLOWEST) {
        let shard =
            if shard_col { format!("<td>{}</td>", escape(&parts[r.part].label)) } else { String::new() };
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td>{shard}</tr>",
            r.seed,
            r.elapsed_s.unwrap_or(0.0),
            grouped(r.crash_states),
            if r.error { "error".to_string() } else { r.violations.to_string() }
        );
    }
    let _ = writeln!(b, "</table>");
}
