//! Replays every committed corpus input (`corpus/<target>/`, all four targets) and every local
//! fuzz artifact (`fuzz/artifacts/<target>/`) through the same harness the fuzz targets run,
//! without libFuzzer, on the fixed model: all must pass. Also checks the harnesses catch what
//! they must.

use std::path::{Path, PathBuf};

use crashsim::daxfs::{Bug, BugSet};
use crashsim::fuzzing::{CappedAlloc, Failure, FuzzConfig, JournalView, TARGETS, seed_inputs};

// The image harnesses measure single allocations; this binary runs them under the same
// allocator as the fuzz targets.
#[global_allocator]
static ALLOC: CappedAlloc = CappedAlloc;

type Harness = fn(&[u8], &FuzzConfig) -> Result<(), Failure>;

fn harness(target: &str) -> Harness {
    match target {
        "crash_workload" => crashsim::fuzzing::crash_workload,
        "mount_image" => crashsim::fuzzing::mount_image,
        "journal_replay" => crashsim::fuzzing::journal_replay,
        "artifact_load" => crashsim::fuzzing::artifact_load,
        "pmem_model" => pmem_model,
        other => panic!("no harness for {other}"),
    }
}

/// The `pmem_model` target's check: the crash-state engine against the brute-force model.
fn pmem_model(bytes: &[u8], _: &FuzzConfig) -> Result<(), Failure> {
    crashsim::pmem::reference::check_bytes(bytes)
        .map_err(|summary| Failure { summary, repro: "cargo fuzz run -s none pmem_model FILE".into() })
}

fn inputs_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> =
        entries.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// `regression-*` inputs pin a bug found by fuzzing; they are replayed by their own test.
fn is_regression(p: &Path) -> bool {
    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("regression-"))
}

fn replay(target: &str) -> usize {
    replay_shard(target, 0, 1)
}

/// Replays every `shards`-th input from the `shard`-th (a large corpus split across tests, so
/// the test harness runs the parts in parallel).
fn replay_shard(target: &str, shard: usize, shards: usize) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut corpus = inputs_in(&root.join("corpus").join(target));
    corpus.retain(|p| !is_regression(p));
    assert!(!corpus.is_empty(), "corpus/{target} holds the committed seeds");
    let artifacts = inputs_in(&root.join("fuzz/artifacts").join(target));
    let pick = |files: Vec<PathBuf>| files.into_iter().skip(shard).step_by(shards).collect::<Vec<_>>();
    let (corpus, artifacts) = (pick(corpus), pick(artifacts));
    let cfg = FuzzConfig::new(BugSet::NONE);
    let run = harness(target);
    for path in corpus.iter().chain(&artifacts) {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if let Err(f) = run(&bytes, &cfg) {
            panic!("{}: {f}", path.display());
        }
    }
    corpus.len() + artifacts.len()
}

// The crash_workload corpus (about 930 inputs) in two parts, run in parallel.
#[test]
fn crash_workload_corpus_replays_clean_first_half() {
    assert!(replay_shard("crash_workload", 0, 2) > 0);
}

#[test]
fn crash_workload_corpus_replays_clean_second_half() {
    assert!(replay_shard("crash_workload", 1, 2) > 0);
}

#[test]
fn mount_image_corpus_replays_clean() {
    assert!(replay("mount_image") > 0);
}

#[test]
fn journal_replay_corpus_replays_clean() {
    assert!(replay("journal_replay") > 0);
}

#[test]
fn artifact_load_corpus_replays_clean() {
    assert!(replay("artifact_load") > 0);
}

