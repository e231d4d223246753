use std::sync::Arc;

use super::media::{Background, Backing, SparseImage};
use super::trace::{Op, Trace};
use super::{FlushKind, LINE_BYTES, PmemAddr, PmemError, UNIT_BYTES};

/// Default bound on the trace length of one device (a named limit, docs/design.md §10).
pub const TRACE_EVENTS_MAX_DEFAULT: usize = 1 << 24;

/// The simulated NVDIMM as the system under test sees it.
///
/// Reads return the latest stored value in program order, whatever is durable. Every store,
/// flush and fence is appended to the trace; which of them survive a power cut is decided
/// afterwards by a [`super::Tracker`] walking that trace from [`Device::initial`].
pub struct Device {
    initial: Arc<dyn Backing>,
    image: SparseImage,
    trace: Trace,
    trace_events_max: usize,
}

impl Device {
    /// A zero-filled device of `size_bytes` (rounded to nothing: any size is allowed).
    pub fn new(size_bytes: u64) -> Self {
        Self::with_backing(Arc::new(Background::zeroed(size_bytes)))
    }

    /// A device whose media initially holds `initial` (a background, an image, a crash view).
    /// Nothing is copied: writes go to a private copy-on-write overlay.
    pub fn with_backing(initial: Arc<dyn Backing>) -> Self {
        let image = SparseImage::new(Arc::clone(&initial));
        Self { initial, image, trace: Trace::default(), trace_events_max: TRACE_EVENTS_MAX_DEFAULT }
    }

    /// Bounds the trace at `events_max` events (default [`TRACE_EVENTS_MAX_DEFAULT`]): a call
    /// that would record one more fails with [`PmemError::TraceFull`] and changes nothing.
    pub fn set_trace_events_max(&mut self, events_max: usize) {
        self.trace_events_max = events_max;
    }

    /// The device's size in bytes, fixed by its initial media.
    pub fn size_bytes(&self) -> u64 {
        self.image.size_bytes()
    }

    /// The media content the trace starts from.
    pub fn initial(&self) -> &Arc<dyn Backing> {
        &self.initial
    }

    /// Every store, flush and fence issued since the device was made (or last rebased).
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// The current (program-order) content, as if every store had persisted.
    pub fn image(&self) -> &SparseImage {
        &self.image
    }

    /// Ends tracing: the current content becomes the initial content of a fresh trace. Used after
    /// mkfs, whose own crash states are not interesting. The caller asserts everything is durable.
    pub fn rebase(&mut self) {
        let frozen: Arc<dyn Backing> = Arc::new(self.image.clone());
        *self = Self { trace_events_max: self.trace_events_max, ..Self::with_backing(frozen) };
    }

    /// The device taken apart: its initial media, its current (program-order) content and
    /// its trace.
    pub fn into_parts(self) -> (Arc<dyn Backing>, SparseImage, Trace) {
        (self.initial, self.image, self.trace)
    }

    /// Marks the events from here on as issued by `thread`, in the target's operation `op`
    /// of that thread (see [`crate::pmem::TraceStep`]). Optional: it only labels the trace for
    /// `show`; crash states and verdicts never depend on it.
    pub fn begin_step(&mut self, thread: u8, op: u32) {
        self.trace.mark_step(thread, op);
    }

    /// Write-back store. `addr` and `bytes.len()` must be multiples of 8.
    pub fn store(&mut self, addr: PmemAddr, bytes: &[u8], site: &'static str) -> Result<(), PmemError> {
        self.check_store("store", addr.0, bytes.len() as u64)?;
        self.trace.push_store(false, addr.0, bytes, site);
        self.image.write_at(addr.0, bytes);
        Ok(())
    }

    /// Write-back store of one aligned 8-byte word.
    pub fn store_u64(&mut self, addr: PmemAddr, value: u64, site: &'static str) -> Result<(), PmemError> {
        self.check_store("store", addr.0, UNIT_BYTES)?;
        self.trace.push_store(false, addr.0, &value.to_le_bytes(), site);
        self.image.write_u64(addr.0, value);
        Ok(())
    }

    /// Non-temporal store (movnt): bypasses the cache, durable at the next fence.
    pub fn store_nt(&mut self, addr: PmemAddr, bytes: &[u8], site: &'static str) -> Result<(), PmemError> {
        self.check_store("store_nt", addr.0, bytes.len() as u64)?;
        self.trace.push_store(true, addr.0, bytes, site);
        self.image.write_at(addr.0, bytes);
        Ok(())
    }

    /// Flushes every cache line overlapping `addr..addr + len`.
    pub fn flush(
        &mut self,
        addr: PmemAddr,
        len: u64,
        kind: FlushKind,
        site: &'static str,
    ) -> Result<(), PmemError> {
        if len == 0 {
            return Err(PmemError::Empty { what: "flush", addr: addr.0 });
        }
        self.check_range(addr.0, len)?;
        self.check_trace_room()?;
        let start = addr.0 & !(LINE_BYTES - 1);
        let end = (addr.0 + len).next_multiple_of(LINE_BYTES);
        self.trace.push(Op::Flush { addr: start, len: end - start, kind }, site);
        Ok(())
    }

    /// Store fence (sfence).
    pub fn fence(&mut self, site: &'static str) -> Result<(), PmemError> {
        self.check_trace_room()?;
        self.trace.push(Op::Fence, site);
        Ok(())
    }

    /// Reads the latest stored bytes (program order), whatever is durable.
    pub fn read(&self, addr: PmemAddr, buf: &mut [u8]) -> Result<(), PmemError> {
        self.check_range(addr.0, buf.len() as u64)?;
        self.image.read_at(addr.0, buf);
        Ok(())
    }

    /// Reads bytes the caller only compares with bytes it is about to store, to skip storing
    /// an identical copy (see [`Backing::read_blind`]): the result may decide which stores are
    /// issued, never what the device holds after them. Recovery must not use it for anything
    /// else, or the crash explorer's read tracking misses an input.
    pub fn read_blind(&self, addr: PmemAddr, buf: &mut [u8]) -> Result<(), PmemError> {
        self.check_range(addr.0, buf.len() as u64)?;
        self.image.read_blind(addr.0, buf);
        Ok(())
    }

    /// Reads the latest stored 8-byte word at `addr`, little-endian (any alignment).
    pub fn read_u64(&self, addr: PmemAddr) -> Result<u64, PmemError> {
        let mut b = [0u8; 8];
        self.read(addr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn check_range(&self, addr: u64, len: u64) -> Result<(), PmemError> {
        let size_bytes = self.size_bytes();
        match addr.checked_add(len) {
            Some(end) if end <= size_bytes => Ok(()),
            _ => Err(PmemError::OutOfRange { addr, len, size_bytes }),
        }
    }

    fn check_store(&self, what: &'static str, addr: u64, len: u64) -> Result<(), PmemError> {
        if len == 0 {
            return Err(PmemError::Empty { what, addr });
        }
        if addr % UNIT_BYTES != 0 || len % UNIT_BYTES != 0 {
            return Err(PmemError::Misaligned { what, addr, len, align: UNIT_BYTES });
        }
        self.check_range(addr, len)?;
        self.check_trace_room()
    }

    fn check_trace_room(&self) -> Result<(), PmemError> {
        if self.trace.len() >= self.trace_events_max {
            return Err(PmemError::TraceFull { events_max: self.trace_events_max });
        }
        Ok(())
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("size_bytes", &self.size_bytes())
            .field("trace_events", &self.trace.len())
            .finish()
    }
}
