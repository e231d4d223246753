//! The target's own contract: workloads, bounds, shrink candidates, recovery, words.

use crashsim::crash::{CrashConfig, replay_run};
use crashsim::target::Target;
use levelhash::{KEY_MAX, LevelHash, LevelWorkload, OPS_GEN_MAX, OPS_MAX, OPS_MIN, Op, VALUE_MAX, poison};

#[test]
fn generated_workloads_are_in_bounds_and_deterministic() {
    let t = LevelHash::fixed();
    for seed in 0..200 {
        let w = t.workload_from_seed(seed);
        assert_eq!(w, t.workload_from_seed(seed));
        assert!((OPS_MIN..=OPS_GEN_MAX).contains(&w.ops.len()));
        t.validate_workload(&w).unwrap();
        assert_eq!(t.workload_from_bytes(&t.input_for_seed(seed)).unwrap(), w);
    }
}

#[test]
fn validate_rejects_out_of_bounds_workloads() {
    let t = LevelHash::fixed();
    let ok = Op::Insert { key: 1, value: 1 };
    for bad in [
        vec![],
        vec![ok; OPS_MAX + 1],
        vec![Op::Insert { key: 0, value: 1 }],
        vec![Op::Lookup { key: KEY_MAX + 1 }],
        vec![ok, Op::Update { key: 1, value: 0 }],
        vec![Op::Insert { key: 2, value: VALUE_MAX + 1 }],
    ] {
        assert!(t.validate_workload(&LevelWorkload { ops: bad.clone() }).is_err(), "{bad:?}");
    }
    let json = br#"{"ops":[{"op":"delete","key":99}]}"#;
    assert!(t.workload_from_bytes(json).is_err());
}

#[test]
fn shrink_candidates_are_valid_and_smaller() {
    let t = LevelHash::fixed();
    for seed in 0..50 {
        let w = t.workload_from_seed(seed);
        let c = t.shrink(&w);
        assert!(c.len() >= w.ops.len(), "down to every single operation");
        assert!(c.iter().all(|s| s.ops.len() < w.ops.len() && t.validate_workload(s).is_ok()));
        assert!(c.windows(2).all(|p| p[0].ops.len() <= p[1].ops.len()), "most aggressive first");
    }
    assert!(t.shrink(&LevelWorkload { ops: vec![Op::Lookup { key: 1 }] }).is_empty());
}

#[test]
fn a_clean_run_recovers_to_the_map() {
    let t = LevelHash::fixed();
    let w = LevelWorkload {
        ops: vec![
            Op::Insert { key: 5, value: 50 },
            Op::Insert { key: 6, value: 60 },
            Op::Insert { key: 5, value: 99 }, // exists: no change
            Op::Update { key: 5, value: 51 },
            Op::Delete { key: 6 },
            Op::Lookup { key: 5 },
            Op::Update { key: 7, value: 1 }, // absent: no change
        ],
    };
    let r = replay_run(&t, &w).unwrap();
    assert!(r.run_violations.is_empty(), "{:?}", r.run_violations);
    let report = crashsim::crash::explore_workload(&t, &CrashConfig::default(), 0, &w, None).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    let mut dev = t.format().unwrap();
    t.run(&w, &mut dev).unwrap();
    let m = t.recover(&mut dev).unwrap();
    assert_eq!(m.pairs(), vec![(5, 51)]);
}

#[test]
fn words_describe_themselves() {
    let t = LevelHash::fixed();
    assert_eq!(t.describe_word(0x200, poison(0x200)).as_deref(), Some("poison (never written)"));
    assert!(t.describe_word(0, 0).unwrap().contains("magic"));
    assert_eq!(t.describe_word(128 + 120, 0b101).as_deref(), Some("top bucket 0 token: slots [0, 2] valid"));
    assert_eq!(t.describe_word(128 + 24, 7).as_deref(), Some("top bucket 0 slot 1 key 7"));
    let mut dev = t.format().unwrap();
    t.run(&LevelWorkload { ops: vec![Op::Insert { key: 3, value: 33 }] }, &mut dev).unwrap();
    let m = t.recover(&mut dev).unwrap();
    assert_eq!(m.pairs(), vec![(3, 33)]);
    let described: Vec<String> = (128..128 + 12 * 128)
        .step_by(8)
        .filter_map(|a| {
            let v = dev.read_u64(crashsim::pmem::PmemAddr(a)).unwrap();
            t.describe_word(a, v).filter(|d| d.contains("value 33"))
        })
        .collect();
    assert_eq!(described.len(), 2, "both value words decode: {described:?}");
    assert!(t.describe_word(1 << 20, 0).is_none());
}
