//! Which choices of pending units to explore at one crash point (docs/design.md §8).
//!
//! A strategy yields [`Choice`]s lazily, so a budget never costs more than what it takes, and a
//! future strategy (read-set pruning, lazy branching on first read) is one more [`Strategy`]
//! variant behind the same [`choices`] seam.

use std::collections::HashSet;

use crate::pmem::{Choice, CrashState};
use crate::rng::SimRng;
use rand::RngExt as _;

/// Random draws allowed per budgeted state before the random tail gives up on finding new
/// choices (a space smaller than the budget is then mostly covered, not sampled forever).
const RANDOM_DRAWS_PER_STATE: usize = 4;

/// How the choices at a crash point are enumerated.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Every choice. A crash point whose choices outnumber the per-point budget stops the
    /// exploration with [`crate::target::TargetError::OverBudget`], unless
    /// [`crate::crash::CrashConfig::exhaustive_cap`] allows sampling it as
    /// [`Strategy::Bounded`] does (the report then counts it over budget).
    Exhaustive,
    /// None persisted, all persisted, each line persisted alone and lost alone, each line's
    /// partial prefixes, pairs of lines, each non-temporal unit alone, then seeded random
    /// samples, up to the budget. A space that fits the budget is always covered whole: once
    /// the random samples stop finding new choices, the missing ones follow in order.
    Bounded,
    /// Every crash state, by lazy refinement: a pending line's choices are enumerated only when
    /// a recovery reads it, and the lines no recovery read are judged word by word through the
    /// target's line-local oracle ([`crate::target::Target::check_lines`]). Exact; a point
    /// needing more than `recoveries_per_point` recoveries is counted over budget.
    #[default]
    Lazy,
}

impl std::str::FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "exhaustive" => Ok(Self::Exhaustive),
            "bounded" => Ok(Self::Bounded),
            "lazy" => Ok(Self::Lazy),
            _ => Err(format!("unknown strategy `{s}` (expected lazy, exhaustive or bounded)")),
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Exhaustive => "exhaustive",
            Self::Bounded => "bounded",
            Self::Lazy => "lazy",
        })
    }
}

/// Whether every choice of `state` fits a budget of `states_max` per crash point.
pub fn fits_budget(state: &CrashState, states_max: usize) -> bool {
    state.choice_count() <= states_max as u128
}

/// At most `states_max` distinct choices for `state`, in a fixed order; `rng` drives the random
/// tail. Every one is valid for `state`. When the space fits the budget ([`fits_budget`]),
/// every choice comes out, whatever the strategy; otherwise both strategies sample it (the
/// caller decides whether exhaustive enumeration may sample). Different choices may still give
/// equal images; the engine deduplicates those by state hash.
pub fn choices<'s>(
    state: &'s CrashState,
    strategy: Strategy,
    states_max: usize,
    rng: SimRng,
) -> Box<dyn Iterator<Item = Choice> + 's> {
    let fits = fits_budget(state, states_max);
    match strategy {
        Strategy::Exhaustive if fits => Box::new(state.choices_exhaustive()),
        Strategy::Exhaustive | Strategy::Bounded | Strategy::Lazy => {
            let mut yielded: HashSet<Choice> = HashSet::new();
            let fresh = move |c: &Choice| yielded.insert(c.clone());
            // Distinct choices: once the whole space is out, stop drawing.
            let distinct_max = state.choice_count().min(states_max as u128) as usize;
            // A space within the budget ends with every choice, so none is left to chance.
            let rest = fits.then(|| state.choices_exhaustive()).into_iter().flatten();
            Box::new(bounded(state, rng, states_max).chain(rest).filter(fresh).take(distinct_max))
        }
    }
}

/// The bounded sequence, repeats included; the random tail draws at most
/// `RANDOM_DRAWS_PER_STATE * states_max` samples, so a small space ends the sequence early.
fn bounded(state: &CrashState, mut rng: SimRng, states_max: usize) -> impl Iterator<Item = Choice> + '_ {
    let lines = state.lines.len();
    let none = state.choice_none();
    let all = state.choice_all();
    // Each line whole first (persisted alone, lost alone), then its partial prefixes: a small
    // budget sees every line on its own before it sees torn lines.
    let wholes = (0..lines).flat_map(move |i| {
        let n = state.lines[i].units.len() as u32;
        [with_line(state.choice_none(), i, n), with_line(state.choice_all(), i, 0)]
    });
    let partials = (0..lines).flat_map(move |i| {
        let n = state.lines[i].units.len() as u32;
        let alone = (1..n).map(move |k| with_line(state.choice_none(), i, k));
        let rest_all = (1..n).map(move |k| with_line(state.choice_all(), i, k));
        alone.chain(rest_all)
    });
    let singles = wholes.chain(partials);
    let pairs = (0..lines).flat_map(move |i| {
        (i + 1..lines).flat_map(move |j| {
            let (ni, nj) = (state.lines[i].units.len() as u32, state.lines[j].units.len() as u32);
            let both = with_line(with_line(state.choice_none(), i, ni), j, nj);
            let neither = with_line(with_line(state.choice_all(), i, 0), j, 0);
            [both, neither]
        })
    });
    let nts = (0..state.nt.len()).flat_map(move |k| {
        // Alone with what it waits on (the earlier stores of its line).
        let alone = state.with_nt(state.choice_none(), k);
        let mut rest_all = state.choice_all();
        rest_all.nt_mask[k] = false;
        [alone, rest_all]
    });
    // eADR: cuts inside the store at the crash point, spread over the store first.
    let torns = spread(state.torn.len() as u32).map(move |t| Choice { torn: t, ..state.choice_none() });
    let draws = states_max.saturating_mul(RANDOM_DRAWS_PER_STATE);
    let random = std::iter::repeat_with(move || random_choice(state, &mut rng)).take(draws);
    // Lowering a line's prefix may strand an NT unit waiting on it: such units are lost instead.
    let valid = move |c: Choice| state.without_unmet_nt(c);
    [none, all].into_iter().chain(torns).chain(singles).chain(pairs).chain(nts).map(valid).chain(random)
}

