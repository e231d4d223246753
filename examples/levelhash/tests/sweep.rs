//! Level Hashing through the crashsim library: each bug is found by a default sweep, written
//! as an artifact, reproduced and minimized; the fixed target sweeps clean and complete.

use std::path::{Path, PathBuf};
use std::time::Instant;

use crashsim::artifact::{self, write_sweep_artifacts};
use crashsim::check::ViolationClass;
use crashsim::crash::CrashConfig;
use crashsim::sweep::{self, SweepConfig, SweepSummary};
use crashsim::target::{Target, TargetOptions};
use levelhash::{LevelHash, TOKEN_BEFORE_KV_DURABLE, UPDATE_TWO_TOKEN_STORES};

fn config(seeds: &str) -> SweepConfig {
    SweepConfig {
        seeds: seeds.parse().unwrap(),
        crash: CrashConfig::default(),
        jobs: 2,
        budget: None,
        fail_fast: false,
    }
}

fn sweep(target: &LevelHash, cfg: &SweepConfig) -> SweepSummary {
    sweep::run(target, cfg, &|_| {}).unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("levelhash-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Sweeps 0..64 with only `bug` on, expects `class` (the store at `lost` lost, the one at
/// `persisted`, on the same line, persisted), and takes its artifact
/// through load, repro and minimize.
fn found_reproduced_minimized(bug: &str, class: ViolationClass, lost: &str, persisted: Option<&str>) {
    let target = LevelHash::with_bugs(&[bug]).unwrap();
    let mut s = sweep(&target, &config("0..64"));
    assert!(s.seeds_complete && s.errors.is_empty(), "{:?}", s.errors);
    assert!(s.violations.iter().all(|v| v.violation.evidence.crash_point.is_some()), "no run-time violation");
    let out = scratch(bug);
    let written = write_sweep_artifacts(&target, &mut s, &out, 16).unwrap();
    assert!(!written.is_empty());
    let hit = s
        .violations
        .iter()
        .find(|v| v.violation.class == class && v.artifact.is_some())
        .unwrap_or_else(|| panic!("{bug}: no {class} artifact among {:?}", s.violations));
    // The engine's evidence: the store whose loss shows was lost, the one that reached media
    // (if the bug has one) persisted.
    let e = &hit.violation.evidence;
    assert!(e.lost.iter().any(|u| u.site == lost) && e.persisted_count >= 1, "{}: {e:?}", hit.violation);
    if let Some(site) = persisted {
        assert!(e.persisted.iter().any(|u| u.site == site), "{}: {e:?}", hit.violation);
    }
    let dir = Path::new(hit.artifact.as_deref().unwrap());
    let loaded = artifact::load(dir).unwrap();
    assert_eq!(loaded.manifest.bugs, vec![bug.to_string()]);
    assert_eq!(LevelHash::from_config(&loaded.manifest.target_config).unwrap(), target);
    let report = artifact::repro(&target, &loaded).unwrap();
    assert!(report.reproduced && report.image_identical == Some(true), "{report:?}");

    let min = artifact::minimize(&target, &loaded, &out.join("min"), false).unwrap();
    assert!(min.after.ops < min.before.ops, "{bug}: {:?} -> {:?}", min.before, min.after);
    assert_eq!(min.violation.class, class);
    let small = artifact::load(&min.path).unwrap();
    assert!(artifact::repro(&target, &small).unwrap().reproduced);
    // The fixed protocol on the minimized workload is clean.
    let w = artifact::workload_of(&target, &small).unwrap();
    let fixed = crashsim::crash::explore_workload(&LevelHash::fixed(), &CrashConfig::default(), 0, &w, None);
    assert!(fixed.unwrap().violations.is_empty());
    eprintln!("{bug}: seed {} {class}; minimized {:?} -> {:?}", hit.seed, min.before, min.after);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn token_before_kv_durable_is_stale_data() {
    found_reproduced_minimized(
        TOKEN_BEFORE_KV_DURABLE,
        ViolationClass::StaleData,
        "levelhash::insert::kv",
        None, // the token persisted, but on the bucket's other line: not in the line's evidence
    );
}

/// A slot published before its record shows poison, an earlier occupant (a resurrected or
/// duplicated key) or, in slot 2, whose last word shares the token's line, another key's value.
#[test]
fn token_before_kv_durable_shows_every_stale_shape() {
    let s = sweep(&LevelHash::with_bugs(&[TOKEN_BEFORE_KV_DURABLE]).unwrap(), &config("0..200"));
    let classes: std::collections::BTreeSet<_> = s.violations.iter().map(|v| v.violation.class).collect();
    let want =
        [ViolationClass::StaleData, ViolationClass::ForeignData, ViolationClass::AllocatorInconsistent];
    assert_eq!(classes, want.into_iter().collect());
}

#[test]
fn update_two_token_stores_loses_an_acknowledged_key() {
    found_reproduced_minimized(
        UPDATE_TWO_TOKEN_STORES,
        ViolationClass::LostWrite,
        "levelhash::update::set_new",
        Some("levelhash::update::clear_old"),
    );
}

fn clean_and_complete(seeds: &str) -> SweepSummary {
    let s = sweep(&LevelHash::fixed(), &config(seeds));
    assert!(s.violations.is_empty() && s.errors.is_empty(), "{:?} {:?}", s.violations.first(), s.errors);
    let c = &s.coverage;
    assert!(s.complete && s.seeds_complete && s.states_complete, "{c:?}");
    assert_eq!((c.points_over_budget, c.points_skipped), (0, 0));
    assert!(c.state_space_exact && c.states_explored > 0, "{c:?}");
    s
}

#[test]
fn fixed_sweeps_clean_and_complete() {
    clean_and_complete("0..100");
}

/// `cargo test --release -- --ignored`
#[test]
#[ignore]
fn fixed_sweeps_clean_and_complete_500() {
    let start = Instant::now();
    let s = clean_and_complete("0..500");
    let c = &s.coverage;
    eprintln!(
        "fixed, seeds 0..500: clean, complete: {} crash points, {} crash states, {:.2} s",
        c.points,
        c.states_explored,
        start.elapsed().as_secs_f64()
    );
}

/// Time to find each bug with a default sweep (fail-fast, as `crashsim sweep --fail-fast`), and
/// the whole 0..64 sweep.
#[test]
#[ignore]
fn time_to_find_each_bug() {
    for bug in [TOKEN_BEFORE_KV_DURABLE, UPDATE_TWO_TOKEN_STORES] {
        let target = LevelHash::with_bugs(&[bug]).unwrap();
        let mut cfg = config("0..64");
        cfg.fail_fast = true;
        let start = Instant::now();
        let s = sweep(&target, &cfg);
        let first = start.elapsed();
        cfg.fail_fast = false;
        let start = Instant::now();
        let all = sweep(&target, &cfg);
        let seeds = all.violations.iter().map(|v| v.seed).collect::<std::collections::BTreeSet<_>>();
        eprintln!(
            "{bug}: first violation seed {} ({}) in {:.2} s; 0..64: {} of 64 seeds fail, {:.2} s",
            s.violations[0].seed,
            s.violations[0].violation.class,
            first.as_secs_f64(),
            seeds.len(),
            start.elapsed().as_secs_f64()
        );
        assert!(first.as_secs() < 10);
    }
}

#[test]
fn both_bugs_at_once_are_both_found() {
    let target = LevelHash::with_bugs(&[TOKEN_BEFORE_KV_DURABLE, UPDATE_TWO_TOKEN_STORES]).unwrap();
    let s = sweep(&target, &config("0..16"));
    let classes: Vec<_> = s.violations.iter().map(|v| v.violation.class).collect();
    assert!(classes.contains(&ViolationClass::StaleData) && classes.contains(&ViolationClass::LostWrite));
}

#[test]
fn options_round_trip_and_unknown_ids_are_errors() {
    let both = LevelHash::with_bugs(&[UPDATE_TWO_TOKEN_STORES, TOKEN_BEFORE_KV_DURABLE]).unwrap();
    assert_eq!(LevelHash::from_options(&both.options()).unwrap(), both);
    assert_eq!(both.bug_ids().len(), 2);
    assert!(LevelHash::fixed().options().bugs.is_empty());
    assert_eq!(LevelHash::bug_catalogue().len(), 2);
    let err = LevelHash::with_bugs(&["no-such-bug"]).unwrap_err().to_string();
    assert!(err.contains(TOKEN_BEFORE_KV_DURABLE), "{err}");
    let mut opts = TargetOptions::default();
    opts.settings.insert("n_top".into(), "16".into());
    assert!(LevelHash::from_options(&opts).is_err());
}
