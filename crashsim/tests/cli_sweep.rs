//! The `crashsim` binary's contract: exit codes, JSON fields, usage errors.

use std::process::{Command, Output};

fn crashsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crashsim")).args(args).output().expect("run crashsim")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exit code")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn canary_target_exits_1_with_violations_in_json() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..4",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    for field in ["workloads", "crash_points", "crash_states", "unique_states", "elapsed_s", "states_per_s"] {
        assert!(s[field].is_number(), "{field} missing: {s}");
    }
    assert_eq!(s["workloads"], 4);
    let v = &s["violations"][0];
    assert_eq!(v["class"], "StaleData");
    assert!(v["seed"].is_u64() && v["crash_point"].is_u64(), "{v}");
    assert_eq!(v["last_writer"]["site"], "toylog::append::record");
}

#[test]
fn fixed_target_exits_0_and_text_says_clean() {
    let out = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..8", "--jobs", "2"]);
    assert_eq!(code(&out), 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("clean: 0 violations"));
}

#[test]
fn text_output_prints_a_repro_command_that_reproduces() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "5..7",
        "--strategy",
        "exhaustive",
    ]);
    assert_eq!(code(&out), 1);
    let text = String::from_utf8_lossy(&out.stdout);
    let repro = text.lines().find_map(|l| l.trim().strip_prefix("repro: crashsim ")).expect("repro line");
    let again = crashsim(&repro.split(' ').collect::<Vec<_>>());
    assert_eq!(code(&again), 1, "{repro}");
}

#[test]
fn jobs_do_not_change_the_json_summary() {
    let strip = |out: &Output| {
        let mut s = json(out);
        let obj = s.as_object_mut().unwrap();
        obj.remove("elapsed_s");
        obj.remove("states_per_s");
        s
    };
    let args = [
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..12",
        "--format",
        "json",
        "--jobs",
    ];
    let one = crashsim(&[&args[..], &["1"]].concat());
    let two = crashsim(&[&args[..], &["2"]].concat());
    assert_eq!(strip(&one), strip(&two));
}

#[test]
fn usage_errors_exit_2_with_one_clear_message() {
    let unknown_bug = crashsim(&["sweep", "--bug", "no-such-bug"]);
    assert_eq!(code(&unknown_bug), 2);
    let err = String::from_utf8_lossy(&unknown_bug.stderr);
    assert!(err.contains("no-such-bug") && err.contains("replay-skips-crc"), "{err}");
    for args in [
        &["sweep", "--frobnicate"][..],
        &["sweep", "--seeds", "9..3"],
        &["sweep", "--jobs", "0"],
        &["sweep", "--states-per-point", "0"],
        &["sweep", "--budget", "5 parsecs"],
        &["sweep", "--model", "nvme"],
        &["sweep", "--target", "toylog", "--policy", "unwritten-end-io"],
        &["nonsense"],
    ] {
        assert_eq!(code(&crashsim(args)), 2, "{args:?}");
    }
    assert_eq!(code(&crashsim(&["--help"])), 0);
}

#[test]
fn eadr_with_store_crash_points_keeps_the_broken_order_harmless() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..4",
        "--model",
        "eadr",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 0);
    assert_eq!(json(&out)["config"]["granularity"], "Store");
}

#[test]
fn budget_and_fail_fast_are_accepted() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..50",
        "--fail-fast",
        "--budget",
        "1m",
        "--format",
        "json",
    ]);
    assert_eq!(code(&out), 1);
    let s = json(&out);
    assert_eq!(s["workloads"], 1, "seed 0 fails, nothing after it is kept: {s}");
    assert_eq!(s["complete"], false);
}

#[test]
fn bugs_lists_the_catalogue() {
    let out = crashsim(&["bugs", "--format", "json"]);
    assert_eq!(code(&out), 0);
    let rows = json(&out);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), crashsim::daxfs::bugs::CATALOGUE.len());
    assert!(rows.iter().all(|r| r["id"].is_string() && r["summary"].is_string() && r["origin"].is_string()));
    let text = crashsim(&["bugs"]);
    assert_eq!(code(&text), 0);
    assert!(String::from_utf8_lossy(&text.stdout).contains("replay-not-idempotent"));
    // Every registered target lists its own.
    let toy = crashsim(&["bugs", "--target", "toylog", "--format", "json"]);
    assert_eq!(code(&toy), 0);
    assert_eq!(json(&toy)[0]["id"], "commit-before-slot-durable");
    let wrong = crashsim(&["sweep", "--target", "toylog", "--bug", "no-zero-on-alloc"]);
    assert_eq!(code(&wrong), 2);
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("toylog has no bug `no-zero-on-alloc`") && err.contains("commit-before-slot-durable"),
        "{err}"
    );
}

#[test]
fn bounded_sweep_samples_and_says_so() {
    // daxfs with the bounded strategy: most crash points exceed 256 states.
    let out = crashsim(&[
        "sweep",
        "--strategy",
        "bounded",
        "--seeds",
        "0..2",
        "--pmd-blocks",
        "8",
        "--format",
        "json",
        "--max-artifacts",
        "0",
    ]);
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    assert_eq!(s["complete"], false, "{s}");
    assert_eq!((&s["seeds_complete"], &s["states_complete"]), (&true.into(), &false.into()));
    let c = &s["coverage"];
    assert!(c["points_over_budget"].as_u64().unwrap() > 0, "{c}");
    assert!(c["points"].as_u64().unwrap() >= c["points_over_budget"].as_u64().unwrap());
    let space: u128 = c["state_space"].as_str().expect("state space as a decimal string").parse().unwrap();
    assert!(space > u128::from(c["states_explored"].as_u64().unwrap()));
    assert!(c["state_space_exact"].is_boolean());
    assert!(s["over_budget_points"][0]["seed"].is_u64() && s["over_budget_points"][0]["point"].is_u64());
    assert_eq!((&s["recovery_crashes"], &s["media_faults"]), (&"sampled".into(), &"sampled".into()));
}

