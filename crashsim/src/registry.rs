//! The targets a `crashsim` binary knows, and the one place the command code meets them.
//!
//! A registration turns a [`Target`] type into a [`Registered`] trait object: one method per
//! command that needs a target, each calling the generic command code with the type filled
//! in. The command code looks a target up by name (`--target`, or an artifact's manifest) and
//! never names a target type.

use std::marker::PhantomData;
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};

use crashsim::artifact::{self, Explanation, Loaded, Minimized, ReproReport};
use crashsim::pmem::PersistenceModel;
use crashsim::sweep::{self, RunOptions, SweepConfig, SweepSummary};
use crashsim::target::{BugInfo, Target, TargetOptions};

use crate::{RunArgs, SweepArgs, UsageError};

/// A row of `crashsim bench`: a name, the persistence model and the target's options.
#[derive(Clone, Debug)]
pub struct BenchRow {
    /// The row's label in the table and the JSON (`row`); not a target name.
    pub name: String,
    /// The persistence model the row sweeps under, with its complete crash-point granularity.
    /// An eADR row runs only with `--eadr`.
    pub model: PersistenceModel,
    /// The options the target is built from for this row (checked like `--bug` and `--set`).
    pub options: TargetOptions,
}

impl BenchRow {
    /// A row under ADR with `settings` (`KEY=VALUE` each).
    pub fn adr(name: &str, settings: &[(&str, &str)]) -> Self {
        Self::new(name, PersistenceModel::Adr, settings)
    }

    /// A row under eADR (store crash points) with `settings`.
    pub fn eadr(name: &str, settings: &[(&str, &str)]) -> Self {
        Self::new(name, PersistenceModel::Eadr, settings)
    }

    fn new(name: &str, model: PersistenceModel, settings: &[(&str, &str)]) -> Self {
        let mut options = TargetOptions::default();
        for (k, v) in settings {
            options.settings.insert((*k).to_string(), (*v).to_string());
        }
        Self { name: name.to_string(), model, options }
    }
}

/// What every command needs of a registered target, with its type erased.
pub(crate) trait Registered: Send + Sync {
    fn name(&self) -> &'static str;
    fn catalogue(&self) -> &'static [BugInfo];
    fn sweep(&self, options: &TargetOptions, args: &SweepArgs) -> anyhow::Result<ExitCode>;
    fn run(&self, options: &TargetOptions, args: &RunArgs) -> anyhow::Result<ExitCode>;
    fn sweep_summary(
        &self,
        options: &TargetOptions,
        cfg: &SweepConfig,
        run: &RunOptions,
    ) -> anyhow::Result<SweepSummary>;
    fn repro(&self, loaded: &Loaded) -> anyhow::Result<ReproReport>;
    fn minimize(&self, loaded: &Loaded, out: &Path, image: bool) -> anyhow::Result<Minimized>;
    fn explain(&self, loaded: &Loaded) -> anyhow::Result<Explanation>;
}

struct Typed<T> {
    name: &'static str,
    target: PhantomData<fn() -> T>,
}

impl<T: Target + 'static> Typed<T> {
    fn build(&self, options: &TargetOptions) -> anyhow::Result<T> {
        options.check_bugs(self.name, T::bug_catalogue()).map_err(|e| UsageError(e.to_string()))?;
        T::from_options(options).map_err(|e| UsageError(e.to_string()).into())
    }

    /// The exact target an artifact was made with.
    fn rebuild(&self, loaded: &Loaded) -> anyhow::Result<T> {
        T::from_config(&loaded.manifest.target_config).map_err(|e| {
            anyhow::anyhow!(
                "{}: target {}: {e}",
                loaded.dir.join(artifact::MANIFEST_FILE).display(),
                self.name
            )
        })
    }
}

impl<T: Target + 'static> Registered for Typed<T> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn catalogue(&self) -> &'static [BugInfo] {
        T::bug_catalogue()
    }

    fn sweep(&self, options: &TargetOptions, args: &SweepArgs) -> anyhow::Result<ExitCode> {
        crate::sweep_target(&self.build(options)?, args)
    }

    fn run(&self, options: &TargetOptions, args: &RunArgs) -> anyhow::Result<ExitCode> {
        crate::commands::run_input(&self.build(options)?, args)
    }

    fn sweep_summary(
        &self,
        options: &TargetOptions,
        cfg: &SweepConfig,
        run: &RunOptions,
    ) -> anyhow::Result<SweepSummary> {
        Ok(sweep::run_with(&self.build(options)?, cfg, run, &|_| {})?)
    }

    fn repro(&self, loaded: &Loaded) -> anyhow::Result<ReproReport> {
        Ok(artifact::repro(&self.rebuild(loaded)?, loaded)?)
    }

    fn minimize(&self, loaded: &Loaded, out: &Path, image: bool) -> anyhow::Result<Minimized> {
        Ok(artifact::minimize(&self.rebuild(loaded)?, loaded, out, image)?)
    }

    fn explain(&self, loaded: &Loaded) -> anyhow::Result<Explanation> {
        Ok(artifact::explain(&self.rebuild(loaded)?, loaded)?)
    }
}

/// One registered target.
pub(crate) struct Entry {
    pub target: Box<dyn Registered>,
    pub bench_rows: Vec<BenchRow>,
}

/// Every registered target, in registration order (the first is the default).
#[derive(Default)]
pub(crate) struct Registry {
    pub entries: Vec<Entry>,
}

impl Registry {
    pub fn add<T: Target + 'static>(&mut self) {
        // The name is the target's own: artifacts record `Target::name`, and `repro` finds the
        // registration by it.
        let name = T::from_options(&TargetOptions::default())
            .unwrap_or_else(|e| panic!("a target must build from default options: {e}"))
            .name();
        assert!(self.entries.iter().all(|e| e.target.name() != name), "target {name} registered twice");
        self.entries.push(Entry {
            target: Box::new(Typed::<T> { name, target: PhantomData }),
            bench_rows: Vec::new(),
        });
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.entries.iter().map(|e| e.target.name()).collect()
    }

    /// The entry named `name`, or the default (first) one.
    pub fn get(&self, name: Option<&str>) -> anyhow::Result<&Entry> {
        match name {
            None => self.entries.first().ok_or_else(|| anyhow::anyhow!("no target registered")),
            Some(n) => self.entries.iter().find(|e| e.target.name() == n).ok_or_else(|| {
                UsageError(format!("unknown target `{n}`; known: {}", self.names().join(", "))).into()
            }),
        }
    }

    /// The entry an artifact's manifest names.
    pub fn for_artifact(&self, loaded: &Loaded) -> anyhow::Result<&dyn Registered> {
        let name = &loaded.manifest.target;
        match self.entries.iter().find(|e| e.target.name() == name) {
            Some(e) => Ok(e.target.as_ref()),
            None => Err(anyhow::anyhow!(
                "{}: target `{name}` is not registered in this binary (it knows {})",
                loaded.dir.join(artifact::MANIFEST_FILE).display(),
                self.names().join(", ")
            )),
        }
    }
}

static REGISTRY: RwLock<Option<Arc<Registry>>> = RwLock::new(None);

/// Makes `registry` the one the commands of this process look targets up in.
pub(crate) fn install(registry: Registry) -> Arc<Registry> {
    let registry = Arc::new(registry);
    *REGISTRY.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&registry));
    registry
}

/// The registry [`install`]ed by the running command.
pub(crate) fn registry() -> Arc<Registry> {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
        .expect("a command runs only after Cli::run installed its registry")
}
