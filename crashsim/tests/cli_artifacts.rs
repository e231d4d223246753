//! The CLI around artifacts and sweep operation: repro exit codes, shards, resume after
//! SIGKILL, merge, JUnit.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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
    let dir = std::env::temp_dir().join(format!("crashsim-cli-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A summary without its wall-clock fields and the results file's location.
fn timeless(out: &Output) -> serde_json::Value {
    let mut s: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let obj = s.as_object_mut().unwrap();
    obj.remove("elapsed_s");
    obj.remove("states_per_s");
    obj.remove("results_file");
    for v in obj.get_mut("violations").and_then(|v| v.as_array_mut()).into_iter().flatten() {
        v.as_object_mut().unwrap().remove("artifact");
    }
    s
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn sweep_writes_artifacts_that_repro_exits_1_and_bad_ones_exit_3() {
    let out = scratch("repro");
    let run = crashsim(&[
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "0..4",
        "--format",
        "json",
        "--out",
        s(&out),
    ]);
    assert_eq!(code(&run), 1);
    let summary: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let dir = summary["violations"][0]["artifact"].as_str().expect("artifact path in JSON").to_string();
    let repro = crashsim(&["repro", &dir]);
    assert_eq!(code(&repro), 1, "{}", String::from_utf8_lossy(&repro.stderr));
    assert!(String::from_utf8_lossy(&repro.stdout).contains("byte-identical"));
    let show = crashsim(&["show", &dir]);
    assert_eq!(code(&show), 0);
    assert!(String::from_utf8_lossy(&show.stdout).contains("power cut here"));
    std::fs::remove_file(Path::new(&dir).join("crash.img")).unwrap();
    let broken = crashsim(&["repro", &dir]);
    assert_eq!(code(&broken), 3);
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(err.contains("crash.img") && err.lines().count() == 1, "{err}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn union_of_shards_equals_the_unsharded_run() {
    let out = scratch("shards");
    let base = [
        "sweep",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        "--seeds",
        "3..20",
        "--format",
        "json",
        "--max-artifacts",
        "0",
    ];
    let whole = crashsim(&[&base[..], &["--out", s(&out.join("whole"))]].concat());
    let mut files = Vec::new();
    for i in 0..3 {
        let part = format!("slice:{i}/3");
        let dir = out.join(format!("shard{i}"));
        let o = crashsim(&[&base[..], &["--partition", &part, "--out", s(&dir)]].concat());
        let file = out.join(format!("shard{i}.json"));
        std::fs::write(&file, &o.stdout).unwrap();
        files.push(file);
    }
    let names: Vec<&str> = files.iter().map(|f| s(f)).collect();
    let merged = crashsim(&[&["merge"][..], &names].concat());
    assert_eq!(code(&merged), 1);
    assert_eq!(timeless(&merged), timeless(&whole));
    // results.jsonl files merge to the same summary.
    let logs: Vec<PathBuf> = (0..3).map(|i| out.join(format!("shard{i}/results.jsonl"))).collect();
    let names: Vec<&str> = logs.iter().map(|f| s(f)).collect();
    let from_logs = crashsim(&[&["merge"][..], &names].concat());
    assert_eq!(timeless(&from_logs), timeless(&whole));
    // JUnit: one test case per seed, failures for violating seeds.
    let junit = crashsim(&[&["merge", "--format", "junit"][..], &names].concat());
    let xml = String::from_utf8_lossy(&junit.stdout);
    assert_eq!(xml.matches("<testcase ").count(), 17, "{xml}");
    assert!(xml.contains("<failure"), "{xml}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn resume_after_sigkill_gives_the_uninterrupted_summary() {
    let out = scratch("resume");
    let args = |dir: &Path| -> Vec<String> {
        [
            "sweep",
            "--seeds",
            "0..12",
            "--pmd-blocks",
            "8",
            "--jobs",
            "1",
            "--format",
            "json",
            "--max-artifacts",
            "0",
        ]
        .iter()
        .map(|a| a.to_string())
        .chain(["--out".to_string(), s(dir).to_string()])
        .collect()
    };
    let whole = bin().args(args(&out.join("whole"))).output().unwrap();
    let killed = out.join("killed");
    let mut child = bin().args(args(&killed)).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let results = killed.join("results.jsonl");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let lines = std::fs::read_to_string(&results).map(|t| t.lines().count()).unwrap_or(0);
        if lines >= 4 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let done = std::fs::read_to_string(&results).unwrap().lines().count() - 1;
    assert!(done < 12, "the sweep was killed mid-run ({done} seeds done)");
    let mut resumed_args = args(&killed);
    resumed_args.push("--resume".to_string());
    let resumed = bin().args(&resumed_args).output().unwrap();
    assert_eq!(code(&resumed), code(&whole));
    assert_eq!(timeless(&resumed), timeless(&whole));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn run_takes_a_json_workload_and_partition_rejects_nonsense() {
    let out = scratch("run");
    let input = out.join("w.json");
    std::fs::write(&input, r#"{"appends": [[1, 2], [3, 4]]}"#).unwrap();
    let run = crashsim(&[
        "run",
        "--target",
        "toylog",
        "--bug",
        "commit-before-slot-durable",
        s(&input),
        "--out",
        s(&out),
    ]);
    assert_eq!(code(&run), 1, "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("artifact: "));
    let clean = crashsim(&["run", "--target", "toylog", s(&input), "--out", s(&out)]);
    assert_eq!(code(&clean), 0);
    for bad in ["slice:3/3", "slice:1", "3/4", "slice:a/b", "slice:0/0"] {
        assert_eq!(code(&crashsim(&["sweep", "--partition", bad])), 2, "{bad}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn merge_sums_the_coverage_of_shards_and_results_files() {
    let out = scratch("coverage");
    let base = [
        "sweep",
        "--target",
        "toylog",
        "--seeds",
        "0..12",
        "--recoveries-per-point",
        "1",
        "--format",
        "json",
    ];
    let whole = crashsim(&[&base[..], &["--out", s(&out.join("whole"))]].concat());
    let whole_json: serde_json::Value = serde_json::from_slice(&whole.stdout).unwrap();
    let mut points = 0;
    let mut logs = Vec::new();
    for i in 0..2 {
        let dir = out.join(format!("shard{i}"));
        let o = crashsim(&[&base[..], &["--partition", &format!("slice:{i}/2"), "--out", s(&dir)]].concat());
        let shard: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        points += shard["coverage"]["points_over_budget"].as_u64().unwrap();
        logs.push(dir.join("results.jsonl"));
    }
    let names: Vec<&str> = logs.iter().map(|f| s(f)).collect();
    let merged = crashsim(&[&["merge"][..], &names].concat());
    let merged_json: serde_json::Value = serde_json::from_slice(&merged.stdout).unwrap();
    assert!(points > 0);
    assert_eq!(merged_json["coverage"]["points_over_budget"], points);
    assert_eq!(merged_json["coverage"], whole_json["coverage"]);
    assert_eq!(merged_json["over_budget_points"], whole_json["over_budget_points"]);
    assert_eq!((&merged_json["complete"], &merged_json["seeds_complete"]), (&false.into(), &true.into()));
    let _ = std::fs::remove_dir_all(&out);
}
