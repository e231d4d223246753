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
use crate::pmem::{Backing, Device, PmemAddr};

/// Corruptions applied to one image (further input bytes are ignored).
pub const CORRUPTIONS_MAX: usize = 64;
/// Raw-image inputs are laid from address 0 and truncated here (superblock, checkpoints and
/// the start of the journal).
pub const RAW_BYTES_MAX: usize = 64 << 10;

const SITE_BUILD: &str = "crashsim::fuzzing::BaseImage::build";
const SITE_CORRUPT: &str = "crashsim::fuzzing::corrupt";

/// A small, valid, deterministic daxfs image: files with written and unwritten extents, a
/// checkpoint, and committed transactions still in the journal after it.
///
/// Its media is held flat, every byte in one buffer, so a device made from it reads a page
/// with one copy. The image as built is layers of copy-on-write pages over mkfs's procedural
/// background; reading through them cost most of an input's time (a debug build checks the
/// background's zeros word by word). [`BaseImage::build_layered`] keeps those layers, for
/// the tests that compare the two.
#[derive(Clone)]
pub struct BaseImage {
    /// The image's geometry: [`IMAGE_DEVICE_BYTES`] with a PMD of [`PMD_BLOCKS`] blocks.
    pub geom: Geometry,
    image: Arc<dyn Backing>,
    /// The whole media, byte for byte what `image` reads.
    bytes: Arc<[u8]>,
}

impl std::fmt::Debug for BaseImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BaseImage").field("geom", &self.geom).finish_non_exhaustive()
    }
}

/// Media held as one buffer: a read is one copy.
struct FlatImage(Arc<[u8]>);

impl Backing for FlatImage {
    fn size_bytes(&self) -> u64 {
        self.0.len() as u64
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        let start = addr as usize;
        buf.copy_from_slice(&self.0[start..start + buf.len()]);
    }
}

impl BaseImage {
    /// Builds the image through the daxfs metadata API (no bugs enabled), flattened.
    pub fn build() -> Result<BaseImage, FsError> {
        let layered = BaseImage::build_layered()?;
        let bytes = layered.bytes.clone();
        Ok(BaseImage { geom: layered.geom, image: Arc::new(FlatImage(bytes.clone())), bytes })
    }

    /// The same image with the media as the build leaves it: copy-on-write pages over the
    /// layers below (the plain path [`BaseImage::build`] must read the same as).
    pub fn build_layered() -> Result<BaseImage, FsError> {
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
        let image = dev.image().clone();
        let mut bytes = vec![0u8; image.size_bytes() as usize];
        image.materialize_into(&mut bytes);
        Ok(BaseImage { geom, image: Arc::new(image), bytes: bytes.into() })
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

    /// The base image's media, whole.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
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
    let Some(dev) = input_device(BaseImage::shared(), bytes) else {
        return Ok(());
    };
    let mut dev = dev.map_err(|e| harness_failure(cfg, &e.to_string()))?;
    check_mount(&mut dev, cfg)
}

/// The device `bytes` describe over `base`; `None` for the empty input.
fn input_device(base: &BaseImage, bytes: &[u8]) -> Option<Result<Device, FsError>> {
    let (&mode, rest) = bytes.split_first()?;
    let shape = match mode % 3 {
        0 => Shape::Overwrite,
        1 => Shape::BitFlips,
        _ => Shape::Raw,
    };
    Some(image_for(base, shape, rest))
}

fn image_for(base: &BaseImage, shape: Shape, rest: &[u8]) -> Result<Device, FsError> {
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::rng::{RngExt, rng_from_seed};

    /// Everything `dev` holds, as read through it.
    pub(in crate::fuzzing) fn media(dev: &Device) -> Vec<u8> {
        let mut bytes = vec![0u8; dev.size_bytes() as usize];
        dev.read(PmemAddr(0), &mut bytes).expect("the whole device reads");
        bytes
    }

    /// What mounting `dev` gives, comparable: the metadata, recovery info and problems, or the
    /// error; then what the device holds after it.
    pub(in crate::fuzzing) fn mount_outcome(dev: &mut Device, bugs: BugSet) -> (String, Vec<u8>) {
        let mounted = MetaStore::mount_unchecked(dev, bugs).map(|(s, info, p)| (s.meta().clone(), info, p));
        (format!("{mounted:?}"), media(dev))
    }

    /// The committed inputs of `target`, sorted by name.
    pub(in crate::fuzzing) fn corpus(target: &str) -> Vec<Vec<u8>> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(target);
        let mut paths: Vec<_> =
            std::fs::read_dir(dir).expect("corpus dir").map(|e| e.expect("entry").path()).collect();
        paths.sort();
        paths.iter().map(|p| std::fs::read(p).expect("reads")).collect()
    }

    /// The corpus, the generated seeds and `random` seeded random inputs of up to `len` bytes.
    pub(in crate::fuzzing) fn inputs(target: &str, random: u64, len: usize) -> Vec<Vec<u8>> {
        let mut all = corpus(target);
        all.extend(
            super::super::seed_inputs(target, 64).expect("a seeded target").into_iter().map(|(_, b)| b),
        );
        for seed in 0..random {
            let mut rng = rng_from_seed(seed);
            let n = rng.random_range(0..=len);
            all.push((0..n).map(|_| rng.random::<u8>()).collect());
        }
        all
    }

    #[test]
    fn flat_base_reads_as_the_layered_build() {
        let (flat, layered) = (BaseImage::build().unwrap(), BaseImage::build_layered().unwrap());
        assert_eq!(flat.geom, layered.geom);
        let want = media(&layered.device());
        assert_eq!(media(&flat.device()), want);
        assert_eq!(flat.bytes(), &want[..]);
        // Unaligned reads across page boundaries too.
        let (f, l) = (flat.device(), layered.device());
        for (addr, len) in [(4090, 12), (1, 8191), (8 << 10, 4096), (IMAGE_DEVICE_BYTES - 5, 5)] {
            let (mut a, mut b) = (vec![0u8; len], vec![1u8; len]);
            f.read(PmemAddr(addr), &mut a).unwrap();
            l.read(PmemAddr(addr), &mut b).unwrap();
            assert_eq!(a, b, "{addr:#x}+{len}");
        }
    }

    /// The shortcut (a flat base image) against the plain path (the layers the build leaves):
    /// every input makes a device holding the same bytes, which mounts to the same result.
    #[test]
    fn mount_image_on_the_flat_base_matches_the_layered_base() {
        let (flat, layered) = (BaseImage::build().unwrap(), BaseImage::build_layered().unwrap());
        let bugs = [BugSet::NONE, BugSet::NONE.with(crate::daxfs::Bug::ReplaySkipsCrc)];
        for (k, bytes) in inputs("mount_image", 64, 4 * 12 * CORRUPTIONS_MAX).iter().enumerate() {
            let (Some(a), Some(b)) = (input_device(&flat, bytes), input_device(&layered, bytes)) else {
                assert!(bytes.is_empty());
                continue;
            };
            let (mut a, mut b) = (a.expect("flat"), b.expect("layered"));
            assert!(media(&a) == media(&b), "input {k}: the devices differ");
            let bugs = bugs[k % 2];
            assert!(mount_outcome(&mut a, bugs) == mount_outcome(&mut b, bugs), "input {k}: mounts differ");
        }
    }
}
