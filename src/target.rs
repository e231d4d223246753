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

use crate::check::Violation;
use crate::pmem::{CrashPoint, Device, LineWords, PmemError};

/// A target could not set up or run a workload: a harness or input problem, not a violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("device: {0}")]
    Pmem(#[from] PmemError),
    #[error("{0}")]
    Other(String),
    /// Exhaustive enumeration met a crash point with more crash states than the per-point
    /// budget, and was not allowed to sample it.
    #[error(
        "crash point {point} has {} crash states, more than the {budget} per point that exhaustive enumeration may explore",
        state_count_text(*.states)
    )]
    OverBudget { point: usize, states: u128, budget: usize },
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
/// `recover`, `check` and `fingerprint` run under `catch_unwind`: a panic there becomes a
/// `RecoveryFailed` violation carrying the panic message.
pub trait Target: Sync {
    /// The operations a run executes. Pure data: the same workload gives the same trace.
    type Workload: Clone + std::fmt::Debug + Send + Sync + serde::Serialize + serde::de::DeserializeOwned;
    /// What a run leaves for the crash oracle.
    type Record: Send + Sync;
    /// A recovered (mounted) instance.
    type Mounted;

    /// Stable name, used on the command line and in reports.
    fn name(&self) -> &'static str;

    /// The workload for `seed`; deterministic.
    fn workload_from_seed(&self, seed: u64) -> Self::Workload;

    /// A freshly formatted device: its initial image is the formatted media, its trace empty.
    fn format(&self) -> Result<Device, TargetError>;

    /// Runs `workload` on `dev`, which traces every store, flush and fence.
    fn run(
        &self,
        workload: &Self::Workload,
        dev: &mut Device,
    ) -> Result<RunOutcome<Self::Record>, TargetError>;

    /// Mounts the image on `dev` (replaying any journal). An `Err` is a `RecoveryFailed`.
    fn recover(&self, dev: &mut Device) -> Result<Self::Mounted, String>;

    /// Crash oracle: judges a recovered instance of a crash at `point` of the run's trace.
    fn check(
        &self,
        mounted: &Self::Mounted,
        dev: &Device,
        record: &Self::Record,
        point: CrashPoint,
    ) -> Vec<Violation>;

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

    /// A digest of the recovered logical state (file contents, allocation), for the
    /// idempotence oracle: a crash during recovery followed by recovery must give the same.
    fn fingerprint(&self, mounted: &Self::Mounted, dev: &Device) -> u64;

    /// A digest of what `check` expects at `point` (e.g. how many writes were acknowledged
    /// before it). Two crash states with equal images and equal expectations get the same
    /// verdict, so the engine checks only the first; returning a constant is sound only if
    /// `check` ignores `point`.
    fn expectations_at(&self, record: &Self::Record, point: CrashPoint) -> u64;

    // ---- Artifacts (docs/design.md §9). Defaults make a target usable without them. ----

    /// The raw input bytes seed `seed` stands for (an artifact's `input.bin`); decoding them
    /// with [`Target::workload_from_bytes`] must give `workload_from_seed(seed)`.
    fn input_for_seed(&self, seed: u64) -> Vec<u8> {
        serde_json::to_vec(&self.workload_from_seed(seed)).expect("a workload serializes")
    }

    /// The workload raw input bytes decode to (a fuzz artifact or `input.bin`).
    fn workload_from_bytes(&self, bytes: &[u8]) -> Result<Self::Workload, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Checks the bounds of a workload that did not come from the decoder (JSON, minimizer).
    fn validate_workload(&self, _workload: &Self::Workload) -> Result<(), String> {
        Ok(())
    }

    /// The target's options as JSON, for manifests; [`Target::bug_ids`] lists enabled bugs.
    fn config_json(&self) -> serde_json::Value {
        serde_json::Value::Null
    }

    /// Device byte ranges whose damage the target promises to detect (checksummed records, such
    /// as a journal). The engine adds media-fault states: one bit flipped in a word the run
    /// stored there, judged by the integrity oracles only (`AllocatorInconsistent`,
    /// `RecoveryFailed`): recovery must reject the damaged record, never apply it. Empty (the
    /// default): no media faults.
    fn media_fault_ranges(&self) -> Vec<std::ops::Range<u64>> {
        Vec::new()
    }

    /// Enabled switchable bugs, by id.
    fn bug_ids(&self) -> Vec<String> {
        Vec::new()
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

    /// Smaller variants of `workload` to try when minimizing, most aggressive first; each
    /// must pass [`Target::validate_workload`]. Empty: the workload is not shrunk.
    fn shrink(&self, _workload: &Self::Workload) -> Vec<Self::Workload> {
        Vec::new()
    }

    /// A human reading of a media word, if the target's words are self-describing.
    fn describe_word(&self, _value: u64) -> Option<String> {
        None
    }
}
