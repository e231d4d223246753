//! A crash state split into independent cells, the reads a recovery makes of them, and the
//! values the cells nobody read may leave in each word.
//!
//! A crash state's choices are a product: every pending cache line (with the non-temporal units
//! in it) persists some valid combination on its own, and under eADR the store at the crash
//! point persists some prefix. Each factor is a *cell*. Lazy enumeration fixes a cell's choice
//! only when a recovery reads it ([`TrackedView`]); the cells no recovery read stay *free*, and a
//! word in a free cell may hold its durable base value or any value a pending unit stores there
//! ([`LineWords::others`]). See "Lazy enumeration" in `docs/performance.md`.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::media::{Backing, PAGE_BYTES, PageSource};
use super::persist::{
    Choice, CrashState, LineUnits, PendingLine, View, decode_line_group, line_group_at, line_group_count,
    pow2,
};
use super::{LINE_BYTES, PmemError, Unit};

/// What a lazy enumeration has fixed about one cell.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Slot {
    /// Not read by recovery: every choice of the cell stays open; views hold choice 0 (nothing
    /// of the cell persisted).
    Free,
    /// Choice `r` of the cell, `r < count`.
    Fixed(u128),
    /// The torn cell only: one of the cuts `1..=n` (the store had begun); views hold cut 1.
    Begun,
}

#[derive(Clone, Debug)]
enum CellKind {
    /// One cache line: its pending write-back units (`line`, an index into
    /// [`CrashState::lines`]) and its NT units, if any (most lines have none).
    Line { line: Option<usize>, nt: Option<Box<LineNt>> },
    /// eADR: the store at the crash point, cut after any prefix of [`CrashState::torn`].
    Torn,
}

/// The NT units of a line cell: those waiting on its write-back units (`deps`, `(prefix, nt
/// index)` ascending), and those that wait on nothing (`free_nt`).
#[derive(Clone, Debug)]
struct LineNt {
    deps: Vec<(u32, usize)>,
    free_nt: Vec<usize>,
}

/// `(deps, free_nt)` of a line cell's NT units (both empty without any).
fn nt_parts(nt: &Option<Box<LineNt>>) -> (&[(u32, usize)], &[usize]) {
    nt.as_deref().map_or((&[], &[]), |n| (&n.deps[..], &n.free_nt[..]))
}

#[derive(Clone, Debug)]
struct Cell {
    kind: CellKind,
    /// Choices of the cell (saturating).
    count: u128,
}

/// A pending unit as a range query hands it out: the unit, its cell, and (for the torn cell's
/// units) its position in [`CrashState::torn`].
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
struct CellUnit {
    addr: u64,
    value: u64,
    seq: usize,
    cell: u32,
    /// Position in [`CrashState::torn`] for the torn cell's units; 0 for the others.
    torn_index: u32,
}

/// Where a line cell's units are: its pending line's own units, shared with the crash state
/// (most lines: one store's or a zeroing's units, in address order already, and no NT unit),
/// or a range of [`Cells`]'s `units`, sorted there.
#[derive(Copy, Clone, Debug)]
enum LineSrc {
    /// The units of [`CrashState::lines`]`[i]`, as they are.
    Shared(u32),
    /// `units[start..end]`.
    Own(u32, u32),
}

/// The cells of one crash state, borrowing its pending lines' units.
#[derive(Clone, Debug)]
pub struct Cells<'s> {
    cells: Vec<Cell>,
    /// The torn cell's index, if the state has one.
    torn: Option<u32>,
    /// Address ranges (start, end, cell) the cells own, ascending by start; none is longer than
    /// a line.
    ranges: Arc<[(u64, u64, u32)]>,
    /// Per line cell (cells `0..line_cells.len()`, ascending by line address): its line's
    /// address and where its units are. Each cell's units are ascending by (address, program
    /// order); with `torn_units`, they are every pending unit.
    line_cells: Vec<(u64, LineSrc)>,
    /// The state's pending lines, whose units the [`LineSrc::Shared`] cells hand out.
    lines: &'s [PendingLine],
    /// The units of the [`LineSrc::Own`] cells: lines with NT units, or whose program order is
    /// not address order.
    units: Vec<Unit>,
    /// The torn cell's units, ascending by address (as [`CrashState::torn`] holds them).
    torn_units: &'s [Unit],
    /// The product of every cell's choice count (the point's crash states), if it fits.
    total: Option<u128>,
    /// Its base-2 logarithm, for the products that do not fit (NaN when `total` is known).
    log2_total: f64,
}

fn log2(n: u128) -> f64 {
    (n as f64).log2()
}

/// The base-2 logarithm of the product of `counts`, with one logarithm per about a hundred
/// factors rather than one per factor: floats multiply exactly in their exponent, and the
/// mantissa's rounding (about 2^-52 per product) stays far below a bit of the result.
fn log2_product(counts: impl Iterator<Item = u128>) -> f64 {
    let (mut sum, mut product) = (0.0, 1.0f64);
    for c in counts {
        product *= c as f64;
        if product > 1e250 {
            sum += product.log2();
            product = 1.0;
        }
    }
    sum + product.log2()
}

