use super::{FlushKind, UNIT_BYTES};

/// One device call as recorded. The sequence number of an event is its index in the trace.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What the call was, with its address range.
    pub op: Op,
    /// Call site, e.g. `daxfs::journal::commit`.
    pub site: &'static str,
}

/// A traced device call. Stores carry no bytes: [`Trace::store_data`] reads them from the trace.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Write-back store of `len` bytes (a multiple of 8) whose data starts at `data_off` in the
    /// trace's data arena.
    Store {
        /// First byte stored (8-aligned).
        addr: u64,
        /// Bytes stored, a multiple of 8.
        len: u32,
        /// Offset of the stored bytes in the trace's data arena, meaningful only to the trace
        /// that recorded it (read them with [`Trace::store_data`]).
        data_off: u32,
    },
    /// Non-temporal store; same layout as `Store`.
    StoreNt {
        /// First byte stored (8-aligned).
        addr: u64,
        /// Bytes stored, a multiple of 8.
        len: u32,
        /// Offset of the stored bytes in the trace's data arena, as for `Store`.
        data_off: u32,
    },
    /// Cache-line flush, widened to whole lines: `addr..addr + len` covers every line the
    /// call's range overlapped.
    Flush {
        /// First byte of the first line ([`super::LINE_BYTES`]-aligned).
        addr: u64,
        /// Bytes covered, a multiple of [`super::LINE_BYTES`] (not the length asked for).
        len: u64,
        /// The write-back instruction.
        kind: FlushKind,
    },
    /// Store fence (sfence): flushed lines and non-temporal stores before it become durable.
    Fence,
}

impl Op {
    /// The instruction's name as traces and reports print it: `store`, `store_nt`, `clwb`,
    /// `clflushopt`, `clflush`, `sfence`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Store { .. } => "store",
            Op::StoreNt { .. } => "store_nt",
            Op::Flush { kind: FlushKind::Clwb, .. } => "clwb",
            Op::Flush { kind: FlushKind::Clflushopt, .. } => "clflushopt",
            Op::Flush { kind: FlushKind::Clflush, .. } => "clflush",
            Op::Fence => "sfence",
        }
    }
}

/// Who issued the events from `first_seq` on: a thread of the target's workload and the
/// operation it was in. A target that runs several threads marks each scheduling step with
/// [`crate::pmem::Device::begin_step`]; `show` draws one timeline lane per thread from these.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct TraceStep {
    /// The first event of the step; it lasts until the next step's `first_seq`.
    pub first_seq: usize,
    /// The target's thread index (as passed to [`crate::pmem::Device::begin_step`]).
    pub thread: u8,
    /// The target's index of the operation, within its thread.
    pub op: u32,
}

/// The ordered record of every store, flush and fence a device received.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    events: Vec<Event>,
    data: Vec<u8>,
    /// Thread changes, in sequence order; one entry per change of (thread, op), not per step.
    steps: Vec<TraceStep>,
}

impl Trace {
    /// Events recorded; also the crash point after the last one.
    pub fn len(&self) -> usize {
        self.events.len()
    }
    /// True when no event was recorded.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
    /// Every event, in program order; an event's index is its sequence number.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
    /// Event `seq`. Panics if `seq >= self.len()`.
    pub fn event(&self, seq: usize) -> &Event {
        &self.events[seq]
    }

    /// The bytes a store event wrote; empty for other events.
    pub fn store_data(&self, event: &Event) -> &[u8] {
        match event.op {
            Op::Store { len, data_off, .. } | Op::StoreNt { len, data_off, .. } => {
                &self.data[data_off as usize..data_off as usize + len as usize]
            }
            _ => &[],
        }
    }

    /// The 8-byte units a store event wrote, in address order.
    pub fn store_units(&self, event: &Event) -> impl Iterator<Item = (u64, u64)> + '_ {
        let addr = match event.op {
            Op::Store { addr, .. } | Op::StoreNt { addr, .. } => addr,
            _ => 0,
        };
        self.store_data(event).chunks_exact(UNIT_BYTES as usize).enumerate().map(move |(i, c)| {
            let value = u64::from_le_bytes(c.try_into().expect("chunk of 8"));
            (addr + i as u64 * UNIT_BYTES, value)
        })
    }

    pub(crate) fn push_store(&mut self, nt: bool, addr: u64, bytes: &[u8], site: &'static str) {
        let data_off = u32::try_from(self.data.len()).expect("trace data arena over 4 GiB");
        let len = u32::try_from(bytes.len()).expect("store over 4 GiB");
        self.data.extend_from_slice(bytes);
        let op = if nt { Op::StoreNt { addr, len, data_off } } else { Op::Store { addr, len, data_off } };
        self.events.push(Event { op, site });
    }

    /// Marks the events from here on as issued by `thread` in its operation `op`.
    pub(crate) fn mark_step(&mut self, thread: u8, op: u32) {
        let first_seq = self.events.len();
        match self.steps.last_mut() {
            Some(last) if last.thread == thread && last.op == op => {}
            Some(last) if last.first_seq == first_seq => {
                // The previous step issued no event: it is replaced, unless that makes it equal
                // to the one before it.
                last.thread = thread;
                last.op = op;
                let n = self.steps.len();
                if n >= 2 && (self.steps[n - 2].thread, self.steps[n - 2].op) == (thread, op) {
                    self.steps.pop();
                }
            }
            _ => self.steps.push(TraceStep { first_seq, thread, op }),
        }
    }

    /// Every thread change marked, in sequence order (empty for a target that marks none).
    pub fn steps(&self) -> &[TraceStep] {
        &self.steps
    }

    /// The step that issued event `seq`, if the target marks steps.
    pub fn step_at(&self, seq: usize) -> Option<TraceStep> {
        let i = self.steps.partition_point(|s| s.first_seq <= seq);
        i.checked_sub(1).map(|i| self.steps[i])
    }

    pub(crate) fn push(&mut self, op: Op, site: &'static str) {
        debug_assert!(!matches!(op, Op::Store { .. } | Op::StoreNt { .. }));
        self.events.push(Event { op, site });
    }

    /// A stable digest of the whole trace (ops, addresses, data and call sites), for
    /// determinism checks: same workload and schedule must give the same digest.
    pub fn digest(&self) -> u64 {
        let mut h = crc32fast::Hasher::new();
        let mut h2 = crc32fast::Hasher::new_with_initial(0x9e37_79b9);
        for e in &self.events {
            let (tag, a, b, c): (u8, u64, u64, u64) = match e.op {
                Op::Store { addr, len, data_off } => (1, addr, len as u64, data_off as u64),
                Op::StoreNt { addr, len, data_off } => (2, addr, len as u64, data_off as u64),
                Op::Flush { addr, len, kind } => (3 + kind as u8, addr, len, 0),
                Op::Fence => (9, 0, 0, 0),
            };
            for hh in [&mut h, &mut h2] {
                hh.update(&[tag]);
                hh.update(&a.to_le_bytes());
                hh.update(&b.to_le_bytes());
                hh.update(&c.to_le_bytes());
                hh.update(e.site.as_bytes());
            }
        }
        h.update(&self.data);
        h2.update(&self.data);
        (u64::from(h.finalize()) << 32) | u64::from(h2.finalize())
    }
}
