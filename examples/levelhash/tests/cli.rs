//! The `levelhash` binary: a five-line `main` over `crashsim_cli` gets every subcommand, with
//! crashsim's flags, output and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn levelhash(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_levelhash")).args(args).output().expect("runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levelhash-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The artifact directories a sweep wrote into `out`.
fn artifacts(out: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(out)
        .expect("out dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn each_bug_is_found_reproduced_shown_and_minimized_through_the_binary() {
    for (bug, class) in [("token-before-kv-durable", "StaleData"), ("update-two-token-stores", "LostWrite")] {
        let out = scratch(bug);
        let sweep = levelhash(&["sweep", "--bug", bug, "--seeds", "0..16", "--out", s(&out)]);
        assert_eq!(code(&sweep), 1, "{bug}: {}", String::from_utf8_lossy(&sweep.stderr));
        let text = stdout(&sweep);
        assert!(text.contains("VIOLATIONS FOUND") && text.contains(class), "{bug}: {text}");
        // Printed commands name this binary, not `crashsim`.
        assert!(
            text.contains("repro: levelhash sweep --target levelhash") && text.contains("; levelhash repro "),
            "{text}"
        );
        let dirs = artifacts(&out);
        let dir = dirs
            .iter()
            .find(|d| std::fs::read_to_string(d.join("manifest.json")).unwrap().contains(class))
            .unwrap_or_else(|| panic!("{bug}: no {class} artifact in {dirs:?}"));
        let repro = levelhash(&["repro", s(dir)]);
        assert_eq!(code(&repro), 1, "{bug}: {}", stdout(&repro));
        assert!(stdout(&repro).contains("REPRODUCED"));
        let show = levelhash(&["show", s(dir)]);
        assert_eq!(code(&show), 0);
        assert!(stdout(&show).contains(class) && stdout(&show).contains("levelhash::"), "{}", stdout(&show));
        let page = out.join("page.html");
        assert_eq!(code(&levelhash(&["show", "--html", s(&page), s(dir)])), 0);
        assert!(std::fs::read_to_string(&page).unwrap().contains(&format!("data-class=\"{class}\"")));
        let min = out.join("min");
        let minimize = levelhash(&["minimize", s(dir), "-o", s(&min)]);
        assert_eq!(code(&minimize), 0, "{}", String::from_utf8_lossy(&minimize.stderr));
        assert_eq!(code(&levelhash(&["repro", s(&min)])), 1, "the minimized artifact reproduces");
        // `run` on the artifact's input, with the bug switched on: found again.
        let run = levelhash(&["run", s(&dir.join("input.bin")), "--bug", bug, "--out", s(&out.join("run"))]);
        assert_eq!(code(&run), 1, "{}", stdout(&run));
        let _ = std::fs::remove_dir_all(&out);
    }
}

#[test]
fn the_fixed_target_sweeps_500_seeds_clean_and_complete_and_shards_merge() {
    let out = scratch("clean");
    let sweep = levelhash(&["sweep", "--seeds", "0..500", "--out", s(&out)]);
    assert_eq!(code(&sweep), 0, "{}", stdout(&sweep));
    let text = stdout(&sweep);
    assert!(text.contains("coverage: complete") && text.contains("clean: 0 violations"), "{text}");
    let mut parts = Vec::new();
    for i in 0..2 {
        let dir = out.join(format!("shard{i}"));
        let part = format!("slice:{i}/2");
        let o = levelhash(&["sweep", "--seeds", "0..40", "--partition", &part, "--out", s(&dir)]);
        assert_eq!(code(&o), 0);
        parts.push(dir.join("results.jsonl"));
    }
    let merged = levelhash(&["merge", "--format", "text", s(&parts[0]), s(&parts[1])]);
    assert_eq!(code(&merged), 0, "{}", String::from_utf8_lossy(&merged.stderr));
    assert!(stdout(&merged).contains("40 workloads"), "{}", stdout(&merged));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bugs_and_usage_errors_are_the_targets_own() {
    let bugs = levelhash(&["bugs", "--format", "json"]);
    assert_eq!(code(&bugs), 0);
    let rows: serde_json::Value = serde_json::from_slice(&bugs.stdout).expect("JSON");
    let ids: Vec<&str> = rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["token-before-kv-durable", "update-two-token-stores"]);
    let wrong = levelhash(&["sweep", "--bug", "no-zero-on-alloc"]);
    assert_eq!(code(&wrong), 2);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("levelhash has no bug `no-zero-on-alloc`"));
    assert_eq!(code(&levelhash(&["sweep", "--target", "daxfs"])), 2, "only registered targets");
}