impl<'s> Cells<'s> {
    /// The cells of `state`: one per cache line holding pending units (write-back, or
    /// non-temporal only), ascending by address, then the torn store's cell (eADR) last.
    pub fn new(state: &'s CrashState) -> Self {
        let mut groups = state.nt_groups();
        // NT units that wait on nothing, by line (then program order): lines holding only
        // those get cells of their own.
        let mut free_by_line: Vec<(u64, usize)> =
            groups.free.iter().map(|&k| (state.nt[k].addr & !(LINE_BYTES - 1), k)).collect();
        free_by_line.sort_unstable();
        let capacity = state.lines.len() + free_by_line.len() + 1;
        let mut cells = Vec::with_capacity(capacity);
        let mut ranges = Vec::with_capacity(capacity + state.torn.len());
        let mut line_cells = Vec::with_capacity(capacity);
        let mut units = Vec::new();
        // Merge the write-back lines (ascending) with the free NT lines (ascending).
        let (mut i, mut j) = (0usize, 0usize);
        loop {
            let wb = state.lines.get(i).map(|l| l.line);
            let nt = free_by_line.get(j).map(|&(a, _)| a);
            let line_addr = match (wb, nt) {
                (None, None) => break,
                (Some(a), None) | (None, Some(a)) => a,
                (Some(a), Some(b)) => a.min(b),
            };
            let line = (wb == Some(line_addr)).then(|| {
                i += 1;
                i - 1
            });
            let mut free_nt = Vec::new();
            while let Some(&(_, k)) = free_by_line.get(j).filter(|&&(a, _)| a == line_addr) {
                free_nt.push(k);
                j += 1;
            }
            let cell = cells.len() as u32;
            let deps = line.map(|i| std::mem::take(&mut groups.per_line[i])).unwrap_or_default();
            let wb = line.map_or(0, |i| state.lines[i].unit_count());
            let count = line_group_count(wb, &deps).saturating_mul(pow2(free_nt.len()));
            // Program order is address order already for most lines (one store's units, a
            // zeroing's): the flag is kept with the line, so the check is not repeated. Those
            // lines' units are handed out where they are, not copied.
            let shared =
                deps.is_empty() && free_nt.is_empty() && line.is_some_and(|i| state.lines[i].by_address());
            let src = match line {
                Some(i) if shared => LineSrc::Shared(u32::try_from(i).expect("pending lines fit in 32 bits")),
                _ => {
                    let first_unit = units.len();
                    if let Some(i) = line {
                        units.extend_from_slice(&state.lines[i].units);
                    }
                    units.extend(deps.iter().map(|&(_, k)| state.nt[k]));
                    units.extend(free_nt.iter().map(|&k| state.nt[k]));
                    units[first_unit..].sort_by_key(|u| (u.addr, u.seq));
                    let at = |n: usize| u32::try_from(n).expect("pending units fit in 32 bits");
                    LineSrc::Own(at(first_unit), at(units.len()))
                }
            };
            line_cells.push((line_addr, src));
            ranges.push((line_addr, line_addr + LINE_BYTES, cell));
            let nt = (!deps.is_empty() || !free_nt.is_empty()).then(|| Box::new(LineNt { deps, free_nt }));
            cells.push(Cell { kind: CellKind::Line { line, nt }, count });
        }
        let torn = (!state.torn.is_empty()).then(|| {
            let cell = cells.len() as u32;
            for u in &state.torn {
                ranges.push((u.addr, u.addr + 8, cell));
            }
            cells.push(Cell { kind: CellKind::Torn, count: state.torn.len() as u128 + 1 });
            cell
        });
        if torn.is_some() {
            ranges.sort_unstable();
        }
        debug_assert!(ranges.is_sorted() && state.torn.is_sorted_by_key(|u| u.addr));
        let total =
            cells.iter().try_fold(1u128, |n, c| n.checked_mul(c.count).filter(|_| c.count < u128::MAX));
        // Only products that do not fit need the logarithm.
        let log2_total = match total {
            Some(_) => f64::NAN,
            None => log2_product(cells.iter().map(|c| c.count)),
        };
        if cfg!(debug_assertions) && total.is_none() {
            let plain: f64 = cells.iter().map(|c| log2(c.count)).sum();
            assert!(
                (log2_total - plain).abs() <= 1e-9 * plain,
                "log2 of the product {log2_total} vs {plain}"
            );
        }
        Self {
            cells,
            torn,
            ranges: ranges.into(),
            line_cells,
            lines: &state.lines,
            units,
            torn_units: &state.torn,
            total,
            log2_total,
        }
    }

    /// Calls `f` with every pending unit with an address in `range`, ascending by (address,
    /// program order): the units of the line cells overlapping it, merged with the torn cell's.
    /// Stops early when `f` returns false.
    fn each_unit_in(&self, range: Range<u64>, mut f: impl FnMut(CellUnit) -> bool) {
        let first = self.line_cells.partition_point(|(line, _)| line + LINE_BYTES <= range.start);
        let torn_from = self.torn_units.partition_point(|u| u.addr < range.start);
        let torn_to = torn_from + self.torn_units[torn_from..].partition_point(|u| u.addr < range.end);
        let mut torn = (torn_from..torn_to).map(|j| {
            let u = &self.torn_units[j];
            let cell = self.torn.expect("torn units belong to the torn cell");
            CellUnit { addr: u.addr, value: u.value, seq: u.seq, cell, torn_index: j as u32 }
        });
        let mut next_torn = torn.next();
        for (c, &(line, src)) in self.line_cells.iter().enumerate().skip(first) {
            if line >= range.end {
                break;
            }
            let units = self.line_units(src);
            if crate::self_check_due!() {
                assert!(units.is_sorted_by_key(|u| (u.addr, u.seq)), "a line cell's units in address order");
            }
            let cell = c as u32;
            let from = if line >= range.start { 0 } else { units.partition_point(|u| u.addr < range.start) };
            for u in &units[from..] {
                if u.addr >= range.end {
                    break;
                }
                // Torn units (eADR only, a handful) go in before the line units they precede.
                while let Some(t) = next_torn.filter(|t| (t.addr, t.seq) < (u.addr, u.seq)) {
                    if !f(t) {
                        return;
                    }
                    next_torn = torn.next();
                }
                if !f(CellUnit { addr: u.addr, value: u.value, seq: u.seq, cell, torn_index: 0 }) {
                    return;
                }
            }
        }
        while let Some(t) = next_torn {
            if !f(t) {
                return;
            }
            next_torn = torn.next();
        }
    }

    /// [`Self::each_unit_in`], collected.
    #[cfg(test)]
    fn units_in(&self, range: Range<u64>) -> Vec<CellUnit> {
        let mut out = Vec::new();
        self.each_unit_in(range, |u| {
            out.push(u);
            true
        });
        out
    }

    /// The units of a line cell, ascending by (address, program order).
    fn line_units(&self, src: LineSrc) -> &[Unit] {
        match src {
            LineSrc::Shared(i) => &self.lines[i as usize].units,
            LineSrc::Own(start, end) => &self.units[start as usize..end as usize],
        }
    }

    /// The line cells overlapping `range` (consecutive cell indexes), if every pending unit
    /// there is a write-back unit of one of them (no non-temporal unit, no torn store); `None`
    /// otherwise.
    fn write_back_cells_in(&self, range: Range<u64>) -> Option<Range<usize>> {
        let torn_from = self.torn_units.partition_point(|u| u.addr < range.start);
        if self.torn_units.get(torn_from).is_some_and(|u| u.addr < range.end) {
            return None;
        }
        let first = self.line_cells.partition_point(|(line, _)| line + LINE_BYTES <= range.start);
        let end = first + self.line_cells[first..].partition_point(|&(line, _)| line < range.end);
        let plain = |c: &Cell| matches!(&c.kind, CellKind::Line { line: Some(_), nt: None });
        self.cells[first..end].iter().all(plain).then_some(first..end)
    }

    /// The pending line (index into [`CrashState::lines`]) of a line cell that has one.
    fn line_of(&self, cell: usize) -> Option<usize> {
        match self.cells[cell].kind {
            CellKind::Line { line, .. } => line,
            CellKind::Torn => None,
        }
    }

    /// Number of cells; cell indexes are `0..len`.
    pub fn len(&self) -> usize {
        self.cells.len()
    }

