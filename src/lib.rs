//! crashsim: a crash-consistency fuzzing harness for persistent-memory code.
//!
//! See `docs/ARCHITECTURE.md` for the bird's-eye view and the code map.

pub mod daxfs;
pub mod exec;
pub mod pmem;
pub mod rng;
pub mod sched;
pub mod workload;
