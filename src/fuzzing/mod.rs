//! Harnesses shared by the cargo-fuzz targets (`fuzz/fuzz_targets/`) and by `cargo test`'s
//! corpus replay (`tests/fuzz_corpus.rs`), so a committed input is judged by exactly the code
//! libFuzzer runs (docs/design.md §11).
//!
//! Each harness takes the raw input bytes and a [`FuzzConfig`] and returns `Err(Failure)` when
//! the input exposes a problem: a crash-consistency violation, a panic in mount or replay, an
//! allocation sized by untrusted bytes, or a replay that applied what an independent decoding
//! of the journal rejects. Inputs that do not decode are not failures.
//!
//! Enabled bugs come only from [`BUGS_ENV`], read once when the config is built; input bytes
//! never choose them.

#![deny(missing_docs, missing_debug_implementations)]

mod alloc;
mod artifact;
pub mod codec;
mod image;
mod journal;
mod mutator;
mod seeds;
mod target;
mod workload;

pub use alloc::{ALLOC_BYTES_MAX, CappedAlloc, largest_alloc_since};
pub use artifact::{
    ARTIFACT_ALLOC_SLACK, artifact_input, artifact_input_of, artifact_load, split_artifact_input,
};
pub use image::{BaseImage, mount_image};
pub use journal::{JournalView, journal_replay};
pub use mutator::{
    ATTEMPTS_MAX, BYTE_FALLBACK_ONE_IN, FuzzWorkload, STACKED_MAX, check_fuzz_workload, crossover,
    decode_input, mutate,
};
pub use seeds::{TARGETS, seed_inputs};
pub use target::{
    Decoder, SEED_INPUT_BYTES, TargetHarness, decode_arbitrary, decode_compact, fuzz_crash_configs,
    seed_input, target_from_env,
};
pub use workload::crash_workload;

use crate::crash::CrashConfig;
use crate::daxfs::BugSet;
use crate::daxfs::bugs::UnknownBug;
use crate::targets::daxfs::exec::RunConfig;

/// The environment variable naming the enabled daxfs bugs, comma-separated catalogue ids.
pub const BUGS_ENV: &str = "CRASHSIM_BUGS";
/// Device size of the images `mount_image` and `journal_replay` corrupt (workload runs keep
/// the default size, so `crashsim run` replays them with its defaults).
pub const IMAGE_DEVICE_BYTES: u64 = 4 << 20;
/// PMD size in blocks of the corrupted images (the workload runs keep the faithful 512: a
/// smaller PMD is no faster there, and would make fuzz crashes replay only with
/// `--pmd-blocks`).
pub const PMD_BLOCKS: u64 = 8;
/// Recoveries per crash point while fuzzing. Inputs are explored with the sweep's lazy
/// enumeration: a point whose recovery reads few pending lines is covered completely in a few
/// recoveries, and this bounds the rare point that needs more (a sweep allows 4096).
pub const RECOVERIES_PER_POINT: usize = 64;
/// Crash points explored per explored input, a seeded sample spread over the persistence steps'
/// call sites (a sweep explores every one). Inputs with a thousand fence points otherwise cost
/// a minute each.
pub const POINTS_PER_INPUT: usize = 16;
/// One input in this many (chosen by a hash of its bytes, so a saved crash input is explored
/// again when replayed) is crash-explored; every input gets the run-time oracle. A run costs
/// about two milliseconds and a crash exploration about fifty (`examples/fuzzcost`). Over the
/// committed corpus, crash-bug failures found per second of fuzzing are the same exploring one
/// input in four or one in eight (each explored input is judged the same way, and exploration
/// dominates the time), while one in eight gives the run-time races twice the executions.
pub const EXPLORE_ONE_IN: u64 = 8;
/// A fuzz target, built with debug assertions by default, runs one in this many of each of the
/// engine's debug self-checks (a shortcut compared with its plain path, [`crate::selfcheck`]):
/// on every call they cost `crash_workload` about half its executions, and a campaign's
/// millions of executions still run each check many times. Set by the harnesses' `from_env`
/// constructors; tests run every check.
pub const SELF_CHECK_RATE: u32 = 16;
/// Violations collected from one failing input before the harness reports the most basic
/// (only failing inputs pay for it).
pub const VIOLATIONS_PER_INPUT: usize = 32;
/// Crash points of the wider exploration a failing input gets before the harness names its
/// violation.
pub const WIDENED_POINTS: usize = 64;
/// Recoveries per crash point of that wider exploration.
pub const WIDENED_RECOVERIES: usize = 256;

