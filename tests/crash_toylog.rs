//! The canary: the sweep must find toylog-broken's bug, and the fixed toylog must sweep clean.

use crashsim::check::ViolationClass;
use crashsim::crash::{CrashConfig, ImageMode, Strategy, explore_seed};
use crashsim::pmem::{Granularity, PersistenceModel};
use crashsim::sweep::{self, SeedRange, SweepConfig, SweepSummary};
use crashsim::targets::toylog::ToyLog;

fn config(seeds: &str, jobs: usize) -> SweepConfig {
    SweepConfig {
        seeds: seeds.parse().unwrap(),
        crash: CrashConfig::default(),
        jobs,
        budget: None,
        fail_fast: false,
    }
}

fn sweep(target: &ToyLog, cfg: &SweepConfig) -> SweepSummary {
    sweep::run(target, cfg, &|_| {}).unwrap()
}

#[test]
fn canary_broken_toylog_is_caught_with_evidence() {
    let s = sweep(&ToyLog::broken(), &config("0..20", 2));
    assert!(s.seeds_complete && s.workloads == 20);
    assert!(!s.violations.is_empty(), "the canary must fail");
    let stale = s
        .violations
        .iter()
        .find(|v| v.violation.class == ViolationClass::StaleData)
        .expect("a torn append reads poison");
    let e = &stale.violation.evidence;
    assert!(e.crash_point.is_some());
    let writer = e.last_writer.as_ref().expect("last writer of the poisoned word");
    assert_eq!((writer.op.as_str(), writer.site.as_str()), ("store", "toylog::append::record"));
    assert!(e.lost.iter().any(|u| u.site == "toylog::append::record"), "{e:?}");
    assert!(e.persisted_count >= 1, "the commit persisted: {e:?}");
    assert!(stale.violation.found.is_some() && stale.violation.allowed.is_some());
}

#[test]
fn fixed_toylog_sweeps_clean_under_both_models() {
    let s = sweep(&ToyLog::fixed(), &config("0..20", 2));
    assert!(s.violations.is_empty() && s.errors.is_empty(), "{:?}", s.violations);
    assert!(s.unique_states > s.crash_points && s.recovery_crash_states > 0, "{s:?}");
    let mut eadr = config("0..20", 2);
    eadr.crash.model = PersistenceModel::Eadr;
    eadr.crash.granularity = Granularity::Store;
    // Under eADR stores persist in program order, so the broken ordering is harmless.
    let s = sweep(&ToyLog::broken(), &eadr);
    assert!(s.violations.is_empty(), "{:?}", s.violations);
    assert!(s.crash_points > 20);
}

#[test]
fn exhaustive_and_bounded_both_catch_the_canary() {
    for (strategy, budget, cap) in
        [(Strategy::Exhaustive, 256, false), (Strategy::Exhaustive, 4, true), (Strategy::Bounded, 4, false)]
    {
        let mut cfg = config("0..5", 1);
        cfg.crash.strategy = strategy;
        cfg.crash.states_per_point = budget;
        cfg.crash.exhaustive_cap = cap;
        let s = sweep(&ToyLog::broken(), &cfg);
        assert!(!s.violations.is_empty(), "{strategy} {budget}");
    }
}

#[test]
fn complete_means_every_crash_state_of_every_point() {
    // toylog's crash points all fit the default budget: every state is explored.
    let s = sweep(&ToyLog::fixed(), &config("0..10", 2));
    let c = &s.coverage;
    assert!(s.complete && s.seeds_complete && s.states_complete, "{c:?}");
    assert_eq!((c.points_over_budget, c.points_skipped), (0, 0));
    assert!(c.state_space_exact && c.states_explored > 0);
    assert_eq!(c.state_space.0, u128::from(c.states_explored));
    assert_eq!(c.points, s.crash_points);
    assert!(s.over_budget_points.is_empty());
    // Exhaustive covers the same space.
    let mut ex = config("0..10", 2);
    ex.crash.strategy = Strategy::Exhaustive;
    let e = sweep(&ToyLog::fixed(), &ex);
    assert!(e.complete);
    assert_eq!(e.coverage, s.coverage);

    // A budget of 2 states per point samples most points: every seed explored, not complete.
    let mut small = config("0..10", 2);
    small.crash.strategy = Strategy::Bounded;
    small.crash.states_per_point = 2;
    let t = sweep(&ToyLog::fixed(), &small);
    let c = &t.coverage;
    assert!(t.seeds_complete && !t.states_complete && !t.complete, "{c:?}");
    assert!(c.points_over_budget > 0 && c.states_explored < t.crash_states + 1);
    assert!(c.state_space.0 > u128::from(c.states_explored));
    assert_eq!(c.state_space, s.coverage.state_space, "the space does not depend on the budget");
    assert!(!t.over_budget_points.is_empty() && t.over_budget_points.len() <= 8);
    assert!(t.over_budget_points.windows(2).all(|w| w[0] < w[1]));
    let first = t.over_budget_points[0];
    let report = explore_seed(&ToyLog::fixed(), &small.crash, first.seed).unwrap();
    assert_eq!(report.over_budget_points[0], first.point, "the workload report names the same point");
    assert!(!report.coverage.complete());

    // A sample of crash points (fuzzing) skips the others.
    let mut points = config("0..10", 2);
    points.crash.points_per_workload = 1;
    let p = sweep(&ToyLog::fixed(), &points);
    assert!(p.coverage.points_skipped > 0 && !p.complete, "{:?}", p.coverage);
    assert_eq!(p.coverage.points, s.coverage.points);
}

