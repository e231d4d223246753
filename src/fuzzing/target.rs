//! The fuzz harness for any [`Target`]: input bytes → workload → the run-time oracles → a
//! lazy crash exploration of sampled crash points; any violation is a [`Failure`] naming its most basic class, with a
//! one-line repro command.
//!
//! ```no_run
//! # use crashsim::targets::toylog::ToyLog as MyTarget;
//! // fuzz/fuzz_targets/crash_workload.rs of a user's crate (with `#![no_main]`):
//! use std::sync::LazyLock;
//! use crashsim::fuzzing::TargetHarness;
//!
//! static HARNESS: LazyLock<TargetHarness<MyTarget>> = LazyLock::new(|| {
//!     TargetHarness::from_env("crash_workload").unwrap_or_else(|e| panic!("{e}"))
//! });
//! # fn fuzz_target(data: &[u8]) {
//! // libfuzzer_sys::fuzz_target!(|data: &[u8]| { ... }) with this body:
//! if let Err(failure) = HARNESS.check(data) {
//!     panic!("crash_workload: {failure}");
//! }
//! # }
//! ```

use std::path::PathBuf;

use arbitrary::{Arbitrary, Unstructured};

use super::mutator::{FuzzWorkload, decode_input};
use super::{
    BUGS_ENV, EXPLORE_ONE_IN, Failure, POINTS_PER_INPUT, RECOVERIES_PER_POINT, VIOLATIONS_PER_INPUT,
    WIDENED_POINTS, WIDENED_RECOVERIES,
};
use crate::check::Violation;
use crate::crash::{CrashConfig, RecoveryCrashConfig, Strategy, explore_workload, replay_run};
use crate::target::{ConfigError, Target, TargetOptions};

/// Bytes of a seed input ([`seed_input`]): enough for `arbitrary` to build a workload of a
/// few dozen operations.
pub const SEED_INPUT_BYTES: usize = 512;

/// The input bytes seed `seed` stands for, for a target whose workloads decode with
/// `arbitrary`: seed corpora are made of these, and a target that builds
/// `workload_from_seed(seed)` by decoding them (see docs/guide.md) makes every sweep seed a
/// fuzz input.
pub fn seed_input(seed: u64) -> Vec<u8> {
    crate::rng::seed_bytes(seed, SEED_INPUT_BYTES)
}

/// The workload `bytes` decode to through `arbitrary`, if it passes the target's
/// [`Target::validate_workload`].
pub fn decode_arbitrary<T: Target>(target: &T, bytes: &[u8]) -> Option<T::Workload>
where
    T::Workload: for<'a> Arbitrary<'a>,
{
    let w = T::Workload::arbitrary_take_rest(Unstructured::new(bytes)).ok()?;
    target.validate_workload(&w).ok()?;
    Some(w)
}

/// The workload `bytes` stand for under [`Decoder::Compact`], if it passes the target's
/// [`Target::validate_workload`].
pub fn decode_compact<T: Target>(target: &T, bytes: &[u8]) -> Option<T::Workload>
where
    T::Workload: FuzzWorkload,
{
    let w = decode_input::<T::Workload>(bytes)?;
    target.validate_workload(&w).ok()?;
    Some(w)
}

/// How fuzz input bytes become a workload.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decoder {
    /// Through `arbitrary` (the workload type implements it), then `validate_workload`.
    Arbitrary,
    /// Through the target's own [`Target::workload_from_bytes`] (what `run` and artifacts use).
    Target,
    /// Through the workload's compact encoding ([`FuzzWorkload`]), or its generator for bytes
    /// that are not compact, then `validate_workload`: the decoder of the structure-aware
    /// mutator ([`super::mutate`]).
    Compact,
}

/// A fuzz harness for target `T`. Build it once per process ([`TargetHarness::from_env`] reads
/// the bugs from `CRASHSIM_BUGS`); [`TargetHarness::check`] judges one input.
pub struct TargetHarness<T: Target> {
    /// The target every input runs on, built once.
    pub target: T,
    /// The fuzz target's name (`fuzz/fuzz_targets/<name>.rs`), for repro lines.
    pub name: String,
    /// The command line binary repro lines name (`crashsim`, or a user's own).
    pub bin: String,
    /// The exploration of an input.
    pub crash: CrashConfig,
    /// The wider exploration a failing input gets before its violation is named.
    pub widened: CrashConfig,
    /// Inputs whose hash is 0 modulo this are crash-explored; every input gets the run-time
    /// oracles.
    pub explore_one_in: u64,
    decode: fn(&T, &[u8]) -> Option<T::Workload>,
    decoder: Decoder,
    /// Whether `run` (the target's `workload_from_bytes`) replays these input bytes as this
    /// workload; when not, a failure saves the workload as JSON for the repro line.
    replays_as_is: fn(&T, &[u8], &T::Workload) -> bool,
}

