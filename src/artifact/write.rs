//! Writing artifacts: rebuild the crash image from the workload, write a temp directory,
//! fsync, rename.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use crate::check::{Violation, ViolationClass};
use crate::crash::{CrashConfig, replay_run};
use crate::sweep::SweepSummary;
use crate::target::Target;

use super::{
    ArtifactError, FORMAT_VERSION, IMAGE_FILE, INPUT_FILE, ImageInfo, InputInfo, InputKind, MANIFEST_FILE,
    Manifest, UNITS_LISTED_MAX, encode_manifest,
};

/// Pages of the image compared against zero before writing; zero pages become holes.
const SPARSE_PAGE_BYTES: usize = 4096;

/// Where a workload came from.
#[derive(Clone, Debug)]
pub struct ArtifactSource {
    /// The sweep seed the workload was built from (`None`: a fuzz input, a file, a minimized
    /// workload).
    pub seed: Option<u64>,
    /// What seeded the engine's random choices when the violation was found; exploring again
    /// with it finds the same states.
    pub stream_seed: u64,
    /// How `input` encodes the workload.
    pub kind: InputKind,
    /// The bytes written to `input.bin`; they must decode (per `kind`) to the workload.
    pub input: Vec<u8>,
    /// Write `crash.img`; without it the artifact is rebuild-only (small enough to commit:
    /// `repro` then judges the image rebuilt from the workload).
    pub hold_image: bool,
}

impl ArtifactSource {
    /// A sweep seed: `input.bin` is the target's input for the seed.
    pub fn seed<T: Target>(target: &T, seed: u64) -> Self {
        Self {
            seed: Some(seed),
            stream_seed: seed,
            kind: InputKind::Raw,
            input: target.input_for_seed(seed),
            hold_image: true,
        }
    }
}

/// Rebuilds the crash state of `violation` (found on `workload` from `src`) and writes its
/// artifact as a new directory `out/name`, atomically; returns its path. An existing artifact
/// of the same name is replaced.
pub fn write_artifact<T: Target>(
    target: &T,
    crash: &CrashConfig,
    src: &ArtifactSource,
    workload: &T::Workload,
    violation: &Violation,
    out: &Path,
    name: &str,
) -> Result<PathBuf, ArtifactError> {
    let replay = replay_run(target, workload).map_err(ArtifactError::Replay)?;
    let ev = &violation.evidence;
    let (image, persisted) = match (ev.crash_point, &ev.choice) {
        (Some(point), Some(choice)) => {
            let (state, view) = replay.view_at(crash.model, point, choice).map_err(ArtifactError::Replay)?;
            let view = match ev.media_fault {
                Some(f) => view.with_media_fault(f),
                None => view,
            };
            (src.hold_image.then(|| view.materialize()), state.persisted(choice))
        }
        _ => (None, Vec::new()),
    };
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        crate_version: env!("CARGO_PKG_VERSION").to_string(),
        target: target.name().to_string(),
        target_config: target.config_json(),
        bugs: target.bug_ids(),
        crash: *crash,
        seed: src.seed,
        stream_seed: src.stream_seed,
        input: InputInfo {
            kind: src.kind,
            size_bytes: src.input.len() as u64,
            crc32: crc32fast::hash(&src.input),
        },
        workload: serde_json::to_value(workload).map_err(|e| ArtifactError::Replay(e.to_string()))?,
        workload_ops: target.workload_ops(workload),
        trace_events: replay.trace.len(),
        crash_point: ev.crash_point,
        choice: ev.choice.clone(),
        persisted_count: persisted.len(),
        persisted_units: persisted.into_iter().take(UNITS_LISTED_MAX).collect(),
        recovery_crash_point: ev.recovery_crash_point,
        recovery_choice: ev.recovery_choice.clone(),
        image: image.as_ref().map(|b| ImageInfo { size_bytes: b.len() as u64, crc32: crc32fast::hash(b) }),
        violation: violation.clone(),
    };
    write_dir(out, name, &manifest, &src.input, image.as_deref())
}

