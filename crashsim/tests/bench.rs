//! `crashsim bench`: one JSON row per daxfs allocation policy, with the documented keys.

use std::process::Command;

#[test]
fn bench_json_has_a_row_per_policy_with_recoveries() {
    // Seed 0 only: seed 1 of daxfs takes minutes under lazy enumeration, and this test must
    // stay fast.
    let out = Command::new(env!("CARGO_BIN_EXE_crashsim"))
        .args(["bench", "--seeds", "0..1", "--jobs", "1", "--format", "json"])
        .output()
        .expect("run crashsim");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    assert_eq!(v["seeds"], "0..1");
    assert_eq!(v["jobs"], 1);
    assert!(v["bandwidth"].is_null(), "{v}");
    let rows = v["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{v}");
    let settings: Vec<&str> = rows.iter().map(|r| r["settings"].as_str().unwrap_or("")).collect();
    assert_eq!(settings, ["policy=zero-before-commit", "policy=unwritten-end-io"]);
    for r in rows {
        assert_eq!(r["model"], "adr", "{r}");
        for key in [
            "wall_s",
            "recoveries",
            "line_verdicts",
            "verdicts_reused",
            "recoveries_per_s_per_core",
            "states_per_s_per_core",
            "peak_rss_mib",
            "workloads",
            "crash_states",
        ] {
            assert!(r[key].is_number(), "{key} missing: {r}");
        }
        assert!(r["recoveries"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["workloads"], 1, "{r}");
        assert!(r["complete"].is_boolean() && r["state_space_saturated"].is_boolean(), "{r}");
        let space = r["state_space"].as_str().expect("state_space is a decimal string");
        assert!(space.parse::<u128>().is_ok(), "{r}");
        assert!(r["peak_rss_mib"].as_f64().unwrap() > 0.0, "{r}");
    }
}

#[test]
fn bench_rejects_junit() {
    let out = Command::new(env!("CARGO_BIN_EXE_crashsim"))
        .args(["bench", "--seeds", "0..1", "--format", "junit"])
        .output()
        .expect("run crashsim");
    assert_eq!(out.status.code(), Some(2));
}
