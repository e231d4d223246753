//! Shards, the append-only results file, and merging summaries.
//!
//! `results.jsonl`: line 1 is `{"header": ...}` (target, seeds, shard, crash config); every
//! further line is one finished seed, `{"seed": N, "report": ...}` or `{"seed": N, "error":
//! "..."}`, with when it ran (`elapsed_s`: the seed's own wall-clock seconds; `session`: 0 for
//! the first run, one more per `--resume`; `at_s`: seconds from that run's start to the seed's
//! end), written with one `write` and fsync'd before the next seed is reported. The sweep's
//! elapsed time is the sum, over its runs, of the latest `at_s` of each. A sweep killed
//! mid-line leaves a torn last line, which `--resume` drops (and truncates away) before
//! appending; any other bad line is an error, never silently skipped.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::crash::{CrashConfig, WorkloadReport};

use super::{Monitor, SeedOutcome, SeedRange, SeedTiming, SweepError, SweepSummary};

/// The results file's name inside `--out`.
pub const RESULTS_FILE: &str = "results.jsonl";
/// Most shards a range may be split into.
pub const PARTITIONS_MAX: u64 = 1 << 16;

/// Shard `index` of `count`: the seeds `s` with `(s - start) % count == index`. Written
/// `slice:I/N`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Partition {
    /// This shard, `0..count`.
    pub index: u64,
    /// Shards the range is split into, 1..=[`PARTITIONS_MAX`].
    pub count: u64,
}

impl std::str::FromStr for Partition {
    type Err = SweepError;
    fn from_str(s: &str) -> Result<Self, SweepError> {
        let bad = || SweepError::BadPartition(s.to_string());
        let (i, n) = s.strip_prefix("slice:").and_then(|r| r.split_once('/')).ok_or_else(bad)?;
        let p = Partition { index: i.parse().map_err(|_| bad())?, count: n.parse().map_err(|_| bad())? };
        if p.count == 0 || p.count > PARTITIONS_MAX || p.index >= p.count {
            return Err(bad());
        }
        Ok(p)
    }
}

impl std::fmt::Display for Partition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slice:{}/{}", self.index, self.count)
    }
}

/// Options of [`super::run_with`] beyond the sweep's own config.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Explore only this shard of the seed range (`None`: every seed).
    pub partition: Option<Partition>,
    /// Append every finished seed to this results file.
    pub results: Option<PathBuf>,
    /// Keep the seeds the results file already holds instead of starting it afresh.
    pub resume: bool,
    /// Once set (by a signal handler, say), the seeds in flight are abandoned, no more are
    /// started, and the summary says `interrupted`.
    pub cancel: Option<Arc<AtomicBool>>,
    /// Live progress, for a reporter on another thread.
    pub monitor: Option<Arc<Monitor>>,
}

/// What a results file tells about the runs that wrote it.
#[derive(Copy, Clone, Debug, Default, PartialEq)]
pub(super) struct History {
    /// The number the next run gets: one more than the last run's, 0 for a new file.
    pub sessions: u32,
    /// Wall-clock seconds of all runs so far.
    pub elapsed_s: f64,
}

