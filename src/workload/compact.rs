//! The compact byte form of a [`Workload`]: what the structure-aware fuzzer stores in its
//! corpus and crash files. It holds only what the workload uses, field by field:
//!
//! ```text
//! 0xDC 0x01                  magic, format version
//! flags                      bit 0: fault_around; other bits zero
//! threads                    1..=THREADS_MAX
//! per thread: ops, op*       ops: that thread's operation count (the sum is at most OPS_MAX)
//! schedule_form              0: one byte per entry; 1: four 2-bit entries per byte
//! schedule_len, entries      schedule_len: varint, at most SCHEDULE_MAX
//! ```
//!
//! An op is its kind byte (the [`Op`] variant's index; bit 7 carries `map_sync` of `Mmap` and
//! `write` of `Pin`), then its slots as bytes, then its offsets and lengths as LEB128 varints in
//! units of their alignment grain (8-byte words for data ranges and truncate sizes, 4096-byte
//! pages for page ranges), so a misaligned value cannot be encoded at all.
//!
//! Decoding checks every count before it reads the elements, grows vectors one decoded
//! element at a time, rejects trailing bytes, and ends with [`Workload::validate`] and
//! [`Workload::check_pin_discipline`]: any byte string is a valid workload or a typed
//! [`CodecError`]. The generator's raw input (sweep seeds' `input.bin` are [`SEED_BYTES`]
//! long) cannot pass for a compact input: a compact input is at most [`COMPACT_BYTES_MAX`]
//! bytes, fewer than a seed's.

use super::op::Grain;
use super::{
    FILE_BYTES_MAX, FileSlot, MapSlot, OPS_MAX, Op, PinSlot, SCHEDULE_MAX, SEED_BYTES, THREADS_MAX,
    WORD_BYTES, Workload, WorkloadOptions,
};
use crate::fuzzing::codec::{CodecError, Reader, Writer};

/// The first byte of a compact daxfs workload (`0xDC`, for DAX compact).
pub const COMPACT_MAGIC: u8 = 0xdc;
/// The format version this build reads and writes.
pub const COMPACT_VERSION: u8 = 1;
/// The longest compact encoding: header, flags, thread counts, the largest op (kind, two
/// slots, two 3-byte varints) `OPS_MAX` times, and a byte-per-entry schedule.
pub const COMPACT_BYTES_MAX: usize = 4 + THREADS_MAX + OPS_MAX * 9 + 1 + 2 + SCHEDULE_MAX;

const _: () = assert!(COMPACT_BYTES_MAX < SEED_BYTES, "a seed's raw bytes never decode as compact");
const _: () = assert!(FILE_BYTES_MAX / WORD_BYTES < 1 << 21, "a word offset is a 3-byte varint");
const _: () = assert!(THREADS_MAX <= 4, "a packed schedule entry is 2 bits");

const FLAG_FAULT_AROUND: u8 = 1;
const KIND_FLAG: u8 = 0x80;
const KINDS: u8 = 18;
const SCHEDULE_BYTES: u8 = 0;
const SCHEDULE_PACKED: u8 = 1;

impl Workload {
    /// The compact encoding (see the module doc of `workload::compact`). Panics on a workload
    /// that fails [`Workload::validate`]: the harness only encodes valid ones.
    pub fn encode_compact(&self) -> Vec<u8> {
        assert_eq!(self.validate(), Ok(()), "only valid workloads are encoded");
        let mut w = Writer::with_header(COMPACT_MAGIC, COMPACT_VERSION);
        w.u8(if self.options.fault_around { FLAG_FAULT_AROUND } else { 0 });
        w.u8(self.threads.len() as u8);
        for ops in &self.threads {
            w.u8(ops.len() as u8);
            for op in ops {
                encode_op(&mut w, op);
            }
        }
        encode_schedule(&mut w, &self.schedule);
        let bytes = w.finish();
        debug_assert!(bytes.len() <= COMPACT_BYTES_MAX);
        bytes
    }

