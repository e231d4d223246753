//! Lazy enumeration of one crash point: a cell's choices are enumerated only when a recovery
//! reads it, and the cells no recovery read are judged line-locally (see "Lazy enumeration" in
//! `docs/performance.md`).
//!
//! Each run recovers the view of a partial assignment (free cells at "nothing persisted") and
//! logs the cells it reads, in the order of their first read. Every full assignment that agrees
//! with the run on the cells it read gives the same recovery (the run reads the same bytes, read
//! by read), so the run stands for all of them: a *leaf*. The rest of the space under the run
//! is split, for each read cell in read order, into "the earlier read cells as in this run, this
//! one different": disjoint subspaces, each explored by its own run. The leaves therefore
//! partition the crash point's choices exactly; their sizes add up to `choice_count`.

use std::sync::Arc;

use crate::check::Violation;
use crate::pmem::{Backing, Cells, CrashState, Device, LineWords, Slot, View};
use crate::rng::rng_from_seed;
use crate::target::Target;

use super::super::coverage::OVER_BUDGET_LISTED;
use super::super::evidence::attach_crash;
use super::super::guarded;
use super::super::replay::judge_image;
use super::{Explorer, stream};

/// A verdict judged once per crash point and reused: the target's verdict key, whether the
/// store at the point had begun, and the slots of the cells the verdict read.
struct Memo {
    key: u128,
    begun: bool,
    touched: Vec<Touched>,
    verdict: Vec<Violation>,
}

/// Cells a memoised verdict read, and their slots then.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Touched {
    /// Cells `lo..hi`, every one free (and unread).
    Free(u32, u32),
    /// One cell that was not free, and its slot.
    Cell(u32, Slot),
}

/// The dense slot array of a crash point's current leaf, with one bit per cell that is not free.
struct Dense {
    slots: Vec<Slot>,
    pinned: Vec<u64>,
}

impl Dense {
    fn set(&mut self, c: u32, slot: Slot) {
        self.slots[c as usize] = slot;
        let bit = 1u64 << (c % 64);
        match slot {
            Slot::Free => self.pinned[c as usize / 64] &= !bit,
            _ => self.pinned[c as usize / 64] |= bit,
        }
    }
}

/// What one run of the lazy enumeration found.
struct Leaf {
    /// The cells it read, first read first, with the slot they had before the run.
    reads: Vec<(u32, Slot)>,
    violations: Vec<Violation>,
}