/// The `artifact_load` seeds are the regression artifacts, one input each; they load. Run with
/// `CRASHSIM_WRITE_SEEDS=1` to (re)write them after the artifacts change.
#[test]
fn artifact_load_seeds_are_the_regression_artifacts_and_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds = root.join("corpus/artifact_load");
    let write = std::env::var_os("CRASHSIM_WRITE_SEEDS").is_some();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root.join("corpus/regressions"))
        .expect("corpus/regressions")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    dirs.sort();
    assert!(!dirs.is_empty());
    for dir in &dirs {
        let name = format!("seed-{}", dir.file_name().expect("name").to_string_lossy());
        let bytes = crashsim::fuzzing::artifact_input_of(dir).expect("reads the artifact");
        if write {
            std::fs::create_dir_all(&seeds).expect("corpus dir");
            std::fs::write(seeds.join(&name), &bytes).expect("writes the seed");
        }
        let committed = std::fs::read(seeds.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(committed, bytes, "{name} is stale: rerun with CRASHSIM_WRITE_SEEDS=1");
        // Split back and loaded from files, the seed is a valid artifact.
        let (m, i, img) = crashsim::fuzzing::split_artifact_input(&bytes);
        let tmp = std::env::temp_dir().join(format!("crashsim-seed-load-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::write(tmp.join("manifest.json"), m).unwrap();
        std::fs::write(tmp.join("input.bin"), i).unwrap();
        if !img.is_empty() {
            std::fs::write(tmp.join("crash.img"), img).unwrap();
        }
        crashsim::artifact::load(&tmp).unwrap_or_else(|e| panic!("{name}: {e}"));
        let _ = std::fs::remove_dir_all(&tmp);
    }
}

/// A manifest whose size fields claim a terabyte (checksum intact) is refused without
/// allocating it; garbage of every shape is a typed error, never a failure.
#[test]
fn artifact_load_never_allocates_what_a_field_claims() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let loaded = crashsim::artifact::load(&root.join("corpus/regressions/no-zero-on-alloc")).expect("loads");
    let cfg = FuzzConfig::new(BugSet::NONE);
    for field in ["input", "image"] {
        let mut m = loaded.manifest.clone();
        match field {
            "input" => m.input.size_bytes = 1 << 40,
            _ => m.image = Some(crashsim::artifact::ImageInfo { size_bytes: 1 << 40, crc32: 0 }),
        }
        let bytes = crashsim::fuzzing::artifact_input(
            &crashsim::artifact::encode_manifest(&m),
            &loaded.input,
            &[7; 64],
        );
        let (r, largest) =
            crashsim::fuzzing::largest_alloc_since(|| crashsim::fuzzing::artifact_load(&bytes, &cfg));
        assert_eq!(r, Ok(()), "{field}: a typed error is not a failure");
        assert!(largest < 1 << 20, "{field}: largest allocation {largest}");
    }
    for n in 0..64u8 {
        let junk: Vec<u8> = (0..usize::from(n) * 7).map(|i| (i as u8).wrapping_mul(n)).collect();
        assert_eq!(crashsim::fuzzing::artifact_load(&junk, &cfg), Ok(()));
    }
}

#[test]
fn pmem_model_corpus_replays_clean() {
    assert!(replay("pmem_model") > 0);
}

/// Fixed-model failures `crash_workload` once found, replayed clean: `regression-truncate-zero-
/// tail-lost-write` pinned the oracle stamping truncate's zeroing after its tail-zero stores.
#[test]
fn crash_workload_regressions_replay_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = FuzzConfig::new(BugSet::NONE);
    let pinned: Vec<PathBuf> =
        inputs_in(&root.join("corpus/crash_workload")).into_iter().filter(|p| is_regression(p)).collect();
    assert!(!pinned.is_empty());
    for path in pinned {
        let bytes = std::fs::read(&path).unwrap();
        if let Err(f) = crashsim::fuzzing::crash_workload(&bytes, &cfg) {
            panic!("{}: {f}", path.display());
        }
    }
}

#[test]
fn generated_seeds_pass_the_image_harnesses() {
    let cfg = FuzzConfig::new(BugSet::NONE);
    for target in ["mount_image", "journal_replay"] {
        for (name, bytes) in seed_inputs(target, 64).expect("known target") {
            if let Err(f) = harness(target)(&bytes, &cfg) {
                panic!("{target} {name}: {f}");
            }
        }
    }
}

#[test]
fn unknown_bug_id_is_a_clear_error_at_init() {
    let e = FuzzConfig::from_bug_list("no-zero-on-alloc,not-a-bug").unwrap_err().to_string();
    assert!(e.starts_with("CRASHSIM_BUGS: unknown bug id `not-a-bug`"), "{e}");
    let cfg = FuzzConfig::from_bug_list(" commit-before-zero-durable ").unwrap();
    assert_eq!(cfg.bugs, BugSet::NONE.with(Bug::CommitBeforeZeroDurable));
    assert_eq!(cfg.run.mount.bugs, cfg.bugs);
}

#[test]
fn journal_with_every_crc_broken_replays_nothing() {
    // Flags: break every slot crc; no patches. The base image has committed transactions.
    let cfg = FuzzConfig::new(BugSet::NONE);
    crashsim::fuzzing::journal_replay(&[4], &cfg).unwrap();
    let base = crashsim::fuzzing::BaseImage::shared();
    let dev = base.device();
    let intact = JournalView::read(&dev, &base.geom).unwrap();
    assert!(intact.transactions.len() >= 2, "base image keeps transactions in its journal");
}

