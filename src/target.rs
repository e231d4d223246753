//! The contract between the generic crash engine and a system under test (SUT).
//!
//! To crash-test your own persistent-memory code, implement [`Target`]: say how to build a
//! workload from a seed, how to make a fresh image, how to run the workload on a traced
//! [`Device`], how to recover (mount) an image, and how to judge a recovered instance. The
//! engine does everything else: crash points, crash states, views, recovery crashes,
//! deduplication, evidence. `crate::targets::toylog` is a complete small example.
//!
//! Architecture Invariant: the engine never names a target's types; everything it needs passes
//! through this trait.

#![deny(missing_docs, missing_debug_implementations)]

use std::collections::BTreeMap;

use crate::check::Violation;
use crate::pmem::{CrashPoint, Device, LineWords, PmemError};

/// A target could not set up or run a workload: a harness or input problem, not a violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// A device call failed: the target addressed the device out of range, misaligned, or
    /// filled the trace. A harness or target bug, never a crash-consistency finding.
    #[error("device: {0}")]
    Pmem(#[from] PmemError),
    /// Anything else that stopped the run, in one line (a panic in the target's generator or
    /// run, a workload the target cannot set up).
    #[error("{0}")]
    Other(String),
    /// Exhaustive enumeration met a crash point with more crash states than the per-point
    /// budget, and was not allowed to sample it.
    #[error(
        "crash point {point} has {} crash states, more than the {budget} per point that exhaustive enumeration may explore",
        state_count_text(*.states)
    )]
    OverBudget {
        /// The crash point's trace position.
        point: usize,
        /// Its crash states; `u128::MAX` when the count saturated (at least that many).
        states: u128,
        /// The per-point budget it exceeded (`CrashConfig::states_per_point`).
        budget: usize,
    },
}

/// A workload that does not decode or is out of bounds: bad input, never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct WorkloadError(pub String);

impl WorkloadError {
    /// The error with `message` (any `Display`: a serde error, a bound that was exceeded).
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// Options that do not build a target: an unknown bug id or setting, a bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl ConfigError {
    /// The error with `message` (any `Display`).
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// One switchable bug of a target: off by default, switched on by id (`--bug ID`,
/// `CRASHSIM_BUGS=ID,ID`, [`TargetOptions::bugs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BugInfo {
    /// Stable kebab-case id.
    pub id: &'static str,
    /// What the buggy code does, in one line.
    pub summary: &'static str,
    /// Where the bug comes from: a mailing-list thread, a paper's bug list, an upstream commit.
    pub origin: &'static str,
}

/// What the command line, the fuzz harness and an artifact's manifest say about a target: the
/// bugs switched on and target-defined settings (`--set KEY=VALUE`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetOptions {
    /// Ids of the switchable bugs to switch on ([`BugInfo::id`]), in the order given; not yet
    /// checked against the target's catalogue (see [`TargetOptions::check_bugs`]).
    pub bugs: Vec<String>,
    /// Target-defined settings, `KEY` → `VALUE` as given on the command line, unparsed: the
    /// target parses (and rejects) values in [`Target::from_options`].
    pub settings: BTreeMap<String, String>,
}

impl TargetOptions {
    /// Options with `bugs` switched on and no settings.
    pub fn with_bugs<S: AsRef<str>>(bugs: &[S]) -> Self {
        Self { bugs: bugs.iter().map(|b| b.as_ref().to_string()).collect(), settings: BTreeMap::new() }
    }

    /// The options a target's `config_json` holds (JSON `null` means none).
    pub fn from_json(config: &serde_json::Value) -> Result<Self, ConfigError> {
        if config.is_null() {
            return Ok(Self::default());
        }
        serde_json::from_value(config.clone()).map_err(|e| ConfigError::new(format!("target options: {e}")))
    }