    /// The workload compact bytes encode; a typed error for anything else.
    pub fn decode_compact(bytes: &[u8]) -> Result<Workload, CodecError> {
        let mut r = Reader::with_header(bytes, COMPACT_MAGIC, COMPACT_VERSION)?;
        let flags = r.u8_max("flags", FLAG_FAULT_AROUND)?;
        let options = WorkloadOptions { fault_around: flags & FLAG_FAULT_AROUND != 0 };
        let thread_count = r.u8_max("threads", THREADS_MAX as u8)?;
        if thread_count == 0 {
            return Err(CodecError::OutOfRange { what: "threads", value: 0, max: THREADS_MAX as u64, at: 3 });
        }
        let mut threads = Vec::new();
        let mut total = 0usize;
        for _ in 0..thread_count {
            let count = r.u8_max("ops", (OPS_MAX - total) as u8)?;
            total += usize::from(count);
            let mut ops = Vec::new();
            for _ in 0..count {
                ops.push(decode_op(&mut r)?);
            }
            threads.push(ops);
        }
        let schedule = decode_schedule(&mut r)?;
        r.finish()?;
        let w = Workload { threads, schedule, options };
        w.validate().map_err(|e| CodecError::Invalid(e.to_string()))?;
        w.check_pin_discipline().map_err(|e| CodecError::Invalid(e.to_string()))?;
        Ok(w)
    }
}

fn kind(op: &Op) -> u8 {
    match op {
        Op::Create { .. } => 0,
        Op::Unlink { .. } => 1,
        Op::Write { .. } => 2,
        Op::Read { .. } => 3,
        Op::Mmap { .. } => 4,
        Op::Munmap { .. } => 5,
        Op::Store { .. } => 6,
        Op::Load { .. } => 7,
        Op::Persist { .. } => 8,
        Op::Msync { .. } => 9,
        Op::Fallocate { .. } => 10,
        Op::PunchHole { .. } => 11,
        Op::Truncate { .. } => 12,
        Op::Fsync { .. } => 13,
        Op::Pin { .. } => 14,
        Op::DmaWrite { .. } => 15,
        Op::Unpin { .. } => 16,
        Op::Sync => 17,
    }
}

fn encode_op(w: &mut Writer, op: &Op) {
    let flag = match *op {
        Op::Mmap { map_sync: true, .. } | Op::Pin { write: true, .. } => KIND_FLAG,
        _ => 0,
    };
    w.u8(kind(op) | flag);
    let range = |w: &mut Writer, off: u64, len: u64, g: Grain| {
        w.varint(off / g.bytes());
        w.varint(len / g.bytes());
    };
    match *op {
        Op::Create { file } | Op::Unlink { file } | Op::Fsync { file } => w.u8(file.0),
        Op::Write { file, off, len } | Op::Read { file, off, len } => {
            w.u8(file.0);
            range(w, off, len, Grain::Word);
        }
        Op::Fallocate { file, off, len } | Op::PunchHole { file, off, len } => {
            w.u8(file.0);
            range(w, off, len, Grain::Page);
        }
        Op::Mmap { map, file, off, len, .. } => {
            w.bytes(&[map.0, file.0]);
            range(w, off, len, Grain::Page);
        }
        Op::Munmap { map } => w.u8(map.0),
        Op::Store { map, off, len }
        | Op::Load { map, off, len }
        | Op::Persist { map, off, len }
        | Op::Msync { map, off, len } => {
            w.u8(map.0);
            range(w, off, len, Grain::Word);
        }
        Op::Truncate { file, size } => {
            w.u8(file.0);
            w.varint(size / WORD_BYTES);
        }
        Op::Pin { pin, map, off, len, .. } => {
            w.bytes(&[pin.0, map.0]);
            range(w, off, len, Grain::Page);
        }
        Op::DmaWrite { pin, off, len } => {
            w.u8(pin.0);
            range(w, off, len, Grain::Word);
        }
        Op::Unpin { pin } => w.u8(pin.0),
        Op::Sync => {}
    }
}

/// An offset or length in `grain` units, at most the file bound.
fn field(r: &mut Reader<'_>, what: &'static str, g: Grain) -> Result<u64, CodecError> {
    Ok(r.varint_max(what, FILE_BYTES_MAX / g.bytes())? * g.bytes())
}

