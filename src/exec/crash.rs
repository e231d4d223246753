//! The daxfs crash oracle: after recovery, read every file through the recovered metadata and
//! classify every word against the run record (DESIGN §6); fsck the recovered allocator.

use crate::daxfs::fsck::fsck;
use crate::daxfs::store::MetaStore;
use crate::daxfs::tag::Word;
use crate::daxfs::{BLOCK_BYTES, BlockNr, ExtentState, Ino};
use crate::pmem::{Device, PmemAddr};

use super::record::{RunRecord, WordVerdict};

#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CrashClass {
    StaleData,
    ForeignData,
    LostWrite,
    AllocatorInconsistent,
}

/// One crash-oracle finding, with the evidence the engine completes.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CrashFinding {
    pub class: CrashClass,
    pub message: String,
    pub ino: Option<u32>,
    pub file_id: Option<u32>,
    pub word_off: Option<u64>,
    /// Device address of the offending word.
    pub pmem_addr: Option<u64>,
    pub found: Option<String>,
    pub allowed: Option<String>,
}

/// Checks a recovered file system against the record, as of crash point `point`.
pub fn check(store: &MetaStore, dev: &Device, record: &RunRecord, point: usize) -> Vec<CrashFinding> {
    let mut out: Vec<CrashFinding> = fsck(store.meta(), store.geometry())
        .into_iter()
        .map(|p| CrashFinding {
            class: CrashClass::AllocatorInconsistent,
            message: format!("fsck after recovery: {p}"),
            ino: None,
            file_id: None,
            word_off: None,
            pmem_addr: None,
            found: None,
            allowed: None,
        })
        .take(1)
        .collect();
    let landed = record.landed();
    for (ino, inode) in store.meta().inodes.iter().enumerate() {
        if !inode.live {
            continue;
        }
        let ino = Ino(ino as u32);
        let words_end = inode.size_bytes / 8;
        let candidates: Vec<u32> = record.candidates(ino, point).map(|f| f.file_id).collect();
        if candidates.is_empty() {
            out.push(CrashFinding {
                class: CrashClass::AllocatorInconsistent,
                message: format!(
                    "inode {} is live after recovery but was never created before the crash",
                    ino.0
                ),
                ino: Some(ino.0),
                file_id: None,
                word_off: None,
                pmem_addr: None,
                found: None,
                allowed: None,
            });
            continue;
        }
        let histories: Vec<_> =
            candidates.iter().map(|&f| (f, record.history(f, point, words_end, &landed))).collect();
        if let Some(f) = check_file(store, dev, ino, words_end, &histories) {
            out.push(f);
        }
    }
    out
}

/// The first bad word of one file, if any.
fn check_file(
    store: &MetaStore,
    dev: &Device,
    ino: Ino,
    words_end: u64,
    histories: &[(u32, super::record::FileHistory<'_>)],
) -> Option<CrashFinding> {
    let inode = store.inode(ino).ok()?;
    let words_per_page = BLOCK_BYTES / 8;
    let mut buf = vec![0u8; BLOCK_BYTES as usize];
    for page in 0..words_end.div_ceil(words_per_page) {
        let mapped = inode.lookup(page).map(|e| (BlockNr(e.phys.0 + page - e.file_block), e.state));
        let block = match mapped {
            Some((b, ExtentState::Written)) => {
                dev.read(store.geometry().block_addr(b), &mut buf).ok()?;
                Some(b)
            }
            _ if histories.iter().all(|(_, h)| h.page_untouched(page * words_per_page)) => continue,
            _ => {
                buf.fill(0);
                None
            }
        };
        let lo = page * words_per_page;
        for word in lo..(lo + words_per_page).min(words_end) {
            let k = ((word - lo) * 8) as usize;
            let value = u64::from_le_bytes(buf[k..k + 8].try_into().expect("8 bytes"));
            let found = Word::decode(value);
            let verdicts: Vec<(u32, WordVerdict)> =
                histories.iter().map(|(f, h)| (*f, h.judge(*f, word, found, block))).collect();
            if verdicts.iter().any(|(_, v)| *v == WordVerdict::Ok) {
                continue;
            }
            let (file_id, verdict) = verdicts.last().cloned().expect("at least one candidate");
            let class = match verdict {
                WordVerdict::Lost { .. } => CrashClass::LostWrite,
                WordVerdict::Foreign => CrashClass::ForeignData,
                _ => CrashClass::StaleData,
            };
            let allowed = match verdict {
                WordVerdict::Lost { acked_version } => {
                    format!("file {file_id} word {word} version >= {acked_version} (acknowledged durable)")
                }
                _ => format!("zero or a version of file {file_id} word {word} written before the crash"),
            };
            return Some(CrashFinding {
                class,
                message: format!("inode {} (file {file_id}) word {word} after recovery: {found:?}", ino.0),
                ino: Some(ino.0),
                file_id: Some(file_id),
                word_off: Some(word),
                pmem_addr: block.map(|b| store.geometry().block_addr(b).0 + (word - lo) * 8),
                found: Some(format!("{found:?}")),
                allowed: Some(allowed),
            });
        }
    }
    None
}

/// A digest of the recovered logical state (metadata and file contents) for comparing
/// recoveries (RecoveryNotIdempotent).
pub fn fingerprint(store: &MetaStore, dev: &Device) -> u64 {
    let mut h = crc32fast::Hasher::new();
    let mut h2 = crc32fast::Hasher::new_with_initial(0x5bd1_e995);
    let meta = format!("{:?}", store.meta());
    h.update(meta.as_bytes());
    h2.update(meta.as_bytes());
    let mut buf = vec![0u8; BLOCK_BYTES as usize];
    for inode in store.meta().inodes.iter().filter(|i| i.live) {
        for e in inode.extents.iter().filter(|e| e.state == ExtentState::Written) {
            for k in 0..e.len {
                let addr: PmemAddr = store.geometry().block_addr(BlockNr(e.phys.0 + k));
                if dev.read(addr, &mut buf).is_ok() {
                    h.update(&buf);
                    h2.update(&buf);
                }
            }
        }
    }
    (u64::from(h.finalize()) << 32) | u64::from(h2.finalize())
}
