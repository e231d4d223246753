use std::collections::BTreeMap;
use std::sync::Arc;

/// Granularity of the sparse images: pages are created on first write, copied from below.
pub const PAGE_BYTES: u64 = 4096;

/// Read-only media content of a fixed size. Implementations: the procedural [`Background`],
/// a [`SparseImage`], a crash-state [`super::View`], a memory-mapped crash image.
pub trait Backing: Send + Sync {
    /// The content's size in bytes; every read lies inside `0..size_bytes`.
    fn size_bytes(&self) -> u64;
    /// Fills `buf` with the bytes at `addr..addr + buf.len()`. The caller guarantees the range
    /// is inside the device (it is a harness bug otherwise).
    fn read_at(&self, addr: u64, buf: &mut [u8]);
    /// Reads like [`Self::read_at`], for a reader whose results cannot depend on the bytes at
    /// once: a copy-on-write page copy (whose bytes count as read when they are read from the
    /// copy, see [`Self::note_read`]), or a comparison that only decides whether to skip
    /// storing bytes that are already there (the device ends up holding them either way). A
    /// backing that logs what recovery reads does not log this.
    fn read_blind(&self, addr: u64, buf: &mut [u8]) {
        self.read_at(addr, buf);
    }
    /// The reader consumed `addr..addr + len` of this backing's content through a copy made
    /// with [`Self::read_blind`] (or may have: a copy-on-write page holds written bytes too).
    fn note_read(&self, _addr: u64, _len: u64) {}
    /// For a crash-state [`super::View`]: the words (ascending by address) where it differs
    /// from its crash point's durable base. Oracles may use it to reuse work between states of
    /// one crash point; reads never depend on it.
    fn view_delta(&self) -> Option<&[(u64, u64)]> {
        None
    }
}

type WordFn = dyn Fn(u64) -> u64 + Send + Sync;

/// Procedural media content: the value of every aligned 8-byte word is a function of its
/// address. mkfs uses this to "poison" every data block without touching device-size memory.
#[derive(Clone)]
pub struct Background {
    size_bytes: u64,
    word: Option<Arc<WordFn>>,
    /// Bytes below this address are zero without asking `word` (see
    /// [`Background::procedural_above`]).
    zero_below: u64,
}

impl Background {
    /// All-zero content of `size_bytes`.
    pub fn zeroed(size_bytes: u64) -> Self {
        Self { size_bytes, word: None, zero_below: 0 }
    }

    /// `word(addr)` gives the little-endian value of the 8-byte word at aligned `addr`.
    pub fn procedural(size_bytes: u64, word: impl Fn(u64) -> u64 + Send + Sync + 'static) -> Self {
        Self { size_bytes, word: Some(Arc::new(word)), zero_below: 0 }
    }

    /// [`Self::procedural`] for a `word` that is zero at every address below `zero_below`
    /// (8-aligned): reads there fill zeros without calling it. A debug build checks the
    /// promise on every word it skips.
    pub fn procedural_above(
        size_bytes: u64,
        zero_below: u64,
        word: impl Fn(u64) -> u64 + Send + Sync + 'static,
    ) -> Self {
        assert!(zero_below % 8 == 0, "zero_below {zero_below:#x} is not 8-aligned");
        Self { size_bytes, word: Some(Arc::new(word)), zero_below }
    }
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("size_bytes", &self.size_bytes)
            .field("procedural", &self.word.is_some())
            .finish()
    }
}