#[test]
fn default_lazy_sweep_is_complete() {
    // The default strategy covers every crash state of every point (their count overflows
    // 128 bits: a lower bound), and says clean.
    let args = ["sweep", "--seeds", "0..2", "--pmd-blocks", "8", "--max-artifacts", "0"];
    let out = crashsim(&[&args[..], &["--format", "json"]].concat());
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let s = json(&out);
    assert_eq!((&s["complete"], &s["states_complete"]), (&true.into(), &true.into()), "{s}");
    let c = &s["coverage"];
    assert_eq!(c["points_whole"], c["points"], "{c}");
    assert_eq!(c["points_over_budget"], 0);
    let text = crashsim(&args);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.lines().any(|l| l.starts_with("coverage: complete: ")), "{text}");
}

#[test]
fn text_says_sampled_not_clean_when_points_are_over_budget() {
    let out = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..8", "--recoveries-per-point", "1"]);
    assert_eq!(code(&out), 0);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.starts_with("coverage: ")).expect("a coverage line");
    assert!(line.starts_with("coverage: sampled: ") && line.contains("crash points over budget"), "{line}");
    assert!(line.contains("crash states explored (") && line.contains("recovery crashes"), "{line}");
    assert!(text.contains("no violation found in the sampled states: 0 violations"), "{text}");
    assert!(!text.lines().any(|l| l.starts_with("clean")), "{text}");
}

#[test]
fn a_target_whose_points_all_fit_is_complete() {
    for strategy in ["bounded", "exhaustive"] {
        let out = crashsim(&[
            "sweep",
            "--target",
            "toylog",
            "--seeds",
            "0..8",
            "--strategy",
            strategy,
            "--format",
            "json",
        ]);
        assert_eq!(code(&out), 0, "{strategy}");
        let s = json(&out);
        assert_eq!(s["complete"], true, "{strategy}: {s}");
        let c = &s["coverage"];
        assert_eq!(c["points_over_budget"], 0);
        assert_eq!(c["state_space"].as_str().unwrap(), c["states_explored"].to_string());
    }
    let text = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..8"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("coverage: complete: every crash state of "), "{text}");
}

#[test]
fn exhaustive_over_budget_stops_with_one_line_naming_the_point() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--seeds",
        "0..8",
        "--strategy",
        "exhaustive",
        "--states-per-point",
        "2",
    ]);
    assert_eq!(code(&out), 3);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("crash point ") && err.contains(" crash states, more than the 2 per point"),
        "{err}"
    );
    assert!(err.contains("--exhaustive-cap"), "{err}");
    let capped = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--seeds",
        "0..8",
        "--strategy",
        "exhaustive",
        "--states-per-point",
        "2",
        "--exhaustive-cap",
        "--format",
        "json",
    ]);
    assert_eq!(code(&capped), 0);
    let s = json(&capped);
    assert_eq!(s["complete"], false);
    assert!(s["coverage"]["points_over_budget"].as_u64().unwrap() > 0);
    assert_eq!(code(&crashsim(&["sweep", "--target", "toylog", "--exhaustive-cap"])), 2);
}

#[test]
fn junit_carries_the_coverage() {
    let out = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--seeds",
        "0..4",
        "--recoveries-per-point",
        "1",
        "--format",
        "junit",
    ]);
    assert_eq!(code(&out), 0);
    let xml = String::from_utf8_lossy(&out.stdout);
    for p in ["name=\"complete\" value=\"false\"", "name=\"points_over_budget\"", "name=\"state_space\""] {
        assert!(xml.contains(p), "{p}: {xml}");
    }
    assert!(xml.contains("coverage: sampled: "), "{xml}");
}

/// `crashsim bugs | head -1`: a reader that closes the pipe early ends the process quietly
/// (SIGPIPE's default), never a panic on EPIPE.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crashsim"))
        .args([
            "sweep",
            "--target",
            "toylog",
            "--seeds",
            "0..400",
            "--format",
            "json",
            "--progress-interval",
            "0",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The reader goes away before the summary is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success() || out.status.signal() == Some(libc::SIGPIPE), "{:?}", out.status);
}

#[test]
fn resume_with_other_target_options_is_refused() {
    let out = std::env::temp_dir().join(format!("crashsim-resume-options-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let dir = out.to_str().expect("utf-8");
    let first = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..4", "--out", dir]);
    assert_eq!(code(&first), 0, "{}", String::from_utf8_lossy(&first.stderr));
    let bug = ["--bug", "commit-before-slot-durable"];
    let other = crashsim(
        &[&["sweep", "--target", "toylog", "--seeds", "0..4", "--out", dir, "--resume"][..], &bug].concat(),
    );
    assert_eq!(code(&other), 3, "{}", String::from_utf8_lossy(&other.stdout));
    let err = String::from_utf8_lossy(&other.stderr);
    assert!(
        err.contains("written by a different sweep") && err.contains("commit-before-slot-durable"),
        "{err}"
    );
    let same = crashsim(&["sweep", "--target", "toylog", "--seeds", "0..4", "--out", dir, "--resume"]);
    assert_eq!(code(&same), 0, "the same options resume");
    let _ = std::fs::remove_dir_all(&out);
}
