//! Artifacts round-trip (write → load → repro → same violation), and every corruption of an
//! artifact is a typed error naming the file, never a panic or a silent pass.

use std::path::{Path, PathBuf};

use crashsim::artifact::{
    self, ArtifactError, ArtifactSource, IMAGE_FILE, INPUT_FILE, MANIFEST_FILE, artifact_name, write_artifact,
};
use crashsim::crash::{CrashConfig, explore_seed};
use crashsim::daxfs::bugs::BugSet;
use crashsim::target::Target;
use crashsim::targets::daxfs::DaxfsTarget;
use crashsim::targets::daxfs::exec::RunConfig;
use crashsim::targets::toylog::ToyLog;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("crashsim-artifacts-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Writes the artifact of the first violation `target` finds on `seed`.
fn first_artifact<T: Target>(target: &T, seed: u64, out: &Path) -> PathBuf {
    let cfg = CrashConfig::default();
    let report = explore_seed(target, &cfg, seed).unwrap();
    let v = report.violations.first().expect("the seed finds a violation");
    let src = ArtifactSource::seed(target, seed);
    let w = target.workload_from_seed(seed);
    write_artifact(target, &cfg, &src, &w, v, out, &artifact_name(Some(seed), v)).unwrap()
}

#[test]
fn canary_artifact_round_trips_and_is_byte_identical() {
    let out = scratch("canary");
    let dir = first_artifact(&ToyLog::broken(), 3, &out);
    let loaded = artifact::load(&dir).unwrap();
    let report = artifact::repro(&ToyLog::broken(), &loaded).unwrap();
    assert!(report.reproduced, "{report:?}");
    assert_eq!(report.image_identical, Some(true));
    assert!(loaded.manifest.choice.is_some() && loaded.manifest.crash_point.is_some());
    // The fixed log on the same image and workload is clean: the image is judged, not replayed.
    let x = artifact::explain(&ToyLog::broken(), &loaded).unwrap();
    assert!(x.window.iter().any(|e| e.site.starts_with("toylog::")), "{x:?}");
    assert!(x.lines.iter().any(|l| l.units.iter().any(|u| !u.persisted)));
    // Wrong target: a typed error.
    let daxfs = DaxfsTarget::new(RunConfig::default());
    assert!(matches!(artifact::repro(&daxfs, &loaded), Err(ArtifactError::WrongTarget { .. })));
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn daxfs_bug_artifact_reproduces_and_minimizes() {
    let mut config = RunConfig { pmd_blocks: 8, ..RunConfig::default() };
    config.mount.bugs = BugSet::parse_list("no-zero-on-alloc").unwrap();
    let target = DaxfsTarget::new(config);
    let out = scratch("daxfs");
    let dir = first_artifact(&target, 0, &out);
    let loaded = artifact::load(&dir).unwrap();
    assert_eq!(loaded.manifest.bugs, vec!["no-zero-on-alloc".to_string()]);
    let report = artifact::repro(&target, &loaded).unwrap();
    assert!(report.reproduced && report.image_identical == Some(true), "{report:?}");
    let min = artifact::minimize(&target, &loaded, &out.join("min"), false).unwrap();
    assert!(min.after.ops <= min.before.ops && min.after.ops <= 8, "{min:?}");
    let again = artifact::load(&min.path).unwrap();
    assert!(again.image.is_none(), "rebuild-only");
    assert!(artifact::repro(&target, &again).unwrap().reproduced);
    let x = artifact::explain(&target, &again).unwrap();
    let reading = x.offending_word.and_then(|w| w.reading).unwrap_or_default();
    assert!(reading.contains("poison of block"), "{reading}");
    let _ = std::fs::remove_dir_all(&out);
}

/// The sweep's daxfs target (2 MiB PMD, policy per workload) with `bug`, and the artifact of
/// the first violation on `seed`.
fn daxfs_artifact(bug: &str, seed: u64, out: &Path) -> (DaxfsTarget, PathBuf) {
    let mut config = RunConfig { policy_per_workload: true, ..RunConfig::default() };
    config.mount.bugs = BugSet::parse_list(bug).unwrap();
    let target = DaxfsTarget::new(config);
    // Bounded: its states persist much more than lazy enumeration's leaves (free lines at
    // nothing persisted), which gives the persisted-set minimizer something to shrink.
    let cfg = CrashConfig {
        violations_per_workload: 1,
        strategy: crashsim::crash::Strategy::Bounded,
        ..CrashConfig::default()
    };
    let report = explore_seed(&target, &cfg, seed).unwrap();
    let v = report.violations.first().expect("the seed finds a violation");
    let src = ArtifactSource::seed(&target, seed);
    let w = target.workload_from_seed(seed);
    let dir = write_artifact(&target, &cfg, &src, &w, v, out, &artifact_name(Some(seed), v)).unwrap();
    (target, dir)
}

/// A race found by a random 4-thread workload: removing operations must keep the surviving
/// threads' interleaving (steered shrinking), or the race is lost long before 8 operations.
#[test]
fn minimizing_a_race_keeps_its_interleaving() {
    let out = scratch("race");
    let (target, dir) = daxfs_artifact("no-entry-lock", 136, &out);
    let loaded = artifact::load(&dir).unwrap();
    assert!(loaded.manifest.crash_point.is_none(), "a run-time violation");
    let min = artifact::minimize(&target, &loaded, &out.join("min"), false).unwrap();
    assert_eq!(min.violation.class, loaded.manifest.class());
    assert!(min.after.ops <= 8 && min.after.ops < min.before.ops, "{min:?}");
    // The manifest pins the allocation policy the original hashed to, so repro needs no
    // knowledge of the shrinking.
    let again = artifact::load(&min.path).unwrap();
    let fixed = DaxfsTarget::from_config_json(&again.manifest.target_config).unwrap();
    assert!(!fixed.config.policy_per_workload);
    assert!(artifact::repro(&fixed, &again).unwrap().reproduced);
    let _ = std::fs::remove_dir_all(&out);
}

/// A crash violation: delta debugging of the persisted set leaves fewer persisted units than
/// the crash state the sweep found (before it, minimizing this artifact gave 262,176).
#[test]
fn minimizing_a_crash_violation_shrinks_the_persisted_set() {
    let out = scratch("persisted");
    let (target, dir) = daxfs_artifact("commit-before-log-fenced", 0, &out);
    let loaded = artifact::load(&dir).unwrap();
    assert!(loaded.manifest.crash_point.is_some() && loaded.manifest.persisted_count > 0);
    let min = artifact::minimize(&target, &loaded, &out.join("min"), false).unwrap();
    assert_eq!(min.violation.class, loaded.manifest.class());
    assert!(min.after.persisted_units < min.before.persisted_units, "{min:?}");
    assert!(min.after.ops <= 8, "{min:?}");
    let again = artifact::load(&min.path).unwrap();
    let fixed = DaxfsTarget::from_config_json(&again.manifest.target_config).unwrap();
    assert!(artifact::repro(&fixed, &again).unwrap().reproduced);
    let _ = std::fs::remove_dir_all(&out);
}

/// Loads and repros `dir`; Ok(reproduced) or the error.
fn try_repro(dir: &Path) -> Result<bool, ArtifactError> {
    let loaded = artifact::load(dir)?;
    Ok(artifact::repro(&ToyLog::broken(), &loaded)?.reproduced)
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for f in [MANIFEST_FILE, INPUT_FILE, IMAGE_FILE] {
        std::fs::copy(from.join(f), to.join(f)).unwrap();
    }
}

#[test]
fn corruption_matrix_gives_typed_errors_naming_the_file() {
    let out = scratch("matrix");
    let good = first_artifact(&ToyLog::broken(), 3, &out);
    assert!(try_repro(&good).unwrap());
    let case = out.join("case");
    let mut cases = 0;
    for file in [MANIFEST_FILE, INPUT_FILE, IMAGE_FILE] {
        let len = std::fs::metadata(good.join(file)).unwrap().len();
        let check = |what: &str| {
            let err = try_repro(&case).expect_err(&format!("{file} {what} must be an error"));
            let msg = err.to_string();
            assert!(msg.contains(file), "{file} {what}: `{msg}` names the file");
            assert!(!msg.contains('\n'), "one line: {msg}");
        };
        copy_dir(&good, &case);
        std::fs::remove_file(case.join(file)).unwrap();
        check("deleted");
        cases += 1;
        // The manifest ends in "}\n": cutting only the newline is harmless.
        for cut in [0, 1, len / 3, len / 2, len - 2] {
            copy_dir(&good, &case);
            let f = std::fs::OpenOptions::new().write(true).open(case.join(file)).unwrap();
            f.set_len(cut).unwrap();
            check(&format!("truncated to {cut}"));
            cases += 1;
        }
        // Flip bytes that carry content (whitespace in the manifest may change harmlessly).
        let bytes = std::fs::read(good.join(file)).unwrap();
        let positions: Vec<usize> = (0..bytes.len())
            .filter(|&i| file != MANIFEST_FILE || bytes[i].is_ascii_alphanumeric())
            .step_by((bytes.len() / 7).max(1))
            .collect();
        for i in positions {
            copy_dir(&good, &case);
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            std::fs::write(case.join(file), &b).unwrap();
            check(&format!("byte {i} flipped"));
            cases += 1;
        }
    }
    assert!(cases >= 30, "{cases} cases");
    // Wrong format version, with a correct checksum: its own error.
    copy_dir(&good, &case);
    let mut m = artifact::load(&good).unwrap().manifest;
    m.format_version = 99;
    std::fs::write(case.join(MANIFEST_FILE), artifact::encode_manifest(&m)).unwrap();
    assert!(matches!(try_repro(&case), Err(ArtifactError::Version { found: 99, .. })));
    // Missing directory, and a file where the directory should be.
    let nope = try_repro(&out.join("nope")).unwrap_err();
    assert!(matches!(nope, ArtifactError::NoDirectory { .. }), "{nope}");
    assert!(nope.to_string().starts_with("no artifact directory at "), "{nope}");
    std::fs::write(out.join("file"), b"x").unwrap();
    assert!(matches!(try_repro(&out.join("file")), Err(ArtifactError::NotADirectory { .. })));
    let _ = std::fs::remove_dir_all(&out);
}