impl Backing for Background {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        let Some(word) = &self.word else {
            buf.fill(0);
            return;
        };
        if addr < self.zero_below {
            let zeros = usize::try_from(self.zero_below - addr).map_or(buf.len(), |n| n.min(buf.len()));
            if crate::self_check_due!() {
                assert!(
                    (addr & !7..addr + zeros as u64).step_by(8).all(|a| word(a) == 0),
                    "a procedural background promised zeros below {:#x}",
                    self.zero_below
                );
            }
            let (zero, rest) = buf.split_at_mut(zeros);
            zero.fill(0);
            if rest.is_empty() {
                return;
            }
            return self.read_at(addr + zeros as u64, rest);
        }
        if addr % 8 == 0 && buf.len() % 8 == 0 {
            for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
                chunk.copy_from_slice(&word(addr + i as u64 * 8).to_le_bytes());
            }
            return;
        }
        let mut pos = 0usize;
        while pos < buf.len() {
            let a = addr + pos as u64;
            let aligned = a & !7;
            let bytes = word(aligned).to_le_bytes();
            let skip = (a - aligned) as usize;
            let take = (8 - skip).min(buf.len() - pos);
            buf[pos..pos + take].copy_from_slice(&bytes[skip..skip + take]);
            pos += take;
        }
    }
}

type Page = [u8; PAGE_BYTES as usize];

/// Pages per chunk of the page table. A store looks up its chunk in a map of chunks (few
/// entries, so the search is short) and then indexes the chunk directly.
const CHUNK_PAGES: u64 = 64;
type Chunk = [Option<Arc<Page>>; CHUNK_PAGES as usize];

/// Who holds the bytes of one page of a [`SparseImage`]: its own copy, or the content below.
/// Equal sources (the same holder, compared by address) hold equal bytes: a page is shared
/// behind an `Arc` and copied before any write while shared, the content below never changes,
/// and a source keeps its holder alive, so the address cannot be reused for other bytes while
/// the source exists. Unequal sources say nothing.
#[derive(Clone)]
pub enum PageSource {
    /// The overlay's own copy of the page.
    Own(Arc<Page>),
    /// Not written in the overlay: the bytes of `lower` at the page.
    Lower(Arc<dyn Backing>),
}

impl PageSource {
    /// The holder's kind and address: equal for equal sources (see [`PartialEq`]).
    pub(crate) fn ptr(&self) -> (u8, usize) {
        match self {
            Self::Own(p) => (0, Arc::as_ptr(p) as *const u8 as usize),
            Self::Lower(l) => (1, Arc::as_ptr(l) as *const u8 as usize),
        }
    }
}

impl PartialEq for PageSource {
    fn eq(&self, other: &Self) -> bool {
        self.ptr() == other.ptr()
    }
}

impl Eq for PageSource {}

impl std::fmt::Debug for PageSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Own(_) => f.write_str("PageSource::Own"),
            Self::Lower(_) => f.write_str("PageSource::Lower"),
        }
    }
}

/// A copy-on-write overlay of whole pages over a lower [`Backing`]. Cloning is O(chunks
/// written) ≤ O(pages written), never O(device size): chunks and pages are shared until one
/// side writes them.
#[derive(Clone)]
pub struct SparseImage {
    lower: Arc<dyn Backing>,
    size_bytes: u64,
    /// Chunk index → chunk; a page is present iff it was written since the image was created.
    chunks: BTreeMap<u64, Arc<Chunk>>,
    pages_written: usize,
}

impl SparseImage {
    /// An overlay of no pages over `lower`: it reads as `lower` until written, and its size is
    /// `lower`'s.
    pub fn new(lower: Arc<dyn Backing>) -> Self {
        let size_bytes = lower.size_bytes();
        Self { lower, size_bytes, chunks: BTreeMap::new(), pages_written: 0 }
    }

    /// The content below the overlay, what unwritten pages read as.
    pub fn lower(&self) -> &Arc<dyn Backing> {
        &self.lower
    }

    /// Number of pages this image holds privately (written since it was created).
    pub fn pages_written(&self) -> usize {
        self.pages_written
    }

