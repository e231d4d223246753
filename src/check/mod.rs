//! Oracles' common vocabulary: the violation classes of docs/design.md §6 and the violation value with
//! its evidence.
//!
//! A bug in the system under test is a [`Violation`] value, never a panic in the harness. The
//! target fills what only it knows (class, message, file, offset, pmem address, found vs
//! allowed); the crash engine fills where the power cut was and which stores made the offending
//! bytes (crash point, last writer, persisted and lost units).

#![deny(missing_docs, missing_debug_implementations)]

use crate::pmem::{Choice, CrashPoint, PmemAddr};

/// What went wrong: the classes of docs/design.md §6.
///
/// The names come from daxfs, but every class has a meaning for any persistent structure (a
/// log, a hash table, a tree); the second sentence of each says it. For example a duplicate key
/// or an entry in a bucket its key cannot hash to is `AllocatorInconsistent` (a structural
/// invariant), a deleted key that shows again or an entry built from old or poisoned words is
/// `StaleData`, a key showing another key's value is `ForeignData`, and an acknowledged insert
/// that is gone is `LostWrite`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum ViolationClass {
    /// A file word reads poison or a block's earlier contents. For any structure: recovered
    /// state built from words nobody wrote since they were freed or formatted (poison, a
    /// deleted entry that shows again, a torn record read as whole).
    StaleData,
    /// A file word carries another file's or another offset's tag. For any structure: an
    /// entry shows data that belongs to another entry (another key's value).
    ForeignData,
    /// An acknowledged-durable word is older than the acknowledged version after recovery. For
    /// any structure: an operation acknowledged as durable is missing or undone.
    LostWrite,
    /// At run time, two views of one offset disagree, or a view disagrees with the model. For
    /// any structure: a lookup disagrees with the model (or with another path to the data)
    /// while the workload runs.
    IncoherentView,
    /// A store or DMA lands in a block that is free or belongs to another file. For any
    /// structure: a write lands in space the structure has freed or given to something else.
    UseAfterFree,
    /// fsck after recovery: bitmap vs extents, double allocation, leak, range, size. For any
    /// structure: a structural invariant fails after recovery (a duplicate key, an entry where
    /// its key cannot be, a count that disagrees with the entries, a leaked or doubly used slot).
    AllocatorInconsistent,
    /// Recovery of a reachable crash state returned an error or panicked.
    RecoveryFailed,
    /// A crash during recovery, then recovery, differs from one clean recovery.
    RecoveryNotIdempotent,
    /// Every unfinished thread is blocked.
    Deadlock,
}

impl ViolationClass {
    /// Every class, in declaration order: the most basic first (old contents, then foreign
    /// contents, lost writes, ...), which is the order `Ord` sorts by.
    pub const ALL: [ViolationClass; 9] = [
        Self::StaleData,
        Self::ForeignData,
        Self::LostWrite,
        Self::IncoherentView,
        Self::UseAfterFree,
        Self::AllocatorInconsistent,
        Self::RecoveryFailed,
        Self::RecoveryNotIdempotent,
        Self::Deadlock,
    ];

    /// The class's stable name, as JSON, reports and `Display` spell it (`StaleData`).
    pub fn name(self) -> &'static str {
        match self {
            Self::StaleData => "StaleData",
            Self::ForeignData => "ForeignData",
            Self::LostWrite => "LostWrite",
            Self::IncoherentView => "IncoherentView",
            Self::UseAfterFree => "UseAfterFree",
            Self::AllocatorInconsistent => "AllocatorInconsistent",
            Self::RecoveryFailed => "RecoveryFailed",
            Self::RecoveryNotIdempotent => "RecoveryNotIdempotent",
            Self::Deadlock => "Deadlock",
        }
    }
}

impl std::fmt::Display for ViolationClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A trace event, as evidence: which call last wrote the offending bytes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventNote {
    /// Index of the event in the workload's trace.
    pub seq: usize,
    /// `store`, `store_nt`, `clwb`, ...
    pub op: String,
    /// Call site label, e.g. `daxfs::journal::commit`.
    pub site: String,
}

/// One pending 8-byte unit at the crash point, as evidence.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UnitNote {
    /// Device address of the unit (8-aligned).
    pub addr: PmemAddr,
    /// The value the store wrote there, little-endian, whether or not it persisted.
    pub value: u64,
    /// Trace event that stored it.
    pub seq: usize,
    /// Call site label of that store.
    pub site: String,
}

