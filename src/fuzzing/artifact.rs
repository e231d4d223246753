//! `artifact_load`: arbitrary bytes as an artifact's `manifest.json`, `input.bin` and
//! `crash.img`, loaded the way `repro`, `show` and `minimize` load them.
//!
//! Invariants checked: loading returns `Ok` or a typed [`crate::artifact::ArtifactError`],
//! never panics, and allocates nothing sized by a field of the input: the largest single
//! allocation stays within a constant plus a multiple of the input's own length.
//!
//! Input layout: `manifest_len: u32 LE`, `input_len: u32 LE`, then the manifest bytes, the input
//! bytes, and the rest as the image (no `crash.img` when the rest is empty). Lengths past the
//! end are clamped, so every byte string is an input.

use std::path::{Path, PathBuf};

use super::alloc::largest_alloc_since;
use super::{Failure, FuzzConfig};
use crate::artifact::{self, IMAGE_FILE, INPUT_FILE, MANIFEST_FILE};
use crate::crash::guarded;

/// Allocation allowed beyond a multiple of the input's length (JSON parsing, paths, the
/// manifest's own structures).
pub const ARTIFACT_ALLOC_SLACK: usize = 256 << 10;

/// The three files of an artifact as one fuzz input (the inverse of the layout above).
pub fn artifact_input(manifest: &[u8], input: &[u8], image: &[u8]) -> Vec<u8> {
    let len = |b: &[u8]| u32::try_from(b.len()).expect("artifact file under 4 GiB").to_le_bytes();
    [&len(manifest)[..], &len(input), manifest, input, image].concat()
}

/// The fuzz input of the artifact in `dir` (for seed corpora).
pub fn artifact_input_of(dir: &Path) -> std::io::Result<Vec<u8>> {
    let read = |name: &str| std::fs::read(dir.join(name));
    let image = match read(IMAGE_FILE) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    Ok(artifact_input(&read(MANIFEST_FILE)?, &read(INPUT_FILE)?, &image))
}

/// Splits a fuzz input into (manifest, input, image).
pub fn split_artifact_input(bytes: &[u8]) -> (&[u8], &[u8], &[u8]) {
    let word = |at: usize| {
        bytes.get(at..at + 4).map_or(0, |w| u32::from_le_bytes(w.try_into().expect("four bytes")) as usize)
    };
    let body = bytes.get(8..).unwrap_or(&[]);
    let m = word(0).min(body.len());
    let i = word(4).min(body.len() - m);
    (&body[..m], &body[m..m + i], &body[m + i..])
}

/// A directory of this process and thread for the files of one input.
fn scratch() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id());
    let tag: String = thread.chars().filter(char::is_ascii_alphanumeric).collect();
    std::env::temp_dir().join(format!("crashsim-artifact-load-{}-{tag}", std::process::id()))
}

/// Writes the three files of `bytes` and loads them as an artifact.
pub fn artifact_load(bytes: &[u8], _cfg: &FuzzConfig) -> Result<(), Failure> {
    let repro =
        || "cargo fuzz run -s none artifact_load fuzz/artifacts/artifact_load/<crash-file>".to_string();
    let harness = |e: std::io::Error| Failure { summary: format!("harness: {e}"), repro: repro() };
    let (manifest, input, image) = split_artifact_input(bytes);
    let dir = scratch();
    std::fs::create_dir_all(&dir).map_err(harness)?;
    std::fs::write(dir.join(MANIFEST_FILE), manifest).map_err(harness)?;
    std::fs::write(dir.join(INPUT_FILE), input).map_err(harness)?;
    match image.is_empty() {
        true => match std::fs::remove_file(dir.join(IMAGE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(harness(e)),
            _ => {}
        },
        false => std::fs::write(dir.join(IMAGE_FILE), image).map_err(harness)?,
    }
    let (loaded, largest) = largest_alloc_since(|| guarded(|| Ok(artifact::load(&dir).is_ok())));
    if let Err(panic) = loaded {
        return Err(Failure { summary: format!("artifact::load {panic}"), repro: repro() });
    }
    let bound = 4 * bytes.len() + ARTIFACT_ALLOC_SLACK;
    if largest > bound {
        let summary = format!(
            "artifact::load made a single allocation of {largest} bytes from an input of {} bytes \
             (bound {bound}): sized by a field, not by the data",
            bytes.len()
        );
        return Err(Failure { summary, repro: repro() });
    }
    Ok(())
}
