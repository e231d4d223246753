//! `artifact_load`: arbitrary bytes as an artifact's `manifest.json`, `input.bin` and
//! `crash.img`, loaded the way `repro`, `show` and `minimize` load them.
//!
//! Invariants checked: loading returns `Ok` or a typed [`crate::artifact::ArtifactError`],
//! never panics, and allocates nothing sized by a field of the input: the largest single
//! allocation stays within a constant plus a multiple of the input's own length.
//!
//! The input is loaded in memory ([`artifact::load_bytes`], the checks of [`artifact::load`]
//! without the files); one input in [`DISK_CHECK_ONE_IN`] is also written as files and loaded
//! from disk, and the two must agree.
//!
//! Input layout: `manifest_len: u32 LE`, `input_len: u32 LE`, then the manifest bytes, the input
//! bytes, and the rest as the image (no `crash.img` when the rest is empty). Lengths past the
//! end are clamped, so every byte string is an input.

use std::path::{Path, PathBuf};

use super::alloc::largest_alloc_since;
use super::{Failure, FuzzConfig};
use crate::artifact::{
    self, ArtifactBytes, ArtifactError, IMAGE_FILE, INPUT_FILE, LoadedBytes, MANIFEST_FILE,
};
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

/// One input in this many (by a CRC of its bytes, so a saved input is checked the same way
/// again) is also written to files and loaded from disk with [`artifact::load`], and the two
/// loads must agree.
pub const DISK_CHECK_ONE_IN: u32 = 64;

/// A directory of this process and thread for the files of one input (computed once per
/// thread; the in-memory load names its files in errors as if they were here).
fn scratch() -> PathBuf {
    thread_local! {
        static DIR: PathBuf = {
            let thread = format!("{:?}", std::thread::current().id());
            let tag: String = thread.chars().filter(char::is_ascii_alphanumeric).collect();
            std::env::temp_dir().join(format!("crashsim-artifact-load-{}-{tag}", std::process::id()))
        };
    }
    DIR.with(PathBuf::clone)
}

/// The three files of `bytes`, as the harness lays them out (an empty image is no file).
fn files_of(bytes: &[u8]) -> ArtifactBytes<'_> {
    let (manifest, input, image) = split_artifact_input(bytes);
    ArtifactBytes { manifest, input, image: (!image.is_empty()).then_some(image) }
}

/// Loads `bytes` as an artifact, in memory, and checks the invariants above. On one input in
/// [`DISK_CHECK_ONE_IN`] it also writes the files and checks the load from disk agrees.
pub fn artifact_load(bytes: &[u8], _cfg: &FuzzConfig) -> Result<(), Failure> {
    let files = files_of(bytes);
    let dir = scratch();
    let (loaded, largest) = largest_alloc_since(|| guarded(|| Ok(artifact::load_bytes(&dir, files))));
    let loaded = loaded.map_err(|panic| failure(format!("artifact::load_bytes {panic}")))?;
    check_alloc(bytes, largest)?;
    if crc32fast::hash(bytes) % DISK_CHECK_ONE_IN == 0 {
        disk_agrees(&dir, files, &loaded, |largest| check_alloc(bytes, largest))?;
    }
    Ok(())
}

fn failure(summary: String) -> Failure {
    let repro = "cargo fuzz run -s none artifact_load fuzz/artifacts/artifact_load/<crash-file>";
    Failure { summary, repro: repro.to_string() }
}

fn check_alloc(bytes: &[u8], largest: usize) -> Result<(), Failure> {
    let bound = 4 * bytes.len() + ARTIFACT_ALLOC_SLACK;
    if largest > bound {
        return Err(failure(format!(
            "artifact::load made a single allocation of {largest} bytes from an input of {} bytes \
             (bound {bound}): sized by a field, not by the data",
            bytes.len()
        )));
    }
    Ok(())
}