    /// True when the state has nothing pending: one crash state, the durable base.
    pub fn is_empty(&self) -> bool {
        self.cells.is_empty()
    }

    /// The first address cell `cell` owns.
    pub fn addr_of(&self, cell: u32) -> u64 {
        self.ranges.iter().find(|r| r.2 == cell).map_or(0, |r| r.0)
    }

    /// Choices of cell `cell`.
    pub fn count(&self, cell: u32) -> u128 {
        self.cells[cell as usize].count
    }

    /// Where every enumeration starts, as the cells that are not free: none, except that the
    /// torn cell (eADR) is split at once into "not begun" (cut 0) and "begun" (cuts 1..=n),
    /// because the oracle judges a begun store's operation differently.
    pub fn roots(&self) -> Vec<Vec<(u32, Slot)>> {
        match self.torn {
            None => vec![Vec::new()],
            Some(t) => vec![vec![(t, Slot::Fixed(0))], vec![(t, Slot::Begun)]],
        }
    }

    /// The slot a view uses for `slot` of cell `cell` ([`Slot::Free`] is choice 0, Begun cut 1).
    fn in_view(slot: Slot) -> u128 {
        match slot {
            Slot::Free => 0,
            Slot::Fixed(r) => r,
            Slot::Begun => 1,
        }
    }

    /// The concrete choice a view of `slots` uses.
    pub fn choice(&self, state: &CrashState, slots: &[Slot]) -> Choice {
        let mut c = state.choice_none();
        for (cell, &slot) in self.cells.iter().zip(slots) {
            // Choice 0 of a cell is "nothing persisted", as `choice_none` has it already.
            if slot != Slot::Free {
                self.decode(state, &mut c, cell, Self::in_view(slot));
            }
        }
        c
    }

    fn decode(&self, state: &CrashState, c: &mut Choice, cell: &Cell, r: u128) {
        match &cell.kind {
            CellKind::Line { line, nt } => {
                let (deps, free_nt) = nt_parts(nt);
                let wb = line.map_or(0, |i| state.lines[i].unit_count());
                let group = line_group_count(wb, deps);
                if let Some(i) = *line {
                    decode_line_group(c, i, deps, r % group);
                }
                let bits = r / group;
                for (j, &k) in free_nt.iter().enumerate() {
                    c.nt_mask[k] = (bits >> j) & 1 == 1;
                }
            }
            CellKind::Torn => c.torn = r as u32,
        }
    }

    /// Whether the store at the crash point had begun in every state `slots` stands for.
    pub fn begun(&self, slots: &[Slot]) -> bool {
        self.torn.is_some_and(|t| matches!(slots[t as usize], Slot::Begun | Slot::Fixed(1..)))
    }

    /// How many crash states an assignment stands for (saturating): `assigned` lists the cells
    /// that are not free, each once; every other cell is free.
    pub fn covered(&self, assigned: &[(u32, Slot)]) -> u128 {
        if let Some(total) = self.total {
            // Exact: every division removes a factor of the product.
            return assigned.iter().fold(total, |n, &(c, slot)| {
                let count = self.count(c);
                match slot {
                    Slot::Free => n,
                    Slot::Fixed(_) => n / count,
                    Slot::Begun => n / count * (count - 1),
                }
            });
        }
        let log2_free = assigned.iter().fold(self.log2_total, |l, &(c, slot)| {
            let count = self.count(c);
            match slot {
                Slot::Free => l,
                Slot::Fixed(_) => l - log2(count),
                Slot::Begun => l - log2(count) + log2(count - 1),
            }
        });
        // Far above 128 bits (a float's error here is far below one bit): saturated.
        if log2_free > 132.0 {
            return u128::MAX;
        }
        let mut sorted = assigned.to_vec();
        sorted.sort_unstable_by_key(|a| a.0);
        (self.cells.iter().enumerate()).fold(1u128, |n, (c, cell)| {
            let slot = sorted.binary_search_by_key(&(c as u32), |a| a.0).map_or(Slot::Free, |i| sorted[i].1);
            match slot {
                Slot::Free => n.saturating_mul(cell.count),
                Slot::Fixed(_) => n,
                Slot::Begun => n.saturating_mul(cell.count - 1),
            }
        })
    }

    /// [`Self::covered`] of a dense assignment (one slot per cell): the plain product.
    pub fn covered_dense(&self, slots: &[Slot]) -> u128 {
        (self.cells.iter().zip(slots)).fold(1u128, |n, (cell, slot)| match slot {
            Slot::Free => n.saturating_mul(cell.count),
            Slot::Fixed(_) => n,
            Slot::Begun => n.saturating_mul(cell.count - 1),
        })
    }

    /// The slots that refine `slot` of cell `cell` once a recovery read it, other than the one
    /// its view already used (which the run that read it stands for).
    pub fn refinements(&self, cell: u32, slot: Slot) -> impl Iterator<Item = Slot> + use<> {
        let count = self.count(cell);
        let range = match slot {
            Slot::Free => 1..count,
            Slot::Begun => 2..count,
            Slot::Fixed(_) => 0..0,
        };
        range.map(Slot::Fixed)
    }

    /// The slot `slot` becomes when its view's value is fixed.
    pub fn settled(slot: Slot) -> Slot {
        Slot::Fixed(Self::in_view(slot))
    }

    /// A read-tracking view of an assignment: `assigned` lists the cells that are not free
    /// (each once), and `slots` is the same assignment with one slot per cell. Only the listed
    /// cells contribute units, so this costs O(their units), not O(cells).
    pub fn tracked_view(
        &self,
        state: &CrashState,
        assigned: &[(u32, Slot)],
        slots: &[Slot],
    ) -> Result<TrackedView, PmemError> {
        let mut persisted = Vec::new();
        for &(c, slot) in assigned {
            if slot != Slot::Free {
                self.cell_units(state, &self.cells[c as usize], Self::in_view(slot), &mut persisted);
            }
        }
        let view = View::from_persisted(state, persisted);
        if crate::self_check_due!() {
            let plain = View::new(state, &self.choice(state, slots))?;
            assert!(view.same_as(&plain), "the sparse view of {assigned:?} differs from the dense one");
        }
        Ok(TrackedView {
            view,
            ranges: Arc::clone(&self.ranges),
            log: ReadLog {
                seen: (0..self.cells.len().div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
                order: Mutex::new(Vec::new()),
                on: AtomicBool::new(true),
            },
        })
    }

    /// Appends the units choice `r` of `cell` persists.
    fn cell_units(&self, state: &CrashState, cell: &Cell, r: u128, out: &mut Vec<Unit>) {
        match &cell.kind {
            CellKind::Line { line, nt } => {
                let (deps, free_nt) = nt_parts(nt);
                let wb = line.map_or(0, |i| state.lines[i].unit_count());
                let group = line_group_count(wb, deps);
                if let Some(i) = *line {
                    let (prefix, free, bits) = line_group_at(deps, r % group);
                    out.extend_from_slice(&state.lines[i].units[..prefix as usize]);
                    for (j, &(_, k)) in deps[..free].iter().enumerate() {
                        if (bits >> j) & 1 == 1 {
                            out.push(state.nt[k]);
                        }
                    }
                }
                let bits = r / group;
                for (j, &k) in free_nt.iter().enumerate() {
                    if (bits >> j) & 1 == 1 {
                        out.push(state.nt[k]);
                    }
                }
            }
            CellKind::Torn => out.extend_from_slice(&state.torn[..r as usize]),
        }
    }

    /// The values other than the view's that the free cells of `slots` may leave in the words
    /// of `range`: `(address, value)` ascending by address, then program order.
    pub fn others(&self, slots: &[Slot], range: Range<u64>) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        self.each_unit_in(range, |u| {
            let free = match slots[u.cell as usize] {
                Slot::Free => true,
                // Cut 1 is in the view: its first unit always persisted.
                Slot::Begun => u.torn_index >= 1,
                Slot::Fixed(_) => false,
            };
            if free {
                out.push((u.addr, u.value));
            }
            true
        });
        out
    }

