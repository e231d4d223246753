//! crashsim: a crash-consistency fuzzing harness for persistent-memory code.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod artifact;
pub mod check;
pub mod crash;
pub mod daxfs;
pub mod exec;
pub mod fuzzing;
pub mod pmem;
pub mod rng;
pub mod sched;
pub mod sweep;
pub mod target;
pub mod targets;
pub mod workload;
