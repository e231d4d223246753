//! Regressions are data: every artifact directory under `corpus/regressions/` (named after the
//! bug it pins) is replayed. With its bugs on, the recorded violation class reproduces; with
//! them off, exploring the same workload through all its crash states is clean.

use std::path::{Path, PathBuf};

use crashsim::artifact::{self, Loaded};
use crashsim::crash::explore_workload;
use crashsim::daxfs::bugs::BugSet;
use crashsim::targets::daxfs::DaxfsTarget;

fn corpus() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/regressions");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .map(|rd| rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn replay(dir: &Path) -> Result<(), String> {
    let loaded: Loaded = artifact::load(dir).map_err(|e| e.to_string())?;
    let m = &loaded.manifest;
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if !m.bugs.iter().any(|b| b == name) {
        return Err(format!("{name}: the directory name must be the bug it pins (bugs {:?})", m.bugs));
    }
    let on = DaxfsTarget::from_config_json(&m.target_config)?;
    let report = artifact::repro(&on, &loaded).map_err(|e| e.to_string())?;
    if !report.reproduced {
        return Err(format!("{name}: bug on, {} did not reproduce: {:?}", m.class(), report.found));
    }
    let mut off = on.clone();
    off.config.mount.bugs = BugSet::default();
    let workload = artifact::workload_of(&on, &loaded).map_err(|e| e.to_string())?;
    let clean =
        explore_workload(&off, &m.crash, m.stream_seed, &workload, None).map_err(|e| e.to_string())?;
    if let Some(v) = clean.violations.first() {
        return Err(format!("{name}: bug off, still {v}"));
    }
    Ok(())
}

#[test]
fn every_regression_artifact_reproduces_with_its_bug_and_is_clean_without() {
    let dirs = corpus();
    let mut names: Vec<&str> = dirs.iter().filter_map(|d| d.file_name()?.to_str()).collect();
    let mut ids: Vec<&str> = crashsim::daxfs::bugs::CATALOGUE.iter().map(|r| r.id).collect();
    names.sort_unstable();
    ids.sort_unstable();
    assert_eq!(names, ids, "corpus/regressions/ holds one minimized artifact per catalogue bug");
    let failures: Vec<String> = dirs.iter().filter_map(|d| replay(d).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} regressions failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n")
    );
}
