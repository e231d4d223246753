//! JUnit XML for CI: one test case per seed of the sweep (or shard).

use crashsim::sweep::{SweepSummary, shard_seeds};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

/// The summary as a JUnit report: a violating seed fails, a seed that could not run errors, a
/// seed not explored (budget, fail-fast) is skipped.
pub fn report(s: &SweepSummary) -> Result<String, quick_junit::SerializeError> {
    let mut suite = TestSuite::new(format!("crashsim sweep {} {}", s.target, s.seeds));
    for seed in shard_seeds(s.seeds, s.partition) {
        suite.add_test_case(case(s, seed));
    }
    let c = &s.coverage;
    suite.add_properties([
        Property::new("complete", s.complete.to_string()),
        Property::new("seeds_complete", s.seeds_complete.to_string()),
        Property::new("states_complete", s.states_complete.to_string()),
        Property::new("crash_points", c.points.to_string()),
        Property::new("points_over_budget", c.points_over_budget.to_string()),
        Property::new("points_skipped", c.points_skipped.to_string()),
        Property::new("states_explored", c.states_explored.to_string()),
        Property::new("state_space", c.state_space.to_string()),
        Property::new("state_space_exact", c.state_space_exact.to_string()),
        Property::new("recovery_crashes", s.recovery_crashes.to_string()),
        Property::new("media_faults", s.media_faults.to_string()),
        Property::new("interrupted", s.interrupted.to_string()),
        Property::new("budget_exhausted", s.budget_exhausted.to_string()),
        Property::new("elapsed_s", format!("{:.3}", s.elapsed_s)),
    ]);
    if !s.skipped.is_empty() {
        suite.add_property(Property::new("seeds_not_done", crate::seed_ranges(s)));
    }
    if let Some(path) = &s.results_file {
        suite.add_property(Property::new("results_file", path.clone()));
    }
    let mut out = crate::coverage_line(s);
    if let Some(line) = crate::not_done_line(s) {
        out.push('\n');
        out.push_str(&line);
    }
    suite.set_system_out(out);
    let mut report = Report::new("crashsim");
    report.add_test_suite(suite);
    report.to_string()
}

fn case(s: &SweepSummary, seed: u64) -> TestCase {
    let name = format!("seed {seed}");
    let violations: Vec<_> = s.violations.iter().filter(|v| v.seed == seed).collect();
    let status = if let Some(first) = violations.first() {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Failure);
        st.set_type(first.violation.class.name());
        st.set_message(first.violation.to_string());
        let all: Vec<String> = violations
            .iter()
            .map(|v| match &v.artifact {
                Some(a) => format!("{} (artifact {a})", v.violation),
                None => v.violation.to_string(),
            })
            .collect();
        st.set_description(all.join("\n"));
        st
    } else if let Some(e) = s.errors.iter().find(|e| e.seed == seed) {
        let mut st = TestCaseStatus::non_success(NonSuccessKind::Error);
        st.set_message(e.message.clone());
        st
    } else if s.skipped.binary_search(&seed).is_ok() {
        TestCaseStatus::skipped()
    } else {
        TestCaseStatus::success()
    };
    let mut tc = TestCase::new(name, status);
    tc.set_classname(format!("crashsim.{}", s.target));
    tc
}