fn decode_op(r: &mut Reader<'_>) -> Result<Op, CodecError> {
    let at = r.pos();
    let byte = r.u8()?;
    let (code, flag) = (byte & !KIND_FLAG, byte & KIND_FLAG != 0);
    let flagged = matches!(code, 4 | 14);
    if code >= KINDS || (flag && !flagged) {
        return Err(CodecError::OutOfRange {
            what: "op kind",
            value: u64::from(byte),
            max: u64::from(KINDS - 1),
            at,
        });
    }
    let file = |r: &mut Reader<'_>| r.u8().map(FileSlot);
    let map = |r: &mut Reader<'_>| r.u8().map(MapSlot);
    let pin = |r: &mut Reader<'_>| r.u8().map(PinSlot);
    let words = |r: &mut Reader<'_>| {
        Ok::<_, CodecError>((field(r, "offset", Grain::Word)?, field(r, "length", Grain::Word)?))
    };
    let pages = |r: &mut Reader<'_>| {
        Ok::<_, CodecError>((field(r, "offset", Grain::Page)?, field(r, "length", Grain::Page)?))
    };
    let op = match code {
        0 => Op::Create { file: file(r)? },
        1 => Op::Unlink { file: file(r)? },
        2 | 3 => {
            let f = file(r)?;
            let (off, len) = words(r)?;
            if code == 2 { Op::Write { file: f, off, len } } else { Op::Read { file: f, off, len } }
        }
        4 => {
            let (m, f) = (map(r)?, file(r)?);
            let (off, len) = pages(r)?;
            Op::Mmap { map: m, file: f, off, len, map_sync: flag }
        }
        5 => Op::Munmap { map: map(r)? },
        6..=9 => {
            let m = map(r)?;
            let (off, len) = words(r)?;
            match code {
                6 => Op::Store { map: m, off, len },
                7 => Op::Load { map: m, off, len },
                8 => Op::Persist { map: m, off, len },
                _ => Op::Msync { map: m, off, len },
            }
        }
        10 | 11 => {
            let f = file(r)?;
            let (off, len) = pages(r)?;
            if code == 10 { Op::Fallocate { file: f, off, len } } else { Op::PunchHole { file: f, off, len } }
        }
        12 => Op::Truncate { file: file(r)?, size: field(r, "size", Grain::Word)? },
        13 => Op::Fsync { file: file(r)? },
        14 => {
            let (p, m) = (pin(r)?, map(r)?);
            let (off, len) = pages(r)?;
            Op::Pin { pin: p, map: m, off, len, write: flag }
        }
        15 => {
            let p = pin(r)?;
            let (off, len) = words(r)?;
            Op::DmaWrite { pin: p, off, len }
        }
        16 => Op::Unpin { pin: pin(r)? },
        _ => Op::Sync,
    };
    Ok(op)
}

/// Packed (four 2-bit entries a byte, low bits first) when every entry is below 4.
fn encode_schedule(w: &mut Writer, schedule: &[u8]) {
    let packed = schedule.iter().all(|&e| e < 4);
    w.u8(if packed { SCHEDULE_PACKED } else { SCHEDULE_BYTES });
    w.varint(schedule.len() as u64);
    if !packed {
        w.bytes(schedule);
        return;
    }
    for chunk in schedule.chunks(4) {
        w.u8(chunk.iter().enumerate().fold(0, |b, (i, &e)| b | e << (2 * i)));
    }
}

