//! Panics in the system under test become `RecoveryFailed` violations, quietly.
//!
//! One process-wide panic hook is installed once; it is silent only on a thread that is inside
//! [`guarded`], and defers to the previous hook everywhere else, so harness panics (bugs in the
//! harness) still print as usual.

use std::cell::{Cell, RefCell};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

static HOOK: Once = Once::new();

fn install_quiet_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(Cell::get) {
                return previous(info);
            }
            let payload = info.payload();
            let message = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("non-string panic payload");
            let located = match info.location() {
                Some(l) => format!("{message} at {}:{}", l.file(), l.line()),
                None => message.to_string(),
            };
            LAST_PANIC.with(|p| *p.borrow_mut() = Some(located));
        }));
    });
}

/// Runs `f`, turning a panic into `Err("panicked: MESSAGE at FILE:LINE")`.
pub(crate) fn guarded<R>(f: impl FnOnce() -> Result<R, String>) -> Result<R, String> {
    install_quiet_hook();
    let was_quiet = QUIET.with(|q| q.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was_quiet));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let hooked = LAST_PANIC.with(|p| p.borrow_mut().take());
            let fallback = || {
                payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-string panic payload".to_string())
            };
            Err(format!("panicked: {}", hooked.unwrap_or_else(fallback)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_becomes_an_error_with_its_message() {
        let r: Result<(), String> = guarded(|| panic!("replay fell over at {}", 7));
        let msg = r.unwrap_err();
        assert!(msg.starts_with("panicked: replay fell over at 7"), "{msg}");
        assert!(msg.contains("guard.rs"), "{msg}");
        assert_eq!(guarded(|| Ok::<_, String>(3)), Ok(3));
        assert_eq!(guarded(|| Err::<(), _>("bad".to_string())), Err("bad".to_string()));
    }
}