/// Each of `1..n` once, coarse to fine: odd multiples of the largest power of two first, so a
/// budget that stops early still sees cuts spread over the whole store.
fn spread(n: u32) -> impl Iterator<Item = u32> {
    let top = if n < 2 { 0 } else { 31 - (n - 1).leading_zeros() };
    (0..=top).rev().flat_map(move |shift| {
        let step = 1u32 << shift;
        (1..).map(move |odd: u32| (2 * odd - 1) * step).take_while(move |&k| k < n)
    })
}

fn with_line(mut choice: Choice, line_index: usize, prefix: u32) -> Choice {
    choice.line_prefix[line_index] = prefix;
    choice
}

/// A random valid choice: each line an independent prefix, each NT unit a coin (lost if its
/// line's prefix is too short for it), the torn prefix uniform.
pub fn random_choice(state: &CrashState, rng: &mut SimRng) -> Choice {
    let choice = Choice {
        line_prefix: state.lines.iter().map(|l| rng.random_range(0..=l.units.len() as u32)).collect(),
        nt_mask: state.nt.iter().map(|_| rng.random_bool(0.5)).collect(),
        // Drawn only when there is a torn store, so ADR draws stay as they were.
        torn: if state.torn.is_empty() { 0 } else { rng.random_range(0..=state.torn.len() as u32) },
    };
    state.without_unmet_nt(choice)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pmem::{CrashPoint, Device, FlushKind, PersistenceModel, PmemAddr, Tracker};
    use crate::rng::rng_from_seed;
    use std::collections::BTreeSet;

    /// Three lines with 2, 1 and 3 pending units and two pending NT units.
    fn state() -> CrashState {
        let mut dev = Device::new(4096);
        for (line, n) in [(0u64, 2u64), (1, 1), (2, 3)] {
            for k in 0..n {
                dev.store_u64(PmemAddr(line * 64 + k * 8), k + 1, "t").unwrap();
            }
        }
        dev.store_nt(PmemAddr(512), &[1u8; 16], "t").unwrap();
        dev.flush(PmemAddr(0), 8, FlushKind::Clwb, "t").unwrap();
        let trace = dev.trace().clone();
        Tracker::state_at(&trace, dev.initial().clone(), PersistenceModel::Adr, CrashPoint(trace.len()))
    }

    #[test]
    fn exhaustive_yields_every_choice_once_when_it_fits() {
        let s = state();
        assert_eq!(s.choice_count(), 3 * 2 * 4 * 4);
        let all: BTreeSet<_> =
            choices(&s, Strategy::Exhaustive, 96, rng_from_seed(1)).map(|c| format!("{c:?}")).collect();
        assert_eq!(all.len(), 96);
    }

    #[test]
    fn capped_exhaustive_samples_like_bounded_over_budget() {
        let s = state();
        let got: Vec<Choice> = choices(&s, Strategy::Exhaustive, 10, rng_from_seed(1)).collect();
        assert_eq!(got.len(), 10);
        assert_eq!(got[0], s.choice_none());
        assert_eq!(got[1], s.choice_all());
    }

    #[test]
    fn bounded_starts_systematic_then_is_seeded_and_valid() {
        let s = state();
        let a: Vec<Choice> = choices(&s, Strategy::Bounded, 60, rng_from_seed(7)).collect();
        let b: Vec<Choice> = choices(&s, Strategy::Bounded, 60, rng_from_seed(7)).collect();
        assert_eq!(a, b);
        assert_eq!(a.len(), 60, "a 96-state space fills a budget of 60");
        // Line 2 (3 units) varied alone: prefixes 1, 2, 3 with the other lines at none.
        assert!(a.contains(&with_line(s.choice_none(), 2, 2)));
        assert!(a.contains(&with_line(s.choice_all(), 0, 1)));
        for c in &a {
            s.check_choice(c).unwrap();
        }
        let distinct: BTreeSet<_> = a.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(distinct.len(), a.len(), "choices never repeat");
        let over: Vec<Choice> = choices(&s, Strategy::Bounded, 500, rng_from_seed(7)).collect();
        assert_eq!(over.len(), 96, "a space within the budget is covered whole");
        assert_eq!(over[..60], a[..], "the bounded order comes first");
        let distinct: BTreeSet<_> = over.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(distinct.len(), 96);
        assert!(fits_budget(&s, 96) && !fits_budget(&s, 95));
    }
}
