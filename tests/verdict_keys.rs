//! The keys of the crash oracle's page caches against the word-by-word verdict.
//!
//! A crash point's clean pages are shared between its recovered states by a key that stands for
//! the recovered state's allocation epoch with `FileHistory::freed_held_on` (how many of the
//! file's block frees on the page the state holds) instead of the whole epoch; and a page's
//! acked floors come from a table built once per crash point (`FileHistory::page_table`). Both
//! are checked here on random file histories: two epochs with equal keys must judge every word
//! of the page alike, with any found value and block, and the table must judge as the plain
//! per-word lookup does. The test also counts the epochs with different keys whose verdicts do
//! differ, so that it is known to reach the case the key exists for.

use crashsim::daxfs::BlockNr;
use crashsim::daxfs::tag::{DataTag, Word};
use crashsim::rng::rng_from_seed;
use crashsim::targets::daxfs::exec::record::{
    Ack, AckKind, DataEvent, FileHistory, FreedPages, RunRecord, ZeroKind,
};
use rand::RngExt;

const WORDS_PER_PAGE: u64 = 512;
const PAGES: u64 = 2;
const FILE: u32 = 1;
const TIDS: u64 = 8;

fn random_record(seed: u64) -> RunRecord {
    let mut rng = rng_from_seed(seed);
    let mut record = RunRecord::default();
    let mut version = 0;
    let span = |rng: &mut crashsim::rng::SimRng| {
        let lo = rng.random_range(0..PAGES * WORDS_PER_PAGE);
        let hi = rng.random_range(lo + 1..=(lo + 64).min(PAGES * WORDS_PER_PAGE));
        (lo, hi)
    };
    for at in 0..rng.random_range(4..24usize) {
        let at = at * 10;
        match rng.random_range(0..4) {
            0 | 1 => {
                version += 1;
                let (lo, hi) = span(&mut rng);
                let block = [Some(BlockNr(40)), Some(BlockNr(41)), None][rng.random_range(0..3usize)];
                record.events.push(DataEvent::Write { at, file_id: FILE, lo, hi, version, block });
            }
            2 => {
                let (lo, hi) = span(&mut rng);
                let first = lo / WORDS_PER_PAGE;
                let freed = rng.random_bool(0.8).then(|| FreedPages {
                    first,
                    last: hi.div_ceil(WORDS_PER_PAGE),
                    tid: rng.random_range(1..TIDS),
                });
                let done = if rng.random_bool(0.8) { at + 5 } else { usize::MAX };
                record.events.push(DataEvent::Zero {
                    at,
                    file_id: FILE,
                    lo,
                    hi,
                    done,
                    kind: ZeroKind::Punch,
                    freed,
                });
            }
            _ => {
                let (lo, hi) = span(&mut rng);
                record.acks.push(Ack {
                    at: at + 2,
                    file_id: FILE,
                    lo,
                    hi,
                    events_before: record.events.len(),
                    started_at: at,
                    data_only: rng.random_bool(0.3),
                    kind: AckKind::Fsync,
                    size_bytes: None,
                });
            }
        }
    }
    record
}

/// Every value worth finding at `word`: zero, each version written to the file, as this word
/// and as another offset, and garbage.
fn found_values(record: &RunRecord, word: u64) -> Vec<Word> {
    let mut found = vec![Word::Zero, Word::Other(0xdead_beef)];
    for e in &record.events {
        if let DataEvent::Write { version, .. } = e {
            for word_off in [word, word ^ 1] {
                found.push(Word::Data(DataTag { file_id: FILE, word_off, version: *version }));
            }
        }
    }
    found
}

/// Verdicts of every word of `page` with every value and block, looking floors up in the
/// page's table if `table`.
fn page_verdicts(record: &RunRecord, h: &FileHistory<'_>, page: u64, table: bool) -> Vec<String> {
    let t = table.then(|| h.page_table(page));
    let mut out = Vec::new();
    // Every fourth word keeps the test fast; the spans are wider than that.
    for word in (page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE).step_by(4) {
        for found in found_values(record, word) {
            for block in [Some(BlockNr(40)), Some(BlockNr(41)), None] {
                out.push(format!("{:?}", h.judge_in(FILE, word, t.as_ref(), found, block)));
            }
        }
    }
    out
}

/// The first verdict (by index) where `a` and `b` differ, with both verdicts.
fn first_difference(a: &[String], b: &[String]) -> Option<(usize, String, String)> {
    a.iter().zip(b).enumerate().find(|(_, (x, y))| x != y).map(|(i, (x, y))| (i, x.clone(), y.clone()))
}

#[test]
fn equal_page_keys_judge_alike_and_the_floor_table_matches_the_plain_lookup() {
    let (mut pairs_equal, mut pairs_differing_verdicts) = (0u64, 0u64);
    for seed in 0..150 {
        let record = random_record(seed);
        let landed = record.landed();
        let point = usize::MAX / 2;
        for page in 0..PAGES {
            let mut seen: Vec<(u64, Vec<String>)> = Vec::new();
            for mounted_before in 0..=TIDS {
                let h = record.history(FILE, point, point, landed, mounted_before);
                let plain = page_verdicts(&record, &h, page, false);
                let tabled = page_verdicts(&record, &h, page, true);
                assert_eq!(
                    first_difference(&plain, &tabled),
                    None,
                    "seed {seed} page {page}: the floor table"
                );
                let key = h.freed_held_on(page);
                for (k, earlier) in &seen {
                    if *k == key {
                        pairs_equal += 1;
                        assert_eq!(
                            first_difference(earlier, &plain),
                            None,
                            "seed {seed} page {page}: epochs with key {key} judge differently"
                        );
                    } else if *earlier != plain {
                        pairs_differing_verdicts += 1;
                    }
                }
                seen.push((key, plain));
            }
        }
    }
    assert!(pairs_equal > 100, "{pairs_equal} pairs of epochs with equal keys");
    assert!(
        pairs_differing_verdicts > 10,
        "the epoch changed a verdict only {pairs_differing_verdicts} times"
    );
}