    /// The options as JSON, the form [`TargetOptions::from_json`] reads back (the default
    /// [`Target::config_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("options serialize")
    }

    /// Checks every bug id against `catalogue`; the error names the first unknown id.
    pub fn check_bugs(&self, target: &str, catalogue: &[BugInfo]) -> Result<(), ConfigError> {
        match self.bugs.iter().find(|b| !catalogue.iter().any(|c| c.id == b.as_str())) {
            None => Ok(()),
            Some(b) if catalogue.is_empty() => {
                Err(ConfigError::new(format!("target {target} has no switchable bugs (asked for `{b}`)")))
            }
            Some(b) => Err(ConfigError::new(format!(
                "target {target} has no bug `{b}`; its bugs: {}",
                catalogue.iter().map(|c| c.id).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The settings `known` does not name, as an error naming the first.
    pub fn check_settings(&self, target: &str, known: &[&str]) -> Result<(), ConfigError> {
        match self.settings.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) if known.is_empty() => {
                Err(ConfigError::new(format!("target {target} takes no settings (got `{k}`)")))
            }
            Some(k) => Err(ConfigError::new(format!(
                "target {target} has no setting `{k}`; its settings: {}",
                known.join(", ")
            ))),
        }
    }
}

/// `states`, or "at least ..." where the count saturated.
fn state_count_text(states: u128) -> String {
    if states == u128::MAX { format!("at least {states}") } else { states.to_string() }
}

/// What running a workload leaves behind.
#[derive(Debug)]
pub struct RunOutcome<R> {
    /// What the crash oracle needs: expected contents, which writes were acknowledged when.
    pub record: R,
    /// Violations the run-time oracles found (their crash point stays `None`).
    pub violations: Vec<Violation>,
}

/// A system under test, as the crash engine sees it.
///
/// Lifecycle per seed: `workload_from_seed` → `format` → `run` (traced) → for each crash
/// state: `recover` on a device whose media is the crash state's view → `check` and
/// `fingerprint`. Recovery writes go to a private copy-on-write overlay, so `recover` may write
/// freely; its own trace is what the engine crashes for the idempotence oracle.
///
/// `workload_from_seed`, `run`, `recover`, `check` and `fingerprint` run under `catch_unwind`:
/// a panic there is reported with its seed (or, in recovery and the oracle, becomes a
/// `RecoveryFailed` violation carrying the panic message).
///
/// Required: the three types, `name`, building (`from_options`, `options`), the run
/// (`workload_from_seed`, `format`, `run`) and the crash oracle (`recover`, `check`,
/// `fingerprint`). Everything else has a default that is correct, only slower or less
/// informative; docs/guide.md walks through each method.
pub trait Target: Sync {
    /// The operations a run executes. Pure data: the same workload gives the same trace.
    type Workload: Clone + std::fmt::Debug + Send + Sync + serde::Serialize + serde::de::DeserializeOwned;
    /// What a run leaves for the crash oracle.
    type Record: Send + Sync;
    /// A recovered (mounted) instance.
    type Mounted;
    /// Why recovery refused an image (reported as a `RecoveryFailed` violation).
    type Error: std::fmt::Display + std::fmt::Debug + Send + Sync + 'static;

    /// Stable name, used on the command line and in reports.
    fn name(&self) -> &'static str;

    // ---- Building: the command line, the fuzz harness and artifacts make targets this way. ----

    /// The target `options` describe: the bugs switched on (ids from
    /// [`Target::bug_catalogue`]) and target-defined settings.
    fn from_options(options: &TargetOptions) -> Result<Self, ConfigError>
    where
        Self: Sized;

    /// The options that rebuild this target through [`Target::from_options`].
    fn options(&self) -> TargetOptions;

    /// The target's switchable bugs. Empty (the default): none.
    fn bug_catalogue() -> &'static [BugInfo]
    where
        Self: Sized,
    {
        &[]
    }

    /// Everything an artifact's manifest needs to rebuild this exact target with
    /// [`Target::from_config`]. The default is [`Target::options`] as JSON.
    fn config_json(&self) -> serde_json::Value {
        self.options().to_json()
    }

    /// Rebuilds the target [`Target::config_json`] describes. The default reads options.
    fn from_config(config: &serde_json::Value) -> Result<Self, ConfigError>
    where
        Self: Sized,
    {
        Self::from_options(&TargetOptions::from_json(config)?)
    }

    /// Enabled switchable bugs, by id (for manifests and reports).
    fn bug_ids(&self) -> Vec<String> {
        self.options().bugs
    }

    // ---- The run. ----

    /// The workload for `seed`; deterministic.
    fn workload_from_seed(&self, seed: u64) -> Self::Workload;

    /// A freshly formatted device: its initial image is the formatted media, its trace empty.
    fn format(&self) -> Result<Device, TargetError>;

    /// Runs `workload` on `dev`, which traces every store, flush and fence. A target with
    /// several threads may mark each scheduling step with [`Device::begin_step`], so `show`
    /// draws a timeline lane per thread.
    fn run(
        &self,
        workload: &Self::Workload,
        dev: &mut Device,
    ) -> Result<RunOutcome<Self::Record>, TargetError>;

    // ---- The crash oracle. ----

    /// Mounts the image on `dev` (replaying any journal). An `Err` is a `RecoveryFailed`.
    fn recover(&self, dev: &mut Device) -> Result<Self::Mounted, Self::Error>;

    /// Recovery of a crash state that is judged and never crashed again (most states of a
    /// sweep): the engine calls this instead of [`Target::recover`] when it will not crash the
    /// recovery itself. It may skip work whose only effect is on media that nothing reads
    /// afterwards (such as writing the recovered metadata back, when [`Target::check_lines`]
    /// judges the metadata `recover` returns and reads data through its `words`), but it must
    /// fail exactly when `recover` fails and return a state that `check_lines`,
    /// [`Target::verdict_key`] and [`Target::fingerprint`] treat as they treat `recover`'s.
    /// The engine also calls it for the second recovery after a crash inside recovery, whose
    /// fingerprint it compares with the first's. A debug build runs both on every fourth
    /// judged state and on each such second recovery, and compares whether they fail, their
    /// fingerprints and, for a line-local target, their verdict keys; the recoveries a sweep
    /// crashes, and brute-force exploration, always run `recover`. The default is `recover`.
    fn recover_to_judge(&self, dev: &mut Device) -> Result<Self::Mounted, Self::Error> {
        self.recover(dev)
    }

    /// Crash oracle: judges a recovered instance of a crash at `point` of the run's trace.
    fn check(
        &self,
        mounted: &Self::Mounted,
        dev: &Device,
        record: &Self::Record,
        point: CrashPoint,
    ) -> Vec<Violation>;

    /// A digest of the recovered logical state (the contents a user could read, the
    /// allocation), for the idempotence oracle: a crash during recovery followed by recovery
    /// must give the same digest as one clean recovery.
    ///
    /// Required, with no default: a constant would make that oracle unable to fire, and a
    /// digest of the raw media would fire on every harmless difference (a journal slot
    /// recovery rewrote, a checkpoint counter).
    fn fingerprint(&self, mounted: &Self::Mounted, dev: &Device) -> u64;

    /// A digest of what `check` expects at `point` (e.g. how many writes were acknowledged
    /// before it). Two crash states with equal images and equal expectations get the same
    /// verdict, so the engine checks only the first. The default, the point itself, is always
    /// sound and shares nothing across points; a target whose expectations change only at
    /// acknowledgements can return their count and let equal images at later points be skipped.
    fn expectations_at(&self, _record: &Self::Record, point: CrashPoint) -> u64 {
        point.0 as u64
    }

    /// Crash oracle for a cut inside the store at `point` (eADR, a choice with `torn > 0`): the
    /// events before `point` completed and the store at `point` had begun, so data of the
    /// operation it belongs to may show. The default is [`Target::check`], right for an oracle
    /// that never asks which operations had begun.
    fn check_torn(
        &self,
        mounted: &Self::Mounted,
        dev: &Device,
        record: &Self::Record,
        point: CrashPoint,
    ) -> Vec<Violation> {
        self.check(mounted, dev, record, point)
    }

    // ---- Optional: line-local verdicts (faster complete exploration). ----

    /// Crash oracle of one recovered metadata state of a lazily enumerated crash point: judges
    /// every crash state that the engine's lazy enumeration stands for at once. `torn`: the
    /// store at `point` had begun (as for [`Target::check_torn`]).
    ///
    /// Reads through `dev` are tracked: every pending cache line read there (by recovery, or
    /// here) gets its choices enumerated, so such reads are always exact. Reads through `words`
    /// are not: they see the pending lines no recovery read at "nothing persisted", and
    /// [`LineWords::others`] lists the other values each word may hold. A target that reads data
    /// through `words` promises a *line-local* verdict (and says so with
    /// [`Target::line_local`]): its verdict on a word depends only on that word's value and on
    /// the recovered metadata, and it judges the image's value and every other value. The engine
    /// reproduces every violation on a concrete crash state, and a debug build panics if one
    /// does not reproduce (the promise was broken).
    ///
    /// The default judges through `dev` alone with [`Target::check`] / [`Target::check_torn`]:
    /// exact, but every line it reads is enumerated.
    fn check_lines(
        &self,
        mounted: &Self::Mounted,
        dev: &Device,
        record: &Self::Record,
        point: CrashPoint,
        torn: bool,
        words: &LineWords<'_>,
    ) -> Vec<Violation> {
        let _ = words;
        if torn {
            self.check_torn(mounted, dev, record, point)
        } else {
            self.check(mounted, dev, record, point)
        }
    }

    /// Whether [`Target::check_lines`] judges data words line-locally through its `words`.
    fn line_local(&self) -> bool {
        false
    }

    /// For a line-local target: a digest of everything in `mounted` that
    /// [`Target::check_lines`] depends on besides the words it reads through `words` (the
    /// recovered metadata, and whatever else recovery derived). Two recovered states of one
    /// crash point with equal keys, whose words read through `words` hold equal values, get
    /// the same verdict, so the engine judges the second from the first. `None` (the
    /// default): every recovered state is judged.
    fn verdict_key(&self, _mounted: &Self::Mounted, _dev: &Device) -> Option<u128> {
        None
    }

    // ---- Optional: inputs, artifacts and minimization (docs/design.md §9). ----

    /// The raw input bytes seed `seed` stands for (an artifact's `input.bin`); decoding them
    /// with [`Target::workload_from_bytes`] must give `workload_from_seed(seed)`.
    fn input_for_seed(&self, seed: u64) -> Vec<u8> {
        serde_json::to_vec(&self.workload_from_seed(seed)).expect("a workload serializes")
    }

    /// The workload raw input bytes decode to (a fuzz artifact or `input.bin`).
    fn workload_from_bytes(&self, bytes: &[u8]) -> Result<Self::Workload, WorkloadError> {
        let w = serde_json::from_slice(bytes).map_err(WorkloadError::new)?;
        self.validate_workload(&w)?;
        Ok(w)
    }

    /// Checks the bounds of a workload that did not come from the generator (JSON, the
    /// minimizer's shrink candidates, the fuzzer's decoder).
    fn validate_workload(&self, _workload: &Self::Workload) -> Result<(), WorkloadError> {
        Ok(())
    }

    /// Device byte ranges whose damage the target promises to detect (checksummed records, such
    /// as a journal). The engine adds media-fault states: one bit flipped in a word the run
    /// stored there, judged by the integrity oracles only (`AllocatorInconsistent`,
    /// `RecoveryFailed`): recovery must reject the damaged record, never apply it. Empty (the
    /// default): no media faults.
    fn media_fault_ranges(&self) -> Vec<std::ops::Range<u64>> {
        Vec::new()
    }

    /// The integrity oracles alone, for a media-fault state: every `AllocatorInconsistent`
    /// violation [`Target::check`] (`torn`: [`Target::check_torn`]) would report of this
    /// recovered state; the engine keeps only those, and `RecoveryFailed` from `recover`. The
    /// default runs the whole check; a target whose data checks are expensive may judge just
    /// its metadata here. A debug build checks the promise on every media-fault state: the
    /// same `AllocatorInconsistent` violations, at the same addresses, as the whole check.
    fn check_integrity(
        &self,
        mounted: &Self::Mounted,
        dev: &Device,
        record: &Self::Record,
        point: CrashPoint,
        torn: bool,
    ) -> Vec<Violation> {
        if torn {
            self.check_torn(mounted, dev, record, point)
        } else {
            self.check(mounted, dev, record, point)
        }
    }

    /// Size of a workload in operations (what the minimizer reports).
    fn workload_ops(&self, _workload: &Self::Workload) -> usize {
        0
    }

    /// This target with every setting it derives from a workload's contents fixed to the
    /// value `workload` gives it, so the minimizer's smaller workloads keep it; `None` when
    /// nothing is derived.
    fn fixed_for(&self, _workload: &Self::Workload) -> Option<Self>
    where
        Self: Sized,
    {
        None
    }

    /// Smaller variants of `workload` to try when minimizing, most aggressive first. The
    /// minimizer skips a candidate that fails [`Target::validate_workload`]. Empty: the
    /// workload is not shrunk.
    fn shrink(&self, _workload: &Self::Workload) -> Vec<Self::Workload> {
        Vec::new()
    }

    /// A human reading of the media word `value` at byte address `addr` (the same value means
    /// different things at different addresses: a journal slot, a bitmap, data).
    fn describe_word(&self, _addr: u64, _value: u64) -> Option<String> {
        None
    }
}