/// Temp dir in `out`, files written and fsync'd, dir fsync'd, renamed to `out/name`.
fn write_dir(
    out: &Path,
    name: &str,
    manifest: &Manifest,
    input: &[u8],
    image: Option<&[u8]>,
) -> Result<PathBuf, ArtifactError> {
    std::fs::create_dir_all(out).map_err(|e| ArtifactError::io(out, e))?;
    let tmp = out.join(format!(".tmp-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).map_err(|e| ArtifactError::io(&tmp, e))?;
    write_file(&tmp.join(MANIFEST_FILE), &encode_manifest(manifest))?;
    write_file(&tmp.join(INPUT_FILE), input)?;
    if let Some(image) = image {
        write_sparse(&tmp.join(IMAGE_FILE), image)?;
    }
    sync_dir(&tmp)?;
    let dest = out.join(name);
    if dest.exists() {
        std::fs::remove_dir_all(&dest).map_err(|e| ArtifactError::io(&dest, e))?;
    }
    std::fs::rename(&tmp, &dest).map_err(|e| ArtifactError::io(&dest, e))?;
    sync_dir(out)?;
    Ok(dest)
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

/// Sets the length first, then writes only non-zero pages: zero runs stay holes.
fn write_sparse(path: &Path, bytes: &[u8]) -> Result<(), ArtifactError> {
    let io = |e| ArtifactError::io(path, e);
    let mut f = File::create(path).map_err(io)?;
    f.set_len(bytes.len() as u64).map_err(io)?;
    for (i, page) in bytes.chunks(SPARSE_PAGE_BYTES).enumerate() {
        if page.iter().all(|&b| b == 0) {
            continue;
        }
        f.seek(SeekFrom::Start((i * SPARSE_PAGE_BYTES) as u64)).map_err(io)?;
        f.write_all(page).map_err(io)?;
    }
    f.sync_all().map_err(io)
}

fn sync_dir(dir: &Path) -> Result<(), ArtifactError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| ArtifactError::io(dir, e))
}

/// The call site that last wrote the offending bytes, or `-`.
fn writer_site(v: &Violation) -> &str {
    v.evidence.last_writer.as_ref().map_or("-", |w| w.site.as_str())
}

/// A directory name: seed, class and last-writer site, with path-hostile characters replaced.
pub fn artifact_name(seed: Option<u64>, v: &Violation) -> String {
    let site: String =
        writer_site(v).chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '.' }).collect();
    let site = site.trim_matches('.').replace("..", ".");
    let site = if site.is_empty() { "nosite".to_string() } else { site };
    match seed {
        Some(seed) => format!("seed{seed}-{}-{site}", v.class),
        None => format!("input-{}-{site}", v.class),
    }
}

/// Writes one artifact per distinct (class, last-writer site) of `summary`, in seed order, at
/// most `max`, and records each path in its violation. Returns the paths written.
pub fn write_sweep_artifacts<T: Target>(
    target: &T,
    summary: &mut SweepSummary,
    out: &Path,
    max: usize,
) -> Result<Vec<PathBuf>, ArtifactError> {
    let mut seen: BTreeSet<(ViolationClass, String)> = BTreeSet::new();
    let mut written = Vec::new();
    for sv in &mut summary.violations {
        if written.len() >= max {
            break;
        }
        let key = (sv.violation.class, writer_site(&sv.violation).to_string());
        if !seen.insert(key) {
            continue;
        }
        let src = ArtifactSource::seed(target, sv.seed);
        let workload = target.workload_from_seed(sv.seed);
        let name = artifact_name(Some(sv.seed), &sv.violation);
        let path = write_artifact(target, &summary.config, &src, &workload, &sv.violation, out, &name)?;
        sv.artifact = Some(path.display().to_string());
        written.push(path);
    }
    Ok(written)
}