fn decode_schedule(r: &mut Reader<'_>) -> Result<Vec<u8>, CodecError> {
    let form = r.u8_max("schedule form", SCHEDULE_PACKED)?;
    let len = r.varint_max("schedule length", SCHEDULE_MAX as u64)? as usize;
    if form == SCHEDULE_BYTES {
        return Ok(r.bytes(len)?.to_vec());
    }
    let at = r.pos();
    let packed = r.bytes(len.div_ceil(4))?;
    let schedule: Vec<u8> = (0..len).map(|i| packed[i / 4] >> (2 * (i % 4)) & 3).collect();
    // Unused high bits of the last byte are zero, so each schedule has one packed form.
    if len % 4 != 0 && packed[len / 4] >> (2 * (len % 4)) != 0 {
        return Err(CodecError::OutOfRange {
            what: "schedule padding",
            value: u64::from(packed[len / 4]),
            max: 0,
            at,
        });
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::PAGE_BYTES;

    fn pinned_truncate() -> Workload {
        let pin = PinSlot(0);
        let ops = vec![
            Op::Pin { pin, map: MapSlot(0), off: 0, len: PAGE_BYTES, write: true },
            Op::Truncate { file: FileSlot(0), size: 0 },
            Op::Unpin { pin },
        ];
        Workload { threads: vec![ops], schedule: vec![], options: WorkloadOptions::default() }
    }

    #[test]
    fn every_op_kind_round_trips() {
        let (f, m, p) = (FileSlot(15), MapSlot(7), PinSlot(0));
        let (off, len) = (FILE_BYTES_MAX - 2 * PAGE_BYTES, 2 * PAGE_BYTES);
        let ops = vec![
            Op::Create { file: f },
            Op::Write { file: f, off, len },
            Op::Read { file: f, off: 8, len: 8 },
            Op::Mmap { map: m, file: f, off, len, map_sync: true },
            Op::Mmap { map: m, file: f, off: 0, len, map_sync: false },
            Op::Store { map: m, off, len },
            Op::Load { map: m, off, len: 16 },
            Op::Persist { map: m, off: 0, len: 64 },
            Op::Msync { map: m, off: 0, len: 8 },
            Op::Fallocate { file: f, off, len },
            Op::PunchHole { file: f, off: 0, len },
            Op::Truncate { file: f, size: FILE_BYTES_MAX },
            Op::Fsync { file: f },
            Op::Pin { pin: p, map: m, off, len, write: true },
            Op::DmaWrite { pin: p, off: 8, len: 4088 },
            Op::Unpin { pin: p },
            Op::Pin { pin: p, map: m, off: 0, len, write: false },
            Op::Unpin { pin: p },
            Op::Munmap { map: m },
            Op::Unlink { file: f },
            Op::Sync,
        ];
        for schedule in [vec![], vec![0, 1, 3, 2, 1], vec![0, 7, 255]] {
            let w = Workload {
                threads: vec![ops.clone(), vec![]],
                schedule,
                options: WorkloadOptions { fault_around: true },
            };
            let bytes = w.encode_compact();
            assert_eq!(Workload::decode_compact(&bytes), Ok(w.clone()));
            assert!(bytes.len() <= COMPACT_BYTES_MAX);
        }
    }

    #[test]
    fn the_longest_workload_fits_the_bound() {
        let op = Op::Store { map: MapSlot(0), off: FILE_BYTES_MAX - 2 * PAGE_BYTES, len: 2 * PAGE_BYTES };
        let w = Workload {
            threads: vec![vec![op; OPS_MAX / THREADS_MAX]; THREADS_MAX],
            schedule: vec![255; SCHEDULE_MAX],
            options: WorkloadOptions::default(),
        };
        let bytes = w.encode_compact();
        assert!(bytes.len() <= COMPACT_BYTES_MAX, "{} bytes", bytes.len());
        assert_eq!(Workload::decode_compact(&bytes), Ok(w));
    }

    #[test]
    fn broken_rules_and_bounds_are_typed_errors() {
        let bytes = pinned_truncate().encode_compact();
        assert!(
            matches!(Workload::decode_compact(&bytes), Err(CodecError::Invalid(e)) if e.contains("holds a pin"))
        );
        // Two threads, 64 ops then 1 more: the running total is checked before the ops are read.
        let mut over = vec![COMPACT_MAGIC, COMPACT_VERSION, 0, 2, 64];
        over.extend([17; 64]);
        over.push(1);
        assert!(matches!(Workload::decode_compact(&over), Err(CodecError::OutOfRange { what: "ops", .. })));
        let cases: [(&[u8], &str); 5] = [
            (&[COMPACT_MAGIC, COMPACT_VERSION, 2, 1, 0, 0, 0], "flags"),
            (&[COMPACT_MAGIC, COMPACT_VERSION, 0, 0, 0, 0], "threads"),
            (&[COMPACT_MAGIC, COMPACT_VERSION, 0, 1, 1, 17 | KIND_FLAG, 0, 0], "op kind"),
            (&[COMPACT_MAGIC, COMPACT_VERSION, 0, 1, 1, 2, 0, 0x80, 0x80, 0x80, 0x01, 1, 0, 0], "offset"),
            (&[COMPACT_MAGIC, COMPACT_VERSION, 0, 1, 0, 1, 1, 0x04], "schedule padding"),
        ];
        for (bytes, what) in cases {
            match Workload::decode_compact(bytes) {
                Err(CodecError::OutOfRange { what: w, .. }) => assert_eq!(w, what),
                other => panic!("{what}: {other:?}"),
            }
        }
        let ok = [COMPACT_MAGIC, COMPACT_VERSION, 0, 1, 0, 0, 0];
        assert!(Workload::decode_compact(&ok).is_ok());
        assert_eq!(
            Workload::decode_compact(&[ok.as_slice(), &[0]].concat()),
            Err(CodecError::Trailing { count: 1 })
        );
    }

    #[test]
    fn every_prefix_of_an_encoding_is_an_error_not_a_panic() {
        let w = Workload::from_seed(3);
        let bytes = w.encode_compact();
        for end in 0..bytes.len() {
            assert!(Workload::decode_compact(&bytes[..end]).is_err(), "prefix {end}");
        }
    }
}