/// Where the power cut was and which stores made the state. Filled by the crash engine.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrashEvidence {
    /// The crash point in the workload's trace; `None` for a run-time violation.
    pub crash_point: Option<CrashPoint>,
    /// For a crash inside recovery: the crash point in recovery's own trace.
    pub recovery_crash_point: Option<CrashPoint>,
    /// The last store before the crash point covering the offending address.
    pub last_writer: Option<EventNote>,
    /// Pending units that persisted, on the offending line (all of them if no address is known).
    pub persisted: Vec<UnitNote>,
    /// Pending units that were lost, on the offending line (all of them if no address is known).
    pub lost: Vec<UnitNote>,
    /// Pending units that persisted in this crash state, on every line (`persisted` lists at
    /// most [`crate::crash::EVIDENCE_UNITS_MAX`] of them, of the offending line only).
    pub persisted_count: usize,
    /// Pending units that were lost in this crash state, on every line.
    pub lost_count: usize,
    /// Which pending units persisted at `crash_point`: with the workload, enough to rebuild
    /// the crash image exactly (artifacts, `crashsim repro`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice: Option<Choice>,
    /// The same for the crash inside recovery, against recovery's own trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_choice: Option<Choice>,
    /// A media-fault state: the bit flipped on top of `choice` (see `CrashConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_fault: Option<crate::pmem::MediaFault>,
}

/// One oracle verdict against the system under test.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    /// What kind of bug this is.
    pub class: ViolationClass,
    /// What the oracle saw, for a human, in one line (without the evidence, which `Display`
    /// appends).
    pub message: String,
    /// File (name or id) and byte offset in it, when the violation is about file contents.
    pub file: Option<String>,
    /// Byte offset in `file` (not a device address: see `addr`).
    pub offset_bytes: Option<u64>,
    /// The offending device address, when known; the engine's evidence is keyed on it.
    pub addr: Option<PmemAddr>,
    /// What the oracle read, and what it would have accepted.
    pub found: Option<String>,
    /// What the oracle would have accepted instead of `found` (e.g. `data v1 or v2`).
    pub allowed: Option<String>,
    /// Where the power cut was and which stores made the state; the engine fills it, a
    /// target leaves it default (serialized flat, beside the fields above).
    #[serde(flatten)]
    pub evidence: CrashEvidence,
}

impl Violation {
    /// A violation of `class` with `message` and nothing else known yet: add what the oracle
    /// knows with the builder methods below.
    pub fn new(class: ViolationClass, message: impl Into<String>) -> Self {
        Self {
            class,
            message: message.into(),
            file: None,
            offset_bytes: None,
            addr: None,
            found: None,
            allowed: None,
            evidence: CrashEvidence::default(),
        }
    }

    /// The violation is about byte `offset_bytes` of file `file` (a name or an id).
    pub fn in_file(mut self, file: impl Into<String>, offset_bytes: u64) -> Self {
        self.file = Some(file.into());
        self.offset_bytes = Some(offset_bytes);
        self
    }

    /// The offending device address: the engine's evidence (last writer, persisted and lost
    /// units of its cache line) is keyed on it.
    pub fn at_addr(mut self, addr: PmemAddr) -> Self {
        self.addr = Some(addr);
        self
    }

    /// What the oracle read, and what it would have accepted instead.
    pub fn found_allowed(mut self, found: impl Into<String>, allowed: impl Into<String>) -> Self {
        self.found = Some(found.into());
        self.allowed = Some(allowed.into());
        self
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.class, self.message)?;
        if let (Some(file), Some(off)) = (&self.file, self.offset_bytes) {
            write!(f, " [{file}+{off:#x}]")?;
        }
        if let Some(addr) = self.addr {
            write!(f, " at pmem {addr}")?;
        }
        if let (Some(found), Some(allowed)) = (&self.found, &self.allowed) {
            write!(f, " found {found}, allowed {allowed}")?;
        }
        if let Some(p) = self.evidence.crash_point {
            write!(f, "; crash before event {}", p.0)?;
        }
        if let Some(p) = self.evidence.recovery_crash_point {
            write!(f, ", then before recovery event {}", p.0)?;
        }
        if let Some(w) = &self.evidence.last_writer {
            write!(f, "; last written by #{} {} at {}", w.seq, w.op, w.site)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_round_trip_through_serde() {
        for class in ViolationClass::ALL {
            let json = serde_json::to_string(&class).unwrap();
            assert_eq!(json, format!("\"{}\"", class.name()));
            assert_eq!(serde_json::from_str::<ViolationClass>(&json).unwrap(), class);
        }
    }

    #[test]
    fn violation_serializes_evidence_flat() {
        let v = Violation::new(ViolationClass::StaleData, "poison")
            .in_file("f1", 64)
            .at_addr(PmemAddr(0x1040))
            .found_allowed("poison", "data v1");
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["class"], "StaleData");
        assert_eq!(json["offset_bytes"], 64);
        assert!(json.get("crash_point").is_some(), "evidence is flattened: {json}");
        let back: Violation = serde_json::from_value(json).unwrap();
        assert_eq!(back, v);
    }
}