    /// Indexes of the pages this image holds privately, ascending.
    pub fn written_page_indexes(&self) -> impl Iterator<Item = u64> + '_ {
        self.chunks.iter().flat_map(|(&c, chunk)| {
            chunk
                .iter()
                .enumerate()
                .filter(|(_, p)| p.is_some())
                .map(move |(i, _)| c * CHUNK_PAGES + i as u64)
        })
    }

    /// Writes `bytes` at `addr` into the overlay (any alignment; the range must lie inside the
    /// image). Not traced: the system under test writes through [`super::Device`], whose
    /// current content this is.
    pub fn write_at(&mut self, addr: u64, bytes: &[u8]) {
        debug_assert!(addr + bytes.len() as u64 <= self.size_bytes());
        let mut pos = 0usize;
        while pos < bytes.len() {
            let a = addr + pos as u64;
            let index = a / PAGE_BYTES;
            let off = (a % PAGE_BYTES) as usize;
            let take = (PAGE_BYTES as usize - off).min(bytes.len() - pos);
            // A whole-page write needs nothing from below: skip the copy-on-write read.
            let page = self.page_mut_with(index, take == PAGE_BYTES as usize);
            page[off..off + take].copy_from_slice(&bytes[pos..pos + take]);
            pos += take;
        }
    }

    /// Writes the little-endian word `value` at `addr`, like [`Self::write_at`].
    pub fn write_u64(&mut self, addr: u64, value: u64) {
        let index = addr / PAGE_BYTES;
        let off = (addr % PAGE_BYTES) as usize;
        if off + 8 <= PAGE_BYTES as usize {
            self.page_mut(index)[off..off + 8].copy_from_slice(&value.to_le_bytes());
        } else {
            self.write_at(addr, &value.to_le_bytes());
        }
    }

    /// Writes each `(address, value)` of `words` (8-aligned) in order, as [`Self::swap_u64`]
    /// would, and calls `replaced(address, old, new)` for each: one page lookup per run of
    /// words on one page, not one per word.
    pub fn swap_words(
        &mut self,
        words: impl Iterator<Item = (u64, u64)>,
        mut replaced: impl FnMut(u64, u64, u64),
    ) {
        let mut words = words.peekable();
        while let Some((addr, value)) = words.next() {
            debug_assert_eq!(addr % 8, 0, "an aligned word");
            let index = addr / PAGE_BYTES;
            let page = self.page_mut(index);
            let mut swap = |addr: u64, value: u64| {
                let off = (addr % PAGE_BYTES) as usize;
                let word = &mut page[off..off + 8];
                let old = u64::from_le_bytes((&*word).try_into().expect("8 bytes"));
                word.copy_from_slice(&value.to_le_bytes());
                replaced(addr, old, value);
            };
            swap(addr, value);
            while let Some((addr, value)) = words.next_if(|&(a, _)| a / PAGE_BYTES == index) {
                swap(addr, value);
            }
        }
    }

    /// Writes the little-endian word `value` at `addr` and returns the word it replaced.
    pub fn swap_u64(&mut self, addr: u64, value: u64) -> u64 {
        let index = addr / PAGE_BYTES;
        let off = (addr % PAGE_BYTES) as usize;
        if off + 8 <= PAGE_BYTES as usize {
            let word = &mut self.page_mut(index)[off..off + 8];
            let old = u64::from_le_bytes((&*word).try_into().expect("8 bytes"));
            word.copy_from_slice(&value.to_le_bytes());
            old
        } else {
            let mut old = [0u8; 8];
            self.read_at(addr, &mut old);
            self.write_at(addr, &value.to_le_bytes());
            u64::from_le_bytes(old)
        }
    }

    /// Who holds the bytes of page `index` (see [`PageSource`]).
    pub fn page_source(&self, index: u64) -> PageSource {
        let chunk = self.chunks.get(&(index / CHUNK_PAGES));
        match chunk.and_then(|c| c[(index % CHUNK_PAGES) as usize].as_ref()) {
            Some(page) => PageSource::Own(Arc::clone(page)),
            None => PageSource::Lower(Arc::clone(&self.lower)),
        }
    }

    /// [`Self::page_source`]'s [`PageSource::ptr`], without taking a reference to the holder.
    pub(crate) fn page_holder(&self, index: u64) -> (u8, usize) {
        let chunk = self.chunks.get(&(index / CHUNK_PAGES));
        match chunk.and_then(|c| c[(index % CHUNK_PAGES) as usize].as_ref()) {
            Some(page) => (0, Arc::as_ptr(page) as *const u8 as usize),
            None => (1, Arc::as_ptr(&self.lower) as *const u8 as usize),
        }
    }

    fn page(&self, index: u64) -> Option<&Page> {
        let chunk = self.chunks.get(&(index / CHUNK_PAGES))?;
        chunk[(index % CHUNK_PAGES) as usize].as_deref()
    }

    fn page_mut(&mut self, index: u64) -> &mut Page {
        self.page_mut_with(index, false)
    }

    /// The private page `index`, created on first write: copied from below, or left zeroed when
    /// the caller overwrites all of it (`whole`).
    fn page_mut_with(&mut self, index: u64, whole: bool) -> &mut Page {
        let chunk = self.chunks.entry(index / CHUNK_PAGES).or_insert_with(|| Arc::new(empty_chunk()));
        let slot = &mut Arc::make_mut(chunk)[(index % CHUNK_PAGES) as usize];
        if slot.is_none() {
            *slot = Some(if whole {
                Arc::new([0u8; PAGE_BYTES as usize])
            } else {
                copy_page(&*self.lower, self.size_bytes, index)
            });
            self.pages_written += 1;
        }
        Arc::make_mut(slot.as_mut().expect("page just filled"))
    }

    /// Writes the whole image to `out` (which must be `size_bytes` long).
    pub fn materialize_into(&self, out: &mut [u8]) {
        assert_eq!(out.len() as u64, self.size_bytes());
        self.read_at(0, out);
    }
}

