//! The simulated NVDIMM: a byte-addressable device that traces every store, flush and fence,
//! and the ADR/eADR model of which of those stores a power cut may leave on media.
//!
//! The media model is written down in `docs/persistence-model.md`; this module is its code.
//! Architecture Invariant: the system under test touches persistent bytes only through
//! [`Device`]; there is no other path to the media.

#![deny(missing_docs, missing_debug_implementations)]

mod cells;
mod device;
mod media;
mod persist;
pub mod reference;
mod trace;

pub use cells::{Cells, LineWords, PageIdentity, Slot, TrackedView};
pub use device::{Device, TRACE_EVENTS_MAX_DEFAULT};
pub use media::{Background, Backing, PAGE_BYTES, PageSource, SparseImage};
pub use persist::{
    Choice, CrashPoint, CrashState, Granularity, LineUnits, MediaFault, NtDep, PendingLine, Tracker, Unit,
    View, crash_points,
};
pub use trace::{Event, Op, Trace, TraceStep};

/// Cache-line size: the unit of flushing and of the per-line persist order.
pub const LINE_BYTES: u64 = 64;
/// Failure-atomic unit: an aligned 8-byte word either reaches media whole or not at all.
pub const UNIT_BYTES: u64 = 8;

const _: () = assert!(LINE_BYTES.is_power_of_two() && UNIT_BYTES.is_power_of_two());
const _: () = assert!(LINE_BYTES % UNIT_BYTES == 0);
const _: () = assert!(PAGE_BYTES % LINE_BYTES == 0);

/// A byte address on the persistent-memory device, counted from 0.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PmemAddr(pub u64);

impl PmemAddr {
    /// The address of the cache line holding this byte (rounded down to [`LINE_BYTES`]).
    pub fn line(self) -> u64 {
        self.0 & !(LINE_BYTES - 1)
    }
}

impl std::fmt::Display for PmemAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// The cache-line write-back instruction a flush uses.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum FlushKind {
    /// Durable only after a later fence; the line may stay cached.
    Clwb,
    /// Durable only after a later fence; the line is evicted.
    Clflushopt,
    /// Ordered by itself: the line is durable when the instruction is issued.
    Clflush,
}

/// Where the persistence domain ends.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum PersistenceModel {
    /// Caches are outside the persistence domain: stores need flush + fence.
    #[default]
    Adr,
    /// Caches are inside the persistence domain: a store is durable when executed.
    Eadr,
}

impl std::str::FromStr for PersistenceModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "adr" => Ok(Self::Adr),
            "eadr" => Ok(Self::Eadr),
            _ => Err(format!("unknown persistence model `{s}` (expected adr or eadr)")),
        }
    }
}

impl std::fmt::Display for PersistenceModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Adr => "adr",
            Self::Eadr => "eadr",
        })
    }
}

/// Misuse of the device API. The device never panics on bad addresses or lengths.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PmemError {
    /// An access that does not lie wholly inside the device.
    #[error("access of {len} bytes at {addr:#x} is outside the {size_bytes}-byte device")]
    OutOfRange {
        /// First byte accessed.
        addr: u64,
        /// Bytes accessed.
        len: u64,
        /// The device's size.
        size_bytes: u64,
    },
    /// A store whose address or length is not a multiple of the failure-atomic unit.
    #[error("{what} at {addr:#x} of {len} bytes is not {align}-byte aligned")]
    Misaligned {
        /// The call: `store` or `store_nt`.
        what: &'static str,
        /// First byte stored.
        addr: u64,
        /// Bytes stored.
        len: u64,
        /// The alignment required, [`UNIT_BYTES`].
        align: u64,
    },
    /// A store or flush of zero bytes.
    #[error("{what} of zero bytes at {addr:#x}")]
    Empty {
        /// The call: `store`, `store_nt` or `flush`.
        what: &'static str,
        /// The address it named.
        addr: u64,
    },
    /// A [`Choice`] whose shape or values do not fit the [`CrashState`] it is applied to (a
    /// corrupt manifest, or a choice of another crash point).
    #[error("crash-state choice does not fit its crash point: {reason}")]
    BadChoice {
        /// Which part does not fit, in one line.
        reason: String,
    },
    /// The trace reached its bound ([`Device::set_trace_events_max`]); the call was not
    /// recorded or applied.
    #[error("trace is full: {events_max} events (raise the trace bound or shorten the workload)")]
    TraceFull {
        /// The bound.
        events_max: usize,
    },
}
