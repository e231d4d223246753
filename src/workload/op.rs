//! The operation language and the bounds every workload satisfies.

use super::{
    FILE_BYTES_MAX, FILES_MAX, MAPS_MAX, OPS_MAX, PAGE_BYTES, PINS_MAX, SCHEDULE_MAX, THREADS_MAX,
    WORD_BYTES, WorkloadError,
};

/// A file slot, `0..FILES_MAX`. A slot names at most one live file at a time; `Create` after
/// `Unlink` makes a new incarnation.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct FileSlot(pub u8);

/// A mapping slot, `0..MAPS_MAX`, shared by all threads.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct MapSlot(pub u8);

/// A DMA pin slot, `0..PINS_MAX`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct PinSlot(pub u8);

/// One operation. Offsets and lengths are bytes; data ranges are 8-aligned, page ranges
/// 4096-aligned (see [`Workload::validate`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Op {
    Create {
        file: FileSlot,
    },
    Unlink {
        file: FileSlot,
    },
    /// write(2) of harness-generated data words.
    Write {
        file: FileSlot,
        off: u64,
        len: u64,
    },
    Read {
        file: FileSlot,
        off: u64,
        len: u64,
    },
    /// Shared mapping of a page range, optionally MAP_SYNC.
    Mmap {
        map: MapSlot,
        file: FileSlot,
        off: u64,
        len: u64,
        map_sync: bool,
    },
    Munmap {
        map: MapSlot,
    },
    /// User stores through the mapping; `off` is relative to the mapping.
    Store {
        map: MapSlot,
        off: u64,
        len: u64,
    },
    Load {
        map: MapSlot,
        off: u64,
        len: u64,
    },
    /// User clwb + sfence over the range (an acknowledgement on a MAP_SYNC mapping).
    Persist {
        map: MapSlot,
        off: u64,
        len: u64,
    },
    Msync {
        map: MapSlot,
        off: u64,
        len: u64,
    },
    /// Unwritten preallocation, block granular.
    Fallocate {
        file: FileSlot,
        off: u64,
        len: u64,
    },
    PunchHole {
        file: FileSlot,
        off: u64,
        len: u64,
    },
    Truncate {
        file: FileSlot,
        size: u64,
    },
    Fsync {
        file: FileSlot,
    },
    /// get_user_pages on a page range of a mapping.
    Pin {
        pin: PinSlot,
        map: MapSlot,
        off: u64,
        len: u64,
        write: bool,
    },
    /// A device write into the pinned range; `off` is relative to the pin.
    DmaWrite {
        pin: PinSlot,
        off: u64,
        len: u64,
    },
    Unpin {
        pin: PinSlot,
    },
    /// Checkpoint.
    Sync,
}

/// Run options that are part of the workload data (they change what the workload does).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct WorkloadOptions {
    /// Read faults also map neighbouring existing entries (`map_pages`).
    pub fault_around: bool,
}

/// Per-thread operation lists, the schedule that interleaves them, and options.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub threads: Vec<Vec<Op>>,
    pub schedule: Vec<u8>,
    pub options: WorkloadOptions,
}

/// How an op's range must be aligned (and, in the compact encoding, the unit its offset and
/// length are stored in).
#[derive(Copy, Clone)]
pub(super) enum Grain {
    Word,
    Page,
}

impl Grain {
    pub(super) fn bytes(self) -> u64 {
        match self {
            Grain::Word => WORD_BYTES,
            Grain::Page => PAGE_BYTES,
        }
    }
}

/// Where an op sits, for error messages.
#[derive(Copy, Clone)]
struct At {
    thread: usize,
    index: usize,
}

impl Workload {
    /// Operations summed over all threads.
    pub fn op_count(&self) -> usize {
        self.threads.iter().map(Vec::len).sum()
    }

    /// Checks every bound and alignment; used on input that did not come from the generator
    /// (JSON manifests, edited artifacts, minimizer output).
    pub fn validate(&self) -> Result<(), WorkloadError> {
        let count = self.threads.len();
        if count == 0 || count > THREADS_MAX {
            return Err(WorkloadError::ThreadCount { count });
        }
        let count = self.op_count();
        if count > OPS_MAX {
            return Err(WorkloadError::TooManyOps { count });
        }
        if self.schedule.len() > SCHEDULE_MAX {
            return Err(WorkloadError::ScheduleTooLong { len: self.schedule.len() });
        }
        for (thread, ops) in self.threads.iter().enumerate() {
            for (index, op) in ops.iter().enumerate() {
                op.validate(At { thread, index })?;
            }
        }
        Ok(())
    }

