use crashsim::targets::daxfs::exec::{RunConfig, run};
use crashsim::workload::Workload;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let seed: u64 = a[1].parse().unwrap();
    let file: u32 = a[2].parse().unwrap();
    let word: u64 = a[3].parse().unwrap();
    let (lo, hi): (usize, usize) = (a[4].parse().unwrap(), a[5].parse().unwrap());
    let out = run(&Workload::from_seed(seed), &RunConfig::default()).unwrap();
    let t = out.device.trace();
    for i in lo..hi.min(t.len()) {
        let e = t.event(i);
        println!("#{i} {:?} {}", e.op, e.site);
    }
    for (i, e) in out.record.events.iter().enumerate() {
        if e.file_id() == file && e.covers(word) {
            println!("event {i}: {e:?}");
        }
    }
    for a in &out.record.acks {
        if a.file_id == file && a.lo <= word && word < a.hi {
            println!("ack {a:?}");
        }
    }
}
