//! daxfs: a small but faithful model of a Linux DAX file system on the simulated NVDIMM.
//!
//! Architecture Invariant: daxfs never imports the crash engine, the oracles or artifacts; it
//! knows only the pmem device API.

pub mod bugs;
pub mod tag;
pub mod types;

pub use bugs::{Bug, BugSet};
pub use types::*;
