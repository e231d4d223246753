//! Violations you can hold (docs/design.md §9): an artifact directory per violation, and what reads it
//! back: [`load`] (every bad input a typed [`ArtifactError`]), [`repro`], [`explain`] (`show`,
//! as text or as an HTML page, [`render_html`]) and [`minimize`].
//!
//! An artifact directory holds:
//! - `manifest.json`: `{"crc32": N, "manifest": {...}}`, where `N` is the CRC-32 of the compact
//!   JSON of the inner object (keys sorted), so any edit or flipped byte is caught;
//! - `input.bin`: the raw workload bytes (a fuzz input; a seed's PRNG bytes) or, for a minimized
//!   artifact, the workload as JSON (`input.kind` says which);
//! - `crash.img`: the crash image (the state recovery starts from), written sparsely; absent for
//!   a run-time violation (`image` is `null`): there is no crash state to hold.
//!
//! Architecture Invariant: an artifact is written to a temp directory in the same parent,
//! fsync'd, then renamed into place, so a reader never sees half an artifact.

#![deny(missing_docs, missing_debug_implementations)]

pub mod html;
mod load;
mod minimize;
mod repro;
mod show;
mod write;

pub use html::render_html;
pub use load::{ArtifactBytes, Loaded, LoadedBytes, MappedImage, load, load_bytes};
pub use minimize::{MINIMIZE_RUNS_MAX, Minimized, Sizes, minimize};
pub use repro::{ReproReport, repro, workload_of};
pub use show::{Explanation, LineMark, LineRow, LineRun, TimelineEvent, explain, render_text};
pub use write::{ArtifactSource, artifact_name, write_artifact, write_sweep_artifacts};

use crate::check::{Violation, ViolationClass};
use crate::crash::CrashConfig;
use crate::pmem::{Choice, CrashPoint, Unit};

/// Version of the artifact layout; a reader rejects any other.
pub const FORMAT_VERSION: u32 = 1;
/// The manifest's file name in an artifact directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The workload input's file name in an artifact directory.
pub const INPUT_FILE: &str = "input.bin";
/// The crash image's file name in an artifact directory (absent for a run-time violation or a
/// rebuild-only artifact).
pub const IMAGE_FILE: &str = "crash.img";
/// Largest manifest accepted.
pub const MANIFEST_BYTES_MAX: u64 = 16 << 20;
/// Largest `input.bin` accepted.
pub const INPUT_BYTES_MAX: u64 = 1 << 20;
/// Largest crash image accepted.
pub const IMAGE_BYTES_MAX: u64 = 1 << 32;
/// Persisted units listed in a manifest (the count is always exact).
pub const UNITS_LISTED_MAX: usize = 4096;
/// Default bound on artifacts one sweep writes.
pub const ARTIFACTS_DEFAULT: usize = 16;
/// Hard bound on artifacts one sweep writes.
pub const ARTIFACTS_MAX: usize = 1024;

/// How `input.bin` encodes the workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputKind {
    /// Raw bytes through the target's decoder (a seed's PRNG bytes, a fuzz artifact).
    Raw,
    /// The workload as JSON (minimizer output, hand-written workloads).
    Json,
}

/// What `input.bin` holds, checked on load.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InputInfo {
    /// How to decode it.
    pub kind: InputKind,
    /// Its exact length; a shorter file is a truncated artifact.
    pub size_bytes: u64,
    /// CRC-32 (IEEE) of its bytes.
    pub crc32: u32,
}

/// What `crash.img` holds, checked on load.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    /// Its exact length: the target's device size.
    pub size_bytes: u64,
    /// CRC-32 (IEEE) of the whole image, holes read as zeros.
    pub crc32: u32,
}

/// Everything needed to rebuild and re-judge one violation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The artifact layout's version, [`FORMAT_VERSION`] when written.
    pub format_version: u32,
    /// The crashsim version that wrote it (informational: never checked on load).
    pub crate_version: String,
    /// The target's [`crate::target::Target::name`]; only a target of that name loads it.
    pub target: String,
    /// The target's options (for daxfs: geometry, PMD size, policy, bugs).
    pub target_config: serde_json::Value,
    /// The target's enabled bugs, by id (for reading; `target_config` is what rebuilds it).
    pub bugs: Vec<String>,
    /// Persistence model, crash-point granularity, strategy, states per point.
    pub crash: CrashConfig,
    /// The sweep seed, when the workload came from one.
    pub seed: Option<u64>,
    /// Seeds the engine's random choices (the sweep seed, or 0 for `run`).
    pub stream_seed: u64,
    /// What `input.bin` holds.
    pub input: InputInfo,
    /// The decoded workload; `input.bin` must decode to exactly this.
    pub workload: serde_json::Value,
    /// Size of the workload in operations ([`crate::target::Target::workload_ops`]; 0 when the
    /// target does not count them).
    pub workload_ops: usize,
    /// Events in the run's trace: crash points index it.
    pub trace_events: usize,
    /// `None` for a run-time violation.
    pub crash_point: Option<CrashPoint>,
    /// Which pending units persisted at `crash_point`; with the workload, it rebuilds the
    /// image. `None` for a run-time violation.
    pub choice: Option<Choice>,
    /// Pending units that persisted, all of them (`persisted_units` may list fewer).
    pub persisted_count: usize,
    /// The persisted units, at most [`UNITS_LISTED_MAX`].
    pub persisted_units: Vec<Unit>,
    /// For a crash inside recovery: the crash point in the trace of the clean recovery of
    /// the image, not in the run's trace.
    pub recovery_crash_point: Option<CrashPoint>,
    /// For a crash inside recovery: which of recovery's pending units persisted.
    pub recovery_choice: Option<Choice>,
    /// `None`: no `crash.img` (a run-time violation, or a rebuild-only artifact: see
    /// [`ArtifactSource::hold_image`]).
    pub image: Option<ImageInfo>,
    /// The violation as found, with its evidence; `repro` succeeds when one of its class
    /// shows again.
    pub violation: Violation,
}