impl<T: Target> Explorer<'_, '_, T> {
    /// Explores one crash point lazily. `space` is its number of crash states.
    pub(super) fn explore_point_lazy(&mut self, state: &CrashState, space: u128) {
        let expectations = self.target.expectations_at(self.record, state.point);
        let key = (point_hash(state), expectations);
        if let Some(&first) = self.seen_points.get(&key) {
            self.report.duplicate_points.push((state.point.0, first));
            // An equal crash point (same durable image, same pending units, same expectations)
            // was explored already: same leaves, same verdicts.
            self.count_covered(space);
            self.report.coverage.point_whole();
            self.report.crash_states += 1;
            return;
        }
        self.seen_points.insert(key, state.point.0);
        let cells = Cells::new(state);
        let mut recovery_rng = rng_from_seed(stream(self.seed, state.point, 1));
        let cap = self.cfg.recoveries_per_point;
        // Each entry lists the cells it does not leave free (a handful): a point can have tens
        // of thousands of cells, so the one dense slot array is reset, not copied.
        let mut stack: Vec<Vec<(u32, Slot)>> = cells.roots();
        stack.reverse();
        let mut dense =
            Dense { slots: vec![Slot::Free; cells.len()], pinned: vec![0; cells.len().div_ceil(64)] };
        let mut runs = 0usize;
        let mut covered: u128 = 0;
        let mut memo: Vec<Memo> = Vec::new();
        while let Some(assigned) = stack.pop() {
            if self.full() {
                self.report.coverage.points_skipped += 1;
                self.count_covered(covered);
                return;
            }
            if runs == cap {
                // Not explored: the point stays incomplete.
                stack.push(assigned);
                self.report.coverage.points_over_budget += 1;
                if self.report.over_budget_points.len() < OVER_BUDGET_LISTED {
                    self.report.over_budget_points.push(state.point.0 as u64);
                }
                break;
            }
            let sample = runs < self.cfg.recovery_crash.states_per_point;
            runs += 1;
            for &(c, slot) in &assigned {
                dense.set(c, slot);
            }
            let leaf = self.run_leaf(
                state,
                &cells,
                (&assigned, &dense),
                &mut memo,
                sample.then_some(&mut recovery_rng),
            );
            // The leaf's assignment: the entry's, with every cell the run read fixed.
            // The subspaces the run did not stand for: read cell `k` refined, those read before
            // it as in the run. Pushed last-first so they pop in read order.
            let mut children = Vec::new();
            let mut fixed = assigned;
            for &(cell, before) in &leaf.reads {
                for r in cells.refinements(cell, before) {
                    let mut child = fixed.clone();
                    set(&mut child, cell, before, r);
                    children.push(child);
                }
                set(&mut fixed, cell, before, Cells::settled(before));
                dense.set(cell, Cells::settled(before));
            }
            // `fixed` is now the leaf's own assignment: every cell the run read is fixed.
            stack.extend(children.into_iter().rev());
            let leaf_covered = cells.covered(&fixed);
            if crate::self_check_due!() {
                assert_eq!(
                    leaf_covered,
                    cells.covered_dense(&dense.slots),
                    "sparse and dense coverage of a leaf"
                );
            }
            covered = covered.saturating_add(leaf_covered);
            self.report.crash_states += 1;
            self.report.unique_states += 1;
            for mut v in leaf.violations {
                if self.only.is_none_or(|c| v.class == c) {
                    self.witness(state, &cells, &dense.slots, &mut v);
                    self.report.violations.push(v);
                }
            }
            for &(c, _) in &fixed {
                dense.set(c, Slot::Free);
            }
            debug_assert!(
                dense.slots.iter().all(|&s| s == Slot::Free) && dense.pinned.iter().all(|&w| w == 0),
                "the slot array is reset after each leaf"
            );
        }
        debug_assert!(
            !stack.is_empty() || covered == space || space == u128::MAX,
            "the leaves of crash point {} cover {covered} of its {space} states",
            state.point.0
        );
        self.count_covered(covered);
        if stack.is_empty() {
            self.report.coverage.point_whole();
        }
        self.explore_media_faults(state, expectations);
    }

    fn count_covered(&mut self, covered: u128) {
        self.report.coverage.states_explored =
            self.report.coverage.states_explored.saturating_add(covered.min(u128::from(u64::MAX)) as u64);
    }

