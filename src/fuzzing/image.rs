//! `mount_image`: a valid image with arbitrary corruptions, or raw bytes, is mounted.
//!
//! Invariants checked: mount returns `Ok` or a typed error, never panics; no single allocation
//! exceeds [`ALLOC_BYTES_MAX`]; when mount returns `Ok` the problems it reports are exactly
//! what fsck finds, and a clean mount mounts again to the same metadata.

use std::sync::{Arc, OnceLock};

use super::alloc::{ALLOC_BYTES_MAX, largest_alloc_since};
use super::{Failure, FuzzConfig, IMAGE_DEVICE_BYTES, PMD_BLOCKS};
use crate::crash::guarded;
use crate::daxfs::layout::mkfs;
use crate::daxfs::store::MetaStore;
use crate::daxfs::{BLOCK_BYTES, BlockNr, BugSet, Extent, ExtentState, FsError, Geometry, Record, fsck};
use crate::pmem::{Device, PmemAddr, SparseImage};

/// Corruptions applied to one image (further input bytes are ignored).
pub const CORRUPTIONS_MAX: usize = 64;
/// Raw-image inputs are laid from address 0 and truncated here (superblock, checkpoints and
/// the start of the journal).
pub const RAW_BYTES_MAX: usize = 64 << 10;

const SITE_BUILD: &str = "crashsim::fuzzing::BaseImage::build";
const SITE_CORRUPT: &str = "crashsim::fuzzing::corrupt";

/// A small, valid, deterministic daxfs image: files with written and unwritten extents, a
/// checkpoint, and committed transactions still in the journal after it.
#[derive(Clone, Debug)]
pub struct BaseImage {
    /// The image's geometry: [`IMAGE_DEVICE_BYTES`] with a PMD of [`PMD_BLOCKS`] blocks.
    pub geom: Geometry,
    image: Arc<SparseImage>,
}

impl BaseImage {
    /// Builds the image through the daxfs metadata API (no bugs enabled).
    pub fn build() -> Result<BaseImage, FsError> {
        let geom = Geometry::new(IMAGE_DEVICE_BYTES)?.with_pmd_blocks(PMD_BLOCKS);
        let mut dev = mkfs(&geom)?;
        let mut store = MetaStore::mount(&mut dev, BugSet::NONE)?;
        for (i, state) in
            [ExtentState::Written, ExtentState::Unwritten, ExtentState::Written].into_iter().enumerate()
        {
            create_file(&mut store, &mut dev, 2 + i as u64, state)?;
            if i == 1 {
                store.checkpoint(&mut dev)?;
            }
        }
        punch_first_block(&mut store, &mut dev)?;
        store.force_all(&mut dev)?;
        Ok(BaseImage { geom, image: Arc::new(dev.image().clone()) })
    }

    /// The process-wide base image (built on first use; deterministic).
    pub fn shared() -> &'static BaseImage {
        static BASE: OnceLock<BaseImage> = OnceLock::new();
        BASE.get_or_init(|| BaseImage::build().expect("harness bug: the base image must build"))
    }

    /// A device whose media is the base image (writes go to the device's own overlay).
    pub fn device(&self) -> Device {
        Device::with_backing(self.image.clone())
    }
}

fn create_file(
    store: &mut MetaStore,
    dev: &mut Device,
    blocks: u64,
    state: ExtentState,
) -> Result<(), FsError> {
    let ino = store.free_inode()?;
    store.commit(dev, &[Record::InodeCreate { ino }], SITE_BUILD)?;
    let phys = store.alloc(dev, blocks, 1)?;
    let extent = Extent { file_block: 0, phys, len: blocks, state };
    let records = [
        Record::BitmapSet { start: phys, len: blocks },
        Record::ExtentSet { ino, extent },
        Record::InodeSize { ino, size_bytes: blocks * BLOCK_BYTES },
    ];
    store.commit(dev, &records, SITE_BUILD)?;
    Ok(())
}

/// Frees the first block of the first file: a journalled `ExtentRemove` + `BitmapClear`.
fn punch_first_block(store: &mut MetaStore, dev: &mut Device) -> Result<(), FsError> {
    let ino = store.meta().inodes.iter().position(|i| i.live).map(|i| crate::daxfs::Ino(i as u32));
    let ino = ino.ok_or(FsError::Invalid("base image has no file"))?;
    let phys: BlockNr = store.inode(ino)?.lookup(0).ok_or(FsError::Invalid("file 0 has no block 0"))?.phys;
    let records =
        [Record::ExtentRemove { ino, file_block: 0, len: 1 }, Record::BitmapClear { start: phys, len: 1 }];
    store.commit(dev, &records, SITE_BUILD)?;
    Ok(())
}

