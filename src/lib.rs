//! crashsim: a crash-consistency fuzzing harness for persistent-memory code.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod artifact;
pub mod check;
pub mod crash;
#[doc(hidden)]
pub mod daxfs;
pub mod fuzzing;
pub mod pmem;
pub mod rng;
#[doc(hidden)]
pub mod sched;
pub mod selfcheck;
pub mod sweep;
pub mod target;
pub mod targets;
#[doc(hidden)]
pub mod workload;
