//! Small targets that exercise the crash engine and show how to implement [`crate::target::Target`].
//!
//! `daxfs` plugs the shipped system under test into the engine. `toylog` is not daxfs: it proves
//! the generic core (the canary must fail, its fixed twin must pass) and is an example for
//! outside users.

pub mod daxfs;
pub mod toylog;