impl<T: Target> std::fmt::Debug for TargetHarness<T> {
    /// The target by name and options (a target need not be `Debug`), and the settings.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetHarness")
            .field("target", &self.target.name())
            .field("options", &self.target.options())
            .field("name", &self.name)
            .field("bin", &self.bin)
            .field("crash", &self.crash)
            .field("widened", &self.widened)
            .field("explore_one_in", &self.explore_one_in)
            .field("decoder", &self.decoder)
            .finish()
    }
}

/// The fuzzing crash configuration: the sweep's lazy enumeration on a sample of crash points,
/// with small budgets (libFuzzer prefers many cheap executions), and its widened form.
pub fn fuzz_crash_configs() -> (CrashConfig, CrashConfig) {
    let crash = CrashConfig {
        strategy: Strategy::Lazy,
        recoveries_per_point: RECOVERIES_PER_POINT,
        points_per_workload: POINTS_PER_INPUT,
        recovery_crash: RecoveryCrashConfig { states_per_point: 1, crashes_per_state: 2 },
        violations_per_workload: VIOLATIONS_PER_INPUT,
        ..CrashConfig::default()
    };
    let widened = CrashConfig {
        recoveries_per_point: WIDENED_RECOVERIES,
        points_per_workload: WIDENED_POINTS,
        ..crash
    };
    (crash, widened)
}

impl<T: Target> TargetHarness<T> {
    /// A harness for `target` that decodes inputs through `arbitrary` (the default).
    pub fn new(target: T, name: &str) -> Self
    where
        T::Workload: for<'a> Arbitrary<'a>,
    {
        Self::with(target, name, decode_arbitrary::<T>, Decoder::Arbitrary, |_, _, _| false)
    }

    /// A harness that decodes inputs with the target's [`Target::workload_from_bytes`].
    pub fn with_target_decoder(target: T, name: &str) -> Self {
        Self::with(target, name, |t, b| t.workload_from_bytes(b).ok(), Decoder::Target, |_, _, _| true)
    }

    /// A harness that decodes inputs the way the structure-aware mutator writes them
    /// ([`Decoder::Compact`]); pair it with [`super::mutate`] and [`super::crossover`] in the
    /// fuzz target.
    pub fn compact(target: T, name: &str) -> Self
    where
        T::Workload: FuzzWorkload,
    {
        let replays = |t: &T, b: &[u8], w: &T::Workload| t.workload_from_bytes(b).is_ok_and(|r| r == *w);
        Self::with(target, name, decode_compact::<T>, Decoder::Compact, replays)
    }

    /// [`TargetHarness::compact`] for the target with the bugs `CRASHSIM_BUGS` names.
    pub fn compact_from_env(name: &str) -> Result<Self, ConfigError>
    where
        T: Sized,
        T::Workload: FuzzWorkload,
    {
        Ok(Self::compact(target_from_env::<T>()?, name))
    }

    fn with(
        target: T,
        name: &str,
        decode: fn(&T, &[u8]) -> Option<T::Workload>,
        decoder: Decoder,
        replays_as_is: fn(&T, &[u8], &T::Workload) -> bool,
    ) -> Self {
        let (crash, widened) = fuzz_crash_configs();
        Self {
            target,
            name: name.to_string(),
            bin: "crashsim".to_string(),
            crash,
            widened,
            explore_one_in: EXPLORE_ONE_IN,
            decode,
            decoder,
            replays_as_is,
        }
    }

    /// [`TargetHarness::new`] for the target with the bugs `CRASHSIM_BUGS` names (unset: none).
    pub fn from_env(name: &str) -> Result<Self, ConfigError>
    where
        T: Sized,
        T::Workload: for<'a> Arbitrary<'a>,
    {
        Ok(Self::new(target_from_env::<T>()?, name))
    }

