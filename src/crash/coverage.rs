//! How much of the crash-state space an exploration covered.
//!
//! Every crash point has a space of crash states: each pending cache line persisted up to any
//! prefix of its units, each pending non-temporal unit persisted or not
//! ([`crate::pmem::CrashState::choice_count`]). A point is covered when every one of those
//! states was explored. A point whose space exceeds the per-point budget is sampled instead;
//! a point outside the fuzzing sample of crash points, or after the workload reached its
//! violation limit, is skipped. Coverage counts all three, so that "complete" is a fact and
//! not an assumption.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Trace positions of over-budget crash points listed in a workload report, at most.
pub const OVER_BUDGET_LISTED: usize = 8;

/// A number of crash states, which may exceed `u64`.
///
/// JSON writes it as a decimal string (`"2147483648"`) so that no consumer rounds it through a
/// double; a plain JSON number is accepted when read back.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StateCount(pub u128);

impl Serialize for StateCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StateCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Text(String),
            Number(u64),
        }
        match Repr::deserialize(d)? {
            Repr::Number(n) => Ok(Self(u128::from(n))),
            Repr::Text(t) => t
                .parse::<u128>()
                .map(Self)
                .map_err(|_| serde::de::Error::custom(format!("`{t}` is not a state count"))),
        }
    }
}

impl std::fmt::Display for StateCount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How much of the crash-state space of one workload, or of a whole sweep, was explored.
///
/// Crashes inside recovery and media-fault states are extra states on top of this space; they
/// are always sampled (a few per crash point) and never counted here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Crash points of the trace at the configured granularity, explored or not.
    #[serde(default)]
    pub points: u64,
    /// Crash points whose state space exceeded the per-point budget: their states were
    /// sampled, not all explored.
    #[serde(default)]
    pub points_over_budget: u64,
    /// Crash points within the budget but not explored to the end: outside the sample of
    /// crash points (`points_per_workload`), or after the workload reached its violation limit.
    #[serde(default)]
    pub points_skipped: u64,
    /// Crash states explored: distinct choices of pending units, summed over crash points.
    #[serde(default)]
    pub states_explored: u64,
    /// Crash points all of whose crash states were covered: enumerated one by one, or stood
    /// for by lazy enumeration's leaves (whose sizes add up to the point's space exactly).
    /// `None` in a report written before this was recorded (its completeness is unknown).
    #[serde(default)]
    pub points_whole: Option<u64>,
    /// The size of the space: the number of crash states summed over every crash point. A
    /// lower bound when `state_space_exact` is false.
    #[serde(default)]
    pub state_space: StateCount,
    /// False when a point's count or the sum did not fit 128 bits (or the report predates
    /// coverage): `state_space` is then a lower bound.
    #[serde(default)]
    pub state_space_exact: bool,
}

impl Default for Coverage {
    /// Nothing explored of an empty space: complete.
    fn default() -> Self {
        Self {
            points: 0,
            points_over_budget: 0,
            points_skipped: 0,
            states_explored: 0,
            points_whole: Some(0),
            state_space: StateCount(0),
            state_space_exact: true,
        }
    }
}

impl Coverage {
    /// The coverage of a report written before coverage was recorded: unknown, so not complete.
    pub fn unknown() -> Self {
        Self { state_space_exact: false, points_whole: None, ..Self::default() }
    }

    /// True when every crash state of every crash point was explored.
    pub fn complete(&self) -> bool {
        self.points_over_budget == 0 && self.points_skipped == 0 && self.points_whole == Some(self.points)
    }

    /// Counts one more crash point all of whose states were covered.
    pub fn point_whole(&mut self) {
        self.points_whole = Some(self.points_whole.unwrap_or(0) + 1);
    }

    /// Adds one crash point and its space of `states` (`u128::MAX`: saturated, so the space
    /// becomes a lower bound).
    pub fn add_point_space(&mut self, states: u128) {
        self.points += 1;
        self.add_space(states, states != u128::MAX);
    }

    fn add_space(&mut self, states: u128, exact: bool) {
        match self.state_space.0.checked_add(states) {
            Some(sum) => {
                self.state_space = StateCount(sum);
                self.state_space_exact &= exact;
            }
            None => {
                self.state_space = StateCount(u128::MAX);
                self.state_space_exact = false;
            }
        }
    }

    /// Adds another workload's (or shard's) coverage.
    pub fn add(&mut self, other: &Coverage) {
        self.points += other.points;
        self.points_over_budget += other.points_over_budget;
        self.points_skipped += other.points_skipped;
        self.states_explored = self.states_explored.saturating_add(other.states_explored);
        self.points_whole = self.points_whole.zip(other.points_whole).map(|(a, b)| a + b);
        self.add_space(other.state_space.0, other.state_space_exact);
    }

    /// The share of the space explored, in 0..=1 (1 for an empty space).
    pub fn share(&self) -> f64 {
        if self.state_space.0 == 0 {
            return 1.0;
        }
        (self.states_explored as f64 / self.state_space.0 as f64).min(1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_counts_round_trip_as_decimal_strings() {
        let big = StateCount(u128::MAX - 7);
        let text = serde_json::to_string(&big).unwrap();
        assert_eq!(text, format!("\"{}\"", u128::MAX - 7));
        assert_eq!(serde_json::from_str::<StateCount>(&text).unwrap(), big);
        assert_eq!(serde_json::from_str::<StateCount>("42").unwrap(), StateCount(42));
        assert!(serde_json::from_str::<StateCount>("\"-1\"").is_err());
    }

    #[test]
    fn saturation_makes_the_space_a_lower_bound() {
        let mut c = Coverage::default();
        c.add_point_space(10);
        c.states_explored = 10;
        c.points_whole = Some(1);
        assert!(c.complete());
        c.add_point_space(u128::MAX);
        assert!(!c.state_space_exact && !c.complete());
        let mut d = Coverage::default();
        d.add_point_space(u128::MAX - 1);
        d.add_point_space(5);
        assert_eq!((d.state_space, d.state_space_exact), (StateCount(u128::MAX), false));
        let mut sum = Coverage::default();
        sum.add(&c);
        sum.add(&d);
        assert_eq!((sum.points, sum.states_explored, sum.state_space_exact), (4, 10, false));
    }

    #[test]
    fn a_report_without_coverage_is_not_complete() {
        let old: Coverage = serde_json::from_str("{}").unwrap();
        assert!(!old.complete(), "absent coverage is unknown, not complete");
    }
}