    /// A digest of every (address, value) the free cells of `slots` may leave: with the view's
    /// hash it names what a line-local verdict sees.
    pub fn others_hash(&self, slots: &[Slot]) -> u128 {
        let mut h = 0x6a09_e667_f3bc_c908_b2fb_1366_ea95_6e4eu128;
        for (a, v) in self.others(slots, 0..u64::MAX) {
            h = (h ^ u128::from(a)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
            h = (h ^ u128::from(v)).wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
        }
        h
    }

    /// The cell owning the word at `addr`, if it is pending.
    pub fn cell_of(&self, addr: u64) -> Option<u32> {
        let mut found = None;
        visit_ranges(&self.ranges, addr, addr + 8, |c| found = found.or(Some(c)));
        found
    }

    /// Slots that leave `value` in the word at `addr`, from `slots` with only that word's cell
    /// changed; `None` if no choice of the cell does.
    pub fn witness(&self, state: &CrashState, slots: &[Slot], addr: u64, value: u64) -> Option<Vec<Slot>> {
        let cell = self.cell_of(addr)?;
        let count = self.count(cell);
        // A cell read by no recovery holds few choices per word: search them in order.
        let range = match slots[cell as usize] {
            Slot::Free => 0..count,
            Slot::Begun => 1..count,
            Slot::Fixed(_) => return None,
        };
        for r in range.take(1 << 16) {
            let mut c = self.choice(state, slots);
            self.decode(state, &mut c, &self.cells[cell as usize], r);
            let view = View::of_valid(state, &c);
            if super::persist::read_word(&view, addr) == value {
                let mut out = slots.to_vec();
                out[cell as usize] = Slot::Fixed(r);
                return Some(out);
            }
        }
        None
    }
}

/// Calls `f` with every cell whose range overlaps `lo..hi`.
fn visit_ranges(ranges: &[(u64, u64, u32)], lo: u64, hi: u64, mut f: impl FnMut(u32)) {
    // Ranges are at most a line long, so those overlapping start after `lo - LINE_BYTES`.
    let from = ranges.partition_point(|r| r.0 + LINE_BYTES <= lo);
    for &(start, end, cell) in &ranges[from..] {
        if start >= hi {
            break;
        }
        if end > lo {
            f(cell);
        }
    }
}

/// Adds cell `c` to runs of cell indexes: extends the last run when `c` follows it.
fn push_run(runs: &mut Vec<(u32, u32)>, c: u32) {
    match runs.last_mut() {
        Some(last) if (last.0..last.1).contains(&c) => {}
        Some(last) if last.1 == c => last.1 += 1,
        _ => runs.push((c, c + 1)),
    }
}

/// One bit per cell of `slots` whose slot is not [`Slot::Free`].
pub fn pinned_bits(slots: &[Slot]) -> Vec<u64> {
    let mut bits = vec![0u64; slots.len().div_ceil(64)];
    for (c, s) in slots.iter().enumerate() {
        if *s != Slot::Free {
            bits[c / 64] |= 1 << (c % 64);
        }
    }
    bits
}

/// Whether any bit of `lo..hi` is set in the bitmap whose word `i` is `word(i)`.
fn any_bit(lo: u32, hi: u32, word: impl Fn(usize) -> u64) -> bool {
    let (lo, hi) = (lo as usize, hi as usize);
    let mut i = lo;
    while i < hi {
        let w = i / 64;
        let end = ((w + 1) * 64).min(hi);
        let mask = (u64::MAX >> (64 - (end - i))) << (i % 64);
        if word(w) & mask != 0 {
            return true;
        }
        i = end;
    }
    false
}

/// Which cells a run read. Recovery reads from one thread; the atomics only make the view
/// `Sync` without a lock on every read.
struct ReadLog {
    /// One bit per cell.
    seen: Box<[AtomicU64]>,
    /// Cells in the order of their first read.
    order: Mutex<Vec<u32>>,
    /// Reads are logged only while on.
    on: AtomicBool,
}

impl ReadLog {
    fn seen(&self, cell: u32) -> bool {
        self.seen[cell as usize / 64].load(Ordering::Relaxed) & (1 << (cell % 64)) != 0
    }

    /// Marks `cell` read; whether it was read before.
    fn mark(&self, cell: u32) -> bool {
        let bit = 1 << (cell % 64);
        self.seen[cell as usize / 64].fetch_or(bit, Ordering::Relaxed) & bit != 0
    }
}

/// A crash-state view that logs which cells are read, in the order of their first read.
pub struct TrackedView {
    view: View,
    ranges: Arc<[(u64, u64, u32)]>,
    log: ReadLog,
}

impl TrackedView {
    /// Cells read so far, in the order of their first read.
    pub fn reads(&self) -> Vec<u32> {
        self.log.order.lock().expect("read log").clone()
    }

    /// Whether cell `cell` has been read so far.
    pub fn was_read(&self, cell: u32) -> bool {
        self.log.seen(cell)
    }

    /// Whether every cell of `lo..hi` is free so far: not pinned (`pinned`, one bit per cell
    /// whose slot is not free) and not read by this run.
    pub fn all_free_in(&self, pinned: &[u64], lo: u32, hi: u32) -> bool {
        let free = !any_bit(lo, hi, |w| pinned[w] | self.log.seen[w].load(Ordering::Relaxed));
        if crate::self_check_due!() {
            assert_eq!(
                free,
                (lo..hi).all(|c| pinned[c as usize / 64] & (1 << (c % 64)) == 0 && !self.was_read(c)),
                "word-wide test of cells {lo}..{hi}"
            );
        }
        free
    }