#[test]
fn exhaustive_over_budget_is_an_error_naming_the_point() {
    let mut cfg = config("0..10", 2);
    cfg.crash.strategy = Strategy::Exhaustive;
    cfg.crash.states_per_point = 2;
    let err = sweep::run(&ToyLog::fixed(), &cfg, &|_| {}).unwrap_err();
    let sweep::SweepError::OverBudget { seed, error } = &err else { panic!("{err}") };
    let crashsim::target::TargetError::OverBudget { point, states, budget } = error else { panic!("{err}") };
    assert_eq!(*budget, 2);
    assert!(*states > 2);
    let text = err.to_string();
    assert!(
        text.contains(&format!("seed {seed}")) && text.contains(&format!("crash point {point}")),
        "{text}"
    );
    // The same seed with the other jobs count: the same (smallest) seed.
    cfg.jobs = 1;
    assert_eq!(sweep::run(&ToyLog::fixed(), &cfg, &|_| {}).unwrap_err(), err);
    // With the cap, those points are sampled and counted.
    cfg.crash.exhaustive_cap = true;
    let s = sweep(&ToyLog::fixed(), &cfg);
    assert!(s.coverage.points_over_budget > 0 && !s.complete);
}

/// Everything but wall-clock fields, as JSON.
fn stable_json(s: &SweepSummary) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap();
    let obj = v.as_object_mut().unwrap();
    obj.remove("elapsed_s").expect("elapsed_s field");
    obj.remove("states_per_s").expect("states_per_s field");
    v
}

#[test]
fn results_are_identical_for_any_jobs_count() {
    for target in [ToyLog::broken(), ToyLog::fixed()] {
        let one = sweep(&target, &config("0..24", 1));
        let two = sweep(&target, &config("0..24", 2));
        assert_eq!(stable_json(&one), stable_json(&two));
    }
}

#[test]
fn fail_fast_stops_at_the_smallest_failing_seed_whatever_the_jobs() {
    let mut one = config("0..40", 1);
    one.fail_fast = true;
    let mut two = one.clone();
    two.jobs = 2;
    let a = sweep(&ToyLog::broken(), &one);
    let b = sweep(&ToyLog::broken(), &two);
    assert_eq!(stable_json(&a), stable_json(&b));
    let first = a.violations[0].seed;
    assert!(a.violations.iter().all(|v| v.seed == first));
    assert_eq!(a.workloads, first + 1);
    assert_eq!(a.seeds_skipped, 40 - first - 1);
    assert_eq!(a.seeds_complete, a.seeds_skipped == 0);
}

#[test]
fn zero_budget_starts_nothing_and_says_so() {
    let mut cfg = config("0..8", 1);
    cfg.budget = Some(std::time::Duration::ZERO);
    let s = sweep(&ToyLog::fixed(), &cfg);
    assert_eq!((s.workloads, s.seeds_skipped, s.complete), (0, 8, false));
}

#[test]
fn copy_mode_gives_the_same_verdicts_as_overlay() {
    let copy = CrashConfig { image_mode: ImageMode::Copy, ..CrashConfig::default() };
    for seed in 0..4 {
        let a = explore_seed(&ToyLog::broken(), &CrashConfig::default(), seed).unwrap();
        let b = explore_seed(&ToyLog::broken(), &copy, seed).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn bad_options_are_typed_errors() {
    let mut cfg = config("0..2", 0);
    assert!(sweep::run(&ToyLog::fixed(), &cfg, &|_| {}).is_err());
    cfg.jobs = 1;
    cfg.crash.states_per_point = 0;
    assert!(sweep::run(&ToyLog::fixed(), &cfg, &|_| {}).is_err());
    let tiny = ToyLog::fixed().with_device_bytes(64);
    let s = sweep(&tiny, &config("0..2", 1));
    assert_eq!(s.errors.len(), 2, "a bad device size is an error per seed, not a violation");
    assert!("1..1".parse::<SeedRange>().is_err());
}