/// Writes `files` to `dir` (no `crash.img` for `None`), loads them with [`artifact::load`]
/// (no panic, and `alloc_ok` on its largest allocation) and compares with `in_memory`, their
/// in-memory load: the same manifest, input and image, or the same error.
fn disk_agrees(
    dir: &Path,
    files: ArtifactBytes<'_>,
    in_memory: &Result<LoadedBytes<'_>, ArtifactError>,
    alloc_ok: impl Fn(usize) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let harness = |e: std::io::Error| failure(format!("harness: {e}"));
    std::fs::create_dir_all(dir).map_err(harness)?;
    std::fs::write(dir.join(MANIFEST_FILE), files.manifest).map_err(harness)?;
    std::fs::write(dir.join(INPUT_FILE), files.input).map_err(harness)?;
    match files.image {
        None => match std::fs::remove_file(dir.join(IMAGE_FILE)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(harness(e)),
            _ => {}
        },
        Some(image) => std::fs::write(dir.join(IMAGE_FILE), image).map_err(harness)?,
    }
    let (on_disk, largest) = largest_alloc_since(|| guarded(|| Ok(artifact::load(dir))));
    let on_disk = on_disk.map_err(|panic| failure(format!("artifact::load {panic}")))?;
    alloc_ok(largest)?;
    let agree = match (&on_disk, in_memory) {
        (Ok(d), Ok(m)) => {
            d.manifest == m.manifest && d.input == m.input && d.image.as_ref().map(|i| i.bytes()) == m.image
        }
        (Err(d), Err(m)) => d.to_string() == m.to_string(),
        _ => false,
    };
    if !agree {
        let show = |r: Result<(), String>| match r {
            Ok(()) => "Ok".to_string(),
            Err(e) => e,
        };
        return Err(failure(format!(
            "artifact::load from disk gives {} but in memory {}",
            show(on_disk.map(|_| ()).map_err(|e| e.to_string())),
            show(in_memory.as_ref().map(|_| ()).map_err(|e| e.to_string())),
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{INPUT_BYTES_MAX, ImageInfo, MANIFEST_BYTES_MAX, encode_manifest};
    use crate::rng::{RngExt, rng_from_seed};

    fn agree(dir: &Path, files: ArtifactBytes<'_>) -> Result<bool, Failure> {
        let in_memory = artifact::load_bytes(dir, files);
        disk_agrees(dir, files, &in_memory, |_| Ok(()))?;
        Ok(in_memory.is_ok())
    }

    /// The shortcut (loading in memory) against the plain path (files on disk): on the seeds,
    /// on seeds given an image, and on their truncations, flipped bytes and re-sealed edits,
    /// the same artifact or the same error.
    #[test]
    fn in_memory_load_agrees_with_loading_files() {
        let dir = std::env::temp_dir().join(format!("crashsim-load-bytes-test-{}", std::process::id()));
        let seeds = super::super::image::tests::corpus("artifact_load");
        let image: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let (mut oks, mut errors) = (0, std::collections::BTreeSet::new());
        let mut check = |files: ArtifactBytes<'_>| {
            match agree(&dir, files) {
                Ok(true) => oks += 1,
                Ok(false) => {
                    let e = artifact::load_bytes(&dir, files).expect_err("an error");
                    // The kind of error: its variant, and for a corrupt file which and how.
                    let kind = match &e {
                        ArtifactError::Corrupt { path, problem } => {
                            let file = Path::new(path).file_name().map(|f| f.to_string_lossy().to_string());
                            let what: String =
                                problem.chars().filter(|c| !c.is_ascii_digit()).take(24).collect();
                            format!("{} {what}", file.unwrap_or_default())
                        }
                        other => format!("{other:?}").chars().take_while(char::is_ascii_alphabetic).collect(),
                    };
                    errors.insert(kind);
                }
                Err(f) => panic!("{f}"),
            }
        };
        for (s, seed) in seeds.iter().enumerate() {
            let (m, i, _) = split_artifact_input(seed);
            let mut manifest = artifact::load_bytes(&dir, files_of(seed)).expect("a seed loads").manifest;
            check(ArtifactBytes { manifest: m, input: i, image: None });
            check(ArtifactBytes { manifest: m, input: i, image: Some(&image) });
            manifest.image =
                Some(ImageInfo { size_bytes: image.len() as u64, crc32: crc32fast::hash(&image) });
            let with_image = encode_manifest(&manifest);
            let m2 = &with_image[..];
            for img in [Some(&image[..]), None, Some(&[][..]), Some(&image[1..]), Some(&image[..4095])] {
                check(ArtifactBytes { manifest: m2, input: i, image: img });
            }
            let mut flipped = image.clone();
            flipped[s * 97 % image.len()] ^= 1;
            check(ArtifactBytes { manifest: m2, input: i, image: Some(&flipped) });
            for edit in 0..6 {
                let mut e = manifest.clone();
                match edit {
                    0 => e.input.size_bytes += 1,
                    1 => e.input.crc32 ^= 1,
                    2 => e.image = Some(ImageInfo { size_bytes: 1 << 40, crc32: 0 }),
                    3 => e.image = Some(ImageInfo { size_bytes: 0, crc32: crc32fast::hash(&[]) }),
                    4 => e.format_version += 1,
                    _ => e.image.as_mut().expect("an image").crc32 ^= 1,
                }
                let edited = encode_manifest(&e);
                check(ArtifactBytes { manifest: &edited, input: i, image: Some(&image) });
                check(ArtifactBytes { manifest: &edited, input: i, image: Some(&[]) });
            }
            for cut in [0, 1, m.len() / 2, m.len() - 1] {
                check(ArtifactBytes { manifest: &m[..cut], input: i, image: None });
            }
            for cut in [0, i.len() / 3, i.len() - 1] {
                check(ArtifactBytes { manifest: m2, input: &i[..cut], image: Some(&image) });
            }
            let mut rng = rng_from_seed(s as u64);
            for _ in 0..16 {
                let mut bytes = artifact_input(m2, i, &image);
                let at = rng.random_range(0..bytes.len());
                bytes[at] ^= 1 << rng.random_range(0..8);
                check(files_of(&bytes));
            }
        }
        // Over the size bounds.
        let big_input = vec![0u8; INPUT_BYTES_MAX as usize + 1];
        let (m, _, _) = split_artifact_input(&seeds[0]);
        check(ArtifactBytes { manifest: m, input: &big_input, image: None });
        let big_manifest = vec![b' '; MANIFEST_BYTES_MAX as usize + 1];
        check(ArtifactBytes { manifest: &big_manifest, input: &[], image: None });
        let _ = std::fs::remove_dir_all(&dir);
        assert!(oks >= 2 * seeds.len(), "{oks} loads");
        for kind in ["Missing", "Version", "crash.img empty image", "input.bin larger than  bytes"] {
            assert!(errors.contains(kind), "no {kind} among {errors:#?}");
        }
        assert!(errors.len() >= 12, "too few kinds of error: {errors:#?}");
    }
}
