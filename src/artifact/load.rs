//! Reading an artifact back: every file checked (presence, size bound, checksum, version)
//! before anything is trusted.

use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::pmem::Backing;

use super::{
    ArtifactError, IMAGE_BYTES_MAX, IMAGE_FILE, INPUT_BYTES_MAX, INPUT_FILE, MANIFEST_BYTES_MAX,
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
    let info = &manifest.input;
    if input.len() as u64 != info.size_bytes {
        let problem = format!("{} bytes, the manifest says {} (truncated?)", input.len(), info.size_bytes);
        return Err(ArtifactError::corrupt(&input_path, problem));
    }
    if crc32fast::hash(&input) != info.crc32 {
        return Err(ArtifactError::corrupt(&input_path, "checksum mismatch"));
    }
    let image = match &manifest.image {
        None => None,
        Some(info) => {
            Some(std::sync::Arc::new(map_image(&dir.join(IMAGE_FILE), info.size_bytes, info.crc32)?))
        }
    };
    Ok(Loaded { dir: dir.to_path_buf(), manifest, input, image })
}

fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let f = File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    f.take(max + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > max {
        return Err(ArtifactError::corrupt(path, format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

fn map_image(path: &Path, size_bytes: u64, crc32: u32) -> Result<MappedImage, ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let f = File::open(path).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    if len != size_bytes || len > IMAGE_BYTES_MAX {
        let problem = format!("{len} bytes, the manifest says {size_bytes} (truncated or wrong image?)");
        return Err(ArtifactError::corrupt(path, problem));
    }
    if len == 0 {
        return Err(ArtifactError::corrupt(path, "empty image"));
    }
    // SAFETY: the map is read-only and private to this process; crashsim never writes the
    // file while it is mapped. Another process truncating it would be a user error.
    let map = unsafe { Mmap::map(&f) }.map_err(io)?;
    if crc32fast::hash(&map) != crc32 {
        return Err(ArtifactError::corrupt(path, "checksum mismatch: the image is corrupt"));
    }
    Ok(MappedImage { map })
}