    /// The cells of `lo..hi` that are not free so far (pinned or read by this run), ascending.
    pub fn not_free_in(&self, pinned: &[u64], lo: u32, hi: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let words = lo as usize / 64..(hi as usize).div_ceil(64);
        for (w, (p, seen)) in words.clone().zip(pinned[words.clone()].iter().zip(&self.log.seen[words])) {
            let mut bits = p | seen.load(Ordering::Relaxed);
            while bits != 0 {
                let c = (w * 64) as u32 + bits.trailing_zeros();
                bits &= bits - 1;
                if (lo..hi).contains(&c) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// How many cells have been read so far.
    pub fn reads_len(&self) -> usize {
        self.log.order.lock().expect("read log").len()
    }

    /// Stops logging: reads that come later (a line-local oracle's) fix nothing.
    pub fn stop_tracking(&self) {
        self.log.on.store(false, Ordering::Relaxed);
    }

    /// The plain view underneath, whose reads are not logged.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The plain view underneath as a backing of its own (reads through it are not logged),
    /// sharing this view: nothing is copied.
    pub fn untracked(self: &Arc<Self>) -> Arc<dyn Backing> {
        Arc::new(Untracked(Arc::clone(self)))
    }

    fn log_range(&self, addr: u64, len: u64) {
        if !self.log.on.load(Ordering::Relaxed) {
            return;
        }
        visit_ranges(&self.ranges, addr, addr + len, |c| {
            if !self.log.mark(c) {
                self.log.order.lock().expect("read log").push(c);
            }
        });
    }
}

impl Backing for TrackedView {
    fn size_bytes(&self) -> u64 {
        self.view.size_bytes()
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        self.log_range(addr, buf.len() as u64);
        self.view.read_at(addr, buf);
    }
    fn read_blind(&self, addr: u64, buf: &mut [u8]) {
        self.view.read_at(addr, buf);
    }
    fn note_read(&self, addr: u64, len: u64) {
        self.log_range(addr, len);
    }
}

/// [`TrackedView::untracked`].
struct Untracked(Arc<TrackedView>);

impl Backing for Untracked {
    fn size_bytes(&self) -> u64 {
        self.0.view.size_bytes()
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        self.0.view.read_at(addr, buf);
    }
}

impl std::fmt::Debug for TrackedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackedView").field("view", &self.view).finish()
    }
}

/// What a page holds in every leaf of a crash point where its cells are free: the durable
/// page, by who holds its bytes ([`PageSource`]), and each pending line's write-back units, by
/// the shared list that holds them. A line's list is copied before any change while it is
/// shared, and an identity keeps its lists and its page holder alive, so equal identities (by
/// address) hold equal bytes and units. Unequal identities say nothing.
#[derive(Clone)]
pub struct PageIdentity {
    source: PageSource,
    lines: Box<[Arc<LineUnits>]>,
}

impl PartialEq for PageIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
            && self.lines.len() == other.lines.len()
            && self.lines.iter().zip(&other.lines[..]).all(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Eq for PageIdentity {}

impl PageIdentity {
    /// A digest of the identity (addresses of its holders): equal identities, equal digests;
    /// for lookups only (addresses differ from run to run).
    pub fn digest(&self) -> u64 {
        identity_digest(self.source.ptr(), &mut self.lines.iter())
    }
}

fn identity_digest(holder: (u8, usize), lines: &mut dyn Iterator<Item = &Arc<LineUnits>>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |w: u64| h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17);
    mix(u64::from(holder.0));
    mix(holder.1 as u64);
    for l in lines {
        mix(Arc::as_ptr(l) as usize as u64);
    }
    h
}

impl std::fmt::Debug for PageIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PageIdentity")
            .field("source", &self.source)
            .field("lines", &self.lines.len())
            .finish()
    }
}

/// What a line-local oracle reads data words through: the image of one recovered metadata
/// state (free cells at "nothing persisted") and, per word, the other values the free cells may
/// leave there. Reads through it are not tracked: the target promises that its verdict on each
/// word depends only on that word's value and on the recovered metadata.
pub struct LineWords<'a> {
    image: &'a dyn Backing,
    cells: Option<(&'a Cells<'a>, &'a [Slot])>,
    /// The run's read log: a cell read by this run is fixed, not free.
    tracked: Option<&'a TrackedView>,
    /// One bit per cell whose slot is not [`Slot::Free`] (the bits of `slots`, for word-wide
    /// tests of whole runs of cells).
    pinned: Option<&'a [u64]>,
    /// The crash state the cells split, for [`Self::page_identity`].
    state: Option<&'a CrashState>,
    judged: std::cell::Cell<u64>,
    /// Cells whose other values were handed out.
    handed: std::cell::RefCell<Vec<u32>>,
    /// Cells any of whose words were read or listed, as runs `lo..hi` of cell indexes: what the
    /// verdict depended on.
    touched: std::cell::RefCell<Vec<(u32, u32)>>,
}

impl std::fmt::Debug for LineWords<'_> {
    /// What kind of reader it is and what it handed out so far; not the image.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineWords")
            .field("concrete", &self.cells.is_none())
            .field("tracked", &self.tracked.is_some())
            .field("others_judged", &self.judged.get())
            .field("touched", &self.touched())
            .finish_non_exhaustive()
    }
}

impl<'a> LineWords<'a> {
    /// The free cells of `slots` over `image` (a view of `slots`).
    pub fn new(image: &'a dyn Backing, cells: &'a Cells, slots: &'a [Slot]) -> Self {
        Self {
            image,
            cells: Some((cells, slots)),
            tracked: None,
            pinned: None,
            state: None,
            judged: 0.into(),
            handed: Default::default(),
            touched: Default::default(),
        }
    }

    /// The free cells of `slots` during a tracked run: cells the run has read are not free.
    /// `pinned` has one bit per cell whose slot is not free ([`pinned_bits`]).
    pub(crate) fn tracked(
        view: &'a TrackedView,
        state: &'a CrashState,
        cells: &'a Cells,
        (slots, pinned): (&'a [Slot], &'a [u64]),
    ) -> Self {
        debug_assert_eq!(pinned, &pinned_bits(slots)[..], "pinned bits of the slots");
        debug_assert!(view.view.over_base_of(state), "a view of the state's own base");
        Self {
            tracked: Some(view),
            pinned: Some(pinned),
            state: Some(state),
            ..Self::new(&view.view, cells, slots)
        }
    }