fn empty_chunk() -> Chunk {
    std::array::from_fn(|_| None)
}

/// Page `index` of `lower` (zero past the device end).
fn copy_page(lower: &dyn Backing, size_bytes: u64, index: u64) -> Arc<Page> {
    let mut page = Arc::new([0u8; PAGE_BYTES as usize]);
    let p = Arc::get_mut(&mut page).expect("a page just made has no other owner");
    let start = index * PAGE_BYTES;
    let len = (size_bytes - start).min(PAGE_BYTES) as usize;
    // Blind: what reads the copy later is noted then, and only for the bytes it reads.
    lower.read_blind(start, &mut p[..len]);
    page
}

impl Backing for SparseImage {
    fn size_bytes(&self) -> u64 {
        self.size_bytes
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        self.read_with(addr, buf, false);
    }
    fn read_blind(&self, addr: u64, buf: &mut [u8]) {
        self.read_with(addr, buf, true);
    }
    fn note_read(&self, addr: u64, len: u64) {
        self.lower.note_read(addr, len);
    }
}

impl SparseImage {
    fn read_with(&self, addr: u64, buf: &mut [u8], blind: bool) {
        let mut pos = 0usize;
        while pos < buf.len() {
            let a = addr + pos as u64;
            let index = a / PAGE_BYTES;
            let off = (a % PAGE_BYTES) as usize;
            let take = (PAGE_BYTES as usize - off).min(buf.len() - pos);
            let out = &mut buf[pos..pos + take];
            match self.page(index) {
                Some(page) => {
                    out.copy_from_slice(&page[off..off + take]);
                    if !blind {
                        // The private page was copied blind from below: these bytes may be
                        // the lower content's.
                        self.lower.note_read(a, take as u64);
                    }
                }
                None if blind => self.lower.read_blind(a, out),
                None => self.lower.read_at(a, out),
            }
            pos += take;
        }
    }
}

impl std::fmt::Debug for SparseImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SparseImage")
            .field("size_bytes", &self.size_bytes())
            .field("pages_written", &self.pages_written)
            .finish()
    }
}
