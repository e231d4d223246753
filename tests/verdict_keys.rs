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
//!
//! Across crash points, a page's table is extended ack by ack (`FileHistory::extend_page_table`)
//! and a clean page verdict is shared by the key (table, `FileHistory::page_events`,
//! `freed_held_on`). The second test checks both against the tables and verdicts of each
//! crash point's own history, and shows that each part of the key, and the condition under
//! which tables are shared at all, is needed: leaving one out would share a verdict or a table
//! between histories that differ.

use crashsim::daxfs::BlockNr;
use crashsim::daxfs::tag::{DataTag, Word};
use crashsim::rng::rng_from_seed;
use crashsim::targets::daxfs::exec::record::{
    Ack, AckKind, DataEvent, FileHistory, FreedPages, PageTable, RunRecord, WordVerdict, ZeroKind,
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
                // Sometimes the ack returns at the very position where the next event begins,
                // so that a cut there holds the ack and not the event.
                let returned = if rng.random_bool(0.25) { at + 10 } else { at + 2 };
                record.acks.push(Ack {
                    at: returned,
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

/// Every crash point worth cutting at: each event's and ack's position and the one after, cut
/// whole or torn (`begun` one past the point).
fn cuts(record: &RunRecord) -> Vec<(usize, usize)> {
    let mut at: Vec<usize> =
        record.events.iter().map(DataEvent::at).chain(record.acks.iter().map(|a| a.at)).collect();
    at.extend(at.clone().into_iter().map(|a| a + 1));
    at.sort_unstable();
    at.dedup();
    at.into_iter().flat_map(|p| [(p, p), (p, p + 1)]).collect()
}

/// Which words of `page` are judged good, with every value and block (every eighth word).
fn page_good(record: &RunRecord, h: &FileHistory<'_>, page: u64) -> Vec<bool> {
    let table = h.page_table(page);
    let mut out = Vec::new();
    for word in (page * WORDS_PER_PAGE..(page + 1) * WORDS_PER_PAGE).step_by(8) {
        for found in found_values(record, word) {
            for block in [Some(BlockNr(40)), Some(BlockNr(41)), None] {
                out.push(h.judge_in(FILE, word, Some(&table), found, block) == WordVerdict::Ok);
            }
        }
    }
    out
}

#[test]
fn tables_extended_across_crash_points_and_the_page_history_key_are_exact() {
    let (mut extended, mut equal_keys) = (0u64, 0u64);
    // Pairs that a weaker key or a weaker sharing condition would have merged wrongly.
    let (mut events_needed, mut table_needed, mut condition_needed) = (0u64, 0u64, 0u64);
    for seed in 0..150 {
        let record = random_record(seed);
        let landed = record.landed();
        let cuts = cuts(&record);
        for page in 0..PAGES {
            for mounted_before in [0, TIDS / 2, TIDS] {
                // (acks, table, page events, freed held, good words) of each shareable history.
                let mut seen: Vec<(usize, PageTable, usize, u64, Vec<bool>)> = Vec::new();
                // The table of the latest shareable history, by its number of acks.
                let mut latest: Option<(usize, PageTable)> = None;
                let mut unshared: Vec<(usize, PageTable)> = Vec::new();
                for &(point, begun) in &cuts {
                    let h = record.history(FILE, point, begun, landed, mounted_before);
                    let table = h.page_table(page);
                    if !h.tables_shareable() {
                        assert_eq!(
                            h.extend_page_table(&table, page, 0),
                            None,
                            "seed {seed}: unshareable extends"
                        );
                        unshared.push((h.acks_returned(), table));
                        continue;
                    }
                    if let Some((acks, earlier)) = &latest {
                        let grown = h.extend_page_table(earlier, page, *acks).expect("shareable");
                        assert!(
                            grown == table,
                            "seed {seed} page {page} point {point}/{begun}: the extended table differs"
                        );
                        extended += 1;
                    }
                    let good = page_good(&record, &h, page);
                    let (events, freed) = (h.page_events(page), h.freed_held_on(page));
                    for (_, t, e, f, g) in &seen {
                        let same_table = *t == table;
                        if same_table && *e == events && *f == freed {
                            equal_keys += 1;
                            assert_eq!(g, &good, "seed {seed} page {page} point {point}/{begun}: equal keys");
                        } else if *g != good {
                            events_needed += u64::from(same_table && *f == freed);
                            table_needed += u64::from(*e == events && *f == freed);
                        }
                    }
                    latest = Some((h.acks_returned(), table.clone()));
                    seen.push((h.acks_returned(), table, events, freed, good));
                }
                // An unshareable history's table differs from the shared one of as many acks.
                for (acks, table) in unshared {
                    let shared = seen.iter().find(|s| s.0 == acks).map(|s| &s.1);
                    condition_needed += u64::from(shared.is_some_and(|s| *s != table));
                }
            }
        }
    }

    assert!(extended > 1_000, "{extended} tables extended");
    assert!(equal_keys > 1_000, "{equal_keys} pairs with equal keys");
    assert!(events_needed > 10, "page events told verdicts apart {events_needed} times");
    assert!(table_needed > 10, "tables told verdicts apart {table_needed} times");
    assert!(condition_needed > 0, "the sharing condition told tables apart {condition_needed} times");
}
