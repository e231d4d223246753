//! Reading an artifact back: every file checked (presence, size bound, checksum, version)
//! before anything is trusted.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::pmem::Backing;

use super::{
    ArtifactError, IMAGE_BYTES_MAX, IMAGE_FILE, INPUT_BYTES_MAX, INPUT_FILE, InputInfo, MANIFEST_BYTES_MAX,
    MANIFEST_FILE, Manifest, decode_manifest,
};

/// A crash image mapped read-only: a [`Backing`] without a copy.
#[derive(Debug)]
pub struct MappedImage {
    map: Mmap,
}

impl MappedImage {
    /// The whole image, checked against the manifest's size and CRC when it was loaded.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl Backing for MappedImage {
    fn size_bytes(&self) -> u64 {
        self.map.len() as u64
    }
    fn read_at(&self, addr: u64, buf: &mut [u8]) {
        let start = addr as usize;
        buf.copy_from_slice(&self.map[start..start + buf.len()]);
    }
}

/// A checked artifact.
pub struct Loaded {
    /// The artifact directory it was loaded from (error messages name files in it).
    pub dir: PathBuf,
    /// The manifest, checksum and version checked.
    pub manifest: Manifest,
    /// The bytes of `input.bin`, size and CRC checked; not yet decoded (see
    /// [`super::workload_of`]).
    pub input: Vec<u8>,
    /// `None` when the manifest records no image: a run-time violation, or a rebuild-only
    /// artifact (`repro` then rebuilds the image from the workload).
    pub image: Option<std::sync::Arc<MappedImage>>,
}

impl std::fmt::Debug for Loaded {
    /// The directory, the manifest and the sizes of the input and the image; not their bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("dir", &self.dir)
            .field("manifest", &self.manifest)
            .field("input_bytes", &self.input.len())
            .field("image_bytes", &self.image.as_ref().map(|i| i.size_bytes()))
            .finish()
    }
}

/// Reads and checks the artifact in `dir`.
pub fn load(dir: &Path) -> Result<Loaded, ArtifactError> {
    if !dir.exists() {
        return Err(ArtifactError::NoDirectory { path: dir.display().to_string() });
    }
    if !dir.is_dir() {
        return Err(ArtifactError::NotADirectory { path: dir.display().to_string() });
    }
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest = decode_manifest(&manifest_path, &read_bounded(&manifest_path, MANIFEST_BYTES_MAX)?)?;
    let input_path = dir.join(INPUT_FILE);
    let input = read_bounded(&input_path, INPUT_BYTES_MAX)?;
    check_input(&input_path, &manifest.input, &input)?;
    let image = match &manifest.image {
        None => None,
        Some(info) => {
            Some(std::sync::Arc::new(map_image(&dir.join(IMAGE_FILE), info.size_bytes, info.crc32)?))
        }
    };
    Ok(Loaded { dir: dir.to_path_buf(), manifest, input, image })
}

/// The files of an artifact held in memory: what [`load`] would read from a directory.
#[derive(Clone, Copy, Debug)]
pub struct ArtifactBytes<'a> {
    /// The bytes of `manifest.json`.
    pub manifest: &'a [u8],
    /// The bytes of `input.bin`.
    pub input: &'a [u8],
    /// The bytes of `crash.img`; `None` when there is no such file.
    pub image: Option<&'a [u8]>,
}

/// An artifact held in memory, checked as [`load`] checks one on disk.
#[derive(Clone, Debug)]
pub struct LoadedBytes<'a> {
    /// The manifest, checksum and version checked.
    pub manifest: Manifest,
    /// `input.bin`, size and CRC checked.
    pub input: &'a [u8],
    /// `crash.img`, size and CRC checked; `None` when the manifest records no image.
    pub image: Option<&'a [u8]>,
}

/// Checks the files of an artifact held in memory with exactly the checks, in the order, that
/// [`load`] applies to a directory holding them, and the same errors (naming the files as
/// if they were in `dir`, which is not read). Only the directory checks are not made: there
/// is none. Copies nothing: a fuzz harness loads its input this way without writing files.
pub fn load_bytes<'a>(dir: &Path, files: ArtifactBytes<'a>) -> Result<LoadedBytes<'a>, ArtifactError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest =
        decode_manifest(&manifest_path, bounded(&manifest_path, files.manifest, MANIFEST_BYTES_MAX)?)?;
    let input_path = dir.join(INPUT_FILE);
    let input = bounded(&input_path, files.input, INPUT_BYTES_MAX)?;
    check_input(&input_path, &manifest.input, input)?;
    let image = match &manifest.image {
        None => None,
        Some(info) => {
            let path = dir.join(IMAGE_FILE);
            let bytes =
                files.image.ok_or_else(|| ArtifactError::Missing { path: path.display().to_string() })?;
            check_image_size(&path, bytes.len() as u64, info.size_bytes)?;
            check_image_crc(&path, bytes, info.crc32)?;
            Some(bytes)
        }
    };
    Ok(LoadedBytes { manifest, input, image })
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let f = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    bounded(path, &bytes, max)?;
    Ok(bytes)
}

/// `bytes`, read from `path`, unless they are over `max`.
fn bounded<'a>(path: &Path, bytes: &'a [u8], max: u64) -> Result<&'a [u8], ArtifactError> {
    if bytes.len() as u64 > max {
        return Err(ArtifactError::corrupt(path, format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

fn check_input(path: &Path, info: &InputInfo, input: &[u8]) -> Result<(), ArtifactError> {
    if input.len() as u64 != info.size_bytes {
        let problem = format!("{} bytes, the manifest says {} (truncated?)", input.len(), info.size_bytes);
        return Err(ArtifactError::corrupt(path, problem));
    }
    if crc32fast::hash(input) != info.crc32 {
        return Err(ArtifactError::corrupt(path, "checksum mismatch"));
    }
    Ok(())
}

fn map_image(path: &Path, size_bytes: u64, crc32: u32) -> Result<MappedImage, ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    check_image_size(path, len, size_bytes)?;
    // SAFETY: the map is read-only and private to this process; crashsim never writes the
    // file while it is mapped. Another process truncating it would be a user error.
    let map = unsafe { Mmap::map(&f) }.map_err(io)?;
    check_image_crc(path, &map, crc32)?;
    Ok(MappedImage { map })
}

/// The image's length against the manifest's, before any of it is read.
fn check_image_size(path: &Path, len: u64, size_bytes: u64) -> Result<(), ArtifactError> {
    if len != size_bytes || len > IMAGE_BYTES_MAX {
        let problem = format!("{len} bytes, the manifest says {size_bytes} (truncated or wrong image?)");
        return Err(ArtifactError::corrupt(path, problem));
    }
    if len == 0 {
        return Err(ArtifactError::corrupt(path, "empty image"));
    }
    Ok(())
}

fn check_image_crc(path: &Path, image: &[u8], crc32: u32) -> Result<(), ArtifactError> {
    if crc32fast::hash(image) != crc32 {
        return Err(ArtifactError::corrupt(path, "checksum mismatch: the image is corrupt"));
    }
    Ok(())
}
