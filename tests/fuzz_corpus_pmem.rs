//! Replays the committed `pmem_model` corpus (and any local fuzz artifacts) through the same check
//! the fuzz target runs, so `cargo test` covers every input libFuzzer ever kept, without libFuzzer.

use std::path::{Path, PathBuf};

use crashsim::pmem::reference::check_bytes;

fn inputs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

#[test]
fn pmem_model_corpus_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = inputs_in(&root.join("corpus/pmem_model"));
    assert!(!corpus.is_empty(), "corpus/pmem_model holds the committed seeds");
    let artifacts = inputs_in(&root.join("fuzz/artifacts/pmem_model"));
    for path in corpus.iter().chain(&artifacts) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(e) = check_bytes(&bytes) {
            panic!("{}: {e}", path.display());
        }
    }
}