    /// Recovers the view of `slots` with read tracking, judges it through the target's
    /// line-local oracle and, if `recovery_rng` is given, crashes that recovery.
    fn run_leaf(
        &mut self,
        state: &CrashState,
        cells: &Cells,
        (assigned, dense): (&[(u32, Slot)], &Dense),
        memo: &mut Vec<Memo>,
        recovery_rng: Option<&mut crate::rng::SimRng>,
    ) -> Leaf {
        let (slots, pinned) = (&dense.slots[..], &dense.pinned[..]);
        let tracked = Arc::new(
            cells.tracked_view(state, assigned, slots).expect("a lazy slot assignment is a valid choice"),
        );
        let backing: Arc<dyn Backing> = tracked.clone();
        let mut dev = Device::with_backing(backing);
        let (target, record, point) = (self.target, self.record, state.point);
        let begun = cells.begun(slots);
        let sampled = recovery_rng.is_some();
        let line_local = target.line_local();
        let mut others_judged = 0u64;
        let mut reused = false;
        // Debug builds check `recover_to_judge` against `recover` on every fourth leaf (on
        // every leaf it halved the fuzz harness's rate), or fewer ([`crate::selfcheck`]).
        let cross_check = !sampled && self.report.recoveries % 4 == 0 && crate::self_check_due!();
        let clean = guarded(|| {
            // A recovery that is not crashed again only needs to be judged.
            let mounted = if sampled { target.recover(&mut dev) } else { target.recover_to_judge(&mut dev) };
            if cross_check {
                check_recover_to_judge(target, &mounted, &dev, tracked.untracked());
            }
            let mounted = mounted.map_err(|e| e.to_string())?;
            // Only a recovery that is crashed again needs its fingerprint.
            let fingerprint = sampled.then(|| target.fingerprint(&mounted, &dev));
            // A cell's slot as this run has it so far: the cells recovery read are fixed.
            let now = |c: u32| {
                let slot = slots[c as usize];
                if tracked.was_read(c) { Cells::settled(slot) } else { slot }
            };
            let key = if line_local { target.verdict_key(&mounted, &dev) } else { None };
            let holds = |t: &Touched| match *t {
                Touched::Free(lo, hi) => tracked.all_free_in(pinned, lo, hi),
                Touched::Cell(c, s) => now(c) == s,
            };
            if let Some(key) = key {
                let hit =
                    memo.iter().find(|m| m.key == key && m.begun == begun && m.touched.iter().all(holds));
                if let Some(m) = hit {
                    reused = true;
                    return Ok((m.verdict.clone(), fingerprint));
                }
            }
            let reads_before = tracked.reads_len();
            let words = LineWords::tracked(&tracked, state, cells, (slots, pinned));
            let found = target.check_lines(&mounted, &dev, record, point, begun, &words);
            others_judged = words.others_judged();
            words.assert_contract();
            // Only a verdict that read nothing more through the device is a function of the
            // key and of the words it read.
            if let Some(key) = key.filter(|_| tracked.reads_len() == reads_before) {
                let mut touched = Vec::new();
                for (lo, hi) in words.touched() {
                    let mut from = lo;
                    for c in tracked.not_free_in(pinned, lo, hi) {
                        if from < c {
                            touched.push(Touched::Free(from, c));
                        }
                        touched.push(Touched::Cell(c, now(c)));
                        from = c + 1;
                    }
                    if from < hi {
                        touched.push(Touched::Free(from, hi));
                    }
                }
                if crate::self_check_due!() {
                    let plain: Vec<(u32, Slot)> = (words.touched().into_iter())
                        .flat_map(|(lo, hi)| lo..hi)
                        .map(|c| (c, now(c)))
                        .collect();
                    let runs: Vec<(u32, Slot)> = (touched.iter())
                        .flat_map(|t| match *t {
                            Touched::Free(lo, hi) => (lo..hi).map(|c| (c, Slot::Free)).collect::<Vec<_>>(),
                            Touched::Cell(c, s) => vec![(c, s)],
                        })
                        .collect();
                    assert_eq!(runs, plain, "the runs of a memo's touched cells");
                }
                memo.push(Memo { key, begun, touched, verdict: found.clone() });
            }
            Ok((found, fingerprint))
        });
        tracked.stop_tracking();
        self.report.others_judged += others_judged;
        self.report.recoveries += 1;
        self.report.verdicts_reused += u64::from(reused);
        let reads: Vec<(u32, Slot)> = tracked.reads().into_iter().map(|c| (c, slots[c as usize])).collect();
        let violations = self.after_recovery(&dev, clean, recovery_rng);
        Leaf { reads, violations }
    }

    /// Attaches to `v`, found on the leaf `slots`, a concrete crash state that shows it: the
    /// leaf's own view, or (for a word in a free cell) the leaf with that cell set to leave
    /// one of the word's other values. A violation no concrete state reproduces means the
    /// target's line-local promise was broken: a debug build panics.
    fn witness(&mut self, state: &CrashState, cells: &Cells, slots: &[Slot], v: &mut Violation) {
        let own = cells.choice(state, slots);
        let recovery_crash = v.evidence.recovery_crash_point.is_some();
        let free_word = v.addr.map(|a| a.0 & !7).filter(|&a| {
            cells.cell_of(a).is_some_and(|c| matches!(slots[c as usize], Slot::Free | Slot::Begun))
        });
        let Some(addr) = free_word.filter(|_| !recovery_crash) else {
            attach_crash(v, self.trace, state, &own);
            return;
        };
        let mut candidates = vec![slots.to_vec()];
        let view = View::of_valid(state, &own);
        let here = read_word(&view, addr);
        let others = cells.others(slots, addr..addr + 8);
        for (_, value) in others {
            if value != here {
                candidates.extend(cells.witness(state, slots, addr, value));
            }
        }
        for cand in candidates {
            let choice = cells.choice(state, &cand);
            if self.reproduces(state, &choice, v) {
                attach_crash(v, self.trace, state, &choice);
                return;
            }
        }
        debug_assert!(
            false,
            "{} at {addr:#x} (crash point {}) is reproduced by no crash state: the target's \
             line-local check depends on more than the word and the recovered metadata",
            v.class, state.point.0
        );
        v.message = format!(
            "{} (not reproduced by a single crash state: the target's line-local check broke its contract)",
            v.message
        );
        attach_crash(v, self.trace, state, &own);
    }