/// What a results file is about; a resumed sweep must match it exactly.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct ResultsHeader {
    pub target: String,
    /// The target's configuration (`Target::config_json`: its bugs and settings), so a resume
    /// with other `--bug` or `--set` options is refused instead of mixing two sweeps' seeds.
    #[serde(default)]
    pub target_config: serde_json::Value,
    pub seeds: SeedRange,
    pub partition: Option<Partition>,
    pub config: CrashConfig,
    pub fail_fast: bool,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct HeaderLine {
    header: ResultsHeader,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct SeedLine {
    seed: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<WorkloadReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    elapsed_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at_s: Option<f64>,
}

/// Sessions and elapsed time of the runs behind `timings` (`None`: a line written before
/// timings were recorded, by one earlier run of unknown length).
fn history(timings: &[Option<SeedTiming>]) -> History {
    let mut span: std::collections::BTreeMap<u32, f64> = std::collections::BTreeMap::new();
    let mut untimed = false;
    for t in timings {
        match t {
            Some(t) => {
                let e = span.entry(t.session).or_insert(0.0);
                *e = e.max(t.at_s);
            }
            None => untimed = true,
        }
    }
    let last = span.keys().next_back().map(|s| s + 1).unwrap_or(0);
    History { sessions: last.max(u32::from(untimed)), elapsed_s: span.values().sum() }
}

/// The open results file; appends from worker threads are serialized by the mutex.
pub(super) struct ResultsLog {
    path: PathBuf,
    file: Mutex<File>,
    /// The first append failure; the sweep reports it at the end.
    failed: Mutex<Option<SweepError>>,
}

fn results_error(path: &Path, problem: impl std::fmt::Display) -> SweepError {
    SweepError::Results { path: path.display().to_string(), problem: problem.to_string() }
}

impl ResultsLog {
    /// Opens `path`: afresh (header written), or with `resume` reading back its finished seeds.
    pub fn open(
        path: &Path,
        header: &ResultsHeader,
        resume: bool,
    ) -> Result<(Vec<SeedOutcome>, History, Self), SweepError> {
        let err = |e: std::io::Error| results_error(path, e);
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        if path.is_dir() {
            return Err(results_error(path, "is a directory, not a results file"));
        }
        let existing = resume && path.exists();
        let (done, history) = if existing {
            let (_, done, history) = read_results(path, Some(header))?;
            (done, history)
        } else {
            (Vec::new(), History::default())
        };
        let file = if existing {
            OpenOptions::new().append(true).open(path).map_err(err)?
        } else {
            let mut f = File::create(path).map_err(err)?;
            let line = serde_json::to_string(&HeaderLine { header: header.clone() })
                .map_err(|e| results_error(path, e))?;
            f.write_all(format!("{line}\n").as_bytes()).map_err(err)?;
            f
        };
        file.sync_all().map_err(err)?;
        let log = Self { path: path.to_path_buf(), file: Mutex::new(file), failed: Mutex::new(None) };
        Ok((done, history, log))
    }

    /// Appends one finished seed (skipped seeds are not results) and fsyncs.
    pub fn append(&self, outcome: &SeedOutcome, timing: &SeedTiming) {
        let (seed, report, error) = match outcome {
            SeedOutcome::Explored(seed, r) => (*seed, Some(r.clone()), None),
            SeedOutcome::Failed(seed, m) => (*seed, None, Some(m.clone())),
            SeedOutcome::Skipped(_) => return,
        };
        let line = SeedLine {
            seed,
            report,
            error,
            elapsed_s: Some(timing.elapsed_s),
            session: Some(timing.session),
            at_s: Some(timing.at_s),
        };
        let write = || -> std::io::Result<()> {
            let mut text = serde_json::to_string(&line).map_err(std::io::Error::other)?;
            text.push('\n');
            let mut f = self.file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(text.as_bytes())?;
            f.sync_data()
        };
        if let Err(e) = write() {
            let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
            failed.get_or_insert(results_error(&self.path, e));
        }
    }

    pub fn into_error(self) -> Option<SweepError> {
        self.failed.into_inner().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reads a results file: its header, finished seeds and run history. A torn last line is
/// dropped and truncated away; with `expect`, the header must match it.
fn read_results(
    path: &Path,
    expect: Option<&ResultsHeader>,
) -> Result<(ResultsHeader, Vec<SeedOutcome>, History), SweepError> {
    let err = |e| results_error(path, e);
    let mut text = String::new();
    File::open(path).and_then(|mut f| f.read_to_string(&mut text)).map_err(err)?;
    let complete_len = text.rfind('\n').map_or(0, |i| i + 1);
    if complete_len < text.len() && expect.is_some() {
        OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|f| f.set_len(complete_len as u64))
            .map_err(err)?;
    }
    let mut lines = text[..complete_len].lines();
    let first = lines.next().ok_or_else(|| results_error(path, "empty: no header line"))?;
    let header = serde_json::from_str::<HeaderLine>(first)
        .map_err(|e| results_error(path, format!("line 1 is not a header: {e}")))?
        .header;
    if let Some(want) = expect.filter(|w| **w != header) {
        let problem = format!(
            "written by a different sweep ({} seeds {}, {:?}, options {}); use another --out or drop --resume \
             (want {} seeds {}, options {})",
            header.target,
            header.seeds,
            header.partition,
            header.target_config,
            want.target,
            want.seeds,
            want.target_config
        );
        return Err(results_error(path, problem));
    }
    let mut done = Vec::new();
    let mut timings = Vec::new();
    for (i, line) in lines.enumerate() {
        let bad = |e: String| results_error(path, format!("line {}: {e}", i + 2));
        let l: SeedLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        timings.push(match (l.elapsed_s, l.session, l.at_s) {
            (Some(elapsed_s), Some(session), Some(at_s)) => Some(SeedTiming { elapsed_s, session, at_s }),
            _ => None,
        });
        done.push(match (l.report, l.error) {
            (Some(r), None) => SeedOutcome::Explored(l.seed, r),
            (None, Some(m)) => SeedOutcome::Failed(l.seed, m),
            _ => return Err(bad("neither a report nor an error".to_string())),
        });
    }
    Ok((header, done, history(&timings)))
}

/// The summary a results file stands for (seeds it lacks count as skipped).
pub fn summary_from_results(path: &Path) -> Result<SweepSummary, SweepError> {
    let (header, mut done, history) = read_results(path, None)?;
    let have: std::collections::BTreeSet<u64> = done.iter().map(SeedOutcome::seed).collect();
    done.extend(
        super::shard_seeds(header.seeds, header.partition)
            .filter(|s| !have.contains(s))
            .map(SeedOutcome::Skipped),
    );
    done.sort_by_key(SeedOutcome::seed);
    let stop_after = done
        .iter()
        .filter(|o| {
            matches!(o, SeedOutcome::Failed(..))
                || matches!(o, SeedOutcome::Explored(_, r) if !r.violations.is_empty())
        })
        .map(SeedOutcome::seed)
        .min()
        .unwrap_or(u64::MAX);
    let mut summary = super::merge(&header, done, stop_after);
    summary.elapsed_s = history.elapsed_s;
    summary.states_per_s =
        if summary.elapsed_s > 0.0 { summary.crash_states as f64 / summary.elapsed_s } else { 0.0 };
    Ok(summary)
}

/// Combines shard summaries of one sweep (same target, seeds, config) into one, in seed order.
/// Coverage adds up; `seeds_complete` holds only if every shard's does and the shards cover the
/// whole range, and `complete` only if, besides, every crash state was covered.
pub fn merge_summaries(parts: Vec<SweepSummary>) -> Result<SweepSummary, SweepError> {
    let mut iter = parts.into_iter();
    let mut out = iter.next().ok_or_else(|| SweepError::Merge("no summaries".to_string()))?;
    let mut shards: Vec<Option<Partition>> = vec![out.partition];
    for s in iter {
        if s.target != out.target || s.seeds != out.seeds || s.config != out.config {
            return Err(SweepError::Merge(format!(
                "summaries of different sweeps ({} {} vs {} {}, or another config)",
                out.target, out.seeds, s.target, s.seeds
            )));
        }
        shards.push(s.partition);
        out.workloads += s.workloads;
        out.seeds_skipped += s.seeds_skipped;
        out.seeds_complete &= s.seeds_complete;
        out.coverage.add(&s.coverage);
        out.over_budget_points.extend(s.over_budget_points);
        out.crash_points += s.crash_points;
        out.crash_states += s.crash_states;
        out.unique_states += s.unique_states;
        out.recovery_crash_states += s.recovery_crash_states;
        out.violations.extend(s.violations);
        out.errors.extend(s.errors);
        out.skipped.extend(s.skipped);
        out.interrupted |= s.interrupted;
        out.budget_exhausted |= s.budget_exhausted;
        out.elapsed_s = out.elapsed_s.max(s.elapsed_s);
    }
    out.violations.sort_by_key(|v| v.seed);
    out.errors.sort_by_key(|e| e.seed);
    out.skipped.sort_unstable();
    out.skipped_ranges = super::seed_runs(&out.skipped, 1);
    out.results_file = None;
    out.over_budget_points.sort_unstable();
    out.over_budget_points.truncate(crate::crash::OVER_BUDGET_LISTED);
    out.seeds_complete &= covers_range(&shards);
    out.states_complete = out.coverage.complete();
    out.complete = out.seeds_complete && out.states_complete;
    out.partition = None;
    out.states_per_s = if out.elapsed_s > 0.0 { out.crash_states as f64 / out.elapsed_s } else { 0.0 };
    Ok(out)
}

/// True if some shard is the whole range, or the shards are exactly `slice:0/N..slice:N-1/N`.
fn covers_range(shards: &[Option<Partition>]) -> bool {
    if shards.iter().any(Option::is_none) {
        return true;
    }
    let mut idx: Vec<(u64, u64)> = shards.iter().flatten().map(|p| (p.count, p.index)).collect();
    idx.sort_unstable();
    idx.dedup();
    let n = idx[0].0;
    idx.len() as u64 == n && idx.iter().enumerate().all(|(i, &(c, k))| c == n && k == i as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_sums_the_runs_that_wrote_a_results_file() {
        let t = |session, at_s| Some(SeedTiming { elapsed_s: 1.0, session, at_s });
        assert_eq!(history(&[]), History { sessions: 0, elapsed_s: 0.0 });
        let h = history(&[t(0, 2.0), t(0, 5.0), t(1, 3.0), t(1, 1.0)]);
        assert_eq!(h, History { sessions: 2, elapsed_s: 8.0 });
        assert_eq!(history(&[None]).sessions, 1, "an untimed line is one earlier run");
    }
}
