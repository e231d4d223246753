//! daxfs: a small but faithful model of a Linux DAX file system on the simulated NVDIMM.
//!
//! Architecture Invariant: daxfs never imports the crash engine, the oracles or artifacts; it
//! knows only the pmem device API.

pub mod balloc;
pub mod bugs;
pub mod dax;
pub mod fs;
pub mod fsck;
pub mod iomap;
pub mod journal;
pub mod layout;
pub mod meta;
pub mod ops;
pub mod store;
pub mod tag;
pub mod types;

pub use bugs::{Bug, BugSet};
pub use fsck::{FsckProblem, fsck, fsck_media};
pub use journal::ReplayPass;
pub use layout::{Geometry, mkfs};
pub use meta::{Inode, Metadata};
pub use store::{MetaStore, RecoveryInfo};
pub use types::*;