    /// Whether the concrete crash state `choice` shows a violation of `v`'s class at `v`'s
    /// address, judged by the target's plain check.
    fn reproduces(&self, state: &CrashState, choice: &crate::pmem::Choice, v: &Violation) -> bool {
        let view = View::of_valid(state, choice);
        let torn = choice.torn > 0;
        let found =
            judge_image(self.target, state.model, Arc::new(view), self.record, (state.point, torn), None);
        found.is_ok_and(|f| f.iter().any(|w| w.class == v.class && w.addr == v.addr))
    }
}

/// Changes `cell`'s slot in a sparse assignment from `before` to `slot`: a free cell is not
/// listed yet; any other is (it is the torn cell, or already fixed).
fn set(assigned: &mut Vec<(u32, Slot)>, cell: u32, before: Slot, slot: Slot) {
    if before == Slot::Free {
        assigned.push((cell, slot));
    } else if let Some(entry) = assigned.iter_mut().find(|(c, _)| *c == cell) {
        entry.1 = slot;
    }
}

/// The promise of [`Target::recover_to_judge`], checked on one crash state: `recover` on the
/// same state (`view`, read untracked) fails exactly when it did and, for a line-local target,
/// gives a state with the same verdict key. (Nothing else is asked of `dev` here: a read
/// through it would be tracked, and a debug build must explore what a release build does.)
pub(super) fn check_recover_to_judge<T: Target>(
    target: &T,
    judged: &Result<T::Mounted, T::Error>,
    dev: &Device,
    view: Arc<dyn Backing>,
) {
    let mut full_dev = Device::with_backing(view);
    let full = target.recover(&mut full_dev);
    match (judged, &full) {
        (Ok(judged), Ok(full)) => {
            assert_eq!(
                target.fingerprint(judged, dev),
                target.fingerprint(full, &full_dev),
                "recover_to_judge and recover give states with different fingerprints"
            );
            if target.line_local() {
                assert_eq!(
                    target.verdict_key(judged, dev),
                    target.verdict_key(full, &full_dev),
                    "recover_to_judge and recover give states with different verdict keys"
                );
            }
        }
        (Err(_), Err(_)) => {}
        (judged, full) => panic!(
            "recover_to_judge {} where recover {}",
            if judged.is_ok() { "succeeds" } else { "fails" },
            if full.is_ok() { "succeeds" } else { "fails" }
        ),
    }
}

fn read_word(b: &dyn Backing, addr: u64) -> u64 {
    let mut w = [0u8; 8];
    b.read_at(addr, &mut w);
    u64::from_le_bytes(w)
}

/// Names a crash point's whole state: durable image, pending units and their order
/// constraints. Two points with equal hashes (and equal expectations) have equal leaves.
fn point_hash(state: &CrashState) -> u128 {
    let mut h = state.base_hash ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    let mut mix = |x: u64| {
        h = (h ^ u128::from(x)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    };
    for l in &state.lines {
        // The line's digest covers its units' count, addresses and values.
        let d = l.digest();
        mix(l.line);
        mix(d as u64);
        mix((d >> 64) as u64);
    }
    mix(u64::MAX);
    for (u, dep) in state.nt.iter().zip(&state.nt_after) {
        mix(u.addr);
        mix(u.value);
        mix(dep.map_or(u64::MAX, |d| (d.line as u64) << 32 | u64::from(d.prefix)));
    }
    mix(u64::MAX - 1);
    for u in &state.torn {
        mix(u.addr);
        mix(u.value);
    }
    h
}