impl Manifest {
    /// The class of the recorded violation: what `repro` and `minimize` look for.
    pub fn class(&self) -> ViolationClass {
        self.violation.class
    }
}

/// A bad artifact or a failed write: always names the file and the problem, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// Reading or writing a file failed (other than a missing file).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file the artifact must hold is absent.
    #[error("{path}: missing (an artifact directory holds manifest.json and input.bin)")]
    Missing {
        /// The missing file.
        path: String,
    },
    /// The artifact path does not exist.
    #[error("no artifact directory at {path}")]
    NoDirectory {
        /// The path given.
        path: String,
    },
    /// The artifact path is a file (often the manifest itself); an artifact is a directory.
    #[error("{path} is a file; expected an artifact directory (manifest.json, input.bin)")]
    NotADirectory {
        /// The path given.
        path: String,
    },
    /// A file is present but wrong: over its size bound, truncated, a checksum mismatch, bad
    /// JSON, a workload or crash state that does not rebuild.
    #[error("{path}: {problem}")]
    Corrupt {
        /// The offending file.
        path: String,
        /// What is wrong with it, in one line.
        problem: String,
    },
    /// The manifest has another layout version than [`FORMAT_VERSION`].
    #[error("{path}: format version {found}, this crashsim reads version {FORMAT_VERSION}")]
    Version {
        /// The manifest.
        path: String,
        /// The version it records (saturated at `u32::MAX`).
        found: u32,
    },
    /// The artifact was made with another target than the one asked to load it.
    #[error("{path}: artifact is for target `{found}`, not `{expected}`")]
    WrongTarget {
        /// The manifest.
        path: String,
        /// The target the manifest names.
        found: String,
        /// The target asked to load it.
        expected: String,
    },
    /// Rebuilding or re-exploring the workload failed (the target's run errored or panicked,
    /// a class did not reproduce while minimizing), in one line.
    #[error("{0}")]
    Replay(String),
}

impl ArtifactError {
    fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return Self::Missing { path: path.display().to_string() };
        }
        Self::Io { path: path.display().to_string(), source }
    }

    fn corrupt(path: &std::path::Path, problem: impl Into<String>) -> Self {
        Self::Corrupt { path: path.display().to_string(), problem: problem.into() }
    }
}

/// The manifest file's bytes: the manifest wrapped with the CRC-32 of its canonical JSON.
pub fn encode_manifest(m: &Manifest) -> Vec<u8> {
    let value = serde_json::to_value(m).expect("a manifest serializes");
    let crc = crc32fast::hash(&serde_json::to_vec(&value).expect("a value serializes"));
    let wrapped = serde_json::json!({ "crc32": crc, "manifest": value });
    let mut bytes = serde_json::to_vec_pretty(&wrapped).expect("a value serializes");
    bytes.push(b'\n');
    bytes
}

/// Parses and checks manifest bytes read from `path`.
pub(crate) fn decode_manifest(path: &std::path::Path, bytes: &[u8]) -> Result<Manifest, ArtifactError> {
    let bad = |p: String| ArtifactError::corrupt(path, p);
    let wrapped: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON ({e}); truncated?")))?;
    let crc =
        wrapped.get("crc32").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no crc32".into()))?;
    let value = wrapped.get("manifest").ok_or_else(|| bad("no manifest object".into()))?;
    let version = value.get("format_version").and_then(serde_json::Value::as_u64);
    let canonical = serde_json::to_vec(value).map_err(|e| bad(e.to_string()))?;
    if u64::from(crc32fast::hash(&canonical)) != crc {
        return Err(bad("checksum mismatch: the manifest was edited or corrupted".into()));
    }
    match version {
        Some(v) if v == u64::from(FORMAT_VERSION) => {}
        Some(v) => {
            let found = u32::try_from(v).unwrap_or(u32::MAX);
            return Err(ArtifactError::Version { path: path.display().to_string(), found });
        }
        None => return Err(bad("no format_version".into())),
    }
    serde_json::from_value(value.clone()).map_err(|e| bad(format!("bad manifest: {e}")))
}
