//! The persistence engine against the brute-force reference (`docs/persistence-model.md`): any
//! input decodes to a small bounded trace, and to a wide-store trace checked under eADR; a
//! mismatch between the two models is a harness bug and panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = crashsim::pmem::reference::check_bytes(data) {
        panic!("pmem engine disagrees with the reference model: {e}");
    }
});