    /// The pin rule that keeps a workload from deadlocking on its own pins (the Architecture
    /// Invariant in [`crate::workload`]): thread `t` pins only its own slot `t` (pin slots are
    /// shared like an address space, so a second thread pinning the slot would replace a pin its
    /// owner still holds, and a truncate waiting for that pin would wait forever); after a
    /// thread pins, it runs only DMA writes and unpins until it unpins that slot (no second pin
    /// meanwhile), and it ends holding no pin. An unpin of a slot the thread did not pin is
    /// harmless. Generated workloads keep it; the fuzzer's decoder and mutator check it.
    pub fn check_pin_discipline(&self) -> Result<(), WorkloadError> {
        for (thread, ops) in self.threads.iter().enumerate() {
            let mut held: Option<PinSlot> = None;
            for (index, op) in ops.iter().enumerate() {
                if let Op::Pin { pin, .. } = *op
                    && usize::from(pin.0) != thread
                {
                    return Err(WorkloadError::ForeignPin { thread, index, pin: pin.0 });
                }
                match (*op, held) {
                    (Op::Pin { pin, .. }, None) => held = Some(pin),
                    (Op::Unpin { pin }, Some(h)) if pin == h => held = None,
                    (Op::Unpin { .. } | Op::DmaWrite { .. }, _) | (_, None) => {}
                    (_, Some(_)) => return Err(WorkloadError::WhilePinned { thread, index }),
                }
            }
            if let Some(pin) = held {
                return Err(WorkloadError::PinLeftHeld { thread, pin: pin.0 });
            }
        }
        Ok(())
    }
}

impl Op {
    fn validate(&self, at: At) -> Result<(), WorkloadError> {
        self.check_slots(at)?;
        match *self {
            Op::Write { off, len, .. }
            | Op::Read { off, len, .. }
            | Op::Store { off, len, .. }
            | Op::Load { off, len, .. }
            | Op::Persist { off, len, .. }
            | Op::Msync { off, len, .. }
            | Op::DmaWrite { off, len, .. } => check_range(at, off, len, Grain::Word),
            Op::Mmap { off, len, .. }
            | Op::Fallocate { off, len, .. }
            | Op::PunchHole { off, len, .. }
            | Op::Pin { off, len, .. } => check_range(at, off, len, Grain::Page),
            Op::Truncate { size, .. } => check_size(at, size),
            Op::Create { .. }
            | Op::Unlink { .. }
            | Op::Munmap { .. }
            | Op::Fsync { .. }
            | Op::Unpin { .. }
            | Op::Sync => Ok(()),
        }
    }

    /// The file slot the op names directly, if any.
    pub fn file(&self) -> Option<FileSlot> {
        match *self {
            Op::Create { file }
            | Op::Unlink { file }
            | Op::Write { file, .. }
            | Op::Read { file, .. }
            | Op::Mmap { file, .. }
            | Op::Fallocate { file, .. }
            | Op::PunchHole { file, .. }
            | Op::Truncate { file, .. }
            | Op::Fsync { file } => Some(file),
            _ => None,
        }
    }

    /// The mapping slot the op names, if any.
    pub fn map(&self) -> Option<MapSlot> {
        match *self {
            Op::Mmap { map, .. }
            | Op::Munmap { map }
            | Op::Store { map, .. }
            | Op::Load { map, .. }
            | Op::Persist { map, .. }
            | Op::Msync { map, .. }
            | Op::Pin { map, .. } => Some(map),
            _ => None,
        }
    }

    /// The pin slot the op names, if any.
    pub fn pin(&self) -> Option<PinSlot> {
        match *self {
            Op::Pin { pin, .. } | Op::DmaWrite { pin, .. } | Op::Unpin { pin } => Some(pin),
            _ => None,
        }
    }

    fn check_slots(&self, at: At) -> Result<(), WorkloadError> {
        let slots = [
            ("file", self.file().map(|s| s.0), FILES_MAX),
            ("map", self.map().map(|s| s.0), MAPS_MAX),
            ("pin", self.pin().map(|s| s.0), PINS_MAX),
        ];
        for (kind, slot, max) in slots {
            if let Some(slot) = slot.filter(|&s| s >= max) {
                return Err(WorkloadError::SlotOutOfRange {
                    thread: at.thread,
                    index: at.index,
                    kind,
                    slot,
                    max: max - 1,
                });
            }
        }
        Ok(())
    }
}

fn check_range(at: At, off: u64, len: u64, grain: Grain) -> Result<(), WorkloadError> {
    let align = grain.bytes();
    let misaligned =
        |what, value| WorkloadError::Misaligned { thread: at.thread, index: at.index, what, value, align };
    if off % align != 0 {
        return Err(misaligned("offset", off));
    }
    if len % align != 0 {
        return Err(misaligned("length", len));
    }
    if len == 0 {
        return Err(WorkloadError::EmptyRange { thread: at.thread, index: at.index });
    }
    match off.checked_add(len) {
        Some(end) if end <= FILE_BYTES_MAX => Ok(()),
        _ => Err(WorkloadError::OutOfRange { thread: at.thread, index: at.index }),
    }
}

fn check_size(at: At, size: u64) -> Result<(), WorkloadError> {
    if size % WORD_BYTES != 0 {
        return Err(WorkloadError::Misaligned {
            thread: at.thread,
            index: at.index,
            what: "size",
            value: size,
            align: WORD_BYTES,
        });
    }
    if size > FILE_BYTES_MAX {
        return Err(WorkloadError::OutOfRange { thread: at.thread, index: at.index });
    }
    Ok(())
}