    /// Repro lines name `bin` instead of `crashsim`.
    pub fn bin(mut self, bin: &str) -> Self {
        self.bin = bin.to_string();
        self
    }

    /// How this harness decodes inputs.
    pub fn decoder(&self) -> Decoder {
        self.decoder
    }

    /// The workload `bytes` decode to, if any.
    pub fn decode(&self, bytes: &[u8]) -> Option<T::Workload> {
        (self.decode)(&self.target, bytes)
    }

    /// Judges one input: `Ok` when it does not decode or shows no violation.
    pub fn check(&self, bytes: &[u8]) -> Result<(), Failure> {
        let Some(workload) = self.decode(bytes) else {
            return Ok(());
        };
        let harness = |e: String| Failure { summary: format!("harness: {e}"), repro: self.repro_line(None) };
        let explore = explored(bytes, self.explore_one_in);
        let mut violations = if explore {
            explore_workload(&self.target, &self.crash, 0, &workload, None)
                .map_err(|e| harness(e.to_string()))?
                .violations
        } else {
            replay_run(&self.target, &workload).map_err(harness)?.run_violations
        };
        if explore && violations.iter().any(|v| v.evidence.crash_point.is_some()) {
            // A failing input ends the campaign, so it can afford a wider look before it is
            // named: the sampled states may have caught only a consequence of the bug.
            let wide = explore_workload(&self.target, &self.widened, 0, &workload, None)
                .map_err(|e| harness(e.to_string()))?;
            violations.extend(wide.violations.into_iter().filter(|v| v.evidence.crash_point.is_some()));
        }
        // The headline: the most basic class found (old contents first), the earliest of it.
        let Some(v) = violations.iter().min_by_key(|v| v.class) else {
            return Ok(());
        };
        // When `run` would decode the bytes differently, the workload itself is saved.
        let saved = if (self.replays_as_is)(&self.target, bytes, &workload) {
            None
        } else {
            self.save_workload(bytes, &workload)
        };
        Err(Failure { summary: headline(violations.len(), v), repro: self.repro_line(saved) })
    }

    /// Writes the workload as JSON next to the other failures of this fuzz target; its path.
    fn save_workload(&self, bytes: &[u8], workload: &T::Workload) -> Option<PathBuf> {
        let dir = std::env::temp_dir().join("crashsim-fuzz").join(&self.name);
        let path = dir.join(format!("workload-{:016x}.json", fnv(bytes)));
        let json = serde_json::to_vec_pretty(workload).ok()?;
        std::fs::create_dir_all(&dir).ok()?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).ok()?;
        std::fs::rename(&tmp, &path).ok()?;
        Some(path)
    }

    fn repro_line(&self, saved: Option<PathBuf>) -> String {
        let input = match saved {
            Some(p) => p.display().to_string(),
            None => format!("fuzz/artifacts/{}/<crash-file printed below>", self.name),
        };
        let options = self.target.options();
        let bugs: String = options.bugs.iter().map(|b| format!(" --bug {b}")).collect();
        let sets: String = options.settings.iter().map(|(k, v)| format!(" --set {k}={v}")).collect();
        format!("{} run {input} --target {}{bugs}{sets}", self.bin, self.target.name())
    }
}

/// The target `T` with the bugs `CRASHSIM_BUGS` names. For a fuzz target's init: it also sets
/// the process's debug self-checks to [`super::SELF_CHECK_RATE`].
pub fn target_from_env<T: Target>() -> Result<T, ConfigError> {
    crate::selfcheck::set_rate(super::SELF_CHECK_RATE);
    let list = std::env::var(BUGS_ENV).unwrap_or_default();
    let bugs: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let options = TargetOptions::with_bugs(&bugs);
    let probe = T::from_options(&TargetOptions::default())?;
    options
        .check_bugs(probe.name(), T::bug_catalogue())
        .map_err(|e| ConfigError::new(format!("{BUGS_ENV}: {e}")))?;
    T::from_options(&options)
}

fn headline(count: usize, v: &Violation) -> String {
    format!("{count} violation(s); headline: {v}")
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Whether an input is crash-explored: FNV-1a of its bytes, modulo `one_in`.
pub(crate) fn explored(bytes: &[u8], one_in: u64) -> bool {
    fnv(bytes) % one_in.max(1) == 0
}
