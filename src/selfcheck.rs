//! How often a debug build checks its shortcuts as it runs.
//!
//! Debug builds compare each shortcut with its plain path while they run: a cached digest with
//! a recomputation, a sparse view with a dense one, the recovery used for judging with the
//! full one. Tests want every such check. A fuzz target is built with debug assertions too
//! (cargo-fuzz's default), but there the checks cost two to three times the executions; it
//! keeps them on a sample instead ([`set_rate`]), so millions of executions still exercise
//! every check many times. A release build runs none of them.
//!
//! Which checks run never changes a result: a check only reads, and fails by panicking.

use std::sync::atomic::{AtomicU32, Ordering};

static RATE: AtomicU32 = AtomicU32::new(1);

/// Runs one in `rate` of each self-check site's checks from now on (1, the default: every
/// one; 0 is taken as 1). For fuzz targets; tests keep the default.
pub fn set_rate(rate: u32) {
    RATE.store(rate.max(1), Ordering::Relaxed);
}

/// The current rate ([`set_rate`]).
pub fn rate() -> u32 {
    RATE.load(Ordering::Relaxed)
}

/// Whether the check at the site counting with `site` runs now: never without debug
/// assertions; with them, one call in [`rate`] (counted per site, so a rare check is not
/// starved by a common one). Use [`self_check_due!`](crate::self_check_due).
#[inline]
pub fn due_at(site: &AtomicU32) -> bool {
    if !cfg!(debug_assertions) {
        return false;
    }
    let rate = RATE.load(Ordering::Relaxed);
    rate <= 1 || site.fetch_add(1, Ordering::Relaxed) % rate == 0
}

/// Whether the debug self-check written here runs now ([`due_at`] with a counter of its own).
#[macro_export]
macro_rules! self_check_due {
    () => {{
        static SITE: ::std::sync::atomic::AtomicU32 = ::std::sync::atomic::AtomicU32::new(0);
        $crate::selfcheck::due_at(&SITE)
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A site runs every check at rate 1 and one in `rate` otherwise, counted per site; a
    /// release build runs none. (Tests share the rate: this one puts it back.)
    #[test]
    fn a_site_runs_one_check_in_rate() {
        let site = AtomicU32::new(0);
        let other = AtomicU32::new(0);
        let runs = |s: &AtomicU32, n: usize| (0..n).filter(|_| due_at(s)).count();
        let debug = cfg!(debug_assertions);
        assert_eq!(runs(&site, 10), if debug { 10 } else { 0 });
        set_rate(4);
        let got = (runs(&site, 16), runs(&other, 3));
        set_rate(1);
        assert_eq!(got, if debug { (4, 1) } else { (0, 0) });
        set_rate(0);
        assert_eq!(rate(), 1, "0 is taken as 1");
    }
}