    /// What the page `range` (one whole page) holds in every leaf where its cells are free
    /// ([`Self::all_free`]): [`Self::read`]'s bytes (the durable page) and [`Self::units_in`]'s
    /// units (its lines' pending write-back units), named by who holds them. Equal identities,
    /// at this or another crash point of the same walk, mean equal bytes and equal units.
    /// `None` if a non-temporal or torn unit is pending on the page, or without a crash state.
    pub fn page_identity(&self, range: Range<u64>) -> Option<PageIdentity> {
        let state = self.state?;
        self.identity_parts(range.clone(), |_, lines| PageIdentity {
            source: state.base.page_source(range.start / PAGE_BYTES),
            lines: lines.cloned().collect(),
        })
    }

    /// [`PageIdentity::digest`] of [`Self::page_identity`], without building the identity.
    pub fn page_identity_digest(&self, range: Range<u64>) -> Option<u64> {
        self.identity_parts(range, |holder, lines| identity_digest(holder, lines))
    }

    /// Whether `id` is [`Self::page_identity`] of `range`, without building the identity.
    pub fn is_page_identity(&self, range: Range<u64>, id: &PageIdentity) -> bool {
        let same = self.identity_parts(range, |holder, lines| {
            holder == id.source.ptr() && lines.map(Arc::as_ptr).eq(id.lines.iter().map(Arc::as_ptr))
        });
        same == Some(true)
    }

    /// Calls `f` with the parts of the identity of the page `range`, borrowed: its durable
    /// holder ([`PageSource::ptr`]) and its lines' unit lists, ascending by address.
    fn identity_parts<R>(
        &self,
        range: Range<u64>,
        f: impl FnOnce((u8, usize), &mut dyn Iterator<Item = &Arc<LineUnits>>) -> R,
    ) -> Option<R> {
        let (state, (cells, _)) = (self.state?, self.cells?);
        if range.start % PAGE_BYTES != 0 || range.end != range.start + PAGE_BYTES {
            return None;
        }
        let lines = cells.write_back_cells_in(range.clone())?;
        let mut units = lines.map(|c| &state.lines[cells.line_of(c).expect("a write-back line cell")].units);
        Some(f(state.base.page_holder(range.start / PAGE_BYTES), &mut units))
    }

    /// A single concrete image: no other values anywhere (the plain path).
    pub fn concrete(image: &'a dyn Backing) -> Self {
        Self {
            image,
            cells: None,
            tracked: None,
            pinned: None,
            state: None,
            judged: 0.into(),
            handed: Default::default(),
            touched: Default::default(),
        }
    }

    /// The bytes at `addr..addr + buf.len()` of the image (free cells: nothing persisted).
    pub fn read(&self, addr: u64, buf: &mut [u8]) {
        self.touch(addr..addr + buf.len() as u64);
        self.image.read_at(addr, buf);
    }

    /// Whether any pending unit (of a free cell or not) lies in `range`: if none, the words of
    /// `range` hold the durable base in every crash state of the point.
    pub fn pending_in(&self, range: Range<u64>) -> bool {
        let Some((cells, _)) = self.cells else { return false };
        let mut any = false;
        cells.each_unit_in(range, |_| {
            any = true;
            false
        });
        any
    }

    /// Whether every cell owning a line (or a torn word) that overlaps `range` is free and
    /// unread (so the words of `range`, and their other values, are the same in every leaf of
    /// the point where that holds). False for a single concrete image.
    pub fn all_free(&self, range: Range<u64>) -> bool {
        let Some((cells, slots)) = self.cells else { return false };
        let mut free = true;
        visit_ranges(&cells.ranges, range.start, range.end, |c| free &= self.free_now(slots, c));
        free
    }

    /// Whether cell `c` is free in this run so far: its slot is free and the run did not read it.
    fn free_now(&self, slots: &[Slot], c: u32) -> bool {
        let pinned = match self.pinned {
            Some(bits) => bits[c as usize / 64] & (1 << (c % 64)) != 0,
            None => slots[c as usize] != Slot::Free,
        };
        !pinned && !self.tracked.is_some_and(|t| t.log.seen(c))
    }

    /// The pending units (address, value) in `range`, in the cells' order: with
    /// [`Self::read`]'s bytes, everything the words of `range` can hold when their cells are
    /// free.
    pub fn units_in(&self, range: Range<u64>) -> Vec<(u64, u64)> {
        let Some((cells, _)) = self.cells else { return Vec::new() };
        let mut out = Vec::new();
        cells.each_unit_in(range, |u| {
            out.push((u.addr, u.value));
            true
        });
        out
    }

    /// Counts the cells of `range` as read by the verdict, as [`Self::read`] would, for a
    /// verdict on `range` taken from a cache instead.
    pub fn touch(&self, range: Range<u64>) {
        let Some((cells, _)) = self.cells else { return };
        let mut touched = self.touched.borrow_mut();
        visit_ranges(&cells.ranges, range.start, range.end, |c| push_run(&mut touched, c));
    }

    /// The cells whose words were read or listed, as ascending, disjoint, non-adjacent runs
    /// `lo..hi` of cell indexes: the verdict depends on their slots (and on nothing else of the
    /// crash state but the recovered metadata).
    pub fn touched(&self) -> Vec<(u32, u32)> {
        let mut runs = self.touched.borrow().clone();
        runs.sort_unstable();
        let mut out: Vec<(u32, u32)> = Vec::with_capacity(runs.len());
        for (lo, hi) in runs {
            match out.last_mut() {
                Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                _ => out.push((lo, hi)),
            }
        }
        if crate::self_check_due!() {
            let mut plain: Vec<u32> = self.touched.borrow().iter().flat_map(|&(lo, hi)| lo..hi).collect();
            plain.sort_unstable();
            plain.dedup();
            let runs: Vec<u32> = out.iter().flat_map(|&(lo, hi)| lo..hi).collect();
            assert_eq!(runs, plain, "the merged runs of touched cells");
        }
        out
    }

    /// The other values free cells may leave in the words of `range` (8-aligned), as
    /// `(address, value)` ascending by address. Together with [`Self::read`]'s value, these
    /// are exactly the values the word holds in some crash state of this metadata state.
    pub fn others(&self, range: Range<u64>) -> Vec<(u64, u64)> {
        let Some((cells, slots)) = self.cells else { return Vec::new() };
        let read = self.tracked.map(|t| &t.log);
        let mut out = Vec::new();
        let mut handed = self.handed.borrow_mut();
        let mut touched = self.touched.borrow_mut();
        cells.each_unit_in(range, |u| {
            push_run(&mut touched, u.cell);
            if read.is_some_and(|r| r.seen(u.cell)) {
                return true;
            }
            let free = match slots[u.cell as usize] {
                Slot::Free => true,
                // Cut 1 is in the view: its first unit always persisted.
                Slot::Begun => u.torn_index >= 1,
                Slot::Fixed(_) => false,
            };
            if free {
                out.push((u.addr, u.value));
                if handed.last() != Some(&u.cell) {
                    handed.push(u.cell);
                }
            }
            true
        });
        self.judged.set(self.judged.get() + out.len() as u64);
        out
    }

