//! Schedule generation: mostly a switch at every step, with runs of one thread and random
//! picks mixed in. Entries are small thread indexes so manifests stay readable; what they mean
//! at run time is defined in the module doc of [`super`].

use arbitrary::Unstructured;

use super::SCHEDULE_MAX;
use super::pick::{below, in_range, weighted};

/// Steps reserved for each prelude op: the schedule opens with that many picks of thread 0 so
/// the files exist before other threads use them.
const PRELUDE_STEPS_PER_OP: usize = 6;

#[derive(Copy, Clone)]
enum Segment {
    RoundRobin,
    Run,
    Random,
}

/// A schedule for `threads` threads running `op_count` ops, `prelude_ops` of them the
/// prelude at the start of thread 0.
pub(super) fn generate(
    u: &mut Unstructured<'_>,
    threads: usize,
    op_count: usize,
    prelude_ops: usize,
) -> Vec<u8> {
    if threads < 2 {
        return Vec::new();
    }
    let mut schedule = vec![0u8; (prelude_ops * PRELUDE_STEPS_PER_OP).min(SCHEDULE_MAX)];
    let steps = weighted(u, &[(20, 4 * op_count), (45, 8 * op_count), (35, 16 * op_count)]);
    let target = (schedule.len() + steps).min(SCHEDULE_MAX);
    let mut last = 0u8;
    while schedule.len() < target {
        let room = target - schedule.len();
        last = push_segment(u, &mut schedule, threads, last, room);
    }
    debug_assert!(schedule.len() <= SCHEDULE_MAX);
    schedule
}

/// Appends one segment of at most `room` (>= 1) entries; returns the last entry.
fn push_segment(u: &mut Unstructured<'_>, out: &mut Vec<u8>, threads: usize, last: u8, room: usize) -> u8 {
    let kind = weighted(u, &[(55, Segment::RoundRobin), (25, Segment::Run), (20, Segment::Random)]);
    let n = threads as u64;
    let (len, mut value) = match kind {
        Segment::RoundRobin => (in_range(u, 4, 32), (u64::from(last) + 1) % n),
        Segment::Run => (in_range(u, 2, 12), below(u, n)),
        Segment::Random => (in_range(u, 1, 8), below(u, n)),
    };
    for _ in 0..(len as usize).min(room) {
        out.push(value as u8);
        value = match kind {
            Segment::RoundRobin => (value + 1) % n,
            Segment::Run => value,
            Segment::Random => below(u, n),
        };
    }
    *out.last().expect("room >= 1 so the segment pushed an entry")
}
