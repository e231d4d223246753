//! A sweep as CI runs it: stderr to a file (progress lines), SIGINT/SIGTERM mid-run (a
//! summary, the conventional exit code, a resumable results file), budget cut-offs, and the
//! messages for bad input.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crashsim"))
}

fn crashsim(args: &[&str]) -> Output {
    bin().args(args).output().expect("run crashsim")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crashsim-signals-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A daxfs sweep slow enough to watch (about a second per seed with one job).
fn slow_sweep(seeds: &str, out: &Path, extra: &[&str]) -> Vec<String> {
    let base = ["sweep", "--seeds", seeds, "--pmd-blocks", "8", "--jobs", "1", "--max-artifacts", "0"];
    base.iter().chain(extra).map(|a| a.to_string()).chain(["--out".to_string(), s(out).to_string()]).collect()
}

/// Waits until the results file holds `seeds` finished seeds (or two minutes pass).
fn wait_for_seeds(out: &Path, seeds: usize) {
    let results = out.join("results.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let lines = std::fs::read_to_string(&results).map(|t| t.lines().count()).unwrap_or(0);
        if lines > seeds {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {seeds} seeds in {} after two minutes", results.display());
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

/// A summary without its wall-clock fields and the results file's location.
fn timeless(stdout: &[u8]) -> serde_json::Value {
    let mut v: serde_json::Value = serde_json::from_slice(stdout).expect("stdout is JSON");
    let obj = v.as_object_mut().unwrap();
    for field in ["elapsed_s", "states_per_s", "results_file"] {
        obj.remove(field);
    }
    v
}

/// A slow sweep of seeds 0..20 into `dir` with `extra` options, stdout and stderr captured,
/// once its first seed is in the results file.
fn running_sweep(dir: &Path, extra: &[&str]) -> Child {
    let child = bin()
        .args(slow_sweep("0..20", dir, extra))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_seeds(dir, 1);
    child
}

#[test]
fn progress_lines_go_to_a_log_file() {
    let out = scratch("progress");
    let log = out.join("stderr.log");
    let status = bin()
        .args(slow_sweep("0..4", &out.join("a"), &["--progress-interval", "50ms"]))
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("crashsim: progress [")).collect();
    assert!(!lines.is_empty(), "no progress line in {text:?}");
    for l in &lines {
        for fact in ["/4 seeds, ", " crash states, ", " states/s, ", " violations, ", "ETA"] {
            assert!(l.contains(fact), "{fact:?} missing from {l}");
        }
        assert!(l.contains("slowest in flight: seed ") || l.contains("none in flight"), "{l}");
    }
    assert!(lines.iter().any(|l| l.contains("slowest in flight: seed ")), "{lines:?}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sigint_prints_an_interrupted_summary_and_resume_finishes_the_same_totals() {
    let out = scratch("sigint");
    let json = ["--format", "json"];
    let whole = bin().args(slow_sweep("0..4", &out.join("whole"), &json)).output().unwrap();
    assert_eq!(code(&whole), 0);

    let dir = out.join("stopped");
    let child = bin()
        .args(slow_sweep("0..4", &dir, &json))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_seeds(&dir, 1);
    signal(&child, libc::SIGINT);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 130, "{}", String::from_utf8_lossy(&stopped.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&stopped.stdout).expect("a JSON summary");
    assert_eq!((&summary["interrupted"], &summary["complete"]), (&true.into(), &false.into()), "{summary}");
    let results = dir.join("results.jsonl");
    assert_eq!(summary["results_file"], s(&results));
    let ranges = summary["skipped_ranges"].as_array().expect("seeds not done, as ranges");
    assert!(!ranges.is_empty() && ranges.last().unwrap()["end"] == 4, "{summary}");
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(err.contains("SIGINT received: stopping"), "{err}");
    assert!(err.contains("continue with: crashsim sweep ") && err.contains("--resume"), "{err}");

    // Every seed line remembers its time, so the results file gives a real elapsed time.
    let merged = crashsim(&["merge", s(&results)]);
    let merged: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert!(merged["elapsed_s"].as_f64().unwrap() > 0.0 && merged["states_per_s"].as_f64().unwrap() > 0.0);

    let mut again = slow_sweep("0..4", &dir, &json);
    again.push("--resume".to_string());
    let resumed = bin().args(&again).output().unwrap();
    assert_eq!(code(&resumed), 0, "{}", String::from_utf8_lossy(&resumed.stderr));
    assert_eq!(timeless(&resumed.stdout), timeless(&whole.stdout));
    let resumed: serde_json::Value = serde_json::from_slice(&resumed.stdout).unwrap();
    assert!(resumed["elapsed_s"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn sigterm_prints_the_text_summary_and_exits_143() {
    let out = scratch("sigterm");
    let dir = out.join("a");
    let child = running_sweep(&dir, &["--progress-interval", "0"]);
    signal(&child, libc::SIGTERM);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 143);
    let text = String::from_utf8_lossy(&stopped.stdout);
    let line = text.lines().find(|l| l.starts_with("INTERRUPTED: ")).expect("an INTERRUPTED line");
    assert!(line.contains(" of 20 seeds not done: ") && line.ends_with("..20"), "{line}");
    assert!(text.contains(&format!("results: {}", s(&dir.join("results.jsonl")))), "{text}");
    assert!(
        text.contains("continue with: crashsim sweep ") && text.contains("interrupted, no violation"),
        "{text}"
    );
    let err = String::from_utf8_lossy(&stopped.stderr);
    assert!(!err.contains("crashsim: progress"), "--progress-interval 0 prints none: {err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn junit_summary_of_an_interrupted_sweep_says_so() {
    let out = scratch("junit");
    let dir = out.join("a");
    let child = running_sweep(&dir, &["--format", "junit"]);
    signal(&child, libc::SIGINT);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 130);
    let xml = String::from_utf8_lossy(&stopped.stdout);
    assert!(xml.contains("name=\"interrupted\" value=\"true\""), "{xml}");
    assert!(xml.contains("name=\"seeds_not_done\"") && xml.contains("<skipped"), "{xml}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_second_signal_exits_at_once() {
    let out = scratch("twice");
    let dir = out.join("a");
    let child = running_sweep(&dir, &["--format", "json"]);
    signal(&child, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(1200));
    signal(&child, libc::SIGTERM);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 143);
    // Either the second signal cut the shutdown short (no summary), or the shutdown had
    // already printed an interrupted one.
    if !stopped.stdout.is_empty() {
        let v: serde_json::Value = serde_json::from_slice(&stopped.stdout).expect("a whole summary or none");
        assert_eq!(v["interrupted"], true);
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// `timeout(1)` and CI runners signal the process and its process group: one request to stop
/// arrives twice within microseconds. That is not a second request; the summary is printed.
#[test]
fn a_signal_delivered_twice_at_once_still_prints_the_summary() {
    let out = scratch("doubled");
    let dir = out.join("a");
    let child = running_sweep(&dir, &["--format", "json"]);
    signal(&child, libc::SIGTERM);
    signal(&child, libc::SIGTERM);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 143);
    let v: serde_json::Value = serde_json::from_slice(&stopped.stdout).expect("a whole summary");
    assert_eq!(v["interrupted"], true);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_budget_cut_off_is_incomplete_and_lists_the_skipped_seeds() {
    let out = scratch("budget");
    let args = ["sweep", "--target", "toylog", "--seeds", "0..8", "--budget", "0", "--out", s(&out)];
    let json = crashsim(&[&args[..], &["--format", "json"]].concat());
    assert_eq!(code(&json), 0);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (&v["budget_exhausted"], &v["complete"], &v["interrupted"]),
        (&true.into(), &false.into(), &false.into())
    );
    assert_eq!(v["skipped_ranges"], serde_json::json!([{"start": 0, "end": 8}]));
    let text = crashsim(&args);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("budget exhausted: 8 of 8 seeds not done: 0..8"), "{text}");
    assert!(text.contains("continue with: ") && !text.lines().any(|l| l.starts_with("clean")), "{text}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bad_input_messages_name_what_was_expected() {
    let out = scratch("messages");
    for cmd in ["repro", "show", "minimize"] {
        let o = crashsim(&[cmd, "/nonexistent"]);
        assert_eq!(code(&o), 3, "{cmd}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("no artifact directory at /nonexistent") && err.lines().count() == 1,
            "{cmd}: {err}"
        );
    }
    let file = out.join("FILE");
    std::fs::write(&file, "not a directory").unwrap();
    let o = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..2", "--out", s(&file)]);
    assert_eq!(code(&o), 2);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("--out must be a directory; {} is a file", s(&file))), "{err}");
    let o = crashsim(&["repro", s(&file)]);
    assert_eq!(code(&o), 3);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a file; expected an artifact directory"));

    // A manifest whose crash point has no choice: minimize rejects it as repro and show do.
    let found = out.join("found");
    let sweep = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..2",
        "--format",
        "json",
        "--out",
        s(&found),
    ]);
    let summary: serde_json::Value = serde_json::from_slice(&sweep.stdout).unwrap();
    let art = PathBuf::from(summary["violations"][0]["artifact"].as_str().unwrap());
    let mut loaded = crashsim::artifact::load(&art).unwrap();
    assert!(loaded.manifest.crash_point.is_some());
    loaded.manifest.choice = None;
    std::fs::write(art.join("manifest.json"), crashsim::artifact::encode_manifest(&loaded.manifest)).unwrap();
    let mut errors = Vec::new();
    for cmd in
        [&["repro", s(&art)][..], &["show", s(&art)], &["minimize", s(&art), "-o", s(&out.join("min"))]]
    {
        let o = crashsim(cmd);
        assert_eq!(code(&o), 3, "{cmd:?}");
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(err.contains("crash point without a choice"), "{cmd:?}: {err}");
        errors.push(err);
    }
    assert!(errors.windows(2).all(|w| w[0] == w[1]), "one message for all three: {errors:?}");
    let o = crashsim(&["minimize", s(&art), "-o", s(&file)]);
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("must be a directory"));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn an_interrupted_sweep_that_found_a_violation_exits_1() {
    let out = scratch("violation");
    let dir = out.join("a");
    let child = bin()
        .args(slow_sweep("0..40", &dir, &["--bug", "commit-before-log-fenced", "--format", "json"]))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_seeds(&dir, 1);
    signal(&child, libc::SIGINT);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(code(&stopped), 1);
    let v: serde_json::Value = serde_json::from_slice(&stopped.stdout).unwrap();
    assert_eq!((&v["interrupted"], &v["complete"]), (&true.into(), &false.into()));
    // Seeds are explored most crash points first, not in seed order: the violation is from
    // one that was done.
    let seed = v["violations"][0]["seed"].as_u64().expect("a violation's seed");
    let skipped: Vec<u64> = v["skipped"].as_array().unwrap().iter().map(|s| s.as_u64().unwrap()).collect();
    assert!(!skipped.contains(&seed), "{v}");
    let _ = std::fs::remove_dir_all(&out);
}
