//! Watching and stopping a sweep: progress lines for logs, the bar on a terminal, and
//! SIGINT/SIGTERM.
//!
//! The first SIGINT or SIGTERM sets the sweep's cancellation flag: the workers abandon their
//! seeds, the sweep returns what it has, and the summary is printed, marked interrupted. A
//! second one exits at once (130 for SIGINT, 143 for SIGTERM), unless it arrives within
//! [`REPEAT_GRACE`] of the first: `timeout(1)` and CI runners signal both the process and its
//! group, so one request to stop arrives twice.

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crashsim::sweep::{Monitor, Progress};
use signal_hook::consts::{SIGINT, SIGTERM};

/// A repeat of the stopping signal this soon after the first is the same request delivered
/// twice (to the process and to its process group), not a second request.
const REPEAT_GRACE: Duration = Duration::from_secs(1);

/// How often the reporter looks at the cancellation flag and redraws the bar.
const TICK: Duration = Duration::from_millis(200);

/// The signals a sweep stops on, and which one arrived first.
pub struct Signals {
    /// Set by the first SIGINT or SIGTERM; the sweep's cancellation flag.
    pub cancel: Arc<AtomicBool>,
    /// The number of the signal that set `cancel` (0: none yet).
    which: Arc<AtomicUsize>,
}

impl Signals {
    /// Installs the handlers: the first signal records itself and sets the flag; a later one,
    /// [`REPEAT_GRACE`] or more after the first, exits at once.
    pub fn install() -> anyhow::Result<Self> {
        let cancel = Arc::new(AtomicBool::new(false));
        let which = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        // Milliseconds since `start` when the first signal arrived, plus one (0: none yet).
        let first_ms = Arc::new(AtomicU64::new(0));
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            let (cancel, which, first_ms) = (Arc::clone(&cancel), Arc::clone(&which), Arc::clone(&first_ms));
            // SAFETY: the action uses only atomics, the monotonic clock (clock_gettime) and
            // `_exit`, all async-signal-safe.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    let now_ms = start.elapsed().as_millis() as u64 + 1;
                    match first_ms.compare_exchange(0, now_ms, Ordering::SeqCst, Ordering::SeqCst) {
                        Ok(_) => {
                            // `which` before `cancel`: whoever sees the flag set sees the signal.
                            which.store(signal as usize, Ordering::SeqCst);
                            cancel.store(true, Ordering::SeqCst);
                        }
                        Err(first) if now_ms - first >= REPEAT_GRACE.as_millis() as u64 => {
                            signal_hook::low_level::exit(code);
                        }
                        Err(_) => {}
                    }
                })?;
            }
        }
        Ok(Self { cancel, which })
    }

    /// The first signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.which.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n as i32),
        }
    }
}

pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// The reporter thread: a plain line every `interval` when stderr is not a terminal, the bar
/// (with the same facts) when it is; nothing with a zero interval.
pub struct Reporter {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Reporter {
    pub fn start(monitor: Arc<Monitor>, interval: Duration, signals: &Signals) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        let cancel = Arc::clone(&signals.cancel);
        let which = Arc::clone(&signals.which);
        let tty = std::io::stderr().is_terminal();
        let thread = std::thread::spawn(move || {
            let bar = (tty && !interval.is_zero()).then(|| progress_bar(monitor.snapshot().seeds_total));
            let mut next_line = Instant::now() + interval;
            let mut noted = false;
            loop {
                let done = !matches!(stopped.recv_timeout(TICK), Err(mpsc::RecvTimeoutError::Timeout));
                if cancel.load(Ordering::SeqCst) && !noted {
                    noted = true;
                    let name = signal_name(which.load(Ordering::SeqCst) as i32);
                    let note = format!(
                        "crashsim: {name} received: stopping (seeds in flight are abandoned); send it again to exit at once"
                    );
                    match &bar {
                        Some(bar) => bar.println(note),
                        None => eprintln!("{note}"),
                    }
                }
                if done {
                    break;
                }
                let p = monitor.snapshot();
                if let Some(bar) = &bar {
                    bar.set_length(p.seeds_total);
                    bar.set_position(p.seeds_done);
                    bar.set_message(facts(&p));
                } else if !interval.is_zero() && Instant::now() >= next_line {
                    eprintln!("{}", progress_line(&p));
                    next_line += interval;
                }
            }
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
        });
        Self { stop, thread: Some(thread) }
    }

    /// Stops the reporter (clearing the bar) before the summary is printed.
    pub fn finish(mut self) {
        let _ = self.stop.send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn progress_bar(seeds: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(seeds);
    let style =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} seeds, {msg}")
            .map(|s| s.progress_chars("=> "));
    if let Ok(style) = style {
        bar.set_style(style);
    }
    bar
}

/// One progress line for a log:
/// `crashsim: progress [0:01:05] 12/100 seeds, 345,678 crash states, 5,318 states/s, 0 violations,
/// slowest in flight: seed 17 for 42s, ETA 7m 40s`.
pub fn progress_line(p: &Progress) -> String {
    format!(
        "crashsim: progress [{}] {}/{} seeds, {}",
        clock(p.elapsed),
        p.seeds_done,
        p.seeds_total,
        facts(p)
    )
}

/// Everything but the seed count: shared by the line and the bar.
fn facts(p: &Progress) -> String {
    let slowest = match p.slowest {
        Some((seed, for_)) => format!("slowest in flight: seed {seed} for {}", span(for_)),
        None => "none in flight".to_string(),
    };
    let eta = p.eta().map_or_else(|| "ETA unknown".to_string(), |d| format!("ETA {}", span(d)));
    format!(
        "{} crash states, {} states/s, {} violations, {slowest}, {eta}",
        crate::grouped(p.crash_states),
        crate::grouped(p.states_per_s().round() as u64),
        p.violations
    )
}

/// `h:mm:ss`.
fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// `42s`, `7m 40s`, `3h 05m`.
fn span(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, s / 60 % 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_progress_line_has_every_fact() {
        let p = Progress {
            seeds_done: 12,
            seeds_total: 100,
            seeds_done_now: 10,
            violations: 0,
            crash_states: 345_678,
            elapsed: Duration::from_secs(65),
            slowest: Some((17, Duration::from_secs(42))),
            points: None,
        };
        assert_eq!(
            progress_line(&p),
            "crashsim: progress [0:01:05] 12/100 seeds, 345,678 crash states, 5,318 states/s, 0 violations, \
             slowest in flight: seed 17 for 42s, ETA 9m 32s"
        );
        assert_eq!(span(Duration::from_secs(3 * 3600 + 5 * 60 + 9)), "3h 05m");
    }
}
