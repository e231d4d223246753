//! Small targets that exercise the crash engine and show how to implement [`crate::target::Target`].
//!
//! Architecture Invariant: nothing here is daxfs; these targets exist to prove the generic core
//! (the canary must fail, its fixed twin must pass) and as examples for outside users.

pub mod toylog;