/// What every harness runs with. Built once per process.
#[derive(Clone, Debug)]
pub struct FuzzConfig {
    /// The daxfs bugs enabled (from [`BUGS_ENV`]), as `mount_image` and `journal_replay`
    /// mount with them and repro lines name them. [`FuzzConfig::new`] copies them into
    /// `run.mount.bugs`; changing one afterwards does not change the other.
    pub bugs: BugSet,
    /// How `crash_workload` runs daxfs (mount options with the bugs, a per-workload allocation
    /// policy).
    pub run: RunConfig,
    /// The exploration `crash_workload` gives an input ([`fuzz_crash_configs`]).
    pub crash: CrashConfig,
    /// `crash_workload` crash-explores the inputs whose hash is 0 modulo this (1: every input).
    pub explore_one_in: u64,
    /// The exploration a failing input gets before its violation is named.
    pub widened: CrashConfig,
}

/// `CRASHSIM_BUGS` names an id that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{BUGS_ENV}: {0}")]
pub struct FuzzConfigError(#[from] pub UnknownBug);

/// A harness verdict against an input: what broke, and a one-line repro command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{summary}\nrepro: {repro}")]
pub struct Failure {
    /// What broke, in one line (for a workload: the violation count and the headline
    /// violation); `harness: ...` when the harness itself could not run the input.
    pub summary: String,
    /// A shell command that replays the input (with the enabled bugs), for the report.
    pub repro: String,
}

impl FuzzConfig {
    /// The fuzzing setup with `bugs` enabled.
    pub fn new(bugs: BugSet) -> FuzzConfig {
        let mut run = RunConfig::default();
        run.mount.bugs = bugs;
        run.policy_per_workload = true;
        let (crash, widened) = fuzz_crash_configs();
        FuzzConfig { bugs, run, crash, explore_one_in: EXPLORE_ONE_IN, widened }
    }

    /// Parses a `CRASHSIM_BUGS` value (empty: the fixed model).
    pub fn from_bug_list(list: &str) -> Result<FuzzConfig, FuzzConfigError> {
        Ok(FuzzConfig::new(BugSet::parse_list(list)?))
    }

    /// Reads `CRASHSIM_BUGS` from the environment (unset: the fixed model). For a fuzz
    /// target's init: it also sets the process's debug self-checks to [`SELF_CHECK_RATE`].
    pub fn from_env() -> Result<FuzzConfig, FuzzConfigError> {
        crate::selfcheck::set_rate(SELF_CHECK_RATE);
        FuzzConfig::from_bug_list(&std::env::var(BUGS_ENV).unwrap_or_default())
    }

    /// `CRASHSIM_BUGS=… ` prefix for repro lines; empty for the fixed model.
    fn bugs_prefix(&self) -> String {
        if self.bugs.is_empty() {
            String::new()
        } else {
            format!("{BUGS_ENV}={} ", self.bugs.ids().join(","))
        }
    }

    /// Repro line for a fuzz target: libFuzzer prints the artifact path it saved.
    fn repro(&self, target: &str) -> String {
        format!(
            "{}cargo fuzz run -s none {target} fuzz/artifacts/{target}/<crash-file printed above>",
            self.bugs_prefix()
        )
    }
}