    /// How many other values were handed out: the word verdicts beyond the image's.
    pub fn others_judged(&self) -> u64 {
        self.judged.get()
    }

    /// Panics if a cell whose other values were handed out was read through the tracked device
    /// afterwards: its values were judged as free although the run depends on them.
    pub(crate) fn assert_contract(&self) {
        let Some(t) = self.tracked else { return };
        if let Some(&c) = self.handed.borrow().iter().find(|&&c| t.log.seen(c)) {
            panic!(
                "cell {c} was judged line-locally and then read through the device: a line-local \
                 oracle must do its tracked reads before it asks for other values"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::RngExt;

    use super::*;
    use crate::pmem::{CrashPoint, Device, PersistenceModel, PmemAddr, Tracker};
    use crate::rng::rng_from_seed;

    /// A crash state with `lines` pending lines spread over a few pages.
    fn pending_state(seed: u64, lines: u64) -> CrashState {
        let mut rng = rng_from_seed(seed);
        let mut d = Device::new(64 * PAGE_BYTES);
        for _ in 0..lines {
            let line = rng.random_range(0..64 * PAGE_BYTES / LINE_BYTES);
            let words = rng.random_range(1..=8u64);
            d.store(PmemAddr(line * LINE_BYTES), &vec![rng.random::<u8>(); (words * 8) as usize], "test")
                .unwrap();
        }
        let end = CrashPoint(d.trace().len());
        let (initial, _, trace) = d.into_parts();
        let mut tracker = Tracker::new(&trace, initial, PersistenceModel::Adr);
        tracker.advance_to(end);
        tracker.crash_state()
    }

    /// The word-wide tests of runs of cells (`all_free_in`, `not_free_in`, `LineWords::all_free`)
    /// and the merged runs of touched cells agree with the cell-by-cell definitions, on random
    /// pinned slots and random tracked reads.
    #[test]
    fn run_tests_of_free_cells_match_the_cell_by_cell_ones() {
        for seed in 0..40 {
            let state = pending_state(seed, 300);
            let cells = Cells::new(&state);
            let n = cells.len() as u32;
            let mut rng = rng_from_seed(1000 + seed);
            let slots: Vec<Slot> = (0..n)
                .map(|c| match rng.random_range(0..10) {
                    0 => Slot::Fixed(rng.random_range(0..cells.count(c))),
                    _ => Slot::Free,
                })
                .collect();
            let assigned: Vec<(u32, Slot)> =
                (0..n).filter(|&c| slots[c as usize] != Slot::Free).map(|c| (c, slots[c as usize])).collect();
            let pinned = pinned_bits(&slots);
            let tracked = cells.tracked_view(&state, &assigned, &slots).unwrap();
            for _ in 0..rng.random_range(0..20) {
                let mut b = [0u8; 8];
                tracked.read_at(rng.random_range(0..64 * PAGE_BYTES / 8) * 8, &mut b);
            }
            let free = |c: u32| slots[c as usize] == Slot::Free && !tracked.was_read(c);
            for _ in 0..200 {
                let lo = rng.random_range(0..=n);
                let hi = rng.random_range(lo..=n);
                assert_eq!(
                    tracked.all_free_in(&pinned, lo, hi),
                    (lo..hi).all(free),
                    "seed {seed}: {lo}..{hi}"
                );
                let plain: Vec<u32> = (lo..hi).filter(|&c| !free(c)).collect();
                assert_eq!(tracked.not_free_in(&pinned, lo, hi), plain, "seed {seed}: {lo}..{hi}");
            }
            let words = LineWords::tracked(&tracked, &state, &cells, (&slots, &pinned));
            let mut touched_plain = std::collections::BTreeSet::new();
            for _ in 0..50 {
                let start = rng.random_range(0..64 * PAGE_BYTES / 8) * 8;
                let range =
                    start..(start + rng.random_range(1..=2 * PAGE_BYTES / 8) * 8).min(64 * PAGE_BYTES);
                // A cell counts when it owns a unit in the range or a line overlapping it.
                let owners: Vec<u32> = (0..n)
                    .filter(|&c| {
                        cells.ranges.iter().any(|r| r.2 == c && r.0 < range.end && r.1 > range.start)
                    })
                    .collect();
                assert_eq!(
                    words.all_free(range.clone()),
                    owners.iter().all(|&c| free(c)),
                    "seed {seed}: {range:?}"
                );
                words.touch(range.clone());
                touched_plain.extend(owners);
            }
            let runs: Vec<u32> = words.touched().into_iter().flat_map(|(lo, hi)| lo..hi).collect();
            assert_eq!(runs, touched_plain.into_iter().collect::<Vec<_>>(), "seed {seed}");
        }
    }

    /// The plain list the cells' range queries stand for: every pending unit with its cell,
    /// in one stable sort by (address, program order).
    fn flat_units(state: &CrashState, cells: &Cells) -> Vec<CellUnit> {
        let mut flat = Vec::new();
        for (c, cell) in cells.cells.iter().enumerate() {
            let unit = |u: &Unit, torn_index| CellUnit {
                addr: u.addr,
                value: u.value,
                seq: u.seq,
                cell: c as u32,
                torn_index,
            };
            match &cell.kind {
                CellKind::Line { line, nt } => {
                    let (deps, free_nt) = nt_parts(nt);
                    flat.extend(line.iter().flat_map(|&i| state.lines[i].units.iter()).map(|u| unit(u, 0)));
                    flat.extend(deps.iter().map(|&(_, k)| unit(&state.nt[k], 0)));
                    flat.extend(free_nt.iter().map(|&k| unit(&state.nt[k], 0)));
                }
                CellKind::Torn => {
                    flat.extend(state.torn.iter().enumerate().map(|(j, u)| unit(u, j as u32)));
                }
            }
        }
        flat.sort_by_key(|u| (u.addr, u.seq));
        flat
    }

    /// The per-cell unit lists (sorted only where a line's program order is not address
    /// order) answer every range query as the one flat, sorted list of all pending units does:
    /// on random walks of write-back stores in and out of address order, NT stores that wait
    /// on a line or not, under ADR and under eADR at store granularity (torn stores).
    #[test]
    fn range_queries_match_the_flat_unit_list() {
        let mut order_seen = (0, 0);
        for seed in 0..30 {
            let mut rng = rng_from_seed(seed);
            let mut d = Device::new(4 * PAGE_BYTES);
            for _ in 0..60 {
                let addr = rng.random_range(0..4 * PAGE_BYTES / 8 - 24) * 8;
                let words = rng.random_range(1..=24u64);
                let bytes: Vec<u8> = (0..words * 8).map(|_| rng.random()).collect();
                match rng.random_range(0..10) {
                    0..=5 => d.store(PmemAddr(addr), &bytes, "test").unwrap(),
                    6 => d.store_nt(PmemAddr(addr), &bytes, "test").unwrap(),
                    7 => d.flush(PmemAddr(addr), words * 8, crate::pmem::FlushKind::Clwb, "test").unwrap(),
                    _ => d.fence("test").unwrap(),
                }
            }
            let (initial, _, trace) = d.into_parts();
            for (model, granularity) in [
                (PersistenceModel::Adr, crate::pmem::Granularity::Store),
                (PersistenceModel::Eadr, crate::pmem::Granularity::Store),
            ] {
                let mut tracker = Tracker::new(&trace, Arc::clone(&initial), model);
                for point in crate::pmem::crash_points(&trace, granularity) {
                    tracker.advance_to(point);
                    let mut state = tracker.crash_state();
                    if state.torn.is_empty() && !state.lines.is_empty() && rng.random_range(0..2) == 0 {
                        // Torn units over pending lines (no model makes both, but a state may
                        // hold both): the merge of the two lists is tested too.
                        let line = state.lines[rng.random_range(0..state.lines.len())].line;
                        state.torn = (0..rng.random_range(1..=12u64))
                            .map(|w| Unit { addr: line + w * 8, value: rng.random(), seq: point.0 })
                            .collect();
                    }
                    let cells = Cells::new(&state);
                    for line in &state.lines {
                        match line.units.by_address() {
                            true => order_seen.0 += 1,
                            false => order_seen.1 += 1,
                        }
                    }
                    let flat = flat_units(&state, &cells);
                    let mut bounds = vec![(0, u64::MAX)];
                    for _ in 0..20 {
                        let start = rng.random_range(0..4 * PAGE_BYTES / 8) * 8;
                        bounds.push((start, start + rng.random_range(1..=40u64) * 8));
                    }
                    for range in bounds.into_iter().map(|(lo, hi)| lo..hi) {
                        let plain: Vec<CellUnit> =
                            flat.iter().filter(|u| range.contains(&u.addr)).copied().collect();
                        let got = cells.units_in(range.clone());
                        assert_eq!(got, plain, "seed {seed}, {model:?}, point {}, {range:?}", point.0);
                    }
                }
            }
        }
        assert!(
            order_seen.0 > 100 && order_seen.1 > 100,
            "lines in and out of address order: {order_seen:?}"
        );
    }

    /// A line's digest follows every change made through `make_mut` (copied or in place).
    #[test]
    fn a_line_digest_is_never_stale() {
        use crate::pmem::{LineUnits, Unit};
        let unit = |addr, value, seq| Unit { addr, value, seq };
        let mut a = Arc::new(LineUnits::from(vec![unit(0, 1, 0), unit(8, 2, 1)]));
        let first = a.digest();
        let shared = Arc::clone(&a);
        Arc::make_mut(&mut a).push(unit(16, 3, 2));
        assert_ne!(a.digest(), first);
        assert_eq!(shared.digest(), first, "the shared copy did not change");
        drop(shared);
        // In place now: the one owner changes the value of a unit.
        Arc::make_mut(&mut a)[0].value = 7;
        let fresh = LineUnits::from(a.to_vec()).digest();
        assert_eq!(a.digest(), fresh);
        Arc::make_mut(&mut a).clear();
        assert_eq!(a.digest(), LineUnits::from(Vec::new()).digest());
    }

    /// Over the crash points of random walks, pages with equal identities have equal bytes
    /// (with their cells free) and equal pending units; and identities are equal often, with
    /// and without pending units (the shortcut they serve is taken), including across a write
    /// elsewhere on the device. Pages without a non-temporal unit always have an identity.
    #[test]
    fn equal_page_identities_hold_equal_bytes_and_units() {
        let (mut equal_seen, mut equal_pending) = (0, 0);
        for seed in 0..20 {
            let mut rng = rng_from_seed(seed);
            let mut d = Device::new(16 * PAGE_BYTES);
            for _ in 0..200 {
                let addr = rng.random_range(0..16 * PAGE_BYTES / 8) * 8;
                if rng.random_range(0..8) == 0 {
                    d.store_nt(PmemAddr(addr), &rng.random::<u64>().to_le_bytes(), "test").unwrap();
                } else {
                    d.store_u64(PmemAddr(addr), rng.random(), "test").unwrap();
                }
                if rng.random_range(0..3) == 0 {
                    d.flush(PmemAddr(addr), 8, crate::pmem::FlushKind::Clwb, "test").unwrap();
                }
                if rng.random_range(0..4) == 0 {
                    d.fence("test").unwrap();
                }
            }
            let (initial, _, trace) = d.into_parts();
            let mut tracker = Tracker::new(&trace, initial, PersistenceModel::Adr);
            // (identity, bytes, pending units) of every page seen so far.
            type Seen = (PageIdentity, Vec<u8>, Vec<(u64, u64)>);
            let mut seen: Vec<Seen> = Vec::new();
            for point in crate::pmem::crash_points(&trace, crate::pmem::Granularity::Fence) {
                tracker.advance_to(point);
                let state = tracker.crash_state();
                let cells = Cells::new(&state);
                let slots = vec![Slot::Free; cells.len()];
                let pinned = pinned_bits(&slots);
                let tracked = cells.tracked_view(&state, &[], &slots).unwrap();
                let words = LineWords::tracked(&tracked, &state, &cells, (&slots, &pinned));
                for page in 0..16 {
                    let range = page * PAGE_BYTES..(page + 1) * PAGE_BYTES;
                    let nt_here = state.nt.iter().any(|u| range.contains(&u.addr));
                    let Some(identity) = words.page_identity(range.clone()) else {
                        assert!(nt_here, "seed {seed}: only a page with an NT unit has no identity");
                        continue;
                    };
                    assert!(!nt_here, "seed {seed}: a page with an NT unit has an identity");
                    assert!(words.all_free(range.clone()));
                    let mut bytes = vec![0u8; PAGE_BYTES as usize];
                    words.read(range.start, &mut bytes);
                    let units = words.units_in(range.clone());
                    for (i, b, u) in &seen {
                        if *i == identity {
                            assert_eq!(
                                *b, bytes,
                                "seed {seed}, page {page}: equal identities, unequal bytes"
                            );
                            assert_eq!(
                                *u, units,
                                "seed {seed}, page {page}: equal identities, unequal units"
                            );
                            equal_seen += 1;
                            equal_pending += usize::from(!units.is_empty());
                        }
                    }
                    seen.push((identity, bytes, units));
                }
            }
        }
        assert!(equal_pending > 100, "identities with pending units were equal only {equal_pending} times");
        assert!(equal_seen > 200, "identities were equal only {equal_seen} times");
    }
}
