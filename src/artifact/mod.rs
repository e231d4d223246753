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

pub mod html;
mod load;
mod minimize;
mod repro;
mod show;
mod write;

pub use html::render_html;
pub use load::{Loaded, MappedImage, load};
pub use minimize::{MINIMIZE_RUNS_MAX, Minimized, Sizes, minimize};
pub use repro::{ReproReport, repro, workload_of};
pub use show::{Explanation, LineMark, LineRow, LineRun, TimelineEvent, explain, render_text};
pub use write::{ArtifactSource, artifact_name, write_artifact, write_sweep_artifacts};

use crate::check::{Violation, ViolationClass};
use crate::crash::CrashConfig;
use crate::pmem::{Choice, CrashPoint, Unit};

/// Version of the artifact layout; a reader rejects any other.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_FILE: &str = "manifest.json";
pub const INPUT_FILE: &str = "input.bin";
pub const IMAGE_FILE: &str = "crash.img";
/// Largest manifest accepted.
pub const MANIFEST_BYTES_MAX: u64 = 16 << 20;
/// Largest `input.bin` accepted.
pub const INPUT_BYTES_MAX: u64 = 1 << 20;
/// Largest crash image accepted.
pub const IMAGE_BYTES_MAX: u64 = 1 << 32;
/// Persisted units listed in a manifest (the count is always exact).
pub const UNITS_LISTED_MAX: usize = 4096;
/// Default and hard bound on artifacts one sweep writes.
pub const ARTIFACTS_DEFAULT: usize = 16;
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
    pub kind: InputKind,
    pub size_bytes: u64,
    pub crc32: u32,
}

/// What `crash.img` holds, checked on load.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageInfo {
    pub size_bytes: u64,
    pub crc32: u32,
}

/// Everything needed to rebuild and re-judge one violation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format_version: u32,
    pub crate_version: String,
    pub target: String,
    /// The target's options (for daxfs: geometry, PMD size, policy, bugs).
    pub target_config: serde_json::Value,
    pub bugs: Vec<String>,
    /// Persistence model, crash-point granularity, strategy, states per point.
    pub crash: CrashConfig,
    /// The sweep seed, when the workload came from one.
    pub seed: Option<u64>,
    /// Seeds the engine's random choices (the sweep seed, or 0 for `run`).
    pub stream_seed: u64,
    pub input: InputInfo,
    /// The decoded workload; `input.bin` must decode to exactly this.
    pub workload: serde_json::Value,
    pub workload_ops: usize,
    pub trace_events: usize,
    /// `None` for a run-time violation.
    pub crash_point: Option<CrashPoint>,
    pub choice: Option<Choice>,
    pub persisted_count: usize,
    /// The persisted units, at most [`UNITS_LISTED_MAX`].
    pub persisted_units: Vec<Unit>,
    pub recovery_crash_point: Option<CrashPoint>,
    pub recovery_choice: Option<Choice>,
    /// `None`: no `crash.img` (run-time violation).
    pub image: Option<ImageInfo>,
    pub violation: Violation,
}

impl Manifest {
    pub fn class(&self) -> ViolationClass {
        self.violation.class
    }
}

/// A bad artifact or a failed write: always names the file and the problem, in one line.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: missing (an artifact directory holds manifest.json and input.bin)")]
    Missing { path: String },
    #[error("no artifact directory at {path}")]
    NoDirectory { path: String },
    #[error("{path} is a file; expected an artifact directory (manifest.json, input.bin)")]
    NotADirectory { path: String },
    #[error("{path}: {problem}")]
    Corrupt { path: String, problem: String },
    #[error("{path}: format version {found}, this crashsim reads version {FORMAT_VERSION}")]
    Version { path: String, found: u32 },
    #[error("{path}: artifact is for target `{found}`, not `{expected}`")]
    WrongTarget { path: String, found: String, expected: String },
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
pub fn decode_manifest(path: &std::path::Path, bytes: &[u8]) -> Result<Manifest, ArtifactError> {
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