#[test]
fn journal_replay_catches_replay_skips_crc() {
    // With the bug, records whose crc is broken are applied: the independent decoding differs.
    let cfg = FuzzConfig::new(BugSet::NONE.with(Bug::ReplaySkipsCrc));
    let f = crashsim::fuzzing::journal_replay(&[4], &cfg).unwrap_err();
    assert!(f.summary.contains("replay applied"), "{f}");
    assert!(
        f.repro.starts_with("CRASHSIM_BUGS=replay-skips-crc cargo fuzz run -s none journal_replay"),
        "{f}"
    );
}

#[test]
fn seed_corpus_generation_is_deterministic() {
    for target in TARGETS {
        let a = seed_inputs(target, 8).unwrap();
        assert_eq!(a, seed_inputs(target, 8).unwrap(), "{target}");
        assert!(a.iter().all(|(_, b)| !b.is_empty()));
    }
}

/// Regenerates the raw seed corpora (then minimise with `cargo fuzz cmin`, see README):
/// `cargo test --test fuzz_corpus -- --ignored write_seed_corpora`.
#[test]
#[ignore = "writes corpus/<target>/; run by hand"]
fn write_seed_corpora() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Option<u64> = std::env::var("SEEDS").ok().and_then(|s| s.parse().ok());
    for target in TARGETS {
        // crash_workload: as many seeds as a short sweep covers, so cmin keeps the rare
        // interleavings that reach new code; the image targets need fewer.
        let count = seeds.unwrap_or(if target == "crash_workload" { 2000 } else { 300 });
        let dir = root.join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        let inputs = seed_inputs(target, count).unwrap();
        for (name, bytes) in &inputs {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
        assert_eq!(inputs.len() as u64, count);
    }
}

/// Rewrites every file of a corpus directory in the compact encoding: the workload each input
/// decodes to (raw generator bytes or compact), encoded, named by content hash; then minimise
/// with `cargo fuzz cmin -s none crash_workload ../corpus/crash_workload` in `fuzz/`.
/// `CORPUS_IN=DIR CORPUS_OUT=DIR cargo test --test fuzz_corpus -- --ignored compact_corpus`.
#[test]
#[ignore = "rewrites a corpus directory; run by hand"]
fn compact_corpus() {
    use crashsim::fuzzing::{FuzzWorkload, decode_input};
    use crashsim::workload::Workload;
    let dir_in = PathBuf::from(std::env::var("CORPUS_IN").expect("CORPUS_IN"));
    let dir_out = PathBuf::from(std::env::var("CORPUS_OUT").expect("CORPUS_OUT"));
    std::fs::create_dir_all(&dir_out).unwrap();
    for path in inputs_in(&dir_in).into_iter().filter(|p| !is_regression(p)) {
        let w: Workload = decode_input(&std::fs::read(&path).unwrap()).expect("every input decodes");
        let bytes = w.encode();
        let hash = bytes
            .iter()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        std::fs::write(dir_out.join(format!("compact-{hash:016x}")), bytes).unwrap();
    }
}

/// The harness finds a crash-only bug on the generated seeds and names it by its most basic
/// class, with a repro line that enables the bug.
#[test]
fn crash_workload_catches_a_crash_only_bug_with_its_class() {
    let cfg = FuzzConfig::new(BugSet::NONE.with(Bug::CommitBeforeZeroDurable));
    let inputs = seed_inputs("crash_workload", 120).expect("known target");
    let failures: Vec<Failure> =
        inputs.iter().filter_map(|(_, bytes)| crashsim::fuzzing::crash_workload(bytes, &cfg).err()).collect();
    assert!(!failures.is_empty(), "no seed input failed");
    for f in &failures {
        assert!(f.summary.contains("headline: StaleData"), "{f}");
        assert!(f.repro.contains("--bug commit-before-zero-durable"), "{f}");
    }
}

/// A run-time race is caught on every input, explored or not (seed 136 is the sweep's first
/// for `no-entry-lock`).
#[test]
fn crash_workload_catches_a_run_time_race() {
    let cfg = FuzzConfig::new(BugSet::NONE.with(Bug::NoEntryLock));
    let bytes = crashsim::workload::Workload::seed_input(136);
    let f = crashsim::fuzzing::crash_workload(&bytes, &cfg).expect_err("the race fires");
    assert!(f.summary.contains("headline: IncoherentView"), "{f}");
    crashsim::fuzzing::crash_workload(&bytes, &FuzzConfig::new(BugSet::NONE)).unwrap();
}