/// How an input becomes an image: selected by its first byte.
enum Shape {
    /// 12-byte chunks: word index (u32) and a value (u64) stored over the base image's metadata.
    Overwrite,
    /// 4-byte chunks: a bit index flipped in the base image's metadata.
    BitFlips,
    /// The bytes themselves from address 0, on an all-zero device.
    Raw,
}

/// Mounts the image `bytes` describe and checks the invariants above.
pub fn mount_image(bytes: &[u8], cfg: &FuzzConfig) -> Result<(), Failure> {
    let Some((&mode, rest)) = bytes.split_first() else {
        return Ok(());
    };
    let shape = match mode % 3 {
        0 => Shape::Overwrite,
        1 => Shape::BitFlips,
        _ => Shape::Raw,
    };
    let mut dev = image_for(shape, rest).map_err(|e| harness_failure(cfg, &e.to_string()))?;
    check_mount(&mut dev, cfg)
}

fn image_for(shape: Shape, rest: &[u8]) -> Result<Device, FsError> {
    let base = BaseImage::shared();
    let meta_bytes = base.geom.data_start().0 * BLOCK_BYTES;
    match shape {
        Shape::Overwrite => {
            let mut dev = base.device();
            for c in rest.chunks_exact(12).take(CORRUPTIONS_MAX) {
                let word = u64::from(u32::from_le_bytes(c[..4].try_into().expect("4 bytes")));
                let value = u64::from_le_bytes(c[4..].try_into().expect("8 bytes"));
                dev.store_u64(PmemAddr((word * 8) % meta_bytes), value, SITE_CORRUPT)?;
            }
            Ok(dev)
        }
        Shape::BitFlips => {
            let mut dev = base.device();
            for c in rest.chunks_exact(4).take(CORRUPTIONS_MAX) {
                let bit = u64::from(u32::from_le_bytes(c.try_into().expect("4 bytes"))) % (meta_bytes * 8);
                let addr = PmemAddr(bit / 64 * 8);
                let word = dev.read_u64(addr)? ^ (1 << (bit % 64));
                dev.store_u64(addr, word, SITE_CORRUPT)?;
            }
            Ok(dev)
        }
        Shape::Raw => {
            let mut dev = Device::new(IMAGE_DEVICE_BYTES);
            let mut raw = rest[..rest.len().min(RAW_BYTES_MAX)].to_vec();
            raw.resize(raw.len().next_multiple_of(8), 0);
            if !raw.is_empty() {
                dev.store(PmemAddr(0), &raw, SITE_CORRUPT)?;
            }
            Ok(dev)
        }
    }
}

fn harness_failure(cfg: &FuzzConfig, what: &str) -> Failure {
    Failure { summary: format!("harness: {what}"), repro: cfg.repro("mount_image") }
}

fn failure(cfg: &FuzzConfig, target: &str, summary: String) -> Failure {
    Failure { summary, repro: cfg.repro(target) }
}

/// The mount checks shared with `journal_replay`; returns the mounted store when mount is `Ok`.
pub(super) fn mount_checked(
    dev: &mut Device,
    cfg: &FuzzConfig,
    target: &str,
) -> Result<Option<(MetaStore, crate::daxfs::RecoveryInfo)>, Failure> {
    let bugs = cfg.bugs;
    let (outcome, largest) =
        largest_alloc_since(|| guarded(|| Ok(MetaStore::mount_unchecked(&mut *dev, bugs))));
    if largest > ALLOC_BYTES_MAX {
        return Err(failure(
            cfg,
            target,
            format!("mount allocated {largest} bytes at once (max {ALLOC_BYTES_MAX})"),
        ));
    }
    let (store, info, problems) = match outcome {
        Err(panic) => return Err(failure(cfg, target, format!("mount {panic}"))),
        Ok(Err(_typed)) => return Ok(None),
        Ok(Ok(mounted)) => mounted,
    };
    let found = fsck(store.meta(), store.geometry());
    if found != problems {
        return Err(failure(cfg, target, format!("mount reported {problems:?} but fsck finds {found:?}")));
    }
    Ok(Some((store, info)))
}

fn check_mount(dev: &mut Device, cfg: &FuzzConfig) -> Result<(), Failure> {
    let Some((store, _)) = mount_checked(dev, cfg, "mount_image")? else {
        return Ok(());
    };
    if !fsck(store.meta(), store.geometry()).is_empty() {
        return Ok(()); // damage reported by the mount itself
    }
    match mount_checked(dev, cfg, "mount_image")? {
        Some((again, _)) if again.meta() == store.meta() => Ok(()),
        Some(_) => {
            Err(failure(cfg, "mount_image", "a clean mount mounts again to different metadata".into()))
        }
        None => Err(failure(cfg, "mount_image", "a clean mount does not mount again".into())),
    }
}
